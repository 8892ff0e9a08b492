//! Confidence intervals for correlations: Fisher z (Pearson as scipy's
//! `PearsonRResult.confidence_interval`, Spearman with Fieller's 1.06 variance) and a
//! seeded percentile bootstrap over pairs.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use statrs::distribution::{ContinuousCDF, Normal};

use super::StatsError;

/// A two-sided confidence interval and how it was computed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    /// Lower bound (NaN when undefined).
    pub low: f64,
    /// Upper bound (NaN when undefined).
    pub high: f64,
    /// Confidence level, e.g. 0.95.
    pub level: f64,
    /// Method label: `fisher_z`, `fisher_z_fieller` or `bootstrap_percentile`.
    pub method: &'static str,
}

fn check_level(level: f64) -> Result<(), StatsError> {
    if level > 0.0 && level < 1.0 {
        Ok(())
    } else {
        Err(StatsError::InvalidParameter {
            name: "level",
            value: level,
            allowed: "must lie in (0, 1)",
        })
    }
}

fn fisher(
    r: f64,
    n: usize,
    level: f64,
    variance_factor: f64,
    method: &'static str,
) -> Result<Interval, StatsError> {
    check_level(level)?;
    if n <= 3 || !r.is_finite() {
        return Ok(Interval {
            low: f64::NAN,
            high: f64::NAN,
            level,
            method,
        });
    }
    let normal = Normal::new(0.0, 1.0).map_err(|_| StatsError::InvalidParameter {
        name: "level",
        value: level,
        allowed: "standard normal could not be built",
    })?;
    let h = normal.inverse_cdf(1.0 - (1.0 - level) / 2.0);
    let se = (variance_factor / (n as f64 - 3.0)).sqrt();
    let z = r.atanh();
    Ok(Interval {
        low: (z - h * se).tanh(),
        high: (z + h * se).tanh(),
        level,
        method,
    })
}

/// Fisher-z interval for Pearson's r from n pairs (NaN bounds for n ≤ 3), as scipy.
pub fn pearson_fisher_interval(r: f64, n: usize, level: f64) -> Result<Interval, StatsError> {
    fisher(r, n, level, 1.0, "fisher_z")
}

/// Fisher-z interval for Spearman's ρ with Fieller, Hartley & Pearson's variance 1.06/(n − 3).
pub fn spearman_fisher_interval(rho: f64, n: usize, level: f64) -> Result<Interval, StatsError> {
    fisher(rho, n, level, 1.06, "fisher_z_fieller")
}

/// Percentile bootstrap interval of `statistic` over resampled (x, y) pairs, seeded;
/// resamples where the statistic is NaN (e.g. a constant resample) are skipped.
pub fn bootstrap_interval(
    x: &[f64],
    y: &[f64],
    statistic: impl Fn(&[f64], &[f64]) -> f64,
    resamples: usize,
    level: f64,
    seed: u64,
) -> Result<Interval, StatsError> {
    check_level(level)?;
    if x.len() != y.len() {
        return Err(StatsError::LengthMismatch {
            left: x.len(),
            right: y.len(),
        });
    }
    let n = x.len();
    let method = "bootstrap_percentile";
    if n < 3 || resamples == 0 {
        return Ok(Interval {
            low: f64::NAN,
            high: f64::NAN,
            level,
            method,
        });
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut bx, mut by) = (vec![0.0; n], vec![0.0; n]);
    let mut stats = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        for k in 0..n {
            let i = rng.random_range(0..n);
            bx[k] = x[i];
            by[k] = y[i];
        }
        let s = statistic(&bx, &by);
        if s.is_finite() {
            stats.push(s);
        }
    }
    if stats.is_empty() {
        return Ok(Interval {
            low: f64::NAN,
            high: f64::NAN,
            level,
            method,
        });
    }
    stats.sort_by(f64::total_cmp);
    let alpha = (1.0 - level) / 2.0;
    Ok(Interval {
        low: quantile(&stats, alpha),
        high: quantile(&stats, 1.0 - alpha),
        level,
        method,
    })
}

/// Linear-interpolation quantile of sorted data (numpy's default method).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fisher_interval_contains_r_and_widens_for_spearman() {
        let p = pearson_fisher_interval(0.6, 10, 0.95).unwrap();
        let s = spearman_fisher_interval(0.6, 10, 0.95).unwrap();
        assert!(p.low < 0.6 && 0.6 < p.high);
        assert!(s.low < p.low && s.high > p.high);
    }

    #[test]
    fn fisher_interval_is_nan_for_three_pairs_and_rejects_bad_levels() {
        assert!(pearson_fisher_interval(0.5, 3, 0.95).unwrap().low.is_nan());
        assert!(pearson_fisher_interval(0.5, 10, 1.5).is_err());
    }

    #[test]
    fn bootstrap_interval_is_deterministic_and_ordered() {
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let y = [1.5, 1.9, 3.5, 3.9, 5.2, 5.8];
        let stat = |a: &[f64], b: &[f64]| {
            crate::stats::correlation::pearson(a, b).map_or(f64::NAN, |c| c.estimate)
        };
        let a = bootstrap_interval(&x, &y, stat, 500, 0.9, 3).unwrap();
        let b = bootstrap_interval(&x, &y, stat, 500, 0.9, 3).unwrap();
        assert_eq!(a, b);
        assert!(a.low <= a.high && a.high <= 1.0);
    }
}
