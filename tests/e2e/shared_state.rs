//! Replicas sharing one account's limits through a real `redis-server`: budgets
//! spent by many bots through several keyward processes at once never pass the
//! limits and leave no capacity unused; an outage refuses orders (nothing reaches
//! the exchange), and a Redis killed and restarted loses no acknowledged spend; a
//! freeze on one replica stops the others.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use keyward_tests::mock::Mock;
use keyward_tests::process::{KeywardProcess, VaultKey};
use keyward_tests::redis::RedisServer;
use keyward_tests::{FixturePolicy, Serving, client, digest, rfc3339, token};

const EXE: &str = env!("CARGO_BIN_EXE_keyward-e2e");

/// Notional 60 (0.001 BTC at 60,000).
const ORDER: &str = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=60000&timestamp=1&signature=abc";
const ORDER_PATH: &str = "/api/v3/order";

/// Bots beside the fixture's `a`, all on the fixture's one account.
const EXTRA_BOTS: usize = 11;

fn extra_bots() -> (String, Vec<String>) {
    let expires = rfc3339(SystemTime::now() + Duration::from_secs(30 * 86_400));
    let mut tables = String::new();
    let mut tokens = Vec::new();
    for n in 1..=EXTRA_BOTS {
        let name = format!("r{n}");
        let secret = token(&name, "race");
        tables.push_str(&format!(
            r#"
[bots.{name}]
account = "spot"
tokens = ["{digest}"]
expires = "{expires}"
endpoints = ["POST /api/v3/order"]
symbols = ["BTCUSDT"]
order_types = ["LIMIT"]
max_order_notional = "100"
"#,
            digest = digest(&secret)
        ));
        tokens.push(secret);
    }
    (tables, tokens)
}

fn state_table(redis: &RedisServer, extra: &str) -> String {
    format!("[state]\nbackend = \"{}\"\n{extra}\n", redis.url())
}

fn replica(
    mock: &Mock,
    redis: &RedisServer,
    tables: &str,
    account: &str,
    bot: &str,
) -> KeywardProcess {
    KeywardProcess::spawn_serving(
        Path::new(EXE),
        FixturePolicy::P0,
        Serving {
            tables: format!("{}\n{tables}", state_table(redis, "")),
            account_extra: account.to_owned(),
            bot_extra: bot.to_owned(),
            ..Serving::against(mock)
        },
        VaultKey::File,
        &[],
    )
}

async fn order(replica: &KeywardProcess, token: &str) -> client::Response {
    let headers = client::bot_headers(replica.bot_addr.port(), token, true);
    replica
        .client
        .request("POST", ORDER_PATH, &headers, ORDER.as_bytes())
        .await
}

fn reason(response: &client::Response) -> String {
    response.header("x-keyward-error").unwrap_or("").to_owned()
}

fn orders_at_exchange(mock: &Mock) -> usize {
    mock.records()
        .iter()
        .filter(|r| r.method == "POST" && r.path == ORDER_PATH)
        .count()
}

