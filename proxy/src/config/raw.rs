//! The TOML as written: serde mirrors of each table, every one refusing unknown keys,
//! every value spanned so later validation can point at it. Nothing here is trusted;
//! `build` turns these into validated types.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// `[server]`
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub(crate) listen: Option<Spanned<String>>,
    pub(crate) admin: Option<Spanned<String>>,
    pub(crate) metrics_listen: Option<Spanned<String>>,
    pub(crate) names: Option<Vec<Spanned<String>>>,
    pub(crate) unsafe_listen: Option<bool>,
    pub(crate) max_connections: Option<Spanned<i64>>,
    pub(crate) max_body_bytes: Option<Spanned<i64>>,
    pub(crate) header_timeout_ms: Option<Spanned<i64>>,
    pub(crate) header_timeout: Option<Spanned<String>>,
    pub(crate) body_timeout_ms: Option<Spanned<i64>>,
    pub(crate) body_timeout: Option<Spanned<String>>,
    pub(crate) handshake_timeout_ms: Option<Spanned<i64>>,
    pub(crate) handshake_timeout: Option<Spanned<String>>,
    pub(crate) upstream_timeout_ms: Option<Spanned<i64>>,
    pub(crate) upstream_timeout: Option<Spanned<String>>,
    pub(crate) connect_timeout_ms: Option<Spanned<i64>>,
    pub(crate) connect_timeout: Option<Spanned<String>>,
    pub(crate) max_response_bytes: Option<Spanned<i64>>,
    pub(crate) watch_interval_ms: Option<Spanned<i64>>,
    pub(crate) watch_interval: Option<Spanned<String>>,
    pub(crate) open_orders_check_ms: Option<Spanned<i64>>,
    pub(crate) open_orders_check: Option<Spanned<String>>,
    pub(crate) auth_failure_rate: Option<Spanned<String>>,
    pub(crate) state_dir: Option<Spanned<String>>,
    pub(crate) plain_listen: Option<Spanned<String>>,
    pub(crate) listen_unix: Option<Spanned<String>>,
}

/// `[tls]`
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    pub(crate) dir: Option<Spanned<String>>,
    pub(crate) client_ca: Option<Spanned<String>>,
    pub(crate) client_crl: Option<Vec<Spanned<String>>>,
}

/// `[vault]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVault {
    pub(crate) file: Spanned<String>,
    pub(crate) key: Spanned<String>,
}

/// `[audit]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAudit {
    pub(crate) file: Option<Spanned<String>>,
    pub(crate) max_file_bytes: Option<Spanned<i64>>,
    pub(crate) rotate_daily: Option<bool>,
    pub(crate) retention: Option<Spanned<String>>,
    pub(crate) fsync_interval_ms: Option<Spanned<i64>>,
    pub(crate) fsync_interval: Option<Spanned<String>>,
}

/// `[state]`
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawState {
    pub(crate) backend: Option<Spanned<String>>,
    pub(crate) username: Option<Spanned<String>>,
    pub(crate) password_file: Option<Spanned<String>>,
    pub(crate) ca_file: Option<Spanned<String>>,
    pub(crate) namespace: Option<Spanned<String>>,
    pub(crate) timeout_ms: Option<Spanned<i64>>,
    pub(crate) timeout: Option<Spanned<String>>,
    pub(crate) reads_when_unavailable: Option<Spanned<String>>,
    pub(crate) address_allowances: Option<Spanned<String>>,
}

/// `[accounts.NAME]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAccount {
    pub(crate) venue: Spanned<String>,
    pub(crate) secret: Spanned<String>,
    pub(crate) upstream: Option<Spanned<String>>,
    pub(crate) upstream_ca: Option<Spanned<String>>,
    pub(crate) stream_upstream: Option<Spanned<String>>,
    pub(crate) market_upstream: Option<Spanned<String>>,
    pub(crate) recv_window_ms: Option<Spanned<i64>>,
    pub(crate) recv_window: Option<Spanned<String>>,
    pub(crate) rate: Option<Spanned<String>>,
    pub(crate) public_market_data: Option<Spanned<bool>>,
    pub(crate) exchange_headroom_percent: Option<Spanned<i64>>,
    pub(crate) reference_max_age_ms: Option<Spanned<i64>>,
    pub(crate) reference_max_age: Option<Spanned<String>>,
    pub(crate) client_order_id_window_ms: Option<Spanned<i64>>,
    pub(crate) client_order_id_window: Option<Spanned<String>>,
    pub(crate) exchange_limits_multiplier: Option<Spanned<i64>>,
    pub(crate) freeze_after_denials: Option<Spanned<String>>,
    pub(crate) daily_notional: Option<Spanned<RawDecimal>>,
    pub(crate) max_orders: Option<Spanned<String>>,
    pub(crate) max_open_orders: Option<Spanned<i64>>,
}

/// A decimal as written: a string (exact) or an integer; floats are refused because
/// TOML floats are binary and `0.1` would not be 0.1.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawDecimal {
    Text(String),
    Integer(i64),
    /// Recognised only so the refusal can say "write it as a string".
    Float(#[allow(dead_code)] f64),
}

/// A date as written: a TOML datetime or an RFC 3339 string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawDate {
    Datetime(toml::value::Datetime),
    Text(String),
}

/// `[bots.NAME]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBot {
    pub(crate) account: Spanned<String>,
    pub(crate) tokens: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) revoked_tokens: Option<Vec<Spanned<String>>>,
    pub(crate) expires: Option<Spanned<RawDate>>,
    pub(crate) allow: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) endpoints: Option<Vec<Spanned<String>>>,
    pub(crate) symbols: Option<Vec<Spanned<String>>>,
    pub(crate) order_types: Option<Vec<Spanned<String>>>,
    pub(crate) allow_margin: Option<Spanned<bool>>,
    pub(crate) allow_position_close: Option<Spanned<bool>>,
    pub(crate) adopt_orders: Option<Spanned<bool>>,
    pub(crate) exchange_share: Option<Spanned<String>>,
    pub(crate) max_order_notional: Option<Spanned<RawDecimal>>,
    pub(crate) max_order_qty: Option<BTreeMap<Spanned<String>, Spanned<RawDecimal>>>,
    pub(crate) rate: Option<Spanned<String>>,
    pub(crate) order_rate: Option<Spanned<String>>,
    pub(crate) mode: Option<Spanned<String>>,
    pub(crate) require_client_cert: Option<Spanned<bool>>,
    pub(crate) peer_uid: Option<Spanned<i64>>,
    pub(crate) price_band: Option<Spanned<String>>,
    pub(crate) daily_notional: Option<Spanned<RawDecimal>>,
    pub(crate) max_orders: Option<Spanned<String>>,
    pub(crate) max_open_orders: Option<Spanned<i64>>,
}
