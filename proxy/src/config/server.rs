//! `[server]`, `[tls]`, `[vault]` and `[audit]`: the listeners and their limits, the
//! TLS material, where the vault and its key are, and the audit log, each checked by
//! the loader before anything is bound or opened.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use keyward_policy::Rate;
use toml::Spanned;

use super::raw::{RawAudit, RawServer, RawTls, RawVault};
use super::{Loader, Place, Source, resolve};

/// Default `[audit] fsync_interval_ms`.
pub(super) const DEFAULT_FSYNC_MS: u64 = 1_000;
/// Failed authentications one source may have before the next are answered 429.
const DEFAULT_AUTH_FAILURE_RATE: &str = "20/10s";

/// `[server]`: listeners and resource limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// Where bots connect (TLS).
    pub listen: SocketAddr,
    /// Health, readiness, metrics and control; never the bot port.
    pub admin: Option<SocketAddr>,
    /// `GET /metrics` and `/healthz` alone, with no control endpoint, so it may
    /// listen on any address (a pod IP for Prometheus) without `unsafe_listen`.
    pub metrics_listen: Option<SocketAddr>,
    /// Extra names bots may use to reach keyward (certificate names and Host check).
    pub names: Vec<String>,
    /// Connection and request limits.
    pub limits: Limits,
    /// How often the configuration files are checked for changes (None: never).
    pub watch_interval: Option<Duration>,
    /// How often keyward asks the exchanges which of its orders are still open.
    pub open_orders_check: Duration,
    /// How many failed authentications one source may have in a window before
    /// further ones are answered 429.
    pub auth_failure_rate: Rate,
    /// A plain-HTTP bot listener, on loopback only.
    pub plain_listen: Option<SocketAddr>,
    /// A plain-HTTP bot listener on a Unix socket (mode 0660), whose peers'
    /// credentials are recorded and can bind a bot.
    pub listen_unix: Option<PathBuf>,
    /// Where each listener's address is written (`listen`, `admin`, `plain_listen`),
    /// so that an address keyward cannot bind is reported at its line.
    pub listeners_at: Vec<(&'static str, Place)>,
}

/// Connection and request limits of the bot listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most simultaneous bot connections.
    pub max_connections: usize,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Deadline for a complete request head; also how long a connection may stay
    /// idle (HTTP/1.1 between requests, HTTP/2 with no request in progress).
    pub header_timeout: Duration,
    /// Deadline for a complete request body.
    pub body_timeout: Duration,
    /// Deadline for the TLS handshake.
    pub handshake_timeout: Duration,
    /// Deadline for the exchange's response.
    pub upstream_timeout: Duration,
    /// Deadline for connecting to the exchange.
    pub connect_timeout: Duration,
    /// Largest exchange response passed back.
    pub max_response_bytes: usize,
}

impl Server {
    /// The setting that names `addr`, and where it is written (`listen` has a default,
    /// so it may be written nowhere).
    pub fn listener_setting(&self, addr: SocketAddr) -> (&'static str, Option<&Place>) {
        let setting = if Some(addr) == self.admin {
            "admin"
        } else if Some(addr) == self.metrics_listen {
            "metrics_listen"
        } else if Some(addr) == self.plain_listen {
            "plain_listen"
        } else {
            "listen"
        };
        let at = self
            .listeners_at
            .iter()
            .find(|(key, _)| *key == setting)
            .map(|(_, place)| place);
        (setting, at)
    }

    /// The Host check for a listener bound to `port` (the configured one, or the port
    /// the OS chose when the configuration says 0).
    pub fn host_policy(&self, ports: &[u16]) -> HostPolicy {
        HostPolicy {
            names: self.names.clone(),
            ports: ports.iter().map(u16::to_string).collect(),
        }
    }
}

/// Which `Host` values name this keyward: localhost, 127.0.0.1, ::1 and the
/// configured names, with no port or the port of one of its bot listeners.
#[derive(Debug, Clone)]
pub struct HostPolicy {
    names: Vec<String>,
    /// The listeners' ports as decimal text, written once rather than per request.
    ports: Vec<String>,
}

