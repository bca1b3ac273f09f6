use std::sync::Arc;
use std::time::{Duration, SystemTime};

use keyward_policy::{Execution, Order, Side, Size, Symbol};

use super::*;
use keyward_venues::{AmendKind, LegResult, Listed, OrderRef, Placed};

fn at(seconds: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + seconds)
}

fn symbol(text: &str) -> Symbol {
    Symbol::new(text).unwrap()
}

fn order(on: &str, side: Side, qty: &str, price: &str) -> Order {
    Order {
        symbol: symbol(on),
        side,
        order_type: Arc::from("LIMIT"),
        execution: Execution::Limit,
        size: Size::Base(qty.parse().unwrap()),
        price: Some(price.parse().unwrap()),
        trigger: None,
        amend: false,
        margin: false,
        reduce_only: false,
    }
}

fn placed(id: &str, client_id: Option<&str>) -> LegResult {
    LegResult::Placed(Placed {
        id: Some(id.to_owned()),
        client_id: client_id.map(str::to_owned),
        open: true,
        ..Placed::default()
    })
}

fn new_order(order: Order, client_id: Option<&str>, result: LegResult) -> Settlement {
    Settlement {
        legs: vec![Leg {
            order,
            client_id: client_id.map(str::to_owned),
            amends: None,
            result,
        }],
        succeeded: true,
        ..Settlement::default()
    }
}

/// Bot `a` of account `acc` placed `order` in request `request_id` (which held
/// `reserved` new orders), and the exchange answered `result`.
fn settle_new(
    book: &OrderBook,
    (request_id, reserved): (&str, u32),
    order: Order,
    client_id: Option<&str>,
    result: LegResult,
    now: SystemTime,
) {
    let settlement = new_order(order, client_id, result);
    book.settle("acc", "a", request_id, reserved, &settlement, now);
}

fn by_id(on: Option<&str>, id: &str) -> OrderRef {
    OrderRef {
        symbol: on.map(symbol),
        id: Some(id.to_owned()),
        ..OrderRef::default()
    }
}

const WINDOW: Duration = Duration::from_secs(86_400);

#[test]
fn an_order_is_found_only_by_the_bot_that_placed_it_and_on_its_symbol() {
    let book = OrderBook::new();
    settle_new(
        &book,
        ("r1", 0),
        order("ETHUSDT", Side::Sell, "1", "3000"),
        Some("c1"),
        placed("7", Some("c1")),
        at(0),
    );
    let record = book.lookup("acc", "a", &by_id(None, "7")).unwrap();
    assert_eq!(
        (record.symbol.as_str(), record.side),
        ("ETHUSDT", Side::Sell)
    );
    let by_client = OrderRef {
        client_id: Some("c1".to_owned()),
        ..OrderRef::default()
    };
    assert_eq!(
        book.lookup("acc", "a", &by_client).unwrap().id.as_deref(),
        Some("7")
    );
    // The same id under another symbol is another order (Binance numbers per symbol).
    assert_eq!(
        book.lookup("acc", "a", &by_id(Some("BTCUSDT"), "7"))
            .unwrap_err()
            .reason(),
        "order_unknown"
    );
    assert_eq!(
        book.lookup("acc", "b", &by_id(None, "7"))
            .unwrap_err()
            .reason(),
        "order_not_owned"
    );
    assert_eq!(
        book.lookup("other", "a", &by_id(None, "7"))
            .unwrap_err()
            .reason(),
        "order_unknown"
    );
    // An id and a client id that name two different orders name none.
    let both = OrderRef {
        id: Some("7".to_owned()),
        client_id: Some("nope".to_owned()),
        ..OrderRef::default()
    };
    assert_eq!(
        book.lookup("acc", "a", &both).unwrap_err().reason(),
        "order_unknown"
    );
}

