//! Nonces for venues that demand a strictly increasing number per API key (Kraken).
//!
//! keyward, not the bots, owns the counter: several bots share one key, and a bot
//! that sent a huge nonce would break the key for everyone. Each account's next nonce
//! is `max(last + 1, now in microseconds)`, so it keeps rising across restarts and
//! ahead of clients that used the key directly with millisecond nonces. A high-water
//! mark is written to `state_dir` *before* any nonce beyond it is handed out, so even a
//! clock that jumps backwards after a restart cannot make a nonce repeat.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// How far ahead of the last nonce handed out the recorded mark is set: one write
/// per ten seconds of traffic at most.
const RESERVE_AHEAD: u64 = 10_000_000;

/// Why no nonce could be handed out.
#[derive(Debug, thiserror::Error)]
pub enum NonceError {
    /// The high-water mark could not be recorded, so the nonce would not be safe
    /// across a restart.
    #[error("cannot record the nonce high-water mark in {path}: {source}")]
    Persist {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The replicas' shared counter (Redis) could not be reached in time.
    #[error("the replicas' shared nonce counter (Redis) cannot be reached")]
    SharedUnavailable,
    /// The recorded mark is unreadable; refusing beats guessing a lower nonce.
    #[error("the nonce high-water mark in {path} is not a number; fix or remove the file")]
    Corrupt {
        /// The file.
        path: PathBuf,
    },
}

#[derive(Debug, Clone, Copy)]
struct Counter {
    last: u64,
    reserved: u64,
}

/// One account's counter.
#[derive(Debug)]
pub struct NonceCounter {
    /// Where its high-water mark is written (`None`: in memory only, for tools and
    /// tests that never send).
    mark: Option<PathBuf>,
    /// `None` until the first nonce, when the mark is read.
    counter: Mutex<Option<Counter>>,
}

impl NonceCounter {
    /// The counter of `account`, whose mark lives in `dir`.
    pub fn new(dir: Option<&Path>, account: &str) -> Self {
        Self {
            mark: dir.map(|dir| mark_file(dir, account)),
            counter: Mutex::new(None),
        }
    }

    /// The next nonce, strictly greater than any handed out before.
    pub fn next(&self) -> Result<u64, NonceError> {
        self.next_at(SystemTime::now())
    }

    fn next_at(&self, now: SystemTime) -> Result<u64, NonceError> {
        let now_us = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        let mut held = self
            .counter
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let counter = match *held {
            Some(counter) => counter,
            None => {
                let recorded = match &self.mark {
                    Some(mark) => read_mark(mark)?,
                    None => 0,
                };
                Counter {
                    last: recorded,
                    reserved: recorded,
                }
            }
        };
        let nonce = (counter.last.saturating_add(1)).max(now_us);
        let mut reserved = counter.reserved;
        if nonce > reserved {
            reserved = nonce.saturating_add(RESERVE_AHEAD);
            if let Some(mark) = &self.mark {
                write_mark(mark, reserved)?;
            }
        }
        *held = Some(Counter {
            last: nonce,
            reserved,
        });
        Ok(nonce)
    }
}

impl NonceCounter {
    /// Takes `nonce`, drawn from the replicas' shared counter, as the last one
    /// handed out, so this replica's own next candidate (and its recorded mark)
    /// stays above it.
    pub fn raise_to(&self, nonce: u64) -> Result<(), NonceError> {
        let mut held = self
            .counter
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(counter) = held.as_mut() else {
            return Ok(());
        };
        if nonce <= counter.last {
            return Ok(());
        }
        counter.last = nonce;
        if nonce > counter.reserved {
            let reserved = nonce.saturating_add(RESERVE_AHEAD);
            if let Some(mark) = &self.mark {
                write_mark(mark, reserved)?;
            }
            counter.reserved = reserved;
        }
        Ok(())
    }
}

fn mark_file(dir: &Path, account: &str) -> PathBuf {
    // Account names are validated identifiers, safe as a file name component.
    dir.join(format!("keyward-nonce-{account}"))
}

fn read_mark(path: &Path) -> Result<u64, NonceError> {
    match fs::read_to_string(path) {
        Ok(text) => text.trim().parse().map_err(|_| NonceError::Corrupt {
            path: path.to_owned(),
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(source) => Err(NonceError::Persist {
            path: path.to_owned(),
            source,
        }),
    }
}

fn write_mark(path: &Path, value: u64) -> Result<(), NonceError> {
    let staged = path.with_extension("new");
    let result = (|| {
        let mut file = fs::File::create(&staged)?;
        writeln!(file, "{value}")?;
        file.sync_all()?;
        fs::rename(&staged, path)?;
        if let Some(parent) = path.parent() {
            fs::File::open(parent)?.sync_all()?;
        }
        Ok(())
    })();
    result.map_err(|source| NonceError::Persist {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn nonces_rise_even_when_the_clock_stands_still_or_goes_back() {
        let nonces = NonceCounter::new(None, "k");
        let first = nonces.next_at(at(1_700_000_000)).unwrap();
        assert_eq!(first, 1_700_000_000_000_000);
        let second = nonces.next_at(at(1_700_000_000)).unwrap();
        let third = nonces.next_at(at(1_600_000_000)).unwrap();
        assert!(first < second && second < third);
        // Accounts count separately.
        let other = NonceCounter::new(None, "other");
        assert_eq!(other.next_at(at(1_700_000_000)).unwrap(), first);
    }

    #[test]
    fn a_restart_continues_above_every_nonce_handed_out_even_with_the_clock_behind() {
        let dir = std::env::temp_dir().join(format!("keyward-nonce-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let before = NonceCounter::new(Some(&dir), "kraken");
        let mut last = 0;
        for _ in 0..5 {
            last = before.next_at(at(1_700_000_000)).unwrap();
        }
        drop(before);
        let after = NonceCounter::new(Some(&dir), "kraken");
        let next = after.next_at(at(1_000)).unwrap();
        assert!(next > last, "{next} <= {last}");
        fs::write(mark_file(&dir, "kraken"), "garbage").unwrap();
        let corrupt = NonceCounter::new(Some(&dir), "kraken");
        assert!(matches!(
            corrupt.next_at(at(1_700_000_000)),
            Err(NonceError::Corrupt { .. })
        ));
        fs::remove_dir_all(&dir).unwrap();
    }
}
