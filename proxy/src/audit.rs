//! The audit log: JSON lines, one `request` record per request written before the
//! exchange is contacted, one `outcome` record per forwarded request once the exchange
//! has answered (or failed to), and `reload` records. Records hold names, codes and
//! numbers only: never a token, a secret, a signature or a raw query string.
//!
//! Evidence: every line starts with `"prev"`, the SHA-256 of the previous line's bytes
//! (without its newline), so removing, reordering or editing a line breaks the chain
//! there; `keyward audit verify` walks it. Rotation (by size or by UTC day) renames
//! the file aside and the new file's first line chains to the old file's last.
//!
//! Durability: each record is handed to the kernel with one `write(2)` on a file
//! opened with `O_APPEND` before the request goes upstream, so a crash of keyward
//! loses nothing it decided. keyward calls `fsync` every `fsync_interval_ms` (default
//! 1 s) when something was written, before rotating and at shutdown, so a power loss
//! costs at most about a second of records. If a record cannot be written the request
//! is refused with 503 and nothing is sent; a partly written line is cut off again so
//! the chain stays intact.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use serde::Serialize;

/// The decision on a request, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    /// Forwarded.
    Allow,
    /// Refused by keyward.
    Deny,
    /// Answered locally in dry-run mode.
    DryRun,
    /// Forwarded in shadow mode although enforce mode would refuse it.
    ShadowAllow,
}

/// A request record's `notional`: the orders' summed bound, `unbounded`, or nothing
/// for a request that places no order.
pub fn recorded_notional(permit: &keyward_policy::Permit) -> Option<String> {
    match permit.notional() {
        keyward_policy::Notional::Bounded(amount) if permit.orders() > 0 => {
            Some(amount.to_string())
        }
        keyward_policy::Notional::Bounded(_) => None,
        keyward_policy::Notional::Unbounded => Some("unbounded".to_owned()),
    }
}

/// The record written before the upstream call (or instead of it).
#[derive(Debug, Serialize)]
pub struct RequestRecord<'a> {
    /// RFC 3339 UTC with milliseconds.
    pub ts: String,
    /// Always `request`.
    pub event: &'static str,
    /// keyward's id for the request (also in the `x-keyward-request-id` header).
    pub request_id: &'a str,
    /// The bot's address.
    pub peer: &'a str,
    /// The listener: `tls`, `mtls` (with a client certificate), `plain` or `unix`.
    pub transport: &'static str,
    /// The client certificate's subject name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<&'a str>,
    /// The Unix socket peer's credentials.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_cred: Option<crate::identity::PeerCred>,
    /// `h1`, `h2`, or `ws` for a WebSocket message.
    pub http: &'static str,
    /// A WebSocket message's method (`method` and `path` are its REST twin's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_method: Option<&'static str>,
    /// The authenticated bot, if any.
    pub bot: Option<&'a str>,
    /// The bot's account.
    pub account: Option<&'a str>,
    /// The account's venue.
    pub venue: Option<&'static str>,
    /// The request method.
    pub method: &'a str,
    /// The canonical path, or the escaped and truncated target when it was refused.
    pub path: &'a str,
    /// Every symbol named.
    pub symbols: Vec<&'a str>,
    /// Orders placed or changed.
    pub orders: u32,
    /// Sum of the orders' notional bounds, if bounded.
    pub notional: Option<String>,
    /// What keyward decided.
    pub decision: Decision,
    /// Reason code of a refusal, or of the would-be refusal in shadow mode.
    pub reason: Option<&'static str>,
    /// Status keyward answered with itself, if it did.
    pub status: Option<u16>,
    /// The bot's mode.
    pub mode: Option<&'static str>,
    /// Auth fields of the bot's that were removed.
    pub stripped: &'a [&'static str],
    /// Each order the request places or changes (refused ones too): symbol, side,
    /// type, size, prices, client id, and for an amend the order it names.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub legs: &'a [crate::orders::LegRecord],
    /// The orders the request names to cancel.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub cancels: &'a [crate::orders::RefRecord],
}

