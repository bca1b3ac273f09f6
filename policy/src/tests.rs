//! Table tests: every `Denied` reason and every `PolicyError`, plus rate limits on a
//! fake clock.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::clock::FakeRelativeClock;
use crate::*;

const SECRET: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ";

fn token(bot: &str, n: u8) -> String {
    let mut t = format!("kw_{bot}_{SECRET}");
    t.pop();
    t.push(char::from(b'0' + n));
    t
}

fn endpoint(key: &str, class: EndpointClass) -> EndpointRef {
    EndpointRef {
        key: Arc::from(key),
        class,
    }
}

fn order_endpoint() -> EndpointRef {
    endpoint("POST /api/v3/order", EndpointClass::Trade)
}

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn sym(s: &str) -> Symbol {
    Symbol::new(s).unwrap()
}

fn spec(name: &str) -> BotSpec {
    BotSpec {
        name: name.to_owned(),
        account: "main".to_owned(),
        tokens: vec![TokenDigest::of(&token(name, 1))],
        revoked_tokens: vec![TokenDigest::of(&token(name, 2))],
        keys: BotKeys::default(),
        expires: now() + Duration::from_secs(86_400),
        grants: vec![
            Grant {
                endpoint: order_endpoint(),
                via: Rule::Allow,
                bears_orders: true,
            },
            Grant {
                endpoint: endpoint("GET /api/v3/account", EndpointClass::Read),
                via: Rule::Endpoints,
                bears_orders: false,
            },
        ],
        symbols: vec![sym("BTCUSDT"), sym("ETHUSDT")],
        order_types: vec!["LIMIT".into(), "MARKET".into()],
        allow_margin: false,
        allow_position_close: false,
        adopt_orders: false,
        exchange_share: None,
        max_order_notional: Some("100".parse().unwrap()),
        max_order_qty: vec![(sym("BTCUSDT"), "0.01".parse().unwrap())],
        rate: None,
        order_rate: None,
        mode: Mode::Enforce,
        price_band: None,
        budget: BudgetLimits::default(),
    }
}

fn policy_with(specs: Vec<BotSpec>, account_rate: Option<Rate>) -> Policy {
    let bots = specs
        .into_iter()
        .map(|s| BotPolicy::new(s).unwrap())
        .collect();
    Policy::new(
        bots,
        vec![AccountSpec {
            name: "main".into(),
            rate: account_rate,
            public_market_data: true,
        }],
    )
    .unwrap()
}

fn limit_order(symbol: &str, order_type: &str, qty: &str, price: &str) -> Intent {
    let execution = if order_type == "MARKET" {
        Execution::Market
    } else {
        Execution::Limit
    };
    Intent {
        endpoint: order_endpoint(),
        symbols: vec![sym(symbol)],
        orders: vec![Order {
            symbol: sym(symbol),
            side: Side::Buy,
            order_type: Arc::from(order_type),
            execution,
            size: Size::Base(qty.parse().unwrap()),
            price: (!price.is_empty()).then(|| price.parse().unwrap()),
            trigger: None,
            amend: false,
            margin: false,
            reduce_only: false,
        }],
    }
}

/// Names every variant, so adding one without a row below fails to compile.
fn reason_of(denied: &Denied) -> &'static str {
    match denied {
        Denied::AuthMissing
        | Denied::AuthInvalid
        | Denied::AuthExpired
        | Denied::AuthRevoked
        | Denied::PathNotAllowed { .. }
        | Denied::MoneyMovement { .. }
        | Denied::KeyManagement { .. }
        | Denied::SymbolNotAllowed { .. }
        | Denied::OrderTypeNotAllowed { .. }
        | Denied::MarginNotAllowed { .. }
        | Denied::NotionalExceedsLimit { .. }
        | Denied::QtyExceedsLimit { .. }
        | Denied::NotionalUnbounded { .. }
        | Denied::ExchangeSized { .. }
        | Denied::RateLimited { .. }
        | Denied::PriceOutOfBand { .. }
        | Denied::ReferenceUnavailable { .. }
        | Denied::MarketOrderInBand { .. }
        | Denied::SpreadTooWide { .. }
        | Denied::DailyNotionalExceeded { .. }
        | Denied::MaxOrdersExceeded { .. }
        | Denied::MaxOpenOrdersExceeded { .. } => denied.reason(),
    }
}

