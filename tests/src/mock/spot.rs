//! The mock's Binance spot account: what happens to a spot order once the mock has
//! taken it (resting on the book, executed at once, filled later, canceled), the
//! balances each step moves, and the user-data events each step sends to WebSocket
//! API subscribers (`executionReport`, `outboundAccountPosition`, in the fields
//! Binance's user-data-stream.md documents). Orders from REST and from the WebSocket
//! API both come through here, so they share one book, one account and one event
//! stream, as on Binance.
//!
//! Amounts are integers in units of 10^-8 (Binance's precision), so balances add up
//! exactly. Commissions are zero. The mock never refuses an order for want of
//! balance: soak runs place more than the account holds, so a balance may go
//! negative; [`super::Mock::close_market`] is the way to have an order refused.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use super::{State, now_ms};

/// 10^8: one whole unit of an asset or a price, in the mock's integer amounts.
pub(super) const SCALE: i128 = 100_000_000;

/// One asset's balance, in units of 10^-8.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Holding {
    pub(super) free: i128,
    pub(super) locked: i128,
}

/// What the account holds when the mock starts (the REST account answer has always
/// shown these): 1 BTC and 10000 USDT.
pub(super) fn initial_balances() -> BTreeMap<String, Holding> {
    BTreeMap::from([
        (
            "BTC".to_owned(),
            Holding {
                free: SCALE,
                locked: 0,
            },
        ),
        (
            "USDT".to_owned(),
            Holding {
                free: 10_000 * SCALE,
                locked: 0,
            },
        ),
    ])
}

/// A decimal string in units of 10^-8 (digits past the eighth are dropped); `None`
/// for anything else (an exponent, a sign in the wrong place, no digits).
pub(super) fn units(text: &str) -> Option<i128> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
        || whole.len() > 20
    {
        return None;
    }
    let mut value: i128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    for i in 0..8 {
        let digit = fraction
            .as_bytes()
            .get(i)
            .map_or(0, |b| i128::from(b - b'0'));
        value = value * 10 + digit;
    }
    Some(if negative { -value } else { value })
}

/// Units of 10^-8 as Binance writes amounts: eight decimals.
pub(super) fn decimal(units: i128) -> String {
    let sign = if units < 0 { "-" } else { "" };
    let abs = units.unsigned_abs();
    let scale = SCALE.unsigned_abs();
    format!("{sign}{}.{:08}", abs / scale, abs % scale)
}

/// Base and quote asset of a symbol the mock lists (`BTCUSDT` is BTC and USDT);
/// `None` for others, whose orders move no balance.
fn assets(symbol: &str) -> Option<(&str, &str)> {
    let base = symbol.strip_suffix("USDT")?;
    (!base.is_empty()).then_some((base, "USDT"))
}

/// Whether an order in the mock's shared book is a spot order (USDⓈ-M orders share
/// the book; they have no order list id, and send no spot events).
pub(super) fn is_spot(order: &Value) -> bool {
    order.get("orderListId").is_some()
}

fn field(order: &Value, name: &str) -> i128 {
    order[name].as_str().and_then(units).unwrap_or(0)
}

fn text(order: &Value, name: &str) -> String {
    order[name].as_str().unwrap_or_default().to_owned()
}

/// `quantity × price` of a quote asset.
pub(super) fn cost(quantity: i128, price: i128) -> i128 {
    quantity.saturating_mul(price) / SCALE
}

/// Takes a new spot order (from `new_order`): a `MARKET` order executes at once at
/// the book's best price and never rests; any other rests on the book with its funds
/// locked. Sends the events Binance sends; returns the order as it now stands.
pub(super) fn accept(state: &State, mut order: Value) -> Value {
    let (symbol, buy) = (text(&order, "symbol"), order["side"] == "BUY");
    if order["type"] == "MARKET" {
        let price = market_price(state, &symbol, buy);
        let mut quantity = field(&order, "origQty");
        if quantity == 0 && price > 0 {
            // Sized in quote (`quoteOrderQty`): as much base as it buys.
            quantity = field(&order, "origQuoteOrderQty").saturating_mul(SCALE) / price;
            order["origQty"] = decimal(quantity).into();
        }
        send(state, report(&order, "NEW", None, ""));
        let trade = state.next_trade.fetch_add(1, Ordering::Relaxed);
        order["executedQty"] = decimal(quantity).into();
        order["cummulativeQuoteQty"] = decimal(cost(quantity, price)).into();
        order["status"] = "FILLED".into();
        order["isWorking"] = false.into();
        order["fills"] = json!([{
            "price": decimal(price), "qty": decimal(quantity), "commission": decimal(0),
            "commissionAsset": assets(&symbol).map_or("USDT", |(base, quote)| if buy { base } else { quote }),
            "tradeId": trade,
        }]);
        send(
            state,
            report(&order, "TRADE", Some((quantity, price, trade)), ""),
        );
        settle(state, &order, quantity, price, false);
        finished(state, &order);
        return order;
    }
    move_locked(state, &order, 1);
    state
        .open_orders
        .lock()
        .expect("orders")
        .push(order.clone());
    send(state, report(&order, "NEW", None, ""));
    send_positions(state, &symbol);
    order
}

