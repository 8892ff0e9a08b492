//! Pearson r (t-test p, as `scipy.stats.pearsonr`), Spearman ρ (average ranks; exact
//! permutation p as `scipy.stats.permutation_test(permutation_type="pairings",
//! n_resamples=inf)` for n ≤ 10, seeded Monte Carlo above) and Kendall τ-b
//! (asymptotic p, as `scipy.stats.kendalltau(method="asymptotic")`).

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use statrs::distribution::{ContinuousCDF, StudentsT};

use super::StatsError;

/// The largest n for which Spearman's p is exact over all n! permutations.
pub const EXACT_PERMUTATION_MAX_N: usize = 10;

/// How a p-value was obtained, so every reported p carries its method.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PValueMethod {
    /// Student t-test with n − 2 degrees of freedom (Pearson).
    TTest,
    /// Exact two-sided permutation test over all n! pairings.
    ExactPermutation {
        /// Number of permutations enumerated (n!).
        permutations: u64,
    },
    /// Two-sided Monte Carlo permutation test, p = (count + 1)/(resamples + 1).
    MonteCarloPermutation {
        /// Random permutations drawn.
        resamples: u64,
        /// Seed of the ChaCha8 generator.
        seed: u64,
    },
    /// Normal approximation with tie correction (Kendall τ-b).
    Asymptotic,
    /// Not computed: the statistic is undefined (see the note).
    Undefined,
}

/// A correlation estimate with its two-sided p-value and how it was computed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Correlation {
    /// Number of pairs.
    pub n: usize,
    /// The coefficient (NaN when undefined).
    pub estimate: f64,
    /// Two-sided p-value (NaN when undefined).
    pub p_value: f64,
    /// How `p_value` was obtained.
    pub method: PValueMethod,
    /// Why the statistic is undefined, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Correlation {
    fn undefined(n: usize, note: impl Into<String>) -> Self {
        Self {
            n,
            estimate: f64::NAN,
            p_value: f64::NAN,
            method: PValueMethod::Undefined,
            note: Some(note.into()),
        }
    }
}

fn validate(x: &[f64], y: &[f64]) -> Result<Option<Correlation>, StatsError> {
    if x.len() != y.len() {
        return Err(StatsError::LengthMismatch {
            left: x.len(),
            right: y.len(),
        });
    }
    for (what, v) in [("x", x), ("y", y)] {
        if let Some(index) = v.iter().position(|a| !a.is_finite()) {
            return Err(StatsError::NonFinite { what, index });
        }
    }
    let n = x.len();
    if n < 3 {
        return Ok(Some(Correlation::undefined(
            n,
            format!("n = {n} < 3 pairs"),
        )));
    }
    for (what, v) in [("x", x), ("y", y)] {
        if v.iter().all(|a| *a == v[0]) {
            return Ok(Some(Correlation::undefined(
                n,
                format!("{what} is constant"),
            )));
        }
    }
    Ok(None)
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// Pearson's r computed as scipy does (centre, scale by max |·|, normalise, dot, clip).
fn pearson_r(x: &[f64], y: &[f64]) -> f64 {
    let centred = |v: &[f64]| {
        let m = mean(v);
        let c: Vec<f64> = v.iter().map(|a| a - m).collect();
        let scale = c.iter().fold(0.0_f64, |acc, a| acc.max(a.abs()));
        let c: Vec<f64> = c.iter().map(|a| a / scale).collect();
        let norm = c.iter().map(|a| a * a).sum::<f64>().sqrt();
        c.into_iter().map(|a| a / norm).collect::<Vec<f64>>()
    };
    let (xs, ys) = (centred(x), centred(y));
    xs.iter()
        .zip(&ys)
        .map(|(a, b)| a * b)
        .sum::<f64>()
        .clamp(-1.0, 1.0)
}

/// Two-sided t-test p-value of a Pearson r from n pairs.
fn pearson_p(r: f64, n: usize) -> f64 {
    if r.abs() >= 1.0 {
        return 0.0;
    }
    let df = (n - 2) as f64;
    let t = r * (df / (1.0 - r * r)).sqrt();
    match StudentsT::new(0.0, 1.0, df) {
        Ok(dist) => (2.0 * dist.sf(t.abs())).min(1.0),
        Err(_) => f64::NAN,
    }
}

/// Pearson's r with its two-sided t-test p-value, equal to `scipy.stats.pearsonr`.
///
/// n < 3 or a constant sample gives a labelled NaN.
pub fn pearson(x: &[f64], y: &[f64]) -> Result<Correlation, StatsError> {
    if let Some(undefined) = validate(x, y)? {
        return Ok(undefined);
    }
    let r = pearson_r(x, y);
    Ok(Correlation {
        n: x.len(),
        estimate: r,
        p_value: pearson_p(r, x.len()),
        method: PValueMethod::TTest,
        note: None,
    })
}

/// Ranks with ties given their average rank (1-based), as `scipy.stats.rankdata(method="average")`.
pub fn average_ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut ranks = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = avg;
        }
        i = j + 1;
    }
    ranks
}

