//! The linear probe: a 2-class logistic head `Linear(d, 2)` trained with cross-entropy and
//! Adam (PyTorch defaults), keeping the epoch state with the best training accuracy;
//! the score is the softmax probability of the anomaly class.
//!
//! Adam update (PyTorch `torch.optim.Adam`, betas 0.9/0.999, eps 1e-8, no weight decay),
//! per parameter at step t:
//! `m ← m + (1−β₁)(g − m)`, `v ← β₂v + (1−β₂)g²`,
//! `p ← p − (lr/(1−β₁ᵗ)) · m / (√v/√(1−β₂ᵗ) + eps)`.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::ProbeError;

/// Training settings of the linear probe (the study's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LinearProbeConfig {
    /// Adam learning rate.
    pub lr: f64,
    /// Mini-batch size (the last batch may be smaller).
    pub batch_size: usize,
    /// Number of passes over the training rows.
    pub epochs: usize,
    /// Seed for the initial weights and the per-epoch shuffles.
    pub seed: u64,
}

impl Default for LinearProbeConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            batch_size: 64,
            epochs: 200,
            seed: 0,
        }
    }
}

/// A `Linear(d, 2)` head: logits = x·Wᵀ + b, class 1 = anomaly.
#[derive(Debug, Clone, PartialEq)]
pub struct LogisticHead {
    /// Weight, shape (2, d).
    pub weight: Array2<f64>,
    /// Bias, shape (2).
    pub bias: Array1<f64>,
}

impl LogisticHead {
    /// PyTorch's default `nn.Linear` initialisation: W and b uniform in ±1/√d, from `rng`.
    pub fn init(dim: usize, rng: &mut impl Rng) -> Self {
        let bound = 1.0 / (dim as f64).sqrt();
        let weight = Array2::from_shape_fn((2, dim), |_| rng.random_range(-bound..bound));
        let bias = Array1::from_shape_fn(2, |_| rng.random_range(-bound..bound));
        Self { weight, bias }
    }

    /// Logits of each row of `x`, shape (n, 2).
    pub fn logits(&self, x: ArrayView2<'_, f64>) -> Array2<f64> {
        x.dot(&self.weight.t()) + &self.bias
    }

    /// P(anomaly) = softmax(logits)[1] of each row.
    pub fn anomaly_probability(&self, x: ArrayView2<'_, f64>) -> Array1<f64> {
        self.logits(x)
            .map_axis(Axis(1), |l| 1.0 / (1.0 + (l[0] - l[1]).exp()))
    }
}

/// Mean cross-entropy of a batch, its gradients (W, b) and the number of rows whose
/// argmax (first maximum on ties, as `torch.argmax`) equals the label.
pub fn cross_entropy_gradient(
    head: &LogisticHead,
    x: ArrayView2<'_, f64>,
    y: ArrayView1<'_, usize>,
) -> (f64, Array2<f64>, Array1<f64>, usize) {
    let logits = head.logits(x);
    let n = x.nrows() as f64;
    let mut grad_logits = Array2::zeros(logits.dim());
    let mut loss = 0.0;
    let mut correct = 0;
    for (i, row) in logits.rows().into_iter().enumerate() {
        let max = row[0].max(row[1]);
        let e0 = (row[0] - max).exp();
        let e1 = (row[1] - max).exp();
        let z = e0 + e1;
        let p = [e0 / z, e1 / z];
        loss -= (p[y[i]]).ln();
        let predicted = usize::from(row[1] > row[0]);
        correct += usize::from(predicted == y[i]);
        for k in 0..2 {
            grad_logits[[i, k]] = (p[k] - f64::from(u8::from(k == y[i]))) / n;
        }
    }
    let grad_w = grad_logits.t().dot(&x);
    let grad_b = grad_logits.sum_axis(Axis(0));
    (loss / n, grad_w, grad_b, correct)
}

/// Adam state for the head's two parameters (PyTorch defaults; see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct Adam {
    lr: f64,
    step: i32,
    m_w: Array2<f64>,
    v_w: Array2<f64>,
    m_b: Array1<f64>,
    v_b: Array1<f64>,
}

/// Adam's β₁.
pub const ADAM_BETA1: f64 = 0.9;
/// Adam's β₂.
pub const ADAM_BETA2: f64 = 0.999;
/// Adam's ε.
pub const ADAM_EPS: f64 = 1e-8;

fn adam_update<D: ndarray::Dimension>(
    p: &mut ndarray::Array<f64, D>,
    g: &ndarray::Array<f64, D>,
    m: &mut ndarray::Array<f64, D>,
    v: &mut ndarray::Array<f64, D>,
    step_size: f64,
    bc2_sqrt: f64,
) {
    ndarray::Zip::from(p)
        .and(g)
        .and(m)
        .and(v)
        .for_each(|p, &g, m, v| {
            *m += (1.0 - ADAM_BETA1) * (g - *m);
            *v = *v * ADAM_BETA2 + (1.0 - ADAM_BETA2) * g * g;
            let denom = v.sqrt() / bc2_sqrt + ADAM_EPS;
            *p -= step_size * *m / denom;
        });
}

impl Adam {
    /// Fresh Adam state for a head of dimension `dim`.
    pub fn new(dim: usize, lr: f64) -> Self {
        Self {
            lr,
            step: 0,
            m_w: Array2::zeros((2, dim)),
            v_w: Array2::zeros((2, dim)),
            m_b: Array1::zeros(2),
            v_b: Array1::zeros(2),
        }
    }

