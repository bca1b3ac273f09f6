//! Rejections in each venue's error envelope: the exchange's own error code for each
//! kind of refusal, keyward's reason and message beside it.

use std::time::Duration;

use keyward_policy::{Denied, RateScope};
use keyward_venues::binance::SPOT;
use keyward_venues::bybit::BYBIT;
use keyward_venues::coinbase::COINBASE;
use keyward_venues::kraken::KRAKEN;
use keyward_venues::okx::OKX;
use keyward_venues::{ParseError, RefusalClass, Venue, bybit};

use super::Rejection;
use crate::front::FrontError;
use crate::upstream::UpstreamError;

/// One refusal of every class, with keyward's status and the status each venue
/// answers it with: Bybit and Kraken in HTTP 200 bodies (Bybit's IP ban at 403, and
/// both keep 502 or 504 where the order may have executed), the others with
/// keyward's status.
#[test]
fn each_venue_answers_each_kind_of_refusal_with_its_own_status() {
    let symbol = keyward_policy::Symbol::new("spot:DMGUSDT").unwrap();
    let cases: Vec<(Rejection, RefusalClass, u16, u16, u16)> = vec![
        // (rejection, class, keyward's status, Bybit's, Kraken's)
        (
            Denied::AuthInvalid.into(),
            RefusalClass::Unauthenticated,
            401,
            200,
            200,
        ),
        (
            Denied::MoneyMovement {
                endpoint: "POST /v5/asset/withdraw/create".into(),
            }
            .into(),
            RefusalClass::Forbidden,
            403,
            200,
            200,
        ),
        (
            Denied::SymbolNotAllowed { symbol }.into(),
            RefusalClass::SymbolForbidden,
            403,
            200,
            200,
        ),
        (
            Rejection::MethodNotAllowed {
                path: "/v5/order/create".into(),
            },
            RefusalClass::MethodNotAllowed,
            405,
            200,
            200,
        ),
        (
            ParseError::UnsupportedMediaType.into(),
            RefusalClass::UnsupportedMediaType,
            415,
            200,
            200,
        ),
        (
            FrontError::ContentEncoding.into(),
            RefusalClass::UnsupportedEncoding,
            415,
            200,
            200,
        ),
        (
            Denied::RateLimited {
                retry_after: Duration::from_secs(3),
                scope: RateScope::Bot,
            }
            .into(),
            RefusalClass::RateLimited,
            429,
            200,
            200,
        ),
        (
            Rejection::ExchangeBackoff {
                retry_after: Duration::from_secs(600),
                banned: true,
            },
            RefusalClass::ExchangeBanned,
            503,
            403,
            200,
        ),
        (Rejection::Internal, RefusalClass::Internal, 500, 200, 200),
        (
            Rejection::AuditUnavailable,
            RefusalClass::Unavailable,
            503,
            200,
            200,
        ),
        (
            Rejection::Upstream(UpstreamError::Unavailable),
            RefusalClass::Unavailable,
            502,
            200,
            200,
        ),
        (
            Rejection::Upstream(UpstreamError::Invalid),
            RefusalClass::OutcomeUnknown,
            502,
            502,
            502,
        ),
        (
            Rejection::Upstream(UpstreamError::Timeout),
            RefusalClass::Timeout,
            504,
            504,
            504,
        ),
        (
            Rejection::BodyTooLarge(1024),
            RefusalClass::Invalid(keyward_venues::Fault::Other),
            413,
            200,
            200,
        ),
    ];
    for (rejection, class, keyward, at_bybit, at_kraken) in cases {
        let refusal = rejection.refusal();
        assert_eq!(refusal.class, class, "{rejection:?}");
        assert_eq!(refusal.status.as_u16(), keyward, "{rejection:?}");
        let venues: [(&dyn Venue, u16); 5] = [
            (&BYBIT, at_bybit),
            (&KRAKEN, at_kraken),
            (&OKX, keyward),
            (&COINBASE, keyward),
            (&SPOT, keyward),
        ];
        for (venue, status) in venues {
            assert_eq!(
                venue.refusal_status(&refusal).as_u16(),
                status,
                "{:?} {rejection:?}",
                venue.id()
            );
        }
        // The reason phrase is for an answer krakenex does not read the body of.
        assert_eq!(
            KRAKEN.refusal_reason_phrase(&refusal).is_some(),
            at_kraken != 200,
            "{rejection:?}"
        );
    }
}

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
        // pybit sleeps and retries these at HTTP 200: only a rate limit may say so.
        assert!(![10002, 10006, 30034, 30035, 130035, 130150].contains(&code));
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
    let timeout = Rejection::Upstream(UpstreamError::Timeout).refusal();
    let phrase = KRAKEN.refusal_reason_phrase(&timeout).unwrap();
    assert!(
        phrase.starts_with("Gateway Timeout - EKeyward:upstream_timeout: "),
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
