//! Writes the seed corpora into `corpus/<target>/` (`cargo run --example seeds` from
//! `fuzz/`): every case of `../shared/attacks/corpus.json` as raw HTTP/1 bytes for
//! `http_front` and, in the venue targets' request format, for its venue's parser; the
//! REST signing vectors of `../shared/venues/vectors.json`; typical requests of each
//! venue's clients; one bare request per catalogued endpoint; the example, demo and
//! test-fixture configurations for `config`; and the committed inputs of `regressions/`.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use keyward_venues::{VenueId, route};
use keyward_fuzz::config::FILE_SEPARATOR;
use keyward_fuzz::request;
use keyward_tests::venues::VenueFixture;
use keyward_tests::{FixturePolicy, TempDir, corpus, fixture_tokens};

const JSON: &str = "application/json";
const FORM: &str = "application/x-www-form-urlencoded";

fn main() {
    let fuzz_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let corpus_dir = fuzz_dir.join("corpus");
    let mut written = 0;
    let mut write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = corpus_dir.join(target);
        std::fs::create_dir_all(&dir).expect("corpus directory");
        let name: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("seed file");
        written += 1;
    };
    attack_corpus(&mut write);
    vectors(&mut write);
    typical_requests(&mut write);
    endpoints(&mut write);
    filled_endpoints(&mut write);
    configurations(&fuzz_dir, &mut write);
    regressions(&fuzz_dir.join("regressions"), &mut write);
    println!("{written} seeds under {}", corpus_dir.display());
}

type Write<'a> = dyn FnMut(&str, &str, &[u8]) + 'a;

fn target_of(venue: VenueId) -> String {
    format!("venue_{}", venue.name().replace('-', "_"))
}

/// The venue a corpus case's listener stands for.
fn venue_of(listener: &str) -> Option<VenueId> {
    match listener {
        "binance-spot" => Some(VenueId::BinanceSpot),
        "binance-futures" => Some(VenueId::BinanceUsdm),
        other => VenueId::from_name(other),
    }
}

fn attack_corpus(write: &mut Write<'_>) {
    let tokens = fixture_tokens();
    // A few cases only describe their request (a pattern of many requests, a body to
    // stream); the harness that builds requests refuses those, and so are they here.
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut described = Vec::new();
    for case in keyward_tests::corpus_cases() {
        let id = case["id"].as_str().unwrap_or("case");
        let Ok(request) = std::panic::catch_unwind(|| corpus::request_of(&case, &tokens, None))
        else {
            described.push(id.to_owned());
            continue;
        };
        let raw = request.raw.clone().unwrap_or_else(|| {
            keyward_tests::client::build(
                &request.method,
                &request.target,
                &request.headers,
                &request.body,
            )
        });
        write("http_front", id, &raw);
        let listener = case["setup"]["listener"].as_str().unwrap_or_default();
        if let Some(venue) = venue_of(listener) {
            let seed = request::write(
                &request.method,
                &request.target,
                &request.headers,
                &request.body,
            );
            write(&target_of(venue), id, &seed);
        }
    }
    std::panic::set_hook(quiet);
    println!(
        "corpus cases only described, not seeded: {}",
        described.join(", ")
    );
}

/// The REST vectors that name a request, in the venue targets' format.
fn vectors(write: &mut Write<'_>) {
    for vector in keyward_tests::vectors() {
        let id = vector["id"].as_str().unwrap_or("vector");
        let inputs = &vector["inputs"];
        let text = |key: &str| inputs[key].as_str().map(str::to_owned);
        let (venue, method, target, body) = match vector["exchange"].as_str() {
            Some("binance") => {
                let (Some(method), Some(path)) = (text("method"), text("path")) else {
                    continue;
                };
                let venue = if path.starts_with("/fapi/") {
                    VenueId::BinanceUsdm
                } else {
                    VenueId::BinanceSpot
                };
                let query = text("query_string").unwrap_or_default();
                (
                    venue,
                    method,
                    format!("{path}?{query}"),
                    text("body").unwrap_or_default(),
                )
            }
            Some("okx") => {
                let (Some(method), Some(path)) = (text("method"), text("request_path")) else {
                    continue;
                };
                (VenueId::Okx, method, path, text("body").unwrap_or_default())
            }
            Some("kraken") => {
                let (Some(path), Some(body)) = (text("uri_path"), text("postdata")) else {
                    continue;
                };
                (VenueId::Kraken, "POST".to_owned(), path, body)
            }
            _ => continue,
        };
        let content_type = if body.starts_with('{') { JSON } else { FORM };
        let headers = vec![("Content-Type".to_owned(), content_type.to_owned())];
        let seed = request::write(&method, &target, &headers, body.as_bytes());
        write(&target_of(venue), id, &seed);
    }
}

