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
use keyward_tests::redis::{Partition, RedisServer};
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

/// The tests' deadline is longer than the default 250 ms: the whole suite runs on
/// two cores at once, and a refusal for a slow Redis is not what most tests look at.
const TIMEOUT: &str = "timeout_ms = 2000";

fn state_table(redis: &RedisServer, extra: &str) -> String {
    format!(
        "[state]\nbackend = \"{}\"\n{TIMEOUT}\n{extra}\n",
        redis.url()
    )
}

fn replica(
    mock: &Mock,
    redis: &RedisServer,
    tables: &str,
    account: &str,
    bot: &str,
) -> KeywardProcess {
    replica_at(mock, &redis.url(), tables, account, bot)
}

fn replica_at(mock: &Mock, url: &str, tables: &str, account: &str, bot: &str) -> KeywardProcess {
    spawn_replica(Serving {
        tables: format!("[state]\nbackend = \"{url}\"\n{TIMEOUT}\n\n{tables}"),
        account_extra: account.to_owned(),
        bot_extra: bot.to_owned(),
        ..Serving::against(mock)
    })
}

fn spawn_replica(serving: Serving) -> KeywardProcess {
    KeywardProcess::spawn_serving(
        Path::new(EXE),
        FixturePolicy::P0,
        serving,
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

/// [`order`] with a client order id.
fn order_with_id(
    replica: &KeywardProcess,
    token: &str,
    id: &str,
) -> impl Future<Output = client::Response> + use<> {
    let headers = client::bot_headers(replica.bot_addr.port(), token, true);
    let body = format!("{ORDER}&newClientOrderId={id}");
    let client = replica.client.clone();
    async move {
        client
            .request("POST", ORDER_PATH, &headers, body.as_bytes())
            .await
    }
}

/// A cancel of order `id`, as bot `token`.
async fn cancel(replica: &KeywardProcess, token: &str, id: u64) -> client::Response {
    let headers = client::bot_headers(replica.bot_addr.port(), token, false);
    replica
        .client
        .request(
            "DELETE",
            &format!("/api/v3/order?symbol=BTCUSDT&orderId={id}&timestamp=1&signature=x"),
            &headers,
            b"",
        )
        .await
}

/// An order through `replica`, whose writes to Redis go through `relay`: the
/// exchange holds its answer until the relay is stalled, so the order is admitted
/// and sent, and what the replica writes to Redis from then on waits. Placed (200).
async fn placed_then_stalled(
    mock: &Mock,
    relay: &Partition,
    replica: &KeywardProcess,
    token: &str,
) -> client::Response {
    mock.set(keyward_tests::mock::Behaviour::Slow(1_000));
    let placing = tokio::spawn(order_with_id(replica, token, "held-1"));
    until_an_order_reached(mock).await;
    relay.stall();
    let placed = placing.await.expect("order task");
    mock.set(keyward_tests::mock::Behaviour::Normal);
    assert_eq!(placed.status, 200, "{}", placed.body);
    placed
}

/// Waits until the mock has received an order (at most 5 s).
async fn until_an_order_reached(mock: &Mock) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while orders_at_exchange(mock) == 0 {
        assert!(
            Instant::now() < deadline,
            "the order never reached the mock"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A signed read (the account), as bot `token`.
async fn account_read(replica: &KeywardProcess, token: &str) -> client::Response {
    let headers = client::bot_headers(replica.bot_addr.port(), token, false);
    replica
        .client
        .request(
            "GET",
            "/api/v3/account?timestamp=1&signature=x",
            &headers,
            b"",
        )
        .await
}

fn reason(response: &client::Response) -> String {
    response.header("x-keyward-error").unwrap_or("").to_owned()
}

/// How many of `answers` passed, and the reasons of the others.
fn tally(answers: &[client::Response]) -> (usize, Vec<String>) {
    let passed = answers.iter().filter(|a| a.status == 200).count();
    let refused = answers
        .iter()
        .filter(|a| a.status != 200)
        .map(reason)
        .collect();
    (passed, refused)
}

fn orders_at_exchange(mock: &Mock) -> usize {
    mock.records()
        .iter()
        .filter(|r| r.method == "POST" && r.path == ORDER_PATH)
        .count()
}

/// A Redis, the mock exchange and two ready replicas on one account, no budgets.
async fn two_replicas() -> (RedisServer, Mock, KeywardProcess, KeywardProcess) {
    let redis = RedisServer::start();
    let mock = Mock::start().await;
    let one = replica(&mock, &redis, "", "", "");
    let two = replica(&mock, &redis, "", "", "");
    wait_ready(&one);
    wait_ready(&two);
    (redis, mock, one, two)
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
    // Bot `a` first, alone: ten orders at once over the three replicas, of which
    // its own max_orders allows exactly four.
    let race = |tokens: Vec<String>| {
        let replicas = replicas.clone();
        async move {
            let mut tasks = tokio::task::JoinSet::new();
            for (b, token) in tokens.into_iter().enumerate() {
                for n in 0..10 {
                    let replica = replicas[(b + n) % replicas.len()].clone();
                    let token = token.clone();
                    tasks.spawn(async move { order(&replica, &token).await });
                }
            }
            let mut allowed = 0;
            let mut refusals = std::collections::BTreeMap::<String, usize>::new();
            while let Some(result) = tasks.join_next().await {
                let response = result.unwrap();
                if response.status == 200 {
                    allowed += 1;
                } else {
                    *refusals.entry(reason(&response)).or_default() += 1;
                }
            }
            (allowed, refusals)
        }
    };
    let (allowed_a, refusals_a) = race(vec![replicas[0].tokens.bot.clone()]).await;
    eprintln!("bot a: allowed {allowed_a}, refusals {refusals_a:?}");
    assert_eq!(allowed_a, 4, "exactly bot a's max_orders: {refusals_a:?}");
    assert_eq!(refusals_a.get("max_orders_exceeded"), Some(&6));
    // Then the other eleven at once, for the account's notional left: 46 orders.
    let (allowed, refusals) = race(extra_tokens).await;
    eprintln!("the others: allowed {allowed}, refusals {refusals:?}");
    assert_eq!(
        allowed_a + allowed,
        50,
        "exactly the account's 3,000 of notional: {refusals:?}"
    );
    assert_eq!(
        orders_at_exchange(&mock),
        50,
        "the exchange saw only the allowed orders"
    );
    assert_eq!(
        refusals.keys().collect::<Vec<_>>(),
        ["daily_notional_exceeded"],
        "refused only by the account's budget"
    );
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
    // Every replica shows the account's shared spending, not only its own share.
    for replica in &replicas {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let used = replica.metric("keyward_account_daily_notional_used{account=\"spot\"}");
            if used == Some(3000.0) {
                break;
            }
            assert!(Instant::now() < deadline, "metrics show {used:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
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
    let read = account_read(&keyward, &bot).await;
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
    let (redis, mock, one, two) = two_replicas().await;
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

/// Kraken refuses a nonce not above the key's last unless the key has a nonce
/// window; replicas signing at once send their requests over different
/// connections, so they arrive a little out of order, and the operator sets a
/// window (docs/shared-state.md). What the window never forgives is a nonce used
/// twice, which replicas with counters of their own would draw.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_signing_for_one_kraken_key_never_reuse_a_nonce() {
    use keyward_tests::venues::VenueFixture;
    let redis = RedisServer::start();
    let mock = Mock::start().await;
    // One second of keyward's microsecond nonces.
    mock.set_kraken_nonce_window(1_000_000);
    let replicas: Vec<Arc<KeywardProcess>> = (0..3)
        .map(|_| {
            Arc::new(KeywardProcess::spawn_serving(
                Path::new(EXE),
                FixturePolicy::Venue(VenueFixture::Kraken),
                Serving {
                    tables: state_table(&redis, ""),
                    account_extra: "exchange_limits_multiplier = 1000000".to_owned(),
                    ..Serving::against(&mock)
                },
                VaultKey::File,
                &[],
            ))
        })
        .collect();
    for replica in &replicas {
        wait_ready(replica);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for replica in &replicas {
        for _ in 0..8 {
            let replica = replica.clone();
            tasks.spawn(async move {
                let mut statuses = Vec::new();
                for _ in 0..25 {
                    let response = keyward_tests::venues::kraken::private(
                        &replica.client,
                        replica.bot_addr.port(),
                        Some(&replica.tokens.bot_b),
                        "Balance",
                        "application/x-www-form-urlencoded",
                        "",
                    )
                    .await;
                    statuses.push((response.status, response.body));
                }
                statuses
            });
        }
    }
    let mut answered = 0;
    while let Some(result) = tasks.join_next().await {
        for (status, body) in result.unwrap() {
            assert_eq!(status, 200, "{body}");
            assert!(!body.contains("Invalid nonce"), "{body}");
            answered += 1;
        }
    }
    assert_eq!(answered, 600);
    let mut nonces: Vec<u64> = mock
        .records()
        .iter()
        .filter(|r| r.path == "/0/private/Balance")
        .filter_map(|r| r.params().get("nonce").and_then(|n| n.parse().ok()))
        .collect();
    assert_eq!(nonces.len(), 600);
    nonces.sort_unstable();
    nonces.dedup();
    assert_eq!(
        nonces.len(),
        600,
        "every nonce drawn once across the replicas"
    );
    let counter: u64 = redis
        .command(&["GET", "keyward:{kraken}:nonce"])
        .and_then(|c| c.parse().ok())
        .expect("the shared counter");
    assert_eq!(Some(&counter), nonces.last(), "the last nonce drawn");
}

/// The ACL user docs/shared-state.md gives, with nothing more: keyward
/// authenticates with its user name and password file, and every shared operation
/// (spend, refund, freeze, its announcement and reading) works within it; a wrong
/// password is an unavailable state, never a way around it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_acl_user_with_only_keywards_commands_is_enough() {
    let redis = RedisServer::start();
    let mut acl = vec![
        "ACL",
        "SETUSER",
        "keyward",
        "on",
        ">keyward-redis-password",
        "resetkeys",
        "~keyward:*",
        "resetchannels",
        "&keyward:*",
        "-@all",
    ];
    acl.extend([
        "+eval",
        "+evalsha",
        "+multi",
        "+exec",
        "+hgetall",
        "+hsetnx",
        "+hdel",
        "+del",
        "+publish",
        "+subscribe",
        "+ping",
        "+get",
        "+set",
        "+hget",
        "+hset",
        "+hincrby",
        "+lindex",
        "+lpop",
        "+rpush",
        "+pexpire",
        "+pttl",
        "+exists",
        "+time",
        "+hmget",
        "+xadd",
        "+xrange",
        "+zadd",
        "+zrem",
        "+zrangebyscore",
        "+zremrangebyscore",
        "+zcard",
    ]);
    assert_eq!(redis.command(&acl).as_deref(), Some("+OK"));
    let secrets = keyward_tests::TempDir::new("redis-secret");
    let good = secrets.path().join("good");
    let bad = secrets.path().join("bad");
    std::fs::write(&good, "keyward-redis-password\n").unwrap();
    std::fs::write(&bad, "not-the-password\n").unwrap();
    // Anonymous clients (the default user) may do nothing from here on.
    assert_eq!(
        redis
            .command(&["ACL", "SETUSER", "default", "resetkeys", "-@all"])
            .as_deref(),
        Some("+OK")
    );
    let mock = Mock::start().await;
    let as_user = |password: &Path| {
        KeywardProcess::spawn_serving(
            Path::new(EXE),
            FixturePolicy::P0,
            Serving {
                tables: state_table(
                    &redis,
                    &format!(
                        "username = \"keyward\"\npassword_file = \"{}\"",
                        password.display()
                    ),
                ),
                // An open-order limit, so the holds and the journal of settled
                // orders are written and read within the user's rights too.
                account_extra: "daily_notional = \"100\"\nmax_open_orders = 5".to_owned(),
                ..Serving::against(&mock)
            },
            VaultKey::File,
            &[],
        )
    };
    let keyward = as_user(&good);
    wait_ready(&keyward);
    let bot = keyward.tokens.bot.clone();
    let first = order_with_id(&keyward, &bot, "acl-1").await;
    assert_eq!(first.status, 200, "{}", first.body);
    let placed: serde_json::Value = serde_json::from_str(&first.body).unwrap();
    let id = placed["orderId"].as_u64().unwrap();
    let second = order(&keyward, &bot).await;
    assert_eq!(reason(&second), "daily_notional_exceeded");
    // A cancel names an order: the journal and the bot's requests in flight are
    // read first.
    let cancel = cancel(&keyward, &bot, id).await;
    assert_eq!(cancel.status, 200, "{}", cancel.body);
    // A 429 pauses every replica: the pause is written to Redis within the user's
    // rights, and the next request's admission reads it.
    let read = || account_read(&keyward, &bot);
    mock.set(keyward_tests::mock::Behaviour::RateLimited);
    assert_eq!(read().await.status, 429);
    mock.set(keyward_tests::mock::Behaviour::Normal);
    let user = Some(("keyward", "keyward-redis-password"));
    let deadline = Instant::now() + Duration::from_secs(2);
    while redis
        .command_as(user, &["GET", "keyward:{spot}:pause"])
        .as_deref()
        != Some("limited")
    {
        assert!(Instant::now() < deadline, "the pause never reached Redis");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(reason(&read().await), "upstream_rate_limited");
    let (status, body) = keyward.admin("POST", "/freeze?account=spot");
    assert_eq!(status, 200, "{body}");
    let frozen = order(&keyward, &bot).await;
    assert_eq!(reason(&frozen), "frozen");
    assert_eq!(orders_at_exchange(&mock), 1);
    assert!(
        !keyward.log().contains("keyward-redis-password"),
        "the password never reaches the log"
    );
    // Nothing written in the background (the settlement, refunds, the pause) was
    // refused by the user's rights.
    for lost in [
        "could not reach the shared state",
        "could not be read from the shared state",
    ] {
        assert!(!keyward.log().contains(lost), "{}", keyward.log());
    }

    // The venues' allowances per address (a WebSocket link opened, counted for
    // every replica): the script runs within the user's rights (an error would
    // be its answer), takes the one use an allowance of one has, and not the next.
    let log = "keyward:{address}:okx:connections";
    let allowance = [
        "EVAL",
        include_str!("../../proxy/src/shared/address.lua"),
        "1",
        log,
        "acl-use-1",
        "60000",
        "1",
    ];
    assert_eq!(redis.command_as(user, &allowance).as_deref(), Some("*1"));
    let mut again = allowance;
    again[4] = "acl-use-2";
    assert_eq!(redis.command_as(user, &again).as_deref(), Some("*1"));
    assert_eq!(
        redis.command_as(user, &["ZCARD", log]).as_deref(),
        Some(":1")
    );

    let refused = as_user(&bad);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(refused.admin("GET", "/readyz").0, 503);
    let response = order(&refused, &refused.tokens.bot).await;
    assert_eq!(reason(&response), "state_unavailable");
    assert_eq!(orders_at_exchange(&mock), 1);
    assert!(!refused.log().contains("not-the-password"));
}

/// One replica cut off from Redis (connections dropped, then a Redis that accepts
/// and never answers) while another goes on spending; then the other killed with
/// SIGKILL in the middle of a burst. The account's budget holds throughout: nothing
/// double-spent, the cut-off replica refuses until it can reach Redis again and then
/// sees what the other spent, and the survivor of the kill spends what is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partitioned_or_killed_replica_never_double_spends() {
    let redis = RedisServer::start();
    let partition = Partition::start(redis.port()).await;
    let mock = Mock::start().await;
    // Room for 20 orders of 60.
    let account = "daily_notional = \"1200\"";
    let cut_off = Arc::new(replica_at(&mock, &partition.url(), "", account, ""));
    let direct = Arc::new(replica(&mock, &redis, "", account, ""));
    wait_ready(&cut_off);
    wait_ready(&direct);
    let bot = direct.tokens.bot.clone();
    for _ in 0..4 {
        assert_eq!(order(&cut_off, &bot).await.status, 200);
        assert_eq!(order(&direct, &bot).await.status, 200);
    }

    partition.cut();
    assert_eq!(reason(&order(&cut_off, &bot).await), "state_unavailable");
    partition.silence();
    assert_eq!(
        reason(&order(&cut_off, &bot).await),
        "state_unavailable",
        "the deadline, not a hang"
    );
    for _ in 0..4 {
        assert_eq!(order(&direct, &bot).await.status, 200);
    }
    assert_eq!(orders_at_exchange(&mock), 12);

    partition.heal();
    wait_ready(&cut_off);
    // 8 left: the healed replica takes 4, the other is killed in a burst of 8.
    for _ in 0..4 {
        assert_eq!(order(&cut_off, &bot).await.status, 200);
    }
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (direct, bot) = (direct.clone(), bot.clone());
        burst.spawn(async move { order(&direct, &bot).await.status });
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    direct.signal("KILL");
    while burst.join_next().await.is_some() {}
    // What the killed replica spent and never sent stays spent (the safe side):
    // the survivor spends exactly what is left, then is refused by the budget,
    // never by a stuck state.
    let mut more = 0;
    loop {
        let response = order(&cut_off, &bot).await;
        if response.status != 200 {
            assert_eq!(
                reason(&response),
                "daily_notional_exceeded",
                "{}",
                response.body
            );
            break;
        }
        more += 1;
        assert!(more <= 8);
    }
    let sent = orders_at_exchange(&mock);
    eprintln!("after the kill: {sent} orders at the exchange, {more} by the survivor");
    assert!(sent <= 20, "never past the budget: {sent}");
    let spent_in_redis = redis.command(&[
        "HGET",
        "keyward:{spot}:budget:account:notional:buckets",
        "total",
    ]);
    assert_eq!(
        spent_in_redis.as_deref(),
        Some("1200000000"),
        "the whole budget is spent, in millionths"
    );
    let decided = cut_off
        .audit()
        .iter()
        .filter(|l| l["event"] == "request" && l["path"] == ORDER_PATH)
        .count();
    assert_eq!(decided, 4 + 2 + 4 + more + 1, "one record per decision");
}

/// A 418 the exchange gives one replica pauses the others too: they refuse with
/// the ban's reason and send nothing until it ends, rather than each earning one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_one_replica_receives_pauses_every_replica() {
    use keyward_tests::mock::Behaviour;
    let (redis, mock, one, two) = two_replicas().await;
    let bot = one.tokens.bot.clone();
    mock.set(Behaviour::BannedFor(3));
    let banned = order(&one, &bot).await;
    assert_eq!(reason(&banned), "upstream_ip_banned", "{}", banned.body);
    mock.set(Behaviour::Normal);
    let deadline = Instant::now() + Duration::from_secs(2);
    while redis.command(&["GET", "keyward:{spot}:pause"]).as_deref() != Some("banned") {
        assert!(Instant::now() < deadline, "the ban never reached Redis");
        std::thread::sleep(Duration::from_millis(20));
    }
    let at_pause = orders_at_exchange(&mock);
    let paused = order(&two, &bot).await;
    assert_eq!(reason(&paused), "upstream_ip_banned", "{}", paused.body);
    assert!(paused.header("retry-after").is_some());
    assert_eq!(
        orders_at_exchange(&mock),
        at_pause,
        "nothing sent while paused"
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(order(&two, &bot).await.status, 200, "the pause ends");
}

/// A replica of the Coinbase fixture on `redis`, with `state` in its `[state]`
/// table and `account` in its account.
fn coinbase_replica(
    mock: &Mock,
    redis: &RedisServer,
    state: &str,
    account: &str,
) -> KeywardProcess {
    KeywardProcess::spawn_serving(
        Path::new(EXE),
        FixturePolicy::Venue(keyward_tests::venues::VenueFixture::Coinbase),
        Serving {
            tables: state_table(redis, state),
            account_extra: account.to_owned(),
            ..Serving::against(mock)
        },
        VaultKey::File,
        &[],
    )
}

/// The admission script on its own, on a budget window whose length changed (a
/// reload gave a bot's `max_orders` another period): what was spent counts for a
/// whole window of the new length, the next spend goes on from there, and a spend
/// past the limit is refused without being counted.
#[test]
fn a_budget_window_whose_length_changed_keeps_what_was_spent() {
    let redis = RedisServer::start();
    let script = include_str!("../../proxy/src/shared/admit.lua");
    let (hash, list) = ("t:{a}:budget:buckets", "t:{a}:budget:order");
    // No rate, one window, no client ids, no exchange counters, no orders held.
    let admit = |length: &str, limit: &str| {
        let args = [
            "EVAL",
            script,
            "5",
            "t:{a}:pause",
            "t:{a}:jwt:-",
            hash,
            list,
            "t:{a}:receipt",
            "0",
            "1",
            "1",
            "600",
            "0",
            "0",
            "1000",
            "0",
            "holder",
            length,
            limit,
            "1",
            "o",
            "0",
        ];
        redis.command(&args).unwrap_or_default()
    };
    let total = || redis.command(&["HGET", hash, "total"]);
    let minute = "60000000";
    let hour = "3600000000";
    for _ in 0..2 {
        let answer = admit(minute, "10");
        assert!(!answer.starts_with('-'), "{answer}");
    }
    assert_eq!(total().as_deref(), Some("2"));
    let answer = admit(hour, "3");
    assert!(!answer.starts_with('-'), "{answer}");
    assert_eq!(redis.command(&["HGET", hash, "len"]).as_deref(), Some(hour));
    assert_eq!(total().as_deref(), Some("3"));
    assert_eq!(redis.command(&["LLEN", list]).as_deref(), Some(":1"));
    let refused = admit(hour, "3");
    assert!(!refused.starts_with('-'), "{refused}");
    assert_eq!(
        total().as_deref(),
        Some("3"),
        "a refused spend is not counted"
    );
}

/// A Coinbase read, and a bot JWT for it (bot a's, two minutes).
const COINBASE_READ: &str = "/api/v3/brokerage/accounts";

fn coinbase_read_jwt() -> String {
    use keyward_tests::venues::coinbase::{BOT_A_KEY, BOT_A_PEM, bot_jwt, key_name};
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let uri = format!("GET localhost{COINBASE_READ}");
    bot_jwt(BOT_A_PEM, &key_name("a", BOT_A_KEY), &uri, now, 120)
}

async fn coinbase_read(replica: &KeywardProcess, jwt: &str) -> client::Response {
    let headers = vec![
        ("Host".to_owned(), "localhost".to_owned()),
        ("Authorization".to_owned(), format!("Bearer {jwt}")),
    ];
    replica
        .client
        .request("GET", COINBASE_READ, &headers, b"")
        .await
}

/// A Coinbase bot's JWT is good for one request on one replica: presented again to
/// another replica (both reached by the same host name, as behind one service), it
/// is refused as a replay and never reaches the exchange.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_jwt_used_on_one_replica_is_refused_by_another() {
    let redis = RedisServer::start();
    let mock = Mock::start().await;
    let coinbase = || coinbase_replica(&mock, &redis, "", "");
    let (one, two) = (coinbase(), coinbase());
    wait_ready(&one);
    wait_ready(&two);
    let (path, jwt) = (COINBASE_READ, coinbase_read_jwt());
    let first = coinbase_read(&one, &jwt).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let again = coinbase_read(&two, &jwt).await;
    assert_eq!(again.status, 401, "{}", again.body);
    assert_eq!(reason(&again), "auth_invalid");
    let asked = mock.records().iter().filter(|r| r.path == path).count();
    assert_eq!(asked, 1, "the replay never reached the exchange");
}

/// With Redis gone, a Coinbase bot's read is refused even where reads may go on
/// without it: its JWT is good for one request, and only Redis holds that across
/// replicas (another replica would take the same JWT again). It never reaches the
/// exchange.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_with_a_bot_jwt_needs_redis_even_where_reads_may_go_on() {
    let mut redis = RedisServer::start();
    let mock = Mock::start().await;
    let replica = coinbase_replica(&mock, &redis, "reads_when_unavailable = \"allow\"", "");
    wait_ready(&replica);
    redis.kill();
    let path = COINBASE_READ;
    let refused = coinbase_read(&replica, &coinbase_read_jwt()).await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(reason(&refused), "state_unavailable");
    assert!(
        !mock.records().iter().any(|r| r.path == path),
        "the read reached the exchange"
    );
}

/// A budget window as a keyward before this one left it in Redis (its buckets
/// found through the list alone, without `newest` and `first` in the hash) is spent
/// from as it stands: its bucket that has left the day is dropped, the one still
/// in it counts, and the next spends add to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_window_an_older_keyward_wrote_still_counts() {
    let redis = RedisServer::start();
    let mock = Mock::start().await;
    // A day in 1,440 buckets of a minute; amounts in millionths.
    let minute = keyward_tests::ws_client::now_ms() / 60_000;
    let (recent, gone) = ((minute - 60).to_string(), (minute - 1_500).to_string());
    let buckets = "keyward:{spot}:budget:account:notional:buckets";
    let list = "keyward:{spot}:budget:account:notional:order";
    let hset = [
        "HSET",
        buckets,
        "len",
        "86400000000",
        "total",
        "1060000000",
        &gone,
        "1000000000",
        &recent,
        "60000000",
    ];
    assert_eq!(redis.command(&hset).as_deref(), Some(":4"));
    assert_eq!(
        redis.command(&["RPUSH", list, &gone, &recent]).as_deref(),
        Some(":2")
    );
    let keyward = replica(&mock, &redis, "", "daily_notional = \"150\"", "");
    wait_ready(&keyward);
    let bot = keyward.tokens.bot.clone();
    // 60 an hour ago and 60 now fit in 150; a third 60 does not.
    let first = order(&keyward, &bot).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let second = order(&keyward, &bot).await;
    assert_eq!(
        reason(&second),
        "daily_notional_exceeded",
        "{}",
        second.body
    );
    assert_eq!(orders_at_exchange(&mock), 1);
    assert_eq!(
        redis.command(&["HGET", buckets, "total"]).as_deref(),
        Some("120000000")
    );
    assert_eq!(redis.command(&["HGET", buckets, &gone]), None);
    assert_eq!(redis.command(&["LLEN", list]).as_deref(), Some(":2"));
}

/// A bot's order, placed through one replica, can be cancelled through another as
/// soon as the bot has the answer, though the first replica's journal write is
/// still held up on its way to Redis: the bot is answered without waiting for it,
/// and the other replica waits for the bot's request it finds in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_is_known_to_another_replica_before_its_journal_entry_lands() {
    let redis = RedisServer::start();
    let mock = Mock::start().await;
    let relay = Partition::start(redis.port()).await;
    let placer = replica_at(&mock, &relay.url(), "", "", "");
    let judge = replica(&mock, &redis, "", "", "");
    wait_ready(&placer);
    wait_ready(&judge);
    let bot = placer.tokens.bot.clone();
    let placed = placed_then_stalled(&mock, &relay, &placer, &bot).await;
    assert_eq!(
        redis.command(&["XLEN", "keyward:{spot}:orders"]).as_deref(),
        Some(":0"),
        "the bot was answered before the journal entry was written"
    );
    assert_eq!(
        placer.metric("keyward_shared_settlements_unwritten"),
        Some(1.0)
    );
    let body: serde_json::Value = serde_json::from_str(&placed.body).unwrap();
    let id = body["orderId"].as_u64().unwrap();

    let stalled_for = Duration::from_millis(800);
    let resumed_at = Instant::now() + stalled_for;
    let resuming = tokio::spawn(async move {
        tokio::time::sleep(stalled_for).await;
        relay.resume();
        relay
    });
    let cancel = cancel(&judge, &bot, id).await;
    assert_eq!(cancel.status, 200, "{}", cancel.body);
    assert!(
        Instant::now() >= resumed_at,
        "the cancel was judged before the order's entry could be read"
    );
    let _relay = resuming.await.expect("resume task");
    // Redis has run the settlement; the placer counts it once its answer is read.
    let deadline = Instant::now() + Duration::from_secs(2);
    while placer.metric("keyward_shared_settlements_unwritten") != Some(0.0) {
        assert!(Instant::now() < deadline, "the settlement stayed unwritten");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(placer.metric("keyward_shared_state_reachable"), Some(1.0));
    assert_eq!(
        mock.records()
            .iter()
            .filter(|r| r.method == "DELETE" && r.path == ORDER_PATH)
            .count(),
        1
    );
}

/// A replica told to stop (SIGTERM) while its order's journal entry is still on its
/// way to Redis (held up in a relay) stays until Redis has answered it, and exits
/// cleanly once it has: the other replicas learn of every order it answered. (A
/// stop that gave up on the entry logs so, which fails this.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_stops_writes_the_settlements_it_queued_first() {
    let redis = RedisServer::start();
    let mock = Mock::start().await;
    let relay = Partition::start(redis.port()).await;
    // A deadline longer than the hold-up, so that the held write is answered, not
    // given up.
    let mut stopping = KeywardProcess::spawn_serving(
        Path::new(EXE),
        FixturePolicy::P0,
        Serving {
            tables: format!(
                "[state]\nbackend = \"{}\"\ntimeout_ms = 8000\n",
                relay.url()
            ),
            ..Serving::against(&mock)
        },
        VaultKey::File,
        &[],
    );
    wait_ready(&stopping);
    let bot = stopping.tokens.bot.clone();
    placed_then_stalled(&mock, &relay, &stopping, &bot).await;
    let journal = || redis.command(&["XLEN", "keyward:{spot}:orders"]);
    assert_eq!(journal().as_deref(), Some(":0"));

    stopping.signal("TERM");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(journal().as_deref(), Some(":0"), "held by the relay");
    assert!(
        stopping.wait(Duration::from_millis(10)).is_none(),
        "it exited before Redis had its settlement"
    );
    relay.resume();
    let (status, stopping) =
        tokio::task::spawn_blocking(move || (stopping.wait(Duration::from_secs(20)), stopping))
            .await
            .expect("wait task");
    let status = status.expect("it exits");
    assert!(status.success(), "{status}\n{}", stopping.log());
    assert_eq!(journal().as_deref(), Some(":1"), "{}", stopping.log());
    assert!(
        !stopping.log().contains("settlements still on their way"),
        "{}",
        stopping.log()
    );
}

/// The same JWT on Coinbase's user stream: spent on one replica's connection, it
/// opens no stream on another's; the exchange sees one subscription.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_jwt_used_on_one_replica_is_refused_by_another() {
    use keyward_tests::venues::coinbase::{BOT_A_KEY, BOT_A_PEM, key_name};
    use keyward_tests::ws_client::{WsClient, coinbase_ws_jwt, now_ms};
    let redis = RedisServer::start();
    let mock = Mock::start().await;
    let streams = format!("stream_upstream = \"wss://127.0.0.1:{}\"", mock.addr.port());
    let coinbase = || coinbase_replica(&mock, &redis, "", &streams);
    let replicas = [coinbase(), coinbase()];
    replicas.iter().for_each(wait_ready);
    let jwt = coinbase_ws_jwt(&key_name("a", BOT_A_KEY), BOT_A_PEM, now_ms() / 1000);
    let subscribe =
        serde_json::json!({"type": "subscribe", "product_ids": ["BTC-USD"], "channel": "user", "jwt": jwt})
            .to_string();
    let mut answers = Vec::new();
    for replica in &replicas {
        let ca = replica.dir.path().join("tls/ca.pem");
        let mut socket = WsClient::connect(replica.bot_addr, &ca, "/", &[]).await;
        socket.send_text(&subscribe).await;
        answers.push(
            socket
                .wait_for(|f| f["channel"] == "subscriptions" || f["type"] == "error")
                .await,
        );
    }
    assert_eq!(answers[0]["channel"], "subscriptions", "{}", answers[0]);
    assert_eq!(answers[1]["type"], "error", "{}", answers[1]);
    assert!(
        answers[1]["message"]
            .as_str()
            .is_some_and(|m| m.contains("auth_invalid")),
        "{}",
        answers[1]
    );
    let subscriptions = mock
        .records()
        .iter()
        .filter(|r| r.method == "WS" && r.path == "/" && r.body.contains("subscribe"))
        .count();
    assert_eq!(subscriptions, 1, "{:?}", mock.records());
}

/// `rediss://`: keyward trusts the server's certificate through `ca_file`, and
/// spends and refuses as over plain TCP; without the CA (the system's roots do not
/// know it) it never talks to that server and refuses `state_unavailable`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_backend_is_trusted_through_its_ca_file_only() {
    let redis = RedisServer::start_tls();
    let mock = Mock::start().await;
    let url = format!("rediss://localhost:{}", redis.port());
    // The lines after the backend stay in its [state] table.
    let ca = format!("ca_file = \"{}\"", redis.ca_file().display());
    let trusted = replica_at(&mock, &url, &ca, "daily_notional = \"100\"", "");
    wait_ready(&trusted);
    let bot = trusted.tokens.bot.clone();
    assert_eq!(order(&trusted, &bot).await.status, 200);
    assert_eq!(
        reason(&order(&trusted, &bot).await),
        "daily_notional_exceeded"
    );

    let untrusting = replica_at(&mock, &url, "", "", "");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(untrusting.admin("GET", "/readyz").0, 503);
    let refused = order(&untrusting, &untrusting.tokens.bot).await;
    assert_eq!(reason(&refused), "state_unavailable");
    assert_eq!(orders_at_exchange(&mock), 1);
}