#[test]
fn client_ids_are_refused_within_the_window_in_flight_and_within_a_request() {
    let book = OrderBook::new();
    let reserve = |request: &str, ids: &[&str], now: SystemTime| {
        book.reserve(
            "acc",
            "a",
            request,
            ids,
            1,
            (None, None),
            (now, WINDOW),
            true,
        )
    };
    reserve("r1", &["c1"], at(0)).unwrap();
    // In flight.
    assert!(matches!(
        reserve("r2", &["c1"], at(1)),
        Err(ReserveError::Order(OrderError::DuplicateClientId(_)))
    ));
    assert!(reserve("r3", &["c2", "c2"], at(1)).is_err());
    // Placed: within the window it is still refused, after it it may be used again.
    settle_new(
        &book,
        ("r1", 1),
        order("BTCUSDT", Side::Buy, "1", "1"),
        Some("c1"),
        LegResult::Unknown,
        at(0),
    );
    assert!(reserve("r4", &["c1"], at(10)).is_err());
    reserve("r5", &["c1"], at(86_401)).unwrap();
    // A request the exchange refused frees its client id.
    reserve("r6", &["c9"], at(2)).unwrap();
    settle_new(
        &book,
        ("r6", 1),
        order("BTCUSDT", Side::Buy, "1", "1"),
        Some("c9"),
        LegResult::Rejected,
        at(2),
    );
    reserve("r7", &["c9"], at(3)).unwrap();
}

#[test]
fn open_orders_count_until_closed_and_unknown_outcomes_count_open() {
    let book = OrderBook::new();
    let limits = (Some(2), Some(3));
    let reserve = |request: &str, bot: &str| {
        book.reserve("acc", bot, request, &[], 1, limits, (at(0), WINDOW), true)
    };
    reserve("r1", "a").unwrap();
    // An ACK answer: placed, no status, open.
    settle_new(
        &book,
        ("r1", 1),
        order("BTCUSDT", Side::Buy, "1", "1"),
        None,
        placed("1", None),
        at(0),
    );
    reserve("r2", "a").unwrap();
    // A timeout: unknown, counted open.
    settle_new(
        &book,
        ("r2", 1),
        order("BTCUSDT", Side::Buy, "1", "1"),
        None,
        LegResult::Unknown,
        at(0),
    );
    assert_eq!(book.open_orders("acc", "a"), (2, 2));
    assert!(matches!(reserve("r3", "a"), Err(ReserveError::Denied(_))));
    // Another bot's read lists the orders: it changes nothing of whose they are.
    book.observe(
        "acc",
        &Settlement {
            listed: vec![Listed {
                symbol: symbol("BTCUSDT"),
                id: "1".to_owned(),
                client_id: None,
                open: true,
            }],
            ..Settlement::default()
        },
    );
    assert_eq!(book.open_orders("acc", "a"), (2, 2));
    assert_eq!(book.open_orders("acc", "b").0, 0);
    // The open-order check: order 1 is gone, an order keyward never placed is open.
    book.reconcile(
        "acc",
        &symbol("BTCUSDT"),
        &[Listed {
            symbol: symbol("BTCUSDT"),
            id: "99".to_owned(),
            client_id: None,
            open: true,
        }],
        at(5),
    );
    assert_eq!(
        book.open_orders("acc", "a"),
        (0, 1),
        "the foreign order counts for the account"
    );
    reserve("r4", "b").unwrap();
    reserve("r5", "b").unwrap();
    assert!(
        matches!(reserve("r6", "b"), Err(ReserveError::Denied(_))),
        "the account's limit of 3 holds the foreign order and two in flight"
    );
}

#[test]
fn an_unconfirmed_order_is_confirmed_by_its_client_id() {
    let book = OrderBook::new();
    settle_new(
        &book,
        ("r1", 0),
        order("BTCUSDT", Side::Buy, "1", "1"),
        Some("c1"),
        LegResult::Unknown,
        at(0),
    );
    book.reconcile(
        "acc",
        &symbol("BTCUSDT"),
        &[Listed {
            symbol: symbol("BTCUSDT"),
            id: "42".to_owned(),
            client_id: Some("c1".to_owned()),
            open: true,
        }],
        at(5),
    );
    let record = book.lookup("acc", "a", &by_id(None, "42")).unwrap();
    assert_eq!(record.state, State::Open);
    assert_eq!(book.open_orders("acc", "a"), (1, 1));
}

