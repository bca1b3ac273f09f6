//! `keyward.toml` and its included bot files: loading, and turning the raw TOML into
//! validated types. Every mistake in every file is reported in one run, each with its
//! file, line, column and one sentence on how to mend it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use keyward_policy::{
    AccountSpec, Amount, Band, BotPolicy, BotSpec, BudgetLimits, EndpointClass, Grant, Mode,
    Policy, PolicyError, Rate, Rule, Symbol, TokenDigest,
};
use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use keyward_venues::{Route, VenueId, route};

mod diagnostic;
mod files;
mod raw;

pub use diagnostic::{Diagnostic, Diagnostics, Severity, Source};
pub use files::{ConfigFiles, Disk, InMemory};
use raw::{RawAccount, RawAudit, RawBot, RawDate, RawDecimal, RawServer, RawTls, RawVault};

/// Default for `max_token_days`.
pub const DEFAULT_MAX_TOKEN_DAYS: u32 = 90;

/// The validated configuration. Nothing in it is re-checked after loading.
#[derive(Debug)]
pub struct Config {
    /// The main file.
    pub path: PathBuf,
    /// Every file read (main first, then includes in order).
    pub files: Vec<PathBuf>,
    /// The include patterns, resolved, so a watcher can notice files that start to
    /// match them.
    pub include_patterns: Vec<PathBuf>,
    /// `[server]`
    pub server: Server,
    /// `[tls]`
    pub tls: Tls,
    /// `[vault]`
    pub vault: VaultSettings,
    /// `[audit]`
    pub audit: AuditSettings,
    /// `[accounts.*]`
    pub accounts: BTreeMap<String, Account>,
    /// Bots, tokens and limits.
    pub policy: Policy,
    /// Where keyward keeps its own state: the kill switch's file and the control
    /// socket (default: the audit log's directory).
    pub state_dir: PathBuf,
    /// Where each bot is written, for `explain` and `token`.
    pub bot_sources: BTreeMap<String, BotSource>,
    /// Bots bound to a client certificate or a peer uid.
    pub bindings: BTreeMap<String, Binding>,
    /// Longest allowed token lifetime.
    pub max_token_days: u32,
    /// Problems that did not stop the load.
    pub warnings: Vec<Diagnostic>,
}

/// Where a bot's table and keys are in the configuration files.
#[derive(Debug, Clone)]
pub struct BotSource {
    /// The file holding `[bots.NAME]`.
    pub file: PathBuf,
    /// (line, column) of the table header and of each key.
    pub positions: BTreeMap<String, (usize, usize)>,
}

impl BotSource {
    /// `file:line:col` of a key (or of the table when the key is absent).
    pub fn locate(&self, key: &str) -> String {
        let (line, column) = self
            .positions
            .get(key)
            .or_else(|| self.positions.get(""))
            .copied()
            .unwrap_or((1, 1));
        format!("{}:{line}:{column}", self.file.display())
    }
}

/// Default `[audit] fsync_interval_ms`.
const DEFAULT_FSYNC_MS: u64 = 1_000;

/// `[server]`: listeners and resource limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// Where bots connect (TLS).
    pub listen: SocketAddr,
    /// Health, readiness, metrics and control; never the bot port.
    pub admin: Option<SocketAddr>,
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

/// What a bot must prove besides its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Binding {
    /// The TLS client certificate must name the bot.
    pub client_cert: bool,
    /// The request must come over the Unix socket from this uid.
    pub peer_uid: Option<u32>,
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultSettings {
    /// The encrypted vault file.
    pub file: PathBuf,
    /// Its key.
    pub key: KeySource,
}

/// `[audit]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    /// The JSON-lines audit log.
    pub file: PathBuf,
    /// Rotate when the file would grow past this many bytes.
    pub max_file_bytes: Option<u64>,
    /// Rotate when the UTC day changes.
    pub rotate_daily: bool,
    /// How often written records are flushed to disk (None: only at rotation and
    /// shutdown).
    pub fsync_interval: Option<Duration>,
}

/// `[accounts.NAME]`: one exchange account and its key.
#[derive(Debug, Clone)]
pub struct Account {
    /// Account name.
    pub name: String,
    /// Which exchange and product.
    pub venue: VenueId,
    /// Vault entry holding the key.
    pub secret: String,
    /// `https://host[:port]` requests go to.
    pub upstream: http::Uri,
    /// CA bundle to trust for the upstream instead of the web PKI.
    pub upstream_ca: Option<PathBuf>,
    /// Receive window keyward signs with.
    pub recv_window_ms: u32,
    /// Request rate across all the account's bots.
    pub rate: Option<Rate>,
    /// Serve public market data to clients without a token.
    pub public_market_data: bool,
    /// Stop sending when the exchange reports usage within this percentage of a limit.
    pub exchange_headroom_percent: u8,
    /// How many times the venue's documented default limits this account has (a
    /// higher tier, a test exchange).
    pub exchange_limits_multiplier: u64,
    /// Rolling budgets and the open-order limit shared by the account's bots.
    pub budget: BudgetLimits,
    /// How old a reference price may be and still be used.
    pub reference_max_age: Duration,
    /// How long a client order id may not be used again on the account.
    pub client_order_id_window: Duration,
    /// Freeze the account when one of its bots is refused this often.
    pub freeze_after_denials: Option<Rate>,
}

impl Config {
    /// Loads and validates `path` and its includes; `now` decides token lifetimes.
    ///
    /// The path is made absolute first, so every path the file names is resolved
    /// against the file's own directory however keyward was started (`cd DIR &&
    /// keyward --config keyward.toml serve` once left the state directory the empty
    /// path, and Kraken's nonce mark could not be written).
    pub fn load(path: &Path, now: SystemTime) -> Result<Self, Diagnostics> {
        let absolute = std::path::absolute(path);
        Self::load_from(&Disk, absolute.as_deref().unwrap_or(path), now)
    }

    /// [`Config::load`] reading `path` and its includes from `files`.
    pub fn load_from(
        files: &dyn ConfigFiles,
        path: &Path,
        now: SystemTime,
    ) -> Result<Self, Diagnostics> {
        let mut loader = Loader {
            files,
            diagnostics: Diagnostics::default(),
            now,
            read_order: Vec::new(),
            token_owners: std::collections::HashMap::new(),
            client_certs: false,
            unix_listener: false,
            bindings: BTreeMap::new(),
        };
        let config = loader.load(path);
        loader.diagnostics.sort(&loader.read_order);
        match config {
            Some(config) if !loader.diagnostics.has_errors() => Ok(Self {
                warnings: loader.diagnostics.warnings().cloned().collect(),
                ..config
            }),
            _ => Err(loader.diagnostics),
        }
    }

