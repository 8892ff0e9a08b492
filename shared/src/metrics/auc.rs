//! ROC AUC and partial AUC exactly as scikit-learn's `roc_curve` / `roc_auc_score` compute
//! them (ties count half), plus the raw DCASE partial AUC (area over FPR ∈ [0, p] / p).

use super::MetricsError;

/// An ROC curve: false- and true-positive rates at each distinct score threshold,
/// starting at (0, 0), as `sklearn.metrics.roc_curve(drop_intermediate=False)`.
#[derive(Debug, Clone, PartialEq)]
pub struct RocCurve {
    /// False-positive rate at each threshold, non-decreasing, from 0 to 1.
    pub fpr: Vec<f64>,
    /// True-positive rate at each threshold, non-decreasing, from 0 to 1.
    pub tpr: Vec<f64>,
}

/// Partial AUC up to a maximum false-positive rate, in both conventions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PartialAuc {
    /// McClish-standardised partial AUC, `roc_auc_score(max_fpr=p)` (0.5 = chance, 1 = perfect).
    pub mcclish: f64,
    /// Raw partial area over FPR ∈ [0, p] divided by p (DCASE's pAUC; chance = p / 2).
    pub raw: f64,
}

fn check_inputs(is_anomaly: &[bool], scores: &[f64]) -> Result<(usize, usize), MetricsError> {
    if is_anomaly.len() != scores.len() {
        return Err(MetricsError::LengthMismatch {
            what: "labels",
            left: is_anomaly.len(),
            right: scores.len(),
        });
    }
    if let Some(index) = scores.iter().position(|s| !s.is_finite()) {
        return Err(MetricsError::NonFinite {
            what: "scores",
            index,
        });
    }
    let n_anomaly = is_anomaly.iter().filter(|&&a| a).count();
    let n_normal = is_anomaly.len() - n_anomaly;
    if n_anomaly == 0 || n_normal == 0 {
        return Err(MetricsError::SingleClass {
            n_normal,
            n_anomaly,
        });
    }
    Ok((n_normal, n_anomaly))
}

/// The ROC curve of `scores` (higher = more anomalous) against `is_anomaly`.
///
/// Errors when lengths differ, a score is not finite, or only one class is present.
pub fn roc_curve(is_anomaly: &[bool], scores: &[f64]) -> Result<RocCurve, MetricsError> {
    check_inputs(is_anomaly, scores)?;
    let mut order: Vec<usize> = (0..scores.len()).collect();
    // Descending by score; ties are grouped below, so their inner order does not matter.
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tps, mut fps) = (vec![0.0_f64], vec![0.0_f64]);
    let (mut tp, mut fp) = (0.0_f64, 0.0_f64);
    for (k, &i) in order.iter().enumerate() {
        if is_anomaly[i] {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        let last_of_tie = k + 1 == order.len() || scores[order[k + 1]] != scores[i];
        if last_of_tie {
            tps.push(tp);
            fps.push(fp);
        }
    }
    let (tp_total, fp_total) = (tp, fp);
    Ok(RocCurve {
        fpr: fps.iter().map(|f| f / fp_total).collect(),
        tpr: tps.iter().map(|t| t / tp_total).collect(),
    })
}

/// Trapezoidal area under (x, y), as `numpy.trapezoid(y, x)`.
fn trapezoid(x: &[f64], y: &[f64]) -> f64 {
    x.windows(2)
        .zip(y.windows(2))
        .map(|(xw, yw)| (xw[1] - xw[0]) * (yw[1] + yw[0]) / 2.0)
        .sum()
}

/// ROC AUC as `sklearn.metrics.roc_auc_score` (ties between a normal and an anomaly count half).
pub fn roc_auc(is_anomaly: &[bool], scores: &[f64]) -> Result<f64, MetricsError> {
    let roc = roc_curve(is_anomaly, scores)?;
    Ok(trapezoid(&roc.fpr, &roc.tpr))
}