const ALL_REASONS: [&str; 21] = [
    "auth_missing",
    "auth_invalid",
    "auth_expired",
    "auth_revoked",
    "path_not_allowed",
    "money_movement_denied",
    "key_management_denied",
    "symbol_not_allowed",
    "order_type_not_allowed",
    "margin_not_allowed",
    "notional_exceeds_limit",
    "qty_exceeds_limit",
    "notional_unbounded",
    "rate_limited",
    "price_out_of_band",
    "reference_price_unavailable",
    "price_unbounded",
    "spread_too_wide",
    "daily_notional_exceeded",
    "max_orders_exceeded",
    "max_open_orders_exceeded",
];

#[test]
fn every_denied_reason_has_a_producing_case() {
    let mut expired = spec("old");
    expired.expires = now() - Duration::from_secs(1);
    let policy = policy_with(vec![spec("grid"), expired], None);
    let grid = policy.bot("grid").unwrap();
    let auth = |t: Option<&str>| policy.authenticate(t, now()).map(|_| ()).unwrap_err();
    let authorize = |intent: &Intent| policy.authorize(grid, intent, &NoQuotes).unwrap_err();
    let market_buy = Intent {
        endpoint: order_endpoint(),
        symbols: vec![sym("BTCUSDT")],
        orders: vec![Order {
            symbol: sym("BTCUSDT"),
            side: Side::Buy,
            order_type: Arc::from("MARKET"),
            execution: Execution::Market,
            size: Size::Base("0.001".parse().unwrap()),
            price: None,
            trigger: None,
            amend: false,
            margin: false,
            reduce_only: false,
        }],
    };
    let rate_limited = {
        let mut limited = spec("grid");
        limited.rate = Some("1/m".parse().unwrap());
        let policy = policy_with(vec![limited], None);
        let limits = RateLimits::new(&policy, FakeRelativeClock::default());
        let bot = policy.bot("grid").unwrap();
        let intent = limit_order("BTCUSDT", "LIMIT", "0.001", "60000");
        limits
            .check(&policy.authorize(bot, &intent, &NoQuotes).unwrap())
            .unwrap();
        limits
            .check(&policy.authorize(bot, &intent, &NoQuotes).unwrap())
            .unwrap_err()
    };

    let table: Vec<(Denied, &str)> = vec![
        (auth(None), "auth_missing"),
        (auth(Some("")), "auth_missing"),
        (auth(Some("not-a-token")), "auth_invalid"),
        (auth(Some(&token("nobody", 1))), "auth_invalid"),
        (auth(Some(&token("grid", 3))), "auth_invalid"),
        (
            auth(Some(&format!("{} ", token("grid", 1)))),
            "auth_invalid",
        ),
        (auth(Some(&token("old", 1))), "auth_expired"),
        (auth(Some(&token("grid", 2))), "auth_revoked"),
        (
            policy
                .authorize_endpoint(grid, &endpoint("GET /api/v3/myTrades", EndpointClass::Read))
                .unwrap_err(),
            "path_not_allowed",
        ),
        (
            policy
                .authorize_endpoint(
                    grid,
                    &endpoint(
                        "POST /sapi/v1/capital/withdraw/apply",
                        EndpointClass::MoneyMovement,
                    ),
                )
                .unwrap_err(),
            "money_movement_denied",
        ),
        (
            policy
                .authorize_endpoint(
                    grid,
                    &endpoint(
                        "POST /sapi/v1/sub-account/subAccountApi",
                        EndpointClass::KeyManagement,
                    ),
                )
                .unwrap_err(),
            "key_management_denied",
        ),
        (
            authorize(&limit_order("DMGUSDT", "LIMIT", "1000", "0.05")),
            "symbol_not_allowed",
        ),
        (
            authorize(&limit_order("BTCUSDT", "STOP_LOSS", "0.001", "60000")),
            "order_type_not_allowed",
        ),
        (
            authorize(&{
                let mut borrowed = limit_order("BTCUSDT", "LIMIT", "0.001", "60000");
                borrowed.orders[0].margin = true;
                borrowed
            }),
            "margin_not_allowed",
        ),
        (
            authorize(&limit_order("ETHUSDT", "LIMIT", "1", "3000")),
            "notional_exceeds_limit",
        ),
        (
            authorize(&limit_order("BTCUSDT", "LIMIT", "0.02", "1")),
            "qty_exceeds_limit",
        ),
        (authorize(&market_buy), "notional_unbounded"),
        (rate_limited, "rate_limited"),
        (
            banded_policy()
                .authorize(
                    banded_policy().bot("grid").unwrap(),
                    &limit_order("BTCUSDT", "LIMIT", "0.001", "64000"),
                    &reference(),
                )
                .unwrap_err(),
            "price_out_of_band",
        ),
        (
            banded_policy()
                .authorize(
                    banded_policy().bot("grid").unwrap(),
                    &limit_order("BTCUSDT", "LIMIT", "0.001", "60000"),
                    &NoQuotes,
                )
                .unwrap_err(),
            "reference_price_unavailable",
        ),
        (
            banded_policy()
                .authorize(
                    banded_policy().bot("grid").unwrap(),
                    &market_buy,
                    &reference(),
                )
                .unwrap_err(),
            "price_unbounded",
        ),
        (
            banded_policy()
                .authorize(
                    banded_policy().bot("grid").unwrap(),
                    &limit_order("BTCUSDT", "LIMIT", "0.001", "60000"),
                    &Fixed(Quote {
                        bid: "50000".parse().unwrap(),
                        ask: "60000".parse().unwrap(),
                        slow: None,
                    }),
                )
                .unwrap_err(),
            "spread_too_wide",
        ),
        (
            {
                let mut ledger = Ledger::new();
                let scope = Scope::Bot(Arc::from("grid"));
                ledger.set_limits(
                    scope.clone(),
                    BudgetLimits {
                        daily_notional: Some("50".parse().unwrap()),
                        ..BudgetLimits::default()
                    },
                );
                ledger.spend(&[scope], &spend_of(60)).unwrap_err()
            },
            "daily_notional_exceeded",
        ),
        (
            {
                let mut ledger = Ledger::new();
                let scope = Scope::Account(Arc::from("main"));
                ledger.set_limits(
                    scope.clone(),
                    BudgetLimits {
                        max_orders: Some("1/d".parse().unwrap()),
                        ..BudgetLimits::default()
                    },
                );
                ledger
                    .spend(std::slice::from_ref(&scope), &spend_of(1))
                    .unwrap();
                ledger.spend(&[scope], &spend_of(1)).unwrap_err()
            },
            "max_orders_exceeded",
        ),
        (
            Denied::MaxOpenOrdersExceeded {
                scope: BudgetScope::Bot,
                open: 5,
                limit: 5,
            },
            "max_open_orders_exceeded",
        ),
    ];
    let mut seen = BTreeSet::new();
    for (denied, expected) in &table {
        assert_eq!(reason_of(denied), *expected, "{denied:?}");
        assert!(!denied.to_string().is_empty());
        seen.insert(*expected);
    }
    assert_eq!(seen, ALL_REASONS.into_iter().collect::<BTreeSet<_>>());
}

