//! Slow and greedy clients at scale, against a keyward with its default connection
//! cap (1,024) and 5-second handshake, header and body deadlines. Four phases, each
//! while a bot on a kept-alive connection asks for its account every 100 ms (it
//! must get 200 every time) and a newcomer bot opens a fresh connection every two
//! seconds (it must be answered; how long it waited for a slot is reported):
//!
//! 1. `--flood` connections (10,000) at once, half idle after the TLS handshake,
//!    half idle after the HTTP/2 preface: the cap holds them back, the deadlines
//!    close them;
//! 2. slowloris: 2,000 heads and 2,000 bodies trickling a byte a second, renewed as
//!    keyward closes them, for 30 seconds;
//! 3. HTTP/2 floods: rapid reset (100 connections with a wrong token, 20 with the
//!    bot's), 100 connections holding 300 streams each, 100 CONTINUATION floods;
//! 4. oversized heads: 500 of 512 KiB, 500 with 2,000 fields, 200 HTTP/2 header
//!    lists of 100 KiB.
//!
//! keyward's RSS is sampled every 250 ms; before and after each phase it is read
//! with keyward quiet.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use keyward_tests::client::BotClient;
use keyward_tests::greedy::{self, H2Report, Slowness, Trickled};
use keyward_tests::mock::Mock;
use keyward_tests::process::{KeywardProcess, VaultKey};
use keyward_tests::{FixturePolicy, Serving};

use crate::bots::{Connection, Kind};
use keyward_bench::procfs::PeakSampler;

use crate::{KeywardExe, Options, Report};

const SERVER: &str = "handshake_timeout_ms = 5000\nheader_timeout_ms = 5000\nbody_timeout_ms = 5000\nmax_connections = 1024";
/// The most memory keyward may use under any of these attacks.
const RSS_BOUND_MIB: f64 = 512.0;

/// The bots that must keep being served while a phase runs.
struct Witnesses {
    stop: Arc<AtomicBool>,
    steady: tokio::task::JoinHandle<BTreeMap<u16, u32>>,
    newcomers: tokio::task::JoinHandle<(Vec<Duration>, Vec<String>)>,
}

impl Witnesses {
    fn start(keyward: &KeywardProcess) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (client, tokens, port) = (
            keyward.client.clone(),
            keyward.tokens.clone(),
            keyward.bot_addr.port(),
        );
        let steady = {
            let (stop, client, tokens) = (stop.clone(), client.clone(), tokens.clone());
            tokio::spawn(async move {
                let mut statuses = BTreeMap::new();
                let mut connection = Connection::open(&client, false)
                    .await
                    .expect("the steady bot connects before the attack");
                while !stop.load(Ordering::Relaxed) {
                    let status = if connection.ready().await {
                        let request = Kind::Account.request(&tokens, port, false, 0);
                        connection
                            .send(request, Duration::from_secs(30))
                            .await
                            .map_or(0, |a| a.status)
                    } else {
                        0
                    };
                    *statuses.entry(status).or_default() += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                statuses
            })
        };
        let newcomers = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut waits = Vec::new();
                let mut failures = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    match newcomer(&client, &tokens, port).await {
                        Ok(()) => waits.push(started.elapsed()),
                        Err(why) => failures.push(why),
                    }
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                (waits, failures)
            })
        };
        Self {
            stop,
            steady,
            newcomers,
        }
    }

    async fn stop(self) -> (BTreeMap<u16, u32>, Vec<Duration>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let steady = self.steady.await.expect("steady bot");
        let (waits, failures) = self.newcomers.await.expect("newcomers");
        (steady, waits, failures)
    }
}

/// A new bot: connects and asks for its account once.
async fn newcomer(
    client: &BotClient,
    tokens: &keyward_tests::FixtureTokens,
    port: u16,
) -> Result<(), String> {
    let attempt = async {
        let mut connection = Connection::open(client, false)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let answer = connection
            .send(
                Kind::Account.request(tokens, port, false, 0),
                Duration::from_secs(30),
            )
            .await?;
        if answer.status == 200 {
            Ok(())
        } else {
            Err(format!("answered {}", answer.status))
        }
    };
    tokio::time::timeout(Duration::from_secs(120), attempt)
        .await
        .map_err(|_| "not served within 120 s".to_owned())?
}

