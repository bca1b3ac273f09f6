//! Statistics for the timing harness: the two-sample Kolmogorov–Smirnov test
//! (largest distance between two empirical distribution functions, and its
//! asymptotic p-value) and quantiles for reporting.

/// The outcome of a two-sample Kolmogorov–Smirnov test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KsTest {
    /// The largest vertical distance between the two empirical distribution
    /// functions.
    pub statistic: f64,
    /// The probability of a distance at least this large if both samples come from
    /// one distribution (asymptotic, with Stephens' small-sample correction).
    pub p_value: f64,
}

/// Two-sample Kolmogorov–Smirnov test of `a` against `b`. Sorts both.
///
/// Panics on an empty sample or a NaN: the harness measures durations, so either is
/// a bug in the caller.
pub fn ks_two_sample(a: &mut [f64], b: &mut [f64]) -> KsTest {
    assert!(
        !a.is_empty() && !b.is_empty(),
        "a KS test needs two samples"
    );
    let order = |x: &f64, y: &f64| x.partial_cmp(y).expect("no NaN in a sample");
    a.sort_by(order);
    b.sort_by(order);
    let (n, m) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j) = (0usize, 0usize);
    let mut statistic: f64 = 0.0;
    while i < a.len() && j < b.len() {
        // Step past every copy of the smaller value in both samples, so ties move
        // both distribution functions together.
        let value = a[i].min(b[j]);
        while i < a.len() && a[i] <= value {
            i += 1;
        }
        while j < b.len() && b[j] <= value {
            j += 1;
        }
        statistic = statistic.max((i as f64 / n - j as f64 / m).abs());
    }
    let effective = (n * m / (n + m)).sqrt();
    let lambda = (effective + 0.12 + 0.11 / effective) * statistic;
    KsTest {
        statistic,
        p_value: kolmogorov_survival(lambda),
    }
}

/// P(K > lambda) for the Kolmogorov distribution:
/// 2 Σ_{k≥1} (−1)^(k−1) exp(−2 k² λ²).
pub fn kolmogorov_survival(lambda: f64) -> f64 {
    if lambda < 0.2 {
        // The series converges slowly here and the value is 1 to double precision.
        return 1.0;
    }
    let mut sum = 0.0;
    let mut sign = 1.0;
    for k in 1..=100 {
        let k = f64::from(k);
        let term = (-2.0 * k * k * lambda * lambda).exp();
        sum += sign * term;
        if term < 1e-16 {
            break;
        }
        sign = -sign;
    }
    (2.0 * sum).clamp(0.0, 1.0)
}

/// The `q`-quantile (0 ≤ q ≤ 1) of a sorted sample, by nearest rank.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kolmogorov_distribution_matches_its_tables() {
        // Critical values of the Kolmogorov distribution: 1.36 at 5 %, 1.63 at 1 %.
        assert!((kolmogorov_survival(1.358) - 0.05).abs() < 0.001);
        assert!((kolmogorov_survival(1.628) - 0.01).abs() < 0.0005);
        assert!((kolmogorov_survival(0.5) - 0.9639).abs() < 0.001);
        assert_eq!(kolmogorov_survival(0.0), 1.0);
        assert!(kolmogorov_survival(5.0) < 1e-20);
    }

    #[test]
    fn identical_samples_do_not_differ() {
        let mut a: Vec<f64> = (0..1000).map(f64::from).collect();
        let mut b = a.clone();
        let test = ks_two_sample(&mut a, &mut b);
        assert_eq!(test.statistic, 0.0);
        assert_eq!(test.p_value, 1.0);
    }

    #[test]
    fn interleaved_samples_from_one_distribution_pass() {
        // Even and odd values of one uniform grid: the same distribution.
        let mut a: Vec<f64> = (0..5000).map(|i| f64::from(2 * i)).collect();
        let mut b: Vec<f64> = (0..5000).map(|i| f64::from(2 * i + 1)).collect();
        let test = ks_two_sample(&mut a, &mut b);
        assert!(test.statistic <= 0.0002 + 1e-12, "{test:?}");
        assert!(test.p_value > 0.99, "{test:?}");
    }

    #[test]
    fn a_shift_of_a_tenth_of_the_spread_is_found() {
        // Uniform on [0, 1000) against uniform on [100, 1100): D = 0.1.
        let mut a: Vec<f64> = (0..5000).map(|i| f64::from(i) * 0.2).collect();
        let mut b: Vec<f64> = a.iter().map(|x| x + 100.0).collect();
        let test = ks_two_sample(&mut a, &mut b);
        assert!((test.statistic - 0.1).abs() < 0.001, "{test:?}");
        assert!(test.p_value < 1e-15, "{test:?}");
    }

    #[test]
    fn ties_move_both_distribution_functions() {
        let mut a = vec![1.0, 1.0, 2.0, 2.0];
        let mut b = vec![1.0, 2.0];
        assert_eq!(ks_two_sample(&mut a, &mut b).statistic, 0.0);
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let sorted: Vec<f64> = (1..=101).map(f64::from).collect();
        assert_eq!(quantile(&sorted, 0.5), 51.0);
        assert_eq!(quantile(&sorted, 0.99), 100.0);
        assert_eq!(quantile(&sorted, 0.0), 1.0);
        assert_eq!(quantile(&sorted, 1.0), 101.0);
    }
}