/// What each venue's clients typically send (from the venues' documentation and the
/// unit tests' accepted cases).
fn typical_requests(write: &mut Write<'_>) {
    let requests: &[(VenueId, &str, &str, &str)] = &[
        (
            VenueId::BinanceSpot,
            "POST",
            "/api/v3/order/test",
            "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=60000&computeCommissionRates=true",
        ),
        (
            VenueId::BinanceUsdm,
            "POST",
            "/fapi/v1/order/test",
            "symbol=BTCUSDT&side=SELL&type=STOP_MARKET&stopPrice=50000&quantity=0.01&reduceOnly=true",
        ),
        (
            VenueId::Bybit,
            "POST",
            "/v5/order/cancel",
            r#"{"category":"spot","symbol":"BTCUSDT","orderId":"1","orderFilter":"Order"}"#,
        ),
        (
            VenueId::Bybit,
            "POST",
            "/v5/order/cancel-batch",
            r#"{"category":"linear","request":[{"symbol":"BTCUSDT","orderLinkId":"bot-1"},{"symbol":"ETHUSDT","orderId":"2"}]}"#,
        ),
        (
            VenueId::Bybit,
            "POST",
            "/v5/order/amend-batch",
            r#"{"category":"linear","request":[{"symbol":"BTCUSDT","orderId":"1","qty":"0.002","price":"61000"}]}"#,
        ),
        (
            VenueId::Bybit,
            "POST",
            "/v5/position/set-leverage",
            r#"{"category":"linear","symbol":"BTCUSDT","buyLeverage":"5","sellLeverage":"5"}"#,
        ),
        (
            VenueId::Okx,
            "POST",
            "/api/v5/trade/amend-batch-orders",
            r#"[{"instId":"BTC-USDT","ordId":"1","newSz":"0.002","newPx":"61000"},{"instId":"ETH-USDT","clOrdId":"c2","newPx":"3100"}]"#,
        ),
        (
            VenueId::Okx,
            "POST",
            "/api/v5/trade/cancel-batch-orders",
            r#"[{"instId":"BTC-USDT","ordId":"1"},{"instId":"ETH-USDT","clOrdId":"c2"}]"#,
        ),
        (
            VenueId::Kraken,
            "GET",
            "/0/public/OHLC?pair=XBTUSD&interval=5&since=1616492376",
            "",
        ),
        (
            VenueId::Kraken,
            "GET",
            "/0/public/Depth?pair=XBTUSD&count=10",
            "",
        ),
        (
            VenueId::Kraken,
            "GET",
            "/0/public/Trades?pair=XBTUSD&since=1616492376.5",
            "",
        ),
        (VenueId::Kraken, "GET", "/0/public/Spread?pair=ETHUSDT", ""),
        (
            VenueId::Kraken,
            "POST",
            "/0/private/EditOrder",
            "nonce=1&pair=XBTUSD&price=37000&txid=OABCDE-FGHIJ-KLMNOP&volume=1.5&oflags=post",
        ),
        (
            VenueId::Kraken,
            "POST",
            "/0/private/AmendOrder",
            "nonce=1&pair=XBTUSD&order_qty=2&limit_price=36000&txid=OABCDE-FGHIJ-KLMNOP",
        ),
        (
            VenueId::Kraken,
            "POST",
            "/0/private/CancelOrderBatch",
            r#"{"nonce":"1","orders":["OABCDE-FGHIJ-KLMNOP",{"txid":"OQRSTU-VWXYZ-ABCDEF"}],"cl_ord_ids":["c1"]}"#,
        ),
        (
            VenueId::Kraken,
            "POST",
            "/0/private/CancelAllOrdersAfter",
            "nonce=1&timeout=60",
        ),
        (
            VenueId::Kraken,
            "POST",
            "/0/private/QueryOrders",
            "nonce=1&txid=OABCDE-FGHIJ-KLMNOP,OQRSTU-VWXYZ-ABCDEF&trades=true",
        ),
        (
            VenueId::Kraken,
            "POST",
            "/0/private/QueryLedgers",
            "nonce=1&id=LABCDE-FGHIJ-KLMNOP",
        ),
        (
            VenueId::Kraken,
            "POST",
            "/0/private/OrderAmends",
            "nonce=1&order_id=OABCDE-FGHIJ-KLMNOP",
        ),
        (
            VenueId::Coinbase,
            "GET",
            "/api/v3/brokerage/products/BTC-USD/candles?start=1700000000&end=1700003600&granularity=ONE_MINUTE",
            "",
        ),
        (
            VenueId::Coinbase,
            "GET",
            "/api/v3/brokerage/market/products/BTC-USD/candles?start=1700000000&end=1700003600&granularity=ONE_HOUR&limit=5",
            "",
        ),
        (
            VenueId::Coinbase,
            "GET",
            "/api/v3/brokerage/product_book?product_id=BTC-USD&limit=5&aggregation_price_increment=0.01",
            "",
        ),
        (
            VenueId::Coinbase,
            "GET",
            "/api/v3/brokerage/market/product_book?product_id=ETH-USD",
            "",
        ),
        (
            VenueId::Coinbase,
            "POST",
            "/api/v3/brokerage/orders/preview",
            r#"{"product_id":"BTC-USD","side":"SELL","order_configuration":{"market_market_ioc":{"quote_size":"10"}}}"#,
        ),
        (
            VenueId::Coinbase,
            "POST",
            "/api/v3/brokerage/orders/edit_preview",
            r#"{"order_id":"abc-1","price":"61000","size":"0.002","product_id":"BTC-USD"}"#,
        ),
        (
            VenueId::BinanceSpot,
            "POST",
            "/api/v3/order",
            "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=60000&newClientOrderId=bot-1&timestamp=1&signature=ab",
        ),
        (
            VenueId::BinanceSpot,
            "POST",
            "/api/v3/order",
            "symbol=BTCUSDT&side=SELL&type=STOP_LOSS_LIMIT&timeInForce=GTC&quantity=0.001&price=50000&stopPrice=50100",
        ),
        (
            VenueId::BinanceSpot,
            "POST",
            "/api/v3/order/cancelReplace",
            "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=60000&cancelReplaceMode=STOP_ON_FAILURE&cancelOrderId=12",
        ),
        (
            VenueId::BinanceSpot,
            "POST",
            "/api/v3/orderList/oco",
            "symbol=BTCUSDT&side=SELL&quantity=0.001&aboveType=LIMIT_MAKER&abovePrice=70000&belowType=STOP_LOSS_LIMIT&belowPrice=50000&belowStopPrice=50100&belowTimeInForce=GTC",
        ),
        (
            VenueId::BinanceSpot,
            "GET",
            "/api/v3/ticker/price?symbols=%5B%22BTCUSDT%22%2C%22ETHUSDT%22%5D",
            "",
        ),
        (
            VenueId::BinanceUsdm,
            "POST",
            "/fapi/v1/batchOrders",
            "batchOrders=%5B%7B%22symbol%22%3A%22BTCUSDT%22%2C%22side%22%3A%22BUY%22%2C%22type%22%3A%22LIMIT%22%2C%22timeInForce%22%3A%22GTC%22%2C%22quantity%22%3A%220.001%22%2C%22price%22%3A%2260000%22%7D%5D",
        ),
        (
            VenueId::BinanceUsdm,
            "PUT",
            "/fapi/v1/order",
            "symbol=BTCUSDT&orderId=1&side=BUY&quantity=0.001&price=60000",
        ),
        (
            VenueId::Bybit,
            "POST",
            "/v5/order/create",
            r#"{"category":"spot","symbol":"BTCUSDT","side":"Buy","orderType":"Limit","qty":"0.001","price":"60000","timeInForce":"GTC","orderLinkId":"bot-1"}"#,
        ),
        (
            VenueId::Bybit,
            "POST",
            "/v5/order/create",
            r#"{"category":"linear","symbol":"BTCUSDT","side":"Sell","orderType":"Market","qty":"0.01","reduceOnly":true,"positionIdx":0,"triggerPrice":"50000","triggerDirection":2}"#,
        ),
        (
            VenueId::Bybit,
            "POST",
            "/v5/order/create-batch",
            r#"{"category":"linear","request":[{"symbol":"BTCUSDT","side":"Buy","orderType":"Limit","qty":"0.001","price":"60000"}]}"#,
        ),
        (
            VenueId::Bybit,
            "POST",
            "/v5/order/amend",
            r#"{"category":"spot","symbol":"BTCUSDT","orderId":"1","qty":"0.002","price":"61000"}"#,
        ),
        (
            VenueId::Bybit,
            "POST",
            "/v5/order/cancel-all?category=spot&symbol=BTCUSDT",
            "",
        ),
        (
            VenueId::Bybit,
            "GET",
            "/v5/account/wallet-balance?accountType=UNIFIED&coin=USDT,BTC",
            "",
        ),
        (
            VenueId::Okx,
            "POST",
            "/api/v5/trade/order",
            r#"{"instId":"BTC-USDT","tdMode":"cash","clOrdId":"b1","side":"buy","ordType":"limit","px":"60000","sz":"0.001","tag":"","pxUsd":"","attachAlgoOrds":[]}"#,
        ),
        (
            VenueId::Okx,
            "POST",
            "/api/v5/trade/batch-orders",
            r#"[{"instId":"BTC-USDT","tdMode":"cash","side":"sell","ordType":"market","sz":"0.001","tgtCcy":"base_ccy"},{"instId":"ETH-USDT-SWAP","tdMode":"cross","side":"buy","ordType":"post_only","px":"3000","sz":"1","reduceOnly":false}]"#,
        ),
        (
            VenueId::Okx,
            "POST",
            "/api/v5/trade/amend-order",
            r#"{"instId":"BTC-USDT","ordId":"1","newSz":"0.002","newPx":"61000"}"#,
        ),
        (
            VenueId::Okx,
            "GET",
            "/api/v5/trade/order?instId=BTC-USDT&ordId=1",
            "",
        ),
        (
            VenueId::Kraken,
            "POST",
            "/0/private/AddOrder",
            "nonce=1&ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25&close%5Bordertype%5D=limit&close%5Bprice%5D=40000",
        ),
        (
            VenueId::Kraken,
            "POST",
            "/0/private/AddOrder",
            r#"{"nonce":"1","ordertype":"stop-loss-limit","pair":"XBTUSD","price":"37000","price2":"36900","type":"sell","volume":"1","close":{"ordertype":"limit","price":"30000"}}"#,
        ),
        (
            VenueId::Kraken,
            "POST",
            "/0/private/AddOrderBatch",
            r#"{"nonce":"1","pair":"XBTUSD","orders":[{"ordertype":"limit","price":"40000","type":"buy","volume":"1"}]}"#,
        ),
        (
            VenueId::Kraken,
            "POST",
            "/0/private/CancelOrder",
            "nonce=1&txid=OABCDE-FGHIJ-KLMNOP",
        ),
        (VenueId::Kraken, "GET", "/0/public/Ticker?pair=XBTUSD", ""),
        (
            VenueId::Coinbase,
            "POST",
            "/api/v3/brokerage/orders",
            r#"{"client_order_id":"abc","product_id":"BTC-USD","side":"BUY","order_configuration":{"limit_limit_gtc":{"base_size":"0.001","limit_price":"60000.00","post_only":true}}}"#,
        ),
        (
            VenueId::Coinbase,
            "POST",
            "/api/v3/brokerage/orders",
            r#"{"client_order_id":"m1","product_id":"ETH-USD","side":"SELL","order_configuration":{"stop_limit_stop_limit_gtd":{"base_size":"1","limit_price":"2000","stop_price":"2010","end_time":"2026-01-01T00:00:00Z","stop_direction":"STOP_DIRECTION_STOP_DOWN"}},"leverage":"2","margin_type":"CROSS"}"#,
        ),
        (
            VenueId::Coinbase,
            "POST",
            "/api/v3/brokerage/orders/edit",
            r#"{"order_id":"abc-1","price":"61000","size":"0.002","product_id":"BTC-USD"}"#,
        ),
        (
            VenueId::Coinbase,
            "POST",
            "/api/v3/brokerage/orders/batch_cancel",
            r#"{"order_ids":["a-1","b-2"]}"#,
        ),
        (
            VenueId::Coinbase,
            "GET",
            "/api/v3/brokerage/orders/historical/batch?product_ids=BTC-USD&product_ids=ETH-USD&order_status=OPEN&limit=10",
            "",
        ),
        (
            VenueId::Coinbase,
            "GET",
            "/api/v3/brokerage/orders/historical/abc-123",
            "",
        ),
        (
            VenueId::Coinbase,
            "GET",
            "/api/v3/brokerage/products/BTC-USD/ticker?limit=1",
            "",
        ),
    ];
    for (index, (venue, method, target, body)) in requests.iter().enumerate() {
        let mut headers = Vec::new();
        if !body.is_empty() {
            let content_type = if body.starts_with(['{', '[']) {
                JSON
            } else {
                FORM
            };
            headers.push(("Content-Type".to_owned(), content_type.to_owned()));
        }
        let seed = request::write(method, target, &headers, body.as_bytes());
        write(&target_of(*venue), &format!("typical-{index}"), &seed);
    }
}