/// `reads_when_unavailable = "allow"`: with Redis gone, a read still reaches the
/// exchange (under the replica's own rate limits), and an order is still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_may_go_on_without_redis_when_the_operator_allows_it() {
    let mut redis = RedisServer::start();
    let mock = Mock::start().await;
    let keyward = replica_at(
        &mock,
        &redis.url(),
        "reads_when_unavailable = \"allow\"",
        "",
        "",
    );
    wait_ready(&keyward);
    redis.kill();
    let bot = keyward.tokens.bot.clone();
    let read = account_read(&keyward, &bot).await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert!(mock.records().iter().any(|r| r.path == "/api/v3/account"));
    assert_eq!(reason(&order(&keyward, &bot).await), "state_unavailable");
    assert_eq!(orders_at_exchange(&mock), 0);
}

/// The client order id window across replicas: an id one replica placed is refused
/// by the other, never reaching the exchange; an id whose order the exchange
/// refused is free again on every replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_order_id_placed_through_one_replica_is_refused_by_another() {
    let (_redis, mock, one, two) = two_replicas().await;
    let bot = one.tokens.bot.clone();
    let with_id = |replica: &KeywardProcess, id: &str| order_with_id(replica, &bot, id);
    assert_eq!(with_id(&one, "grid-0001").await.status, 200);
    let again = with_id(&two, "grid-0001").await;
    assert_eq!(
        reason(&again),
        "duplicate_client_order_id",
        "{}",
        again.body
    );
    assert_eq!(
        orders_at_exchange(&mock),
        1,
        "the duplicate never reached the exchange"
    );

    // Refused by the exchange (a closed market): the id is free again.
    mock.close_market("BTCUSDT");
    let refused = with_id(&one, "grid-0002").await;
    assert_ne!(refused.status, 200, "{}", refused.body);
    mock.open_market("BTCUSDT");
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let retried = with_id(&two, "grid-0002").await;
        if retried.status == 200 {
            break;
        }
        assert_eq!(reason(&retried), "duplicate_client_order_id");
        assert!(
            Instant::now() < deadline,
            "the refused order's id was never freed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A replica whose admission times out frees only the client order ids its own
/// request took. A bot's order with id X is in flight through one replica (the
/// exchange slow to answer, so no replica's record knows X yet); the bot retries X
/// through another replica whose Redis connection stalls past the deadline. That
/// admission finds X taken when it runs late, and the release that follows it must
/// leave X held. (It used to delete every id of the request, so a third try of X
/// could be placed twice.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_timed_out_admission_frees_no_client_order_id_another_request_holds() {
    use keyward_tests::mock::Behaviour;
    let redis = RedisServer::start();
    let partition = Partition::start(redis.port()).await;
    let mock = Mock::start().await;
    let holder = Arc::new(replica(&mock, &redis, "", "", ""));
    let retrier = replica_at(&mock, &partition.url(), "", "", "");
    wait_ready(&holder);
    wait_ready(&retrier);
    let bot = holder.tokens.bot.clone();
    let hex: String = "grid-0007".bytes().map(|b| format!("{b:02x}")).collect();
    let key = format!("keyward:{{spot}}:client-id:{hex}");

    mock.set(Behaviour::Slow(4_000));
    let in_flight = {
        let (holder, bot) = (holder.clone(), bot.clone());
        tokio::spawn(async move { order_with_id(&holder, &bot, "grid-0007").await })
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    while orders_at_exchange(&mock) == 0 {
        assert!(
            Instant::now() < deadline,
            "the first order never reached the exchange"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let held = redis.command(&["GET", &key]).expect("the id is held");

    partition.stall();
    let timed_out = order_with_id(&retrier, &bot, "grid-0007").await;
    assert_eq!(
        reason(&timed_out),
        "state_unavailable",
        "{}",
        timed_out.body
    );
    partition.resume();
    mock.set(Behaviour::Normal);
    // One more admission on the same connection: once it is answered, what the
    // timed-out request queued before it has run.
    wait_ready(&retrier);
    let after = order_with_id(&retrier, &bot, "grid-0008").await;
    assert_eq!(after.status, 200, "{}", after.body);
    assert_eq!(
        redis.command(&["GET", &key]),
        Some(held),
        "the id was freed by a request that never held it"
    );
    assert_eq!(in_flight.await.unwrap().status, 200);
    assert_eq!(orders_at_exchange(&mock), 2);
}

/// Sends `burst` (requests made fresh for each try) early in one of the exchange's
/// ten-second order windows and returns its answers; tries again, up to three
/// times, when a burst straddled a window boundary.
async fn in_one_order_window<F, Fut>(mock: &Mock, burst: F) -> Vec<client::Response>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Vec<client::Response>>,
{
    use keyward_tests::ws_client::now_ms;
    let window_ms = 10_000u64;
    let index = || now_ms() / window_ms;
    for _ in 0..3 {
        let into_window = now_ms() % window_ms;
        if into_window > 3_000 {
            let rest = window_ms - into_window;
            tokio::time::sleep(Duration::from_millis(rest + 20)).await;
        }
        mock.clear();
        let before = index();
        let answers = burst().await;
        if index() == before {
            return answers;
        }
    }
    panic!("three bursts straddled a window boundary");
}

/// The exchange's order count across replicas: Binance spot allows 100 orders in
/// ten seconds; with half kept as headroom, the account's replicas together send
/// 50 in one window, not 50 each. 88 orders at once through two replicas: exactly
/// 50 reach the exchange, the rest are refused `exchange_limit_near` and never sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_count_their_orders_together_against_the_exchanges_limit() {
    let redis = RedisServer::start();
    let mock = Mock::start().await;
    let (tables, tokens) = extra_bots();
    let headroom = "exchange_headroom_percent = 50";
    let replicas = [
        replica(&mock, &redis, &tables, headroom, ""),
        replica(&mock, &redis, &tables, headroom, ""),
    ];
    replicas.iter().for_each(wait_ready);
    let answers = in_one_order_window(&mock, || {
        let sends = tokens.iter().enumerate().flat_map(|(n, token)| {
            let replica = &replicas[n % 2];
            (0..8).map(move |_| order(replica, token))
        });
        futures_util::future::join_all(sends)
    })
    .await;
    let (passed, refused) = tally(&answers);
    assert_eq!(passed, 50, "refused: {refused:?}");
    assert!(
        refused.iter().all(|r| r == "exchange_limit_near"),
        "{refused:?}"
    );
    assert_eq!(orders_at_exchange(&mock), 50);
}

/// A bot's order rate across replicas is the rate governor keeps for one keyward:
/// a burst of exactly its count (5 of `5/m`), whichever replicas the orders go
/// through, not one more. Seven orders at once through two replicas: five reach the
/// exchange, two are refused `rate_limited`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bots_order_rate_holds_across_replicas_to_its_burst() {
    let redis = RedisServer::start();
    let mock = Mock::start().await;
    let serving = || Serving {
        tables: format!("[state]\nbackend = \"{}\"\n{TIMEOUT}\n", redis.url()),
        order_rate: Some("5/m".to_owned()),
        ..Serving::against(&mock)
    };
    let replicas = [spawn_replica(serving()), spawn_replica(serving())];
    replicas.iter().for_each(wait_ready);
    let bot = &replicas[0].tokens.bot;
    let sends = (0..7).map(|n| order(&replicas[n % 2], bot));
    let answers = futures_util::future::join_all(sends).await;
    let (passed, refused) = tally(&answers);
    assert_eq!(passed, 5, "refused: {refused:?}");
    assert!(refused.iter().all(|r| r == "rate_limited"), "{refused:?}");
    assert_eq!(orders_at_exchange(&mock), 5);
}

/// A bot's share of the exchange's limits across replicas: 10 % of the 50 orders
/// the headroom leaves in ten seconds is 5, whichever replicas its orders go
/// through. 8 orders at once through two replicas: 5 reach the exchange, 3 are
/// refused `exchange_share_exceeded`; another bot of the account still has room.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bots_exchange_share_holds_across_replicas() {
    let redis = RedisServer::start();
    let mock = Mock::start().await;
    let headroom = "exchange_headroom_percent = 50";
    let share = "exchange_share = \"10%\"";
    let (tables, others) = extra_bots();
    let replicas = [
        replica(&mock, &redis, &tables, headroom, share),
        replica(&mock, &redis, &tables, headroom, share),
    ];
    replicas.iter().for_each(wait_ready);
    let bot = &replicas[0].tokens.bot;
    let answers = in_one_order_window(&mock, || {
        let sends = (0..8).map(|n| order(&replicas[n % 2], bot));
        futures_util::future::join_all(sends)
    })
    .await;
    let (passed, refused) = tally(&answers);
    assert_eq!(passed, 5, "refused: {refused:?}");
    assert!(
        refused.iter().all(|r| r == "exchange_share_exceeded"),
        "{refused:?}"
    );
    assert_eq!(orders_at_exchange(&mock), 5);
    let answer = order(&replicas[1], &others[0]).await;
    assert_eq!(answer.status, 200, "{}", reason(&answer));
}