/// What the exchange did with a request's orders, as its outcome records it.
#[derive(Debug, Default, Serialize)]
pub struct OrderOutcome {
    /// One per leg of the request record, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub results: Vec<crate::orders::ResultRecord>,
    /// Whether each cancel of the request record was done, when the answer says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancelled: Option<Vec<bool>>,
    /// Orders the answer shows closed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub closed: Vec<crate::orders::ClosedRecord>,
    /// Symbols whose every order the answer shows cancelled.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub closed_all: Vec<String>,
    /// The notional given back to the budgets (orders the exchange did not place).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refunded_notional: Option<String>,
    /// The orders given back to the budgets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refunded_orders: Option<u32>,
}

/// The record written after the exchange answered or failed.
#[derive(Debug, Serialize)]
pub struct OutcomeRecord<'a> {
    /// RFC 3339 UTC with milliseconds.
    pub ts: String,
    /// Always `outcome`.
    pub event: &'static str,
    /// The request's id.
    pub request_id: &'a str,
    /// The exchange's status, if it answered.
    pub upstream_status: Option<u16>,
    /// The exchange refused the whole request (a 4xx, or an error in a 200 body):
    /// nothing in it executed.
    pub refused: bool,
    /// keyward's reason code when the exchange did not answer usably.
    pub error: Option<&'static str>,
    /// Time from sending to the full response, in milliseconds.
    pub upstream_ms: u64,
    /// Time from receiving the request to answering, in milliseconds.
    pub total_ms: u64,
    /// What became of each order.
    #[serde(flatten)]
    pub orders: OrderOutcome,
}

/// A bot connection refused during the TLS handshake over its client certificate:
/// no request was read, so this is its only record.
#[derive(Debug, Serialize)]
pub struct HandshakeRecord<'a> {
    /// RFC 3339 UTC with milliseconds.
    pub ts: String,
    /// Always `handshake`.
    pub event: &'static str,
    /// The bot's address.
    pub peer: &'a str,
    /// Always `deny`.
    pub decision: Decision,
    /// Why: `tls_client_cert_missing`, `_untrusted`, `_expired`, `_revoked` or
    /// `_invalid`.
    pub reason: &'static str,
}

/// The record of a configuration and vault reload.
#[derive(Debug, Serialize)]
pub struct ReloadRecord {
    /// RFC 3339 UTC with milliseconds.
    pub ts: String,
    /// Always `reload`.
    pub event: &'static str,
    /// `ok` or `failed`.
    pub result: &'static str,
    /// The configuration generation in force afterwards.
    pub generation: u64,
    /// What asked for it: `signal` or `admin`.
    pub trigger: &'static str,
    /// Each account's API-key fingerprint in force afterwards.
    pub keys: Vec<(String, String)>,
    /// How many problems stopped the reload.
    pub problems: usize,
}

/// keyward starting or stopping. The `stop` record also seals the chain: a line is
/// protected by the `prev` of the line after it, so the last decision before a stop
/// is covered by this one.
#[derive(Debug, Serialize)]
pub struct LifecycleRecord {
    /// RFC 3339 UTC with milliseconds.
    pub ts: String,
    /// `start` or `stop`.
    pub event: &'static str,
    /// keyward's version.
    pub version: &'static str,
}

impl LifecycleRecord {
    /// A record of `event` now.
    pub fn now(event: &'static str) -> Self {
        Self {
            ts: timestamp(SystemTime::now()),
            event,
            version: env!("CARGO_PKG_VERSION"),
        }
    }
}

/// Why a record was not written.
#[derive(Debug, thiserror::Error)]
#[error("audit log {path}: {source}")]
pub struct AuditError {
    path: PathBuf,
    source: std::io::Error,
}

/// When the log starts a new file, and how long rotated files are kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rotation {
    /// Before a line would take the file past this size.
    pub max_bytes: Option<u64>,
    /// When the UTC day changes.
    pub daily: bool,
    /// Rotated files last written longer ago than this are deleted (at start and
    /// after each rotation); `None` keeps them all.
    pub retention: Option<std::time::Duration>,
}

