//! Test harness shared by keyward's end-to-end tests: the shared research files
//! (signing vectors, attack corpus), the fixture policies the attack corpus is written
//! against (P0, P1-futures, P-BYB, P-OKX, P-KRK) as keyward configurations, deterministic tokens, canary credentials, temp dirs, a
//! mock exchange, bot clients (HTTP and WebSocket) and a keyward launcher.

// This crate exists only to test: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use keyward_policy::TokenDigest;
use serde_json::Value;

/// `../shared` beside the repository (override with `KEYWARD_SHARED`).
///
/// Panics with a clear message when it is missing: the known-answer and corpus tests
/// must never pass by finding nothing to test.
pub fn shared_dir() -> PathBuf {
    let dir = std::env::var_os("KEYWARD_SHARED").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
        PathBuf::from,
    );
    assert!(
        dir.join("venues/vectors.json").is_file(),
        "the shared research directory is missing at {}; clone it beside the repository or set KEYWARD_SHARED",
        dir.display()
    );
    dir
}

/// Parses a JSON file under [`shared_dir`].
pub fn shared_json(relative: &str) -> Value {
    let path = shared_dir().join(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every signing vector.
pub fn vectors() -> Vec<Value> {
    match shared_json("venues/vectors.json") {
        Value::Array(items) => items,
        other => panic!("vectors.json is not a list: {other}"),
    }
}

/// Every attack-corpus case.
pub fn corpus_cases() -> Vec<Value> {
    match shared_json("attacks/corpus.json") {
        Value::Array(items) => items,
        other => panic!("corpus.json is not a list: {other}"),
    }
}

/// A well-mixed 64-bit value from a seed and a counter (SplitMix64's step and
/// finaliser): the fault injector's and the soak's draws, reproducible from the seed.
pub fn splitmix(seed: u64, n: u64) -> u64 {
    let mut z = seed.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A TLS server configuration for a stand-in server (the mock exchange, the load
/// bench's exchange, a server with an untrusted certificate): a CA of its own and a
/// certificate for localhost written to `dir`, HTTP/1.1 by ALPN.
pub fn test_server_tls(dir: &Path) -> std::sync::Arc<rustls::ServerConfig> {
    test_server_tls_for(dir, &[]).expect("test server TLS configuration")
}

/// [`test_server_tls`] with `names` in the certificate beside localhost: the names a
/// stand-in is reached by from elsewhere (a service name on a container network).
pub fn test_server_tls_for(
    dir: &Path,
    names: &[String],
) -> Result<std::sync::Arc<rustls::ServerConfig>, keyward_certs::CertsError> {
    keyward_certs::init(dir, names, false)?;
    let mut config = (*keyward_certs::server_config(dir, None)?).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(std::sync::Arc::new(config))
}

/// The fixed "now" of decision tests, so token lifetimes do not depend on the wall clock.
pub fn fixed_now() -> SystemTime {
    // 2026-12-01T00:00:00Z
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_083_200)
}

/// RFC 3339 for a `SystemTime` (UTC, whole seconds).
pub fn rfc3339(time: SystemTime) -> String {
    let secs = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day); Howard Hinnant's algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A deterministic, well-formed keyward token for `bot`, distinct per `label`.
pub fn token(bot: &str, label: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, format!("{bot}/{label}").as_bytes());
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref());
    format!("kw_{bot}_{secret}")
}

/// The `sha256:` digest a configuration stores for a token.
pub fn digest(token: &str) -> String {
    TokenDigest::of(token).to_string()
}

/// The lines of the audit log keyward keeps in `dir` (none if it has none yet).
pub fn audit_lines(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("audit lines are JSON"))
        .collect()
}

