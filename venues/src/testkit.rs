//! What the venues' unit tests share: the vectors of `venues/vectors.json` and a real
//! [`Permit`] for a parsed call, so signers are tested behind the same gate as in
//! production.

use std::time::{Duration, SystemTime};

use keyward_policy::{
    AccountSpec, BotPolicy, BotSpec, Mode, NoQuotes, Permit, Policy, TokenDigest,
};

use super::{ParsedCall, Venue};

/// Every vector of `exchange` in `../shared/venues/vectors.json` (or under
/// `KEYWARD_SHARED`, as the end-to-end harness reads it).
pub(super) fn vectors(exchange: &str) -> Vec<serde_json::Value> {
    let dir = std::env::var("KEYWARD_SHARED")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared").to_owned());
    let path = format!("{dir}/venues/vectors.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let all: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    all.into_iter()
        .filter(|v| v["exchange"] == exchange)
        .collect()
}

/// A permit for `call` from a policy that grants every endpoint of `venue`, every
/// order type, margin and a large notional cap: the signer, not the policy, is under
/// test.
pub(super) fn permit(venue: &dyn Venue, call: &ParsedCall) -> Permit {
    permit_in(venue, call, Mode::Enforce)
}

/// [`permit`] from the same policy in shadow mode, so that generated orders of any
/// size, or without a reference price, are signed too (the parser and the signer are
/// under test, not the limits).
pub(super) fn shadow_permit(venue: &dyn Venue, call: &ParsedCall) -> Permit {
    permit_in(venue, call, Mode::Shadow)
}

fn permit_in(venue: &dyn Venue, call: &ParsedCall, mode: Mode) -> Permit {
    let grants = venue.catalogue().grant_all();
    let bot = BotPolicy::new(BotSpec {
        name: "kat".into(),
        account: "kat".into(),
        tokens: vec![TokenDigest::of("kw_kat_unused")],
        keys: keyward_policy::BotKeys::default(),
        revoked_tokens: vec![],
        expires: SystemTime::now() + Duration::from_secs(86_400),
        grants,
        symbols: call.intent.symbols.clone(),
        order_types: venue.order_types().iter().map(|t| t.name.into()).collect(),
        allow_margin: true,
        allow_position_close: true,
        adopt_orders: false,
        exchange_share: None,
        max_order_notional: Some("1000000000".parse().unwrap()),
        max_order_qty: vec![],
        rate: None,
        order_rate: None,
        mode,
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