/// For the venues whose catalogue lists each parameter's grammar (Binance, Bybit, OKX):
/// every endpoint with its required parameters, and with all of them, filled with a
/// value of the right grammar, so the fuzzer starts at or near an accepted request.
fn filled_endpoints(write: &mut Write<'_>) {
    use keyward_venues::schema::Shape;
    for venue in [
        VenueId::BinanceSpot,
        VenueId::BinanceUsdm,
        VenueId::Bybit,
        VenueId::Okx,
    ] {
        for spec in venue.adapter().catalogue().entries() {
            for all in [false, true] {
                let params: Vec<&Param> =
                    spec.params.iter().filter(|p| all || p.required).collect();
                let batch = match spec.shape {
                    Shape::Batch { element, .. } => Some(element),
                    _ => None,
                };
                let fields: Vec<(String, Filled)> = params
                    .iter()
                    .map(|p| (p.name.to_owned(), filled(venue, p, batch, all)))
                    .collect();
                let in_query = matches!(spec.method, http::Method::GET | http::Method::DELETE);
                let json = matches!(venue, VenueId::Bybit | VenueId::Okx);
                let (target, content_type, body) = if in_query || fields.is_empty() {
                    (
                        format!("{}?{}", spec.path, form_text(&fields)),
                        None,
                        String::new(),
                    )
                } else if json {
                    let mut object = json_object(&fields);
                    if spec.path.contains("batch") && venue == VenueId::Okx {
                        object = format!("[{object}]");
                    }
                    (spec.path.to_owned(), Some(JSON), object)
                } else {
                    (spec.path.to_owned(), Some(FORM), form_text(&fields))
                };
                let headers: Vec<(String, String)> = content_type
                    .map(|t| vec![("Content-Type".to_owned(), t.to_owned())])
                    .unwrap_or_default();
                let seed = request::write(spec.method.as_str(), &target, &headers, body.as_bytes());
                let which = if all { "all" } else { "required" };
                write(
                    &target_of(venue),
                    &format!("filled-{which}-{}", spec.key),
                    &seed,
                );
            }
        }
    }
}

