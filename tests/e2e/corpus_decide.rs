//! Every Binance case of attacks/corpus.json that is decided by the request head,
//! parsing or policy, fed through keyward's decision path (front, authenticate,
//! route, parse, authorize, rate limits) without a network.
//!
//! For each case: the expected status class (and status, when listed); for every
//! `reaches_exchange: false` case, no `Permit`; for every allowed case, the request
//! keyward would sign, checked against the case's outbound expectations with an
//! independent parser and HMAC. Cases decided only by a running server (framing,
//! timeouts, upstream faults) are listed as skipped with their reason.

use std::collections::BTreeMap;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use keyward::config::Config;
use keyward::credential::{Credential, KeyKind};
use keyward::decide::{ConfigOnly, admit, judge_at_once, parse};
use keyward::error::Rejection;
use keyward::front::Head;
use keyward::identity::Transport;
use keyward_policy::clock::FakeRelativeClock;
use keyward_policy::{Permit, RateLimits};
use keyward_tests::{
    FixturePolicy, FixtureTokens, TempDir, canary, corpus, corpus_cases, fixed_now, fixture_tokens,
    hmac_sha256_hex, write_fixture,
};
use keyward_venues::{Outbound, ParsedCall, SignContext};
use serde_json::Value;

const SIGN_TS: u64 = 1_796_083_200_123;

/// Cases that only a running server can decide, and why.
fn server_only(case: &Value) -> Option<&'static str> {
    let id = case["id"].as_str().unwrap_or_default();
    let transport = case["request"]["transport"].as_str().unwrap_or_default();
    let upstream = case["setup"]["upstream"].as_str().unwrap_or_default();
    match id {
        "AUTH-006" => return Some("statistical timing test of token comparison (nightly job)"),
        "AUTH-015" => return Some("daily notional budgets arrive with the anti-pump issue"),
        "OPS-014" => return None,
        "OPS-016" => {
            return Some("policy reload with insecure file permissions needs a running proxy");
        }
        "OPS-017" => return Some("audit sink failure needs a running proxy"),
        "OPS-020" => return Some("secret rotation under traffic needs a running proxy"),
        "PATH-019" | "PROTO-008" => return None,
        "H2-004" => {
            return Some(
                "duplicate :path is rejected by the HTTP/2 layer before keyward sees the request",
            );
        }
        "H2-006" => {
            return Some("content-length versus DATA length is checked by the HTTP/2 layer");
        }
        _ => {}
    }
    if transport == "raw-h1" || case["request"]["raw"].is_string() {
        return Some("HTTP/1.1 framing is decided by the HTTP server, tested end to end over TLS");
    }
    if id.starts_with("RES-") {
        return Some("deadlines, body caps and connection caps are enforced by the running server");
    }
    if upstream != "mock-normal" {
        return Some("needs a running proxy in front of a scripted mock exchange");
    }
    None
}

/// Reasons the corpus names that keyward deliberately words differently; the status
/// class (what clients see) still matches.
fn reason_differs(id: &str) -> Option<&'static str> {
    match id {
        // SEC-002 and MONEY-B01 expect money_movement_denied for the same endpoint.
        "PROTO-001" => Some("money_movement_denied"),
        // `symbol[]` is sent twice, and duplicates are caught before unknown keys.
        "PARAM-011" => Some("param_duplicate"),
        // The method itself is refused before its :protocol is looked at.
        "H2-008" => Some("connect_not_supported"),
        _ => None,
    }
}

struct Fixtures {
    _dir: TempDir,
    p0: Config,
    p0_without_eth: Config,
    p1: Config,
    tokens: FixtureTokens,
}

fn fixtures() -> Fixtures {
    let dir = TempDir::new("corpus");
    let tokens = fixture_tokens();
    let load = |policy| {
        let path = write_fixture(dir.path(), policy, &tokens, fixed_now());
        Config::load(&path, fixed_now())
            .unwrap_or_else(|d| panic!("fixture {policy:?} is invalid:\n{d}"))
    };
    Fixtures {
        p0: load(FixturePolicy::P0),
        p0_without_eth: load(FixturePolicy::P0WithoutEth),
        p1: load(FixturePolicy::P1Futures),
        tokens,
        _dir: dir,
    }
}

struct Request {
    method: Method,
    target: String,
    authority: Option<String>,
    headers: HeaderMap,
    body: Vec<u8>,
}

