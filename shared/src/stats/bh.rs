//! Benjamini–Hochberg q-values over a declared family of tests.

/// Benjamini–Hochberg adjusted p-values (q-values), as `scipy.stats.false_discovery_control`
/// and the reference study's `benjamini_hochberg`: `q₍ᵢ₎ = min_{k≥i} p₍ₖ₎·m/k`, capped at 1.
/// Non-finite p-values stay NaN and do not count towards the family size m.
pub fn benjamini_hochberg(p_values: &[f64]) -> Vec<f64> {
    let mut q = vec![f64::NAN; p_values.len()];
    let mut finite: Vec<usize> = (0..p_values.len())
        .filter(|&i| p_values[i].is_finite())
        .collect();
    if finite.is_empty() {
        return q;
    }
    // Stable sort by p, as numpy's argsort for ties does not change the q-values.
    finite.sort_by(|&a, &b| p_values[a].total_cmp(&p_values[b]));
    let m = finite.len() as f64;
    let mut running = 1.0_f64;
    for (i, &idx) in finite.iter().enumerate().rev() {
        let rank = (i + 1) as f64;
        running = running.min(p_values[idx] * m / rank);
        q[idx] = running.min(1.0);
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn q_values_match_a_hand_computation() {
        // sorted p: 0.01·4/1 = 0.04, 0.03·4/2 = 0.06, 0.04·4/3 = 0.0533, 0.5·4/4 = 0.5;
        // the cumulative minimum from the largest p down gives 0.04, 0.0533, 0.0533, 0.5.
        let q = benjamini_hochberg(&[0.01, 0.04, 0.03, 0.5]);
        let third = 0.04 * 4.0 / 3.0;
        for (got, want) in q.iter().zip([0.04, third, third, 0.5]) {
            assert!((got - want).abs() < 1e-15, "{got} vs {want}");
        }
    }

    #[test]
    fn nan_p_values_stay_nan_and_shrink_the_family() {
        let q = benjamini_hochberg(&[f64::NAN, 0.02, 0.04]);
        assert!(q[0].is_nan());
        assert!((q[1] - 0.04).abs() < 1e-15);
        assert!((q[2] - 0.04).abs() < 1e-15);
    }

    proptest! {
        #[test]
        fn q_is_monotone_in_p_and_never_below_p(p in prop::collection::vec(0.0f64..=1.0, 1..30)) {
            let q = benjamini_hochberg(&p);
            for i in 0..p.len() {
                prop_assert!(q[i] >= p[i] - 1e-15 && q[i] <= 1.0);
                for j in 0..p.len() {
                    if p[i] <= p[j] {
                        prop_assert!(q[i] <= q[j] + 1e-15);
                    }
                }
            }
        }
    }
}
