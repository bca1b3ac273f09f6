//! Microbenchmarks of the CPU work keyward does for every request, through the same
//! public functions the pipeline calls: deciding on and signing one Binance order,
//! opening a shielded secret, the policy decision as the number of bots grows, and
//! writing one chained audit line.
//!
//! Run with `cargo bench -p keyward --bench hot_path`. Fixtures (configuration files
//! with 1, 100 and 10,000 bots, the sealed credential, the audit files) are built once,
//! before anything is measured.

// A bench harness, like a test: a failed setup is a failed run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::OnceCell;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Method, header};
use keyward::audit::{self, AuditLog, Decision, RequestRecord, Rotation};
use keyward::config::{Config, HostPolicy};
use keyward::credential::{Credential, KeyKind};
use keyward::decide::{self, Admitted, ConfigOnly};
use keyward::front::{Head, Target};
use keyward::identity::Transport;
use keyward::shield::Sealed;
use keyward_policy::{Mode, NoQuotes, Permit, TokenDigest};
use keyward_venues::{ParsedCall, SignContext};

/// What python-binance and ccxt send for a limit buy: their own timestamp, receive
/// window and signature included (keyward strips and replaces them).
const ORDER_BODY: &str = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001\
&price=60000&newClientOrderId=x-R4BD3S82bench0001&recvWindow=5000&timestamp=1796083200000\
&signature=3c5a2b1f0e9d8c7b6a5f4e3d2c1b0a99887766554433221100ffeeddccbbaa99";

/// A 64-character HMAC secret, the length Binance issues.
const SECRET: &str = "BENCHSECRETNhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbv01";
const API_KEY: &str = "BENCHAPIKEYvmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14";

/// A directory removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let path = std::env::temp_dir().join(format!("keyward-bench-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A well-formed token for `bot`, as `keyward token new` would print one.
fn token_of(bot: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bot.as_bytes());
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref());
    format!("kw_{bot}_{secret}")
}

fn bot_name(index: usize) -> String {
    format!("bot{index:05}")
}

/// A loaded configuration with `bots` bots on one Binance spot account, each with the
/// trading policy of the corpus's fixture P0, and the bot that the measured
/// requests come from.
struct Fixture {
    _dir: Scratch,
    config: Config,
    hosts: HostPolicy,
    token: String,
    credential: Credential,
}

impl Fixture {
    fn new(bots: usize) -> Self {
        let dir = Scratch::new(&format!("bots-{bots}"));
        let expires = time::OffsetDateTime::now_utc() + time::Duration::days(30);
        let expires = expires
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        let mut text = String::from(
            r#"[server]
listen = "127.0.0.1:8443"

[vault]
file = "keyward.vault"
key = "file:master.key"

[accounts.spot]
venue = "binance-spot"
secret = "spot"
recv_window_ms = 5000
"#,
        );
        for index in 0..bots {
            let name = bot_name(index);
            let digest = TokenDigest::of(&token_of(&name));
            text.push_str(&format!(
                r#"
[bots.{name}]
account = "spot"
tokens = ["{digest}"]
expires = "{expires}"
endpoints = ["GET /api/v3/account", "GET /api/v3/openOrders", "GET /api/v3/order", "POST /api/v3/order", "DELETE /api/v3/order", "GET /api/v3/myTrades"]
symbols = ["BTCUSDT", "ETHUSDT"]
order_types = ["LIMIT", "LIMIT_MAKER", "MARKET"]
max_order_notional = "100"
max_order_qty = {{ BTCUSDT = "0.01" }}
order_rate = "10/10s"
"#
            ));
        }
        let path = dir.path().join("keyward.toml");
        std::fs::write(&path, text).unwrap();
        let config = Config::load(&path, SystemTime::now())
            .unwrap_or_else(|diagnostics| panic!("fixture configuration: {diagnostics:?}"));
        let hosts = config.server.host_policy(&[8443]);
        // The bot in the middle of the name order, so no lookup is lucky.
        let token = token_of(&bot_name(bots / 2));
        let credential = Credential::new(API_KEY, KeyKind::Hmac, SECRET.as_bytes()).unwrap();
        Self {
            _dir: dir,
            config,
            hosts,
            token,
            credential,
        }
    }

    /// The head of `POST /api/v3/order` as a bot sends it over HTTP/1.1.
    fn order_headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8443"));
        headers.insert(
            header::USER_AGENT,
            HeaderValue::from_static("python-requests/2.32.3"),
        );
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(ORDER_BODY.len()));
        headers.insert("x-mbx-apikey", HeaderValue::from_str(&self.token).unwrap());
        headers
    }
}