/// Partial AUC at `max_fpr` ∈ (0, 1]: McClish-standardised (scikit-learn `max_fpr`) and raw
/// (area over FPR ∈ [0, max_fpr] divided by max_fpr, linear interpolation at max_fpr).
pub fn partial_auc(
    is_anomaly: &[bool],
    scores: &[f64],
    max_fpr: f64,
) -> Result<PartialAuc, MetricsError> {
    if !(max_fpr > 0.0 && max_fpr <= 1.0) {
        return Err(MetricsError::InvalidParameter {
            name: "max_fpr",
            value: max_fpr,
            allowed: "must lie in (0, 1]",
        });
    }
    let roc = roc_curve(is_anomaly, scores)?;
    if max_fpr == 1.0 {
        let area = trapezoid(&roc.fpr, &roc.tpr);
        return Ok(PartialAuc {
            mcclish: area,
            raw: area,
        });
    }
    // np.searchsorted(fpr, max_fpr, "right"): first index with fpr > max_fpr (exists: fpr ends at 1).
    let stop = roc.fpr.partition_point(|&f| f <= max_fpr);
    let (x0, x1) = (roc.fpr[stop - 1], roc.fpr[stop]);
    let (y0, y1) = (roc.tpr[stop - 1], roc.tpr[stop]);
    let slope = (y1 - y0) / (x1 - x0);
    let y_at = slope * (max_fpr - x0) + y0;
    let mut fpr = roc.fpr[..stop].to_vec();
    let mut tpr = roc.tpr[..stop].to_vec();
    fpr.push(max_fpr);
    tpr.push(y_at);
    let partial = trapezoid(&fpr, &tpr);
    let min_area = 0.5 * max_fpr * max_fpr;
    let max_area = max_fpr;
    Ok(PartialAuc {
        mcclish: 0.5 * (1.0 + (partial - min_area) / (max_area - min_area)),
        raw: partial / max_fpr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn perfect_separation_gives_auc_one() {
        let labels = [false, false, true, true];
        let scores = [0.1, 0.2, 0.8, 0.9];
        assert_eq!(roc_auc(&labels, &scores).unwrap(), 1.0);
        let p = partial_auc(&labels, &scores, 0.1).unwrap();
        assert_eq!(p.mcclish, 1.0);
        assert_eq!(p.raw, 1.0);
    }

    #[test]
    fn all_tied_scores_give_one_half() {
        let labels = [false, true, false, true];
        let scores = [1.0; 4];
        assert_eq!(roc_auc(&labels, &scores).unwrap(), 0.5);
        let p = partial_auc(&labels, &scores, 0.1).unwrap();
        assert!((p.mcclish - 0.5).abs() < 1e-12);
        assert!((p.raw - 0.05).abs() < 1e-12);
    }

    #[test]
    fn a_single_class_is_an_error_not_a_panic() {
        let err = roc_auc(&[false, false], &[0.1, 0.2]).unwrap_err();
        assert_eq!(
            err,
            MetricsError::SingleClass {
                n_normal: 2,
                n_anomaly: 0
            }
        );
    }

    #[test]
    fn nan_scores_and_bad_max_fpr_are_rejected() {
        assert!(matches!(
            roc_auc(&[false, true], &[0.1, f64::NAN]),
            Err(MetricsError::NonFinite { index: 1, .. })
        ));
        assert!(matches!(
            partial_auc(&[false, true], &[0.1, 0.2], 0.0),
            Err(MetricsError::InvalidParameter { .. })
        ));
    }

    proptest! {
        #[test]
        fn auc_equals_the_mann_whitney_pair_count_with_ties_as_half(
            data in prop::collection::vec((any::<bool>(), -4i32..4), 2..30)
        ) {
            let labels: Vec<bool> = data.iter().map(|d| d.0).collect();
            let scores: Vec<f64> = data.iter().map(|d| f64::from(d.1)).collect();
            prop_assume!(labels.iter().any(|&l| l) && labels.iter().any(|&l| !l));
            let (mut wins, mut pairs) = (0.0, 0.0);
            for (i, &ai) in labels.iter().enumerate() {
                for (j, &aj) in labels.iter().enumerate() {
                    if ai && !aj {
                        pairs += 1.0;
                        wins += if scores[i] > scores[j] { 1.0 } else if scores[i] == scores[j] { 0.5 } else { 0.0 };
                    }
                }
            }
            prop_assert!((roc_auc(&labels, &scores).unwrap() - wins / pairs).abs() < 1e-12);
        }
    }

    proptest! {
        #[test]
        fn negating_scores_gives_one_minus_auc(
            data in prop::collection::vec((any::<bool>(), -5i32..5), 2..40)
        ) {
            let labels: Vec<bool> = data.iter().map(|d| d.0).collect();
            let scores: Vec<f64> = data.iter().map(|d| f64::from(d.1)).collect();
            prop_assume!(labels.iter().any(|&l| l) && labels.iter().any(|&l| !l));
            let neg: Vec<f64> = scores.iter().map(|s| -s).collect();
            let a = roc_auc(&labels, &scores).unwrap();
            let b = roc_auc(&labels, &neg).unwrap();
            prop_assert!((a + b - 1.0).abs() < 1e-12);
        }
    }
}