/// P0's band: 5% around BTCUSDT 59990/60010.
fn banded_policy() -> Policy {
    let mut s = spec("grid");
    s.price_band = Some("5%".parse().unwrap());
    s.order_types.push("STOP_LOSS_LIMIT".to_owned());
    policy_with(vec![s], None)
}

struct Reference;
impl Quotes for Reference {
    fn quote(&self, symbol: &Symbol) -> Option<Quote> {
        (symbol.as_str() == "BTCUSDT").then(|| Quote {
            bid: "59990".parse().unwrap(),
            ask: "60010".parse().unwrap(),
            slow: None,
        })
    }
}

/// One quote for every symbol.
struct Fixed(Quote);
impl Quotes for Fixed {
    fn quote(&self, _symbol: &Symbol) -> Option<Quote> {
        Some(self.0)
    }
}

fn reference() -> Reference {
    Reference
}

fn spend_of(notional: u32) -> Spend {
    Spend {
        id: Arc::from("r"),
        at: now(),
        notional: notional.to_string().parse().unwrap(),
        orders: 1,
    }
}

#[test]
fn every_order_form_is_held_to_the_band() {
    let policy = banded_policy();
    let grid = policy.bot("grid").unwrap();
    let order = |side: Side, execution: Execution, order_type: &str, price: Option<&str>| Order {
        symbol: sym("BTCUSDT"),
        side,
        order_type: Arc::from(order_type),
        execution,
        size: Size::Base("0.001".parse().unwrap()),
        price: price.map(|p| p.parse().unwrap()),
        trigger: Some("50000".parse().unwrap()).filter(|_| execution != Execution::Limit),
        amend: false,
        margin: false,
        reduce_only: false,
    };
    let request = |orders: Vec<Order>| Intent {
        endpoint: order_endpoint(),
        symbols: vec![sym("BTCUSDT")],
        orders,
    };
    let decide = |orders| {
        policy
            .authorize(grid, &request(orders), &reference())
            .map(|_| ())
    };
    // In band: a buy at the ask + 5%, a sell at the bid - 5%. A market order has no
    // price the band could hold: refused.
    assert!(
        decide(vec![order(
            Side::Buy,
            Execution::Limit,
            "LIMIT",
            Some("63010.5")
        )])
        .is_ok()
    );
    assert!(
        decide(vec![order(
            Side::Sell,
            Execution::Limit,
            "LIMIT",
            Some("56990.5")
        )])
        .is_ok()
    );
    assert_eq!(
        policy
            .authorize(
                grid,
                &request(vec![order(Side::Buy, Execution::Market, "MARKET", None)]),
                &reference()
            )
            .unwrap_err()
            .reason(),
        "price_unbounded"
    );
    // Out of band: a limit buy, a limit sell, a stop-limit's limit leg, an amend, and
    // one bad element of a batch.
    for orders in [
        vec![order(Side::Buy, Execution::Limit, "LIMIT", Some("63011"))],
        vec![order(Side::Sell, Execution::Limit, "LIMIT", Some("56990"))],
        vec![order(
            Side::Sell,
            Execution::StopLimit,
            "STOP_LOSS_LIMIT",
            Some("1"),
        )],
        vec![Order {
            amend: true,
            margin: false,
            reduce_only: false,
            ..order(Side::Buy, Execution::Limit, "LIMIT", Some("99999"))
        }],
        vec![
            order(Side::Buy, Execution::Limit, "LIMIT", Some("60000")),
            order(Side::Sell, Execution::Limit, "LIMIT", Some("0.01")),
        ],
    ] {
        let denied = decide(orders.clone()).unwrap_err();
        assert_eq!(denied.reason(), "price_out_of_band", "{orders:?}");
        assert!(denied.to_string().contains("5%"), "{denied}");
    }
    // An order on a symbol with no reference at all fails closed.
    let mut unknown = order(Side::Buy, Execution::Limit, "LIMIT", Some("3000"));
    unknown.symbol = sym("ETHUSDT");
    let denied = policy
        .authorize(
            grid,
            &Intent {
                endpoint: order_endpoint(),
                symbols: vec![sym("ETHUSDT")],
                orders: vec![unknown],
            },
            &reference(),
        )
        .unwrap_err();
    assert_eq!(denied.reason(), "reference_price_unavailable");
}

