//! Mahalanobis scoring: mean and covariance (ddof 1, or scikit-learn's Ledoit–Wolf shrinkage)
//! of training-normal embeddings, pseudo-inverse, clip score = mean squared distance of its rows.

use nalgebra::{DMatrix, SymmetricEigen};
use ndarray::{Array1, Array2, ArrayView2, Axis};
use serde::Serialize;

use super::ProbeError;

/// How the covariance of training normals is estimated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CovarianceEstimator {
    /// Unbiased sample covariance (ddof 1), as the reference study.
    #[default]
    Sample,
    /// `sklearn.covariance.LedoitWolf().fit(X).covariance_` (biased covariance shrunk towards μI).
    LedoitWolf,
}

/// A fitted Mahalanobis scorer: training mean and pseudo-inverse covariance.
#[derive(Debug, Clone, PartialEq)]
pub struct Mahalanobis {
    /// Mean of the training rows.
    pub mean: Array1<f64>,
    /// Pseudo-inverse of the (possibly shrunk) covariance.
    pub precision: Array2<f64>,
    /// Ledoit–Wolf shrinkage used (0 for the sample covariance).
    pub shrinkage: f64,
}

fn check_finite(x: ArrayView2<'_, f64>, what: &str) -> Result<(), ProbeError> {
    if x.iter().all(|v| v.is_finite()) {
        Ok(())
    } else {
        Err(ProbeError::NonFinite {
            what: what.to_string(),
        })
    }
}

/// The column mean of at least two finite training rows (a covariance needs two).
fn checked_mean(x: ArrayView2<'_, f64>, what: &'static str) -> Result<Array1<f64>, ProbeError> {
    let n = x.nrows();
    if n < 2 {
        return Err(ProbeError::TooFewRows {
            what,
            got: n,
            need: 2,
        });
    }
    check_finite(x, "training embeddings")?;
    x.mean_axis(Axis(0)).ok_or(ProbeError::TooFewRows {
        what: "mean",
        got: 0,
        need: 1,
    })
}

/// Unbiased sample covariance (ddof 1) of the rows of `x`, with their mean.
pub fn sample_covariance(x: ArrayView2<'_, f64>) -> Result<(Array1<f64>, Array2<f64>), ProbeError> {
    let n = x.nrows();
    let mean = checked_mean(x, "sample covariance")?;
    let centred = &x - &mean;
    let cov = centred.t().dot(&centred) / (n as f64 - 1.0);
    Ok((mean, cov))
}

/// Ledoit–Wolf shrunk covariance and its shrinkage, as `sklearn.covariance.LedoitWolf`
/// (`assume_centered=False`): biased covariance S, μ = tr(S)/d, Σ = (1−δ)S + δμI.
pub fn ledoit_wolf(x: ArrayView2<'_, f64>) -> Result<(Array1<f64>, Array2<f64>, f64), ProbeError> {
    let (n, d) = x.dim();
    let mean = checked_mean(x, "Ledoit-Wolf covariance")?;
    let xc = &x - &mean;
    let nf = n as f64;
    let df = d as f64;
    let emp_cov = xc.t().dot(&xc) / nf;
    if d == 1 {
        // scikit-learn: a single feature is returned unshrunk, as the mean of squares.
        let v = xc.mapv(|a| a * a).mean().unwrap_or(0.0);
        return Ok((mean, Array2::from_elem((1, 1), v), 0.0));
    }
    let x2 = xc.mapv(|a| a * a);
    let emp_cov_trace = x2.sum_axis(Axis(0)) / nf;
    let mu = emp_cov_trace.sum() / df;
    let beta_sum = x2.t().dot(&x2).sum();
    let xtx = xc.t().dot(&xc);
    let delta_sum = xtx.mapv(|a| a * a).sum() / (nf * nf);
    let beta = 1.0 / (df * nf) * (beta_sum / nf - delta_sum);
    let delta = (delta_sum - 2.0 * mu * emp_cov_trace.sum() + df * mu * mu) / df;
    let beta = beta.min(delta);
    let shrinkage = if beta == 0.0 { 0.0 } else { beta / delta };
    let mut shrunk = emp_cov * (1.0 - shrinkage);
    for i in 0..d {
        shrunk[[i, i]] += shrinkage * mu;
    }
    Ok((mean, shrunk, shrinkage))
}