/// The rotated files of the log at `current` (`<stem>-<time>.<ext>` beside it), with
/// when each was last written, oldest name first.
pub fn rotated_files(current: &Path) -> Vec<(PathBuf, SystemTime)> {
    let dir = match current.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let Some(stem) = current
        .file_stem()
        .map(|s| format!("{}-", s.to_string_lossy()))
    else {
        return Vec::new();
    };
    let mut rotated: Vec<(PathBuf, SystemTime)> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(&stem))
                        && p.extension() == current.extension()
                })
                .filter_map(|p| {
                    let modified = std::fs::metadata(&p).and_then(|m| m.modified()).ok()?;
                    Some((p, modified))
                })
                .collect()
        })
        .unwrap_or_default();
    rotated.sort();
    rotated
}

/// Deletes the rotated files of `current` last written before `now - retention`.
fn prune_rotated(current: &Path, retention: std::time::Duration, now: SystemTime) {
    let Some(before) = now.checked_sub(retention) else {
        return;
    };
    for (file, modified) in rotated_files(current) {
        if modified >= before {
            continue;
        }
        match std::fs::remove_file(&file) {
            Ok(()) => tracing::info!(
                file = %file.display(),
                "rotated audit file deleted: older than [audit] retention"
            ),
            Err(error) => tracing::warn!(
                file = %file.display(),
                %error,
                "rotated audit file older than [audit] retention not deleted"
            ),
        }
    }
}

/// The chain value before the first line ever written.
pub const GENESIS: [u8; 32] = [0; 32];

/// The append-only, hash-chained audit file.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    rotation: Rotation,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    file: File,
    /// SHA-256 of the last line in the file.
    prev: [u8; 32],
    /// Bytes in the current file.
    len: u64,
    /// UTC day the current file belongs to.
    day: time::Date,
    /// Written since the last fsync.
    unsynced: bool,
    /// False for devices and pipes, which are neither measured nor rotated.
    regular: bool,
}

impl AuditLog {
    /// Opens (creating with mode 0600) the log for appending, continuing the chain
    /// from its last line.
    pub fn open(path: &Path, rotation: Rotation) -> Result<Self, AuditError> {
        let state = open_state(path).map_err(|source| AuditError {
            path: path.to_path_buf(),
            source,
        })?;
        if let Some(retention) = rotation.retention {
            prune_rotated(path, retention, SystemTime::now());
        }
        Ok(Self {
            path: path.to_path_buf(),
            rotation,
            state: Mutex::new(state),
        })
    }