/// Runs one phase between two quiet readings of keyward's memory; checks the
/// witnesses and the memory bound.
async fn phase<T: std::fmt::Debug>(
    report: &mut Report,
    keyward: &mut KeywardProcess,
    sampler: &PeakSampler,
    name: &str,
    attack: impl Future<Output = T>,
) -> T {
    let before = crate::settled_usage(keyward.pid).await;
    println!("\n{name}\n  before: {before}");
    sampler.reset();
    let witnesses = Witnesses::start(keyward);
    let started = Instant::now();
    let result = attack.await;
    let took = started.elapsed();
    let (steady, waits, failures) = witnesses.stop().await;
    let peak = sampler.peak() as f64 / 1024.0;
    let after = crate::settled_usage(keyward.pid).await;
    let longest = waits.iter().max().copied().unwrap_or_default();
    println!(
        "  took {:.1} s; peak RSS {peak:.1} MiB; after: {after}",
        took.as_secs_f64()
    );
    println!(
        "  steady bot: {steady:?}; newcomers: {} served (longest wait {:.1} s), {} not {failures:?}",
        waits.len(),
        longest.as_secs_f64(),
        failures.len()
    );
    report.check(
        !steady.is_empty() && steady.keys().all(|s| *s == 200),
        format!("{name}: the connected bot got 200 every time {steady:?}"),
    );
    report.check(
        failures.is_empty() && !waits.is_empty(),
        format!(
            "{name}: every newcomer bot was served ({} served, longest wait {:.1} s, failures {failures:?})",
            waits.len(),
            longest.as_secs_f64()
        ),
    );
    report.check(
        peak <= RSS_BOUND_MIB,
        format!("{name}: peak RSS {peak:.1} MiB within {RSS_BOUND_MIB} MiB"),
    );
    report.check(keyward.running(), format!("{name}: keyward still running"));
    result
}

fn summary(what: &str, result: &Trickled) {
    let mut closed = result.closed_after.clone();
    closed.sort();
    let median = closed.get(closed.len() / 2).copied().unwrap_or_default();
    println!(
        "  {what}: {} connected, {} refused or never let in, {} closed by keyward (median after {:.1} s, longest {:.1} s), {} still open, answers {:?}",
        result.connected,
        result.refused,
        result.closed_after.len(),
        median.as_secs_f64(),
        result.longest().as_secs_f64(),
        result.still_open,
        result.statuses
    );
}

/// Adds up HTTP/2 reports.
fn h2_summary(what: &str, reports: &[std::io::Result<H2Report>]) {
    let mut statuses: BTreeMap<u16, u32> = BTreeMap::new();
    let mut resets: BTreeMap<u32, u32> = BTreeMap::new();
    let mut goaways: BTreeMap<u32, u32> = BTreeMap::new();
    let (mut opened, mut closed, mut failed) = (0u64, 0u32, 0u32);
    for report in reports {
        let Ok(report) = report else {
            failed += 1;
            continue;
        };
        opened += u64::from(report.opened);
        closed += u32::from(report.closed);
        for (s, n) in &report.statuses {
            *statuses.entry(*s).or_default() += n;
        }
        for (c, n) in &report.resets {
            *resets.entry(*c).or_default() += n;
        }
        if let Some(code) = report.goaway {
            *goaways.entry(code).or_default() += 1;
        }
    }
    println!(
        "  {what}: {} connections ({failed} failed to connect), {opened} streams opened; answers {statuses:?}, resets by code {resets:?}, GOAWAY by code {goaways:?}, {closed} closed",
        reports.len()
    );
}

/// Runs `count` copies of `task` at once, at most `parallel` at a time.
async fn many<T, F>(count: u32, parallel: usize, task: impl Fn() -> F) -> Vec<T>
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    let gate = Arc::new(tokio::sync::Semaphore::new(parallel));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..count {
        let gate = gate.clone();
        let future = task();
        set.spawn(async move {
            let _permit = gate.acquire_owned().await;
            future.await
        });
    }
    let mut out = Vec::new();
    while let Some(one) = set.join_next().await {
        out.push(one.expect("attack task"));
    }
    out
}

