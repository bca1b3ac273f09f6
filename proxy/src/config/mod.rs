//! `keyward.toml` and its included bot files: loading, and turning the raw TOML into
//! validated types. Every mistake in every file is reported in one run, each with its
//! file, line, column and one sentence on how to mend it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use keyward_policy::{AccountSpec, Amount, BotPolicy, Policy, Rate, TokenDigest};
use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

mod accounts;
mod bots;
mod diagnostic;
pub(crate) mod duration;
mod files;
mod raw;
mod server;
mod state;

pub use accounts::{Account, StreamUpstream};
pub use bots::{Binding, BotSource};
pub use diagnostic::{Diagnostic, Diagnostics, Place, Severity, Source};
pub use files::{ConfigFiles, Disk, InMemory};
pub use server::{AuditSettings, HostPolicy, KeySource, Limits, Server, Tls, VaultSettings};
pub use state::{
    AddressAllowances, DEFAULT_STATE_TIMEOUT_MS, RedisSettings, StateBackend, WhenUnavailable,
};

use accounts::Accounts;
use diagnostic::{
    backticked_after, backticked_all, contains, describe_serde, key_hint, key_span, remove_key,
    suggestion,
};
use raw::{RawAudit, RawDecimal, RawServer, RawTls, RawVault};
use server::DEFAULT_FSYNC_MS;

/// "; did you mean `x`?" (with its leading space) when `word` is a near miss of one
/// of `known`, else nothing: for checks made after loading.
pub fn suggest(word: &str, known: &[&str]) -> String {
    suggestion(word, known)
}

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
    /// `[state]`: where state shared by replicas lives.
    pub state: StateBackend,
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

/// One load in progress: what it reads, every problem found so far, and what later
/// tables need to know of earlier ones. The methods that build each table live beside
/// its types (`server`, `accounts`, `bots`); the ones every table uses live here.
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
    "state",
    "accounts",
    "bots",
];

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
                retention: None,
                fsync_interval: Some(Duration::from_millis(DEFAULT_FSYNC_MS)),
            }),
        };
        let state = match top.get("state") {
            Some(value) => self
                .section::<raw::RawState>(&main, value, "[state]")
                .and_then(|raw| self.build_state(&main, &dir, raw))
                .unwrap_or_default(),
            None => StateBackend::Local,
        };
        let accounts = match top.get("accounts") {
            Some(value) => {
                // A bot listener on another address (unsafe_listen) serves it only
                // where an account asks.
                let loopback = server.as_ref().is_some_and(|s| s.listen.ip().is_loopback());
                self.build_accounts(&main, value, loopback)
            }
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
            state,
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

    /// A duration in milliseconds, written either as the `NAME_ms` integer (`key`) or
    /// as `NAME = "10s"` beside it; both at once is ambiguous and refused. `key` is the
    /// `_ms` key, optionally followed by a note for the range error.
    fn duration_ms(
        &mut self,
        source: &Source,
        millis: Option<&Spanned<i64>>,
        text: Option<&Spanned<String>>,
        key: &str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> u64 {
        let (ms_key, note) = key.split_once(' ').unwrap_or((key, ""));
        let name = ms_key.strip_suffix("_ms").unwrap_or(ms_key);
        let Some(text) = text else {
            return self.int_in_range(source, millis, key, default, range);
        };
        if millis.is_some() {
            self.diagnostics.error(
                source,
                text.span(),
                format!("set {name} or {ms_key}, not both"),
            );
            return default;
        }
        match duration::parse_millis(text.get_ref()) {
            Ok(n) if range.contains(&n) => n,
            Ok(_) => {
                self.diagnostics.error(
                    source,
                    text.span(),
                    format!(
                        "{name} must be between {} and {}{}{note}, not \"{}\"",
                        duration::human(*range.start()),
                        duration::human(*range.end()),
                        if note.is_empty() { "" } else { " " },
                        text.get_ref()
                    ),
                );
                default
            }
            Err(problem) => {
                self.diagnostics.error(
                    source,
                    text.span(),
                    format!("{name} = \"{}\": {problem}", text.get_ref()),
                );
                default
            }
        }
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

    fn rate(&mut self, source: &Source, value: &Spanned<String>, key: &str) -> Option<Rate> {
        match value.get_ref().parse::<Rate>() {
            Ok(rate) => Some(rate),
            Err(e) => {
                let text = value.get_ref();
                self.diagnostics.error(
                    source,
                    value.span(),
                    format!("{key} = \"{text}\" is not a rate: {e}"),
                );
                None
            }
        }
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

fn resolve(dir: &Path, path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        dir.join(path)
    }
}
