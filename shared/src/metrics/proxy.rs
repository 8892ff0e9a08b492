//! Proxy-task metrics of the study: SI-SDR (torchmetrics, `zero_mean = false`), contrastive
//! uniformity and alignment (Wang & Isola), macro-F1 (scikit-learn) and mean L1 reconstruction error.

use ndarray::ArrayView2;

use super::MetricsError;

/// Scale-invariant SDR in dB as `torchmetrics.functional.scale_invariant_signal_distortion_ratio`
/// with `zero_mean = false`:
/// `α = (⟨ŝ,s⟩ + ε)/(‖s‖² + ε)`, `SI-SDR = 10·log10((‖αs‖² + ε)/(‖αs − ŝ‖² + ε))`, on f64
/// signals: ε = f64 machine epsilon.
pub fn si_sdr(estimate: &[f64], target: &[f64]) -> Result<f64, MetricsError> {
    si_sdr_eps(estimate, target, f64::EPSILON)
}

/// [`si_sdr`] as torchmetrics gives it for f32 signals (audio as the study's separation
/// proxy measures it): ε = f32 machine epsilon, summed in f64.
pub fn si_sdr_f32(estimate: &[f64], target: &[f64]) -> Result<f64, MetricsError> {
    si_sdr_eps(estimate, target, f64::from(f32::EPSILON))
}

fn si_sdr_eps(estimate: &[f64], target: &[f64], eps: f64) -> Result<f64, MetricsError> {
    if estimate.len() != target.len() {
        return Err(MetricsError::LengthMismatch {
            what: "estimate",
            left: estimate.len(),
            right: target.len(),
        });
    }
    if estimate.is_empty() {
        return Err(MetricsError::TooFew {
            what: "SI-SDR",
            got: 0,
            need: 1,
        });
    }
    for (what, v) in [("estimate", estimate), ("target", target)] {
        if let Some(index) = v.iter().position(|x| !x.is_finite()) {
            return Err(MetricsError::NonFinite { what, index });
        }
    }
    let dot: f64 = estimate.iter().zip(target).map(|(e, t)| e * t).sum();
    let energy: f64 = target.iter().map(|t| t * t).sum();
    let alpha = (dot + eps) / (energy + eps);
    let signal: f64 = target.iter().map(|t| (alpha * t).powi(2)).sum();
    let noise: f64 = target
        .iter()
        .zip(estimate)
        .map(|(t, e)| (alpha * t - e).powi(2))
        .sum();
    Ok(10.0 * ((signal + eps) / (noise + eps)).log10())
}

/// Uniformity `log mean_{i<j} exp(−2‖zᵢ − zⱼ‖²)` of the L2-normalised rows of `z`
/// (rows divided by `max(‖z‖, 1e-12)` as `F.normalize`); lower is better.
pub fn uniformity(z: ArrayView2<'_, f64>) -> Result<f64, MetricsError> {
    let n = z.nrows();
    if n < 2 {
        return Err(MetricsError::TooFew {
            what: "uniformity (rows)",
            got: n,
            need: 2,
        });
    }
    let normed = normalised_rows(z)?;
    let mut sum = 0.0;
    let mut pairs = 0usize;
    for i in 0..n {
        for j in (i + 1)..n {
            sum += (-2.0 * squared_distance(&normed[i], &normed[j])).exp();
            pairs += 1;
        }
    }
    Ok((sum / pairs as f64).ln())
}

/// Alignment `mean_i ‖ẑᵢ − ẑ′ᵢ‖²` between the L2-normalised rows of two views' embeddings
/// `z` and `z_prime` (row i of each: the same clip), normalised as [`uniformity`]; lower is
/// better.
pub fn alignment(
    z: ArrayView2<'_, f64>,
    z_prime: ArrayView2<'_, f64>,
) -> Result<f64, MetricsError> {
    if z.dim() != z_prime.dim() {
        return Err(MetricsError::LengthMismatch {
            what: "alignment (rows × columns of the two views)",
            left: z.len(),
            right: z_prime.len(),
        });
    }
    if z.nrows() == 0 {
        return Err(MetricsError::TooFew {
            what: "alignment (rows)",
            got: 0,
            need: 1,
        });
    }
    let (a, b) = (normalised_rows(z)?, normalised_rows(z_prime)?);
    let sum: f64 = a.iter().zip(&b).map(|(x, y)| squared_distance(x, y)).sum();
    Ok(sum / a.len() as f64)
}

/// The rows of `z`, each divided by `max(‖row‖, 1e-12)`; non-finite values are an error.
fn normalised_rows(z: ArrayView2<'_, f64>) -> Result<Vec<Vec<f64>>, MetricsError> {
    if let Some(index) = z.iter().position(|x| !x.is_finite()) {
        return Err(MetricsError::NonFinite {
            what: "embeddings",
            index,
        });
    }
    Ok(z.rows()
        .into_iter()
        .map(|r| {
            let norm = r.dot(&r).sqrt().max(1e-12);
            r.iter().map(|x| x / norm).collect()
        })
        .collect())
}

fn squared_distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum()
}

