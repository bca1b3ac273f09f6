//! The mock's Coinbase Advanced Trade: public market endpoints answered without auth,
//! every other request checked as Coinbase does (a CDP JWT in `Authorization:
//! Bearer`, ES256 over exactly the bytes received with the canary key, `kid` = `sub`
//! = the canary key name, `iss` "cdp", a 120 s lifetime around the mock's clock, and
//! `uri` = "METHOD api.coinbase.com/path" of this very request), then answered with
//! the JSON shapes the official SDK and ccxt read.

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

/// Coinbase's check of the JWT; `Err` with the response when it fails.
fn verify(state: &State, request: &Recorded) -> Result<(), String> {
    let jwt = request
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or("no bearer JWT")?;
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
    let uri = format!("{} api.coinbase.com{}", request.method, request.path);
    if claims["sub"] != CANARY_KEY_NAME || claims["iss"] != "cdp" || claims["uri"] != uri.as_str() {
        return Err(format!("bad claims {claims}"));
    }
    let nbf = claims["nbf"].as_u64().ok_or("no nbf")?;
    let exp = claims["exp"].as_u64().ok_or("no exp")?;
    let now = state.now_ms() / 1000;
    if exp != nbf + 120 || nbf > now + 30 || exp <= now {
        return Err("outside the JWT's lifetime".into());
    }
    Ok(())
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
            state.open_orders.lock().expect("orders").push(order);
            json!({
                "success": true,
                "success_response": {"order_id": id, "product_id": body["product_id"], "side": body["side"], "client_order_id": body["client_order_id"]},
                "order_configuration": body["order_configuration"]
            })
        }
        ("POST", "/orders/batch_cancel") => {
            let mut orders = state.open_orders.lock().expect("orders");
            let results: Vec<Value> = body["order_ids"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|id| {
                    let found = orders.iter().position(|o| o["order_id"] == *id);
                    if let Some(index) = found {
                        orders.remove(index);
                    }
                    json!({"success": found.is_some(), "failure_reason": if found.is_some() { "UNKNOWN_CANCEL_FAILURE_REASON" } else { "UNKNOWN_CANCEL_ORDER" }, "order_id": id})
                })
                .collect();
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