    /// Writes one record as one chained line with one `write(2)`.
    pub fn write(&self, record: &impl Serialize) -> Result<(), AuditError> {
        // The record is serialised straight into the line, after a `prev` field whose
        // digits are filled in under the lock, so the line is neither copied nor
        // re-serialised there.
        let mut line = Vec::with_capacity(LINE_CAPACITY);
        line.extend_from_slice(PREV_FIELD);
        line.resize(PREV_FIELD.len() + 64, b'0');
        line.push(b'"');
        let fields_at = line.len();
        serde_json::to_writer(&mut line, record)
            .map_err(|e| self.error(std::io::Error::other(e)))?;
        // Records are JSON objects; the chain field goes first, so the record's opening
        // brace becomes the comma after it (or goes, for an empty record).
        match line.get(fields_at..) {
            Some(b"{}") => {
                line.remove(fields_at);
            }
            Some([b'{', ..]) => line[fields_at] = b',',
            _ => {
                return Err(self.error(std::io::Error::other(
                    "an audit record must be a JSON object",
                )));
            }
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        hex_into(
            &mut line[PREV_FIELD.len()..PREV_FIELD.len() + 64],
            &state.prev,
        );
        if self.should_rotate(&state, line.len() as u64 + 1) {
            self.rotate(&mut state).map_err(|e| self.error(e))?;
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, &line);
        line.push(b'\n');
        if let Err(e) = state.file.write_all(&line) {
            // Cut off whatever part of the line reached the file, so the next line
            // does not continue a broken one. Truncating works on a full disk.
            if state.regular {
                let _ = state.file.set_len(state.len);
            }
            return Err(self.error(e));
        }
        state.prev.copy_from_slice(digest.as_ref());
        state.len += line.len() as u64;
        state.unsynced = true;
        Ok(())
    }

    /// Flushes the log to disk if anything was written since the last flush.
    ///
    /// The flush runs on a second handle to the file, outside the lock: `fdatasync`
    /// takes milliseconds (far more on a busy or networked disk), and every request
    /// waits for the lock to write its record, so holding it would stall every bot
    /// once per flush interval. Records written meanwhile reach the kernel as always
    /// and mark the log unsynced again, for the next flush.
    pub fn sync(&self) -> Result<(), AuditError> {
        let handle = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if !state.unsynced {
                return Ok(());
            }
            let handle = state.file.try_clone().map_err(|e| self.error(e))?;
            state.unsynced = false;
            handle
        };
        if let Err(error) = handle.sync_data() {
            self.state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .unsynced = true;
            return Err(self.error(error));
        }
        Ok(())
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn should_rotate(&self, state: &State, adding: u64) -> bool {
        if !state.regular || state.len == 0 {
            return false;
        }
        let too_big = self
            .rotation
            .max_bytes
            .is_some_and(|max| state.len + adding > max);
        let new_day = self.rotation.daily && today() != state.day;
        too_big || new_day
    }

    /// Moves the current file aside as `<stem>-<UTC time>.<ext>` and starts a new one;
    /// the chain continues.
    fn rotate(&self, state: &mut State) -> std::io::Result<()> {
        state.file.sync_data()?;
        let stamp = time::OffsetDateTime::now_utc()
            .format(time::macros::format_description!(
                "[year][month][day]T[hour][minute][second].[subsecond digits:6]Z"
            ))
            .map_err(std::io::Error::other)?;
        let stem = self
            .path
            .file_stem()
            .map_or_else(|| "audit".into(), |s| s.to_string_lossy().into_owned());
        let extension = self
            .path
            .extension()
            .map_or_else(String::new, |e| format!(".{}", e.to_string_lossy()));
        let rotated = self
            .path
            .with_file_name(format!("{stem}-{stamp}{extension}"));
        std::fs::rename(&self.path, &rotated)?;
        let prev = state.prev;
        *state = open_state(&self.path)?;
        state.prev = prev;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
        if let Some(retention) = self.rotation.retention {
            prune_rotated(&self.path, retention, SystemTime::now());
        }
        Ok(())
    }

    fn error(&self, source: std::io::Error) -> AuditError {
        AuditError {
            path: self.path.clone(),
            source,
        }
    }
}

fn open_state(path: &Path) -> std::io::Result<State> {
    let mut file = OpenOptions::new()
        .append(true)
        .read(true)
        .create(true)
        .mode(0o600)
        .open(path)?;
    let metadata = file.metadata()?;
    let regular = metadata.is_file();
    let mut state = State {
        file: file.try_clone()?,
        prev: GENESIS,
        len: 0,
        day: today(),
        unsynced: false,
        regular,
    };
    if !regular || metadata.len() == 0 {
        return Ok(state);
    }
    state.len = metadata.len();
    if let Ok(modified) = metadata.modified() {
        state.day = time::OffsetDateTime::from(modified).date();
    }
    let (last, terminated) = last_line(&mut file, metadata.len())?;
    state
        .prev
        .copy_from_slice(ring::digest::digest(&ring::digest::SHA256, &last).as_ref());
    if !terminated {
        // A line cut short by a crash: end it, and chain the next line to what is on
        // disk. `audit verify` names the damaged line.
        file.write_all(b"\n")?;
        state.len += 1;
    }
    Ok(state)
}

/// The file's last line (without its newline) and whether it ended with one.
fn last_line(file: &mut File, len: u64) -> std::io::Result<(Vec<u8>, bool)> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    const STEP: u64 = 64 * 1024;
    let mut tail = Vec::new();
    let mut start = len;
    loop {
        let from = start.saturating_sub(STEP);
        let mut chunk = vec![0u8; usize::try_from(start - from).unwrap_or(0)];
        file.seek(SeekFrom::Start(from))?;
        file.read_exact(&mut chunk)?;
        chunk.extend_from_slice(&tail);
        tail = chunk;
        start = from;
        let terminated = tail.last() == Some(&b'\n');
        let body = if terminated {
            &tail[..tail.len() - 1]
        } else {
            &tail[..]
        };
        if let Some(at) = body.iter().rposition(|&b| b == b'\n') {
            return Ok((body[at + 1..].to_vec(), terminated));
        }
        if start == 0 {
            return Ok((body.to_vec(), terminated));
        }
    }
}