pub(crate) async fn run(options: &Options) -> Report {
    let mut report = Report::default();
    let exe = KeywardExe::new();
    let mock = Mock::start().await;
    let mut keyward = KeywardProcess::spawn_serving(
        exe.path(),
        FixturePolicy::P0,
        Serving {
            upstream: Some((mock.url(), mock.ca.clone())),
            server_extra: SERVER.to_owned(),
            // The soak's load is far beyond a real account's order limits.
            account_extra: "exchange_limits_multiplier = 1000000".to_owned(),
            ..Serving::default()
        },
        VaultKey::File,
        &[],
    );
    println!(
        "greedy clients against keyward pid {} ({})",
        keyward.pid,
        SERVER.replace('\n', ", ")
    );
    let sampler = crate::rss_sampler(keyward.pid, Duration::from_millis(250));
    let client = keyward.client.clone();
    let port = keyward.bot_addr.port();
    let token = keyward.tokens.bot.clone();
    let authority = format!("localhost:{port}");
    let every = Duration::from_secs(1);

    let flood = options.flood;
    let (h1, h2) = phase(
        &mut report,
        &mut keyward,
        &sampler,
        &format!("{flood} connections at once"),
        async {
            let hold = Duration::from_secs(150);
            tokio::join!(
                greedy::trickle(
                    &client,
                    port,
                    &token,
                    Slowness::IdleHttp1,
                    flood / 2,
                    every,
                    hold
                ),
                greedy::trickle(
                    &client,
                    port,
                    &token,
                    Slowness::IdleHttp2,
                    flood - flood / 2,
                    every,
                    hold
                ),
            )
        },
    )
    .await;
    summary("idle after the handshake", &h1);
    summary("idle after the HTTP/2 preface", &h2);
    // Connections beyond the cap wait in the kernel's backlog, and past it their
    // SYNs are dropped and retried: some never get in before the client gives up,
    // which is the cap working. Every one let in must be closed by a deadline.
    report.check(
        h1.still_open + h2.still_open == 0
            && h1.longest().max(h2.longest()) < Duration::from_secs(10),
        format!(
            "of {flood} connections, every one let in was closed by keyward's deadlines ({} let in, {} held back until the client gave up, {} still open, longest {:.1} s)",
            h1.connected + h2.connected,
            h1.refused + h2.refused,
            h1.still_open + h2.still_open,
            h1.longest().max(h2.longest()).as_secs_f64()
        ),
    );

    let (heads, bodies) = phase(
        &mut report,
        &mut keyward,
        &sampler,
        "slowloris: 2,000 heads and 2,000 bodies a byte a second, renewed for 30 s",
        async {
            let started = Instant::now();
            let (mut heads, mut bodies) = (Trickled::default(), Trickled::default());
            while started.elapsed() < Duration::from_secs(30) {
                let hold = Duration::from_secs(20);
                let (h, b) = tokio::join!(
                    greedy::trickle(&client, port, &token, Slowness::Head, 2000, every, hold),
                    greedy::trickle(&client, port, &token, Slowness::Body, 2000, every, hold),
                );
                heads.merge(h);
                bodies.merge(b);
            }
            (heads, bodies)
        },
    )
    .await;
    summary("slow heads", &heads);
    summary("slow bodies", &bodies);
    report.check(
        heads.still_open + bodies.still_open == 0
            && heads.longest() < Duration::from_secs(10)
            && bodies.longest() < Duration::from_secs(10),
        format!(
            "every slow connection was closed by its deadline (longest {:.1} s and {:.1} s)",
            heads.longest().as_secs_f64(),
            bodies.longest().as_secs_f64()
        ),
    );

    let (resets_wrong, resets_valid, streams, continuation) = phase(
        &mut report,
        &mut keyward,
        &sampler,
        "HTTP/2 floods",
        async {
            let reset = |token: String, streams: u32| {
                let (client, authority) = (client.clone(), authority.clone());
                move || {
                    let (client, authority, token) = (client.clone(), authority.clone(), token.clone());
                    async move { greedy::rapid_reset(&client, &authority, &token, streams).await }
                }
            };
            let resets_wrong = many(100, 100, reset(keyward_tests::token("a", "flood"), 1000)).await;
            let resets_valid = many(20, 20, reset(token.clone(), 1000)).await;
            let streams = many(100, 100, || {
                let (client, authority, token) = (client.clone(), authority.clone(), token.clone());
                async move {
                    greedy::concurrent_streams(&client, &authority, &token, 300, Duration::from_secs(8))
                        .await
                }
            })
            .await;
            let continuation = many(100, 100, || {
                let (client, authority) = (client.clone(), authority.clone());
                async move { greedy::continuation_flood(&client, &authority, 1000, 16 * 1024).await }
            })
            .await;
            (resets_wrong, resets_valid, streams, continuation)
        },
    )
    .await;
    h2_summary(
        "rapid reset, wrong token, 1,000 streams each",
        &resets_wrong,
    );
    h2_summary(
        "rapid reset, the bot's token, 1,000 streams each",
        &resets_valid,
    );
    h2_summary("300 streams held open each", &streams);
    h2_summary(
        "CONTINUATION floods, 1,000 frames of 16 KiB each",
        &continuation,
    );
    let ended = |reports: &[std::io::Result<H2Report>]| {
        reports
            .iter()
            .all(|r| r.as_ref().is_ok_and(|r| r.goaway.is_some() || r.closed))
    };
    report.check(
        ended(&resets_wrong) && ended(&resets_valid) && ended(&continuation),
        "every rapid-reset and CONTINUATION connection was ended by keyward (GOAWAY or close)",
    );
    let refused_beyond_limit = streams.iter().all(|r| {
        r.as_ref()
            .is_ok_and(|r| r.resets.get(&greedy::REFUSED_STREAM).copied().unwrap_or(0) >= 200)
    });
    report.check(
        refused_beyond_limit,
        "streams beyond the advertised 100 were refused on every connection",
    );

    let (big, many_fields, h2_big) = phase(
        &mut report,
        &mut keyward,
        &sampler,
        "oversized heads",
        async {
            let big = many(500, 200, || {
                let (client, token) = (client.clone(), token.clone());
                async move {
                    greedy::oversized_header(&client, port, &token, 512 * 1024)
                        .await
                        .status
                }
            })
            .await;
            let many_fields = many(500, 200, || {
                let (client, token) = (client.clone(), token.clone());
                async move {
                    greedy::many_headers(&client, port, &token, 2000)
                        .await
                        .status
                }
            })
            .await;
            let h2_big =
                many(200, 200, || {
                    let (client, authority, token) =
                        (client.clone(), authority.clone(), token.clone());
                    async move {
                        greedy::h2_oversized_header(&client, &authority, &token, 100 * 1024).await
                    }
                })
                .await;
            (big, many_fields, h2_big)
        },
    )
    .await;
    let count = |statuses: &[u16]| {
        let mut by: BTreeMap<u16, u32> = BTreeMap::new();
        for s in statuses {
            *by.entry(*s).or_default() += 1;
        }
        by
    };
    println!("  512 KiB header: answers {:?}", count(&big));
    println!("  2,000 header fields: answers {:?}", count(&many_fields));
    h2_summary("HTTP/2 header list of 100 KiB", &h2_big);
    report.check(
        big.iter().chain(&many_fields).all(|s| *s == 431),
        "every oversized HTTP/1.1 head refused 431",
    );
    report.check(
        h2_big
            .iter()
            .all(|r| r.as_ref().is_ok_and(|r| !r.statuses.contains_key(&200))),
        "no oversized HTTP/2 header list served",
    );

    let panics = crate::panics_in(&keyward);
    report.check(
        panics.is_empty(),
        format!("no panic in keyward's log {panics:?}"),
    );
    drop(sampler);
    keyward.signal("TERM");
    let exit = keyward.wait(Duration::from_secs(30));
    report.check(
        exit.is_some_and(|s| s.success()),
        format!("keyward exited 0 on SIGTERM ({exit:?})"),
    );
    let (verified, said) = exe.verify_audit(&keyward.path().join("audit.jsonl"));
    report.check(verified, format!("keyward audit verify: {said}"));
    crate::keep_or_drop(keyward, options);
    report
}
