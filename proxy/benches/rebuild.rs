//! What a restart costs after a full day of trading: the budgets and the order record
//! rebuilt from an audit log of 200,000 forwarded orders (Binance's daily maximum for
//! one account, one every 0.432 s), each a `request` record and its `outcome`, as
//! keyward writes them.
//!
//! The same day read back from the checkpoint a clean stop writes is measured
//! beside it (`from_checkpoint`), and so is writing that checkpoint, and the
//! open-order check and the pruning of old orders over that day's record
//! (`open_order_check`, `prune_check`).
//!
//! `cargo bench -p keyward --bench rebuild`

// A bench harness, like a test: a failed setup is a failed run, and it reports on
// stdout.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use keyward::budgets::Budgets;
use keyward::config::Config;
use keyward::orders::OrderBook;

const ORDERS: u64 = 200_000;

/// A directory with the configuration and the day's audit log.
struct Day {
    dir: PathBuf,
    config: Config,
    now: SystemTime,
}

impl Drop for Day {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn day() -> Day {
    let dir = std::env::temp_dir().join(format!("keyward-bench-rebuild-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let now = SystemTime::now();
    let start = now - Duration::from_secs(86_400);
    let expires = time::OffsetDateTime::from(now + Duration::from_secs(30 * 86_400))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let config_text = format!(
        "[vault]\nfile = \"keyward.vault\"\nkey = \"file:master.key\"\n\n\
         [accounts.main]\nvenue = \"binance-spot\"\nsecret = \"main\"\n\
         daily_notional = \"100000000\"\nmax_orders = \"300000/d\"\n\n\
         [bots.grid]\naccount = \"main\"\ntokens = [\"sha256:{}\"]\nexpires = \"{expires}\"\n\
         allow = [\"trade\"]\nsymbols = [\"BTCUSDT\"]\norder_types = [\"LIMIT\"]\nmax_order_notional = \"1000\"\n\
         daily_notional = \"100000000\"\nmax_orders = \"300000/d\"\n",
        "ab".repeat(32)
    );
    std::fs::write(dir.join("keyward.toml"), config_text).unwrap();
    let config = Config::load(&dir.join("keyward.toml"), now).unwrap();
    let mut log = String::with_capacity(200 * 1024 * 1024);
    for n in 0..ORDERS {
        let at = time::OffsetDateTime::from(start + Duration::from_millis(n * 432))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        let prev = "0".repeat(64);
        // Every tenth order is refused by the exchange (and refunded); the rest fill.
        let (status, refused, refunded) = if n % 10 == 0 {
            (400, true, r#""refunded_notional":"60","refunded_orders":1"#)
        } else {
            (200, false, r#""refunded_notional":"0","refunded_orders":0"#)
        };
        let _ = writeln!(
            log,
            r#"{{"prev":"{prev}","ts":"{at}","event":"request","request_id":"bench-{n}","peer":"127.0.0.1:45008","transport":"tls","http":"h2","bot":"grid","account":"main","venue":"binance-spot","method":"POST","path":"/api/v3/order","symbols":["BTCUSDT"],"orders":1,"notional":"60","decision":"allow","reason":null,"status":null,"mode":"enforce","stripped":[],"legs":[{{"symbol":"BTCUSDT","side":"BUY","type":"LIMIT","execution":"limit","qty":"0.001","price":"60000","client_id":"c{n}"}}]}}"#
        );
        let _ = writeln!(
            log,
            r#"{{"prev":"{prev}","ts":"{at}","event":"outcome","request_id":"bench-{n}","upstream_status":{status},"refused":{refused},"error":null,"upstream_ms":1,"total_ms":2,"results":[{{"result":"placed","id":"{n}","client_id":"c{n}","open":false}}],{refunded}}}"#
        );
    }
    std::fs::write(dir.join("audit.jsonl"), log).unwrap();
    Day { dir, config, now }
}

fn rebuild(c: &mut Criterion) {
    let day = day();
    let audit = day.dir.join("audit.jsonl");
    let mut group = c.benchmark_group("rebuild_200k_orders");
    group.bench_function("read_and_parse", |b| {
        b.iter(|| {
            let mut records = 0u64;
            keyward::budgets::each_audit_record(&audit, day.now, |_| records += 1);
            black_box(records)
        });
    });
    // A start keeps what it rebuilt: freeing it is not part of the measurement.
    group.bench_function("budgets", |b| {
        b.iter_with_large_drop(|| Budgets::rebuild(&day.config, &audit, day.now));
    });
    group.bench_function("order_record", |b| {
        b.iter_with_large_drop(|| OrderBook::rebuild(&audit, day.now));
    });
    // What a start does: one pass for both.
    group.bench_function("budgets_and_order_record", |b| {
        b.iter_with_large_drop(|| {
            keyward::budgets::rebuild_from_audit(&day.config, &audit, day.now)
        });
    });
    // A start after a clean stop: the checkpoint read back, no record after it.
    let (budgets, orders) = keyward::budgets::rebuild_from_audit(&day.config, &audit, day.now);
    keyward::checkpoint::write(&day.config, &budgets, &orders).unwrap();
    let checkpoint = keyward::checkpoint::file(&day.config);
    println!(
        "checkpoint of a 200,000-order day: {} bytes",
        std::fs::metadata(&checkpoint).unwrap().len()
    );
    group.bench_function("checkpoint_write", |b| {
        b.iter(|| keyward::checkpoint::write(&day.config, &budgets, &orders).unwrap());
    });
    group.bench_function("from_checkpoint", |b| {
        b.iter_with_large_drop(|| {
            keyward::checkpoint::resume(&day.config, &audit, day.now).unwrap()
        });
    });
    // The open-order check keyward runs every 10 s, against that day's record (every
    // order of it filled) with one order someone else placed listed open. It holds
    // the record's lock, which every order waits for. Changes nothing after the
    // first iteration, so every iteration does the same work.
    let btc = keyward_policy::Symbol::new("BTCUSDT").unwrap();
    let listed = [keyward_venues::Listed {
        symbol: btc.clone(),
        id: "someone-else".to_owned(),
        client_id: None,
        open: true,
    }];
    group.bench_function("open_order_check", |b| {
        b.iter(|| {
            let symbols = orders.tracked_symbols("main");
            orders.reconcile("main", &btc, &listed, day.now);
            black_box(symbols)
        });
    });
    // The pruning of orders closed more than a day ago that follows each check, with
    // none old enough yet: what every check pays for holding a day of orders.
    let two_days_ago = day.now - Duration::from_secs(2 * 86_400);
    group.bench_function("prune_check", |b| {
        b.iter(|| orders.prune(black_box(two_days_ago)));
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_secs(10))
        .sample_size(10);
    targets = rebuild
}
criterion_main!(benches);