use keyward_venues::schema::{Kind, Param};

/// A parameter's value: text, or JSON written as it is (numbers, booleans, lists).
enum Filled {
    Text(String),
    Raw(String),
}

fn filled(venue: VenueId, param: &Param, batch: Option<&[Param]>, all: bool) -> Filled {
    let symbol = if venue == VenueId::Okx {
        "BTC-USDT"
    } else {
        "BTCUSDT"
    };
    let text = |t: &str| Filled::Text(t.to_owned());
    match (venue, param.name) {
        (VenueId::Bybit, "isLeverage" | "triggerDirection" | "positionIdx") => {
            return Filled::Raw("1".to_owned());
        }
        (VenueId::Bybit, "reduceOnly" | "closeOnTrigger") => return Filled::Raw("true".to_owned()),
        (VenueId::Bybit, "coin" | "baseCoin" | "settleCoin") => return text("USDT"),
        (VenueId::Okx, _) if param.kind == Kind::Bool => return Filled::Raw("true".to_owned()),
        _ => {}
    }
    match param.kind {
        Kind::Symbol => text(symbol),
        Kind::Decimal | Kind::Int => text("1"),
        Kind::Bool => text("true"),
        Kind::ClientId => text("c1"),
        Kind::Enum(words) => text(words.first().copied().unwrap_or_default()),
        Kind::SymbolList if venue == VenueId::Okx => text("BTC,USDT"),
        Kind::SymbolList => text(&format!("[\"{symbol}\"]")),
        Kind::EnumList(words) => text(&format!(
            "[\"{}\"]",
            words.first().copied().unwrap_or_default()
        )),
        Kind::IntList => text("[1]"),
        Kind::ClientIdList => text("[\"c1\"]"),
        Kind::TimeZone => text("0"),
        Kind::WindowSize => text("1d"),
        Kind::Batch => {
            let element: Vec<(String, Filled)> = batch
                .unwrap_or_default()
                .iter()
                .filter(|p| all || p.required)
                .map(|p| (p.name.to_owned(), filled(venue, p, None, all)))
                .collect();
            let list = format!("[{}]", json_object(&element));
            // Bybit takes the list as JSON in its body; Binance as a form value.
            if venue == VenueId::Bybit {
                Filled::Raw(list)
            } else {
                Filled::Text(list)
            }
        }
    }
}

