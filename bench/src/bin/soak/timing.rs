//! AUTH-006 of the attack corpus: does the time keyward takes to refuse a wrong
//! token say how much of it was right? Wrong tokens of three kinds are sent over
//! one kept-alive TLS connection in a shuffled order (so drift in the machine's
//! load falls on all of them alike), each request timed from sending to the end of
//! the answer, and the latency distributions compared with the two-sample
//! Kolmogorov–Smirnov test:
//!
//! - `prefix`: the valid token with its last byte changed (it shares all but one
//!   byte with it, more than the 31 the corpus asks for);
//! - `first byte`: the valid token with its first byte changed (it shares none of
//!   its prefix, as the corpus asks; it is no longer a keyward token's shape);
//! - `secret first byte`: a well-formed token of the same bot whose secret differs
//!   from the valid one from its first character (the same code path as `prefix`).
//!
//! The corpus's bar: no statistically significant difference, KS p > 0.01, for
//! `prefix` against `first byte`; `prefix` against `secret first byte` is printed
//! beside it. Under no difference at all, a p-value is uniform: one run in a hundred
//! falls below 0.01 by chance, more on a machine whose load comes in bursts.

use std::time::{Duration, Instant};

use keyward_tests::FixturePolicy;
use keyward_tests::mock::Mock;
use keyward_tests::process::{KeywardProcess, VaultKey};
use keyward_tests::stats::{self, KsTest};

use crate::bots::{Connection, request};
use crate::{KeywardExe, Options, Report};

/// Requests sent first and not counted (connection, caches, allocator warm-up).
const WARM_UP: u64 = 1000;
/// The corpus's significance level.
const ALPHA: f64 = 0.01;

/// The wrong tokens, derived from the valid one.
fn wrong_tokens(valid: &str) -> [(&'static str, String); 3] {
    let change = |c: u8| if c == b'A' { 'B' } else { 'A' };
    let bytes = valid.as_bytes();
    let last = bytes.len() - 1;
    let prefix = format!("{}{}", &valid[..last], change(bytes[last]));
    let first = format!("{}{}", change(bytes[0]), &valid[1..]);
    // `kw_a_` is public (the bot's name); the secret starts after it.
    let secret_at = valid.len() - keyward_policy::TOKEN_SECRET_LEN;
    let secret = format!(
        "{}{}{}",
        &valid[..secret_at],
        change(bytes[secret_at]),
        &valid[secret_at + 1..]
    );
    [
        ("prefix", prefix),
        ("first byte", first),
        ("secret first byte", secret),
    ]
}

pub(crate) async fn run(options: &Options) -> Report {
    let mut report = Report::default();
    let exe = KeywardExe::new();
    let mock = Mock::start().await;
    let keyward = KeywardProcess::spawn(
        exe.path(),
        FixturePolicy::P0,
        (mock.url(), mock.ca.clone()),
        // What is measured is the comparison of every wrong token, so failed
        // authentications are not throttled here (by default a source gets 429 after
        // 20 in 10 s, without the comparison being skipped).
        "auth_failure_rate = \"1000000000/s\"",
        "",
        VaultKey::File,
        // Refusals are logged at info; the log is not what is measured.
        &[("KEYWARD_LOG", "warn")],
    );
    let valid = keyward.tokens.bot.clone();
    let tokens = wrong_tokens(&valid);
    for (name, token) in &tokens {
        assert_eq!(token.len(), valid.len(), "{name}");
        let shared = token
            .bytes()
            .zip(valid.bytes())
            .take_while(|(a, b)| a == b)
            .count();
        println!(
            "  {name}: shares its first {shared} of {} bytes with the valid token",
            valid.len()
        );
    }
    let port = keyward.bot_addr.port();
    let mut connection = Connection::open(&keyward.client, false)
        .await
        .expect("a connection to keyward");
    let per_kind = options.requests / 3;
    println!(
        "timing: {} requests ({per_kind} of each wrong token, shuffled) after {WARM_UP} warm-up requests, one kept-alive TLS connection",
        per_kind * 3
    );
    let mut samples: [Vec<f64>; 3] = Default::default();
    let mut order: Vec<usize> = Vec::with_capacity(3);
    let mut draw = options.seed;
    let mut unexpected = Vec::new();
    let started = Instant::now();
    for round in 0..(WARM_UP / 3 + per_kind) {
        // A fresh random order of the three kinds each round.
        order.clear();
        order.extend([0, 1, 2]);
        for i in (1..3).rev() {
            draw = draw
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let j = usize::try_from((draw >> 33) % (i as u64 + 1)).unwrap_or(0);
            order.swap(i, j);
        }
        for &kind in &order {
            let request = request(
                "GET",
                "/api/v3/account?timestamp=1&signature=x",
                &tokens[kind].1,
                String::new(),
                port,
                false,
            );
            assert!(connection.ready().await, "the connection closed");
            let sent = Instant::now();
            let answer = connection
                .send(request, Duration::from_secs(10))
                .await
                .expect("an answer");
            let took = sent.elapsed();
            if (answer.status, answer.reason.as_deref()) != (401, Some("auth_invalid"))
                && unexpected.len() < 5
            {
                unexpected.push(format!(
                    "{}: {} {:?}",
                    tokens[kind].0, answer.status, answer.reason
                ));
            }
            if round >= WARM_UP / 3 {
                samples[kind].push(took.as_secs_f64() * 1e6);
            }
        }
    }
    println!("  {:.1} s", started.elapsed().as_secs_f64());
    for (i, (name, _)) in tokens.iter().enumerate() {
        let mut sorted = samples[i].clone();
        sorted.sort_by(|a, b| a.total_cmp(b));
        println!(
            "  {name:>17}: n {}, median {:.1} µs, p10 {:.1}, p90 {:.1}, p99 {:.1}",
            sorted.len(),
            stats::quantile(&sorted, 0.5),
            stats::quantile(&sorted, 0.1),
            stats::quantile(&sorted, 0.9),
            stats::quantile(&sorted, 0.99)
        );
    }
    report.check(
        unexpected.is_empty(),
        format!("every wrong token refused 401 auth_invalid {unexpected:?}"),
    );
    // The corpus's comparison decides; the second is printed beside it, to tell a
    // difference in the comparison of secrets from one in a token's shape.
    let KsTest { statistic, p_value } =
        stats::ks_two_sample(&mut samples[0].clone(), &mut samples[1].clone());
    report.check(
        p_value > ALPHA,
        format!(
            "AUTH-006: {} vs {}: KS D = {statistic:.4}, p = {p_value:.3} (must exceed {ALPHA})",
            tokens[0].0, tokens[1].0
        ),
    );
    let KsTest { statistic, p_value } =
        stats::ks_two_sample(&mut samples[0].clone(), &mut samples[2].clone());
    println!(
        "  (for comparison: {} vs {}: KS D = {statistic:.4}, p = {p_value:.3})",
        tokens[0].0, tokens[2].0
    );
    report.check(
        mock.records().is_empty(),
        "nothing reached the exchange".to_owned(),
    );
    crate::keep_or_drop(keyward, options);
    report
}