    /// One Adam step on `head` with gradients (`grad_w`, `grad_b`).
    pub fn step(&mut self, head: &mut LogisticHead, grad_w: &Array2<f64>, grad_b: &Array1<f64>) {
        self.step += 1;
        let bc1 = 1.0 - ADAM_BETA1.powi(self.step);
        let bc2_sqrt = (1.0 - ADAM_BETA2.powi(self.step)).sqrt();
        let step_size = self.lr / bc1;
        adam_update(
            &mut head.weight,
            grad_w,
            &mut self.m_w,
            &mut self.v_w,
            step_size,
            bc2_sqrt,
        );
        adam_update(
            &mut head.bias,
            grad_b,
            &mut self.m_b,
            &mut self.v_b,
            step_size,
            bc2_sqrt,
        );
    }
}

/// Trains the probe on rows `x` with labels `is_anomaly` and returns the head state of the
/// epoch with the highest training accuracy (the first such epoch on ties). Deterministic for
/// `config.seed`: ChaCha8 draws the initial weights, then one shuffle per epoch.
pub fn train_linear_probe(
    x: ArrayView2<'_, f64>,
    is_anomaly: &[bool],
    config: &LinearProbeConfig,
) -> Result<LogisticHead, ProbeError> {
    if config.batch_size == 0 || config.epochs == 0 || config.lr.is_nan() || config.lr <= 0.0 {
        return Err(ProbeError::InvalidSetting {
            name: "linear probe",
            problem: format!(
                "batch size ({}), epochs ({}) and lr ({}) must be positive",
                config.batch_size, config.epochs, config.lr
            ),
        });
    }
    if x.nrows() != is_anomaly.len() {
        return Err(ProbeError::DimensionMismatch {
            what: "labels".into(),
            got: is_anomaly.len(),
            expected: x.nrows(),
        });
    }
    if !x.iter().all(|v| v.is_finite()) {
        return Err(ProbeError::NonFinite {
            what: "linear probe training rows".into(),
        });
    }
    let n_anomaly = is_anomaly.iter().filter(|&&a| a).count();
    let n_normal = is_anomaly.len() - n_anomaly;
    if n_anomaly == 0 || n_normal == 0 {
        return Err(ProbeError::SingleClass {
            what: "linear probe".into(),
            n_normal,
            n_anomaly,
        });
    }
    let labels: Array1<usize> = is_anomaly.iter().map(|&a| usize::from(a)).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut head = LogisticHead::init(x.ncols(), &mut rng);
    let mut adam = Adam::new(x.ncols(), config.lr);
    let mut best = head.clone();
    let mut best_accuracy = -1.0;
    let mut order: Vec<usize> = (0..x.nrows()).collect();
    for _ in 0..config.epochs {
        order.shuffle(&mut rng);
        let mut correct = 0;
        for batch in order.chunks(config.batch_size) {
            let xb = x.select(Axis(0), batch);
            let yb = labels.select(Axis(0), batch);
            let (_, gw, gb, c) = cross_entropy_gradient(&head, xb.view(), yb.view());
            adam.step(&mut head, &gw, &gb);
            correct += c;
        }
        let accuracy = correct as f64 / x.nrows() as f64;
        if accuracy > best_accuracy {
            best_accuracy = accuracy;
            best = head.clone();
        }
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn a_separable_problem_is_learned_and_scores_anomalies_higher() {
        let x = array![
            [0.0, 0.1],
            [0.2, 0.0],
            [0.1, 0.2],
            [3.0, 3.1],
            [3.2, 2.9],
            [2.9, 3.0]
        ];
        let y = [false, false, false, true, true, true];
        let cfg = LinearProbeConfig {
            epochs: 300,
            batch_size: 4,
            ..LinearProbeConfig::default()
        };
        let head = train_linear_probe(x.view(), &y, &cfg).unwrap();
        let p = head.anomaly_probability(x.view());
        assert!(p[0] < 0.5 && p[5] > 0.5, "{p}");
    }

    #[test]
    fn training_is_deterministic_for_a_seed_and_differs_across_seeds() {
        let x = array![[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.5, 0.2]];
        let y = [false, true, true, false];
        let cfg = LinearProbeConfig {
            epochs: 5,
            ..LinearProbeConfig::default()
        };
        let a = train_linear_probe(x.view(), &y, &cfg).unwrap();
        let b = train_linear_probe(x.view(), &y, &cfg).unwrap();
        assert_eq!(a, b);
        let c = train_linear_probe(x.view(), &y, &LinearProbeConfig { seed: 1, ..cfg }).unwrap();
        assert_ne!(a, c);
    }

    #[test]
    fn single_class_training_data_is_an_error() {
        let x = array![[0.0], [1.0]];
        let err = train_linear_probe(x.view(), &[false, false], &LinearProbeConfig::default())
            .unwrap_err();
        assert!(matches!(err, ProbeError::SingleClass { n_anomaly: 0, .. }));
    }

    #[test]
    fn cross_entropy_gradient_matches_a_finite_difference() {
        let head = LogisticHead {
            weight: array![[0.3, -0.2], [0.1, 0.4]],
            bias: array![0.05, -0.1],
        };
        let x = array![[1.0, 2.0], [-0.5, 0.3]];
        let y = array![1usize, 0];
        let (loss, gw, _, _) = cross_entropy_gradient(&head, x.view(), y.view());
        let mut bumped = head.clone();
        bumped.weight[[1, 0]] += 1e-6;
        let (loss2, _, _, _) = cross_entropy_gradient(&bumped, x.view(), y.view());
        assert!(((loss2 - loss) / 1e-6 - gw[[1, 0]]).abs() < 1e-5);
    }
}
