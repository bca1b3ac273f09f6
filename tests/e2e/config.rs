//! Configuration loading: one row per load-time mistake (each reported at its line
//! with a sentence that says how to mend it), every mistake in one run, and the
//! `check`, `explain` and `token` commands on the shipped example.

use std::path::{Path, PathBuf};
use std::time::Duration;

use keyward::config::{Config, Diagnostic, Severity};
use keyward_policy::Denied;
use keyward_tests::{TempDir, digest, fixed_now, rfc3339, run_cli, token};

fn base() -> String {
    format!(
        r#"max_token_days = 90

[server]
listen = "127.0.0.1:8443"
admin = "127.0.0.1:9901"

[vault]
file = "keyward.vault"
key = "file:master.key"

[audit]
file = "audit.jsonl"

[accounts.main]
venue = "binance-spot"
secret = "main"

[bots.grid]
account = "main"
tokens = ["{digest}"]
expires = "{expires}"
allow = ["read", "trade"]
symbols = ["BTCUSDT"]
order_types = ["LIMIT"]
max_order_notional = "500"
"#,
        digest = digest(&token("grid", "1")),
        expires = rfc3339(fixed_now() + Duration::from_secs(30 * 86_400)),
    )
}

fn load_text(dir: &Path, text: &str) -> Result<Config, Vec<Diagnostic>> {
    let path = dir.join("keyward.toml");
    std::fs::write(&path, text).unwrap();
    Config::load(&path, fixed_now()).map_err(|d| d.items().to_vec())
}

fn errors(diagnostics: &[Diagnostic]) -> Vec<&Diagnostic> {
    diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .collect()
}

fn line_of(text: &str, marker: &str) -> usize {
    text.lines()
        .position(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("marker {marker:?} not in config"))
        + 1
}