    /// The account of a bot.
    pub fn account_of(&self, bot: &BotPolicy) -> Option<&Account> {
        self.accounts.get(bot.account())
    }
}

/// Accounts as declared (with their venue when it parsed) and those fully valid.
#[derive(Default)]
struct Accounts {
    declared: BTreeMap<String, Option<VenueId>>,
    valid: BTreeMap<String, Account>,
}

struct Loader<'f> {
    files: &'f dyn ConfigFiles,
    diagnostics: Diagnostics,
    now: SystemTime,
    /// Files in the order they were read, for sorting diagnostics.
    read_order: Vec<PathBuf>,
    /// Where each token digest was first listed, to refuse a digest on two bots.
    token_owners: std::collections::HashMap<TokenDigest, (String, String)>,
    /// `[tls] client_ca` is set, so bots can be bound to certificates.
    client_certs: bool,
    /// `[server] listen_unix` is set, so bots can be bound to a uid.
    unix_listener: bool,
    /// Bindings found so far.
    bindings: BTreeMap<String, Binding>,
}

const TOP_KEYS: &[&str] = &[
    "include",
    "max_token_days",
    "server",
    "tls",
    "vault",
    "audit",
    "accounts",
    "bots",
];
const CLASS_NAMES: &str = "market, read, trade, cancel, configure";
/// Failed authentications one source may have before the next are answered 429.
const DEFAULT_AUTH_FAILURE_RATE: &str = "20/10s";