/// keyward's own status for a refusal it answered, from its audit record (found by
/// the answer's `x-keyward-request-id`). Bybit and Kraken refusals mostly go out as
/// HTTP 200 with the error in the body, so the status on the wire does not tell one
/// refusal from another; the record does. `None` for an answer keyward did not
/// refuse, or did not record as refused.
pub fn refused_with(audit: &[Value], response: &client::Response) -> Option<u16> {
    response.header("x-keyward-error")?;
    let id = response.header("x-keyward-request-id")?;
    let line = audit.iter().rev().find(|line| {
        line["event"] == "request" && line["request_id"] == id && line["decision"] == "deny"
    })?;
    u16::try_from(line["status"].as_u64()?).ok()
}

pub mod client;
pub mod corpus;
pub mod greedy;
pub mod launch;
pub mod mock;
pub mod process;
pub mod python;
pub mod redis;
pub mod stats;
pub mod venues;
pub mod ws_client;

/// Canary exchange credentials: these strings must never appear in any output.
pub mod canary {
    /// The account's API key id.
    pub const API_KEY: &str = "CANARYAPIKEYvmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14";
    /// The account's HMAC secret.
    pub const SECRET: &str = "CANARYSECRETNhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbv";
    /// The account's passphrase (Binance does not use one; it is held all the same).
    pub const PASSPHRASE: &str = "CANARYPASSPHRASEq8Zr2Lw5Tx0Yb7Nc4Vm1Kd6Hj3";
}

/// The tokens of the fixture bots.
#[derive(Debug, Clone)]
pub struct FixtureTokens {
    /// Bot A of P0 (and the futures bot of P1): `{{BOT_TOKEN}}`.
    pub bot: String,
    /// Bot B of P0, read-only: `{{BOT_TOKEN_B}}`.
    pub bot_b: String,
    /// A token of a bot whose tokens have expired: `{{EXPIRED_TOKEN}}`.
    pub expired: String,
    /// A revoked token of bot A: `{{REVOKED_TOKEN}}`.
    pub revoked: String,
    /// The clients fixture's rate-limited bot (one request a minute).
    pub slow: String,
}

/// Which fixture policy of the attack corpus (its cases name the policy they run under).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FixturePolicy {
    /// P0: binance-spot on port 8443.
    P0,
    /// P0 after a reload that removed ETHUSDT (corpus OPS-014).
    P0WithoutEth,
    /// P1-futures: binance-usdm on port 8444.
    P1Futures,
    /// What real clients need: bot A trades spot BTCUSDT/ETHUSDT, bot B trades USDⓈ-M
    /// BTCUSDT, both with market data, reads and cancels; both accounts also serve
    /// public market data without a token (ccxt sends none for public endpoints).
    Clients,
    /// A venue other than Binance on its corpus port: P-BYB (8447), P-OKX (8446), P-KRK (8445)
    /// or Coinbase (8448). Bot `a` has the corpus policy; bot `c` what real clients
    /// need. See [`venues`].
    Venue(venues::VenueFixture),
}

/// Where a fixture listens and where its accounts send requests.
#[derive(Debug, Clone, Default)]
pub struct Serving {
    /// The bot listener (default: the fixture's own port).
    pub listen: Option<String>,
    /// `(https URL, CA file)` of the exchange (default: the venue's own).
    pub upstream: Option<(String, PathBuf)>,
    /// Extra `[server]` lines.
    pub server_extra: String,
    /// Raw TOML appended to the configuration (extra tables such as `[audit]`).
    pub tables: String,
    /// Bot A's order rate instead of P0's `10/10s`. Serving tests use a slow refill
    /// (`10/10m`), so whether the 11th order is refused does not depend on how fast
    /// the machine sends ten.
    pub order_rate: Option<String>,
    /// Extra lines in P0's `[bots.a]` (price band, budgets).
    pub bot_extra: String,
    /// Extra lines in P0's (and the clients fixture's) `[accounts.spot]` (and the
    /// clients fixture's `[accounts.futures]`).
    pub account_extra: String,
    /// Start a process as `cd DIR && keyward --config keyward.toml serve` (the
    /// configuration named relative to the working directory), not by its full path.
    pub relative_config: bool,
}