/// The order record across replicas: `max_open_orders` counts every replica's
/// open orders and orders in flight (six orders at once through two replicas, a
/// limit of three: three reach the exchange); an order placed through one replica
/// is cancelled through the other (which knows it, so it is no `order_unknown`),
/// and the room it frees is free on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn open_orders_placed_through_one_replica_count_and_cancel_on_another() {
    let redis = RedisServer::start();
    let mock = Mock::start().await;
    let limit = "max_open_orders = 3";
    let replicas = [
        replica(&mock, &redis, "", limit, ""),
        replica(&mock, &redis, "", limit, ""),
    ];
    replicas.iter().for_each(wait_ready);
    let bot = replicas[0].tokens.bot.clone();
    let sends = (0..6).map(|n| {
        let via = n % 2;
        let bot = bot.clone();
        let replica = &replicas[via];
        async move { (via, order(replica, &bot).await) }
    });
    let answers = futures_util::future::join_all(sends).await;
    let placed: Vec<(usize, u64)> = answers
        .iter()
        .filter(|(_, a)| a.status == 200)
        .map(|(via, a)| {
            let body: serde_json::Value = serde_json::from_str(&a.body).unwrap();
            (*via, body["orderId"].as_u64().unwrap())
        })
        .collect();
    let refused: Vec<String> = answers
        .iter()
        .filter(|(_, a)| a.status != 200)
        .map(|(_, a)| reason(a))
        .collect();
    assert_eq!(placed.len(), 3, "refused: {refused:?}");
    assert!(
        refused.iter().all(|r| r == "max_open_orders_exceeded"),
        "{refused:?}"
    );
    assert_eq!(orders_at_exchange(&mock), 3);

    // Cancelled through the replica that did not place it.
    let (via, id) = placed[0];
    let other = &replicas[1 - via];
    let cancel = cancel(other, &bot, id).await;
    assert_eq!(cancel.status, 200, "{}", cancel.body);

    // The room it freed, on the replica that placed it: one order, not two.
    let placer = &replicas[via];
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let again = order(placer, &bot).await;
        if again.status == 200 {
            break;
        }
        assert_eq!(reason(&again), "max_open_orders_exceeded", "{}", again.body);
        assert!(Instant::now() < deadline, "the cancel never freed room");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let over = order(&replicas[1 - via], &bot).await;
    assert_eq!(reason(&over), "max_open_orders_exceeded", "{}", over.body);
    assert_eq!(orders_at_exchange(&mock), 4);
}