fn form_text(fields: &[(String, Filled)]) -> String {
    let pairs: Vec<(&str, &str)> = fields
        .iter()
        .map(|(name, value)| match value {
            Filled::Text(text) | Filled::Raw(text) => (name.as_str(), text.as_str()),
        })
        .collect();
    keyward_venues::form::encode_pairs(pairs)
}

fn json_object(fields: &[(String, Filled)]) -> String {
    let members: Vec<String> = fields
        .iter()
        .map(|(name, value)| match value {
            Filled::Text(text) => {
                format!("{}:{}", serde_json::json!(name), serde_json::json!(text))
            }
            Filled::Raw(raw) => format!("{}:{raw}", serde_json::json!(name)),
        })
        .collect();
    format!("{{{}}}", members.join(","))
}

/// `METHOD /path` of every catalogued endpoint, so each is reachable from the start.
fn endpoints(write: &mut Write<'_>) {
    for venue in VenueId::ALL {
        let adapter = venue.adapter();
        for spec in adapter.catalogue().entries() {
            // Coinbase's `{id}` segments get a plausible id.
            let path = spec
                .path
                .replace("{product_id}", "BTC-USD")
                .replace(['{', '}'], "");
            if !matches!(
                route(adapter, &spec.method, &path),
                keyward_venues::Route::Endpoint(_)
            ) {
                continue;
            }
            let seed = request::write(spec.method.as_str(), &path, &[], b"");
            write(&target_of(venue), &format!("endpoint-{}", spec.key), &seed);
        }
    }
}

