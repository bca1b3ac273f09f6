//! The mock's Bybit v5: checks `X-BAPI-API-KEY` against the keys it knows, the
//! HMAC-SHA256 signature over timestamp + key + recv window + exactly the query or
//! body it received, and Bybit's timestamp rule; answers the endpoints pybit and
//! ccxt use with Bybit's envelope (`retCode` an integer on every answer).

use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use super::{Behaviour, Recorded, State, http};
use crate::hmac_sha256_hex;
use crate::venues::bybit::{CANARY_API_KEY, CANARY_SECRET};

const PUBLIC: &[&str] = &[
    "/v5/market/time",
    "/v5/market/instruments-info",
    "/v5/market/tickers",
    "/v5/market/orderbook",
];

fn envelope(code: i64, message: &str, result: Value, ext: Value) -> Vec<u8> {
    let body = json!({
        "retCode": code, "retMsg": message, "result": result, "retExtInfo": ext,
        "time": super::now_ms()
    });
    http(200, "OK", &[], &body.to_string())
}

fn ok(result: Value) -> Vec<u8> {
    envelope(0, "OK", result, json!({}))
}

fn fail(code: i64, message: &str) -> Vec<u8> {
    envelope(code, message, json!({}), json!({}))
}

pub(super) fn respond(state: &State, request: &mut Recorded, _behaviour: Behaviour) -> Vec<u8> {
    if !PUBLIC.contains(&request.path.as_str())
        && let Some(rejection) = verify(state, request)
    {
        return rejection;
    }
    let query = request.params();
    let body: Value = if request.body.is_empty() {
        json!({})
    } else {
        match serde_json::from_str(&request.body) {
            Ok(value) => value,
            Err(_) => return fail(10001, "request body is not JSON"),
        }
    };
    let param = |name: &str| -> String {
        query
            .get(name)
            .cloned()
            .or_else(|| body[name].as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/v5/market/time") => {
            let now = state.now_ms();
            ok(json!({"timeSecond": (now / 1000).to_string(), "timeNano": format!("{now}000000")}))
        }
        ("GET", "/v5/market/instruments-info") => instruments(&param("category"), &param("status")),
        ("GET", "/v5/market/tickers" | "/v5/market/orderbook") => {
            let symbol = param("symbol");
            let quotes = state.quotes.lock().expect("quotes");
            match quotes.get(&symbol) {
                Some((bid, ask)) if request.path.ends_with("tickers") => {
                    let mut ticker = json!({"symbol": symbol, "bid1Price": bid, "bid1Size": "1", "ask1Price": ask,
                              "ask1Size": "1", "lastPrice": bid, "volume24h": "100", "turnover24h": "6000000"});
                    if param("category") == "linear" {
                        ticker["markPrice"] = state.average_of(&symbol, bid, ask).into();
                    }
                    ok(json!({"category": param("category"), "list": [ticker]}))
                }
                Some((bid, ask)) => ok(json!({
                    "s": symbol, "b": [[bid, "1"]], "a": [[ask, "1"]], "ts": super::now_ms(), "u": 1
                })),
                None => fail(10001, "Not supported symbols"),
            }
        }
        ("GET", "/v5/account/info") => ok(json!({
            "unifiedMarginStatus": 6, "marginMode": "REGULAR_MARGIN", "isMasterTrader": false,
            "spotHedgingStatus": "OFF", "updatedTime": "1700000000000"
        })),
        ("GET", "/v5/asset/coin/query-info") => ok(json!({"rows": [
            {"name": "USDT", "coin": "USDT", "remainAmount": "5000000", "chains": [
                {"chainType": "ERC20", "confirmation": "12", "withdrawFee": "1", "depositMin": "0",
                 "withdrawMin": "10", "chain": "ETH", "chainDeposit": "1", "chainWithdraw": "1",
                 "minAccuracy": "4", "withdrawPercentageFee": "0", "contractAddress": "",
                 "safeConfirmNumber": "12"}]},
            {"name": "BTC", "coin": "BTC", "remainAmount": "150", "chains": [
                {"chainType": "BTC", "confirmation": "1", "withdrawFee": "0.0002", "depositMin": "0",
                 "withdrawMin": "0.001", "chain": "BTC", "chainDeposit": "1", "chainWithdraw": "1",
                 "minAccuracy": "8", "withdrawPercentageFee": "0", "contractAddress": "",
                 "safeConfirmNumber": "1"}]}
        ]})),
        ("GET", "/v5/account/wallet-balance") => ok(json!({"list": [{
            "accountType": "UNIFIED", "totalEquity": "1000", "totalWalletBalance": "1000",
            "coin": [{"coin": "USDT", "walletBalance": "1000", "equity": "1000", "locked": "0",
                      "usdValue": "1000"}]
        }]})),
        ("POST", "/v5/order/create") => {
            let id = state.next_order.fetch_add(1, Ordering::Relaxed).to_string();
            let link = body["orderLinkId"].as_str().unwrap_or_default().to_owned();
            let now = super::now_ms().to_string();
            let order = json!({
                "venue": "bybit", "orderId": id, "orderLinkId": link, "symbol": body["symbol"],
                "category": body["category"], "price": body["price"].as_str().unwrap_or("0"),
                "qty": body["qty"], "side": body["side"], "orderStatus": "New",
                "orderType": body["orderType"], "timeInForce": body["timeInForce"].as_str().unwrap_or("GTC"),
                "avgPrice": "0", "leavesQty": body["qty"], "cumExecQty": "0", "cumExecValue": "0",
                "cumExecFee": "0", "createdTime": now, "updatedTime": now, "reduceOnly": false,
                "positionIdx": 0, "isLeverage": body["isLeverage"].as_i64().unwrap_or(0).to_string()
            });
            state.open_orders.lock().expect("orders").push(order);
            ok(json!({"orderId": id, "orderLinkId": link}))
        }
        ("POST", "/v5/order/cancel") => {
            let id = param("orderId");
            let mut orders = state.open_orders.lock().expect("orders");
            match orders
                .iter()
                .position(|o| o["venue"] == "bybit" && o["orderId"] == id.as_str())
            {
                Some(index) => {
                    let order = orders.remove(index);
                    ok(json!({"orderId": order["orderId"], "orderLinkId": order["orderLinkId"]}))
                }
                None => fail(110001, "Order does not exist."),
            }
        }
        ("POST", "/v5/order/cancel-all") => {
            let symbol = param("symbol");
            let mut orders = state.open_orders.lock().expect("orders");
            let (gone, kept): (Vec<Value>, Vec<Value>) = orders
                .drain(..)
                .partition(|o| o["venue"] == "bybit" && o["symbol"] == symbol.as_str());
            *orders = kept;
            let list: Vec<Value> = gone
                .iter()
                .map(|o| json!({"orderId": o["orderId"], "orderLinkId": o["orderLinkId"]}))
                .collect();
            ok(json!({"list": list, "success": "1"}))
        }
        ("GET", "/v5/order/realtime") => {
            let symbol = query.get("symbol").cloned();
            let category = param("category");
            let orders = state.open_orders.lock().expect("orders");
            let list: Vec<&Value> = orders
                .iter()
                .filter(|o| o["venue"] == "bybit" && o["category"] == category.as_str())
                .filter(|o| symbol.as_ref().is_none_or(|s| o["symbol"] == s.as_str()))
                .collect();
            ok(json!({"category": category, "nextPageCursor": "", "list": list}))
        }
        _ => fail(10017, "mock: route not found"),
    }
}