/// Spearman ρ of already-ranked, centred data: dot product over the norms.
struct RankCorrelation {
    xc: Vec<f64>,
    yc: Vec<f64>,
    denom: f64,
}

impl RankCorrelation {
    fn new(x: &[f64], y: &[f64]) -> Self {
        let (rx, ry) = (average_ranks(x), average_ranks(y));
        let (mx, my) = (mean(&rx), mean(&ry));
        let xc: Vec<f64> = rx.iter().map(|a| a - mx).collect();
        let yc: Vec<f64> = ry.iter().map(|a| a - my).collect();
        let nx = xc.iter().map(|a| a * a).sum::<f64>().sqrt();
        let ny = yc.iter().map(|a| a * a).sum::<f64>().sqrt();
        Self {
            xc,
            yc,
            denom: nx * ny,
        }
    }

    /// ρ when x's ranks are paired with y's in the order `perm`.
    fn with_pairing(&self, perm: &[usize]) -> f64 {
        let dot: f64 = perm
            .iter()
            .zip(&self.yc)
            .map(|(&i, b)| self.xc[i] * b)
            .sum();
        (dot / self.denom).clamp(-1.0, 1.0)
    }
}

/// Two-sided permutation p from the null distribution counts, as scipy: relative tolerance
/// `100·eps·|observed|` when comparing, `p = 2·min(P(null ≤ obs), P(null ≥ obs))`, clipped to 1.
fn two_sided_p(less: u64, greater: u64, total: u64, adjustment: u64) -> f64 {
    let pl = (less + adjustment) as f64 / (total + adjustment) as f64;
    let pg = (greater + adjustment) as f64 / (total + adjustment) as f64;
    (2.0 * pl.min(pg)).clamp(0.0, 1.0)
}

