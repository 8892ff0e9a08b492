//! The contrastive family, as the study's `train_contrastive.py` and `models/resnet_oth.py`:
//! a ResNet backbone ([`super::resnet`]) on 1×128×313 log-mels of augmented views
//! ([`asdsweep_shared::augment`]), an MLP projector, and for SimSiam a predictor; SimCLR is
//! trained with NT-Xent at τ 0.1 ([`nt_xent`]), SimSiam with the negative cosine between each
//! view's prediction and the other view's detached projection ([`simsiam_loss`]). The
//! embedding for the probes and the uniformity proxy is the backbone's pooled output, not
//! the projector's.
//!
//! Training ([`train`]): each epoch visits every clip once in a seeded order, in full batches
//! (the study's `drop_last`), and pairs two distinct views of each clip drawn from (seed,
//! epoch) ([`view_pairs`]); views are read through [`Views`] as log-mels fitted to
//! `crop_frames` ([`fit_frames`]). AdamW at lr 5e-4 halved every 50 epochs, the state with
//! the lowest epoch loss kept, checkpoints and resume as the other families.
//!
//! The job ([`job`]) makes the views once per dataset, trains, and measures uniformity and
//! alignment on seeded view pairs; the views and their store live in `shared`.

pub mod job;

use std::ops::ControlFlow;

use asdsweep_shared::augment::VIEWS_PER_CLIP;
use asdsweep_shared::family::Schedule;
use burn::module::Module;
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::Config;
use burn::tensor::activation::{log_softmax, relu};
use burn::tensor::{Device, Int, Tensor, TensorData};
use ndarray::{Array2, s};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::ConfigError;
use super::checkpoint::{CheckpointError, EpochSum, TrainingConfig, run_epochs};
use super::resnet::{ResNet, ResNetConfig};
use crate::norm::batch_norm;
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
        let x = relu(batch_norm(&self.bn1, self.fc1.forward(x)));
        let x = relu(batch_norm(&self.bn2, self.fc2.forward(x)));
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

/// How a contrastive model is trained.
#[derive(Config, Debug, PartialEq)]
pub struct ContrastiveTrainingConfig {
    /// Model shape.
    pub model: ContrastiveConfig,
    /// Epochs, batch size, learning rate and its step decay.
    pub schedule: Schedule,
    /// Log-mel frames of a training view (the study: 313).
    #[config(default = 313)]
    pub crop_frames: usize,
    /// AdamW weight decay (PyTorch's default, 0.01).
    #[config(default = 0.01)]
    pub weight_decay: f32,
    /// Seed for initialisation, shuffling and the view pairs.
    #[config(default = 1)]
    pub seed: u64,
}

impl TrainingConfig for ContrastiveTrainingConfig {
    const MAGIC: &'static [u8] = b"asdsweep-contrastive-checkpoint\n";
    const FAMILY: &'static str = "a contrastive model";
}

/// A decoded contrastive checkpoint.
pub type Checkpoint = super::checkpoint::Checkpoint<ContrastiveTrainingConfig>;

/// The state of a run at the end of an epoch, handed to `on_epoch`.
pub type EpochEnd<'a> = super::checkpoint::EpochEnd<'a, ContrastiveTrainingConfig, Contrastive>;

/// The outcome of training.
pub type Trained = super::checkpoint::Run<Contrastive>;

/// Why a contrastive model cannot be built or trained on the data given.
#[derive(Debug, thiserror::Error)]
pub enum ContrastiveError {
    /// The config names a shape that cannot be built.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Too few clips for a batch of at least two pairs (batch normalisation needs two rows).
    #[error("{clips} training clips; a contrastive batch needs at least 2")]
    TooFewClips {
        /// Clips given.
        clips: usize,
    },
    /// A view could not be read.
    #[error("view {view} of training clip {clip}: {problem}")]
    View {
        /// Index of the clip.
        clip: usize,
        /// Index of the view (0 … 32).
        view: usize,
        /// What went wrong.
        problem: String,
    },
    /// A checkpoint cannot be saved or resumed.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

/// Where training reads views: the log-mel `[mels, frames]` of view `view` (0 … 32) of
/// clip `clip` (0 … clips − 1).
pub trait Views: Sync {
    /// Number of clips.
    fn clips(&self) -> usize;
    /// One view's log-mel.
    fn logmel(&self, clip: usize, view: usize) -> Result<Array2<f32>, String>;
}

/// Two distinct view indices (0 … 32) per clip, drawn from `seed` on `stream`: an epoch's
/// training pairs (stream = epoch) or the uniformity pairs (one fixed stream).
pub fn view_pairs(clips: usize, seed: u64, stream: u64) -> Vec<(usize, usize)> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    (0..clips)
        .map(|_| {
            let a = rng.random_range(0..VIEWS_PER_CLIP);
            let b = rng.random_range(0..VIEWS_PER_CLIP - 1);
            (a, if b >= a { b + 1 } else { b })
        })
        .collect()
}

