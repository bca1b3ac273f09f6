//! The mock's Coinbase Advanced Trade: public market endpoints answered without auth,
//! every other request checked as Coinbase does (a CDP JWT in `Authorization:
//! Bearer`, ES256 over exactly the bytes received with the canary key, `kid` = `sub`
//! = the canary key name, `iss` "cdp" or ccxt's "coinbase-cloud" with its audience, a
//! 120 s lifetime around the mock's clock, and `uri` = "METHOD host/path" of this very
//! request), then answered with the JSON shapes the official SDK and ccxt read.
//! Orders placed, cancelled and filled here are sent to the user channel of the
//! mock's Coinbase WebSocket (`coinbase_ws.rs`) as `update` events.

use std::sync::atomic::Ordering;

use base64::Engine as _;
use serde_json::{Value, json};

use super::{Behaviour, Recorded, State, http};
use crate::venues::coinbase::{CANARY_KEY_NAME, CANARY_PEM};

const PREFIX: &str = "/api/v3/brokerage";

fn error(status: u16, code: &str, message: &str) -> Vec<u8> {
    http(
        status,
        "Error",
        &[],
        &json!({"error": code, "error_details": message, "message": message}).to_string(),
    )
}

/// The issuers and audiences Coinbase takes, as pairs: the official SDKs' (`iss`
/// "cdp", no `aud`, or `cdp_service` as newer SDKs write it) and ccxt's (`iss`
/// "coinbase-cloud", `aud` `["retail_rest_api_proxy"]`), which Coinbase still takes.
const FORMS: &[(&str, Option<&str>)] = &[
    ("cdp", None),
    ("cdp", Some("cdp_service")),
    ("coinbase-cloud", Some("retail_rest_api_proxy")),
];

/// Coinbase's check of a REST request's JWT; `Err` with the reason when it fails.
/// The `uri` claim names the request: its method, the host it was addressed to and
/// its path. Clients talking to Coinbase address `api.coinbase.com` (and keyward signs
/// that name); a client pointed at the mock itself signs the `Host` it addressed.
fn verify(state: &State, request: &Recorded) -> Result<(), String> {
    let jwt = request
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or("no bearer JWT")?;
    let claims = verify_jwt(state, jwt)?;
    let addressed = |host: &str| format!("{} {host}{}", request.method, request.path);
    let named = claims["uri"]
        .as_str()
        .or_else(|| claims["uris"].get(0).and_then(Value::as_str));
    let host = request.header("host").filter(|host| !host.is_empty());
    let hosts = std::iter::once("api.coinbase.com").chain(host);
    if !named.is_some_and(|uri| hosts.into_iter().any(|host| addressed(host) == uri)) {
        return Err(format!("bad uri in claims {claims}"));
    }
    Ok(())
}

/// What every Coinbase JWT is checked for, REST and WebSocket alike (the WebSocket's
/// names no request, so `uri` is the caller's to check): ES256 over exactly the bytes
/// received with the canary key, `kid` = `sub` = the canary key name, a nonce, one of
/// the [`FORMS`], and a 120 s lifetime around the mock's clock. The claims, or the
/// reason it fails.
pub(super) fn verify_jwt(state: &State, jwt: &str) -> Result<Value, String> {
    let (signing_input, signature) = jwt.rsplit_once('.').ok_or("not a JWT")?;
    let (header, claims) = signing_input.split_once('.').ok_or("not a JWT")?;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let decode = |part: &str| -> Result<Value, String> {
        let bytes = b64.decode(part).map_err(|e| e.to_string())?;
        serde_json::from_slice(&bytes).map_err(|e| e.to_string())
    };
    let header = decode(header)?;
    let claims = decode(claims)?;
    if header["alg"] != "ES256" || header["kid"] != CANARY_KEY_NAME || header["typ"] != "JWT" {
        return Err(format!("bad header {header}"));
    }
    if header["nonce"].as_str().is_none_or(str::is_empty) {
        return Err("no nonce".into());
    }
    let credential = keyward::credential::Credential::new(
        CANARY_KEY_NAME,
        keyward::credential::KeyKind::EcP256,
        CANARY_PEM.as_bytes(),
    )
    .map_err(|e| e.to_string())?;
    let public = keyward::credential::ec_public_key(&credential).ok_or("no public key")?;
    let signature = b64.decode(signature).map_err(|e| e.to_string())?;
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, &public)
        .verify(signing_input.as_bytes(), &signature)
        .map_err(|_| "signature does not verify")?;
    let audience = match &claims["aud"] {
        Value::Null => Some(None),
        Value::Array(items) if items.len() == 1 => items[0].as_str().map(Some),
        _ => None,
    };
    let form = audience.map(|aud| (claims["iss"].as_str().unwrap_or_default(), aud));
    if claims["sub"] != CANARY_KEY_NAME || !form.is_some_and(|form| FORMS.contains(&form)) {
        return Err(format!("bad claims {claims}"));
    }
    let nbf = claims["nbf"].as_u64().ok_or("no nbf")?;
    let exp = claims["exp"].as_u64().ok_or("no exp")?;
    let now = state.now_ms() / 1000;
    if exp != nbf + 120 || nbf > now + 30 || exp <= now {
        return Err("outside the JWT's lifetime".into());
    }
    Ok(claims)
}