impl HostPolicy {
    /// True if `host` (a Host header or `:authority`) names this keyward.
    pub fn accepts(&self, host: &str) -> bool {
        let (name, port) = split_host_port(host);
        let port_ok = port.is_none_or(|p| self.ports.iter().any(|listener| p == listener));
        let name = name.trim_start_matches('[').trim_end_matches(']');
        port_ok
            && (["localhost", "127.0.0.1", "::1"]
                .iter()
                .any(|n| n.eq_ignore_ascii_case(name))
                || self.names.iter().any(|n| n.eq_ignore_ascii_case(name)))
    }
}

fn split_host_port(host: &str) -> (&str, Option<&str>) {
    if host.starts_with('[') {
        return match host.rsplit_once("]:") {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => (name, Some(port)),
        _ => (host, None),
    }
}

/// `[tls]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// Directory of `ca.pem`, `server.pem`, `server.key`.
    pub dir: PathBuf,
    /// With `client_ca`: the CA bot certificates must chain to and the revocation
    /// lists applied; a client certificate is then required on the bot listener.
    pub client_auth: Option<keyward_certs::ClientAuth>,
}

/// Where the vault key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A file holding the key or passphrase.
    File(PathBuf),
    /// An environment variable, read once at start.
    Env(String),
    /// Asked for on the terminal.
    Prompt,
}

/// `[vault]`
#[derive(Debug, Clone)]
pub struct VaultSettings {
    /// The encrypted vault file.
    pub file: PathBuf,
    /// Its key.
    pub key: KeySource,
    /// Where `file` is written.
    pub file_at: Place,
    /// Where `key` is written.
    pub key_at: Place,
}

/// The same vault, keyed the same way: where the settings are written does not count,
/// so an edit elsewhere in the file is not a change of vault (which a reload cannot
/// make for a prompted or environment key).
impl PartialEq for VaultSettings {
    fn eq(&self, other: &Self) -> bool {
        (&self.file, &self.key) == (&other.file, &other.key)
    }
}

impl Eq for VaultSettings {}

/// `[audit]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    /// The JSON-lines audit log.
    pub file: PathBuf,
    /// Rotate when the file would grow past this many bytes.
    pub max_file_bytes: Option<u64>,
    /// Rotate when the UTC day changes.
    pub rotate_daily: bool,
    /// Delete rotated files last written longer ago than this (None: keep them).
    pub retention: Option<Duration>,
    /// How often written records are flushed to disk (None: only at rotation and
    /// shutdown).
    pub fsync_interval: Option<Duration>,
}