/// Macro-F1 over the classes present in `truth` or `predicted`, as
/// `sklearn.metrics.f1_score(average="macro")` (a class with no true or predicted
/// positives scores 0, scikit-learn's `zero_division` default).
pub fn macro_f1(truth: &[usize], predicted: &[usize]) -> Result<f64, MetricsError> {
    if truth.len() != predicted.len() {
        return Err(MetricsError::LengthMismatch {
            what: "predictions",
            left: predicted.len(),
            right: truth.len(),
        });
    }
    if truth.is_empty() {
        return Err(MetricsError::TooFew {
            what: "macro-F1",
            got: 0,
            need: 1,
        });
    }
    let mut classes: Vec<usize> = truth.iter().chain(predicted).copied().collect();
    classes.sort_unstable();
    classes.dedup();
    let mut total = 0.0;
    for &c in &classes {
        let tp = truth
            .iter()
            .zip(predicted)
            .filter(|&(&t, &p)| t == c && p == c)
            .count() as f64;
        let fp = truth
            .iter()
            .zip(predicted)
            .filter(|&(&t, &p)| t != c && p == c)
            .count() as f64;
        let fneg = truth
            .iter()
            .zip(predicted)
            .filter(|&(&t, &p)| t == c && p != c)
            .count() as f64;
        let denom = 2.0 * tp + fp + fneg;
        total += if denom == 0.0 { 0.0 } else { 2.0 * tp / denom };
    }
    Ok(total / classes.len() as f64)
}

/// Mean absolute reconstruction error `mean |x − x̂|` over all elements.
pub fn mean_l1_error(
    input: ArrayView2<'_, f64>,
    reconstruction: ArrayView2<'_, f64>,
) -> Result<f64, MetricsError> {
    if input.dim() != reconstruction.dim() {
        return Err(MetricsError::LengthMismatch {
            what: "reconstruction",
            left: reconstruction.len(),
            right: input.len(),
        });
    }
    if input.is_empty() {
        return Err(MetricsError::TooFew {
            what: "L1 error",
            got: 0,
            need: 1,
        });
    }
    let sum: f64 = input
        .iter()
        .zip(reconstruction.iter())
        .map(|(a, b)| (a - b).abs())
        .sum();
    Ok(sum / input.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn si_sdr_matches_the_torchmetrics_docstring_example() {
        let v = si_sdr(&[2.5, 0.0, 2.0, 8.0], &[3.0, -0.5, 2.0, 7.0]).unwrap();
        assert!((v - 18.4030).abs() < 1e-4, "{v}");
    }

    #[test]
    fn si_sdr_is_invariant_to_scaling_the_estimate() {
        let t = [1.0, -2.0, 0.5, 3.0];
        let e = [0.9, -1.7, 0.8, 2.5];
        let scaled: Vec<f64> = e.iter().map(|x| 3.0 * x).collect();
        let (a, b) = (si_sdr(&e, &t).unwrap(), si_sdr(&scaled, &t).unwrap());
        assert!((a - b).abs() < 1e-9, "{a} vs {b}");
    }

    #[test]
    fn uniformity_of_two_antipodal_points_is_minus_eight() {
        let z = array![[1.0, 0.0], [-3.0, 0.0]];
        assert!((uniformity(z.view()).unwrap() + 8.0).abs() < 1e-12);
        assert!(uniformity(array![[1.0, 0.0]].view()).is_err());
    }

    #[test]
    fn uniformity_and_alignment_match_numpy() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/contrastive/contrastive.json");
        let fx: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let g = &fx["geometry"];
        let matrix = |v: &serde_json::Value| {
            let rows: Vec<Vec<f64>> = serde_json::from_value(v.clone()).unwrap();
            ndarray::Array2::from_shape_fn((rows.len(), rows[0].len()), |(i, j)| rows[i][j])
        };
        let (e, e2) = (matrix(&g["e"]), matrix(&g["e2"]));
        let u = uniformity(e.view()).unwrap();
        assert!((u - g["uniformity"].as_f64().unwrap()).abs() < 1e-9, "{u}");
        let a = alignment(e.view(), e2.view()).unwrap();
        assert!((a - g["alignment"].as_f64().unwrap()).abs() < 1e-9, "{a}");
    }

    #[test]
    fn alignment_of_identical_directions_is_zero_and_of_opposite_ones_four() {
        let z = array![[1.0, 0.0], [0.0, 2.0]];
        assert!(alignment(z.view(), (z.clone() * 5.0).view()).unwrap().abs() < 1e-15);
        assert!((alignment(z.view(), (-z.clone()).view()).unwrap() - 4.0).abs() < 1e-12);
        assert!(alignment(z.view(), array![[1.0, 0.0]].view()).is_err());
    }

    #[test]
    fn macro_f1_matches_a_hand_count() {
        // class 0: tp 1 fp 1 fn 1 → 0.5; class 1: tp 1 fp 1 fn 1 → 0.5; class 2: tp 1 → 1.
        let f = macro_f1(&[0, 0, 1, 1, 2], &[0, 1, 1, 0, 2]).unwrap();
        assert!((f - 2.0 / 3.0).abs() < 1e-15);
    }

    #[test]
    fn mean_l1_error_averages_absolute_differences() {
        let a = array![[1.0, 2.0], [3.0, 4.0]];
        let b = array![[1.5, 2.0], [2.0, 4.0]];
        assert!((mean_l1_error(a.view(), b.view()).unwrap() - 0.375).abs() < 1e-15);
        assert!(mean_l1_error(a.view(), array![[1.0]].view()).is_err());
    }
}