/// Authentication, routing and endpoint authorization on the head.
fn admit<'c>(
    fixture: &'c Fixture,
    method: &Method,
    headers: &HeaderMap,
) -> (Admitted<'c>, Target<'static>) {
    let head = Head {
        method,
        target: ORDER_PATH,
        authority: None,
        headers,
        padded_credential: false,
        verified_key: None,
    };
    let transport = Transport::Tls { client: None };
    let (admitted, _) = decide::admit(
        &fixture.config,
        &fixture.hosts,
        &head,
        &transport,
        SystemTime::now(),
    )
    .unwrap();
    // `target` borrows only the constant path.
    let target = Target {
        path: ORDER_PATH,
        query: "",
    };
    (admitted, target)
}

const ORDER_PATH: &str = "/api/v3/order";

/// One order as the bot sent it, and what keyward made of it (for the steps that
/// start half way).
struct Order {
    fixture: Fixture,
    headers: HeaderMap,
    call: ParsedCall,
    permit: Permit,
    account: String,
    venue: &'static str,
}

impl Order {
    fn new(bots: usize) -> Self {
        let fixture = Fixture::new(bots);
        let headers = fixture.order_headers();
        let (admitted, target) = admit(&fixture, &Method::POST, &headers);
        let call = decide::parse(&admitted, &target, &headers, ORDER_BODY.as_bytes()).unwrap();
        let permit = decide::authorize(&fixture.config, &admitted, &call, &NoQuotes).unwrap();
        let account = admitted.account.name.clone();
        let venue = admitted.account.venue.name();
        Self {
            fixture,
            headers,
            call,
            permit,
            account,
            venue,
        }
    }

    fn admitted(&self) -> Admitted<'_> {
        admit(&self.fixture, &Method::POST, &self.headers).0
    }
}

// Each measured step is its own function, kept out of line, so that a profiler can
// count exactly what one call costs (see the callgrind command in docs/performance.md).

/// Head to signed request: everything keyward computes for one order.
#[inline(never)]
fn decide_and_sign_once(order: &Order, body: &[u8]) -> usize {
    let (admitted, target) = admit(&order.fixture, &Method::POST, &order.headers);
    let call = decide::parse(&admitted, &target, &order.headers, body).unwrap();
    let judged =
        decide::judge_at_once(&order.fixture.config, &admitted, call, &ConfigOnly).unwrap();
    let permit = judged.verdict.unwrap();
    sign_once(order, &admitted, &judged.call, &permit)
}

#[inline(never)]
fn admit_once<'o>(order: &'o Order, headers: &HeaderMap) -> Admitted<'o> {
    admit(&order.fixture, &Method::POST, headers).0
}

#[inline(never)]
fn parse_once(order: &Order, admitted: &Admitted<'_>, body: &[u8]) -> ParsedCall {
    let target = Target {
        path: ORDER_PATH,
        query: "",
    };
    decide::parse(admitted, &target, &order.headers, body).unwrap()
}

#[inline(never)]
fn authorize_once(order: &Order, admitted: &Admitted<'_>, call: &ParsedCall) -> Permit {
    decide::authorize(&order.fixture.config, admitted, call, &NoQuotes).unwrap()
}

#[inline(never)]
fn sign_once(order: &Order, admitted: &Admitted<'_>, call: &ParsedCall, permit: &Permit) -> usize {
    let outbound = admitted
        .venue
        .sign(
            call,
            permit,
            SignContext {
                credential: &order.fixture.credential,
                timestamp_ms: 1_796_083_200_123,
                recv_window_ms: admitted.account.recv_window_ms,
                nonce: 0,
            },
        )
        .unwrap();
    outbound.body.len()
}

/// Token lookup, routing, endpoint grant and the decision on the parsed order.
#[inline(never)]
fn policy_decision_once(order: &Order, headers: &HeaderMap) -> Permit {
    let (admitted, _) = admit(&order.fixture, &Method::POST, headers);
    decide::authorize(&order.fixture.config, &admitted, &order.call, &NoQuotes).unwrap()
}

#[inline(never)]
fn with_secret_once(sealed: &Sealed) -> usize {
    sealed
        .with_secret(|secret| black_box(secret.len()))
        .unwrap()
}

#[inline(never)]
fn hmac_shielded_once(credential: &Credential, payload: &[u8]) -> [u8; 32] {
    credential.hmac_sha256(payload).unwrap()
}

#[inline(never)]
fn hmac_unshielded_once(payload: &[u8]) -> ring::hmac::Tag {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    ring::hmac::sign(&key, payload)
}

