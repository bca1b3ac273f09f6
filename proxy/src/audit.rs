//! The audit log: JSON lines, one `request` record per request written before the
//! exchange is contacted, and one `outcome` record per forwarded request once the
//! exchange has answered (or failed to). Records hold names, codes and numbers only:
//! never a token, a secret, a signature or a raw query string.
//!
//! Durability: each record is handed to the kernel with a single `write(2)` on a file
//! opened with `O_APPEND` before the request goes upstream, so a crash of keyward
//! loses nothing already decided; the data reaches the disk when the kernel flushes
//! (an `fsync` on shutdown). If a record cannot be written, the request is refused
//! with 503 and nothing is sent.

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
    pub peer: String,
    /// `h1` or `h2`.
    pub http: &'static str,
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
    /// keyward's reason code when the exchange did not answer usably.
    pub error: Option<&'static str>,
    /// Time from sending to the full response, in milliseconds.
    pub upstream_ms: u64,
    /// Time from receiving the request to answering, in milliseconds.
    pub total_ms: u64,
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

/// Why a record was not written.
#[derive(Debug, thiserror::Error)]
#[error("audit log {path}: {source}")]
pub struct AuditError {
    path: PathBuf,
    source: std::io::Error,
}

/// The append-only audit file.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: Mutex<File>,
}

impl AuditLog {
    /// Opens (creating with mode 0600) the log for appending.
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| AuditError {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Self {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        })
    }

    /// Writes one record as one line with one `write(2)`.
    pub fn write(&self, record: &impl Serialize) -> Result<(), AuditError> {
        let mut line =
            serde_json::to_vec(record).map_err(|e| self.error(std::io::Error::other(e)))?;
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        file.write_all(&line).map_err(|e| self.error(e))
    }

    /// Flushes the log to disk (on shutdown).
    pub fn sync(&self) -> Result<(), AuditError> {
        let file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        file.sync_all().map_err(|e| self.error(e))
    }

    fn error(&self, source: std::io::Error) -> AuditError {
        AuditError {
            path: self.path.clone(),
            source,
        }
    }
}

/// RFC 3339 UTC with milliseconds.
pub fn timestamp(time: SystemTime) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from(time)
        .format(&format)
        .unwrap_or_default()
}

/// A refused target made safe to record: at most 256 characters; JSON escaping
/// takes care of the rest.
pub fn truncated(target: &str) -> &str {
    match target.char_indices().nth(256) {
        Some((index, _)) => &target[..index],
        None => target,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_single_escaped_lines() {
        let dir = std::env::temp_dir().join(format!("keyward-audit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.jsonl");
        let _ = std::fs::remove_file(&path);
        let log = AuditLog::open(&path).unwrap();
        let record = RequestRecord {
            ts: timestamp(SystemTime::UNIX_EPOCH),
            event: "request",
            request_id: "r1",
            peer: "127.0.0.1:1".into(),
            http: "h1",
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
        };
        log.write(&record).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1);
        assert!(text.contains("\\r\\nFAKE-LOG-LINE"));
        assert!(text.starts_with("{\"ts\":\"1970-01-01T00:00:00.000Z\""));
    }

    #[test]
    fn a_full_disk_is_an_error() {
        let log = AuditLog::open(Path::new("/dev/full")).unwrap();
        assert!(log.write(&serde_json::json!({"x": 1})).is_err());
    }
}