fn request_of(case: &Value, tokens: &FixtureTokens) -> Request {
    let request = corpus::request_of(case, tokens, None);
    let mut headers = HeaderMap::new();
    for (name, value) in &request.headers {
        headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    Request {
        method: request.method.parse().unwrap(),
        target: request.target,
        authority: request.authority,
        headers,
        body: request.body,
    }
}

fn substitute(text: &str, tokens: &FixtureTokens) -> String {
    corpus::substitute(text, tokens, None)
}

type Decision = Result<(Permit, ParsedCall), Rejection>;

/// The corpus's requests arrive on the TLS listener without a client certificate,
/// and are decided from the configuration alone, as `keyward explain` decides them
/// offline and with the same functions the server uses.
fn decide_request(config: &Config, request: &Request) -> Decision {
    let head = Head {
        method: &request.method,
        target: &request.target,
        authority: request.authority.as_deref(),
        headers: &request.headers,
        padded_credential: false,
        verified_key: None,
    };
    let hosts = config.server.host_policy(&[config.server.listen.port()]);
    let transport = Transport::Tls { client: None };
    let (admitted, target) =
        admit(config, &hosts, &head, &transport, fixed_now()).map_err(|r| r.rejection)?;
    let call = parse(&admitted, &target, &request.headers, &request.body)?;
    let judged = judge_at_once(config, &admitted, call, &ConfigOnly).expect("never waits");
    Ok((judged.verdict?, judged.call))
}

fn sign(config: &Config, permit: &Permit, call: &ParsedCall) -> Outbound {
    let account = &config.accounts[permit.account()];
    let credential =
        Credential::new(canary::API_KEY, KeyKind::Hmac, canary::SECRET.as_bytes()).unwrap();
    account
        .venue
        .adapter()
        .sign(
            call,
            permit,
            SignContext {
                credential: &credential,
                timestamp_ms: SIGN_TS,
                recv_window_ms: account.recv_window_ms,
                nonce: 1,
            },
        )
        .unwrap()
}

/// Checks a signed request the way the exchange would read it: query and body split
/// on `&` and `=`, one `signature`, keyward's timestamp, a valid HMAC over the bytes
/// before the signature, and whatever the case demands of the outbound request.
fn check_outbound(id: &str, outbound: &Outbound, expected: &Value, tokens: &FixtureTokens) {
    let query = outbound
        .path_and_query
        .split_once('?')
        .map_or("", |(_, q)| q);
    let body = std::str::from_utf8(&outbound.body).unwrap();
    let total = format!("{query}{body}");
    let params: Vec<(&str, &str)> = query
        .split('&')
        .chain(body.split('&'))
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap())
        .collect();
    let signatures: Vec<&str> = params
        .iter()
        .filter(|(k, _)| *k == "signature")
        .map(|(_, v)| *v)
        .collect();
    assert_eq!(signatures.len(), 1, "{id}: exactly one signature");
    let unsigned = total
        .strip_suffix(&format!("&signature={}", signatures[0]))
        .unwrap();
    assert_eq!(
        hmac_sha256_hex(canary::SECRET.as_bytes(), unsigned.as_bytes()),
        signatures[0],
        "{id}"
    );
    let value = |key: &str| params.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    assert_eq!(
        value("timestamp"),
        Some(SIGN_TS.to_string().as_str()),
        "{id}: keyward's clock"
    );
    assert_eq!(
        value("recvWindow"),
        Some("5000"),
        "{id}: the account's window"
    );
    let header_names: Vec<String> = outbound
        .headers
        .iter()
        .map(|(n, _)| n.as_str().to_owned())
        .collect();
    let header_values: Vec<String> = outbound
        .headers
        .iter()
        .map(|(_, v)| v.to_str().unwrap().to_owned())
        .collect();
    assert!(
        header_values.contains(&canary::API_KEY.to_owned()),
        "{id}: the real API key is set"
    );
    let Some(out) = expected.get("outbound").filter(|o| o.is_object()) else {
        return;
    };
    if let Some(exact) = out["params_exact"].as_object() {
        for (key, want) in exact {
            let want = want.as_str().unwrap();
            if want.starts_with('<') {
                continue;
            }
            assert_eq!(value(key), Some(want), "{id}: outbound {key}");
        }
    }
    for list in ["must_not_contain", "body_must_not_contain"] {
        for forbidden in out[list].as_array().into_iter().flatten() {
            let forbidden = substitute(forbidden.as_str().unwrap(), tokens);
            assert!(
                !total.contains(&forbidden),
                "{id}: outbound contains {forbidden}"
            );
            assert!(
                !header_values.iter().any(|v| v.contains(&forbidden)),
                "{id}: header contains {forbidden}"
            );
        }
    }
    for name in out["headers_must_not_include"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let name = name.as_str().unwrap().to_ascii_lowercase();
        assert!(
            !header_names.contains(&name),
            "{id}: outbound header {name}"
        );
    }
    if let Some(allowed) = out["headers_exact_set"].as_array() {
        let allowed: Vec<String> = allowed
            .iter()
            .map(|h| h.as_str().unwrap().to_ascii_lowercase())
            .collect();
        for name in &header_names {
            assert!(
                allowed.contains(name),
                "{id}: unexpected outbound header {name}"
            );
        }
    }
    if let Some(path) = out["path"].as_str() {
        assert!(outbound.path_and_query.starts_with(path), "{id}");
    }
}

