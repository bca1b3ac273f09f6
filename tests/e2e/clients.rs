//! Real client libraries from PyPI (ccxt for spot and USDⓈ-M, python-binance,
//! binance-sdk-spot) trading through keyward against the mock exchange, changed only
//! in base URL, API key (the keyward token) and trusted CA: ccxt as shipped, nothing in
//! its options, loading every product family's markets tokenless and its currencies and
//! margin pairs from the reviewed `/sapi/` reads. Each loads markets, fetches the
//! balance, places a limit order, cancels it and lists open orders, with every signed
//! request verified by the mock; an order on a pair the bot may not trade and a
//! withdrawal are refused and the library surfaces keyward's message.

use keyward_tests::launch::Keyward;
use keyward_tests::mock::Mock;
use keyward_tests::{
    FixturePolicy,
    python::{self, run_client},
};
use keyward_venues::binance::SERVED_SAPI;
use serde_json::Value;

async fn drive(client: &'static str, keyward: &Keyward, token: String) -> Value {
    let ca = keyward.running.ca_path.clone();
    let base = format!("https://127.0.0.1:{}", keyward.port());
    let args = vec![client.to_owned(), base, token, ca.display().to_string()];
    let env = vec![("KEYWARD_SLOW_TOKEN", keyward.tokens.slow.clone().into())];
    run_client("binance_clients.py", args, env).await
}

fn assert_refused(client: &str, what: &str, result: &Value, classes: &[&str], reason: &str) {
    python::assert_refused(client, what, result, classes, &format!("keyward: {reason}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_binance_clients_trade_through_keyward_unmodified() {
    let mock = Mock::start().await;
    let keyward = Keyward::launch(
        FixturePolicy::Clients,
        (mock.url(), mock.ca.clone()),
        "",
        "",
        "10/10s",
    )
    .await;
    let spot_token = keyward.tokens.bot.clone();
    let futures_token = keyward.tokens.bot_b.clone();
    let runs = [
        (
            "ccxt-spot",
            spot_token.clone(),
            "BTC/USDT",
            Some(&["PermissionDenied"][..]),
        ),
        (
            "python-binance",
            spot_token.clone(),
            "BTCUSDT",
            Some(&["BinanceAPIException"][..]),
        ),
        ("binance-sdk-spot", spot_token, "BTCUSDT", None),
        (
            "ccxt-usdm",
            futures_token,
            "BTC/USDT:USDT",
            Some(&["PermissionDenied"][..]),
        ),
    ];
    for (client, token, market, withdraw_classes) in runs {
        mock.clear();
        let out = drive(client, &keyward, token).await;
        let records = mock.records();
        let reached = |method: &str, path: &str| {
            records
                .iter()
                .any(|r| r.method == method && r.path == path && r.signature_ok != Some(false))
        };
        if client.starts_with("ccxt") {
            // ccxt as shipped: its currencies from the signed coin list, margin pairs on
            // the key alone (spot), and every product family's markets, tokenless.
            assert!(
                reached("GET", "/sapi/v1/capital/config/getall"),
                "{client}: coin list"
            );
            assert!(reached("GET", "/sapi/v1/margin/allPairs"), "{client}");
            // On the key alone, as Binance serves it: keyward does not sign it (the
            // mock would take a valid signature, as Binance does).
            assert!(
                records
                    .iter()
                    .filter(|r| r.path == "/sapi/v1/margin/allPairs")
                    .all(|r| r.signature_ok.is_none() && !r.query.contains("signature=")),
                "{client}: margin pairs signed"
            );
            assert!(reached("GET", "/fapi/v1/exchangeInfo"), "{client}");
        }
        if client == "ccxt-spot" {
            assert!(reached("GET", "/dapi/v1/exchangeInfo"), "{client}");
            assert!(
                reached("GET", "/sapi/v1/margin/isolated/allPairs"),
                "{client}"
            );
            let currencies = out["currencies"].to_string();
            assert!(
                currencies.contains("\"USDT\"") && currencies.contains("\"BTC\""),
                "{client}: currencies {currencies}"
            );
        }
        let markets: Vec<&str> = out["markets"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(markets.contains(&market), "{client}: markets {markets:?}");
        let balance = out["balance_usdt"].to_string();
        assert!(balance.contains("1000"), "{client}: balance {balance}");
        let order = out["order_status"].as_str().unwrap().to_ascii_lowercase();
        assert!(order == "open" || order == "new", "{client}: order {order}");
        let cancel = out["cancel_status"].as_str().unwrap().to_ascii_lowercase();
        assert!(
            cancel == "canceled" || cancel == "cancelled",
            "{client}: cancel {cancel}"
        );
        assert_eq!(out["open_orders"], 0, "{client}");
        let pair_classes: &[&str] = match client {
            "ccxt-spot" | "ccxt-usdm" => &["PermissionDenied"],
            "python-binance" => &["BinanceAPIException"],
            _ => &["ForbiddenError"],
        };
        assert_refused(
            client,
            "an order on a pair the bot may not trade",
            &out["dmg"],
            pair_classes,
            "symbol_not_allowed",
        );
        if let Some(classes) = withdraw_classes {
            assert_refused(
                client,
                "a withdrawal",
                &out["withdraw"],
                classes,
                "money_movement_denied",
            );
        }
        let signed: Vec<_> = records
            .iter()
            .filter(|r| r.signature_ok.is_some())
            .collect();
        assert!(
            signed.len() >= 4,
            "{client}: {} signed requests reached the mock",
            signed.len()
        );
        for record in &records {
            assert_ne!(
                record.signature_ok,
                Some(false),
                "{client}: {} {} failed verification",
                record.method,
                record.path
            );
            // Under /sapi/ only the reviewed reads reach the exchange.
            assert!(
                !record.path.starts_with("/sapi/")
                    || record.method == "GET" && SERVED_SAPI.contains(&record.path.as_str()),
                "{client}: {} {} reached the exchange",
                record.method,
                record.path
            );
            let symbol = record.params().get("symbol").cloned().unwrap_or_default();
            assert!(
                symbol != "DMGUSDT" && !(client == "ccxt-usdm" && symbol == "ETHUSDT"),
                "{client}: {symbol} reached the exchange"
            );
        }
    }
    keyward.running.shutdown().await;
}