impl Loader<'_> {
    pub(super) fn build_server(&mut self, source: &Source, raw: RawServer) -> Option<Server> {
        let unsafe_listen = raw.unsafe_listen.unwrap_or(false);
        let listen = self.socket_addr(
            source,
            raw.listen.as_ref(),
            "127.0.0.1:8443",
            "listen",
            unsafe_listen,
        );
        let admin = match &raw.admin {
            Some(admin) => self
                .socket_addr(source, Some(admin), "", "admin", unsafe_listen)
                .map(Some),
            None => Some(None),
        };
        if let (Some(listen), Some(Some(admin)), Some(span)) =
            (listen, admin, raw.admin.as_ref().map(Spanned::span))
            && listen == admin
            && listen.port() != 0
        {
            self.diagnostics.error(
                source,
                span,
                "admin must differ from listen: control endpoints never share the bot port",
            );
        }
        // Metrics reveal bot and account names and how much they trade, but nothing
        // that opens or changes anything: any address may serve them.
        let metrics_listen = match &raw.metrics_listen {
            Some(metrics) => {
                let addr = self.socket_addr(source, Some(metrics), "", "metrics_listen", true)?;
                let taken = [listen, admin.flatten()]
                    .into_iter()
                    .flatten()
                    .any(|other| other == addr);
                if taken && addr.port() != 0 {
                    self.diagnostics.error(
                        source,
                        metrics.span(),
                        "metrics_listen must differ from listen and admin",
                    );
                }
                Some(addr)
            }
            None => None,
        };
        let mut names = Vec::new();
        for name in raw.names.unwrap_or_default() {
            let ok = !name.get_ref().is_empty()
                && name.get_ref().len() <= 253
                && name
                    .get_ref()
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'));
            if ok {
                names.push(name.get_ref().to_ascii_lowercase());
            } else {
                self.diagnostics.error(
                    source,
                    name.span(),
                    "each entry of names must be a DNS name or IP address",
                );
            }
        }
        let mut timeout = |millis: &Option<Spanned<i64>>,
                           text: &Option<Spanned<String>>,
                           key: &str,
                           default: u64,
                           range: std::ops::RangeInclusive<u64>| {
            Duration::from_millis(self.duration_ms(
                source,
                millis.as_ref(),
                text.as_ref(),
                key,
                default,
                range,
            ))
        };
        let header_timeout = timeout(
            &raw.header_timeout_ms,
            &raw.header_timeout,
            "header_timeout_ms",
            10_000,
            100..=120_000,
        );
        let body_timeout = timeout(
            &raw.body_timeout_ms,
            &raw.body_timeout,
            "body_timeout_ms",
            10_000,
            100..=120_000,
        );
        let handshake_timeout = timeout(
            &raw.handshake_timeout_ms,
            &raw.handshake_timeout,
            "handshake_timeout_ms",
            10_000,
            100..=120_000,
        );
        let upstream_timeout = timeout(
            &raw.upstream_timeout_ms,
            &raw.upstream_timeout,
            "upstream_timeout_ms",
            10_000,
            100..=120_000,
        );
        let connect_timeout = timeout(
            &raw.connect_timeout_ms,
            &raw.connect_timeout,
            "connect_timeout_ms",
            5_000,
            100..=60_000,
        );
        let mut limit =
            |value: &Option<Spanned<i64>>,
             key: &str,
             default: u64,
             range: std::ops::RangeInclusive<u64>|
             -> u64 { self.int_in_range(source, value.as_ref(), key, default, range) };
        let limits = Limits {
            max_connections: limit(&raw.max_connections, "max_connections", 1024, 1..=100_000)
                as usize,
            max_body_bytes: limit(
                &raw.max_body_bytes,
                "max_body_bytes",
                65_536,
                1024..=16_777_216,
            ) as usize,
            header_timeout,
            body_timeout,
            handshake_timeout,
            upstream_timeout,
            connect_timeout,
            max_response_bytes: limit(
                &raw.max_response_bytes,
                "max_response_bytes",
                64 * 1024 * 1024,
                64 * 1024..=1024 * 1024 * 1024,
            ) as usize,
        };
        let open_orders_ms = self.duration_ms(
            source,
            raw.open_orders_check_ms.as_ref(),
            raw.open_orders_check.as_ref(),
            "open_orders_check_ms",
            10_000,
            100..=3_600_000,
        );
        let auth_failure_rate = match &raw.auth_failure_rate {
            Some(value) => self.rate(source, value, "auth_failure_rate")?,
            None => DEFAULT_AUTH_FAILURE_RATE.parse().ok()?,
        };
        let watch_ms = self.duration_ms(
            source,
            raw.watch_interval_ms.as_ref(),
            raw.watch_interval.as_ref(),
            "watch_interval_ms (0 turns watching off)",
            1_000,
            0..=600_000,
        );
        // Plain HTTP carries the token in the clear: loopback only, whatever
        // unsafe_listen says.
        let plain_listen = match &raw.plain_listen {
            Some(plain) => {
                let addr = self.socket_addr(source, Some(plain), "", "plain_listen", false)?;
                if listen.is_some_and(|l| l == addr) && addr.port() != 0 {
                    self.diagnostics.error(
                        source,
                        plain.span(),
                        "plain_listen must differ from listen",
                    );
                }
                Some(addr)
            }
            None => None,
        };
        let listeners_at = [
            ("listen", raw.listen.as_ref()),
            ("admin", raw.admin.as_ref()),
            ("metrics_listen", raw.metrics_listen.as_ref()),
            ("plain_listen", raw.plain_listen.as_ref()),
        ]
        .into_iter()
        .filter_map(|(key, value)| Some((key, source.place(&value?.span()))))
        .collect();
        Some(Server {
            listen: listen?,
            admin: admin?,
            metrics_listen,
            plain_listen,
            listen_unix: None,
            listeners_at,
            names,
            limits,
            watch_interval: (watch_ms > 0).then(|| Duration::from_millis(watch_ms.max(100))),
            open_orders_check: Duration::from_millis(open_orders_ms),
            auth_failure_rate,
        })
    }

    fn socket_addr(
        &mut self,
        source: &Source,
        value: Option<&Spanned<String>>,
        default: &str,
        key: &str,
        unsafe_listen: bool,
    ) -> Option<SocketAddr> {
        let (text, span) = match value {
            Some(v) => (v.get_ref().as_str(), v.span()),
            None => (default, 0..0),
        };
        let Ok(addr) = text.parse::<SocketAddr>() else {
            self.diagnostics.error(
                source,
                span,
                format!("{key} must be an IP address and port such as \"127.0.0.1:8443\" (host names are not resolved)"),
            );
            return None;
        };
        if !addr.ip().is_loopback() && !unsafe_listen {
            self.diagnostics.error(
                source,
                span,
                format!("{key} = \"{addr}\" is not a loopback address; bind to 127.0.0.1 or ::1, or set unsafe_listen = true in [server] if the network path is protected"),
            );
            return None;
        }
        Some(addr)
    }

    pub(super) fn build_tls(&mut self, source: &Source, dir: &Path, raw: RawTls) -> Tls {
        let tls_dir = resolve(dir, raw.dir.as_ref().map_or("tls", |d| d.get_ref()));
        let client_auth = raw.client_ca.as_ref().map(|ca| {
            let ca = resolve(dir, ca.get_ref());
            let crls = match &raw.client_crl {
                Some(list) => list.iter().map(|c| resolve(dir, c.get_ref())).collect(),
                // keyward's own CA keeps its own revocation list.
                None if ca == tls_dir.join(keyward_certs::CA_CERT) => {
                    vec![keyward_certs::clients::crl_path(&tls_dir)]
                }
                None => Vec::new(),
            };
            keyward_certs::ClientAuth { ca, crls }
        });
        if let (None, Some(crl)) = (
            &raw.client_ca,
            raw.client_crl.as_ref().and_then(|c| c.first()),
        ) {
            self.diagnostics.error(
                source,
                crl.span(),
                "client_crl needs client_ca: set client_ca to the CA bot certificates chain to",
            );
        }
        Tls {
            dir: tls_dir,
            client_auth,
        }
    }

    pub(super) fn build_vault(
        &mut self,
        source: &Source,
        dir: &Path,
        raw: RawVault,
    ) -> Option<VaultSettings> {
        let key_text = raw.key.get_ref();
        let key = if let Some(path) = key_text.strip_prefix("file:") {
            (!path.is_empty()).then(|| KeySource::File(resolve(dir, path)))
        } else if let Some(var) = key_text.strip_prefix("env:") {
            let ok = !var.is_empty() && var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            ok.then(|| KeySource::Env(var.to_owned()))
        } else if key_text == "prompt" {
            Some(KeySource::Prompt)
        } else {
            None
        };
        let Some(key) = key else {
            self.diagnostics.error(
                source,
                raw.key.span(),
                "vault key must be \"file:PATH\", \"env:VARIABLE\" or \"prompt\"",
            );
            return None;
        };
        Some(VaultSettings {
            file: resolve(dir, raw.file.get_ref()),
            key,
            file_at: source.place(&raw.file.span()),
            key_at: source.place(&raw.key.span()),
        })
    }

    pub(super) fn build_audit(
        &mut self,
        source: &Source,
        dir: &Path,
        raw: RawAudit,
    ) -> AuditSettings {
        let max_file_bytes = raw.max_file_bytes.as_ref().map(|value| {
            self.int_in_range(
                source,
                Some(value),
                "max_file_bytes",
                0,
                1_048_576..=1_099_511_627_776,
            )
        });
        let fsync_ms = self.duration_ms(
            source,
            raw.fsync_interval_ms.as_ref(),
            raw.fsync_interval.as_ref(),
            "fsync_interval_ms (0 turns periodic flushing off)",
            DEFAULT_FSYNC_MS,
            0..=3_600_000,
        );
        // At least the longest budget window: a start after a crash rebuilds the
        // budgets from the last 7 days of records.
        let retention_ms = self.duration_ms(
            source,
            None,
            raw.retention.as_ref(),
            "retention (rotated files older than this are deleted; the budgets are rebuilt from the last 7 days)",
            0,
            7 * 86_400_000..=3650 * 86_400_000,
        );
        AuditSettings {
            file: resolve(
                dir,
                raw.file.as_ref().map_or("audit.jsonl", |f| f.get_ref()),
            ),
            max_file_bytes,
            rotate_daily: raw.rotate_daily.unwrap_or(false),
            retention: (retention_ms > 0).then(|| Duration::from_millis(retention_ms)),
            fsync_interval: (fsync_ms > 0).then(|| Duration::from_millis(fsync_ms)),
        }
    }
}