struct Row {
    name: &'static str,
    /// (find, replace) edits applied to the base config.
    edits: Vec<(&'static str, String)>,
    /// The reported line contains this.
    at: &'static str,
    /// The message contains this.
    says: &'static str,
}

fn row(
    name: &'static str,
    find: &'static str,
    replace: &str,
    at: &'static str,
    says: &'static str,
) -> Row {
    Row {
        name,
        edits: vec![(find, replace.to_owned())],
        at,
        says,
    }
}

#[allow(clippy::too_many_lines)]
fn rows() -> Vec<Row> {
    let far = rfc3339(fixed_now() + Duration::from_secs(200 * 86_400));
    vec![
        row(
            "toml syntax",
            "admin = \"127.0.0.1:9901\"",
            "admin = \"127.0.0.1:9901",
            "admin =",
            "TOML syntax",
        ),
        row(
            "unknown top-level key",
            "max_token_days = 90",
            "max_token_day = 90",
            "max_token_day",
            "did you mean `max_token_days`",
        ),
        row(
            "max_token_days not a number",
            "max_token_days = 90",
            "max_token_days = \"90\"",
            "max_token_days",
            "whole number of days",
        ),
        row(
            "max_token_days out of range",
            "max_token_days = 90",
            "max_token_days = 0",
            "max_token_days",
            "from 1 to 3650",
        ),
        row(
            "unknown server key",
            "admin = \"127.0.0.1:9901\"",
            "admin = \"127.0.0.1:9901\"\nlisten_port = 1",
            "listen_port",
            "unknown key `listen_port` in [server]",
        ),
        row(
            "listen not an address",
            "listen = \"127.0.0.1:8443\"",
            "listen = \"localhost:8443\"",
            "listen =",
            "IP address and port",
        ),
        row(
            "listen not loopback",
            "listen = \"127.0.0.1:8443\"",
            "listen = \"0.0.0.0:8443\"",
            "listen =",
            "unsafe_listen = true",
        ),
        row(
            "admin not loopback",
            "admin = \"127.0.0.1:9901\"",
            "admin = \"10.0.0.1:9901\"",
            "admin =",
            "not a loopback address",
        ),
        row(
            "admin equals listen",
            "admin = \"127.0.0.1:9901\"",
            "admin = \"127.0.0.1:8443\"",
            "admin =",
            "admin must differ from listen",
        ),
        row(
            "bad server name",
            "admin = \"127.0.0.1:9901\"",
            "admin = \"127.0.0.1:9901\"\nnames = [\"bad name\"]",
            "names",
            "DNS name",
        ),
        row(
            "limit out of range",
            "admin = \"127.0.0.1:9901\"",
            "admin = \"127.0.0.1:9901\"\nmax_body_bytes = 10",
            "max_body_bytes",
            "max_body_bytes must be between",
        ),
        row(
            "server wrong type",
            "admin = \"127.0.0.1:9901\"",
            "admin = \"127.0.0.1:9901\"\nunsafe_listen = \"yes\"",
            "unsafe_listen",
            "write true or false",
        ),
        row(
            "unknown tls key",
            "[vault]",
            "[tls]\ndirectory = \"tls\"\n\n[vault]",
            "directory",
            "unknown key `directory` in [tls]",
        ),
        row(
            "vault key source",
            "key = \"file:master.key\"",
            "key = \"hunter2\"",
            "key = \"hunter2\"",
            "file:PATH",
        ),
        row(
            "vault missing file",
            "file = \"keyward.vault\"\n",
            "",
            "[vault]",
            "missing the required key `file`",
        ),
        row(
            "missing vault",
            "[vault]\nfile = \"keyward.vault\"\nkey = \"file:master.key\"\n",
            "",
            "max_token_days",
            "missing [vault] table",
        ),
        row(
            "audit rotation size",
            "file = \"audit.jsonl\"",
            "file = \"audit.jsonl\"\nmax_file_bytes = 10",
            "max_file_bytes",
            "max_file_bytes must be between",
        ),
        row(
            "metrics listener on the admin port",
            "admin = \"127.0.0.1:9901\"",
            "admin = \"127.0.0.1:9901\"\nmetrics_listen = \"127.0.0.1:9901\"",
            "metrics_listen",
            "metrics_listen must differ from listen and admin",
        ),
        row(
            "audit retention shorter than the budgets' window",
            "file = \"audit.jsonl\"",
            "file = \"audit.jsonl\"\nretention = \"3d\"",
            "retention",
            "retention must be between 7d and 3650d (rotated files older than this are deleted; the budgets are rebuilt from the last 7 days), not \"3d\"",
        ),
        row(
            "exchange headroom",
            "venue = \"binance-spot\"",
            "venue = \"binance-spot\"\nexchange_headroom_percent = 90",
            "exchange_headroom_percent",
            "exchange_headroom_percent must be between 0 and 50",
        ),
        row(
            "watch interval",
            "admin = \"127.0.0.1:9901\"",
            "admin = \"127.0.0.1:9901\"\nwatch_interval_ms = -1",
            "watch_interval_ms",
            "watch_interval_ms (0 turns watching off) must be between",
        ),
        row(
            "unknown venue",
            "venue = \"binance-spot\"",
            "venue = \"binance-spott\"",
            "venue =",
            "did you mean `binance-spot`",
        ),
        row(
            "unknown account key",
            "secret = \"main\"",
            "secret = \"main\"\nsecrets = \"x\"",
            "secrets",
            "unknown key `secrets` in [accounts.main]",
        ),
        row(
            "bad secret name",
            "secret = \"main\"",
            "secret = \"Main Key\"",
            "secret =",
            "vault entry",
        ),
        Row {
            name: "bad account name",
            edits: vec![
                ("[accounts.main]", "[accounts.Main]".to_owned()),
                ("account = \"main\"", "account = \"Main\"".to_owned()),
            ],
            at: "[accounts.Main]",
            says: "account name `Main`",
        },
        row(
            "http upstream",
            "secret = \"main\"",
            "secret = \"main\"\nupstream = \"http://api.binance.com\"",
            "upstream",
            "must use https://",
        ),
        row(
            "upstream with path",
            "secret = \"main\"",
            "secret = \"main\"\nupstream = \"https://api.binance.com/api\"",
            "upstream",
            "without user, path or query",
        ),
        row(
            "state backend that is not Redis",
            "[audit]",
            "[state]\nbackend = \"memcached://127.0.0.1:11211\"\n\n[audit]",
            "backend",
            "backend must be \"local\" or a Redis URL",
        ),
        row(
            "state backend with a password inline",
            "[audit]",
            "[state]\nbackend = \"redis://:hunter2@127.0.0.1:6379\"\n\n[audit]",
            "backend",
            "must not carry a user name or password; set username and password_file",
        ),
        row(
            "state backend without a port",
            "[audit]",
            "[state]\nbackend = \"redis://127.0.0.1\"\n\n[audit]",
            "backend",
            "is not redis://HOST:PORT[/DB]",
        ),
        row(
            "state CA for a clear-text backend",
            "[audit]",
            "[state]\nbackend = \"redis://127.0.0.1:6379\"\nca_file = \"ca.pem\"\n\n[audit]",
            "backend",
            "ca_file is for a TLS connection",
        ),
        row(
            "state timeout",
            "[audit]",
            "[state]\nbackend = \"redis://127.0.0.1:6379\"\ntimeout_ms = 5\n\n[audit]",
            "timeout_ms",
            "timeout_ms must be between",
        ),
        row(
            "state reads policy",
            "[audit]",
            "[state]\nbackend = \"redis://127.0.0.1:6379\"\nreads_when_unavailable = \"maybe\"\n\n[audit]",
            "reads_when_unavailable",
            "reads_when_unavailable must be \"refuse\" or \"allow\"",
        ),
        row(
            "state address allowances",
            "[audit]",
            "[state]\nbackend = \"redis://127.0.0.1:6379\"\naddress_allowances = \"per-node\"\n\n[audit]",
            "address_allowances",
            "address_allowances must be \"shared\" or \"per_replica\"",
        ),
        row(
            "state key misspelt",
            "[audit]",
            "[state]\nbackend = \"redis://127.0.0.1:6379\"\npasword_file = \"pw\"\n\n[audit]",
            "pasword_file",
            "unknown key `pasword_file`",
        ),
        row(
            "market upstream in clear text",
            "secret = \"main\"",
            "secret = \"main\"\nmarket_upstream = \"ws://stream.binance.com\"",
            "market_upstream",
            "market_upstream `ws://stream.binance.com` must use wss://",
        ),
        row(
            "market upstream with path",
            "secret = \"main\"",
            "secret = \"main\"\nmarket_upstream = \"wss://stream.binance.com/ws\"",
            "market_upstream",
            "without user, path or query",
        ),
        row(
            "recv window",
            "secret = \"main\"",
            "secret = \"main\"\nrecv_window_ms = 60001",
            "recv_window_ms",
            "must be between 1 and 60000",
        ),
        row(
            "account rate",
            "secret = \"main\"",
            "secret = \"main\"\nrate = \"fast\"",
            "rate =",
            "rate = \"fast\" is not a rate: a rate is COUNT/PERIOD",
        ),
        row(
            "unknown bot account",
            "account = \"main\"",
            "account = \"mian\"",
            "account =",
            "did you mean `main`",
        ),
        row(
            "token instead of digest",
            "tokens = [\"",
            "tokens = [\"kw_grid_x\", \"",
            "tokens =",
            "never the token itself",
        ),
        row(
            "bad revoked digest",
            "expires =",
            "revoked_tokens = [\"sha256:xyz\"]\nexpires =",
            "revoked_tokens",
            "64 lowercase hex",
        ),
        row(
            "bot without expiry",
            "expires =",
            "# expires =",
            "[bots.grid]",
            "has no `expires`",
        ),
        row(
            "expiry without zone",
            "expires =",
            "expires = \"2027-01-01T00:00:00\"\n# was",
            "expires = \"2027",
            "RFC 3339",
        ),
        Row {
            name: "expiry past max_token_days",
            edits: vec![("expires =", format!("expires = \"{far}\"\n# was"))],
            at: "expires = \"",
            says: "beyond max_token_days = 90",
        },
        row(
            "allow money movement",
            "allow = [\"read\", \"trade\"]",
            "allow = [\"read\", \"withdraw\", \"trade\"]",
            "allow =",
            "never signs withdrawals",
        ),
        row(
            "allow unknown class",
            "allow = [\"read\", \"trade\"]",
            "allow = [\"read\", \"trades\"]",
            "allow =",
            "did you mean `trade`",
        ),
        row(
            "endpoint money movement",
            "symbols =",
            "endpoints = [\"POST /sapi/v1/capital/withdraw/apply\"]\nsymbols =",
            "endpoints",
            "money movement",
        ),
        row(
            "endpoint key management",
            "symbols =",
            "endpoints = [\"POST /sapi/v1/sub-account/subAccountApi\"]\nsymbols =",
            "endpoints",
            "API-key management",
        ),
        row(
            "endpoint transfer",
            "symbols =",
            "endpoints = [\"POST /sapi/v1/asset/transfer\"]\nsymbols =",
            "endpoints",
            "money movement",
        ),
        row(
            "endpoint user data stream",
            "symbols =",
            "endpoints = [\"POST /api/v3/userDataStream\"]\nsymbols =",
            "endpoints",
            "money movement",
        ),
        row(
            "endpoint not catalogued",
            "symbols =",
            "endpoints = [\"GET /api/v3/nope\"]\nsymbols =",
            "endpoints",
            "not in the binance-spot catalogue",
        ),
        row(
            "endpoint under sapi",
            "symbols =",
            "endpoints = [\"GET /sapi/v1/account/snapshot\"]\nsymbols =",
            "endpoints",
            "not in the binance-spot catalogue",
        ),
        row(
            "endpoint wrong method",
            "symbols =",
            "endpoints = [\"PUT /api/v3/order\"]\nsymbols =",
            "endpoints",
            "takes GET, POST, DELETE",
        ),
        row(
            "endpoint bad form",
            "symbols =",
            "endpoints = [\"/api/v3/order\"]\nsymbols =",
            "endpoints",
            "\"METHOD /path\"",
        ),
        row(
            "bad symbol",
            "symbols = [\"BTCUSDT\"]",
            "symbols = [\"BTC/USDT\"]",
            "symbols =",
            "not a symbol",
        ),
        row(
            "unknown order type",
            "order_types = [\"LIMIT\"]",
            "order_types = [\"LIMIT\", \"STOP_MARKET\"]",
            "order_types",
            "unknown order type `STOP_MARKET` for binance-spot",
        ),
        row(
            "float notional",
            "max_order_notional = \"500\"",
            "max_order_notional = 500.5",
            "max_order_notional",
            "write it as a string",
        ),
        row(
            "bad notional",
            "max_order_notional = \"500\"",
            "max_order_notional = \"5e2\"",
            "max_order_notional",
            "not a plain decimal",
        ),
        row(
            "bad qty cap",
            "max_order_notional = \"500\"",
            "max_order_notional = \"500\"\nmax_order_qty = { BTCUSDT = \"-1\" }",
            "max_order_qty",
            "max_order_qty",
        ),
        row(
            "bad rate",
            "max_order_notional = \"500\"",
            "max_order_notional = \"500\"\nrate = \"10 per second\"",
            "rate =",
            "rate = \"10 per second\" is not a rate",
        ),
        row(
            "rate wrong type",
            "max_order_notional = \"500\"",
            "max_order_notional = \"500\"\nrate = 10",
            "rate =",
            "\"10/s\"",
        ),
        row(
            "bad order rate",
            "max_order_notional = \"500\"",
            "max_order_notional = \"500\"\norder_rate = \"0/s\"",
            "order_rate",
            "COUNT/PERIOD",
        ),
        row(
            "bad mode",
            "max_order_notional = \"500\"",
            "max_order_notional = \"500\"\nmode = \"yolo\"",
            "mode =",
            "\"enforce\", \"shadow\" or \"dry-run\"",
        ),
        row(
            "price band",
            "max_order_notional = \"500\"",
            "max_order_notional = \"500\"\nprice_band = \"2 percent\"",
            "price_band",
            "price_band: a price band is a percentage",
        ),
        row(
            "daily budget",
            "max_order_notional = \"500\"",
            "max_order_notional = \"500\"\ndaily_notional = 1.5",
            "daily_notional",
            "write it as a string",
        ),
        row(
            "order budget window",
            "max_order_notional = \"500\"",
            "max_order_notional = \"500\"\nmax_orders = \"100/30d\"",
            "max_orders",
            "max_orders counts over at most 7 days",
        ),
        row(
            "open orders",
            "max_order_notional = \"500\"",
            "max_order_notional = \"500\"\nmax_open_orders = 0",
            "max_open_orders",
            "max_open_orders must be between 1 and",
        ),
        row(
            "circuit breaker",
            "venue = \"binance-spot\"",
            "venue = \"binance-spot\"\nfreeze_after_denials = \"lots\"",
            "freeze_after_denials",
            "freeze_after_denials = \"lots\" is not a rate: a rate is",
        ),
        row(
            "unknown bot key",
            "max_order_notional = \"500\"",
            "max_order_notional = \"500\"\nsymbls = []",
            "symbls",
            "did you mean `symbols`",
        ),
        row(
            "trade without notional cap",
            "max_order_notional = \"500\"",
            "",
            "allow =",
            "no max_order_notional",
        ),
        row(
            "trade without order types",
            "order_types = [\"LIMIT\"]",
            "",
            "allow =",
            "lists no order_types",
        ),
        row(
            "bad bot name",
            "[bots.grid]",
            "[bots.Grid]",
            "[bots.Grid]",
            "bot name \"Grid\"",
        ),
        Row {
            name: "token shared by two bots",
            edits: vec![(
                "max_order_notional = \"500\"",
                format!(
                    "max_order_notional = \"500\"\n\n[bots.other]\naccount = \"main\"\ntokens = [\"{}\"]\nexpires = \"{}\"\n",
                    digest(&token("grid", "1")),
                    rfc3339(fixed_now() + Duration::from_secs(86_400))
                ),
            )],
            at: "[bots.other]",
            says: "is already listed for bot `grid`",
        },
        row(
            "plain listener off loopback, even with unsafe_listen",
            "admin = \"127.0.0.1:9901\"",
            "admin = \"127.0.0.1:9901\"\nunsafe_listen = true\nplain_listen = \"0.0.0.0:8080\"",
            "plain_listen",
            "plain_listen = \"0.0.0.0:8080\" is not a loopback address",
        ),
        row(
            "client certificate binding without client_ca",
            "max_order_notional = \"500\"",
            "max_order_notional = \"500\"\nrequire_client_cert = true",
            "require_client_cert",
            "require_client_cert needs [tls] client_ca",
        ),
        row(
            "uid binding without the Unix socket",
            "max_order_notional = \"500\"",
            "max_order_notional = \"500\"\npeer_uid = 1000",
            "peer_uid",
            "peer_uid needs [server] listen_unix",
        ),
        row(
            "uid out of range",
            "max_order_notional = \"500\"",
            "max_order_notional = \"500\"\npeer_uid = -1",
            "peer_uid",
            "peer_uid must be a user id from 0 to 4294967294",
        ),
        row(
            "revocation list without a client CA",
            "[vault]",
            "[tls]\nclient_crl = [\"crl.pem\"]\n\n[vault]",
            "client_crl",
            "client_crl needs client_ca",
        ),
        Row {
            name: "bound to a certificate and a uid at once",
            edits: vec![
                (
                    "[vault]",
                    "[tls]\nclient_ca = \"tls/ca.pem\"\n\n[vault]".to_owned(),
                ),
                (
                    "admin = \"127.0.0.1:9901\"",
                    "admin = \"127.0.0.1:9901\"\nlisten_unix = \"run/bot.sock\"".to_owned(),
                ),
                (
                    "max_order_notional = \"500\"",
                    "max_order_notional = \"500\"\nrequire_client_cert = true\npeer_uid = 1000"
                        .to_owned(),
                ),
            ],
            at: "peer_uid",
            says: "bound to a client certificate or to a peer uid, not both",
        },
        row(
            "duration without a unit",
            "admin = \"127.0.0.1:9901\"",
            "admin = \"127.0.0.1:9901\"\nheader_timeout = \"10\"",
            "header_timeout =",
            "write the unit, e.g. \"10s\"",
        ),
        row(
            "duration with a fraction",
            "admin = \"127.0.0.1:9901\"",
            "admin = \"127.0.0.1:9901\"\nupstream_timeout = \"1.5s\"",
            "upstream_timeout =",
            "whole number and one unit",
        ),
        row(
            "duration out of range, in the operator's units",
            "admin = \"127.0.0.1:9901\"",
            "admin = \"127.0.0.1:9901\"\nconnect_timeout = \"5m\"",
            "connect_timeout =",
            "connect_timeout must be between 100ms and 1m, not \"5m\"",
        ),
        row(
            "duration and its _ms key both set",
            "admin = \"127.0.0.1:9901\"",
            "admin = \"127.0.0.1:9901\"\nwatch_interval_ms = 500\nwatch_interval = \"2s\"",
            "watch_interval =",
            "set watch_interval or watch_interval_ms, not both",
        ),
        row(
            "account duration beyond the exchange's maximum",
            "secret = \"main\"",
            "secret = \"main\"\nrecv_window = \"2m\"",
            "recv_window =",
            "recv_window must be between 1ms and 1m (the exchange's maximum is 60s)",
        ),
        Row {
            name: "account not a table",
            edits: vec![(
                "[accounts.main]\nvenue = \"binance-spot\"\nsecret = \"main\"\n",
                "[accounts]\nmain = 5\n".to_owned(),
            )],
            at: "main = 5",
            says: "[accounts.main] must be a table",
        },
    ]
}

#[test]
fn every_load_time_mistake_is_reported_at_its_line() {
    let dir = TempDir::new("config-rows");
    load_text(dir.path(), &base()).expect("the base configuration is valid");
    let mut failures = Vec::new();
    for row in rows() {
        let mut text = base();
        for (find, replace) in &row.edits {
            assert!(text.contains(find), "{}: base lacks {find:?}", row.name);
            text = text.replacen(find, replace, 1);
        }
        let result = load_text(dir.path(), &text);
        let Err(diagnostics) = result else {
            failures.push(format!("{}: loaded without error", row.name));
            continue;
        };
        let errors = errors(&diagnostics);
        let line = if row.at == "[bots.other]" {
            // The duplicate is reported at the second listing, inside [bots.other].
            line_of(&text, row.at) + 2
        } else {
            line_of(&text, row.at)
        };
        let found = errors
            .iter()
            .any(|d| d.message.contains(row.says) && d.line == line);
        if !found || errors.len() != 1 {
            failures.push(format!(
                "{}: want one error at line {line} saying {:?}, got:\n{}",
                row.name,
                row.says,
                errors
                    .iter()
                    .map(|d| format!("    {d}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            ));
        }
        for error in &errors {
            assert!(error.column >= 1 && error.line >= 1);
            assert!(!error.message.contains("kw_grid_x") || row.name == "token instead of digest");
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn a_new_bot_without_token_or_expiry_gets_both_from_token_new_days() {
    let dir = TempDir::new("config-new-bot");
    keyward_tests::launch::write_vault_with(dir.path(), &["main"]);
    let text =
        base()
            .replacen("tokens = [", "# tokens = [", 1)
            .replacen("expires = ", "# expires = ", 1);
    let config = load_text(dir.path(), &text).expect("a bot with neither token nor expiry loads");
    let warning = config
        .warnings
        .iter()
        .find(|w| w.message.contains("has no token yet"))
        .expect("the missing token is warned about");
    assert!(
        warning.message.contains("keyward token new grid --days 30"),
        "{warning}"
    );
    let path = dir.path().join("keyward.toml");
    let path = path.to_str().unwrap();
    // Without --days the token would have no expiry: refused, the file left as it was.
    let (code, out, err) = run_cli(&["token", "new", "grid", "--config", path], fixed_now());
    assert_eq!(code, 64, "{out}{err}");
    assert!(
        err.contains("(`keyward token new grid --days 30` sets it)"),
        "{err}"
    );
    assert!(err.contains("the new token was not added"), "{err}");
    assert_eq!(std::fs::read_to_string(path).unwrap(), text);
    let (code, out, err) = run_cli(
        &["token", "new", "grid", "--days", "30", "--config", path],
        fixed_now(),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("kw_grid_"), "{out}");
    assert!(err.contains("set bots.grid.expires to "), "{err}");
    assert!(err.contains("(it had none)"), "{err}");
    let config = Config::load(Path::new(path), fixed_now()).expect("valid after token new");
    let bot = config.policy.bot("grid").unwrap();
    assert_eq!(bot.tokens().len(), 1);
    assert_eq!(
        bot.expires(),
        fixed_now() + Duration::from_secs(30 * 86_400),
        "the expiry is 30 days from now"
    );
}

#[test]
fn durations_may_be_written_with_units_beside_the_ms_keys() {
    let dir = TempDir::new("config-durations");
    let text = base()
        .replacen(
            "admin = \"127.0.0.1:9901\"",
            "admin = \"127.0.0.1:9901\"\nheader_timeout = \"2s\"\nupstream_timeout_ms = 2500\nwatch_interval = \"0s\"",
            1,
        )
        .replacen(
            "secret = \"main\"",
            "secret = \"main\"\nrecv_window = \"500ms\"\nclient_order_id_window = \"1d\"",
            1,
        )
        .replacen(
            "file = \"audit.jsonl\"",
            "file = \"audit.jsonl\"\nfsync_interval = \"1m\"",
            1,
        );
    let config = load_text(dir.path(), &text).expect("durations with units load");
    assert_eq!(config.server.limits.header_timeout, Duration::from_secs(2));
    assert_eq!(
        config.server.limits.upstream_timeout,
        Duration::from_millis(2500)
    );
    assert_eq!(config.server.watch_interval, None);
    let account = &config.accounts["main"];
    assert_eq!(account.recv_window_ms, 500);
    assert_eq!(account.client_order_id_window, Duration::from_secs(86_400));
    assert_eq!(config.audit.fsync_interval, Some(Duration::from_secs(60)));
}

#[test]
fn every_mistake_in_every_file_is_reported_in_one_run() {
    let dir = TempDir::new("config-all");
    std::fs::create_dir(dir.path().join("bots.d")).unwrap();
    std::fs::write(
        dir.path().join("bots.d/extra.toml"),
        // A token and no expiry: a bot with neither is a new bot, warned about only.
        format!(
            "[bots.extra]\naccount = \"main\"\ntokens = [\"{}\"]\nallow = [\"transfer\"]\n\n[server]\nlisten = \"127.0.0.1:1\"\n",
            digest(&token("extra", "1"))
        ),
    )
    .unwrap();
    let text = base()
        .replace(
            "max_token_days = 90",
            "include = [\"bots.d/*.toml\"]\nmax_token_days = 90",
        )
        .replace("listen = \"127.0.0.1:8443\"", "listen = \"0.0.0.0:8443\"")
        .replace(
            "venue = \"binance-spot\"",
            "venue = \"binance-spot\"\nupstream = \"http://x\"",
        )
        .replace("order_types = [\"LIMIT\"]", "order_types = [\"LIMITT\"]")
        .replace(
            "max_order_notional = \"500\"",
            "max_order_notional = \"500\"\nmode = \"loud\"",
        );
    let diagnostics = load_text(dir.path(), &text).unwrap_err();
    let errors = errors(&diagnostics);
    let rendered: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let expect = [
        ("keyward.toml", "not a loopback address"),
        ("keyward.toml", "must use https://"),
        ("keyward.toml", "unknown order type `LIMITT`"),
        ("keyward.toml", "mode must be"),
        ("extra.toml", "`transfer` cannot be allowed"),
        ("extra.toml", "has no `expires`"),
        ("extra.toml", "`server` cannot appear in an included file"),
    ];
    for (file, says) in expect {
        assert!(
            rendered
                .iter()
                .any(|r| r.contains(file) && r.contains(says)),
            "missing {file}: {says} in\n{}",
            rendered.join("\n")
        );
    }
    // Main file first, then the include, each in line order.
    let positions: Vec<(bool, usize)> = errors
        .iter()
        .map(|d| (d.file.ends_with("extra.toml"), d.line))
        .collect();
    let mut sorted = positions.clone();
    sorted.sort_unstable();
    assert_eq!(positions, sorted);
}

/// The shipped example, copied with its included bot file.
fn example(dir: &Path) -> PathBuf {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    std::fs::create_dir_all(dir.join("bots.d")).unwrap();
    std::fs::copy(
        deploy.join("keyward.example.toml"),
        dir.join("keyward.toml"),
    )
    .unwrap();
    std::fs::copy(
        deploy.join("bots.d/futures.toml"),
        dir.join("bots.d/futures.toml"),
    )
    .unwrap();
    // The example's key lives where its deployment mounts it; here, beside the copy,
    // with a vault holding both accounts' entries, so that `check` finds them.
    let path = dir.join("keyward.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replacen("file:/run/secrets/keyward-master-key", "file:master.key", 1);
    std::fs::write(&path, text).unwrap();
    keyward_tests::launch::write_vault_with(dir, &["binance-main", "binance-futures"]);
    path
}

#[test]
fn check_accepts_the_example_and_lists_every_problem_of_a_broken_config() {
    let dir = TempDir::new("cli-check");
    let path = example(dir.path());
    let config = path.to_str().unwrap();
    let (code, out, err) = run_cli(&["--config", config, "check"], fixed_now());
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ok: 2 accounts, 3 bots, 2 files"), "{out}");
    assert!(err.is_empty(), "no warnings expected on the example: {err}");

    let broken = std::fs::read_to_string(&path)
        .unwrap()
        .replace(
            "venue = \"binance-usdm\"",
            "venue = \"binance-usdm\"\nupstream = \"http://fapi.binance.com\"",
        )
        .replace(
            "symbols = [\"BTCUSDT\", \"ETHUSDT\"] # exact",
            "symbols = [\"BTC USDT\"] # exact",
        );
    let line = line_of(&broken, "upstream = \"http://");
    std::fs::write(&path, broken).unwrap();
    let (code, out, err) = run_cli(&["--config", config, "check"], fixed_now());
    assert_eq!(code, 64, "{out}{err}");
    let expected = format!(
        "keyward.toml:{line}:12: error: upstream `http://fapi.binance.com` must use https://"
    );
    assert!(err.contains(&expected), "{err}");
    assert!(err.contains("error: `BTC USDT` is not a symbol"), "{err}");
    assert!(err.contains("2 errors found"), "{err}");
}

/// The files of a ConfigMap (`name: |` blocks under `data:`) in a YAML manifest.
fn configmap_files(manifest: &str) -> Vec<(String, String)> {
    let mut files = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in manifest.lines() {
        if let Some(name) = line
            .strip_prefix("  ")
            .and_then(|l| l.strip_suffix(": |"))
            .filter(|n| !n.starts_with(' '))
        {
            files.extend(current.take());
            current = Some((name.to_owned(), String::new()));
        } else if let Some((_, text)) = current.as_mut() {
            match line.strip_prefix("    ") {
                Some(body) => {
                    text.push_str(body);
                    text.push('\n');
                }
                None if line.trim().is_empty() => text.push('\n'),
                None => files.extend(current.take()),
            }
        }
    }
    files.extend(current);
    files
}

#[test]
fn the_kubernetes_configmap_is_a_valid_configuration() {
    let manifest = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/k8s/keyward-sidecar.yaml"),
    )
    .unwrap();
    let files = configmap_files(&manifest);
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["keyward.toml", "bots-grid.toml"]);
    let dir = TempDir::new("configmap-check");
    let root = format!("{}/", dir.path().display());
    // The manifest mounts the configuration under /etc/keyward and the vault and its
    // key under /run/keyward/secrets: both live in the test's directory here.
    for (name, text) in &files {
        let text = text
            .replace("/etc/keyward/", &root)
            .replace("/run/keyward/secrets/", &root);
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    keyward_tests::launch::write_vault_with(dir.path(), &["binance-main"]);
    let config = dir.path().join("keyward.toml");
    let (code, out, err) = run_cli(
        &["--config", config.to_str().unwrap(), "check"],
        fixed_now(),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ok: 1 account, 1 bot, 2 files"), "{out}");
}

#[test]
fn explain_reports_decision_reason_intent_and_rule() {
    let dir = TempDir::new("cli-explain");
    let path = example(dir.path());
    let config = path.to_str().unwrap();
    let explain = |bot: &str, request: &str, body: Option<&str>| {
        let mut args = vec!["--config", config, "explain", "--bot", bot, request];
        if let Some(body) = body {
            args.extend(["--body", body]);
        }
        run_cli(&args, fixed_now())
    };
    let (code, out, _) = explain(
        "grid",
        "POST /api/v3/order?symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=60000&timestamp=1&signature=x",
        None,
    );
    assert_eq!(code, 0);
    assert!(
        out.contains("decision: allow, if keyward's reference price is within the band"),
        "{out}"
    );
    assert!(
        out.contains("budget:   bot: daily_notional 20000, max_orders 500/d, max_open_orders 20"),
        "{out}"
    );
    assert!(
        out.contains("rule:     allow (endpoint POST /api/v3/order, class trade) at "),
        "{out}"
    );
    assert!(
        out.contains("1. BUY LIMIT BTCUSDT quantity 0.001 price 60000 (notional <= 60)"),
        "{out}"
    );
    assert!(out.contains("body: symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=60000&recvWindow=5000&timestamp=<keyward's clock>"), "{out}");
    assert!(out.contains("stripped: timestamp, signature"), "{out}");

    let (_, out, _) = explain(
        "grid",
        "POST /api/v3/order",
        Some("symbol=DMGUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1000&price=0.05"),
    );
    assert!(out.contains("decision: deny"), "{out}");
    assert!(out.contains("reason:   symbol_not_allowed (403"), "{out}");
    assert!(out.contains("rule:     symbols at "), "{out}");

    let (_, out, _) = explain(
        "grid",
        "POST /sapi/v1/capital/withdraw/apply?coin=USDT&amount=5000",
        None,
    );
    assert!(
        out.contains("reason:   money_movement_denied (403"),
        "{out}"
    );
    assert!(out.contains("not configurable"), "{out}");

    let (_, out, _) = explain("dashboard", "POST /api/v3/order?symbol=BTCUSDT", None);
    assert!(out.contains("reason:   path_not_allowed (403"), "{out}");

    let (_, out, _) = explain("grid", "GET /api/v3/%2e%2e/sapi/v1/asset/transfer", None);
    assert!(out.contains("reason:   path_non_canonical (400"), "{out}");

    let (code, _, err) = explain("nobody", "GET /api/v3/account", None);
    assert_eq!(code, 1);
    assert!(err.contains("no bot named `nobody`"), "{err}");
}

#[test]
fn token_new_list_revoke_edit_the_file_in_place() {
    let dir = TempDir::new("cli-token");
    let path = example(dir.path());
    let config = path.to_str().unwrap();
    let before = std::fs::read_to_string(&path).unwrap();
    let (code, out, err) = run_cli(
        &["--config", config, "token", "new", "hedger", "--days", "30"],
        fixed_now(),
    );
    assert_eq!(code, 0, "{err}");
    let token = out.trim().to_owned();
    assert!(
        token.starts_with("kw_hedger_") && token.len() == "kw_hedger_".len() + 43,
        "{out}"
    );
    assert!(
        err.contains("bots.d/futures.toml"),
        "the digest goes to the file defining the bot: {err}"
    );
    // --days changes the bot's expiry, which every token shares: it says so.
    assert!(
        err.contains("set bots.hedger.expires to") && err.contains("every token of hedger"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        before,
        "the main file is untouched"
    );
    let file = std::fs::read_to_string(dir.path().join("bots.d/futures.toml")).unwrap();
    assert!(
        file.starts_with("# Bots kept in their own file"),
        "comments survive: {file}"
    );
    assert!(file.contains(&digest(&token)));
    assert!(!file.contains(&token), "only the digest is stored");
    assert!(file.contains(&format!(
        "expires = \"{}\"",
        rfc3339(fixed_now() + Duration::from_secs(30 * 86_400))
    )));

    let loaded = Config::load(&path, fixed_now()).unwrap();
    let bot = loaded
        .policy
        .authenticate(Some(&token), fixed_now())
        .unwrap();
    assert_eq!(bot.name(), "hedger");

    let (code, out, _) = run_cli(&["--config", config, "token", "list"], fixed_now());
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!("  active   {}", digest(&token))),
        "{out}"
    );

    let short = &digest(&token)[..19];
    let (code, out, err) = run_cli(
        &[
            "--config", config, "token", "revoke", "hedger", "--digest", short,
        ],
        fixed_now(),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("revoked 1 token of bot hedger"), "{out}");
    let loaded = Config::load(&path, fixed_now()).unwrap();
    assert_eq!(
        loaded
            .policy
            .authenticate(Some(&token), fixed_now())
            .unwrap_err(),
        Denied::AuthRevoked
    );
    let (code, _, err) = run_cli(
        &[
            "--config", config, "token", "revoke", "hedger", "--digest", short,
        ],
        fixed_now(),
    );
    assert_eq!(code, 1);
    assert!(err.contains("no active token matching"), "{err}");

    let (code, _, err) = run_cli(
        &["--config", config, "token", "new", "hedger", "--days", "91"],
        fixed_now(),
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("--days must be from 1 to max_token_days (90)"),
        "{err}"
    );
}

/// A bot without a token is a warning, never an error: `check` says what to run, and
/// `token new`, which is how the bot gets its first token, works on it.
#[test]
fn a_bot_without_a_token_is_warned_about_and_can_be_issued_one() {
    use keyward_tests::run_cli;
    for (name, find, replace, at) in [
        ("no tokens", "tokens = [", "# tokens = [", "[bots.grid]"),
        (
            "empty tokens",
            "tokens = [\"",
            "tokens = []\n# was [\"",
            "tokens = []",
        ),
    ] {
        let dir = TempDir::new("config-no-token");
        keyward_tests::launch::write_vault_with(dir.path(), &["main"]);
        let text = base().replacen(find, replace, 1);
        let line = text.lines().position(|l| l.starts_with(at)).unwrap() + 1;
        let config = load_text(dir.path(), &text).unwrap_or_else(|d| panic!("{name}: {d:?}"));
        let warning = config
            .warnings
            .iter()
            .find(|w| w.message.contains("has no token yet"))
            .unwrap_or_else(|| panic!("{name}: {:?}", config.warnings));
        assert_eq!(warning.line, line, "{name}");
        assert!(warning.message.contains("keyward token new grid"), "{name}");
        let path = dir.path().join("keyward.toml");
        let path = path.to_str().unwrap();
        let (code, _, err) = run_cli(&["--config", path, "check"], fixed_now());
        assert_eq!(code, 0, "{name}: {err}");
        assert!(err.contains("has no token yet"), "{name}: {err}");
        let (code, out, err) = run_cli(&["--config", path, "token", "new", "grid"], fixed_now());
        assert_eq!(code, 0, "{name}: {err}");
        assert!(out.starts_with("kw_grid_"), "{name}: {out}");
        // The digest is recorded, and the bot now has a token.
        let config = Config::load(Path::new(path), fixed_now()).unwrap();
        assert!(
            !config
                .warnings
                .iter()
                .any(|w| w.message.contains("has no token yet"))
        );
        assert_eq!(
            config.policy.bot("grid").unwrap().tokens().len(),
            1,
            "{name}"
        );
    }
}

/// Scripting: `explain --exit-code` says deny with its exit code, an unknown bot gets
/// the nearest name, and `KEYWARD_CONFIG` names the configuration when `--config`
/// does not.
#[test]
fn explain_exit_code_bot_suggestions_and_keyward_config() {
    let dir = TempDir::new("cli-scripting");
    let path = example(dir.path());
    let config = path.to_str().unwrap();
    let order = "POST /api/v3/order?symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=60000&timestamp=1&signature=x";
    let withdraw = "POST /sapi/v1/capital/withdraw/apply?coin=USDT&address=x&amount=1";
    let explain = |bot: &str, request: &str| {
        run_cli(
            &[
                "--config",
                config,
                "explain",
                "--exit-code",
                "--bot",
                bot,
                request,
            ],
            fixed_now(),
        )
    };
    let (code, out, _) = explain("grid", order);
    assert_eq!(code, 0, "{out}");
    let (code, out, err) = explain("grid", withdraw);
    assert_eq!(code, 3, "{out}{err}");
    assert!(out.contains("decision: deny"), "{out}");
    // Without --exit-code a deny is still a successful explanation.
    let (code, _, _) = run_cli(
        &["--config", config, "explain", "--bot", "grid", withdraw],
        fixed_now(),
    );
    assert_eq!(code, 0);
    let (code, _, err) = explain("gird", order);
    assert_eq!(code, 1);
    assert!(err.contains("no bot named `gird`"), "{err}");
    assert!(err.contains("(did you mean `grid`?)"), "{err}");
    // KEYWARD_CONFIG, in a process of its own (the variable is the process's).
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_keyward-e2e"))
        .arg("check")
        .current_dir(std::env::temp_dir())
        .env("KEYWARD_CONFIG", &path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("ok: 2 accounts, 3 bots, 2 files"),
        "{stdout}"
    );
}

#[test]
fn json_forms_completions_man_page_version_and_where_config_goes() {
    let dir = TempDir::new("cli-json");
    let path = example(dir.path());
    let config = path.to_str().unwrap();
    let json = |args: &[&str]| -> (u8, serde_json::Value) {
        let (code, out, err) = run_cli(args, fixed_now());
        let value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}):\n{out}{err}"));
        (code, value)
    };
    // check: the same facts as the text form, and every problem with its place.
    let (code, report) = json(&["check", "--config", config, "--json"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["ok"], true);
    assert_eq!(report["bots"].as_array().map(Vec::len), Some(3), "{report}");
    assert_eq!(
        report["files"].as_array().map(Vec::len),
        Some(2),
        "{report}"
    );
    let broken = std::fs::read_to_string(&path).unwrap().replacen(
        "[server]",
        "[server]\nlisten_port = 1",
        1,
    );
    let broken_path = dir.path().join("broken.toml");
    std::fs::write(&broken_path, &broken).unwrap();
    let (code, report) = json(&["check", "--json", "--config", broken_path.to_str().unwrap()]);
    assert_eq!(code, 64);
    assert_eq!(report["ok"], false);
    let problem = &report["problems"][0];
    assert_eq!(problem["severity"], "error");
    assert_eq!(problem["line"], line_of(&broken, "listen_port") as u64);
    assert!(
        problem["message"]
            .as_str()
            .unwrap()
            .contains("unknown key `listen_port`"),
        "{report}"
    );
    // explain: the decision, reason and status as fields a script can test.
    let withdraw = "POST /sapi/v1/capital/withdraw/apply?coin=USDT&address=x&amount=1";
    let (code, explained) = json(&[
        "--config",
        config,
        "explain",
        "--json",
        "--exit-code",
        "--bot",
        "grid",
        withdraw,
    ]);
    assert_eq!(code, 3);
    assert_eq!(explained["decision"], "deny");
    assert_eq!(explained["reason"], "money_movement_denied");
    assert_eq!(explained["status"], 403);
    // token list and certs list.
    let (code, tokens) = json(&["token", "list", "--json", "--config", config]);
    assert_eq!(code, 0);
    let grid = tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["bot"] == "grid")
        .expect("grid listed");
    assert!(
        grid["tokens"][0].as_str().unwrap().starts_with("sha256:"),
        "{grid}"
    );
    let (code, _, err) = run_cli(&["--config", config, "certs", "init"], fixed_now());
    assert_eq!(code, 0, "{err}");
    // An unknown bot is answered alike by every command that names one.
    let (code, _, err) = run_cli(
        &["certs", "issue-client", "gird", "--config", config],
        fixed_now(),
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("no bot named `gird`") && err.contains("(did you mean `grid`?)"),
        "{err}"
    );
    let (code, certs) = json(&["certs", "list", "--json", "--config", config]);
    assert_eq!(code, 0);
    let kinds: Vec<&str> = certs
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["ca", "server"], "{certs}");
    // freeze and unfreeze need a running keyward: said plainly, non-zero.
    let (code, _, err) = run_cli(&["freeze", "--json", "--config", config], fixed_now());
    assert_eq!(code, 1);
    assert!(err.contains("no keyward is running"), "{err}");

    // --config only where a configuration is read; once.
    let (code, _, err) = run_cli(&["--config", config, "demo"], fixed_now());
    assert_eq!(code, 2);
    assert!(
        err.contains("`keyward demo` reads no configuration file"),
        "{err}"
    );
    let (code, _, err) = run_cli(&["probe", "--config", config], fixed_now());
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run_cli(
        &["--config", "a.toml", "check", "--config", "b.toml"],
        fixed_now(),
    );
    assert_eq!(code, 2);
    assert!(err.contains("--config is given twice"), "{err}");
    let (_, help, _) = run_cli(&["demo", "--help"], fixed_now());
    assert!(!help.contains("--config"), "{help}");
    let (_, help, _) = run_cli(&["vault", "add", "--help"], fixed_now());
    assert!(help.contains("--config <FILE>"), "{help}");

    // Completions for each shell name the commands; the man page renders.
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let (code, script, err) = run_cli(&["completions", shell], fixed_now());
        assert_eq!(code, 0, "{shell}: {err}");
        assert!(
            script.contains("unfreeze") && script.contains("cancel-open-orders"),
            "{shell}"
        );
    }
    let (code, page, _) = run_cli(&["man"], fixed_now());
    assert_eq!(code, 0);
    assert!(
        page.contains(".TH keyward 1") && page.contains("unfreeze"),
        "{page}"
    );
    let pages = dir.path().join("man");
    let (code, _, err) = run_cli(&["man", "--dir", pages.to_str().unwrap()], fixed_now());
    assert_eq!(code, 0, "{err}");
    for page in ["keyward.1", "keyward-serve.1", "keyward-token-new.1"] {
        assert!(pages.join(page).is_file(), "{page} not written");
    }
    // The version names the commit it was built from.
    let (code, version, _) = run_cli(&["--version"], fixed_now());
    assert_eq!(code, 0);
    let commit = version
        .trim()
        .strip_prefix(concat!("keyward ", env!("CARGO_PKG_VERSION"), " ("))
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("unexpected version line {version:?}"));
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    match head {
        Some(head) => assert_eq!(commit, head, "{version}"),
        None => assert_eq!(commit, "unknown commit"),
    }
}

#[test]
fn a_redis_password_is_never_written_inline_nor_echoed() {
    let dir = TempDir::new("config-state");
    let text = base().replace(
        "[audit]",
        "[state]\nbackend = \"redis://keyward:hunter2secret@127.0.0.1:6379\"\n\n[audit]",
    );
    let diagnostics = load_text(dir.path(), &text).unwrap_err();
    let shown: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
    assert!(!shown.is_empty());
    for line in &shown {
        assert!(!line.contains("hunter2secret"), "{line}");
    }
    // The accepted form: the password in a file, the default timeouts and policy.
    std::fs::write(dir.path().join("redis.password"), "hunter2secret\n").unwrap();
    let text = base().replace(
        "[audit]",
        "[state]\nbackend = \"rediss://redis.internal:6380/2\"\nusername = \"keyward\"\npassword_file = \"redis.password\"\nca_file = \"redis-ca.pem\"\nnamespace = \"prod-eu\"\n\n[audit]",
    );
    let config = load_text(dir.path(), &text).unwrap();
    let keyward::config::StateBackend::Redis(redis) = &config.state else {
        panic!("a Redis backend: {:?}", config.state);
    };
    assert_eq!(redis.url, "rediss://redis.internal:6380/2");
    assert_eq!(
        redis.password_file.as_deref(),
        Some(dir.path().join("redis.password").as_path())
    );
    assert_eq!(
        redis.timeout,
        Duration::from_millis(keyward::config::DEFAULT_STATE_TIMEOUT_MS)
    );
    assert_eq!(
        redis.reads_when_unavailable,
        keyward::config::WhenUnavailable::Refuse
    );
    assert_eq!(
        redis.address_allowances,
        keyward::config::AddressAllowances::Shared
    );
    assert!(!format!("{config:?}").contains("hunter2secret"));
}