/// The Coinbase App's v2 reads (currencies, exchange rates, time; the wallet list,
/// signed), as ccxt loads them; any other v2 path is an unknown resource here.
pub(super) fn respond_app(state: &State, request: &mut Recorded) -> Vec<u8> {
    if request.path == "/v2/accounts" {
        let verdict = verify(state, request);
        request.signature_ok = Some(verdict.is_ok());
        if let Err(why) = verdict {
            return http(401, "Unauthorized", &[], &format!("Unauthorized: {why}\n"));
        }
    }
    let answer = match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/v2/accounts") => json!({"pagination": {"next_uri": null}, "data": [
            {"id": "acc-btc", "name": "BTC Wallet", "primary": true, "type": "wallet",
             "currency": {"code": "BTC", "name": "Bitcoin", "exponent": 8, "type": "crypto"},
             "balance": {"amount": "0.5", "currency": "BTC"},
             "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z",
             "resource": "account", "resource_path": "/v2/accounts/acc-btc"},
            {"id": "acc-usd", "name": "USD Wallet", "primary": false, "type": "fiat",
             "currency": {"code": "USD", "name": "US Dollar", "exponent": 2, "type": "fiat"},
             "balance": {"amount": "10000", "currency": "USD"},
             "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z",
             "resource": "account", "resource_path": "/v2/accounts/acc-usd"},
        ]}),
        ("GET", "/v2/currencies") => json!({"data": [
            {"id": "USD", "name": "US Dollar", "min_size": "0.01"},
        ]}),
        ("GET", "/v2/currencies/crypto") => json!({"data": [
            {"code": "BTC", "name": "Bitcoin", "color": "#F7931A", "sort_index": 100,
             "exponent": 8, "type": "crypto", "address_regex": "^([13][a-km-zA-HJ-NP-Z1-9]{25,34})$",
             "asset_id": "5b71fc48-3dd3-540c-809b-f8c94d0e68b5"},
            {"code": "ETH", "name": "Ethereum", "color": "#627EEA", "sort_index": 102,
             "exponent": 8, "type": "crypto", "address_regex": "^(?:0x)?[0-9a-fA-F]{40}$",
             "asset_id": "d85dce9b-5b73-5c3c-8978-522ce1d1c1b4"},
            {"code": "DOGE", "name": "Dogecoin", "color": "#BA9F33", "sort_index": 120,
             "exponent": 8, "type": "crypto", "address_regex": "^D[a-km-zA-HJ-NP-Z1-9]{25,34}$",
             "asset_id": "7fe9a19c-0a8e-5e56-8fd7-bd0fcd4d5b4e"},
        ]}),
        ("GET", "/v2/exchange-rates") => json!({"data": {"currency": "USD", "rates": {
            "BTC": "0.0000166", "ETH": "0.00033", "DOGE": "10", "USD": "1"}}}),
        ("GET", "/v2/time") => {
            let seconds = state.now_ms() / 1000;
            json!({"data": {"iso": "2026-01-01T00:00:00Z", "epoch": seconds}})
        }
        _ => {
            return http(
                404,
                "Not Found",
                &[],
                r#"{"errors":[{"id":"not_found","message":"Not found"}]}"#,
            );
        }
    };
    http(200, "OK", &[], &answer.to_string())
}