#[test]
fn keyward_itself_may_only_read_and_cancel() {
    let policy = policy_with(vec![spec("grid")], None);
    let read = Intent {
        endpoint: endpoint("GET /api/v3/openOrders", EndpointClass::Read),
        symbols: vec![sym("BTCUSDT")],
        orders: vec![],
    };
    let cancel = Intent {
        endpoint: endpoint("DELETE /api/v3/openOrders", EndpointClass::Cancel),
        ..read.clone()
    };
    for intent in [&read, &cancel] {
        let permit = policy.authorize_housekeeping("main", intent).unwrap();
        assert_eq!(permit.bot(), KEYWARD_ITSELF);
        assert_eq!(permit.via(), Rule::Housekeeping);
    }
    let trade = limit_order("BTCUSDT", "LIMIT", "0.001", "60000");
    assert!(policy.authorize_housekeeping("main", &trade).is_err());
    let withdraw = Intent {
        endpoint: endpoint(
            "POST /sapi/v1/capital/withdraw/apply",
            EndpointClass::MoneyMovement,
        ),
        symbols: vec![],
        orders: vec![],
    };
    assert!(policy.authorize_housekeeping("main", &withdraw).is_err());
    assert!(policy.authorize_housekeeping("other", &read).is_err());
}

#[test]
fn allowed_requests_get_a_permit_naming_the_rule() {
    let policy = policy_with(vec![spec("grid")], None);
    let grid = policy.authenticate(Some(&token("grid", 1)), now()).unwrap();
    let permit = policy
        .authorize(
            grid,
            &limit_order("BTCUSDT", "LIMIT", "0.001", "60000"),
            &NoQuotes,
        )
        .unwrap();
    assert_eq!(permit.bot(), "grid");
    assert_eq!(permit.account(), "main");
    assert_eq!(permit.via(), Rule::Allow);
    assert_eq!(permit.orders(), 1);
    assert_eq!(permit.notional(), Notional::Bounded("60".parse().unwrap()));
    let read = Intent {
        endpoint: endpoint("GET /api/v3/account", EndpointClass::Read),
        symbols: vec![],
        orders: vec![],
    };
    assert_eq!(
        policy.authorize(grid, &read, &NoQuotes).unwrap().via(),
        Rule::Endpoints
    );
}

