//! Known-answer tests: every Binance vector of venues/vectors.json, against keyward's
//! signing primitives and, for REST vectors, against the whole parse-permit-sign path;
//! and the Coinbase ES256 vector, whose SEC1 key only keyward's credential reads.

use std::time::Duration;

use keyward::credential::{Credential, KeyKind};
use keyward_policy::{
    AccountSpec, BotPolicy, BotSpec, Mode, NoQuotes, Permit, Policy, TokenDigest,
};
use keyward_tests::{fixed_now, hmac_sha256_hex, vectors};
use keyward_venues::{CallInput, ParsedCall, Route, SignContext, VenueId, route};
use serde_json::Value;

fn text<'a>(vector: &'a Value, section: &str, key: &str) -> &'a str {
    vector[section][key]
        .as_str()
        .unwrap_or_else(|| panic!("{}: {section}.{key} missing", vector["id"]))
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn hex_decode(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// A policy granting one bot every endpoint of a venue, so a real `Permit` can be had.
fn permit_for(venue: VenueId, call: &ParsedCall) -> Permit {
    let grants = venue.adapter().catalogue().grant_all();
    let symbols = call.intent.symbols.clone();
    let bot = BotPolicy::new(BotSpec {
        name: "kat".into(),
        account: "kat".into(),
        tokens: vec![TokenDigest::of("kw_kat_unused")],
        revoked_tokens: vec![],
        keys: keyward_policy::BotKeys::default(),
        expires: fixed_now() + Duration::from_secs(86_400),
        grants,
        symbols,
        order_types: vec!["LIMIT".into()],
        allow_margin: false,
        allow_position_close: false,
        adopt_orders: false,
        exchange_share: None,
        max_order_notional: Some("1000000".parse().unwrap()),
        max_order_qty: vec![],
        rate: None,
        order_rate: None,
        mode: Mode::Enforce,
        price_band: None,
        budget: keyward_policy::BudgetLimits::default(),
    })
    .unwrap();
    let policy = Policy::new(
        vec![bot],
        vec![AccountSpec {
            name: "kat".into(),
            rate: None,
            public_market_data: false,
        }],
    )
    .unwrap();
    let bot = policy.bot("kat").unwrap();
    policy.authorize(bot, &call.intent, &NoQuotes).unwrap()
}

/// Parses the vector's request as a bot would send it, signs it with the vector's
/// secret and clock, and checks the bytes keyward would send.
fn full_path(vector: &Value, venue: VenueId) {
    let secret = text(vector, "inputs", "secret");
    let method: http::Method = text(vector, "inputs", "method").parse().unwrap();
    let path = text(vector, "inputs", "path");
    let query = text(vector, "inputs", "query_string");
    let expected = text(vector, "expected", "string_to_sign");
    let signature = text(vector, "expected", "signature");
    let timestamp: u64 = query
        .split('&')
        .find_map(|p| p.strip_prefix("timestamp="))
        .unwrap()
        .parse()
        .unwrap();
    let adapter = venue.adapter();
    let Route::Endpoint(endpoint) = route(adapter, &method, path) else {
        panic!("{}: {method} {path} is not catalogued", vector["id"]);
    };
    // The bot sends everything in the body with its own (stripped) timestamp.
    let call = adapter
        .parse(
            endpoint,
            &CallInput {
                query: "",
                content_type: Some("application/x-www-form-urlencoded"),
                body: query.as_bytes(),
                headers: &http::HeaderMap::new(),
            },
        )
        .unwrap();
    assert_eq!(call.stripped, vec!["recvWindow", "timestamp"]);
    let permit = permit_for(venue, &call);
    let credential = Credential::new("vector-api-key", KeyKind::Hmac, secret.as_bytes()).unwrap();
    let outbound = adapter
        .sign(
            &call,
            &permit,
            SignContext {
                credential: &credential,
                timestamp_ms: timestamp,
                recv_window_ms: 5000,
                nonce: 1,
            },
        )
        .unwrap();
    assert_eq!(outbound.path_and_query, path);
    assert_eq!(
        String::from_utf8(outbound.body).unwrap(),
        format!("{expected}&signature={signature}"),
        "{}",
        vector["id"]
    );
}

#[test]
fn every_binance_vector_is_reproduced() {
    let mut checked = Vec::new();
    let binance: Vec<Value> = vectors()
        .into_iter()
        .filter(|v| v["exchange"] == "binance")
        .collect();
    assert!(
        binance.len() >= 17,
        "expected the Binance vectors, found {}",
        binance.len()
    );
    for vector in &binance {
        let id = vector["id"].as_str().unwrap();
        let inputs = &vector["inputs"];
        if let Some(pem) = inputs["private_key_pem_pkcs8"].as_str() {
            let kind = if vector["scheme"].as_str().unwrap().starts_with("Ed25519") {
                KeyKind::Ed25519
            } else {
                KeyKind::Rsa
            };
            let message = match vector["expected"]["string_to_sign_hex"].as_str() {
                Some(hex) => hex_decode(hex),
                None => text(vector, "expected", "string_to_sign")
                    .as_bytes()
                    .to_vec(),
            };
            if let Some(payload) = inputs["payload"].as_str() {
                assert_eq!(
                    payload.as_bytes(),
                    &message[..],
                    "{id}: payload and string_to_sign differ"
                );
            }
            let credential = Credential::new("k", kind, pem.as_bytes()).unwrap();
            let signature = credential.sign_asymmetric(&message).unwrap();
            assert_eq!(
                b64(&signature),
                text(vector, "expected", "signature"),
                "{id}"
            );
            checked.push(id);
            continue;
        }
        let secret = text(vector, "inputs", "secret");
        let credential = Credential::new("k", KeyKind::Hmac, secret.as_bytes()).unwrap();
        let string_to_sign = text(vector, "expected", "string_to_sign");
        if let Some(payload) = inputs["sorted_params_payload"].as_str() {
            // WebSocket API vectors: keyward does not proxy WebSockets, but the
            // primitive is the same HMAC-SHA256, so it must reproduce them too.
            assert_eq!(payload, string_to_sign, "{id}");
        } else {
            let query = text(vector, "inputs", "query_string");
            let body = text(vector, "inputs", "body");
            assert_eq!(
                format!("{query}{body}"),
                string_to_sign,
                "{id}: totalParams is query + body"
            );
        }
        let mac = credential.hmac_sha256(string_to_sign.as_bytes()).unwrap();
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, text(vector, "expected", "signature"), "{id}");
        assert_eq!(
            hex,
            hmac_sha256_hex(secret.as_bytes(), string_to_sign.as_bytes())
        );
        if let Some(published) = vector["expected"]["published_signature"].as_str() {
            // The documented Example 3 signature is over a string with a stray space;
            // keyward must produce the corrected value, not the published one.
            assert_ne!(hex, published, "{id}");
            let buggy = text(vector, "expected", "published_signature_is_over");
            assert_eq!(
                hmac_sha256_hex(secret.as_bytes(), buggy.as_bytes()),
                published
            );
        }
        let single_part = inputs["body"].as_str() == Some("") && inputs["path"].is_string();
        if single_part {
            let venue = if text(vector, "inputs", "path").starts_with("/fapi/") {
                VenueId::BinanceUsdm
            } else {
                VenueId::BinanceSpot
            };
            full_path(vector, venue);
        }
        checked.push(id);
    }
    assert_eq!(
        checked.len(),
        binance.len(),
        "every Binance vector must be checked"
    );
}