fn today() -> time::Date {
    time::OffsetDateTime::now_utc().date()
}

fn hex(bytes: &[u8]) -> String {
    keyward_venues::hex(bytes)
}

/// The start of every line, up to the previous line's digest.
const PREV_FIELD: &[u8] = b"{\"prev\":\"";
/// Room for a typical request record, so serialising it rarely grows the buffer.
const LINE_CAPACITY: usize = 640;

/// Lowercase hex of `bytes` into `out`, which is twice as long.
fn hex_into(out: &mut [u8], bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0x0f)];
    }
}

/// What `keyward audit verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// Every line chains to the one before.
    Intact {
        /// Lines checked.
        lines: u64,
        /// The `prev` of the very first line (all zeros when the log starts there).
        anchor: String,
        /// SHA-256 of the last line: what the next line will carry.
        head: String,
    },
    /// The first line that does not.
    Broken {
        /// The file.
        file: PathBuf,
        /// 1-based line number in that file.
        line: u64,
        /// What is wrong.
        problem: String,
    },
}

/// Walks the chain through `files`, in the order given (oldest first).
pub fn verify(files: &[PathBuf]) -> std::io::Result<Verified> {
    let mut expected: Option<String> = None;
    let mut anchor = None;
    let mut lines = 0u64;
    for path in files {
        let bytes = std::fs::read(path)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        let mut number = 0u64;
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            number += 1;
            let broken = |problem: &str| Verified::Broken {
                file: path.clone(),
                line: number,
                problem: problem.to_owned(),
            };
            let Some(end) = rest.iter().position(|&b| b == b'\n') else {
                return Ok(broken("the last line is incomplete (no newline)"));
            };
            let line = &rest[..end];
            rest = &rest[end + 1..];
            let prev = match serde_json::from_slice::<serde_json::Value>(line) {
                Ok(serde_json::Value::Object(fields)) => match fields.get("prev") {
                    Some(serde_json::Value::String(prev)) if prev.len() == 64 => prev.clone(),
                    _ => return Ok(broken("no 64-digit `prev` field")),
                },
                _ => return Ok(broken("not a JSON record")),
            };
            if !line.starts_with(b"{\"prev\":") {
                return Ok(broken("`prev` is not the first field"));
            }
            match &expected {
                Some(expected) if *expected != prev => {
                    return Ok(broken(&format!(
                        "prev {prev} does not match the SHA-256 of the line before it \
                         ({expected}): a line was removed, changed or reordered here"
                    )));
                }
                Some(_) => {}
                None => anchor = Some(prev),
            }
            expected = Some(hex(
                ring::digest::digest(&ring::digest::SHA256, line).as_ref()
            ));
            lines += 1;
        }
    }
    Ok(Verified::Intact {
        lines,
        anchor: anchor.unwrap_or_else(|| hex(&GENESIS)),
        head: expected.unwrap_or_else(|| hex(&GENESIS)),
    })
}