#[test]
fn the_floor_holds_in_every_mode() {
    for mode in [Mode::Enforce, Mode::Shadow, Mode::DryRun] {
        let mut s = spec("grid");
        s.mode = mode;
        let policy = policy_with(vec![s], None);
        let grid = policy.bot("grid").unwrap();
        let withdraw = Intent {
            endpoint: endpoint(
                "POST /sapi/v1/capital/withdraw/apply",
                EndpointClass::MoneyMovement,
            ),
            symbols: vec![],
            orders: vec![],
        };
        assert_eq!(
            policy
                .authorize(grid, &withdraw, &NoQuotes)
                .unwrap_err()
                .reason(),
            "money_movement_denied"
        );
    }
}

#[test]
fn shadow_mode_records_instead_of_refusing_soft_denials() {
    let mut s = spec("grid");
    s.mode = Mode::Shadow;
    let policy = policy_with(vec![s], None);
    let grid = policy.bot("grid").unwrap();
    let permit = policy
        .authorize(
            grid,
            &limit_order("DMGUSDT", "LIMIT", "1000", "0.05"),
            &NoQuotes,
        )
        .unwrap();
    assert_eq!(
        permit.shadow_denial().unwrap().reason(),
        "symbol_not_allowed"
    );
    assert_eq!(permit.mode(), Mode::Shadow);
    assert!(policy.authenticate(Some(&token("grid", 2)), now()).is_err());
}

#[test]
fn every_order_in_a_request_is_checked() {
    let policy = policy_with(vec![spec("grid")], None);
    let grid = policy.bot("grid").unwrap();
    let mut batch = limit_order("BTCUSDT", "LIMIT", "0.001", "60000");
    let bad = limit_order("DMGUSDT", "MARKET", "100000", "");
    batch.orders.extend(bad.orders);
    assert_eq!(
        policy
            .authorize(grid, &batch, &NoQuotes)
            .unwrap_err()
            .reason(),
        "symbol_not_allowed"
    );
}

#[test]
fn policy_errors_are_all_reported() {
    let mut s = spec("Bad Name");
    s.tokens.clear();
    s.revoked_tokens.clear();
    s.max_order_notional = None;
    s.order_types.clear();
    s.grants.push(Grant {
        endpoint: endpoint(
            "POST /sapi/v1/capital/withdraw/apply",
            EndpointClass::MoneyMovement,
        ),
        via: Rule::Endpoints,
        bears_orders: false,
    });
    let errors = BotPolicy::new(s).unwrap_err();
    let kinds: Vec<String> = errors.iter().map(|e| format!("{e:?}")).collect();
    // A bot without any token is not an error: it is refused every request until
    // one is issued (`token new` must work on it).
    assert_eq!(errors.len(), 4, "{kinds:?}");
    assert!(matches!(errors[0], PolicyError::InvalidBotName { .. }));
    assert!(matches!(errors[1], PolicyError::FloorEndpoint { .. }));
    assert!(matches!(errors[2], PolicyError::MissingNotionalCap));
    assert!(matches!(errors[3], PolicyError::MissingOrderTypes));

    let a = BotPolicy::new(spec("a")).unwrap();
    let mut b_spec = spec("b");
    b_spec.tokens = vec![TokenDigest::of(&token("a", 1))];
    let b = BotPolicy::new(b_spec).unwrap();
    let a_again = BotPolicy::new(spec("a")).unwrap();
    let errors = Policy::new(vec![a, b, a_again], vec![]).unwrap_err();
    assert!(
        errors
            .iter()
            .any(|e| matches!(e, PolicyError::DuplicateToken { .. }))
    );
    assert!(
        errors
            .iter()
            .any(|e| matches!(e, PolicyError::DuplicateBot { .. }))
    );
}

