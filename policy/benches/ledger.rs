//! What one order costs the budget ledger after a day of trading: a bot and its
//! account with `daily_notional` and `max_orders`, filled with 0, 20,000 or 200,000
//! earlier orders (Binance's daily maximum, one every 0.432 s), then one more order
//! spent and, every tenth, refunded. The cost must not grow with the orders before it.
//!
//! `cargo bench -p keyward-policy --bench ledger`

// A benchmark's fixtures are constants; a panic on one is a broken benchmark.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use keyward_policy::{BudgetLimits, Ledger, Scope, Spend};

/// One order every 0.432 s: 200,000 a day.
const STEP: Duration = Duration::from_millis(432);

fn filled(earlier: u64) -> (Ledger, [Scope; 2], SystemTime) {
    let scopes = [
        Scope::Bot(Arc::from("grid")),
        Scope::Account(Arc::from("main")),
    ];
    let mut ledger = Ledger::new();
    for scope in &scopes {
        ledger.set_limits(
            scope.clone(),
            BudgetLimits {
                daily_notional: Some("1000000000000".parse().expect("amount")),
                max_orders: Some("1000000/d".parse().expect("rate")),
                max_open_orders: None,
            },
        );
    }
    let mut at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    for n in 0..earlier {
        let spend = Spend {
            id: Arc::from(format!("r{n}")),
            at,
            notional: "60".parse().expect("amount"),
            orders: 1,
        };
        // Recorded without the check: the old ledger checked in time proportional to
        // the window, and filling it with checks would take hours.
        ledger.record(&scopes, &spend);
        at += STEP;
    }
    (ledger, scopes, at)
}

fn one_more_order(c: &mut Criterion) {
    let mut group = c.benchmark_group("ledger/one_more_order");
    let ids: Vec<Arc<str>> = (0..1_000).map(|n| Arc::from(format!("next{n}"))).collect();
    for earlier in [0u64, 20_000, 200_000] {
        let (mut ledger, scopes, mut at) = filled(earlier);
        let mut n = 0usize;
        group.bench_with_input(BenchmarkId::from_parameter(earlier), &earlier, |b, _| {
            b.iter(|| {
                let id = &ids[n % ids.len()];
                let spend = Spend {
                    id: id.clone(),
                    at,
                    notional: "60".parse().expect("amount"),
                    orders: 1,
                };
                let spent = ledger.spend(&scopes, &spend);
                if n.is_multiple_of(10) {
                    ledger.refund(id);
                }
                n += 1;
                at += STEP;
                black_box(spent)
            });
        });
    }
    group.finish();
}

fn quick() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = quick();
    targets = one_more_order
}
criterion_main!(benches);