#[test]
fn signed_request_is_rejected_by_the_permit_of_another_endpoint() {
    let adapter = VenueId::BinanceSpot.adapter();
    let Route::Endpoint(order) = route(adapter, &http::Method::POST, "/api/v3/order") else {
        panic!("not catalogued");
    };
    let Route::Endpoint(account) = route(adapter, &http::Method::GET, "/api/v3/account") else {
        panic!("not catalogued");
    };
    let no_headers = http::HeaderMap::new();
    let input = |body: &'static str| CallInput {
        query: "",
        content_type: Some("application/x-www-form-urlencoded"),
        body: body.as_bytes(),
        headers: &no_headers,
    };
    let read = adapter
        .parse(
            account,
            &CallInput {
                query: "",
                content_type: None,
                body: b"",
                headers: &http::HeaderMap::new(),
            },
        )
        .unwrap();
    let order_call = adapter
        .parse(
            order,
            &input("symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=1"),
        )
        .unwrap();
    let permit = permit_for(VenueId::BinanceSpot, &read);
    let credential = Credential::new("k", KeyKind::Hmac, b"s").unwrap();
    let context = SignContext {
        credential: &credential,
        timestamp_ms: 1,
        recv_window_ms: 5000,
        nonce: 1,
    };
    assert!(adapter.sign(&order_call, &permit, context).is_err());
}

/// The vector's own (RFC 6979) signature verifies with the public half of the SEC1
/// key as keyward's credential reads it, and the JWT keyward builds with that
/// credential has exactly the vector's signing input and a raw r||s signature that
/// verifies over it.
#[test]
fn coinbase_es256_vector_verifies_and_keywards_signature_verifies_too() {
    use base64::Engine as _;
    use ring::signature;
    let b64url = |text: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .unwrap()
    };
    let v = vectors()
        .into_iter()
        .find(|v| v["id"] == "coinbase-cdp-jwt-es256-rfc6979-DERIVED")
        .unwrap();
    let inputs = &v["inputs"];
    let credential = Credential::new(
        inputs["key_name"].as_str().unwrap(),
        KeyKind::EcP256,
        inputs["ec_private_key_pem_sec1"]
            .as_str()
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    let public = keyward::credential::ec_public_key(&credential).unwrap();
    let verifier = signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &public);
    let expected_input = v["expected"]["signing_input"].as_str().unwrap();
    let vector_signature = b64url(v["expected"]["signature_b64url_rfc6979"].as_str().unwrap());
    assert_eq!(vector_signature.len(), 64);
    verifier
        .verify(expected_input.as_bytes(), &vector_signature)
        .unwrap();
    let jwt = keyward_venues::coinbase::jwt(
        &credential,
        "GET",
        "/api/v3/brokerage/accounts",
        1_700_000_000,
        inputs["header"]["nonce"].as_str().unwrap(),
    )
    .unwrap();
    let (signing_input, sig) = jwt.rsplit_once('.').unwrap();
    assert_eq!(signing_input, expected_input);
    let sig = b64url(sig);
    assert_eq!(sig.len(), 64, "raw r||s, not DER");
    verifier.verify(signing_input.as_bytes(), &sig).unwrap();
}