#[test]
fn rate_limits_refill_on_the_fake_clock() {
    let mut s = spec("grid");
    s.order_rate = Some("10/10s".parse().unwrap());
    let policy = policy_with(vec![s], None);
    let clock = FakeRelativeClock::default();
    let limits = RateLimits::new(&policy, clock.clone());
    let grid = policy.bot("grid").unwrap();
    let order = limit_order("BTCUSDT", "LIMIT", "0.001", "60000");
    let check = || limits.check(&policy.authorize(grid, &order, &NoQuotes).unwrap());
    for _ in 0..10 {
        check().unwrap();
    }
    let Denied::RateLimited { retry_after, scope } = check().unwrap_err() else {
        panic!("expected a rate limit");
    };
    assert_eq!(scope, RateScope::BotOrders);
    assert_eq!(retry_after, Duration::from_secs(1));
    clock.advance(Duration::from_millis(999));
    assert!(check().is_err());
    clock.advance(Duration::from_millis(1));
    check().unwrap();
    assert!(check().is_err());
}

#[test]
fn a_reload_carries_used_quota_over_unless_the_rate_changed() {
    let with_rate = |rate: &str| {
        let mut s = spec("grid");
        s.rate = Some(rate.parse().unwrap());
        policy_with(vec![s, spec("other")], None)
    };
    let policy = with_rate("2/m");
    let clock = FakeRelativeClock::default();
    let limits = RateLimits::new(&policy, clock);
    let ok = limit_order("BTCUSDT", "LIMIT", "0.001", "60000");
    let check = |limits: &RateLimits<FakeRelativeClock>, policy: &Policy| {
        limits.check(
            &policy
                .authorize(policy.bot("grid").unwrap(), &ok, &NoQuotes)
                .unwrap(),
        )
    };
    check(&limits, &policy).unwrap();
    check(&limits, &policy).unwrap();
    assert!(check(&limits, &policy).is_err());
    // Same rate after reload: still exhausted.
    let reloaded = with_rate("2/m");
    let carried = limits.carried_over(&reloaded);
    assert!(check(&carried, &reloaded).is_err());
    // A changed rate starts a fresh bucket.
    let changed = with_rate("3/m");
    let fresh = carried.carried_over(&changed);
    check(&fresh, &changed).unwrap();
}

#[test]
fn refused_requests_consume_no_quota() {
    let mut s = spec("grid");
    s.rate = Some("2/m".parse().unwrap());
    let policy = policy_with(vec![s], None);
    let limits = RateLimits::new(&policy, FakeRelativeClock::default());
    let grid = policy.bot("grid").unwrap();
    for _ in 0..50 {
        assert!(
            policy
                .authorize(grid, &limit_order("DMGUSDT", "LIMIT", "1", "1"), &NoQuotes)
                .is_err()
        );
    }
    let ok = limit_order("BTCUSDT", "LIMIT", "0.001", "60000");
    limits
        .check(&policy.authorize(grid, &ok, &NoQuotes).unwrap())
        .unwrap();
    limits
        .check(&policy.authorize(grid, &ok, &NoQuotes).unwrap())
        .unwrap();
    assert!(
        limits
            .check(&policy.authorize(grid, &ok, &NoQuotes).unwrap())
            .is_err()
    );
}

#[test]
fn account_rate_is_shared_by_its_bots() {
    let policy = policy_with(vec![spec("a"), spec("b")], Some("3/m".parse().unwrap()));
    let limits = RateLimits::new(&policy, FakeRelativeClock::default());
    let ok = limit_order("BTCUSDT", "LIMIT", "0.001", "60000");
    let check = |bot: &str| {
        let bot = policy.bot(bot).unwrap();
        limits.check(&policy.authorize(bot, &ok, &NoQuotes).unwrap())
    };
    check("a").unwrap();
    check("b").unwrap();
    check("a").unwrap();
    let Denied::RateLimited { scope, .. } = check("b").unwrap_err() else {
        panic!("expected a rate limit");
    };
    assert_eq!(scope, RateScope::Account);
}