/// A replica killed (`SIGKILL`) while the exchange has not answered its order yet
/// leaves that order's open-order room held for every replica, and no longer than
/// the wait it allowed for the exchange (connecting, answering) and a margin: the
/// other replica refuses until then, and then takes the room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_order_holds_its_room_only_until_its_deadline() {
    let redis = RedisServer::start();
    let mock = Mock::start().await;
    let limit = "max_open_orders = 1";
    let quick = |mock: &Mock| {
        KeywardProcess::spawn_serving(
            Path::new(EXE),
            FixturePolicy::P0,
            Serving {
                tables: state_table(&redis, ""),
                account_extra: limit.to_owned(),
                server_extra: "upstream_timeout_ms = 1000\nconnect_timeout_ms = 500".to_owned(),
                ..Serving::against(mock)
            },
            VaultKey::File,
            &[],
        )
    };
    let (doomed, survivor) = (quick(&mock), quick(&mock));
    wait_ready(&doomed);
    wait_ready(&survivor);
    let bot = doomed.tokens.bot.clone();
    mock.set(keyward_tests::mock::Behaviour::Slow(5_000));
    let in_flight = tokio::spawn(order_with_id(&doomed, &bot, "doomed-1"));
    until_an_order_reached(&mock).await;
    doomed.signal("KILL");
    let killed_at = Instant::now();
    in_flight.abort();
    mock.set(keyward_tests::mock::Behaviour::Normal);

    let held = order(&survivor, &bot).await;
    assert_eq!(reason(&held), "max_open_orders_exceeded", "{}", held.body);
    // 0.5 s to connect, 1 s to answer, 2 s of margin.
    loop {
        let next = order(&survivor, &bot).await;
        if next.status == 200 {
            break;
        }
        assert_eq!(reason(&next), "max_open_orders_exceeded", "{}", next.body);
        assert!(
            killed_at.elapsed() < Duration::from_secs(8),
            "the dead replica's hold never expired"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let waited = killed_at.elapsed();
    assert!(waited >= Duration::from_millis(1_500), "{waited:?}");
    eprintln!("the dead replica's hold lasted {waited:?} after the kill");
}

/// OKX counts WebSocket connections per address, 3 a second, and keyward's
/// replicas behind one address share that count through Redis: tokenless clients
/// of two replicas asking for market data in the same second get one link between
/// them (the anonymous half of OKX's allowance), and the exchange sees one
/// upgrade. With Redis gone, a link is refused `state_unavailable` even where reads
/// may go on, and none opens: replicas counting alone could pass the limit
/// together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_a_venues_connections_per_address() {
    use keyward_tests::ws_client::WsClient;
    let mut redis = RedisServer::start();
    let mock = Mock::start().await;
    let replicas = okx_replicas(&mock, &redis, "reads_when_unavailable = \"allow\"");
    let answered = |f: &serde_json::Value| f["event"] == "subscribe" || f["event"] == "error";
    let mut sockets = okx_market_sockets(&replicas).await;
    let subscribe = OKX_TICKERS;
    // Both sent before either answer is read: within the same second however slow
    // the machine.
    for socket in &mut sockets {
        socket.send_text(subscribe).await;
    }
    let mut refusals = Vec::new();
    let mut refused = 0;
    for (n, socket) in sockets.iter_mut().enumerate() {
        let answer = socket.wait_for(answered).await;
        if answer["event"] == "error" {
            refusals.push(answer["msg"].as_str().unwrap_or_default().to_owned());
            refused = n;
        }
    }
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert!(refusals[0].contains("exchange_limit_near"), "{refusals:?}");
    // Asked again within the wait it was given, the refused client is refused by
    // its replica alone: a tokenless client cannot make Redis, which admits every
    // order, run a script per message. A use dated a minute ahead fills the
    // anonymous allowance for that long (however slow the machine), and the next
    // refusal says so.
    let in_a_minute = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 60_000;
    let log = "keyward:{address}:okx:anonymous-connections";
    let filled = redis.command(&["ZADD", log, &in_a_minute.to_string(), "test-use"]);
    assert_eq!(filled.as_deref(), Some(":1"));
    assert_eq!(
        redis.command(&["PEXPIRE", log, "120000"]).as_deref(),
        Some(":1")
    );
    // Past the first refusal's wait (under a second), so this one asks Redis.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    sockets[refused].send_text(subscribe).await;
    let answer = sockets[refused].wait_for(answered).await;
    assert_eq!(answer["event"], "error", "{answer}");
    let counted = redis.calls_of("zcard");
    for _ in 0..3 {
        sockets[refused].send_text(subscribe).await;
    }
    for _ in 0..3 {
        let answer = sockets[refused].wait_for(answered).await;
        assert_eq!(answer["event"], "error", "{answer}");
    }
    assert_eq!(
        redis.calls_of("zcard"),
        counted,
        "the allowance was read again"
    );
    assert_eq!(
        okx_public_upgrades(&mock),
        1,
        "links opened at the exchange"
    );

    redis.kill();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    // Through the replica that opened the link (the other knows the anonymous
    // allowance full for a minute, and would not ask Redis).
    let opened = &replicas[1 - refused];
    let ca = opened.dir.path().join("tls/ca.pem");
    let mut late = WsClient::connect(opened.bot_addr, &ca, "/ws/v5/public", &[]).await;
    late.send_text(subscribe).await;
    let answer = late.wait_for(answered).await;
    assert_eq!(answer["event"], "error", "{answer}");
    assert!(
        answer["msg"]
            .as_str()
            .is_some_and(|m| m.contains("state_unavailable")),
        "{answer}"
    );
    assert_eq!(
        okx_public_upgrades(&mock),
        1,
        "a link opened without the shared count"
    );
}