/// The price a market order of `symbol` executes at: the best ask to buy, the best
/// bid to sell, else the average, else nothing (USDⓈ-M's market orders too).
pub(super) fn market_price(state: &State, symbol: &str, buy: bool) -> i128 {
    let quote = state.quotes.lock().expect("quotes").get(symbol).cloned();
    quote
        .and_then(|(bid, ask)| units(if buy { &ask } else { &bid }))
        .or_else(|| state.average(symbol).as_deref().and_then(units))
        .unwrap_or(0)
}

/// Fills a resting spot order (already taken off the book) at its own price.
pub(super) fn fill(state: &State, mut order: Value) {
    let (quantity, price) = (field(&order, "origQty"), field(&order, "price"));
    let trade = state.next_trade.fetch_add(1, Ordering::Relaxed);
    order["executedQty"] = decimal(quantity).into();
    order["cummulativeQuoteQty"] = decimal(cost(quantity, price)).into();
    order["status"] = "FILLED".into();
    order["isWorking"] = false.into();
    order["updateTime"] = now_ms().into();
    send(
        state,
        report(&order, "TRADE", Some((quantity, price, trade)), ""),
    );
    settle(state, &order, quantity, price, true);
    finished(state, &order);
}

/// Cancels a resting spot order (already taken off the book): its funds are
/// unlocked and the cancel reported. Returns Binance's cancel report (the
/// WebSocket API's `order.cancel` result), whose `clientOrderId` is
/// `new_client_id` or one the mock makes up.
pub(super) fn cancel(state: &State, mut order: Value, new_client_id: Option<&str>) -> Value {
    let original = text(&order, "clientOrderId");
    let renamed =
        new_client_id.map_or_else(|| format!("mockcancel{}", order["orderId"]), str::to_owned);
    move_locked(state, &order, -1);
    order["status"] = "CANCELED".into();
    order["updateTime"] = now_ms().into();
    let mut event = report(&order, "CANCELED", None, &original);
    event["c"] = renamed.clone().into();
    send(state, event);
    send_positions(state, &text(&order, "symbol"));
    if let Some(renamed) = new_client_id {
        // As on Binance, the new id replaces the canceled order's, freeing the old.
        order["clientOrderId"] = renamed.into();
    }
    finished(state, &order);
    let mut result =
        json!({"origClientOrderId": original, "clientOrderId": renamed, "transactTime": now_ms()});
    for name in [
        "symbol",
        "orderId",
        "orderListId",
        "price",
        "origQty",
        "executedQty",
        "origQuoteOrderQty",
        "cummulativeQuoteQty",
        "status",
        "timeInForce",
        "type",
        "side",
        "selfTradePreventionMode",
    ] {
        result[name] = order[name].clone();
    }
    result
}

/// Locks (`direction` 1) or unlocks (-1) what a resting order holds: the quote it
/// would pay for a buy, the base it would sell.
fn move_locked(state: &State, order: &Value, direction: i128) {
    let Some((base, quote)) = assets(order["symbol"].as_str().unwrap_or_default()) else {
        return;
    };
    let quantity = field(order, "origQty");
    let (asset, amount) = if order["side"] == "BUY" {
        (quote, cost(quantity, field(order, "price")))
    } else {
        (base, quantity)
    };
    let mut balances = state.balances.lock().expect("balances");
    let holding = balances.entry(asset.to_owned()).or_default();
    holding.free -= direction * amount;
    holding.locked += direction * amount;
}

/// Moves the balances of an execution of `quantity` at `price`: from locked funds if
/// the order rested on the book, from free ones if it executed at once.
fn settle(state: &State, order: &Value, quantity: i128, price: i128, rested: bool) {
    let symbol = text(order, "symbol");
    let Some((base, quote)) = assets(&symbol) else {
        return;
    };
    let paid = cost(quantity, price);
    let (spent, spent_amount, got, got_amount) = if order["side"] == "BUY" {
        (quote, paid, base, quantity)
    } else {
        (base, quantity, quote, paid)
    };
    {
        let mut balances = state.balances.lock().expect("balances");
        let holding = balances.entry(spent.to_owned()).or_default();
        if rested {
            holding.locked -= spent_amount;
        } else {
            holding.free -= spent_amount;
        }
        balances.entry(got.to_owned()).or_default().free += got_amount;
    }
    send_positions(state, &symbol);
}

