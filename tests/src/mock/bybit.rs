//! The mock's Bybit v5: checks `X-BAPI-API-KEY` against the keys it knows, the
//! HMAC-SHA256 signature over timestamp + key + recv window + exactly the query or
//! body it received, and Bybit's timestamp rule; answers the endpoints pybit and
//! ccxt use with Bybit's envelope (`retCode` an integer on every answer). It owns
//! the Bybit book too: orders created, amended, cancelled and filled over REST or
//! over order entry (`bybit_ws.rs`) change the same open orders and send the same
//! private-stream events (`order`, `execution`, `wallet`).

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
        ("GET", "/v5/user/query-api") => query_api(request),
        ("POST", "/v5/order/create") => match create(state, &body, false) {
            Ok(order) => {
                ok(json!({"orderId": order["orderId"], "orderLinkId": order["orderLinkId"]}))
            }
            Err((code, message)) => fail(code, &message),
        },
        ("POST", "/v5/order/amend") => match amend(state, &body) {
            Ok(order) => {
                ok(json!({"orderId": order["orderId"], "orderLinkId": order["orderLinkId"]}))
            }
            Err((code, message)) => fail(code, &message),
        },
        ("POST", "/v5/order/cancel") => match cancel(state, &body) {
            Ok(order) => {
                ok(json!({"orderId": order["orderId"], "orderLinkId": order["orderLinkId"]}))
            }
            Err((code, message)) => fail(code, &message),
        },
        ("POST", "/v5/order/create-batch" | "/v5/order/amend-batch" | "/v5/order/cancel-batch") => {
            let op = request.path.trim_start_matches("/v5/order/");
            let (list, codes) = batch(state, op, &body, false);
            envelope(0, "OK", json!({"list": list}), json!({"list": codes}))
        }
        ("POST", "/v5/order/cancel-all") => {
            let symbol = param("symbol");
            let gone: Vec<Value> = {
                let mut orders = state.open_orders.lock().expect("orders");
                let (gone, kept): (Vec<Value>, Vec<Value>) = orders
                    .drain(..)
                    .partition(|o| is_bybit(o) && o["symbol"] == symbol.as_str());
                *orders = kept;
                gone
            };
            for order in &gone {
                publish_order(state, order, "Cancelled", "CancelByUser");
            }
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
                .filter(|o| is_bybit(o) && o["category"] == category.as_str())
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

/// The HMAC secret of an API key the exchange knows: the Bybit canary's, or one a
/// test made it accept ([`super::Mock::accept_key`]).
pub(super) fn secret_of(state: &State, key: &str) -> Option<String> {
    if key == CANARY_API_KEY {
        return Some(CANARY_SECRET.to_owned());
    }
    state.keys.lock().expect("keys").get(key).cloned()
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
    let Some(secret) = secret_of(state, &key) else {
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

/// `GET /v5/user/query-api`: the key's own description, as clients read it to learn
/// the account type (ccxt reads `uta` before its first private WebSocket): a
/// unified trading account's key that trades and reads, never its secret.
fn query_api(request: &Recorded) -> Vec<u8> {
    let key = request.header("x-bapi-api-key").unwrap_or_default();
    ok(json!({
        "id": "1", "note": "mock", "apiKey": key, "readOnly": 0, "secret": "",
        "permissions": {
            "ContractTrade": ["Order", "Position"], "Spot": ["SpotTrade"], "Wallet": [],
            "Options": [], "Derivatives": [], "CopyTrading": [], "BlockTrade": [],
            "Exchange": [], "NFT": [], "Affiliate": [], "Earn": []
        },
        "ips": ["*"], "type": 1, "deadlineDay": 90, "expiredAt": "", "createdAt": "",
        "unified": 0, "uta": 1, "userID": USER_ID, "inviterID": 0, "vipLevel": "No VIP",
        "mktMakerLevel": "0", "affiliateID": 0, "rsaPublicKey": "", "isMaster": true,
        "parentUid": "0", "kycLevel": "LEVEL_DEFAULT", "kycRegion": ""
    }))
}

/// The mock account's user id.
const USER_ID: u64 = 100_000_001;

/// A refusal: Bybit's `retCode` and `retMsg`.
pub(super) type Refusal = (i64, String);

fn refusal(code: i64, message: &str) -> Refusal {
    (code, message.to_owned())
}

/// Whether an order in the mock's shared book is a Bybit order.
pub(super) fn is_bybit(order: &Value) -> bool {
    order["venue"] == "bybit"
}

/// What the mock lists: spot BTCUSDT, ETHUSDT and DMGUSDT, linear BTCUSDT.
fn listed(category: &str, symbol: &str) -> bool {
    match category {
        "spot" => ["BTCUSDT", "ETHUSDT", "DMGUSDT"].contains(&symbol),
        "linear" => symbol == "BTCUSDT",
        _ => false,
    }
}

/// Bybit's checks of an order's fields, as order entry applies them (`checked`:
/// the WebSocket; the REST handlers have always taken what keyward sends as it is):
/// a category and symbol the mock lists, `Buy` or `Sell`, `Limit` or `Market`, and
/// `qty` (and a limit order's `price`) as decimal strings.
fn check(request: &Value) -> Result<(), Refusal> {
    let text = |name: &str| request[name].as_str().unwrap_or_default();
    if !listed(text("category"), text("symbol")) {
        return Err(refusal(10001, "params error: symbol invalid"));
    }
    if !["Buy", "Sell"].contains(&text("side")) {
        return Err(refusal(10001, "params error: side invalid"));
    }
    if !["Limit", "Market"].contains(&text("orderType")) {
        return Err(refusal(10001, "params error: orderType invalid"));
    }
    let decimal = |name: &str| {
        request[name]
            .as_str()
            .and_then(super::spot::units)
            .is_some()
    };
    if !decimal("qty") {
        return Err(refusal(10001, "params error: qty invalid"));
    }
    if text("orderType") == "Limit" && !decimal("price") {
        return Err(refusal(10001, "params error: price invalid"));
    }
    Ok(())
}

/// Takes a new order (REST `/v5/order/create`, order entry's `order.create`): it
/// rests on the book (the mock never fills on its own) and its `New` order event is
/// sent. The order as the book holds it.
pub(super) fn create(state: &State, request: &Value, checked: bool) -> Result<Value, Refusal> {
    if checked {
        check(request)?;
    }
    if state.market_closed(request["symbol"].as_str().unwrap_or_default()) {
        return Err(refusal(
            170_157,
            "The trading pair is not available for api trading",
        ));
    }
    let id = state.next_order.fetch_add(1, Ordering::Relaxed).to_string();
    let link = request["orderLinkId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let now = super::now_ms().to_string();
    let order = json!({
        "venue": "bybit", "orderId": id, "orderLinkId": link, "symbol": request["symbol"],
        "category": request["category"], "price": request["price"].as_str().unwrap_or("0"),
        "qty": request["qty"], "side": request["side"], "orderStatus": "New",
        "orderType": request["orderType"], "timeInForce": request["timeInForce"].as_str().unwrap_or("GTC"),
        "avgPrice": "0", "leavesQty": request["qty"], "cumExecQty": "0", "cumExecValue": "0",
        "cumExecFee": "0", "createdTime": now, "updatedTime": now, "reduceOnly": false,
        "positionIdx": 0, "isLeverage": request["isLeverage"].as_i64().unwrap_or(0).to_string()
    });
    state
        .open_orders
        .lock()
        .expect("orders")
        .push(order.clone());
    publish_order(state, &order, "New", "UNKNOWN");
    Ok(order)
}

/// Whether `order` is the Bybit order `request` names: by `orderId`, else by
/// `orderLinkId`, on `symbol` when the request gives one.
fn named(order: &Value, request: &Value) -> bool {
    let text = |name: &str| request[name].as_str().unwrap_or_default();
    let by_id = if text("orderId").is_empty() {
        !text("orderLinkId").is_empty() && order["orderLinkId"] == text("orderLinkId")
    } else {
        order["orderId"] == text("orderId")
    };
    is_bybit(order) && by_id && (text("symbol").is_empty() || order["symbol"] == text("symbol"))
}

/// Cancels the open order `request` names, with its `Cancelled` event.
pub(super) fn cancel(state: &State, request: &Value) -> Result<Value, Refusal> {
    let removed = {
        let mut orders = state.open_orders.lock().expect("orders");
        let index = orders.iter().position(|o| named(o, request));
        index.map(|index| orders.remove(index))
    };
    let order = removed.ok_or_else(|| refusal(110_001, "Order does not exist."))?;
    publish_order(state, &order, "Cancelled", "CancelByUser");
    Ok(order)
}

/// Changes the quantity and price of the open order `request` names (`qty`,
/// `price`), with its event.
pub(super) fn amend(state: &State, request: &Value) -> Result<Value, Refusal> {
    let amended = {
        let mut orders = state.open_orders.lock().expect("orders");
        let found = orders.iter_mut().find(|o| named(o, request));
        found.map(|order| {
            for field in ["qty", "price"] {
                if let Some(value) = request[field].as_str() {
                    order[field] = value.into();
                }
            }
            order["leavesQty"] = order["qty"].clone();
            order["updatedTime"] = super::now_ms().to_string().into();
            order.clone()
        })
    };
    let order = amended.ok_or_else(|| refusal(110_001, "Order does not exist."))?;
    publish_order(state, &order, "New", "UNKNOWN");
    Ok(order)
}

/// A batch (`create-batch`, `amend-batch`, `cancel-batch`; REST and order entry
/// alike): `{"category", "request": [...]}`, each element taken on its own. The
/// result's list and `retExtInfo`'s, one element for each order, in order.
pub(super) fn batch(
    state: &State,
    op: &str,
    request: &Value,
    checked: bool,
) -> (Vec<Value>, Vec<Value>) {
    let category = request["category"].clone();
    let items = request["request"].as_array().cloned().unwrap_or_default();
    let mut list = Vec::new();
    let mut codes = Vec::new();
    for mut item in items {
        item["category"] = category.clone();
        let done = match op {
            "create-batch" => create(state, &item, checked),
            "amend-batch" => amend(state, &item),
            _ => cancel(state, &item),
        };
        let (order, code, message) = match done {
            Ok(order) => (order, 0, "OK".to_owned()),
            Err((code, message)) => (item.clone(), code, message),
        };
        let mut element = json!({
            "category": category, "symbol": order["symbol"],
            "orderId": if code == 0 { order["orderId"].clone() } else { "".into() },
            "orderLinkId": order["orderLinkId"].as_str().unwrap_or_default(),
        });
        if op == "create-batch" {
            element["createAt"] = order["createdTime"].as_str().unwrap_or_default().into();
        }
        list.push(element);
        codes.push(json!({"code": code, "msg": message}));
    }
    (list, codes)
}

/// Fills an order that left the book at its price: its `Filled` order event, its
/// `execution` and the account's `wallet`.
pub(super) fn fill(state: &State, order: &Value) {
    let quantity = order["qty"].as_str().unwrap_or("0");
    let price = order["price"].as_str().unwrap_or("0");
    let units = |text: &str| super::spot::units(text).unwrap_or(0);
    let value = super::spot::decimal(units(quantity).saturating_mul(units(price)) / 100_000_000);
    let mut filled = order.clone();
    filled["cumExecQty"] = quantity.into();
    filled["cumExecValue"] = value.clone().into();
    filled["avgPrice"] = price.into();
    filled["leavesQty"] = "0".into();
    filled["updatedTime"] = super::now_ms().to_string().into();
    publish_order(state, &filled, "Filled", "UNKNOWN");
    let trade = state.next_trade.fetch_add(1, Ordering::Relaxed);
    let execution = json!({
        "category": order["category"], "symbol": order["symbol"], "closedSize": "0",
        "execFee": "0", "execId": format!("mock-exec-{trade}"), "execPrice": price,
        "execQty": quantity, "execType": "Trade", "execValue": value, "feeRate": "0",
        "tradeIv": "", "markIv": "", "blockTradeId": "", "markPrice": "", "indexPrice": "",
        "underlyingPrice": "", "leavesQty": "0", "orderId": order["orderId"],
        "orderLinkId": order["orderLinkId"], "orderPrice": price, "orderQty": quantity,
        "orderType": order["orderType"], "stopOrderType": "UNKNOWN", "side": order["side"],
        "execTime": super::now_ms().to_string(), "isLeverage": order["isLeverage"],
        "isMaker": true, "seq": trade, "marketUnit": "", "execPnl": "0",
        "createType": "CreateByUser", "feeCurrency": ""
    });
    publish(state, "execution", execution);
    publish(state, "wallet", wallet());
}

/// The account's wallet as `wallet` events carry it (the mock's balances on Bybit
/// do not move: the same 1000 USDT the REST wallet answers).
fn wallet() -> Value {
    json!({
        "accountIMRate": "0", "accountMMRate": "0", "totalEquity": "1000",
        "totalWalletBalance": "1000", "totalMarginBalance": "1000",
        "totalAvailableBalance": "1000", "totalPerpUPL": "0", "totalInitialMargin": "0",
        "totalMaintenanceMargin": "0", "accountLTV": "0", "accountType": "UNIFIED",
        "coin": [{"coin": "USDT", "equity": "1000", "usdValue": "1000", "walletBalance": "1000",
            "availableToWithdraw": "1000", "availableToBorrow": "", "borrowAmount": "0",
            "accruedInterest": "0", "totalOrderIM": "0", "totalPositionIM": "0",
            "totalPositionMM": "0", "unrealisedPnl": "0", "cumRealisedPnl": "0", "bonus": "0",
            "collateralSwitch": true, "marginCollateral": true, "locked": "0",
            "spotHedgingQty": "0", "spotBorrow": "0"}]
    })
}

/// Sends `order`'s event: the fields Bybit's `order` topic documents, the order's
/// own (its internal venue tag left out) and the rest as Bybit writes them for a
/// plain order.
fn publish_order(state: &State, order: &Value, status: &str, cancel_type: &str) {
    let mut data = json!({
        "blockTradeId": "", "leavesValue": "0", "closedPnl": "0", "feeCurrency": "",
        "stopOrderType": "", "triggerPrice": "", "takeProfit": "", "stopLoss": "",
        "tpLimitPrice": "", "slLimitPrice": "", "tpTriggerBy": "",
        "slTriggerBy": "", "triggerDirection": 0, "triggerBy": "", "lastPriceOnCreated": "",
        "closeOnTrigger": false, "placeType": "", "smpType": "None", "smpGroup": 0,
        "smpOrderId": "", "orderIv": "", "marketUnit": "", "cumFeeDetail": {}, "parentOrderLinkId": "", "ocoTriggerBy": "OcoTriggerByUnknown",
        "slippageToleranceType": "UNKNOWN", "slippageTolerance": "0",
        "rejectReason": "EC_NoError"
    });
    if let (Value::Object(fields), Value::Object(own)) = (&mut data, order) {
        for (name, value) in own.iter().filter(|(name, _)| *name != "venue") {
            fields.insert(name.clone(), value.clone());
        }
    }
    // "Spot does not have" `tpslMode`, and spot and option orders no `createType`
    // (clients tell spot orders apart by it: ccxt reads `tpslMode` as a contract's).
    if order["category"] != "spot" {
        data["tpslMode"] = "".into();
        if order["category"] != "option" {
            data["createType"] = "CreateByUser".into();
        }
    }
    data["orderStatus"] = status.into();
    data["cancelType"] = cancel_type.into();
    publish(state, "order", data);
}

/// Sends one private-stream event (`{"topic", "data": [item]}`) to the `/v5/private`
/// connections; none listening is not an error.
fn publish(state: &State, topic: &str, item: Value) {
    let _ = state
        .bybit_events
        .send(json!({"topic": topic, "data": [item]}));
}