#[test]
fn anonymous_requests_get_only_public_market_data_of_accounts_that_serve_it() {
    let policy = policy_with(vec![spec("grid")], None);
    let ticker = Intent {
        endpoint: endpoint("GET /api/v3/ticker/price", EndpointClass::Market),
        symbols: vec![sym("DMGUSDT")],
        orders: vec![],
    };
    let permit = policy.authorize_public("main", &ticker).unwrap();
    assert_eq!(permit.bot(), ANONYMOUS);
    assert_eq!(permit.via(), Rule::PublicMarketData);
    let read = Intent {
        endpoint: endpoint("GET /api/v3/account", EndpointClass::Read),
        symbols: vec![],
        orders: vec![],
    };
    assert_eq!(
        policy.authorize_public("main", &read).unwrap_err(),
        Denied::AuthMissing
    );
    assert_eq!(
        policy.authorize_public("other", &ticker).unwrap_err(),
        Denied::AuthMissing
    );
    let closed = Policy::new(
        vec![],
        vec![AccountSpec {
            name: "main".into(),
            rate: None,
            public_market_data: false,
        }],
    )
    .unwrap();
    assert_eq!(
        closed.authorize_public("main", &ticker).unwrap_err(),
        Denied::AuthMissing
    );
}

#[test]
fn batches_larger_than_the_order_bucket_are_refused() {
    let mut s = spec("grid");
    s.order_rate = Some("2/s".parse().unwrap());
    let policy = policy_with(vec![s], None);
    let limits = RateLimits::new(&policy, FakeRelativeClock::default());
    let grid = policy.bot("grid").unwrap();
    let mut batch = limit_order("BTCUSDT", "LIMIT", "0.001", "60000");
    let one = batch.orders[0].clone();
    batch.orders.extend([one.clone(), one]);
    let permit = policy.authorize(grid, &batch, &NoQuotes).unwrap();
    assert_eq!(permit.orders(), 3);
    assert_eq!(limits.check(&permit).unwrap_err().reason(), "rate_limited");
}

#[test]
fn key_names_find_active_and_revoked_keys_and_say_their_standing_separately() {
    let key = |fill: u8| {
        let mut point = [fill; 65];
        point[0] = 4;
        BotKey::from_point(&point).unwrap()
    };
    let (active, revoked, stranger) = (key(1), key(2), key(3));
    let mut fresh = spec("cb");
    fresh.keys = BotKeys {
        active: vec![active],
        revoked: vec![revoked],
    };
    let mut stale = spec("old");
    stale.keys = BotKeys {
        active: vec![key(4)],
        revoked: vec![],
    };
    stale.expires = now() - Duration::from_secs(1);
    let policy = policy_with(vec![fresh, stale], None);

    let found = policy
        .authenticate_key(&active.key_name("cb"), now())
        .unwrap();
    assert_eq!(
        (found.bot.name(), found.key, found.standing),
        ("cb", active, Ok(()))
    );
    // A revoked key is still found, so its JWT can be verified before anyone learns
    // that it is revoked.
    let found = policy
        .authenticate_key(&revoked.key_name("cb"), now())
        .unwrap();
    assert_eq!(
        (found.key, found.standing),
        (revoked, Err(Denied::AuthRevoked))
    );
    let found = policy
        .authenticate_key(&key(4).key_name("old"), now())
        .unwrap();
    assert_eq!(found.standing, Err(Denied::AuthExpired));
    for unknown in [
        stranger.key_name("cb"),
        active.key_name("nobody"),
        "cb".to_owned(),
    ] {
        assert_eq!(
            policy.authenticate_key(&unknown, now()).map(|f| f.standing),
            Err(Denied::AuthInvalid),
            "{unknown}"
        );
    }
}