#[test]
fn amends_change_the_record_and_replacements_take_a_new_id() {
    let book = OrderBook::new();
    settle_new(
        &book,
        ("r1", 0),
        order("XBTUSD", Side::Sell, "1", "60000"),
        None,
        placed("OLD", None),
        at(0),
    );
    let amend = |kind, result| Settlement {
        legs: vec![Leg {
            order: order("XBTUSD", Side::Sell, "2", "61000"),
            client_id: None,
            amends: Some((by_id(None, "OLD"), kind)),
            result,
        }],
        succeeded: true,
        ..Settlement::default()
    };
    book.settle(
        "acc",
        "a",
        "r2",
        0,
        &amend(AmendKind::InPlace, LegResult::Rejected),
        at(1),
    );
    let record = book.lookup("acc", "a", &by_id(None, "OLD")).unwrap();
    assert_eq!(
        record.price,
        Some("60000".parse().unwrap()),
        "a refused amend changes nothing"
    );
    book.settle(
        "acc",
        "a",
        "r3",
        0,
        &amend(AmendKind::Replaces, placed("NEW", None)),
        at(2),
    );
    assert_eq!(
        book.lookup("acc", "a", &by_id(None, "OLD")).unwrap().state,
        State::Closed
    );
    let new = book.lookup("acc", "a", &by_id(None, "NEW")).unwrap();
    assert_eq!(
        (new.side, new.size),
        (Side::Sell, Size::Base("2".parse().unwrap()))
    );
    assert_eq!(book.open_orders("acc", "a"), (1, 1));
}