pub(super) fn respond(state: &State, request: &mut Recorded, _behaviour: Behaviour) -> Vec<u8> {
    let sub = request
        .path
        .strip_prefix(PREFIX)
        .unwrap_or_default()
        .to_owned();
    let public = sub == "/time" || sub.starts_with("/market/");
    if !public {
        let verdict = verify(state, request);
        request.signature_ok = Some(verdict.is_ok());
        if let Err(why) = verdict {
            return http(401, "Unauthorized", &[], &format!("Unauthorized: {why}\n"));
        }
    }
    let body: Value = serde_json::from_str(&request.body).unwrap_or(Value::Null);
    let answer = match (request.method.as_str(), sub.as_str()) {
        ("GET", "/time") => {
            let ms = state.now_ms();
            json!({"iso": "2026-01-01T00:00:00Z", "epochSeconds": (ms / 1000).to_string(), "epochMillis": ms.to_string()})
        }
        ("GET", "/market/products" | "/products") => {
            let future = request.query.contains("product_type=FUTURE");
            let products: Vec<Value> = if future {
                Vec::new()
            } else {
                vec![
                    product("BTC-USD", "60000"),
                    product("ETH-USD", "3000"),
                    product("DOGE-USD", "0.1"),
                ]
            };
            json!({"products": products, "num_products": products.len()})
        }
        ("GET", path)
            if path.starts_with("/products/") || path.starts_with("/market/products/") =>
        {
            let id = path.rsplit('/').next().unwrap_or_default();
            product(id, "60000")
        }
        ("GET", "/best_bid_ask") => {
            let quotes = state.quotes.lock().expect("quotes");
            let books: Vec<Value> = request
                .query
                .split('&')
                .filter_map(|p| p.strip_prefix("product_ids="))
                .map(|id| {
                    let (bid, ask) = quotes
                        .get(id)
                        .cloned()
                        .unwrap_or_else(|| ("59990".into(), "60010".into()));
                    json!({"product_id": id, "bids": [{"price": bid, "size": "1"}], "asks": [{"price": ask, "size": "1"}], "time": "2026-01-01T00:00:00Z"})
                })
                .collect();
            json!({"pricebooks": books})
        }
        ("GET", "/transaction_summary") => json!({
            "total_volume": 0, "total_fees": 0,
            "fee_tier": {"pricing_tier": "Advanced 1", "usd_from": "0", "usd_to": "1000", "taker_fee_rate": "0.012", "maker_fee_rate": "0.006"},
            "margin_rate": null, "goods_and_services_tax": null, "advanced_trade_only_volume": 0,
            "advanced_trade_only_fees": 0, "coinbase_pro_volume": 0, "coinbase_pro_fees": 0
        }),
        ("GET", "/accounts") => json!({
            "accounts": [
                account("acc-btc", "BTC", "0.5", "ACCOUNT_TYPE_CRYPTO"),
                account("acc-usd", "USD", "1000", "ACCOUNT_TYPE_FIAT"),
            ],
            "has_next": false, "cursor": "", "size": 2
        }),
        ("POST", "/orders") => {
            let id = format!("mock-{}", state.next_order.fetch_add(1, Ordering::Relaxed));
            let order = json!({
                "order_id": id, "product_id": body["product_id"], "side": body["side"],
                "client_order_id": body["client_order_id"], "order_configuration": body["order_configuration"],
                "status": "OPEN", "time_in_force": "GOOD_UNTIL_CANCELLED", "created_time": "2026-01-01T00:00:00.000000Z",
                "completion_percentage": "0", "filled_size": "0", "average_filled_price": "0", "number_of_fills": "0",
                "filled_value": "0", "pending_cancel": false, "size_in_quote": false, "total_fees": "0",
                "order_type": "LIMIT", "product_type": "SPOT"
            });
            state
                .open_orders
                .lock()
                .expect("orders")
                .push(order.clone());
            publish(state, &[user_order(&order, "OPEN")]);
            json!({
                "success": true,
                "success_response": {"order_id": id, "product_id": body["product_id"], "side": body["side"], "client_order_id": body["client_order_id"]},
                "order_configuration": body["order_configuration"]
            })
        }
        ("POST", "/orders/batch_cancel") => {
            let mut cancelled = Vec::new();
            let results: Vec<Value> = {
                let mut orders = state.open_orders.lock().expect("orders");
                body["order_ids"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|id| {
                        let found = orders
                            .iter()
                            .position(|o| is_coinbase(o) && o["order_id"] == *id);
                        if let Some(index) = found {
                            cancelled.push(user_order(&orders.remove(index), "CANCELLED"));
                        }
                        json!({"success": found.is_some(), "failure_reason": if found.is_some() { "UNKNOWN_CANCEL_FAILURE_REASON" } else { "UNKNOWN_CANCEL_ORDER" }, "order_id": id})
                    })
                    .collect()
            };
            if !cancelled.is_empty() {
                publish(state, &cancelled);
            }
            json!({"results": results})
        }
        ("GET", "/orders/historical/batch") => {
            let orders = state.open_orders.lock().expect("orders");
            let list: Vec<&Value> = orders
                .iter()
                .filter(|o| o["product_id"].as_str().is_some())
                .collect();
            json!({"orders": list, "sequence": "0", "has_next": false, "cursor": ""})
        }
        ("GET", "/orders/historical/fills") => json!({"fills": [], "cursor": ""}),
        ("GET", path) if path.starts_with("/orders/historical/") => {
            let id = path.rsplit('/').next().unwrap_or_default();
            let orders = state.open_orders.lock().expect("orders");
            match orders.iter().find(|o| o["order_id"] == id) {
                Some(order) => json!({"order": order}),
                None => return error(404, "NOT_FOUND", "order not found"),
            }
        }
        _ => return error(404, "NOT_FOUND", "mock: unknown endpoint"),
    };
    http(200, "OK", &[], &answer.to_string())
}