/// Tokens are found by their digest, and a token found must name its own bot: a
/// digest listed under one bot of a token whose prefix names another (a pasting
/// mistake) authenticates nobody.
#[test]
fn a_token_is_found_by_its_digest_and_must_name_its_bot() {
    let mut grid = spec("grid");
    grid.tokens.push(TokenDigest::of(&token("other", 1)));
    let policy = policy_with(vec![grid, spec("dca")], None);
    let found = |t: &str| {
        policy
            .authenticate(Some(t), now())
            .map(|b| b.name.to_string())
    };
    assert_eq!(found(&token("grid", 1)), Ok("grid".to_owned()));
    assert_eq!(found(&token("dca", 1)), Ok("dca".to_owned()));
    assert_eq!(found(&token("dca", 2)), Err(Denied::AuthRevoked));
    assert_eq!(found(&token("other", 1)), Err(Denied::AuthInvalid));
    assert_eq!(found(&token("grid", 3)), Err(Denied::AuthInvalid));
}

#[test]
fn sizes_the_exchange_decides_pass_only_as_allowed_reduce_only_closes() {
    let close = |reduce_only: bool, size: Size| Intent {
        endpoint: order_endpoint(),
        symbols: vec![sym("BTCUSDT")],
        orders: vec![Order {
            symbol: sym("BTCUSDT"),
            side: Side::Sell,
            order_type: Arc::from("MARKET"),
            execution: Execution::Market,
            size,
            price: None,
            trigger: None,
            amend: false,
            margin: false,
            reduce_only,
        }],
    };
    let zero = Size::Base("0".parse().unwrap());
    let mut allowed = spec("allowed");
    allowed.allow_position_close = true;
    let policy = policy_with(vec![spec("closer"), allowed], None);
    let closer = policy.bot("closer").unwrap();
    let allowed = policy.bot("allowed").unwrap();
    for size in [zero, Size::WholePosition] {
        for reduce_only in [false, true] {
            let denied = policy
                .authorize(closer, &close(reduce_only, size), &NoQuotes)
                .unwrap_err();
            assert_eq!(denied.reason(), "notional_unbounded", "{size:?}");
            assert_eq!(denied.rule(), Rule::AllowPositionClose);
        }
        let denied = policy
            .authorize(allowed, &close(false, size), &NoQuotes)
            .unwrap_err();
        assert!(denied.to_string().contains("reduce-only"), "{denied}");
        let permit = policy
            .authorize(allowed, &close(true, size), &NoQuotes)
            .unwrap();
        assert_eq!(permit.notional(), Notional::Bounded(Amount::ZERO));
        assert_eq!(permit.orders(), 1);
    }
    // A symbol off the list stays refused, close or not.
    let mut elsewhere = close(true, Size::WholePosition);
    elsewhere.orders[0].symbol = sym("DMGUSDT");
    elsewhere.symbols = vec![sym("DMGUSDT")];
    let denied = policy
        .authorize(allowed, &elsewhere, &NoQuotes)
        .unwrap_err();
    assert_eq!(denied.reason(), "symbol_not_allowed");
}

#[test]
fn the_slow_price_holds_the_band_where_the_book_was_moved() {
    let policy = banded_policy();
    let grid = policy.bot("grid").unwrap();
    // A thin book pumped to 90000, its spread tight, while the 5-minute average is
    // 60000: buys are held to 60000 + 5%, sells to the book (the higher).
    let pumped = Fixed(Quote {
        bid: "89990".parse().unwrap(),
        ask: "90010".parse().unwrap(),
        slow: Some("60000".parse().unwrap()),
    });
    let buy = |price: &str| limit_order("BTCUSDT", "LIMIT", "0.001", price);
    assert_eq!(
        policy
            .authorize(grid, &buy("64000"), &pumped)
            .unwrap_err()
            .reason(),
        "price_out_of_band"
    );
    policy.authorize(grid, &buy("62900"), &pumped).unwrap();
    let mut sell = buy("86000");
    sell.orders[0].side = Side::Sell;
    policy.authorize(grid, &sell, &pumped).unwrap();
    // Dumped bids: sells are held to the average.
    let dumped = Fixed(Quote {
        bid: "30000".parse().unwrap(),
        ask: "30010".parse().unwrap(),
        slow: Some("60000".parse().unwrap()),
    });
    let mut cheap = buy("31000");
    cheap.orders[0].side = Side::Sell;
    assert_eq!(
        policy
            .authorize(grid, &cheap, &dumped)
            .unwrap_err()
            .reason(),
        "price_out_of_band"
    );
}
