//! `[state]`: where the state that must agree across keyward replicas lives (rate
//! limits, budgets, the kill switch): this process's memory and files (the default),
//! or a Redis server every replica of an account shares.

use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::raw::RawState;
use super::{Loader, Source, resolve};

/// How long a replica waits for Redis before it treats the state as unavailable.
pub const DEFAULT_STATE_TIMEOUT_MS: u64 = 250;

/// `[state]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StateBackend {
    /// This process's memory and `state_dir` (the default).
    #[default]
    Local,
    /// A Redis server shared by every replica.
    Redis(RedisSettings),
}

/// What a request that must consult the shared state does while it is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenUnavailable {
    /// Refused with `state_unavailable` (the default for everything that spends).
    Refuse,
    /// Allowed under this replica's own rate limits.
    Allow,
}

/// Who counts the venues' WebSocket allowances per address (links opened, messages
/// counted without a login).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressAllowances {
    /// Every replica together, in Redis: replicas that leave from one address, as
    /// behind a NAT gateway (the default: never more than the venue allows).
    Shared,
    /// Each replica on its own: for replicas whose traffic leaves from addresses
    /// of their own.
    PerReplica,
}

/// A Redis backend. Its password is never in the configuration: only the file that
/// holds it, read when keyward connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// `redis://host:port[/db]` or `rediss://host:port[/db]`, with no credentials.
    pub url: String,
    /// ACL user name (Redis 6+); none: the default user.
    pub username: Option<String>,
    /// File holding the password (its first line).
    pub password_file: Option<PathBuf>,
    /// PEM file of the CA that signed the server's certificate (`rediss://`); none:
    /// the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Prefix of every key keyward writes, so replicas of different deployments can
    /// share one server.
    pub namespace: String,
    /// How long a request waits for Redis before it counts as unavailable.
    pub timeout: Duration,
    /// What reads (and cancels) do while Redis is unavailable.
    pub reads_when_unavailable: WhenUnavailable,
    /// Who counts the venues' WebSocket allowances per address.
    pub address_allowances: AddressAllowances,
}

impl Loader<'_> {
    pub(super) fn build_state(
        &mut self,
        source: &Source,
        dir: &Path,
        raw: RawState,
    ) -> Option<StateBackend> {
        let Some(backend) = raw.backend.as_ref() else {
            let others = raw.username.is_some()
                || raw.password_file.is_some()
                || raw.ca_file.is_some()
                || raw.namespace.is_some()
                || raw.timeout_ms.is_some()
                || raw.timeout.is_some()
                || raw.reads_when_unavailable.is_some()
                || raw.address_allowances.is_some();
            if others {
                self.diagnostics.file_error(
                    &source.path,
                    "[state] sets Redis options without a backend; add backend = \"redis://HOST:PORT\" (or remove them)",
                );
            }
            return Some(StateBackend::Local);
        };
        let text = backend.get_ref().as_str();
        if text == "local" {
            for (key, present) in [
                ("username", raw.username.is_some()),
                ("password_file", raw.password_file.is_some()),
                ("ca_file", raw.ca_file.is_some()),
                ("namespace", raw.namespace.is_some()),
                ("address_allowances", raw.address_allowances.is_some()),
            ] {
                if present {
                    self.diagnostics.error(
                        source,
                        backend.span(),
                        format!("[state] {key} applies only to a Redis backend (backend = \"redis://HOST:PORT\")"),
                    );
                }
            }
            return Some(StateBackend::Local);
        }
        let url = self.redis_url(source, backend)?;
        let timeout_ms = self.duration_ms(
            source,
            raw.timeout_ms.as_ref(),
            raw.timeout.as_ref(),
            "timeout_ms",
            DEFAULT_STATE_TIMEOUT_MS,
            10..=10_000,
        );
        let reads_when_unavailable = match raw.reads_when_unavailable.as_ref() {
            None => WhenUnavailable::Refuse,
            Some(value) => match value.get_ref().as_str() {
                "refuse" => WhenUnavailable::Refuse,
                "allow" => WhenUnavailable::Allow,
                other => {
                    self.diagnostics.error(
                        source,
                        value.span(),
                        format!("reads_when_unavailable must be \"refuse\" or \"allow\", not \"{other}\""),
                    );
                    WhenUnavailable::Refuse
                }
            },
        };
        let address_allowances = match raw.address_allowances.as_ref() {
            None => AddressAllowances::Shared,
            Some(value) => match value.get_ref().as_str() {
                "shared" => AddressAllowances::Shared,
                "per_replica" => AddressAllowances::PerReplica,
                other => {
                    self.diagnostics.error(
                        source,
                        value.span(),
                        format!("address_allowances must be \"shared\" or \"per_replica\", not \"{other}\""),
                    );
                    AddressAllowances::Shared
                }
            },
        };
        let namespace = match raw.namespace.as_ref() {
            None => "keyward".to_owned(),
            Some(value) => {
                let name = value.get_ref();
                let valid = !name.is_empty()
                    && name.len() <= 64
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if !valid {
                    self.diagnostics.error(
                        source,
                        value.span(),
                        "namespace must be 1 to 64 letters, digits, '-' or '_'",
                    );
                }
                name.clone()
            }
        };
        let username = raw.username.as_ref().map(|name| {
            if name.get_ref().is_empty() || name.get_ref().chars().any(char::is_whitespace) {
                self.diagnostics.error(
                    source,
                    name.span(),
                    "username must be a Redis ACL user name, without spaces",
                );
            }
            name.get_ref().clone()
        });
        let file =
            |value: &Option<Spanned<String>>| value.as_ref().map(|f| resolve(dir, f.get_ref()));
        let ca_file = file(&raw.ca_file);
        if ca_file.is_some() && !url.starts_with("rediss://") {
            self.diagnostics.error(
                source,
                backend.span(),
                "ca_file is for a TLS connection; write the backend as rediss://HOST:PORT",
            );
        }
        Some(StateBackend::Redis(RedisSettings {
            url,
            username,
            password_file: file(&raw.password_file),
            ca_file,
            namespace,
            timeout: Duration::from_millis(timeout_ms),
            reads_when_unavailable,
            address_allowances,
        }))
    }

    /// The backend URL, refused if it is not Redis's or carries a credential.
    fn redis_url(&mut self, source: &Source, backend: &Spanned<String>) -> Option<String> {
        let text = backend.get_ref();
        let Some(rest) = text
            .strip_prefix("redis://")
            .or_else(|| text.strip_prefix("rediss://"))
        else {
            self.diagnostics.error(
                source,
                backend.span(),
                "backend must be \"local\" or a Redis URL: redis://HOST:PORT or rediss://HOST:PORT (TLS)",
            );
            return None;
        };
        let (authority, db) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.contains('@') {
            // Never echo it back: the part before `@` may be a password.
            self.diagnostics.error(
                source,
                backend.span(),
                "backend must not carry a user name or password; set username and password_file in [state]",
            );
            return None;
        }
        let port_ok = authority.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        let db_ok = db.is_empty() || (db.len() <= 2 && db.bytes().all(|b| b.is_ascii_digit()));
        if !port_ok || !db_ok || text.contains(['?', '#', ' ']) {
            self.diagnostics.error(
                source,
                backend.span(),
                format!("backend \"{text}\" is not redis://HOST:PORT[/DB] (e.g. redis://127.0.0.1:6379/0)"),
            );
            return None;
        }
        Some(text.clone())
    }
}