/// RFC 3339 UTC with milliseconds.
pub fn timestamp(time: SystemTime) -> String {
    let at = time::OffsetDateTime::from(time);
    let year = at.year();
    let Ok(four_digits) = u32::try_from(year) else {
        return timestamp_by_description(at);
    };
    if four_digits > 9999 {
        return timestamp_by_description(at);
    }
    // Every record carries one, so the digits are written directly rather than
    // through a format description.
    let (hour, minute, second, milli) = at.to_hms_milli();
    let mut out = String::with_capacity(24);
    push_padded(&mut out, four_digits, 4);
    out.push('-');
    push_padded(&mut out, u32::from(u8::from(at.month())), 2);
    out.push('-');
    push_padded(&mut out, u32::from(at.day()), 2);
    out.push('T');
    push_padded(&mut out, u32::from(hour), 2);
    out.push(':');
    push_padded(&mut out, u32::from(minute), 2);
    out.push(':');
    push_padded(&mut out, u32::from(second), 2);
    out.push('.');
    push_padded(&mut out, u32::from(milli), 3);
    out.push('Z');
    out
}

/// Years outside 0..=9999 (a clock gone very wrong), as `time` writes them.
fn timestamp_by_description(at: time::OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    at.format(&format).unwrap_or_default()
}

/// `value` in decimal, zero-padded to `width` digits (`value` has at most `width`).
fn push_padded(out: &mut String, value: u32, width: u32) {
    let mut divisor = 10u32.pow(width.saturating_sub(1));
    while divisor > 0 {
        let digit = (value / divisor) % 10;
        out.push(char::from(b'0' + u8::try_from(digit).unwrap_or(0)));
        divisor /= 10;
    }
}

/// What the audit log records of request text taken as sent (a target refused before
/// it was vetted, a method): `truncated`, or a placeholder if it carries a keyward
/// token anywhere (a bot that put its token there must not find it in the log, even
/// cut short).
pub fn recorded(text: &str) -> String {
    if crate::decide::carries_token(text) {
        "(carries a keyward token; not recorded)".to_owned()
    } else {
        truncated(text).to_owned()
    }
}

