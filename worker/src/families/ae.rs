//! The autoencoder family, as the reference study's `ae_baseline_utils.py` /
//! `train_ae.py` (the DCASE baseline): 5 stacked log-mel frames (640 values)
//! → Linear+BatchNorm1d+ReLU ×4 at width `hidden` → Linear+BN+ReLU to
//! `latent` → Linear+BN+ReLU ×4 at `hidden` → Linear back to 640. MSE loss,
//! AdamW, learning rate halved every 50 epochs, the state with the lowest
//! training loss kept.

pub mod checkpoint;
pub mod job;

pub use checkpoint::{Checkpoint, Progress};

use super::checkpoint::{EpochSum, run_epochs};
use asdsweep_shared::family::Schedule;
use burn::module::Module;
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::Config;
use burn::tensor::{Device, Tensor, TensorData};
use rand::SeedableRng;
use rand::seq::SliceRandom;

use crate::norm::batch_norm;

/// Input width: 5 frames × 128 mel bins.
pub const INPUT_DIM: usize = 640;

/// Shape of one autoencoder checkpoint.
#[derive(Config, Debug, PartialEq)]
pub struct AeConfig {
    /// Width of the hidden layers (the study: 64, 128, 256).
    #[config(default = 128)]
    pub hidden: usize,
    /// Width of the bottleneck (the study: 4, 8, 16).
    #[config(default = 8)]
    pub latent: usize,
    /// Hidden blocks on each side of the bottleneck.
    #[config(default = 4)]
    pub depth: usize,
    /// Input (and output) width.
    #[config(default = 640)]
    pub input_dim: usize,
}

/// How an autoencoder is trained.
#[derive(Config, Debug, PartialEq)]
pub struct AeTrainingConfig {
    /// Model shape.
    pub model: AeConfig,
    /// Epochs, batch size, learning rate and its step decay (the study's:
    /// [`asdsweep_shared::family::autoencoder::study_schedule`]).
    pub schedule: Schedule,
    /// AdamW weight decay (PyTorch's default, 0.01).
    #[config(default = 0.01)]
    pub weight_decay: f32,
    /// Seed for initialisation and shuffling.
    #[config(default = 1)]
    pub seed: u64,
}

/// Linear → BatchNorm1d(momentum 0.01, eps 1e-3) → ReLU.
#[derive(Module, Debug)]
pub struct Block {
    linear: Linear,
    norm: BatchNorm,
}

impl Block {
    fn new(input: usize, output: usize, device: &Device) -> Block {
        Block {
            linear: LinearConfig::new(input, output).init(device),
            norm: BatchNormConfig::new(output)
                .with_momentum(0.01)
                .with_epsilon(1e-3)
                .init(device),
        }
    }

    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        burn::tensor::activation::relu(batch_norm(&self.norm, self.linear.forward(x)))
    }
}

/// The autoencoder.
#[derive(Module, Debug)]
pub struct Autoencoder {
    encoder: Vec<Block>,
    bottleneck: Block,
    decoder: Vec<Block>,
    output: Linear,
}

impl AeConfig {
    /// Builds a model on `device` with weights drawn from `seed`.
    pub fn init(&self, device: &Device, seed: u64) -> Autoencoder {
        super::init_seeded(device, seed, || {
            let encoder = (0..self.depth)
                .map(|i| {
                    Block::new(
                        if i == 0 { self.input_dim } else { self.hidden },
                        self.hidden,
                        device,
                    )
                })
                .collect();
            let bottleneck = Block::new(self.hidden, self.latent, device);
            let decoder = (0..self.depth)
                .map(|i| {
                    Block::new(
                        if i == 0 { self.latent } else { self.hidden },
                        self.hidden,
                        device,
                    )
                })
                .collect();
            Autoencoder {
                encoder,
                bottleneck,
                decoder,
                output: LinearConfig::new(self.hidden, self.input_dim).init(device),
            }
        })
    }
}

impl Autoencoder {
    /// Reconstructs `x` (`[rows, 640]` → `[rows, 640]`).
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let mut h = x;
        for b in &self.encoder {
            h = b.forward(h);
        }
        h = self.bottleneck.forward(h);
        for b in &self.decoder {
            h = b.forward(h);
        }
        self.output.forward(h)
    }
}

/// Why training could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum AeError {
    /// The rows do not fit the model's input width, or there are too few of them.
    #[error("training data: {0}")]
    Data(String),
    /// A checkpoint does not belong to this run or cannot be decoded.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
}

impl From<super::checkpoint::CheckpointError> for AeError {
    fn from(e: super::checkpoint::CheckpointError) -> AeError {
        AeError::Checkpoint(e.0)
    }
}

/// What `on_epoch` decides after each epoch.
pub use std::ops::ControlFlow;

/// The state of a run at the end of an epoch, handed to `on_epoch`.
pub type EpochEnd<'a> = super::checkpoint::EpochEnd<'a, AeTrainingConfig, Autoencoder>;

/// The outcome of a run.
pub type Trained = super::checkpoint::Run<Autoencoder>;