/// Spearman ρ (average ranks for ties) with a permutation p-value: exact over all n!
/// pairings for n ≤ [`EXACT_PERMUTATION_MAX_N`], else `resamples` seeded random pairings.
///
/// n < 3 or a constant sample gives a labelled NaN.
pub fn spearman(
    x: &[f64],
    y: &[f64],
    resamples: u64,
    seed: u64,
) -> Result<Correlation, StatsError> {
    if let Some(undefined) = validate(x, y)? {
        return Ok(undefined);
    }
    let n = x.len();
    let rc = RankCorrelation::new(x, y);
    let identity: Vec<usize> = (0..n).collect();
    let observed = rc.with_pairing(&identity);
    let gamma = (f64::EPSILON * 100.0 * observed).abs();
    let (mut less, mut greater) = (0u64, 0u64);
    let mut count = |stat: f64| {
        if stat <= observed + gamma {
            less += 1;
        }
        if stat >= observed - gamma {
            greater += 1;
        }
    };
    let method = if n <= EXACT_PERMUTATION_MAX_N {
        // Heap's algorithm enumerates all n! orders.
        let mut perm = identity.clone();
        let mut c = vec![0usize; n];
        count(rc.with_pairing(&perm));
        let mut total = 1u64;
        let mut i = 0;
        while i < n {
            if c[i] < i {
                if i % 2 == 0 {
                    perm.swap(0, i);
                } else {
                    perm.swap(c[i], i);
                }
                count(rc.with_pairing(&perm));
                total += 1;
                c[i] += 1;
                i = 0;
            } else {
                c[i] = 0;
                i += 1;
            }
        }
        PValueMethod::ExactPermutation {
            permutations: total,
        }
    } else {
        if resamples == 0 {
            return Err(StatsError::InvalidParameter {
                name: "resamples",
                value: 0.0,
                allowed: "must be at least 1 for n > 10",
            });
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut perm = identity.clone();
        for _ in 0..resamples {
            perm.shuffle(&mut rng);
            count(rc.with_pairing(&perm));
        }
        PValueMethod::MonteCarloPermutation { resamples, seed }
    };
    let p_value = match method {
        PValueMethod::ExactPermutation { permutations } => {
            two_sided_p(less, greater, permutations, 0)
        }
        _ => two_sided_p(less, greater, resamples, 1),
    };
    Ok(Correlation {
        n,
        estimate: observed,
        p_value,
        method,
        note: None,
    })
}

/// Tie-group statistics of one sample for Kendall's variance (scipy's `count_rank_tie`): Σt(t−1)/2, Σt(t−1)(t−2), Σt(t−1)(2t+5).
fn tie_sums(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let (mut a, mut b, mut c) = (0.0, 0.0, 0.0);
    let mut i = 0;
    while i < s.len() {
        let mut j = i;
        while j + 1 < s.len() && s[j + 1] == s[i] {
            j += 1;
        }
        let t = (j - i + 1) as f64;
        a += t * (t - 1.0) / 2.0;
        b += t * (t - 1.0) * (t - 2.0);
        c += t * (t - 1.0) * (2.0 * t + 5.0);
        i = j + 1;
    }
    (a, b, c)
}

/// Kendall's τ-b with its asymptotic two-sided p-value (tie-corrected variance), as
/// `scipy.stats.kendalltau(method="asymptotic")`.
pub fn kendall_tau_b(x: &[f64], y: &[f64]) -> Result<Correlation, StatsError> {
    if let Some(undefined) = validate(x, y)? {
        return Ok(undefined);
    }
    let n = x.len();
    let (mut concordant_minus_discordant, mut tot_x, mut tot_y) = (0.0_f64, 0.0_f64, 0.0_f64);
    let pairs = (n * (n - 1) / 2) as f64;
    for i in 0..n {
        for j in (i + 1)..n {
            let dx = (x[i] - x[j]).signum() * f64::from(u8::from(x[i] != x[j]));
            let dy = (y[i] - y[j]).signum() * f64::from(u8::from(y[i] != y[j]));
            concordant_minus_discordant += dx * dy;
            if x[i] == x[j] {
                tot_x += 1.0;
            }
            if y[i] == y[j] {
                tot_y += 1.0;
            }
        }
    }
    let tau = (concordant_minus_discordant / ((pairs - tot_x).sqrt() * (pairs - tot_y).sqrt()))
        .clamp(-1.0, 1.0);
    let (xt, x0, x1) = tie_sums(x);
    let (yt, y0, y1) = tie_sums(y);
    let size = n as f64;
    let m = size * (size - 1.0);
    let var = (m * (2.0 * size + 5.0) - x1 - y1) / 18.0
        + (2.0 * xt * yt) / m
        + x0 * y0 / (9.0 * m * (size - 2.0));
    let z = concordant_minus_discordant / var.sqrt();
    let p_value = erfc(z.abs() / std::f64::consts::SQRT_2);
    Ok(Correlation {
        n,
        estimate: tau,
        p_value,
        method: PValueMethod::Asymptotic,
        note: None,
    })
}

fn erfc(x: f64) -> f64 {
    statrs::function::erf::erfc(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn perfectly_linear_data_has_pearson_one_and_p_zero() {
        let c = pearson(&[1.0, 2.0, 3.0, 4.0], &[2.0, 4.0, 6.0, 8.0]).unwrap();
        assert!((c.estimate - 1.0).abs() < 1e-15);
        assert_eq!(c.p_value, 0.0);
    }

    #[test]
    fn fewer_than_three_pairs_or_constant_input_give_a_labelled_nan() {
        let c = pearson(&[1.0, 2.0], &[1.0, 3.0]).unwrap();
        assert!(c.estimate.is_nan() && c.note.as_deref() == Some("n = 2 < 3 pairs"));
        let s = spearman(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0], 100, 0).unwrap();
        assert_eq!(s.method, PValueMethod::Undefined);
        assert_eq!(s.note.as_deref(), Some("x is constant"));
    }

    #[test]
    fn exact_spearman_for_a_perfect_ranking_of_five_has_p_of_two_over_120() {
        let s = spearman(
            &[1.0, 2.0, 3.0, 4.0, 5.0],
            &[10.0, 20.0, 25.0, 40.0, 50.0],
            0,
            0,
        )
        .unwrap();
        assert!((s.estimate - 1.0).abs() < 1e-15);
        assert_eq!(
            s.method,
            PValueMethod::ExactPermutation { permutations: 120 }
        );
        assert!((s.p_value - 2.0 / 120.0).abs() < 1e-15);
    }

    #[test]
    fn ties_get_average_ranks() {
        assert_eq!(
            average_ranks(&[3.0, 1.0, 3.0, 2.0]),
            vec![3.5, 1.0, 3.5, 2.0]
        );
    }

    #[test]
    fn monte_carlo_spearman_is_deterministic_for_a_seed() {
        let x: Vec<f64> = (0..15).map(f64::from).collect();
        let y: Vec<f64> = (0..15).map(|i| f64::from((i * 7) % 15)).collect();
        let a = spearman(&x, &y, 999, 7).unwrap();
        let b = spearman(&x, &y, 999, 7).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            a.method,
            PValueMethod::MonteCarloPermutation {
                resamples: 999,
                seed: 7
            }
        );
    }

    #[test]
    fn mismatched_lengths_are_an_error() {
        assert!(matches!(
            pearson(&[1.0], &[1.0, 2.0]),
            Err(StatsError::LengthMismatch { .. })
        ));
    }

    proptest! {
        #[test]
        fn spearman_is_invariant_under_monotone_transforms(
            pairs in prop::collection::vec((-100i32..100, -100i32..100), 3..9)
        ) {
            let x: Vec<f64> = pairs.iter().map(|p| f64::from(p.0)).collect();
            let y: Vec<f64> = pairs.iter().map(|p| f64::from(p.1)).collect();
            let tx: Vec<f64> = x.iter().map(|v| (v / 50.0).exp() * 3.0 + 1.0).collect();
            let a = spearman(&x, &y, 0, 0).unwrap();
            let b = spearman(&tx, &y, 0, 0).unwrap();
            if a.estimate.is_nan() {
                prop_assert!(b.estimate.is_nan());
            } else {
                prop_assert!((a.estimate - b.estimate).abs() < 1e-12);
                prop_assert!((a.p_value - b.p_value).abs() < 1e-12);
            }
        }
    }
}