impl Serving {
    /// Accounts that send to `mock`, everything else the fixture's default.
    pub fn against(mock: &mock::Mock) -> Self {
        Self {
            upstream: Some((mock.url(), mock.ca.clone())),
            ..Self::default()
        }
    }
}

/// Writes a fixture policy as a keyward configuration into `dir`; returns its path.
pub fn write_fixture(
    dir: &Path,
    policy: FixturePolicy,
    tokens: &FixtureTokens,
    now: SystemTime,
) -> PathBuf {
    write_fixture_serving(dir, policy, tokens, now, &Serving::default())
}

/// [`write_fixture`] with listener and upstream overrides, for running keyward.
pub fn write_fixture_serving(
    dir: &Path,
    policy: FixturePolicy,
    tokens: &FixtureTokens,
    now: SystemTime,
    serving: &Serving,
) -> PathBuf {
    let expires = rfc3339(now + Duration::from_secs(30 * 86_400));
    let expired = rfc3339(now - Duration::from_secs(86_400));
    let upstream = serving
        .upstream
        .as_ref()
        .map_or_else(String::new, |(url, ca)| {
            format!("upstream = \"{url}\"\nupstream_ca = \"{}\"", ca.display())
        });
    let text = match policy {
        FixturePolicy::Clients => format!(
            r#"[server]
listen = "{listen}"
{server_extra}

[vault]
file = "keyward.vault"
key = "file:master.key"

[accounts.spot]
venue = "binance-spot"
secret = "spot"
{upstream}
{account_extra}

[accounts.futures]
venue = "binance-usdm"
secret = "futures"
{upstream}
{account_extra}

[bots.a]
account = "spot"
tokens = ["{a}"]
expires = "{expires}"
allow = ["market", "read", "trade", "cancel"]
symbols = ["BTCUSDT", "ETHUSDT"]
order_types = ["LIMIT", "MARKET"]
max_order_notional = "1000"

[bots.b]
account = "futures"
tokens = ["{b}"]
expires = "{expires}"
allow = ["market", "read", "trade", "cancel"]
symbols = ["BTCUSDT"]
order_types = ["LIMIT"]
max_order_notional = "1000"

[bots.slow]
account = "spot"
tokens = ["{slow}"]
expires = "{expires}"
allow = ["read"]
rate = "1/m"
"#,
            a = digest(&tokens.bot),
            b = digest(&tokens.bot_b),
            slow = digest(&tokens.slow),
            listen = serving.listen.as_deref().unwrap_or("127.0.0.1:8443"),
            server_extra = serving.server_extra,
            account_extra = serving.account_extra,
        ),
        FixturePolicy::P0 | FixturePolicy::P0WithoutEth => {
            let symbols = if policy == FixturePolicy::P0 {
                r#"["BTCUSDT", "ETHUSDT"]"#
            } else {
                r#"["BTCUSDT"]"#
            };
            format!(
                r#"[server]
listen = "{listen}"
{server_extra}

[vault]
file = "keyward.vault"
key = "file:master.key"

[accounts.spot]
venue = "binance-spot"
secret = "spot"
recv_window_ms = 5000
{account_extra}
{upstream}

[bots.a]
account = "spot"
tokens = ["{a}"]
revoked_tokens = ["{revoked}"]
expires = "{expires}"
endpoints = ["GET /api/v3/account", "GET /api/v3/openOrders", "GET /api/v3/order", "POST /api/v3/order", "DELETE /api/v3/order", "GET /api/v3/myTrades"]
symbols = {symbols}
order_types = ["LIMIT", "LIMIT_MAKER", "MARKET"]
max_order_notional = "100"
max_order_qty = {{ BTCUSDT = "0.01" }}
order_rate = "{order_rate}"
{bot_extra}

[bots.b]
account = "spot"
tokens = ["{b}"]
expires = "{expires}"
endpoints = ["GET /api/v3/account"]

[bots.old]
account = "spot"
tokens = ["{old}"]
expires = "{expired}"
endpoints = ["GET /api/v3/account"]
"#,
                a = digest(&tokens.bot),
                revoked = digest(&tokens.revoked),
                b = digest(&tokens.bot_b),
                old = digest(&tokens.expired),
                listen = serving.listen.as_deref().unwrap_or("127.0.0.1:8443"),
                order_rate = serving.order_rate.as_deref().unwrap_or("10/10s"),
                bot_extra = serving.bot_extra,
                account_extra = serving.account_extra,
                server_extra = serving.server_extra,
                upstream = upstream,
            )
        }
        FixturePolicy::P1Futures => format!(
            r#"[server]
listen = "{listen}"
{server_extra}

[vault]
file = "keyward.vault"
key = "file:master.key"

[accounts.futures]
venue = "binance-usdm"
secret = "futures"
{upstream}

[bots.a]
account = "futures"
tokens = ["{a}"]
expires = "{expires}"
endpoints = ["POST /fapi/v1/order", "POST /fapi/v1/batchOrders", "DELETE /fapi/v1/order"]
symbols = ["BTCUSDT"]
order_types = ["LIMIT", "MARKET"]
max_order_notional = "100"
"#,
            a = digest(&tokens.bot),
            listen = serving.listen.as_deref().unwrap_or("127.0.0.1:8444"),
            server_extra = serving.server_extra,
            upstream = upstream,
        ),
        FixturePolicy::Venue(venue) => venues::config_text(
            venue,
            &venues::FixtureArgs {
                tokens,
                expires: &expires,
                listen: serving.listen.as_deref(),
                upstream: &upstream,
                server_extra: &serving.server_extra,
                bot_extra: &serving.bot_extra,
                account_extra: &serving.account_extra,
            },
        ),
    };
    let text = format!("{text}\n{}\n", serving.tables);
    let path = dir.join(match policy {
        FixturePolicy::Clients => "clients.toml",
        FixturePolicy::P0 => "p0.toml",
        FixturePolicy::P0WithoutEth => "p0-no-eth.toml",
        FixturePolicy::P1Futures => "p1.toml",
        FixturePolicy::Venue(venue) => venue.file_name(),
    });
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    path
}

