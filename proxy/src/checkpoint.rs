//! The checkpoint keyward writes to `state_dir` at a clean stop: the budgets and the
//! order record as they stand once every request has been answered and recorded,
//! and where the audit log ended then. The next start reads it back and replays only
//! the records written after that point, instead of every record of the last days
//! (a day at an account's maximum order rate is 400,000 records).
//!
//! The audit log stays the source of truth. A checkpoint is used only if the log
//! still holds, at the recorded offset, the very line it ended with then (its SHA-256;
//! each line carries the hash of the one before it, so the match vouches for the
//! whole history before it), and only if it tracked every budget the configuration
//! now sets. Anything else (a rotated or edited log, a damaged or unknown file, a
//! budget added while keyward was stopped) means the whole log is replayed, as
//! without a checkpoint. A checkpoint stays valid after later runs append to the log,
//! so a `kill -9` after a clean start costs a replay of that run's records only.

use std::fs;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use keyward_policy::{Ledger, LedgerState};
use serde::{Deserialize, Serialize};

use crate::budgets::{BudgetReplay, Budgets};
use crate::config::Config;
use crate::orders::{AccountOrders, OrderBook, OrderReplay, ReadBack};

/// The checkpoint's name in `state_dir`.
const FILE: &str = "keyward-checkpoint.json";
const VERSION: u32 = 1;
/// Longest last line a checkpoint can mark; a longer one (far beyond any record
/// keyward writes) means no checkpoint.
const MAX_LINE: u64 = 1 << 20;

/// A checkpoint as read back: the order record is built while the file is parsed.
#[derive(Debug, Deserialize)]
struct Checkpoint {
    version: u32,
    audit: AuditMark,
    budgets: LedgerState,
    orders: ReadBack,
}

/// [`Checkpoint`] as written, borrowing the order record while it is locked.
#[derive(Serialize)]
struct Written<'w, 'a> {
    version: u32,
    audit: &'w AuditMark,
    budgets: &'w LedgerState,
    orders: &'w [AccountOrders<'a>],
}

/// Where the audit log ended when the checkpoint was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct AuditMark {
    file: PathBuf,
    /// Its length then, in bytes.
    offset: u64,
    /// Length of its last line, newline included.
    last_line_bytes: u64,
    /// SHA-256 of that line, hex.
    last_line_sha256: String,
}

/// The checkpoint file of `config`.
pub fn file(config: &Config) -> PathBuf {
    config.state_dir.join(FILE)
}

/// Writes the checkpoint of `budgets` and `orders` against the audit log's current
/// end. Call it only once nothing else can spend or write a record (at the end of a
/// drained shutdown). Returns why no checkpoint was written, for the log.
pub fn write(config: &Config, budgets: &Budgets, orders: &OrderBook) -> Result<(), String> {
    let audit = mark(&config.audit.file)?;
    let budgets = budgets.state();
    let bytes = orders
        .with_state(|orders| {
            serde_json::to_vec(&Written {
                version: VERSION,
                audit: &audit,
                budgets: &budgets,
                orders,
            })
        })
        .ok_or("orders were still being placed when keyward stopped")?
        .map_err(|e| e.to_string())?;
    crate::freeze::persist_private(&file(config), &bytes).map_err(|e| e.to_string())
}

/// The budgets and order record as of `now` from the checkpoint and the audit
/// records after it, or `None` (then the whole log is replayed) if there is no
/// checkpoint or it does not match the log or the configuration.
pub fn resume(config: &Config, audit_file: &Path, now: SystemTime) -> Option<(Budgets, OrderBook)> {
    let path = file(config);
    let text = match fs::read(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return None,
        Err(error) => return ignored(&path, &error.to_string()),
    };
    let checkpoint: Checkpoint = match serde_json::from_slice(&text) {
        Ok(checkpoint) => checkpoint,
        Err(error) => return ignored(&path, &format!("unreadable: {error}")),
    };
    if checkpoint.version != VERSION {
        return ignored(&path, "written by another version");
    }
    if checkpoint.audit.file != audit_file {
        return ignored(&path, "written for another audit log");
    }
    match mark_at(
        audit_file,
        checkpoint.audit.offset,
        checkpoint.audit.last_line_bytes,
    ) {
        Ok(found) if found == checkpoint.audit => {}
        Ok(_) | Err(_) => {
            return ignored(
                &path,
                "the audit log no longer ends its history where it did",
            );
        }
    }
    let ledger = match Ledger::from_state(&checkpoint.budgets) {
        Ok(ledger) => ledger,
        Err(error) => return ignored(&path, &error.to_string()),
    };
    let Some(mut budgets) = BudgetReplay::resuming(config, ledger, now) else {
        return ignored(
            &path,
            "a budget was set on a bot or account it did not track",
        );
    };
    let mut orders = OrderReplay::resuming(checkpoint.orders.0);
    let records = crate::budgets::each_record_in(audit_file, checkpoint.audit.offset, |record| {
        budgets.feed(&record);
        orders.feed(record);
    });
    tracing::info!(
        checkpoint = %path.display(),
        records_after = records,
        "budgets and order record read back from the checkpoint of the last clean stop"
    );
    Some((budgets.finish(), orders.finish(now)))
}

fn ignored<T>(path: &Path, why: &str) -> Option<T> {
    tracing::warn!(
        checkpoint = %path.display(),
        why,
        "checkpoint not used; budgets and order record are rebuilt from the whole audit log"
    );
    None
}

/// Where `file` ends now.
fn mark(file: &Path) -> Result<AuditMark, String> {
    let metadata = fs::metadata(file).map_err(|e| format!("audit log: {e}"))?;
    if !metadata.is_file() {
        return Err("the audit log is not a regular file".into());
    }
    let offset = metadata.len();
    let window = offset.min(MAX_LINE);
    let tail = read_range(file, offset - window, window).map_err(|e| format!("audit log: {e}"))?;
    let line_bytes = match tail.split_last() {
        None => 0,
        Some((b'\n', before)) => match before.iter().rposition(|&b| b == b'\n') {
            Some(newline) => (before.len() - newline) as u64,
            None if window == offset => offset,
            None => return Err("the audit log's last line is too long to mark".into()),
        },
        Some(_) => return Err("the audit log ends in the middle of a line".into()),
    };
    mark_at(file, offset, line_bytes).map_err(|e| format!("audit log: {e}"))
}

/// The mark of `file` if it ended at `offset` with a line of `line_bytes`.
fn mark_at(file: &Path, offset: u64, line_bytes: u64) -> std::io::Result<AuditMark> {
    let start = offset
        .checked_sub(line_bytes)
        .filter(|_| line_bytes <= MAX_LINE)
        .ok_or_else(|| std::io::Error::other("mark outside the file"))?;
    let line = read_range(file, start, line_bytes)?;
    Ok(AuditMark {
        file: file.to_path_buf(),
        offset,
        last_line_bytes: line_bytes,
        last_line_sha256: keyward_venues::hex(
            ring::digest::digest(&ring::digest::SHA256, &line).as_ref(),
        ),
    })
}

fn read_range(file: &Path, start: u64, len: u64) -> std::io::Result<Vec<u8>> {
    let mut opened = fs::File::open(file)?;
    opened.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    opened.take(len).read_to_end(&mut bytes)?;
    if bytes.len() as u64 != len {
        return Err(std::io::Error::other(
            "the audit log is shorter than marked",
        ));
    }
    Ok(bytes)
}