fn configurations(fuzz_dir: &Path, write: &mut Write<'_>) {
    let deploy = fuzz_dir.join("../deploy");
    let example = std::fs::read_to_string(deploy.join("keyward.example.toml")).expect("example");
    let bots = std::fs::read_to_string(deploy.join("bots.d/futures.toml")).expect("bots.d");
    write(
        "config",
        "example",
        format!("{example}{FILE_SEPARATOR}{bots}").as_bytes(),
    );
    let scratch = TempDir::new("fuzz-seeds");
    let demo = keyward::demo::prepare(&scratch.path().join("demo"), 0).expect("demo");
    write(
        "config",
        "demo",
        &std::fs::read(&demo.config).expect("demo config"),
    );
    let tokens = fixture_tokens();
    let mut policies = vec![
        FixturePolicy::P0,
        FixturePolicy::P0WithoutEth,
        FixturePolicy::P1Futures,
        FixturePolicy::Clients,
    ];
    policies.extend(VenueFixture::ALL.map(FixturePolicy::Venue));
    for policy in policies {
        let path = keyward_tests::write_fixture(scratch.path(), policy, &tokens, SystemTime::now());
        let name = format!(
            "fixture-{}",
            path.file_stem().unwrap_or_default().to_string_lossy()
        );
        write("config", &name, &std::fs::read(&path).expect("fixture"));
    }
}

/// Inputs that once failed, kept as seeds (and named in their regression tests).
fn regressions(dir: &Path, write: &mut Write<'_>) {
    let Ok(targets) = std::fs::read_dir(dir) else {
        return;
    };
    for target in targets.flatten() {
        let name = target.file_name().to_string_lossy().into_owned();
        for input in std::fs::read_dir(target.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let bytes = std::fs::read(input.path()).expect("regression input");
            write(
                &name,
                &format!("regression-{}", input.file_name().to_string_lossy()),
                &bytes,
            );
        }
    }
}