/// The fixture tokens.
pub fn fixture_tokens() -> FixtureTokens {
    FixtureTokens {
        bot: token("a", "active"),
        bot_b: token("b", "active"),
        expired: token("old", "active"),
        revoked: token("a", "revoked"),
        slow: token("slow", "active"),
    }
}

/// A directory removed when dropped.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// A fresh, empty directory under the system temp dir.
    pub fn new(tag: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("keyward-test-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Self { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Leaves the directory in place; returns its path.
    pub fn keep(self) -> PathBuf {
        let path = self.path.clone();
        std::mem::forget(self);
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Runs the keyward command line in-process; returns (exit code, stdout, stderr).
pub fn run_cli(args: &[&str], now: SystemTime) -> (u8, String, String) {
    run_cli_with_input(args, now, b"")
}

/// [`run_cli`] with `input` on a non-terminal standard input.
pub fn run_cli_with_input(args: &[&str], now: SystemTime, input: &[u8]) -> (u8, String, String) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let mut input = input;
    let argv = std::iter::once("keyward").chain(args.iter().copied());
    let streams = keyward::cli::Streams {
        input: &mut input,
        interactive: false,
        out: &mut out,
        err: &mut err,
    };
    let code = keyward::cli::run(argv, now, streams);
    (
        code,
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

/// HMAC-SHA256 in lowercase hex, computed independently of keyward's signer.
pub fn hmac_sha256_hex(secret: &[u8], message: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    ring::hmac::sign(&key, message)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_dates() {
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(fixed_now()), "2026-12-01T00:00:00Z");
        assert_eq!(
            rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
    }

    #[test]
    fn tokens_are_well_formed() {
        let t = token("a", "x");
        assert_eq!(keyward_policy::bot_name_of(&t), Some("a"));
    }
}
