//! The contrastive family, as the study's `train_contrastive.py` and `models/resnet_oth.py`:
//! a ResNet backbone ([`super::resnet`]) on 1×128×313 log-mels of augmented views
//! ([`asdsweep_shared::augment`]), an MLP projector, and for SimSiam a predictor; SimCLR is
//! trained with NT-Xent at τ 0.1 ([`nt_xent`]), SimSiam with the negative cosine between each
//! view's prediction and the other view's detached projection ([`simsiam_loss`]). The
//! embedding for the probes and the uniformity proxy is the backbone's pooled output, not
//! the projector's.
//!
//! Built so far: the model and both losses, parity-tested against PyTorch; the views and
//! their store live in `shared`. Not yet: the job (training loop, uniformity on seeded view
//! pairs, the probes), its spec section and its grid (issue 16).

use burn::module::Module;
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
use burn::prelude::Config;
use burn::tensor::activation::{log_softmax, relu};
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::ConfigError;
use super::resnet::{ResNet, ResNetConfig};
pub use asdsweep_shared::family::contrastive::Mode;

/// NT-Xent's temperature in the study.
pub const STUDY_TEMPERATURE: f64 = 0.1;
/// SimCLR's projection width in the study.
pub const SIMCLR_PROJECTION: usize = 128;
/// The hidden width of SimSiam's predictor in the study.
pub const SIMSIAM_PREDICTOR_HIDDEN: usize = 512;

/// The study's `MLP(in, hid, out)`: Linear–BatchNorm1d–ReLU, Linear–BatchNorm1d–ReLU, Linear.
#[derive(Module, Debug)]
pub struct Mlp {
    fc1: Linear,
    bn1: BatchNorm,
    fc2: Linear,
    bn2: BatchNorm,
    fc3: Linear,
}

impl Mlp {
    /// An MLP `input → hidden → hidden → output` with PyTorch's default initialisation.
    pub fn new(input: usize, hidden: usize, output: usize, device: &Device) -> Mlp {
        // burn's default initialisation is PyTorch's: U(±1/√fan_in) for weights and biases.
        let linear = |i: usize, o: usize| LinearConfig::new(i, o).init(device);
        Mlp {
            fc1: linear(input, hidden),
            bn1: BatchNormConfig::new(hidden).init(device),
            fc2: linear(hidden, hidden),
            bn2: BatchNormConfig::new(hidden).init(device),
            fc3: linear(hidden, output),
        }
    }

    /// `[B, input]` to `[B, output]`; batch statistics on an autodiff device, running ones
    /// otherwise.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let x = relu(self.bn1.forward(self.fc1.forward(x)));
        let x = relu(self.bn2.forward(self.fc2.forward(x)));
        self.fc3.forward(x)
    }
}

/// Shape of a contrastive model.
#[derive(Config, Debug, PartialEq)]
pub struct ContrastiveConfig {
    /// The backbone.
    pub backbone: ResNetConfig,
    /// The objective, which decides the heads.
    pub mode: Mode,
}

/// A backbone with its projector (and, for SimSiam, predictor).
#[derive(Module, Debug)]
pub struct Contrastive {
    backbone: ResNet,
    projector: Mlp,
    predictor: Option<Mlp>,
}

impl ContrastiveConfig {
    /// Builds the model on `device` with weights drawn from `seed`: SimCLR's projector
    /// D → D → 128, SimSiam's D → D → D with a predictor D → 512 → D (D: the backbone's
    /// embedding width).
    pub fn init(&self, device: &Device, seed: u64) -> Result<Contrastive, ConfigError> {
        let d = self.backbone.layout()?.embedding_dim();
        let backbone = self.backbone.init(device, seed)?;
        let mode = self.mode;
        Ok(super::init_seeded(device, seed.wrapping_add(1), || {
            let (projector, predictor) = match mode {
                Mode::SimClr => (Mlp::new(d, d, SIMCLR_PROJECTION, device), None),
                Mode::SimSiam => (
                    Mlp::new(d, d, d, device),
                    Some(Mlp::new(d, SIMSIAM_PREDICTOR_HIDDEN, d, device)),
                ),
            };
            Contrastive {
                backbone,
                projector,
                predictor,
            }
        }))
    }
}

impl Contrastive {
    /// The backbone's pooled output `[B, D]`: the embedding for the probes and uniformity.
    pub fn embed(&self, x: Tensor<4>) -> Tensor<2> {
        self.backbone.forward(x)
    }

    /// The training loss of a batch of view pairs `[B, 1, mels, frames]` each.
    pub fn loss(&self, view_a: Tensor<4>, view_b: Tensor<4>) -> Tensor<1> {
        let za = self.projector.forward(self.embed(view_a));
        let zb = self.projector.forward(self.embed(view_b));
        match &self.predictor {
            None => nt_xent(za, zb, STUDY_TEMPERATURE),
            Some(predictor) => {
                let (pa, pb) = (predictor.forward(za.clone()), predictor.forward(zb.clone()));
                simsiam_loss(pa, pb, za, zb)
            }
        }
    }

    /// Width of the embedding.
    pub fn embedding_dim(&self) -> usize {
        self.backbone.embedding_dim()
    }
}

/// Rows divided by `max(‖row‖, eps)`, as `F.normalize`.
fn normalise_rows(x: Tensor<2>, eps: f64) -> Tensor<2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(eps);
    x / norm
}