/// `address_allowances = "per_replica"`: replicas whose traffic leaves from
/// addresses of their own each count OKX's connections per address alone, so a
/// tokenless client on each, in the same second, gets a link of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_with_addresses_of_their_own_count_alone() {
    let redis = RedisServer::start();
    let mock = Mock::start().await;
    let replicas = okx_replicas(&mock, &redis, "address_allowances = \"per_replica\"");
    let mut sockets = okx_market_sockets(&replicas).await;
    let subscribe = OKX_TICKERS;
    for socket in &mut sockets {
        socket.send_text(subscribe).await;
    }
    for socket in &mut sockets {
        let answer = socket
            .wait_for(|f| f["event"] == "subscribe" || f["event"] == "error")
            .await;
        assert_eq!(answer["event"], "subscribe", "{answer}");
    }
    assert_eq!(okx_public_upgrades(&mock), 2);
    assert_eq!(
        redis.calls_of("zcard"),
        0,
        "the allowance was counted in Redis"
    );
}

/// A market-data subscription on OKX's public path.
const OKX_TICKERS: &str =
    r#"{"op":"subscribe","args":[{"channel":"tickers","instId":"BTC-USDT"}]}"#;

/// Two replicas of the OKX fixture on `redis`, with `state` in their `[state]`
/// table, their WebSockets going to `mock`, ready.
fn okx_replicas(mock: &Mock, redis: &RedisServer, state: &str) -> [KeywardProcess; 2] {
    [
        okx_replica(mock, redis, state),
        okx_replica(mock, redis, state),
    ]
}