fn instruments(category: &str, status: &str) -> Vec<u8> {
    let list = match (category, status) {
        (_, "PreLaunch") => json!([]),
        ("spot", _) => json!(["BTCUSDT", "ETHUSDT", "DMGUSDT"]
            .iter()
            .map(|s| json!({
                "symbol": s, "baseCoin": &s[..s.len() - 4], "quoteCoin": "USDT", "status": "Trading",
                "marginTrading": "utaOnly", "innovation": "0",
                "lotSizeFilter": {"basePrecision": "0.000001", "quotePrecision": "0.00000001",
                    "minOrderQty": "0.000048", "maxOrderQty": "71.73956243", "minOrderAmt": "1", "maxOrderAmt": "2000000"},
                "priceFilter": {"tickSize": "0.01"}
            }))
            .collect::<Vec<_>>()),
        ("linear", _) => json!([{
            "symbol": "BTCUSDT", "contractType": "LinearPerpetual", "status": "Trading", "baseCoin": "BTC",
            "quoteCoin": "USDT", "settleCoin": "USDT", "launchTime": "1585526400000", "deliveryTime": "0",
            "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00", "leverageStep": "0.01"},
            "priceFilter": {"minPrice": "0.10", "maxPrice": "1999999.80", "tickSize": "0.10"},
            "lotSizeFilter": {"maxOrderQty": "1190.000", "minOrderQty": "0.001", "qtyStep": "0.001", "minNotionalValue": "5"}
        }]),
        _ => json!([]),
    };
    ok(json!({"category": category, "nextPageCursor": "", "list": list}))
}

/// Bybit's checks for a signed request; `None` when it passes.
fn verify(state: &State, request: &mut Recorded) -> Option<Vec<u8>> {
    request.signature_ok = Some(false);
    let header = |name: &str| request.header(name).map(str::to_owned);
    let (Some(key), Some(timestamp), Some(sign)) = (
        header("x-bapi-api-key"),
        header("x-bapi-timestamp"),
        header("x-bapi-sign"),
    ) else {
        return Some(fail(
            10003,
            "API key is invalid: missing X-BAPI-API-KEY, X-BAPI-TIMESTAMP or X-BAPI-SIGN.",
        ));
    };
    let window = header("x-bapi-recv-window").unwrap_or_else(|| "5000".to_owned());
    let secret = if key == CANARY_API_KEY {
        Some(CANARY_SECRET.to_owned())
    } else {
        state.keys.lock().expect("keys").get(&key).cloned()
    };
    let Some(secret) = secret else {
        return Some(fail(10003, "API key is invalid."));
    };
    let payload = if request.method == "GET" {
        &request.query
    } else {
        &request.body
    };
    let expected = hmac_sha256_hex(
        secret.as_bytes(),
        format!("{timestamp}{key}{window}{payload}").as_bytes(),
    );
    if expected != sign {
        return Some(fail(10004, "error sign! origin_string[...]"));
    }
    request.signature_ok = Some(true);
    let (Ok(timestamp), Ok(window)) = (timestamp.parse::<u64>(), window.parse::<u64>()) else {
        return Some(fail(
            10002,
            "invalid request, please check your server timestamp or recv_window param",
        ));
    };
    let server = state.now_ms();
    if timestamp >= server + 1000 || server.saturating_sub(timestamp) > window {
        return Some(fail(
            10002,
            "invalid request, please check your server timestamp or recv_window param",
        ));
    }
    None
}