/// Waits until the replica says it is ready (Redis answered its probe).
fn wait_ready(replica: &KeywardProcess) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while replica.admin("GET", "/readyz").0 != 200 {
        assert!(Instant::now() < deadline, "replica never became ready");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twelve_bots_on_three_replicas_spend_the_shared_budget_exactly() {
    let redis = RedisServer::start();
    let mock = Mock::start().await;
    let (tables, extra_tokens) = extra_bots();
    // 3,000 of notional is exactly 50 orders of 60; bot `a` alone may place 4.
    let account = "daily_notional = \"3000\"\nmax_orders = \"1000/d\"";
    let replicas: Vec<Arc<KeywardProcess>> = (0..3)
        .map(|_| {
            Arc::new(replica(
                &mock,
                &redis,
                &tables,
                account,
                "max_orders = \"4/d\"",
            ))
        })
        .collect();
    for replica in &replicas {
        wait_ready(replica);
    }
    let mut tokens = vec![replicas[0].tokens.bot.clone()];
    tokens.extend(extra_tokens);
    let mut tasks = tokio::task::JoinSet::new();
    for (b, token) in tokens.iter().enumerate() {
        for n in 0..10 {
            let replica = replicas[(b + n) % replicas.len()].clone();
            let token = token.clone();
            tasks.spawn(async move { (b, order(&replica, &token).await) });
        }
    }
    let mut allowed = 0;
    let mut allowed_a = 0;
    let mut refusals = std::collections::BTreeMap::<String, usize>::new();
    while let Some(result) = tasks.join_next().await {
        let (bot, response) = result.unwrap();
        if response.status == 200 {
            allowed += 1;
            allowed_a += usize::from(bot == 0);
        } else {
            *refusals.entry(reason(&response)).or_default() += 1;
        }
    }
    eprintln!("allowed {allowed}, bot a {allowed_a}, refusals {refusals:?}");
    assert_eq!(
        allowed, 50,
        "exactly the account's 3,000 of notional: {refusals:?}"
    );
    assert_eq!(allowed_a, 4, "exactly bot a's max_orders");
    assert_eq!(
        orders_at_exchange(&mock),
        50,
        "the exchange saw only the allowed orders"
    );
    for reason in refusals.keys() {
        assert!(
            reason == "daily_notional_exceeded" || reason == "max_orders_exceeded",
            "refused only by the budgets: {refusals:?}"
        );
    }
    // One decision record per order, across the replicas' own audit logs.
    let audits: Vec<serde_json::Value> = replicas.iter().flat_map(|r| r.audit()).collect();
    let decided = audits
        .iter()
        .filter(|l| l["event"] == "request" && l["path"] == ORDER_PATH)
        .count();
    assert_eq!(decided, 120);
    let allowed_records = audits
        .iter()
        .filter(|l| l["event"] == "request" && l["path"] == ORDER_PATH && l["decision"] == "allow")
        .count();
    assert_eq!(allowed_records, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_refuses_orders_and_a_restarted_redis_keeps_what_was_spent() {
    let mut redis = RedisServer::start();
    let mock = Mock::start().await;
    // Room for two orders of 60.
    let keyward = replica(&mock, &redis, "", "daily_notional = \"150\"", "");
    wait_ready(&keyward);
    let bot = keyward.tokens.bot.clone();
    assert_eq!(order(&keyward, &bot).await.status, 200);
    assert_eq!(orders_at_exchange(&mock), 1);

    // Killed without warning: the spend it acknowledged is in its AOF.
    redis.kill();
    let refused = order(&keyward, &bot).await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(reason(&refused), "state_unavailable");
    assert!(
        refused.body.contains("\"code\""),
        "in Binance's envelope: {}",
        refused.body
    );
    let read = keyward
        .client
        .request(
            "GET",
            "/api/v3/account?timestamp=1&signature=x",
            &client::bot_headers(keyward.bot_addr.port(), &bot, false),
            b"",
        )
        .await;
    assert_eq!(
        reason(&read),
        "state_unavailable",
        "reads refused by default"
    );
    assert_eq!(orders_at_exchange(&mock), 1, "nothing reached the exchange");
    let deadline = Instant::now() + Duration::from_secs(5);
    while keyward.admin("GET", "/readyz").0 == 200 {
        assert!(Instant::now() < deadline, "readiness never said so");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, body) = keyward.admin("GET", "/readyz");
    assert_eq!((status, body.trim()), (503, "shared state unavailable"));

    // Down for 10 seconds, then back on the same data.
    std::thread::sleep(Duration::from_secs(10));
    redis.restart();
    wait_ready(&keyward);
    assert_eq!(
        order(&keyward, &bot).await.status,
        200,
        "recovered by itself"
    );
    let third = order(&keyward, &bot).await;
    assert_eq!(
        reason(&third),
        "daily_notional_exceeded",
        "the first order's spend survived the restart"
    );
    assert_eq!(orders_at_exchange(&mock), 2);
    let audit = keyward.audit();
    let refused_for_state = audit
        .iter()
        .filter(|l| l["event"] == "request" && l["reason"] == "state_unavailable")
        .count();
    assert_eq!(refused_for_state, 2, "each refusal has its audit record");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freeze_on_one_replica_stops_the_other() {
    let redis = RedisServer::start();
    let mock = Mock::start().await;
    let one = replica(&mock, &redis, "", "", "");
    let two = replica(&mock, &redis, "", "", "");
    wait_ready(&one);
    wait_ready(&two);
    let bot = one.tokens.bot.clone();
    assert_eq!(order(&two, &bot).await.status, 200);

    let (status, body) = one.admin("POST", "/freeze?account=spot");
    assert_eq!(status, 200, "{body}");
    let frozen_at = Instant::now();
    let mut waited = None;
    while frozen_at.elapsed() < Duration::from_secs(5) {
        let (_, state) = two.admin("GET", "/frozen");
        if state.contains("\"spot\"") {
            waited = Some(frozen_at.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let waited = waited.expect("the other replica adopted the freeze");
    eprintln!("the other replica was frozen {waited:?} after the freeze returned");
    let refused = order(&two, &bot).await;
    assert_eq!(reason(&refused), "frozen");
    assert_eq!(
        orders_at_exchange(&mock),
        1,
        "nothing signed after the freeze"
    );
    assert!(
        redis
            .command(&["HLEN", "keyward:freeze"])
            .is_some_and(|l| l == ":1")
    );
}