/// One replica of [`okx_replicas`].
fn okx_replica(mock: &Mock, redis: &RedisServer, state: &str) -> KeywardProcess {
    let okx = || {
        KeywardProcess::spawn_serving(
            Path::new(EXE),
            FixturePolicy::Venue(keyward_tests::venues::VenueFixture::Okx),
            Serving {
                tables: state_table(redis, state),
                account_extra: format!(
                    "stream_upstream = \"wss://127.0.0.1:{}\"",
                    mock.addr.port()
                ),
                ..Serving::against(mock)
            },
            VaultKey::File,
            &[],
        )
    };
    let replica = okx();
    wait_ready(&replica);
    replica
}

/// The WebSockets to OKX's public path the exchange saw opened.
fn okx_public_upgrades(mock: &Mock) -> usize {
    mock.records()
        .iter()
        .filter(|r| r.method == "GET" && r.path.starts_with("/ws/v5/public"))
        .count()
}

/// A tokenless client's WebSocket to OKX's public path on each replica.
async fn okx_market_sockets(
    replicas: &[KeywardProcess],
) -> Vec<keyward_tests::ws_client::WsClient> {
    let mut sockets = Vec::new();
    for replica in replicas {
        let ca = replica.dir.path().join("tls/ca.pem");
        sockets.push(
            keyward_tests::ws_client::WsClient::connect(
                replica.bot_addr,
                &ca,
                "/ws/v5/public",
                &[],
            )
            .await,
        );
    }
    sockets
}