/// A refused target made safe to record: at most 256 characters; JSON escaping
/// takes care of the rest.
fn truncated(target: &str) -> &str {
    match target.char_indices().nth(256) {
        Some((index, _)) => &target[..index],
        None => target,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_carrying_a_token_is_not_recorded() {
        let secret = "Zm9vYmFyYmF6cXV4cXV1eHF1dXpxdXV6cXV1enF1dXo";
        for target in [
            format!("/api/v3/account?timestamp=1&apiKey=kw_a_{secret}"),
            format!("/api/v3/account?apiKey=kw%5Fa%5F{secret}"),
            format!("/x/{}/kw_a_{secret}", "a".repeat(300)),
        ] {
            let recorded = recorded(&target);
            assert!(!recorded.contains(&secret[..8]), "{recorded}");
        }
        let long = format!("/api/v3/{}", "a".repeat(300));
        assert_eq!(recorded(&long).chars().count(), 256);
        assert_eq!(
            recorded("/api/v3/order?symbol=BTCUSDT"),
            "/api/v3/order?symbol=BTCUSDT"
        );
    }

    #[test]
    fn records_are_single_escaped_lines() {
        let dir = std::env::temp_dir().join(format!("keyward-audit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.jsonl");
        let _ = std::fs::remove_file(&path);
        let log = AuditLog::open(&path, Rotation::default()).unwrap();
        let record = RequestRecord {
            ts: timestamp(SystemTime::UNIX_EPOCH),
            event: "request",
            request_id: "r1",
            peer: "127.0.0.1:1",
            transport: "tls",
            client_cert: None,
            peer_cred: None,
            http: "h1",
            stream_method: None,
            bot: None,
            account: None,
            venue: None,
            method: "GET",
            path: "/api/v3/account\r\nFAKE-LOG-LINE decision=allow",
            symbols: vec![],
            orders: 0,
            notional: None,
            decision: Decision::Deny,
            reason: Some("path_non_canonical"),
            status: Some(400),
            mode: None,
            stripped: &[],
            legs: &[],
            cancels: &[],
        };
        log.write(&record).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1);
        assert!(text.contains("\\r\\nFAKE-LOG-LINE"));
        assert!(text.starts_with(&format!(
            "{{\"prev\":\"{}\",\"ts\":\"1970-01-01T00:00:00.000Z\"",
            "0".repeat(64)
        )));
    }

    #[test]
    fn timestamps_match_the_format_description() {
        let mut times: Vec<SystemTime> = [
            0u64,
            1,
            999,
            1_000,
            59_999,
            951_782_400_000,
            1_796_083_200_123,
            253_402_300_799_999,
        ]
        .iter()
        .map(|ms| SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(*ms))
        .collect();
        times.push(SystemTime::UNIX_EPOCH - std::time::Duration::from_millis(62_167_219_200_001));
        times.push(
            SystemTime::UNIX_EPOCH + std::time::Duration::from_nanos(1_796_083_200_123_999_999),
        );
        // An even spread over four centuries: multiples of the golden-ratio constant
        // fall at well-separated places in every part of the range, no generator needed.
        for step in 0..2_000u64 {
            let nanos = step.wrapping_mul(0x9E37_79B9_7F4A_7C15) % 12_000_000_000_000_000_000;
            times.push(SystemTime::UNIX_EPOCH + std::time::Duration::from_nanos(nanos));
        }
        for time in times {
            let at = time::OffsetDateTime::from(time);
            assert_eq!(timestamp(time), timestamp_by_description(at), "{time:?}");
        }
        assert_eq!(
            timestamp(SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_796_083_200_123)),
            "2026-12-01T00:00:00.123Z"
        );
    }

    #[test]
    fn empty_and_non_object_records() {
        let path = temp_log("shapes");
        let log = AuditLog::open(&path, Rotation::default()).unwrap();
        log.write(&serde_json::json!({})).unwrap();
        assert!(log.write(&"not an object").is_err());
        log.write(&serde_json::json!({"event": "request"})).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], format!("{{\"prev\":\"{}\"}}", "0".repeat(64)));
        let first = hex(ring::digest::digest(&ring::digest::SHA256, lines[0].as_bytes()).as_ref());
        assert_eq!(
            lines[1],
            format!("{{\"prev\":\"{first}\",\"event\":\"request\"}}")
        );
        assert_eq!(lines.len(), 2);
        assert!(matches!(
            verify(&[path]).unwrap(),
            Verified::Intact { lines: 2, .. }
        ));
    }

    #[test]
    fn a_full_disk_is_an_error() {
        let log = AuditLog::open(Path::new("/dev/full"), Rotation::default()).unwrap();
        assert!(log.write(&serde_json::json!({"x": 1})).is_err());
    }

    fn temp_log(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("keyward-audit-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("audit.jsonl")
    }

    fn files_in_order(path: &Path) -> Vec<PathBuf> {
        let mut rotated: Vec<PathBuf> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p != path)
            .collect();
        rotated.sort();
        rotated.push(path.to_path_buf());
        rotated
    }

    #[test]
    fn rotated_files_past_the_retention_are_deleted_and_the_rest_kept() {
        let path = temp_log("retention");
        let dir = path.parent().unwrap().to_path_buf();
        let day = std::time::Duration::from_secs(86_400);
        let now = SystemTime::now();
        let aged = |name: &str, age: std::time::Duration| {
            let file = dir.join(name);
            std::fs::write(&file, "{}\n").unwrap();
            File::options()
                .write(true)
                .open(&file)
                .unwrap()
                .set_modified(now - age)
                .unwrap();
            file
        };
        let old = aged("audit-20260101T000000.000000Z.jsonl", 40 * day);
        let recent = aged("audit-20261201T000000.000000Z.jsonl", 8 * day);
        // Not the log's: another stem, another extension.
        let other = aged("other-20260101T000000.000000Z.jsonl", 40 * day);
        let text = aged("audit-20260101T000000.000000Z.txt", 40 * day);
        let rotation = Rotation {
            max_bytes: Some(600),
            daily: false,
            retention: Some(30 * day),
        };
        let log = AuditLog::open(&path, rotation).unwrap();
        assert!(!old.exists());
        assert!(recent.exists() && other.exists() && text.exists());
        // A rotation prunes too.
        let older = aged("audit-20260102T000000.000000Z.jsonl", 31 * day);
        for n in 0..10 {
            log.write(&serde_json::json!({"event": "request", "n": n}))
                .unwrap();
        }
        assert!(!older.exists());
        assert!(recent.exists());
        assert!(
            rotated_files(&path).len() >= 2,
            "{:?}",
            rotated_files(&path)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_chain_survives_reopening_and_rotation_and_exposes_tampering() {
        let path = temp_log("chain");
        let rotation = Rotation {
            max_bytes: Some(600),
            daily: false,
            retention: None,
        };
        {
            let log = AuditLog::open(&path, rotation).unwrap();
            for n in 0..10 {
                log.write(&serde_json::json!({"event": "request", "n": n}))
                    .unwrap();
            }
        }
        // Reopened by a restarted keyward: the chain continues from the last line.
        let log = AuditLog::open(&path, rotation).unwrap();
        for n in 10..20 {
            log.write(&serde_json::json!({"event": "request", "n": n}))
                .unwrap();
        }
        let files = files_in_order(&path);
        assert!(files.len() >= 3, "rotated by size: {files:?}");
        for file in &files {
            assert!(std::fs::metadata(file).unwrap().len() <= 600);
        }
        let Verified::Intact {
            lines,
            anchor,
            head,
        } = verify(&files).unwrap()
        else {
            panic!("intact chain reported broken");
        };
        assert_eq!(lines, 20);
        assert_eq!(anchor, "0".repeat(64));
        assert_eq!(head, hex(&log.state.lock().unwrap().prev));

        // A missing middle file breaks the chain at the next file's first line.
        let without_second: Vec<PathBuf> = files
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 1)
            .map(|(_, f)| f.clone())
            .collect();
        assert!(matches!(
            verify(&without_second).unwrap(),
            Verified::Broken { line: 1, .. }
        ));
        // An edited, a deleted and a swapped line are each found where they are.
        let last = files.last().unwrap().clone();
        let original = std::fs::read_to_string(&last).unwrap();
        let lines_of: Vec<&str> = original.lines().collect();
        let edited = original.replacen("\"n\":", "\"n\": ", 1);
        let deleted = lines_of
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 1)
            .map(|(_, l)| format!("{l}\n"))
            .collect::<String>();
        let mut swapped_lines = lines_of.clone();
        swapped_lines.swap(1, 2);
        let swapped = swapped_lines
            .iter()
            .map(|l| format!("{l}\n"))
            .collect::<String>();
        for (what, text, line) in [
            ("edited", &edited, 2),
            ("deleted", &deleted, 2),
            ("swapped", &swapped, 2),
        ] {
            std::fs::write(&last, text).unwrap();
            match verify(&files).unwrap() {
                Verified::Broken { file, line: at, .. } => {
                    assert_eq!((file, at), (last.clone(), line), "{what}");
                }
                Verified::Intact { .. } => panic!("{what} line not detected"),
            }
        }
        std::fs::write(&last, &original).unwrap();
        assert!(matches!(verify(&files).unwrap(), Verified::Intact { .. }));
    }

    #[test]
    fn a_line_cut_short_by_a_crash_is_ended_and_named() {
        let path = temp_log("crash");
        {
            let log = AuditLog::open(&path, Rotation::default()).unwrap();
            log.write(&serde_json::json!({"event": "request"})).unwrap();
        }
        let mut text = std::fs::read(&path).unwrap();
        text.extend_from_slice(b"{\"prev\":\"abc");
        std::fs::write(&path, &text).unwrap();
        let log = AuditLog::open(&path, Rotation::default()).unwrap();
        log.write(&serde_json::json!({"event": "request"})).unwrap();
        let written = std::fs::read_to_string(&path).unwrap();
        assert_eq!(written.lines().count(), 3);
        assert!(matches!(
            verify(&[path]).unwrap(),
            Verified::Broken { line: 2, ref problem, .. } if problem.contains("not a JSON record")
        ));
    }
}