fn status_of(decision: &Decision) -> u16 {
    match decision {
        Ok(_) => 200,
        Err(rejection) => rejection.status().as_u16(),
    }
}

#[test]
fn binance_corpus_cases_are_decided_as_expected() {
    let fx = fixtures();
    let mut evaluated = Vec::new();
    let mut skipped: BTreeMap<String, &'static str> = BTreeMap::new();
    for case in corpus_cases().iter().filter(|c| c["exchange"] == "binance") {
        let id = case["id"].as_str().unwrap().to_owned();
        if let Some(why) = server_only(case) {
            skipped.insert(id, why);
            continue;
        }
        let config = match (case["setup"]["policy"].as_str().unwrap(), id.as_str()) {
            (_, "OPS-014") => &fx.p0_without_eth,
            ("P0", _) => &fx.p0,
            ("P1-futures", _) => &fx.p1,
            (other, _) => panic!("{id}: unknown fixture policy {other}"),
        };
        let request = request_of(case, &fx.tokens);
        let expected = &case["expected"];
        let class = expected["status_class"].as_str().unwrap();
        if id == "AUTH-013" {
            check_rate_limited(config, &request);
            evaluated.push(id);
            continue;
        }
        let decision = decide_request(config, &request);
        let status = status_of(&decision);
        assert_eq!(
            format!("{}xx", status / 100),
            class,
            "{id}: status {status} ({})",
            decision
                .as_ref()
                .err()
                .map_or("allowed".to_owned(), ToString::to_string)
        );
        if let Some(statuses) = expected["status"].as_array() {
            let statuses: Vec<u64> = statuses.iter().filter_map(Value::as_u64).collect();
            assert!(
                statuses.contains(&u64::from(status)),
                "{id}: status {status} not in {statuses:?}"
            );
        }
        if expected["reaches_exchange"] == Value::Bool(false) {
            assert!(
                decision.is_err(),
                "{id}: a refused case must not get a Permit"
            );
        }
        if let Err(rejection) = &decision {
            let want = expected["log"]["reason"].as_str().unwrap_or_default();
            let have = rejection.reason();
            match reason_differs(&id) {
                Some(ours) => assert_eq!(have, ours, "{id}"),
                None => assert_eq!(have, want, "{id}: reason"),
            }
        }
        if let Ok((permit, call)) = &decision {
            let outbound = sign(config, permit, call);
            check_outbound(&id, &outbound, expected, &fx.tokens);
        }
        evaluated.push(id);
    }
    eprintln!(
        "corpus (Binance, decision level): {} evaluated, {} skipped",
        evaluated.len(),
        skipped.len()
    );
    for (id, why) in &skipped {
        eprintln!("  skipped {id}: {why}");
    }
    assert!(
        evaluated.len() >= 60,
        "only {} Binance cases evaluated",
        evaluated.len()
    );
}

/// AUTH-013: 25 identical orders within a second (rotating X-Forwarded-For, which
/// must not matter) against P0's 10 orders per 10 s: the first 10 pass, the rest get
/// 429 with a wait.
fn check_rate_limited(config: &Config, request: &Request) {
    let clock = FakeRelativeClock::default();
    let limits = RateLimits::new(&config.policy, clock);
    let mut passed = 0;
    for i in 0..25 {
        let mut request = Request {
            method: request.method.clone(),
            target: request.target.clone(),
            authority: None,
            headers: request.headers.clone(),
            body: request.body.clone(),
        };
        request.headers.insert(
            HeaderName::from_static("x-forwarded-for"),
            HeaderValue::from_str(&format!("10.0.0.{i}")).unwrap(),
        );
        let (permit, _call) = decide_request(config, &request).unwrap();
        match limits.check(&permit) {
            Ok(()) => passed += 1,
            Err(denied) => {
                let rejection = Rejection::Denied(denied);
                assert_eq!(rejection.status().as_u16(), 429);
                let keyward_policy::Denied::RateLimited { retry_after, .. } =
                    rejection_denied(&rejection)
                else {
                    panic!("expected a rate limit");
                };
                assert!(!retry_after.is_zero());
            }
        }
    }
    assert_eq!(passed, 10);
}

fn rejection_denied(rejection: &Rejection) -> keyward_policy::Denied {
    match rejection {
        Rejection::Denied(denied) => denied.clone(),
        other => panic!("not a policy denial: {other}"),
    }
}