/// A Redis ACL user from before the allowances were shared (without `ZCARD`): a
/// link is refused `state_unavailable` and none opens, and the log says what the
/// user lacks (without quoting Redis's error, which may carry arguments).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_user_without_the_allowances_commands_is_named_in_the_log() {
    let redis = RedisServer::start();
    let acl = [
        "ACL",
        "SETUSER",
        "keyward",
        "on",
        ">older-acl",
        "~keyward:*",
        "&keyward:*",
        "+@all",
        "-zcard",
    ];
    assert_eq!(redis.command(&acl).as_deref(), Some("+OK"));
    let secrets = keyward_tests::TempDir::new("redis-secret");
    let password = secrets.path().join("password");
    std::fs::write(&password, "older-acl\n").unwrap();
    let mock = Mock::start().await;
    let state = format!(
        "username = \"keyward\"\npassword_file = \"{}\"",
        password.display()
    );
    let replica = okx_replica(&mock, &redis, &state);
    let mut socket = okx_market_sockets(std::slice::from_ref(&replica))
        .await
        .remove(0);
    socket.send_text(OKX_TICKERS).await;
    let answer = socket
        .wait_for(|f| f["event"] == "subscribe" || f["event"] == "error")
        .await;
    assert!(
        answer["msg"]
            .as_str()
            .is_some_and(|m| m.contains("state_unavailable")),
        "{answer}"
    );
    assert_eq!(okx_public_upgrades(&mock), 0);
    let log = replica.log();
    assert!(
        log.contains("the Redis user may not run a command keyward's scripts call"),
        "{log}"
    );
    assert!(!log.contains("older-acl"));
}