/// Keeps an order that left the book, so that queries still find it.
fn finished(state: &State, order: &Value) {
    let mut done = state.finished_orders.lock().expect("finished orders");
    // Bounded: soak runs fill orders for hours.
    if done.len() >= 10_000 {
        done.remove(0);
    }
    done.push(order.clone());
}

/// An `executionReport` for `order` as it now stands; `execution` is the execution
/// type, `trade` the last execution (quantity, price, trade id), `original` the
/// client order id a cancel names.
fn report(
    order: &Value,
    execution: &str,
    trade: Option<(i128, i128, u64)>,
    original: &str,
) -> Value {
    let now = now_ms();
    let (last_quantity, last_price, trade_id) = trade.map_or((0, 0, -1), |(q, p, t)| {
        (q, p, i64::try_from(t).unwrap_or(-1))
    });
    let on_book = order["status"] == "NEW" || order["status"] == "PARTIALLY_FILLED";
    let commission_asset = match (trade, assets(order["symbol"].as_str().unwrap_or_default())) {
        (Some(_), Some((base, quote))) => {
            Value::from(if order["side"] == "BUY" { base } else { quote })
        }
        _ => Value::Null,
    };
    let mut event = json!({
        "e": "executionReport", "E": now, "s": order["symbol"], "c": order["clientOrderId"],
        "S": order["side"], "o": order["type"], "f": order["timeInForce"], "q": order["origQty"],
        "p": order["price"], "P": "0.00000000", "F": "0.00000000", "g": -1, "C": original,
        "x": execution, "X": order["status"], "r": "NONE", "i": order["orderId"],
        "l": decimal(last_quantity), "z": order["executedQty"], "L": decimal(last_price),
        "n": decimal(0), "N": commission_asset, "T": now, "t": trade_id,
        "I": now, "w": on_book, "m": false, "M": false, "O": order["time"],
        "Z": order["cummulativeQuoteQty"], "Y": decimal(cost(last_quantity, last_price)),
        "Q": order["origQuoteOrderQty"], "V": order["selfTradePreventionMode"],
    });
    if on_book {
        event["W"] = order["workingTime"].clone();
    }
    event
}

/// An `outboundAccountPosition` with the balances of the assets of `symbol`.
fn send_positions(state: &State, symbol: &str) {
    let Some((base, quote)) = assets(symbol) else {
        return;
    };
    let changed: Vec<Value> = {
        let balances = state.balances.lock().expect("balances");
        [base, quote]
            .iter()
            .map(|asset| {
                let holding = balances.get(*asset).copied().unwrap_or_default();
                json!({"a": asset, "f": decimal(holding.free), "l": decimal(holding.locked)})
            })
            .collect()
    };
    let now = now_ms();
    send(
        state,
        json!({"e": "outboundAccountPosition", "E": now, "u": now, "B": changed}),
    );
}

/// Sends a user-data event to every WebSocket API connection (each passes it on to
/// its subscriptions; none listening is fine).
fn send(state: &State, event: Value) {
    let _ = state.events.send(event);
}

/// The balances as the account answers (`GET /api/v3/account`, `account.status`).
pub(super) fn balances_json(state: &State, omit_zero: bool) -> Vec<Value> {
    state
        .balances
        .lock()
        .expect("balances")
        .iter()
        .filter(|(_, h)| !omit_zero || h.free != 0 || h.locked != 0)
        .map(|(asset, h)| json!({"asset": asset, "free": decimal(h.free), "locked": decimal(h.locked)}))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_round_trip_in_units_of_ten_to_the_minus_eight() {
        assert_eq!(units("0.001"), Some(100_000));
        assert_eq!(units("60000"), Some(6_000_000_000_000));
        assert_eq!(units(".5"), Some(50_000_000));
        assert_eq!(units("-1.5"), Some(-150_000_000));
        assert_eq!(units("1.123456789"), Some(112_345_678));
        for bad in ["", ".", "1e3", "1.2.3", "--1", "abc"] {
            assert_eq!(units(bad), None, "{bad}");
        }
        assert_eq!(decimal(6_000_000_000), "60.00000000");
        assert_eq!(decimal(-1), "-0.00000001");
        assert_eq!(cost(100_000, 6_000_000_000_000), 6_000_000_000);
    }
}