/// SimCLR's NT-Xent: the 2B rows of `cat(za, zb)` L2-normalised, logits `z zᵀ / tau` with
/// each row's self-similarity excluded, row i's target the other view of its clip
/// (`i + B mod 2B`), mean cross-entropy over the 2B rows.
pub fn nt_xent(za: Tensor<2>, zb: Tensor<2>, tau: f64) -> Tensor<1> {
    let [b, _] = za.dims();
    let device = za.device();
    let z = normalise_rows(Tensor::cat(vec![za, zb], 0), 1e-12);
    let logits = z.clone().matmul(z.transpose()).div_scalar(tau);
    let own = Tensor::<2>::eye(2 * b, &device).equal_elem(1.0);
    let log_p = log_softmax(logits.mask_fill(own, f32::NEG_INFINITY), 1);
    let targets: Vec<i64> = (0..2 * b).map(|i| ((i + b) % (2 * b)) as i64).collect();
    let targets = Tensor::<2, Int>::from_data(TensorData::new(targets, [2 * b, 1]), &device);
    log_p.gather(1, targets).mean().neg()
}

/// SimSiam's loss `½[−cos(pa, sg zb) − cos(pb, sg za)]`, each cosine's mean over the batch
/// (norms floored at 1e-8, as `F.cosine_similarity`); no gradient reaches `za` or `zb`
/// through this term.
pub fn simsiam_loss(pa: Tensor<2>, pb: Tensor<2>, za: Tensor<2>, zb: Tensor<2>) -> Tensor<1> {
    let cosine = |p: Tensor<2>, z: Tensor<2>| {
        (normalise_rows(p, 1e-8) * normalise_rows(z.detach(), 1e-8))
            .sum_dim(1)
            .mean()
    };
    (cosine(pa, zb) + cosine(pb, za)).mul_scalar(-0.5)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::families::test_device;
    use serde_json::Value;

    fn fixture() -> Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/contrastive/contrastive.json");
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("JSON")
    }

    fn tensor(v: &Value, device: &Device) -> Tensor<2> {
        let rows: Vec<Vec<f32>> = serde_json::from_value(v.clone()).expect("matrix");
        let (r, c) = (rows.len(), rows[0].len());
        Tensor::from_data(TensorData::new(rows.concat(), [r, c]), device)
    }

    fn close(got: Tensor<2>, want: &Value, what: &str) {
        let got = got.into_data().try_to_vec::<f32>().expect("f32");
        let want: Vec<Vec<f32>> = serde_json::from_value(want.clone()).expect("matrix");
        let worst = got
            .iter()
            .zip(want.concat())
            .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-5, "{what}: differs from PyTorch by {worst}");
    }

    #[test]
    fn nt_xent_and_its_gradients_match_pytorch() {
        let fx = &fixture()["nt_xent"];
        let device = test_device().autodiff();
        let za = tensor(&fx["za"], &device).require_grad();
        let zb = tensor(&fx["zb"], &device).require_grad();
        let loss = nt_xent(za.clone(), zb.clone(), fx["tau"].as_f64().unwrap());
        let value: f32 = loss.clone().into_scalar();
        let want = fx["loss"].as_f64().unwrap() as f32;
        assert!(
            (value - want).abs() / want < 1e-5,
            "loss {value}, PyTorch {want}"
        );
        let grads = loss.backward();
        close(za.grad(&grads).expect("za"), &fx["grad_za"], "d/dza");
        close(zb.grad(&grads).expect("zb"), &fx["grad_zb"], "d/dzb");
    }

    #[test]
    fn simsiam_loss_and_its_gradients_match_pytorch_and_stop_at_the_projections() {
        let fx = &fixture()["simsiam"];
        let device = test_device().autodiff();
        let t = |k: &str| tensor(&fx[k], &device).require_grad();
        let (pa, pb, za, zb) = (t("pa"), t("pb"), t("za"), t("zb"));
        let loss = simsiam_loss(pa.clone(), pb.clone(), za.clone(), zb.clone());
        let value: f32 = loss.clone().into_scalar();
        let want = fx["loss"].as_f64().unwrap() as f32;
        assert!((value - want).abs() < 1e-6, "loss {value}, PyTorch {want}");
        let grads = loss.backward();
        close(pa.grad(&grads).expect("pa"), &fx["grad_pa"], "d/dpa");
        close(pb.grad(&grads).expect("pb"), &fx["grad_pb"], "d/dpb");
        assert!(
            za.grad(&grads).is_none() && zb.grad(&grads).is_none(),
            "stop-gradient"
        );
    }

    #[test]
    fn heads_have_the_study_widths_and_both_modes_train_a_step() {
        let device = test_device();
        let backbone = ResNetConfig::new().with_width_multiplier(0.125);
        for (mode, z) in [(Mode::SimClr, 128), (Mode::SimSiam, 64)] {
            let cfg = ContrastiveConfig::new(backbone.clone(), mode);
            let model = cfg.init(&device.clone().autodiff(), 3).unwrap();
            assert_eq!(model.embedding_dim(), 64);
            assert_eq!(model.projector.fc3.weight.dims(), [64, z]);
            assert_eq!(model.predictor.is_some(), mode == Mode::SimSiam);
            let view = |s: f64| {
                Tensor::<4>::random(
                    [4, 1, 32, 40],
                    burn::tensor::Distribution::Normal(s, 1.0),
                    &device.clone().autodiff(),
                )
            };
            let loss = model.loss(view(0.0), view(0.1));
            let value: f32 = loss.clone().into_scalar();
            assert!(value.is_finite(), "{mode:?}: {value}");
            let grads = loss.backward();
            assert!(
                burn::optim::GradientsParams::from_grads(grads, &model).len() > 10,
                "{mode:?}: gradients reach the backbone and heads"
            );
            assert_eq!(model.embed(view(0.0)).dims(), [4, 64]);
        }
        let bad = ContrastiveConfig::new(ResNetConfig::new().with_depth(20), Mode::SimClr);
        assert!(
            bad.init(&device, 0)
                .unwrap_err()
                .to_string()
                .contains("depth")
        );
    }
}