#[test]
fn the_record_is_rebuilt_from_the_audit_log() {
    let dir = std::env::temp_dir().join(format!("keyward-orders-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("audit.jsonl");
    let now = SystemTime::now();
    let ts = crate::audit::timestamp(now);
    let leg = leg_record(
        &order("BTCUSDT", Side::Buy, "0.001", "60000"),
        Some("c1"),
        None,
    );
    let lines = [
        serde_json::json!({"event": "request", "ts": ts, "request_id": "r1", "bot": "a", "account": "acc", "decision": "allow", "legs": [leg]}),
        serde_json::json!({"event": "outcome", "ts": ts, "request_id": "r1", "upstream_status": 200, "refused": false, "results": [result_record(&placed("5", Some("c1")))]}),
        serde_json::json!({"event": "request", "ts": ts, "request_id": "r2", "bot": "a", "account": "acc", "decision": "allow", "legs": [leg_record(&order("BTCUSDT", Side::Sell, "1", "70000"), None, None)]}),
        serde_json::json!({"event": "request", "ts": ts, "request_id": "r3", "bot": "a", "account": "acc", "decision": "deny", "legs": [leg_record(&order("BTCUSDT", Side::Buy, "0.001", "60000"), Some("c3"), None)]}),
    ];
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, text).unwrap();
    let book = OrderBook::rebuild(&path, now);
    let record = book
        .lookup("acc", "a", &by_id(Some("BTCUSDT"), "5"))
        .unwrap();
    assert_eq!(
        (record.side, record.client_id.as_deref()),
        (Side::Buy, Some("c1"))
    );
    // r2 has no outcome: unconfirmed, counted open; r3 was refused: nothing.
    assert_eq!(book.open_orders("acc", "a"), (2, 2));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A written record whose shape is not the one keyward writes does not read back
/// (the checkpoint is then set aside and the audit log replayed): its records
/// before the bot names they point into, an account twice, a bot index past the
/// names, an unknown state. Fields keyward does not know are skipped.
#[test]
fn a_record_of_another_shape_does_not_read_back() {
    let record = r#"{"bot":0,"symbol":"BTCUSDT","buy":true,"order_type":"LIMIT","execution":"limit","qty":"1","price":"2","id":"5","state":"open","placed_nanos":1,"request_id":"r1"}"#;
    let read = |text: &str| serde_json::from_str::<ReadBack>(text).map(|ReadBack(book)| book);
    let good = format!(
        r#"[{{"account":"acc","later":1,"bots":["a"],"records":[{record}],"foreign":[]}}]"#
    );
    let book = read(&good).expect("the shape keyward writes, and a field it does not know");
    assert_eq!(book.open_orders("acc", "a"), (1, 1));
    for bad in [
        format!(r#"[{{"account":"acc","records":[{record}],"bots":["a"],"foreign":[]}}]"#),
        format!(
            r#"[{{"account":"acc","bots":["a"],"records":[{record}]}},{{"account":"acc","bots":["a"],"records":[]}}]"#
        ),
        format!(r#"[{{"account":"acc","bots":[],"records":[{record}]}}]"#),
        format!(
            r#"[{{"account":"acc","bots":["a"],"records":[{}]}}]"#,
            record.replace("open", "half")
        ),
        r#"[{"bots":["a"],"records":[]}]"#.to_owned(),
        r#"[{"account":"acc","bots":["a"]}]"#.to_owned(),
    ] {
        assert!(read(&bad).is_err(), "read back: {bad}");
    }
}

#[test]
fn the_record_reads_back_from_its_state() {
    let book = OrderBook::new();
    settle_new(
        &book,
        ("r1", 0),
        order("BTCUSDT", Side::Buy, "0.001", "60000"),
        Some("c1"),
        placed("5", Some("c1")),
        at(0),
    );
    let unknown = new_order(
        order("ETHUSDT", Side::Sell, "1", "3000"),
        None,
        LegResult::Unknown,
    );
    book.settle("acc", "b", "r2", 0, &unknown, at(1));
    let json = |book: &OrderBook| {
        book.with_state(|state| serde_json::to_string(state).unwrap())
            .unwrap()
    };
    let written = json(&book);
    let ReadBack(restored) = serde_json::from_str(&written).unwrap();
    assert_eq!(json(&restored), written);
    assert_eq!(
        restored.open_orders("acc", "a"),
        book.open_orders("acc", "a")
    );
    assert_eq!(
        restored.open_orders("acc", "b"),
        book.open_orders("acc", "b")
    );
    let record = restored
        .lookup("acc", "a", &by_id(Some("BTCUSDT"), "5"))
        .unwrap();
    assert_eq!(
        record,
        book.lookup("acc", "a", &by_id(Some("BTCUSDT"), "5"))
            .unwrap()
    );
    // Another bot's order is still not its own.
    assert!(
        restored
            .lookup("acc", "b", &by_id(Some("BTCUSDT"), "5"))
            .is_err()
    );
}

/// What one replica shares of a settled request, applied on another: the order is
/// found there, counted once however often the entry is read (or rebuilt from the
/// audit log first), and closed by a shared cancel.
#[test]
fn a_shared_settlement_is_applied_once_and_a_shared_cancel_closes_it() {
    let placed_order = order("BTCUSDT", Side::Buy, "0.001", "60000");
    let shared = SharedSettlement {
        bot: "a".to_owned(),
        request_id: "one-1".to_owned(),
        at_ms: 1_800_000_000_000,
        legs: vec![leg_record(&placed_order, Some("c1"), None)],
        cancels: Vec::new(),
        results: vec![result_record(&placed("77", Some("c1")))],
        cancelled: None,
        closed: Vec::new(),
        closed_all: Vec::new(),
        succeeded: true,
    };
    assert_eq!(shared.opened(), 1);
    let text = serde_json::to_string(&shared).unwrap();
    let read: SharedSettlement = serde_json::from_str(&text).unwrap();
    assert_eq!(read, shared);

    let book = OrderBook::new();
    book.apply_shared("acc", &read);
    book.apply_shared("acc", &read);
    assert_eq!(book.open_orders("acc", "a"), (1, 1));
    assert_eq!(book.settled_open_orders("acc", "a"), (1, 1));
    let found = book
        .lookup("acc", "a", &by_id(Some("BTCUSDT"), "77"))
        .unwrap();
    assert_eq!(found.client_id.as_deref(), Some("c1"));
    assert!(matches!(
        book.lookup("acc", "b", &by_id(Some("BTCUSDT"), "77")),
        Err(OrderError::NotOwned(_))
    ));

    // Held room of this replica's own request in flight is not "settled".
    book.reserve(
        "acc",
        "a",
        "two-1",
        &[],
        2,
        (None, None),
        (at(0), Duration::ZERO),
        true,
    )
    .unwrap();
    assert_eq!(book.open_orders("acc", "a"), (3, 3));
    assert_eq!(book.settled_open_orders("acc", "a"), (1, 1));
    book.release("acc", "a", "two-1", 2);

    let cancel = SharedSettlement {
        request_id: "two-2".to_owned(),
        legs: Vec::new(),
        results: Vec::new(),
        cancels: vec![ref_record(&by_id(Some("BTCUSDT"), "77"))],
        cancelled: Some(vec![true]),
        ..shared
    };
    assert_eq!(cancel.opened(), 0);
    book.apply_shared("acc", &cancel);
    assert_eq!(book.open_orders("acc", "a"), (0, 0));
}

#[test]
fn the_open_order_check_asks_about_open_orders_only_and_knows_closed_ones() {
    let book = OrderBook::new();
    let listed = |on: &str, id: &str| Listed {
        symbol: symbol(on),
        id: id.to_owned(),
        client_id: None,
        open: true,
    };
    for (request, on, id) in [("r1", "BTCUSDT", "1"), ("r2", "ETHUSDT", "2")] {
        settle_new(
            &book,
            (request, 0),
            order(on, Side::Buy, "1", "1"),
            None,
            placed(id, None),
            at(0),
        );
    }
    assert_eq!(
        book.tracked_symbols("acc"),
        [symbol("BTCUSDT"), symbol("ETHUSDT")]
    );
    // Not listed: order 1 is closed, and its symbol no longer asked about.
    book.reconcile("acc", &symbol("BTCUSDT"), &[], at(5));
    assert_eq!(book.tracked_symbols("acc"), [symbol("ETHUSDT")]);
    assert_eq!(book.open_orders("acc", "a"), (1, 1));
    // Listed again (the exchange's view lags): a closed order keyward placed is not
    // someone else's. Order 2 listed on another symbol is.
    book.reconcile(
        "acc",
        &symbol("BTCUSDT"),
        &[listed("BTCUSDT", "1"), listed("BTCUSDT", "2")],
        at(10),
    );
    assert_eq!(book.open_orders("acc", "a"), (1, 2));
    assert_eq!(
        book.tracked_symbols("acc"),
        [symbol("BTCUSDT"), symbol("ETHUSDT")],
        "the foreign order's symbol is asked about"
    );
    // A read-back knows the same open orders.
    let read_back = book
        .with_state(|state| serde_json::to_vec(state).unwrap())
        .map(|written| serde_json::from_slice::<ReadBack>(&written).unwrap().0)
        .expect("reads back");
    assert_eq!(read_back.open_orders("acc", "a"), (1, 2));
    read_back.reconcile("acc", &symbol("ETHUSDT"), &[], at(15));
    assert_eq!(read_back.tracked_symbols("acc"), [symbol("BTCUSDT")]);
    assert_eq!(read_back.open_orders("acc", "a"), (0, 1));
}

#[test]
fn pruning_forgets_closed_orders_placed_before_the_cut_and_nothing_else() {
    let book = OrderBook::new();
    let place = |request: &str, id: &str, when: u64| {
        settle_new(
            &book,
            (request, 0),
            order("BTCUSDT", Side::Buy, "1", "1"),
            None,
            placed(id, None),
            at(when),
        );
    };
    let known = |book: &OrderBook, id: &str| book.lookup("acc", "a", &by_id(None, id)).is_ok();
    // The open-order check lists only "old-open": the others are closed.
    let check = |when: u64| {
        book.reconcile(
            "acc",
            &symbol("BTCUSDT"),
            &[Listed {
                symbol: symbol("BTCUSDT"),
                id: "old-open".to_owned(),
                client_id: None,
                open: true,
            }],
            at(when),
        );
    };
    place("r1", "old-closed", 0);
    place("r2", "old-open", 0);
    check(5);
    place("r3", "new-closed", 100);
    check(105);
    let read_back = book
        .with_state(|state| serde_json::to_vec(state).unwrap())
        .map(|written| serde_json::from_slice::<ReadBack>(&written).unwrap().0)
        .expect("reads back");
    for book in [&book, &read_back] {
        book.prune(at(50));
        assert!(
            !known(book, "old-closed"),
            "closed and placed before the cut"
        );
        assert!(
            known(book, "old-open"),
            "open orders are kept whatever their age"
        );
        assert!(known(book, "new-closed"), "placed after the cut");
        book.prune(at(200));
        assert!(!known(book, "new-closed"));
        assert!(known(book, "old-open"));
        assert_eq!(book.open_orders("acc", "a"), (1, 1));
    }
}
