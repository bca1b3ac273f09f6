//! Rejections in each venue's error envelope: the exchange's own error code for each
//! kind of refusal, keyward's reason and message beside it.

use keyward_policy::Denied;
use keyward_venues::coinbase::COINBASE;
use keyward_venues::kraken::KRAKEN;
use keyward_venues::okx::OKX;
use keyward_venues::{ParseError, Venue as _, bybit};

use super::Rejection;

#[test]
fn refusals_use_the_okx_envelope() {
    let cases = [
        (Rejection::Parse(ParseError::BodyNotAllowed), "51000", 400),
        (
            Rejection::Parse(ParseError::JsonInvalid { param: "body" }),
            "50002",
            400,
        ),
        (
            Rejection::Parse(ParseError::ParamMissing { key: "sz" }),
            "50014",
            400,
        ),
        (
            Rejection::Parse(ParseError::UnsupportedMediaType),
            "50006",
            415,
        ),
        (Rejection::Denied(Denied::AuthInvalid), "50111", 401),
        (Rejection::AuthAmbiguous, "51000", 400),
    ];
    for (rejection, code, status) in cases {
        assert_eq!(rejection.status().as_u16(), status, "{rejection:?}");
        let (content_type, body) = OKX.refusal(&rejection.refusal());
        assert_eq!(content_type, "application/json");
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["code"], code, "{rejection:?}");
        assert_eq!(value["data"], serde_json::json!([]));
        let msg = value["msg"].as_str().unwrap();
        assert!(
            msg.starts_with(&format!("keyward: {}: ", rejection.reason())),
            "{msg}"
        );
    }
    let (_, body) = OKX.refusal(&Rejection::Parse(ParseError::UnsupportedMediaType).refusal());
    assert!(
        String::from_utf8(body)
            .unwrap()
            .contains("application/json")
    );
}

#[test]
fn refusals_are_bybit_envelopes() {
    let cases: Vec<(Rejection, i64)> = vec![
        (Rejection::Denied(Denied::AuthInvalid), 10003),
        (
            Rejection::Denied(Denied::SymbolNotAllowed {
                symbol: keyward_policy::Symbol::new("spot:DMGUSDT").unwrap(),
            }),
            10029,
        ),
        (
            Rejection::Denied(Denied::MoneyMovement {
                endpoint: "POST /v5/asset/withdraw/create".into(),
            }),
            10005,
        ),
        (Rejection::Parse(ParseError::UnsupportedMediaType), 10001),
        (
            Rejection::MethodNotAllowed {
                path: "/v5/order/create".into(),
            },
            10017,
        ),
        (Rejection::Internal, 10016),
    ];
    for (rejection, code) in cases {
        let (content_type, body) = bybit::refusal_body(&rejection.refusal());
        assert_eq!(content_type, "application/json");
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["retCode"].as_i64(), Some(code), "{rejection:?}");
        let message = value["retMsg"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("keyward: {}: ", rejection.reason())),
            "{message}"
        );
        // pybit retries these at HTTP 200; keyward must never send them.
        assert!(![10002, 10006, 30034, 30035, 130035, 130150].contains(&code) || code == 10006);
        assert!(value["result"].is_object() && value["time"].is_u64());
    }
    let (_, body) =
        bybit::refusal_body(&Rejection::Parse(ParseError::UnsupportedMediaType).refusal());
    assert!(
        String::from_utf8(body)
            .unwrap()
            .contains("application/json")
    );
}

#[test]
fn the_refusal_envelope_is_krakens_with_keywards_reason() {
    let denied = Rejection::Denied(Denied::SymbolNotAllowed {
        symbol: keyward_policy::Symbol::new("ETHUSD").unwrap(),
    });
    let (content_type, body) = KRAKEN.refusal(&denied.refusal());
    assert_eq!(content_type, "application/json");
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"][0], "EGeneral:Permission denied");
    let detail = body["error"][1].as_str().unwrap();
    assert!(
        detail.starts_with("EKeyward:symbol_not_allowed: "),
        "{detail}"
    );
    assert_eq!(body["result"], serde_json::json!({}));
    let phrase = KRAKEN.refusal_reason_phrase(&denied.refusal()).unwrap();
    assert!(
        phrase.starts_with("Forbidden - EKeyward:symbol_not_allowed: "),
        "{phrase}"
    );
    assert!(phrase.bytes().all(|b| b == b' ' || b.is_ascii_graphic()));
    for (rejection, first) in [
        (Rejection::Denied(Denied::AuthInvalid), "EAPI:Invalid key"),
        (
            Rejection::Parse(ParseError::ParamMissing { key: "pair" }),
            "EGeneral:Invalid arguments",
        ),
        (Rejection::Internal, "EGeneral:Internal error"),
    ] {
        let (_, body) = KRAKEN.refusal(&rejection.refusal());
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"][0], first, "{rejection:?}");
    }
}

#[test]
fn refusals_use_coinbases_envelope() {
    let cases: Vec<(Rejection, &str, u16)> = vec![
        (
            Denied::MoneyMovement {
                endpoint: "POST /v2/accounts/a/transactions".into(),
            }
            .into(),
            "PERMISSION_DENIED",
            403,
        ),
        (Denied::AuthInvalid.into(), "unauthorized", 401),
        (ParseError::BodyNotAllowed.into(), "INVALID_ARGUMENT", 400),
    ];
    for (rejection, code, status) in cases {
        assert_eq!(rejection.status().as_u16(), status);
        let (content_type, body) = COINBASE.refusal(&rejection.refusal());
        assert_eq!(content_type, "application/json");
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["error"], code);
        let details = value["error_details"].as_str().unwrap();
        assert!(details.starts_with("keyward: "), "{details}");
        assert_ne!(details, "Missing required scopes");
        assert!(
            value["message"]
                .as_str()
                .unwrap()
                .contains(rejection.reason())
        );
    }
}