/// The `request` record of an allowed order, built as the pipeline builds it, then
/// serialised, chained and written as one line.
#[inline(never)]
fn audit_line_once(order: &Order, log: &AuditLog) {
    let (call, permit) = (&order.call, &order.permit);
    let transport = Transport::Tls { client: None };
    let notional = audit::recorded_notional(permit);
    let legs: Vec<keyward::orders::LegRecord> = call
        .intent
        .orders
        .iter()
        .map(|o| keyward::orders::leg_record(o, None, None))
        .collect();
    let record = RequestRecord {
        ts: audit::timestamp(SystemTime::now()),
        event: "request",
        request_id: "0000000000000042",
        peer: "127.0.0.1:51234",
        transport: transport.name(),
        client_cert: transport.client_cert(),
        peer_cred: transport.peer_cred(),
        http: "h1",
        stream_method: None,
        bot: Some(permit.bot()),
        account: Some(&order.account),
        venue: Some(order.venue),
        method: "POST",
        path: ORDER_PATH,
        symbols: call.intent.symbols.iter().map(|s| s.as_str()).collect(),
        orders: permit.orders(),
        notional,
        decision: Decision::Allow,
        reason: None,
        status: None,
        mode: Some(Mode::Enforce.name()),
        stripped: &call.stripped,
        legs: &legs,
        cancels: &[],
    };
    log.write(&record).unwrap();
}

/// One signed order, whole and step by step.
fn order(c: &mut Criterion) {
    let order = OnceCell::new();
    let order = || order.get_or_init(|| Order::new(3));
    let body = ORDER_BODY.as_bytes();
    let mut group = c.benchmark_group("order");
    group.bench_function("decide_and_sign", |b| {
        let order = order();
        b.iter(|| decide_and_sign_once(order, black_box(body)));
    });
    group.bench_function("1_authenticate_and_admit", |b| {
        let order = order();
        b.iter(|| admit_once(order, black_box(&order.headers)).endpoint.key);
    });
    group.bench_function("2_parse", |b| {
        let order = order();
        let admitted = order.admitted();
        b.iter(|| parse_once(order, &admitted, black_box(body)));
    });
    group.bench_function("3_authorize", |b| {
        let order = order();
        let admitted = order.admitted();
        b.iter(|| authorize_once(order, &admitted, black_box(&order.call)));
    });
    group.bench_function("4_sign", |b| {
        let order = order();
        let admitted = order.admitted();
        b.iter(|| sign_once(order, &admitted, black_box(&order.call), &order.permit));
    });
    group.finish();
}

/// The shield: opening a sealed secret, and the HMAC the Binance signer computes
/// through it, beside the same HMAC on a key that is not shielded (what shielding
/// costs).
fn shield(c: &mut Criterion) {
    let sealed = Sealed::seal(SECRET.as_bytes()).unwrap();
    let credential = Credential::new(API_KEY, KeyKind::Hmac, SECRET.as_bytes()).unwrap();
    let payload = b"symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=60000\
&newClientOrderId=x-R4BD3S82bench0001&recvWindow=5000&timestamp=1796083200123";
    let mut group = c.benchmark_group("shield");
    group.bench_function("with_secret", |b| {
        b.iter(|| with_secret_once(black_box(&sealed)));
    });
    group.bench_function("hmac_sha256_shielded", |b| {
        b.iter(|| hmac_shielded_once(&credential, black_box(payload)));
    });
    group.bench_function("hmac_sha256_unshielded_reference", |b| {
        b.iter(|| hmac_unshielded_once(black_box(payload)));
    });
    group.finish();
}

/// Token lookup and the policy decision for one order (already parsed) when the
/// policy has 1, 100 and 10,000 bots.
fn policy(c: &mut Criterion) {
    let mut group = c.benchmark_group("policy");
    for bots in [1, 100, 10_000] {
        let order = OnceCell::new();
        group.bench_with_input(BenchmarkId::new("bots", bots), &bots, |b, &bots| {
            let order = order.get_or_init(|| Order::new(bots));
            b.iter(|| policy_decision_once(order, black_box(&order.headers)));
        });
    }
    group.finish();
}

/// The audit line of an allowed order: to /dev/null (record, serialisation, chain
/// hash and one cheap `write(2)`) and to a regular file.
fn audit_line(c: &mut Criterion) {
    let order = OnceCell::new();
    let order = || order.get_or_init(|| Order::new(1));
    let dir = Scratch::new("audit");
    let mut group = c.benchmark_group("audit");
    group.bench_function("request_line_dev_null", |b| {
        let order = order();
        let log = AuditLog::open(Path::new("/dev/null"), Rotation::default()).unwrap();
        b.iter(|| audit_line_once(order, &log));
    });
    group.bench_function("request_line_file", |b| {
        let order = order();
        let log = AuditLog::open(&dir.path().join("audit.jsonl"), Rotation::default()).unwrap();
        b.iter(|| audit_line_once(order, &log));
    });
    group.finish();
}

fn quick() -> Criterion {
    // Short runs so the whole suite finishes in a few minutes on two shared cores;
    // pass `--measurement-time` and `--warm-up-time` for steadier figures.
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = quick();
    targets = order, shield, policy, audit_line
}
criterion_main!(benches);