/// Trains on `rows` (row-major, `n × input_dim`), from scratch or from `resume`, calling
/// `on_epoch` after each epoch; [`ControlFlow::Break`] stops the run there (cancellation).
/// Deterministic for a seed on the CPU backend, and a resumed run repeats the loss curve
/// of an uninterrupted one: shuffles are drawn per epoch from (seed, epoch), the optimizer
/// state and the learning-rate schedule are restored.
pub fn train(
    cfg: &AeTrainingConfig,
    rows: &[f32],
    device: &Device,
    resume: Option<&Checkpoint>,
    on_epoch: impl FnMut(&EpochEnd<'_>) -> ControlFlow<()>,
) -> Result<Trained, AeError> {
    let dim = cfg.model.input_dim;
    if dim == 0 || !rows.len().is_multiple_of(dim) {
        return Err(AeError::Data(format!(
            "{} values are not rows of width {dim}",
            rows.len()
        )));
    }
    let n = rows.len() / dim;
    if n < 2 {
        return Err(AeError::Data(format!(
            "{n} rows; batch normalisation needs at least 2"
        )));
    }
    let train_device = device.clone().autodiff();
    let model = cfg.model.init(&train_device, cfg.seed);
    let fresh = || Ok(cfg.model.init(device, cfg.seed));
    let mut order: Vec<usize> = Vec::with_capacity(n);
    let epoch = |epoch: usize, lr: f64, mut model: Autoencoder, optim: &mut ModuleOptimizer| {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(cfg.seed);
        rng.set_stream(epoch as u64);
        order.clear();
        order.extend(0..n);
        order.shuffle(&mut rng);
        let mut sum = EpochSum::default();
        for batch in order.chunks(cfg.schedule.batch_size.max(2)) {
            // BatchNorm needs more than one row to estimate a variance.
            if batch.len() < 2 {
                continue;
            }
            let mut buf = Vec::with_capacity(batch.len() * dim);
            for &i in batch {
                buf.extend_from_slice(&rows[i * dim..(i + 1) * dim]);
            }
            let x = Tensor::<2>::from_data(TensorData::new(buf, [batch.len(), dim]), &train_device);
            let loss = (model.forward(x.clone()) - x).powi_scalar(2).mean();
            let value: f32 = loss.clone().into_scalar::<f32>();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(lr, model, grads);
            sum.add(value as f64, batch.len());
        }
        Ok::<_, AeError>((model, sum))
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    fn data(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n * INPUT_DIM)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect()
    }

    #[test]
    fn every_grid_config_maps_640_wide_rows_back_to_640() {
        let device = crate::families::test_device();
        for hidden in [64, 128, 256] {
            for latent in [4, 8, 16] {
                let model = AeConfig::new()
                    .with_hidden(hidden)
                    .with_latent(latent)
                    .init(&device, 1);
                let x = Tensor::<2>::zeros([3, INPUT_DIM], &device);
                assert_eq!(
                    model.forward(x).dims(),
                    [3, INPUT_DIM],
                    "hidden {hidden} latent {latent}"
                );
                assert_eq!(model.encoder.len(), 4);
                assert_eq!(model.bottleneck.linear.weight.dims(), [hidden, latent]);
            }
        }
    }

    fn tiny(seed: u64) -> AeTrainingConfig {
        let schedule = Schedule {
            epochs: 3,
            batch_size: 16,
            ..asdsweep_shared::family::autoencoder::study_schedule()
        };
        AeTrainingConfig::new(AeConfig::new().with_hidden(32).with_latent(4), schedule)
            .with_seed(seed)
    }

    /// `cfg` with its schedule changed by `f`.
    fn sched(mut cfg: AeTrainingConfig, f: impl FnOnce(&mut Schedule)) -> AeTrainingConfig {
        f(&mut cfg.schedule);
        cfg
    }

    fn go_on(_: &EpochEnd<'_>) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }

    fn outputs(model: &Autoencoder, rows: &[f32], device: &Device) -> Vec<f32> {
        let x = Tensor::<2>::from_data(
            TensorData::new(rows.to_vec(), [rows.len() / INPUT_DIM, INPUT_DIM]),
            device,
        );
        model.forward(x).into_data().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn the_same_seed_gives_the_same_loss_curve_and_another_seed_another() {
        let rows = data(64, 7);
        let device = crate::families::test_device();
        let a = train(&tiny(1), &rows, &device, None, go_on).unwrap().losses;
        let b = train(&tiny(1), &rows, &device, None, go_on).unwrap().losses;
        let c = train(&tiny(2), &rows, &device, None, go_on).unwrap().losses;
        assert_eq!(a.len(), 3);
        assert_eq!(a, b, "same seed, same curve");
        assert_ne!(a, c, "another seed, another curve");
        assert!(a.iter().all(|l| l.is_finite()));
    }

    #[test]
    fn training_lowers_the_reconstruction_loss_and_keeps_the_best_epoch() {
        let rows = data(128, 3);
        let mut seen = Vec::new();
        let t = train(
            &sched(tiny(5), |s| (s.epochs, s.lr) = (8, 1e-2)),
            &rows,
            &crate::families::test_device(),
            None,
            |e| {
                seen.push((e.epoch, e.loss));
                ControlFlow::Continue(())
            },
        )
        .unwrap();
        assert_eq!(seen.len(), 8);
        assert!(t.finished);
        assert!(t.losses[7] < t.losses[0], "{:?}", t.losses);
        let best = t.losses.iter().cloned().fold(f32::INFINITY, f32::min);
        assert_eq!(t.losses[t.best_epoch - 1], best);
    }

    #[test]
    fn a_checkpoint_round_trips_to_a_model_with_identical_outputs() {
        let rows = data(48, 11);
        let device = Device::flex();
        let cfg = sched(tiny(3), |s| s.epochs = 2);
        let mut saved = None;
        let t = train(&cfg, &rows, &device, None, |e| {
            saved = Some(e.checkpoint().unwrap().encode());
            ControlFlow::Continue(())
        })
        .unwrap();
        let blob = saved.unwrap();
        let back = Checkpoint::decode(&blob).unwrap();
        assert_eq!(back.config, cfg);
        assert_eq!(back.progress.epoch, 2);
        assert_eq!(back.progress.losses, t.losses);
        assert_eq!(back.progress.best_epoch, t.best_epoch);
        let loaded = back.best_model(&device).unwrap();
        assert_eq!(
            outputs(&loaded, &rows[..5 * INPUT_DIM], &device),
            outputs(&t.model, &rows[..5 * INPUT_DIM], &device)
        );
    }

    #[test]
    fn a_resumed_run_repeats_the_uninterrupted_loss_curve_and_weights() {
        let rows = data(80, 5);
        let device = Device::flex();
        let cfg = sched(tiny(9), |s| (s.epochs, s.lr_step_epochs) = (5, 2));
        let whole = train(&cfg, &rows, &device, None, go_on).unwrap();
        // Stop after epoch 2 with a checkpoint, as a worker killed there would have left it.
        let mut at_two = None;
        let first = train(&cfg, &rows, &device, None, |e| {
            if e.epoch == 2 {
                at_two = Some(e.checkpoint().unwrap().encode());
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        })
        .unwrap();
        assert!(!first.finished);
        assert_eq!(first.losses.len(), 2);
        let cp = Checkpoint::decode(&at_two.unwrap()).unwrap();
        let mut epochs = Vec::new();
        let resumed = train(&cfg, &rows, &device, Some(&cp), |e| {
            epochs.push(e.epoch);
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(
            epochs,
            [3, 4, 5],
            "the resumed run starts after the checkpoint's epoch"
        );
        assert_eq!(
            resumed.losses, whole.losses,
            "same loss curve as without the interruption"
        );
        assert_eq!(resumed.best_epoch, whole.best_epoch);
        assert_eq!(
            outputs(&resumed.model, &rows[..4 * INPUT_DIM], &device),
            outputs(&whole.model, &rows[..4 * INPUT_DIM], &device)
        );
    }

    #[test]
    fn resuming_from_the_last_epoch_trains_nothing_more() {
        let rows = data(32, 4);
        let device = Device::flex();
        let cfg = sched(tiny(2), |s| s.epochs = 2);
        let mut last = None;
        let whole = train(&cfg, &rows, &device, None, |e| {
            last = Some(e.checkpoint().unwrap().encode());
            ControlFlow::Continue(())
        })
        .unwrap();
        let cp = Checkpoint::decode(&last.unwrap()).unwrap();
        let mut calls = 0;
        let again = train(&cfg, &rows, &device, Some(&cp), |_| {
            calls += 1;
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(calls, 0);
        assert!(again.finished);
        assert_eq!(
            (again.losses, again.best_epoch),
            (whole.losses, whole.best_epoch)
        );
    }

    #[test]
    fn a_checkpoint_of_other_settings_is_refused() {
        let rows = data(32, 1);
        let device = Device::flex();
        let mut blob = None;
        train(
            &sched(tiny(1), |s| s.epochs = 1),
            &rows,
            &device,
            None,
            |e| {
                blob = Some(e.checkpoint().unwrap().encode());
                ControlFlow::Continue(())
            },
        )
        .unwrap();
        let cp = Checkpoint::decode(&blob.unwrap()).unwrap();
        let err = train(
            &sched(tiny(1), |s| (s.epochs, s.lr) = (2, 1e-3)),
            &rows,
            &device,
            Some(&cp),
            go_on,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("checkpoint") && err.contains("0.001"), "{err}");
    }

    #[test]
    fn truncated_or_foreign_blobs_are_not_checkpoints() {
        let rows = data(32, 2);
        let mut blob = None;
        train(
            &sched(tiny(1), |s| s.epochs = 1),
            &rows,
            &Device::flex(),
            None,
            |e| {
                blob = Some(e.checkpoint().unwrap().encode());
                ControlFlow::Continue(())
            },
        )
        .unwrap();
        let blob = blob.unwrap();
        let err = Checkpoint::decode(&blob[..blob.len() - 1])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("truncated or corrupt"), "{err}");
        let err = Checkpoint::decode(b"PK\x03\x04 a zip file")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("not an autoencoder checkpoint"), "{err}");
    }
}