impl Loader<'_> {
    fn load(&mut self, path: &Path) -> Option<Config> {
        let main = self.read(path)?;
        let main_table = self.parse(&main)?;
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let mut top: BTreeMap<String, Spanned<DeValue<'_>>> = BTreeMap::new();
        for (key, value) in main_table.get_ref() {
            let name = key.get_ref().to_string();
            if TOP_KEYS.contains(&name.as_str()) {
                top.insert(name, value.clone());
            } else {
                let hint = suggestion(&name, TOP_KEYS);
                self.diagnostics.error(
                    &main,
                    key.span(),
                    format!(
                        "unknown top-level key `{name}`{hint}; the top level takes {}",
                        TOP_KEYS.join(", ")
                    ),
                );
            }
        }

        let max_token_days = match top.get("max_token_days") {
            None => DEFAULT_MAX_TOKEN_DAYS,
            Some(value) => match value.get_ref() {
                DeValue::Integer(i) => match i.as_str().parse::<u32>() {
                    Ok(days @ 1..=3650) => days,
                    _ => {
                        self.diagnostics.error(
                            &main,
                            value.span(),
                            "max_token_days must be a whole number of days from 1 to 3650",
                        );
                        DEFAULT_MAX_TOKEN_DAYS
                    }
                },
                _ => {
                    self.diagnostics.error(
                        &main,
                        value.span(),
                        "max_token_days must be a whole number of days, e.g. 90",
                    );
                    DEFAULT_MAX_TOKEN_DAYS
                }
            },
        };

        let server: RawServer = match top.get("server") {
            Some(value) => self.section(&main, value, "[server]").unwrap_or_default(),
            None => RawServer::default(),
        };
        let state_dir = server
            .state_dir
            .as_ref()
            .map(|d| resolve(&dir, d.get_ref()));
        let listen_unix = server
            .listen_unix
            .as_ref()
            .map(|p| resolve(&dir, p.get_ref()));
        self.unix_listener = listen_unix.is_some();
        let server = self.build_server(&main, server).map(|server| Server {
            listen_unix,
            ..server
        });
        let tls: RawTls = match top.get("tls") {
            Some(value) => self.section(&main, value, "[tls]").unwrap_or_default(),
            None => RawTls::default(),
        };
        let tls = self.build_tls(&main, &dir, tls);
        self.client_certs = tls.client_auth.is_some();
        let vault = match top.get("vault") {
            Some(value) => self
                .section::<RawVault>(&main, value, "[vault]")
                .and_then(|v| self.build_vault(&main, &dir, v)),
            None => {
                self.diagnostics.error(
                    &main,
                    0..0,
                    "missing [vault] table; add one with `file` (the encrypted vault) and `key` (file:PATH, env:VAR or prompt)",
                );
                None
            }
        };
        let audit = match top.get("audit") {
            Some(value) => self
                .section::<RawAudit>(&main, value, "[audit]")
                .map(|a| self.build_audit(&main, &dir, a)),
            None => Some(AuditSettings {
                file: dir.join("audit.jsonl"),
                max_file_bytes: None,
                rotate_daily: false,
                fsync_interval: Some(Duration::from_millis(DEFAULT_FSYNC_MS)),
            }),
        };
        let accounts = match top.get("accounts") {
            Some(value) => self.build_accounts(&main, value),
            None => Accounts::default(),
        };

        // Included files are read in full before any is parsed, so every parsed table
        // can borrow from its text for the rest of the load.
        let (include_paths, include_patterns) = match top.get("include") {
            Some(include) => self.includes(&main, &dir, include),
            None => (Vec::new(), Vec::new()),
        };
        let included: Vec<Source> = include_paths.iter().filter_map(|p| self.read(p)).collect();
        let mut bot_tables: Vec<(&Source, Spanned<DeValue<'_>>)> = Vec::new();
        if let Some(value) = top.get("bots") {
            bot_tables.push((&main, value.clone()));
        }
        for source in &included {
            let Some(table) = self.parse(source) else {
                continue;
            };
            for (key, value) in table.get_ref() {
                if key.get_ref() == "bots" {
                    bot_tables.push((source, value.clone()));
                } else {
                    self.diagnostics.error(
                        source,
                        key.span(),
                        format!("`{}` cannot appear in an included file; included files hold only [bots.*] tables", key.get_ref()),
                    );
                }
            }
        }
        let (bots, bot_sources) = self.build_bots(&bot_tables, &accounts.declared, max_token_days);
        let accounts = accounts.valid;
        let account_specs = accounts
            .values()
            .map(|a| AccountSpec {
                name: a.name.clone(),
                rate: a.rate,
                public_market_data: a.public_market_data,
            })
            .collect();
        let policy = match Policy::new(bots, account_specs) {
            Ok(policy) => policy,
            Err(errors) => {
                for error in errors {
                    self.diagnostics.file_error(path, error.to_string());
                }
                return None;
            }
        };
        let mut files = vec![path.to_path_buf()];
        files.extend(include_paths);
        Some(Config {
            path: path.to_path_buf(),
            files,
            include_patterns,
            server: server?,
            tls,
            vault: vault?,
            state_dir: state_dir.unwrap_or_else(|| {
                audit
                    .as_ref()
                    .and_then(|a| a.file.parent().map(Path::to_path_buf))
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or_else(|| dir.clone())
            }),
            audit: audit?,
            accounts,
            policy,
            bot_sources,
            bindings: std::mem::take(&mut self.bindings),
            max_token_days,
            warnings: Vec::new(),
        })
    }

    fn read(&mut self, path: &Path) -> Option<Source> {
        self.read_order.push(path.to_path_buf());
        for problem in self.files.ownership_problems(path) {
            self.diagnostics.file_error(path, problem);
        }
        match self.files.read(path) {
            Ok(text) => Some(Source::new(path.to_path_buf(), Arc::from(text))),
            Err(e) => {
                self.diagnostics.file_error(
                    path,
                    format!(
                        "cannot read the file ({e}); check the path and that keyward may read it"
                    ),
                );
                None
            }
        }
    }

    fn parse<'a>(&mut self, source: &'a Source) -> Option<Spanned<DeTable<'a>>> {
        let (table, errors) = DeTable::parse_recoverable(&source.text);
        if errors.is_empty() {
            return Some(table);
        }
        for error in errors {
            let span = error.span().unwrap_or(0..0);
            self.diagnostics.error(
                source,
                span,
                format!("TOML syntax: {}", error.message().trim_end()),
            );
        }
        None
    }

    fn includes(
        &mut self,
        source: &Source,
        dir: &Path,
        include: &Spanned<DeValue<'_>>,
    ) -> (Vec<PathBuf>, Vec<PathBuf>) {
        let DeValue::Array(patterns) = include.get_ref() else {
            self.diagnostics.error(
                source,
                include.span(),
                "include must be a list of glob patterns, e.g. [\"bots.d/*.toml\"]",
            );
            return (Vec::new(), Vec::new());
        };
        let mut files = Vec::new();
        let mut resolved = Vec::new();
        for pattern in patterns.iter() {
            let DeValue::String(text) = pattern.get_ref() else {
                self.diagnostics.error(
                    source,
                    pattern.span(),
                    "each include entry must be a string glob pattern",
                );
                continue;
            };
            let full = resolve(dir, text);
            resolved.push(full.clone());
            let matched = self.files.glob(&full.to_string_lossy());
            match matched {
                Ok(mut paths) => {
                    paths.sort();
                    if paths.is_empty() {
                        self.diagnostics.warning(
                            source,
                            pattern.span(),
                            format!("include pattern `{text}` matches no files"),
                        );
                    }
                    files.extend(paths);
                }
                Err(e) => self.diagnostics.error(
                    source,
                    pattern.span(),
                    format!("include pattern `{text}` is not a valid glob: {e}"),
                ),
            }
        }
        (files, resolved)
    }

    /// An integer setting within `range`, or `default` when absent; out of range is an
    /// error naming the range.
    fn int_in_range(
        &mut self,
        source: &Source,
        value: Option<&Spanned<i64>>,
        key: &str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> u64 {
        let Some(value) = value else {
            return default;
        };
        match u64::try_from(*value.get_ref()) {
            Ok(n) if range.contains(&n) => n,
            _ => {
                self.diagnostics.error(
                    source,
                    value.span(),
                    format!(
                        "{key} must be between {} and {}",
                        range.start(),
                        range.end()
                    ),
                );
                default
            }
        }
    }

    fn build_audit(&mut self, source: &Source, dir: &Path, raw: RawAudit) -> AuditSettings {
        let max_file_bytes = raw.max_file_bytes.as_ref().map(|value| {
            self.int_in_range(
                source,
                Some(value),
                "max_file_bytes",
                0,
                1_048_576..=1_099_511_627_776,
            )
        });
        let fsync_ms = self.int_in_range(
            source,
            raw.fsync_interval_ms.as_ref(),
            "fsync_interval_ms (0 turns periodic flushing off)",
            DEFAULT_FSYNC_MS,
            0..=3_600_000,
        );
        AuditSettings {
            file: resolve(
                dir,
                raw.file.as_ref().map_or("audit.jsonl", |f| f.get_ref()),
            ),
            max_file_bytes,
            rotate_daily: raw.rotate_daily.unwrap_or(false),
            fsync_interval: (fsync_ms > 0).then(|| Duration::from_millis(fsync_ms)),
        }
    }

    /// Deserialises one table, reporting every unknown key and wrongly typed value
    /// rather than stopping at the first: each offending key is reported and removed,
    /// and the table is tried again.
    fn section<T: DeserializeOwned>(
        &mut self,
        source: &Source,
        value: &Spanned<DeValue<'_>>,
        name: &str,
    ) -> Option<T> {
        if !matches!(value.get_ref(), DeValue::Table(_)) {
            self.diagnostics
                .error(source, value.span(), format!("{name} must be a table"));
            return None;
        }
        let table_span = value.span();
        let mut value = value.clone();
        let mut removed: Vec<String> = Vec::new();
        loop {
            let error = match T::deserialize(ValueDeserializer::from(value.clone())) {
                Ok(parsed) => return Some(parsed),
                Err(error) => error,
            };
            let message = error.message().to_owned();
            let DeValue::Table(table) = value.get_mut() else {
                return None;
            };
            if let Some(field) = backticked_after(&message, "unknown field ") {
                let span = key_span(table, &field).or(error.span()).unwrap_or(0..0);
                let expected =
                    backticked_all(message.split_once("expected").map_or("", |(_, rest)| rest));
                let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
                let hint = suggestion(&field, &expected);
                self.diagnostics.error(
                    source,
                    span,
                    format!(
                        "unknown key `{field}` in {name}{hint}; {name} takes {}",
                        expected.join(", ")
                    ),
                );
                remove_key(table, &field);
                removed.push(field);
                continue;
            }
            if let Some(field) = backticked_after(&message, "missing field ") {
                if !removed.contains(&field) {
                    self.diagnostics.error(
                        source,
                        table_span,
                        format!("{name} is missing the required key `{field}`"),
                    );
                }
                return None;
            }
            let span = error.span().unwrap_or_else(|| table_span.clone());
            let offending = table
                .iter()
                .find(|(k, v)| contains(v.span(), &span) || contains(k.span(), &span))
                .map(|(k, _)| k.get_ref().to_string());
            match offending {
                Some(key) => {
                    self.diagnostics.error(
                        source,
                        span,
                        format!(
                            "`{key}` in {name}: {}{}",
                            describe_serde(&message),
                            key_hint(&key)
                        ),
                    );
                    remove_key(table, &key);
                    removed.push(key);
                }
                None => {
                    self.diagnostics.error(
                        source,
                        span,
                        format!("{name}: {}", describe_serde(&message)),
                    );
                    return None;
                }
            }
        }
    }

    fn build_server(&mut self, source: &Source, raw: RawServer) -> Option<Server> {
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
            header_timeout: Duration::from_millis(limit(
                &raw.header_timeout_ms,
                "header_timeout_ms",
                10_000,
                100..=120_000,
            )),
            body_timeout: Duration::from_millis(limit(
                &raw.body_timeout_ms,
                "body_timeout_ms",
                10_000,
                100..=120_000,
            )),
            handshake_timeout: Duration::from_millis(limit(
                &raw.handshake_timeout_ms,
                "handshake_timeout_ms",
                10_000,
                100..=120_000,
            )),
            upstream_timeout: Duration::from_millis(limit(
                &raw.upstream_timeout_ms,
                "upstream_timeout_ms",
                10_000,
                100..=120_000,
            )),
            connect_timeout: Duration::from_millis(limit(
                &raw.connect_timeout_ms,
                "connect_timeout_ms",
                5_000,
                100..=60_000,
            )),
            max_response_bytes: limit(
                &raw.max_response_bytes,
                "max_response_bytes",
                64 * 1024 * 1024,
                64 * 1024..=1024 * 1024 * 1024,
            ) as usize,
        };
        let open_orders_ms = self.int_in_range(
            source,
            raw.open_orders_check_ms.as_ref(),
            "open_orders_check_ms",
            10_000,
            100..=3_600_000,
        );
        let auth_failure_rate = match &raw.auth_failure_rate {
            Some(value) => self.rate(source, value, "auth_failure_rate")?,
            None => DEFAULT_AUTH_FAILURE_RATE.parse().ok()?,
        };
        let watch_ms = self.int_in_range(
            source,
            raw.watch_interval_ms.as_ref(),
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
        Some(Server {
            listen: listen?,
            admin: admin?,
            plain_listen,
            listen_unix: None,
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

    fn build_tls(&mut self, source: &Source, dir: &Path, raw: RawTls) -> Tls {
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

    fn build_vault(&mut self, source: &Source, dir: &Path, raw: RawVault) -> Option<VaultSettings> {
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
        })
    }

    fn build_accounts(&mut self, source: &Source, value: &Spanned<DeValue<'_>>) -> Accounts {
        let mut accounts = Accounts::default();
        let mut public_by_venue: BTreeMap<VenueId, String> = BTreeMap::new();
        let DeValue::Table(table) = value.get_ref() else {
            self.diagnostics.error(
                source,
                value.span(),
                "accounts must be tables, e.g. [accounts.binance-main]",
            );
            return accounts;
        };
        for (key, value) in table.iter() {
            let name = key.get_ref().to_string();
            if !is_valid_name(&name) {
                self.diagnostics.error(
                    source,
                    key.span(),
                    format!("account name `{name}` must be 1 to 64 of a-z, 0-9, '_' and '-'"),
                );
            }
            let raw = self.section::<RawAccount>(source, value, &format!("[accounts.{name}]"));
            let venue = raw
                .as_ref()
                .and_then(|r| VenueId::from_name(r.venue.get_ref()));
            if let (Some(raw), Some(venue)) = (&raw, venue)
                && let Some(public) = raw.public_market_data.as_ref().filter(|p| *p.get_ref())
            {
                match public_by_venue.get(&venue) {
                    Some(other) => self.diagnostics.error(
                        source,
                        public.span(),
                        format!(
                            "account `{other}` already serves {venue} public market data; only one account per venue may"
                        ),
                    ),
                    None => {
                        public_by_venue.insert(venue, name.clone());
                    }
                }
            }
            accounts.declared.insert(name.clone(), venue);
            if let Some(account) = raw.and_then(|raw| self.build_account(source, &name, raw)) {
                accounts.valid.insert(name, account);
            }
        }
        accounts
    }

    fn build_account(&mut self, source: &Source, name: &str, raw: RawAccount) -> Option<Account> {
        let venue = VenueId::from_name(raw.venue.get_ref());
        if venue.is_none() {
            let names: Vec<&str> = VenueId::ALL.iter().map(|v| v.name()).collect();
            let hint = suggestion(raw.venue.get_ref(), &names);
            self.diagnostics.error(
                source,
                raw.venue.span(),
                format!(
                    "unknown venue `{}`{hint}; this keyward supports {}",
                    raw.venue.get_ref(),
                    names.join(", ")
                ),
            );
        }
        let secret_ok = is_valid_name(raw.secret.get_ref());
        if !secret_ok {
            self.diagnostics.error(
                source,
                raw.secret.span(),
                "secret must name a vault entry: 1 to 64 of a-z, 0-9, '_' and '-'",
            );
        }
        let upstream_text = raw
            .upstream
            .as_ref()
            .map(|u| u.get_ref().clone())
            .or_else(|| venue.map(|v| v.adapter().default_upstream().to_owned()));
        let upstream_span = raw
            .upstream
            .as_ref()
            .map_or_else(|| raw.venue.span(), Spanned::span);
        let upstream = upstream_text.and_then(|text| match parse_upstream(&text) {
            Ok(uri) => Some(uri),
            Err(message) => {
                self.diagnostics
                    .error(source, upstream_span.clone(), message);
                None
            }
        });
        let recv_window_ms = match &raw.recv_window_ms {
            None => 5_000,
            Some(v) => match u32::try_from(*v.get_ref()) {
                Ok(ms @ 1..=60_000) => ms,
                _ => {
                    self.diagnostics.error(
                        source,
                        v.span(),
                        "recv_window_ms must be from 1 to 60000 (the exchange's maximum)",
                    );
                    5_000
                }
            },
        };
        let rate = raw.rate.as_ref().and_then(|r| self.rate(source, r, "rate"));
        let exchange_headroom_percent = self.int_in_range(
            source,
            raw.exchange_headroom_percent.as_ref(),
            "exchange_headroom_percent",
            10,
            0..=50,
        ) as u8;
        let budget = self.budget(
            source,
            raw.daily_notional.as_ref(),
            raw.max_orders.as_ref(),
            raw.max_open_orders.as_ref(),
        );
        let reference_max_age = Duration::from_millis(self.int_in_range(
            source,
            raw.reference_max_age_ms.as_ref(),
            "reference_max_age_ms",
            5_000,
            500..=300_000,
        ));
        let exchange_limits_multiplier = self.int_in_range(
            source,
            raw.exchange_limits_multiplier.as_ref(),
            "exchange_limits_multiplier",
            1,
            1..=1_000_000,
        );
        let client_order_id_window = Duration::from_millis(self.int_in_range(
            source,
            raw.client_order_id_window_ms.as_ref(),
            "client_order_id_window_ms",
            86_400_000,
            0..=7 * 86_400_000,
        ));
        let freeze_after_denials = raw
            .freeze_after_denials
            .as_ref()
            .and_then(|r| self.rate(source, r, "freeze_after_denials"));
        Some(Account {
            name: name.to_owned(),
            venue: venue?,
            secret: raw.secret.get_ref().clone(),
            upstream: upstream?,
            upstream_ca: raw.upstream_ca.map(|p| PathBuf::from(p.get_ref())),
            recv_window_ms,
            rate,
            public_market_data: raw.public_market_data.is_some_and(|p| *p.get_ref()),
            exchange_headroom_percent,
            exchange_limits_multiplier,
            budget,
            reference_max_age,
            client_order_id_window,
            freeze_after_denials,
        })
        .filter(|_| secret_ok)
    }

    /// `daily_notional`, `max_orders` and `max_open_orders` of a bot or account table.
    fn budget(
        &mut self,
        source: &Source,
        daily_notional: Option<&Spanned<RawDecimal>>,
        max_orders: Option<&Spanned<String>>,
        max_open_orders: Option<&Spanned<i64>>,
    ) -> BudgetLimits {
        let daily_notional = daily_notional.and_then(|v| self.amount(source, v, "daily_notional"));
        let max_orders = max_orders.and_then(|v| {
            let rate = self.rate(source, v, "max_orders")?;
            if rate.period() > Duration::from_secs(7 * 86_400) {
                self.diagnostics.error(
                    source,
                    v.span(),
                    "max_orders counts over at most 7 days, e.g. \"500/d\"",
                );
                return None;
            }
            Some(rate)
        });
        let max_open_orders = max_open_orders.map(|v| {
            let n = self.int_in_range(source, Some(v), "max_open_orders", 0, 1..=100_000);
            u32::try_from(n).unwrap_or(u32::MAX)
        });
        BudgetLimits {
            daily_notional,
            max_orders,
            max_open_orders,
        }
    }

    fn rate(&mut self, source: &Source, value: &Spanned<String>, key: &str) -> Option<Rate> {
        match value.get_ref().parse::<Rate>() {
            Ok(rate) => Some(rate),
            Err(e) => {
                self.diagnostics
                    .error(source, value.span(), format!("{key}: {e}"));
                None
            }
        }
    }

    fn build_bots(
        &mut self,
        tables: &[(&Source, Spanned<DeValue<'_>>)],
        accounts: &BTreeMap<String, Option<VenueId>>,
        max_token_days: u32,
    ) -> (Vec<BotPolicy>, BTreeMap<String, BotSource>) {
        let mut bots = Vec::new();
        let mut sources: BTreeMap<String, BotSource> = BTreeMap::new();
        for (source, value) in tables {
            let DeValue::Table(table) = value.get_ref() else {
                self.diagnostics.error(
                    source,
                    value.span(),
                    "bots must be tables, e.g. [bots.grid]",
                );
                continue;
            };
            for (key, value) in table.iter() {
                let name = key.get_ref().to_string();
                if let Some(existing) = sources.get(&name) {
                    let first = existing.locate("");
                    self.diagnostics.error(
                        source,
                        key.span(),
                        format!("bot `{name}` is already defined at {first}; rename one of them"),
                    );
                    continue;
                }
                let mut positions = BTreeMap::new();
                positions.insert(String::new(), source.position(key.span().start));
                if let DeValue::Table(fields) = value.get_ref() {
                    for (field, _) in fields.iter() {
                        positions.insert(
                            field.get_ref().to_string(),
                            source.position(field.span().start),
                        );
                    }
                }
                sources.insert(
                    name.clone(),
                    BotSource {
                        file: source.path.clone(),
                        positions,
                    },
                );
                let Some(raw) = self.section::<RawBot>(source, value, &format!("[bots.{name}]"))
                else {
                    continue;
                };
                if let Some(bot) =
                    self.build_bot(source, key.span(), &name, raw, accounts, max_token_days)
                {
                    bots.push(bot);
                }
            }
        }
        (bots, sources)
    }

    #[allow(clippy::too_many_lines)]
    fn build_bot(
        &mut self,
        source: &Source,
        header: std::ops::Range<usize>,
        name: &str,
        raw: RawBot,
        accounts: &BTreeMap<String, Option<VenueId>>,
        max_token_days: u32,
    ) -> Option<BotPolicy> {
        let errors_before = self.error_count();
        let table = format!("[bots.{name}]");
        self.binding(source, name, &raw);
        let account = accounts.get(raw.account.get_ref());
        if account.is_none() {
            let names: Vec<&str> = accounts.keys().map(String::as_str).collect();
            let hint = suggestion(raw.account.get_ref(), &names);
            self.diagnostics.error(
                source,
                raw.account.span(),
                format!(
                    "account `{}` is not defined{hint}; add [accounts.{}] or use one of: {}",
                    raw.account.get_ref(),
                    raw.account.get_ref(),
                    names.join(", ")
                ),
            );
        }
        let venue = account.copied().flatten().map(VenueId::adapter);

        let mut tokens = Vec::new();
        let mut keys = keyward_policy::BotKeys::default();
        match &raw.tokens {
            None => self.diagnostics.error(
                source,
                header.clone(),
                format!("{table} has no `tokens`; run `keyward token new {name}` to issue one"),
            ),
            Some(list) => {
                for token in list.get_ref() {
                    if token.get_ref().starts_with(keyward_policy::P256_KEY_PREFIX) {
                        self.bot_key(source, token, name, venue, &mut keys.active);
                        continue;
                    }
                    match token.get_ref().parse::<TokenDigest>() {
                        Ok(digest) => {
                            if self.claim_digest(source, token, digest, name) {
                                tokens.push(digest);
                            }
                        }
                        Err(e) => self.diagnostics.error(
                            source,
                            token.span(),
                            format!("{e}; store the digest printed by `keyward token new`, never the token itself"),
                        ),
                    }
                }
            }
        }
        let mut revoked_tokens = Vec::new();
        for token in raw.revoked_tokens.iter().flatten() {
            if token.get_ref().starts_with(keyward_policy::P256_KEY_PREFIX) {
                self.bot_key(source, token, name, venue, &mut keys.revoked);
                continue;
            }
            match token.get_ref().parse::<TokenDigest>() {
                Ok(digest) => {
                    if self.claim_digest(source, token, digest, name) {
                        revoked_tokens.push(digest);
                    }
                }
                Err(e) => self.diagnostics.error(source, token.span(), e.to_string()),
            }
        }
        if raw.tokens.as_ref().is_some_and(|t| t.get_ref().is_empty())
            && revoked_tokens.is_empty()
            && keys.revoked.is_empty()
        {
            let span = raw.tokens.as_ref().map_or(header.clone(), Spanned::span);
            self.diagnostics.error(source, span, format!("{table} has an empty `tokens` list; run `keyward token new {name}` to issue one"));
        }

        let expires = match &raw.expires {
            None => {
                self.diagnostics.error(
                    source,
                    header.clone(),
                    format!("{table} has no `expires`; every bot's tokens must expire, e.g. expires = \"2027-02-19T00:00:00Z\""),
                );
                None
            }
            Some(value) => self.expiry(source, value, name, max_token_days),
        };

        let mut grants = Vec::new();
        for class in raw.allow.iter().flat_map(Spanned::get_ref) {
            let text = class.get_ref();
            match EndpointClass::grantable_from_name(text) {
                Some(class) => {
                    let specs = venue.iter().flat_map(|v| v.catalogue().entries());
                    for spec in specs.filter(|s| s.class == class) {
                        grants.push(Grant {
                            endpoint: spec.endpoint_ref(),
                            via: Rule::Allow,
                            bears_orders: spec.bears_orders(),
                        });
                    }
                }
                None if is_money_word(text) => self.diagnostics.error(
                    source,
                    class.span(),
                    format!("`{text}` cannot be allowed: keyward never signs withdrawals, transfers or key changes; allowable classes are {CLASS_NAMES}"),
                ),
                None => {
                    let hint = suggestion(text, &["market", "read", "trade", "cancel", "configure"]);
                    self.diagnostics.error(source, class.span(), format!("unknown class `{text}`{hint}; classes are {CLASS_NAMES}"));
                }
            }
        }
        if let Some(venue) = venue {
            for entry in raw.endpoints.iter().flatten() {
                match self.endpoint_grant(venue, entry.get_ref()) {
                    Ok(grant) => grants.push(grant),
                    Err(message) => self.diagnostics.error(source, entry.span(), message),
                }
            }
        }
        if raw.allow.is_none() && raw.endpoints.is_none() {
            self.diagnostics.warning(source, header.clone(), format!("{table} has neither `allow` nor `endpoints`, so every request it makes is refused"));
        }

        let mut symbols = Vec::new();
        for symbol in raw.symbols.iter().flatten() {
            let text = symbol.get_ref();
            let venue_check = venue.map_or(Ok(()), |v| v.check_symbol(text));
            match (Symbol::new(text), venue_check) {
                (Ok(s), Ok(())) => {
                    if symbols.contains(&s) {
                        self.diagnostics.warning(source, symbol.span(), format!("symbol `{text}` is listed twice"));
                    }
                    symbols.push(s);
                }
                (_, Err(expected)) => self.diagnostics.error(source, symbol.span(), format!("`{text}` is not a symbol of this account's exchange: write {expected}")),
                (Err(_), Ok(())) => self.diagnostics.error(source, symbol.span(), format!("`{text}` is not a symbol: write it exactly as the exchange does, e.g. \"BTCUSDT\"")),
            }
        }

        let mut order_types = Vec::new();
        if let Some(venue) = venue {
            let known: Vec<&str> = venue.order_types().iter().map(|t| t.name).collect();
            for order_type in raw.order_types.iter().flatten() {
                let text = order_type.get_ref();
                if known.contains(&text.as_str()) {
                    order_types.push(text.clone());
                } else {
                    let hint = suggestion(text, &known);
                    self.diagnostics.error(
                        source,
                        order_type.span(),
                        format!(
                            "unknown order type `{text}` for {}{hint}; known types: {}",
                            venue.id(),
                            known.join(", ")
                        ),
                    );
                }
            }
        }

        let max_order_notional = raw
            .max_order_notional
            .as_ref()
            .and_then(|v| self.amount(source, v, "max_order_notional"));
        let mut max_order_qty = Vec::new();
        for (symbol, limit) in raw.max_order_qty.iter().flatten() {
            let Some(amount) = self.amount(source, limit, "max_order_qty") else {
                continue;
            };
            match Symbol::new(symbol.get_ref()) {
                Ok(s) => {
                    if !symbols.contains(&s) {
                        self.diagnostics.warning(source, symbol.span(), format!("max_order_qty names `{}`, which is not in symbols, so it never applies", symbol.get_ref()));
                    }
                    max_order_qty.push((s, amount));
                }
                Err(_) => self.diagnostics.error(
                    source,
                    symbol.span(),
                    "max_order_qty keys must be symbols, e.g. { BTCUSDT = \"0.01\" }",
                ),
            }
        }
        let rate = raw.rate.as_ref().and_then(|r| self.rate(source, r, "rate"));
        let order_rate = raw
            .order_rate
            .as_ref()
            .and_then(|r| self.rate(source, r, "order_rate"));
        let mode = match &raw.mode {
            None => Mode::Enforce,
            Some(m) => Mode::from_name(m.get_ref()).unwrap_or_else(|| {
                self.diagnostics.error(
                    source,
                    m.span(),
                    "mode must be \"enforce\", \"shadow\" or \"dry-run\"",
                );
                Mode::Enforce
            }),
        };

        let price_band = raw.price_band.as_ref().and_then(|band| {
            band.get_ref()
                .parse::<Band>()
                .map_err(|e| {
                    self.diagnostics
                        .error(source, band.span(), format!("price_band: {e}"))
                })
                .ok()
        });
        let budget = self.budget(
            source,
            raw.daily_notional.as_ref(),
            raw.max_orders.as_ref(),
            raw.max_open_orders.as_ref(),
        );
        let exchange_share = raw.exchange_share.as_ref().and_then(|share| {
            let percent = share
                .get_ref()
                .strip_suffix('%')
                .and_then(|p| p.parse::<u8>().ok())
                .filter(|p| (1..=100).contains(p));
            if percent.is_none() {
                self.diagnostics.error(
                    source,
                    share.span(),
                    "exchange_share must be a whole percentage from 1% to 100%, e.g. \"50%\"",
                );
            }
            percent
        });
        let spec = BotSpec {
            name: name.to_owned(),
            account: raw.account.get_ref().clone(),
            tokens,
            revoked_tokens,
            keys,
            expires: expires.unwrap_or(self.now),
            grants,
            symbols,
            order_types,
            allow_margin: raw.allow_margin.as_ref().is_some_and(|a| *a.get_ref()),
            allow_position_close: raw
                .allow_position_close
                .as_ref()
                .is_some_and(|a| *a.get_ref()),
            adopt_orders: raw.adopt_orders.as_ref().is_some_and(|a| *a.get_ref()),
            exchange_share,
            max_order_notional,
            max_order_qty,
            rate,
            order_rate,
            mode,
            price_band,
            budget,
        };
        if self.error_count() > errors_before {
            return None;
        }
        match BotPolicy::new(spec) {
            Ok(bot) => {
                if bot.grants().iter().any(|g| g.bears_orders)
                    && raw.symbols.as_ref().is_none_or(Vec::is_empty)
                {
                    self.diagnostics.warning(source, header, format!("{table} may place orders but lists no symbols, so every order is refused"));
                }
                Some(bot)
            }
            Err(errors) => {
                for error in errors {
                    let span = match &error {
                        PolicyError::MissingNotionalCap | PolicyError::MissingOrderTypes => raw
                            .allow
                            .as_ref()
                            .map_or_else(|| header.clone(), Spanned::span),
                        PolicyError::NoTokens { .. } => raw
                            .tokens
                            .as_ref()
                            .map_or_else(|| header.clone(), Spanned::span),
                        _ => header.clone(),
                    };
                    self.diagnostics
                        .error(source, span, format!("{table}: {error}"));
                }
                None
            }
        }
    }

    /// `require_client_cert` and `peer_uid`: each needs the listener that can prove
    /// it, and a bot can be bound to one of them, not both (no request could satisfy
    /// both: the Unix socket carries no certificate).
    fn binding(&mut self, source: &Source, name: &str, raw: &RawBot) {
        let client_cert = raw.require_client_cert.as_ref();
        if let Some(flag) = client_cert.filter(|f| *f.get_ref())
            && !self.client_certs
        {
            self.diagnostics.error(
                source,
                flag.span(),
                "require_client_cert needs [tls] client_ca (e.g. client_ca = \"tls/ca.pem\"), so the bot listener asks for certificates",
            );
        }
        let peer_uid = match &raw.peer_uid {
            Some(uid) => match u32::try_from(*uid.get_ref()) {
                Ok(value) if value != u32::MAX => {
                    if !self.unix_listener {
                        self.diagnostics.error(
                            source,
                            uid.span(),
                            "peer_uid needs [server] listen_unix: only the Unix socket tells keyward who connected",
                        );
                    }
                    Some(value)
                }
                _ => {
                    self.diagnostics.error(
                        source,
                        uid.span(),
                        "peer_uid must be a user id from 0 to 4294967294",
                    );
                    None
                }
            },
            None => None,
        };
        let binding = Binding {
            client_cert: client_cert.is_some_and(|f| *f.get_ref()),
            peer_uid,
        };
        if binding.client_cert
            && binding.peer_uid.is_some()
            && let Some(uid) = &raw.peer_uid
        {
            self.diagnostics.error(
                source,
                uid.span(),
                "a bot can be bound to a client certificate or to a peer uid, not both; remove one",
            );
        }
        if binding != Binding::default() {
            self.bindings.insert(name.to_owned(), binding);
        }
    }

    /// Records that `bot` lists `digest`; refuses a digest already listed elsewhere.
    fn claim_digest(
        &mut self,
        source: &Source,
        at: &Spanned<String>,
        digest: TokenDigest,
        bot: &str,
    ) -> bool {
        let (line, column) = source.position(at.span().start);
        let here = format!("{}:{line}:{column}", source.path.display());
        match self.token_owners.get(&digest) {
            Some((owner, place)) => {
                let message = format!(
                    "token digest {} is already listed for bot `{owner}` at {place}; each token belongs to exactly one bot, once",
                    digest.short()
                );
                self.diagnostics.error(source, at.span(), message);
                false
            }
            None => {
                self.token_owners.insert(digest, (bot.to_owned(), here));
                true
            }
        }
    }

    /// A `"p256:<base64 SPKI>"` entry: a public key a Coinbase bot signs its own JWTs
    /// with. Only bots of a Coinbase account may have one (no other venue's clients
    /// send JWTs), and a key belongs to one bot, once.
    fn bot_key(
        &mut self,
        source: &Source,
        at: &Spanned<String>,
        bot: &str,
        venue: Option<&'static dyn keyward_venues::Venue>,
        into: &mut Vec<keyward_policy::BotKey>,
    ) {
        if venue.is_some_and(|v| v.id() != VenueId::Coinbase) {
            self.diagnostics.error(
                source,
                at.span(),
                format!("bot `{bot}` is not on a coinbase account; only coinbase bots sign their own JWTs with a \"p256:\" key"),
            );
            return;
        }
        let Some(key) = crate::botjwt::parse_public_key(at.get_ref()) else {
            self.diagnostics.error(
                source,
                at.span(),
                "a bot key is \"p256:\" followed by the base64 SubjectPublicKeyInfo of an EC P-256 key, as `keyward token new` prints it",
            );
            return;
        };
        // Claimed under a digest of its id so the same key cannot authenticate two bots.
        let marker = TokenDigest::of(&format!("{}{}", keyward_policy::P256_KEY_PREFIX, key.id()));
        if self.claim_digest(source, at, marker, bot) {
            into.push(key);
        }
    }

    fn endpoint_grant(
        &self,
        venue: &'static dyn keyward_venues::Venue,
        entry: &str,
    ) -> Result<Grant, String> {
        let Some((method, path)) = entry.split_once(' ') else {
            return Err(format!(
                "endpoint `{entry}` must be \"METHOD /path\", e.g. \"GET /api/v3/myTrades\""
            ));
        };
        let Ok(method) = method.parse::<http::Method>() else {
            return Err(format!(
                "endpoint `{entry}` has an unknown method; use GET, POST, PUT or DELETE"
            ));
        };
        match route(venue, &method, path) {
            Route::Endpoint(spec) => Ok(Grant {
                endpoint: spec.endpoint_ref(),
                via: Rule::Endpoints,
                bears_orders: spec.bears_orders(),
            }),
            Route::Floor(endpoint) => Err(format!(
                "{} is {}: keyward never signs it, whatever the configuration says",
                endpoint.key,
                match endpoint.class {
                    EndpointClass::KeyManagement => "API-key management",
                    _ => "money movement",
                }
            )),
            Route::MethodNotAllowed => {
                let methods: Vec<&str> = venue
                    .catalogue()
                    .entries()
                    .iter()
                    .filter(|s| s.path == path)
                    .map(|s| s.method.as_str())
                    .collect();
                Err(format!(
                    "{entry} is not in the {} catalogue; {path} takes {}",
                    venue.id(),
                    methods.join(", ")
                ))
            }
            Route::Unknown => Err(format!(
                "{entry} is not in the {} catalogue; run `keyward explain` to see what a request maps to",
                venue.id()
            )),
        }
    }

    fn expiry(
        &mut self,
        source: &Source,
        value: &Spanned<RawDate>,
        name: &str,
        max_token_days: u32,
    ) -> Option<SystemTime> {
        let text = match value.get_ref() {
            RawDate::Datetime(dt) => dt.to_string(),
            RawDate::Text(text) => text.clone(),
        };
        let Ok(parsed) =
            time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
        else {
            self.diagnostics.error(
                source,
                value.span(),
                "expires must be an RFC 3339 time with a zone, e.g. \"2027-02-19T00:00:00Z\"",
            );
            return None;
        };
        let expires = SystemTime::from(parsed);
        let limit = self.now + Duration::from_secs(u64::from(max_token_days) * 86_400);
        if expires > limit {
            let days = expires
                .duration_since(self.now)
                .map_or(0, |d| d.as_secs().div_ceil(86_400));
            self.diagnostics.error(
                source,
                value.span(),
                format!("bot `{name}` expires in {days} days, beyond max_token_days = {max_token_days}; choose an earlier date or raise max_token_days"),
            );
            return None;
        }
        if expires <= self.now {
            self.diagnostics.warning(
                source,
                value.span(),
                format!("bot `{name}` has expired; its tokens no longer work"),
            );
        }
        Some(expires)
    }

    fn amount(
        &mut self,
        source: &Source,
        value: &Spanned<RawDecimal>,
        key: &str,
    ) -> Option<Amount> {
        let parsed = match value.get_ref() {
            RawDecimal::Text(text) => text.parse::<Amount>().map_err(|e| e.to_string()),
            RawDecimal::Integer(i) if *i >= 0 => {
                i.to_string().parse::<Amount>().map_err(|e| e.to_string())
            }
            RawDecimal::Integer(_) => Err("must not be negative".to_owned()),
            RawDecimal::Float(_) => {
                Err("write it as a string, e.g. \"0.5\", so the value is exact".to_owned())
            }
        };
        match parsed {
            Ok(amount) => Some(amount),
            Err(why) => {
                self.diagnostics
                    .error(source, value.span(), format!("{key}: {why}"));
                None
            }
        }
    }

    fn error_count(&self) -> usize {
        self.diagnostics
            .items()
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }
}

/// Words an operator might write when trying to allow money movement.
fn is_money_word(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    [
        "withdraw",
        "transfer",
        "deposit",
        "convert",
        "borrow",
        "loan",
        "money",
        "sub-account",
        "subaccount",
        "key",
        "sapi",
        "all",
        "*",
    ]
    .iter()
    .any(|w| lower.contains(w))
}

fn parse_upstream(text: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = text.parse().map_err(|_| {
        format!("upstream `{text}` is not a URL; write it as \"https://host[:port]\"")
    })?;
    if uri.scheme_str() != Some("https") {
        return Err(format!(
            "upstream `{text}` must use https://; keyward never sends signed requests in clear text"
        ));
    }
    let authority_ok = uri.authority().is_some_and(|a| !a.as_str().contains('@'));
    let path_ok = matches!(uri.path(), "" | "/") && uri.query().is_none();
    if !authority_ok || !path_ok {
        return Err(format!(
            "upstream `{text}` must be just \"https://host[:port]\", without user, path or query"
        ));
    }
    Ok(uri)
}

fn is_valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn resolve(dir: &Path, path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        dir.join(path)
    }
}

fn contains(outer: std::ops::Range<usize>, inner: &std::ops::Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end && outer.start < outer.end
}

fn remove_key(table: &mut DeTable<'_>, key: &str) {
    let found = table.keys().find(|k| k.get_ref() == key).cloned();
    if let Some(found) = found {
        table.remove(&found);
    }
}

fn key_span(table: &DeTable<'_>, key: &str) -> Option<std::ops::Range<usize>> {
    table
        .iter()
        .find(|(k, _)| k.get_ref() == key)
        .map(|(k, _)| k.span())
}

fn backticked_after(message: &str, prefix: &str) -> Option<String> {
    let rest = message.strip_prefix(prefix)?;
    backticked_all(rest).into_iter().next()
}

fn backticked_all(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// What a key's value looks like, appended to type errors.
fn key_hint(key: &str) -> &'static str {
    match key {
        "rate" | "order_rate" => "; write it as a string such as \"10/s\"",
        "max_order_notional" => "; write it as a string such as \"500\"",
        "tokens" | "revoked_tokens" => "; write a list of \"sha256:...\" digests",
        "allow" => "; write a list of classes such as [\"read\", \"trade\"]",
        "endpoints" => "; write a list such as [\"GET /api/v3/myTrades\"]",
        "symbols" => "; write a list such as [\"BTCUSDT\"]",
        "order_types" => "; write a list such as [\"LIMIT\"]",
        "expires" => "; write a time such as 2027-02-19T00:00:00Z",
        "unsafe_listen" => "; write true or false",
        _ => "",
    }
}

/// Rephrases serde's type errors ("invalid type: integer `5`, expected a string").
fn describe_serde(message: &str) -> String {
    let message = message.trim_end();
    match message.strip_prefix("invalid type: ") {
        Some(rest) => match rest.split_once(", expected ") {
            Some((found, expected)) => format!("expected {expected}, found {found}"),
            None => rest.to_owned(),
        },
        None => message.to_owned(),
    }
}

/// "; did you mean `x`?" when a known word is within a small edit distance.
fn suggestion(word: &str, known: &[&str]) -> String {
    known
        .iter()
        .map(|k| (edit_distance(word, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min()
        .map_or_else(String::new, |(_, k)| format!(" (did you mean `{k}`?)"))
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            current.push(
                (previous[j] + cost)
                    .min(previous[j + 1] + 1)
                    .min(current[j] + 1),
            );
        }
        previous = current;
    }
    previous[b.len()]
}