/// Moore–Penrose pseudo-inverse of a symmetric matrix through its eigen-decomposition,
/// cutting eigenvalues with |λ| ≤ d·eps·max|λ| (the `torch.linalg.pinv` default tolerance).
pub fn symmetric_pinv(m: &Array2<f64>) -> Result<Array2<f64>, ProbeError> {
    let d = m.nrows();
    let mat = DMatrix::from_fn(d, d, |i, j| m[[i, j]]);
    let eig = SymmetricEigen::try_new(mat, f64::EPSILON, 10_000)
        .ok_or(ProbeError::NoConvergence { dim: d })?;
    let max_abs = eig.eigenvalues.iter().fold(0.0_f64, |a, v| a.max(v.abs()));
    let cutoff = d as f64 * f64::EPSILON * max_abs;
    if max_abs == 0.0 {
        return Err(ProbeError::ZeroCovariance { rows: 0 });
    }
    let mut out = Array2::zeros((d, d));
    for (k, &lambda) in eig.eigenvalues.iter().enumerate() {
        if lambda.abs() <= cutoff {
            continue;
        }
        let v = eig.eigenvectors.column(k);
        for i in 0..d {
            let vi = v[i] / lambda;
            for j in 0..d {
                out[[i, j]] += vi * v[j];
            }
        }
    }
    Ok(out)
}

impl Mahalanobis {
    /// Fits the scorer on training-normal rows (n ≥ 2) with the chosen covariance estimator.
    pub fn fit(
        train: ArrayView2<'_, f64>,
        estimator: CovarianceEstimator,
    ) -> Result<Self, ProbeError> {
        let (mean, cov, shrinkage) = match estimator {
            CovarianceEstimator::Sample => {
                let (m, c) = sample_covariance(train)?;
                (m, c, 0.0)
            }
            CovarianceEstimator::LedoitWolf => ledoit_wolf(train)?,
        };
        let precision = symmetric_pinv(&cov).map_err(|e| match e {
            ProbeError::ZeroCovariance { .. } => ProbeError::ZeroCovariance {
                rows: train.nrows(),
            },
            other => other,
        })?;
        Ok(Self {
            mean,
            precision,
            shrinkage,
        })
    }

    /// Squared Mahalanobis distance of each row of `x`.
    pub fn squared_distances(&self, x: ArrayView2<'_, f64>) -> Result<Array1<f64>, ProbeError> {
        if x.ncols() != self.mean.len() {
            return Err(ProbeError::DimensionMismatch {
                what: "scored embeddings".into(),
                got: x.ncols(),
                expected: self.mean.len(),
            });
        }
        check_finite(x, "scored embeddings")?;
        let centred = &x - &self.mean;
        Ok((centred.dot(&self.precision) * &centred).sum_axis(Axis(1)))
    }

    /// A clip's anomaly score: the mean squared distance of its rows.
    pub fn clip_score(&self, rows: ArrayView2<'_, f64>) -> Result<f64, ProbeError> {
        if rows.nrows() == 0 {
            return Err(ProbeError::TooFewRows {
                what: "clip score",
                got: 0,
                need: 1,
            });
        }
        let d = self.squared_distances(rows)?;
        Ok(d.sum() / d.len() as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn pinv_of_an_invertible_matrix_is_its_inverse() {
        let m = array![[2.0, 1.0], [1.0, 3.0]];
        let inv = symmetric_pinv(&m).unwrap();
        let id = m.dot(&inv);
        for i in 0..2 {
            for j in 0..2 {
                assert!((id[[i, j]] - f64::from(u8::from(i == j))).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn singular_covariance_still_scores_through_the_pseudo_inverse() {
        // Two rows in 3-D: rank-1 covariance.
        let train = array![[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]];
        let md = Mahalanobis::fit(train.view(), CovarianceEstimator::Sample).unwrap();
        let s = md.clip_score(array![[0.5, 1.0, 1.5]].view()).unwrap();
        assert!(s.abs() < 1e-12, "the mean has distance 0, got {s}");
        let far = md.clip_score(array![[1.0, 2.0, 3.0]].view()).unwrap();
        assert!((far - 0.5).abs() < 1e-9, "{far}");
    }

    #[test]
    fn identical_rows_give_a_named_error_not_a_panic() {
        let train = array![[1.0, 2.0], [1.0, 2.0], [1.0, 2.0]];
        let err = Mahalanobis::fit(train.view(), CovarianceEstimator::Sample).unwrap_err();
        assert_eq!(err, ProbeError::ZeroCovariance { rows: 3 });
        assert!(Mahalanobis::fit(array![[1.0, 2.0]].view(), CovarianceEstimator::Sample).is_err());
    }

    #[test]
    fn ledoit_wolf_shrinkage_lies_between_zero_and_one() {
        let x = array![
            [1.0, 2.0, 0.5],
            [0.3, 1.1, 0.9],
            [2.2, 0.4, 1.7],
            [1.5, 1.5, 0.1]
        ];
        let (_, cov, s) = ledoit_wolf(x.view()).unwrap();
        assert!((0.0..=1.0).contains(&s));
        assert!((cov[[0, 1]] - cov[[1, 0]]).abs() < 1e-15);
    }

    #[test]
    fn scoring_rows_of_the_wrong_dimension_is_an_error() {
        let train = array![[0.0, 1.0], [1.0, 0.0], [2.0, 2.0]];
        let md = Mahalanobis::fit(train.view(), CovarianceEstimator::Sample).unwrap();
        assert!(matches!(
            md.clip_score(array![[1.0]].view()),
            Err(ProbeError::DimensionMismatch { .. })
        ));
    }
}