fn product(id: &str, price: &str) -> Value {
    let (base, quote) = id.split_once('-').unwrap_or((id, "USD"));
    json!({
        "product_id": id, "price": price, "base_increment": "0.00000001", "quote_increment": "0.01",
        "price_increment": "0.01", "quote_min_size": "1", "quote_max_size": "150000000",
        "base_min_size": "0.00000001", "base_max_size": "3400", "status": "online",
        "trading_disabled": false, "is_disabled": false, "cancel_only": false, "limit_only": false,
        "post_only": false, "auction_mode": false, "product_type": "SPOT",
        "base_currency_id": base, "quote_currency_id": quote, "base_display_symbol": base,
        "quote_display_symbol": quote, "base_name": base, "quote_name": quote
    })
}

fn account(uuid: &str, currency: &str, available: &str, kind: &str) -> Value {
    json!({
        "uuid": uuid, "name": format!("{currency} Wallet"), "currency": currency,
        "available_balance": {"value": available, "currency": currency}, "default": true,
        "active": true, "type": kind, "ready": true, "hold": {"value": "0", "currency": currency}
    })
}

/// Whether an order in the mock's shared book is a Coinbase order.
pub(super) fn is_coinbase(order: &Value) -> bool {
    order.get("order_configuration").is_some()
}

/// The size and limit price an order's configuration gives (`{"limit_limit_gtc":
/// {"base_size", "limit_price", ...}}`), and the order type as the user channel
/// writes it ("Limit", "Market", "Stop Limit").
fn configured(order: &Value) -> (String, String, &'static str) {
    let Some((kind, terms)) = order["order_configuration"]
        .as_object()
        .and_then(|configuration| configuration.iter().next())
    else {
        return (String::new(), String::new(), "Limit");
    };
    let text = |name: &str| terms[name].as_str().unwrap_or_default().to_owned();
    let size = if terms.get("base_size").is_some() {
        text("base_size")
    } else {
        text("quote_size")
    };
    let kind = if kind.starts_with("market") {
        "Market"
    } else if kind.starts_with("stop_limit") {
        "Stop Limit"
    } else {
        "Limit"
    };
    (size, text("limit_price"), kind)
}

/// An order of the REST book as the user channel describes it, in `status` (OPEN,
/// CANCELLED or FILLED; a filled order has its whole size filled at its limit price).
pub(super) fn user_order(order: &Value, status: &str) -> Value {
    let (size, price, kind) = configured(order);
    let filled = status == "FILLED";
    let (cumulative, leaves) = if filled {
        (size.as_str(), "0")
    } else {
        ("0", size.as_str())
    };
    // The value filled, in the quote currency: size times price, both in 10^-8 units.
    let value = match (super::spot::units(&size), super::spot::units(&price)) {
        (Some(size), Some(price)) if filled => super::spot::decimal(size * price / 100_000_000),
        _ => "0".to_owned(),
    };
    let none = "0001-01-01T00:00:00Z";
    json!({
        "order_id": order["order_id"], "client_order_id": order["client_order_id"],
        "product_id": order["product_id"], "product_type": "SPOT", "status": status,
        "order_side": order["side"], "order_type": kind, "limit_price": price, "stop_price": "",
        "cumulative_quantity": cumulative, "leaves_quantity": leaves,
        "avg_price": if filled { price.as_str() } else { "0" },
        "filled_value": value, "number_of_fills": if filled { "1" } else { "0" },
        "completion_percentage": if filled { "100" } else { "0" },
        "total_fees": "0", "total_value_after_fees": "0", "outstanding_hold_amount": "0",
        "time_in_force": "GOOD_UNTIL_CANCELLED", "post_only": "false",
        "creation_time": order["created_time"], "start_time": none, "end_time": none,
        "cancel_reason": "", "reject_reason": "", "retail_portfolio_id": "",
        "trigger_status": "INVALID_ORDER_TYPE", "contract_expiry_type": "UNKNOWN_CONTRACT_EXPIRY_TYPE",
        "risk_managed_by": "UNKNOWN_RISK_MANAGEMENT_TYPE"
    })
}

/// Sends a user-channel `update` event with `orders` (user-channel order objects) to
/// the WebSocket connections subscribed to the user channel.
pub(super) fn publish(state: &State, orders: &[Value]) {
    let _ = state
        .coinbase_events
        .send(json!({"type": "update", "orders": orders}));
}

/// Fills an order that left the book at its limit price, with its FILLED update.
pub(super) fn fill(state: &State, order: &Value) {
    publish(state, &[user_order(order, "FILLED")]);
}