/// A log-mel fitted to `frames` frames as the study's loader does it: the centred window of
/// a longer one; a shorter one padded at the end with its smallest finite value (0 if none).
pub fn fit_frames(logmel: &Array2<f32>, frames: usize) -> Array2<f32> {
    let (mels, have) = logmel.dim();
    if have >= frames {
        let start = (have - frames) / 2;
        return logmel.slice(s![.., start..start + frames]).to_owned();
    }
    let floor = logmel
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(f32::INFINITY, f32::min);
    let floor = if floor.is_finite() { floor } else { 0.0 };
    Array2::from_shape_fn((mels, frames), |(m, t)| {
        if t < have { logmel[[m, t]] } else { floor }
    })
}

/// Trains on the views of `views`' clips, from scratch or from `resume`, calling `on_epoch`
/// after each epoch; [`ControlFlow::Break`] stops the run there (cancellation). Full
/// batches only, unless there are fewer clips than one batch. Deterministic for a seed on
/// the CPU backend, and a resumed run repeats the loss curve of an uninterrupted one.
pub fn train(
    cfg: &ContrastiveTrainingConfig,
    views: &impl Views,
    device: &Device,
    resume: Option<&Checkpoint>,
    on_epoch: impl FnMut(&EpochEnd<'_>) -> ControlFlow<()>,
) -> Result<Trained, ContrastiveError> {
    let n = views.clips();
    if n < 2 {
        return Err(ContrastiveError::TooFewClips { clips: n });
    }
    let batch_size = cfg.schedule.batch_size.max(2);
    let usable = if n >= batch_size {
        n - n % batch_size
    } else {
        n
    };
    let train_device = device.clone().autodiff();
    let model = cfg.model.init(&train_device, cfg.seed)?;
    let fresh = || {
        cfg.model
            .init(device, cfg.seed)
            .map_err(|e| CheckpointError(e.to_string()))
    };
    let crop = cfg.crop_frames;
    let batch = |items: &[(usize, usize)]| -> Result<Tensor<4>, ContrastiveError> {
        let mut buf = Vec::new();
        let mut mels = 0;
        for &(clip, view) in items {
            let lm = views
                .logmel(clip, view)
                .map_err(|problem| ContrastiveError::View {
                    clip,
                    view,
                    problem,
                })?;
            let fitted = fit_frames(&lm, crop);
            mels = fitted.nrows();
            buf.extend(fitted.iter().copied());
        }
        Ok(Tensor::from_data(
            TensorData::new(buf, [items.len(), 1, mels, crop]),
            &train_device,
        ))
    };
    let mut order: Vec<usize> = Vec::with_capacity(n);
    let epoch = |epoch: usize, lr: f64, mut model: Contrastive, optim: &mut ModuleOptimizer| {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(cfg.seed);
        rng.set_stream(epoch as u64);
        order.clear();
        order.extend(0..n);
        order.shuffle(&mut rng);
        let pairs = view_pairs(n, cfg.seed, epoch as u64);
        let mut sum = EpochSum::default();
        for chunk in order[..usable].chunks(batch_size) {
            let a: Vec<(usize, usize)> = chunk.iter().map(|&c| (c, pairs[c].0)).collect();
            let b: Vec<(usize, usize)> = chunk.iter().map(|&c| (c, pairs[c].1)).collect();
            let loss = model.loss(batch(&a)?, batch(&b)?);
            let value: f32 = loss.clone().into_scalar::<f32>();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(lr, model, grads);
            sum.add(f64::from(value), chunk.len());
        }
        Ok::<_, ContrastiveError>((model, sum))
    };
    run_epochs(
        cfg,
        &cfg.schedule,
        cfg.weight_decay,
        model,
        fresh,
        resume,
        epoch,
        on_epoch,
    )
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

    /// Synthetic views: clip c's view v is a smooth pattern shifted by c and v.
    struct Synthetic {
        clips: usize,
        frames: usize,
    }

    impl Views for Synthetic {
        fn clips(&self) -> usize {
            self.clips
        }
        fn logmel(&self, clip: usize, view: usize) -> Result<Array2<f32>, String> {
            Ok(Array2::from_shape_fn((16, self.frames), |(m, t)| {
                ((m * (clip + 1) + t + view) as f32 * 0.3).sin() - 0.05 * view as f32
            }))
        }
    }

    fn schedule(epochs: usize) -> Schedule {
        Schedule {
            epochs,
            batch_size: 4,
            lr: 5e-4,
            lr_step_epochs: 50,
            lr_gamma: 0.5,
            checkpoint_every: 1,
        }
    }

    #[test]
    fn pairs_are_two_distinct_views_and_depend_on_the_seed_and_stream() {
        let p = view_pairs(500, 3, 1);
        assert!(p.iter().all(|&(a, b)| a != b && a < 33 && b < 33));
        assert_eq!(p, view_pairs(500, 3, 1));
        assert_ne!(p, view_pairs(500, 3, 2));
        assert_ne!(p, view_pairs(500, 4, 1));
        let mut seen = [false; 33];
        p.iter()
            .for_each(|&(a, b)| (seen[a], seen[b]) = (true, true));
        assert!(seen.iter().all(|&s| s), "every view is drawn");
    }

    #[test]
    fn views_are_centre_cropped_or_padded_at_the_end_with_their_floor() {
        let lm = Array2::from_shape_fn((2, 6), |(m, t)| (10 * m + t) as f32 - 3.0);
        assert_eq!(fit_frames(&lm, 4).row(0).to_vec(), [-2.0, -1.0, 0.0, 1.0]);
        let padded = fit_frames(&lm, 8);
        assert_eq!(
            padded.row(1).to_vec(),
            [7., 8., 9., 10., 11., 12., -3., -3.]
        );
    }

    #[test]
    fn a_resumed_run_repeats_the_loss_curve_of_an_uninterrupted_one() {
        let device = test_device();
        let views = Synthetic {
            clips: 9,
            frames: 24,
        };
        for mode in [Mode::SimClr, Mode::SimSiam] {
            let model = ContrastiveConfig::new(
                ResNetConfig::new()
                    .with_width_multiplier(0.125)
                    .with_blocks(Some([1, 1, 1, 1])),
                mode,
            );
            let cfg = ContrastiveTrainingConfig::new(model, schedule(3)).with_crop_frames(20);
            let whole = train(&cfg, &views, &device, None, |_| ControlFlow::Continue(())).unwrap();
            assert_eq!(whole.losses.len(), 3);
            assert!(
                whole.finished && whole.losses.iter().all(|l| l.is_finite()),
                "{mode:?}"
            );
            let mut saved = None;
            let first = train(&cfg, &views, &device, None, |end| {
                saved = Some(end.checkpoint().unwrap().encode());
                ControlFlow::Break(())
            })
            .unwrap();
            assert!(!first.finished && first.losses.len() == 1);
            let cp = Checkpoint::decode(&saved.unwrap()).unwrap();
            let resumed = train(&cfg, &views, &device, Some(&cp), |_| {
                ControlFlow::Continue(())
            })
            .unwrap();
            assert_eq!(resumed.losses, whole.losses, "{mode:?}");
        }
        let Err(err) = train(
            &ContrastiveTrainingConfig::new(
                ContrastiveConfig::new(ResNetConfig::new(), Mode::SimClr),
                schedule(1),
            ),
            &Synthetic {
                clips: 1,
                frames: 24,
            },
            &device,
            None,
            |_| ControlFlow::Continue(()),
        ) else {
            panic!("one clip trained");
        };
        assert!(err.to_string().contains("at least 2"), "{err}");
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
