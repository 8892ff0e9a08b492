//! The source-separation family, as the study's `train_separation.py`: one separator
//! ([`model`]) per target machine type per config, trained on mixtures of a target clip
//! and an interferer of another machine type ([`asdsweep_shared::mixture`]) to give back
//! the target's STFT; loss = L1 of log magnitudes + MSE of compressed magnitudes +
//! 0.05·SmoothL1 of the real/imaginary parts ([`loss`]); AdamW with step decay; the state
//! with the lowest epoch loss is kept. Its proxy metric is SI-SDR on held-out mixtures
//! ([`job`]).

pub mod attention;
pub mod job;
pub mod model;
#[cfg(test)]
mod parity;

pub use model::{Separated, Separator, SeparatorConfig};

use super::checkpoint::TrainingConfig;
use super::checkpoint::{EpochSum, run_epochs};
use asdsweep_shared::family::Schedule;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::Config;
use burn::tensor::{Device, Tensor, TensorData};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use std::ops::ControlFlow;

/// How a separator is trained.
#[derive(Config, Debug, PartialEq)]
pub struct SeparationTrainingConfig {
    /// Model shape.
    pub model: SeparatorConfig,
    /// Epochs, batch size, learning rate and its step decay (the study's:
    /// [`asdsweep_shared::family::separation::study_schedule`]).
    pub schedule: Schedule,
    /// AdamW weight decay (PyTorch's default, 0.01).
    #[config(default = 0.01)]
    pub weight_decay: f32,
    /// Seed for initialisation, shuffling and the mixtures' draws.
    #[config(default = 1)]
    pub seed: u64,
}

impl TrainingConfig for SeparationTrainingConfig {
    const MAGIC: &'static [u8] = b"asdsweep-separation-checkpoint\n";
    const FAMILY: &'static str = "a separator";
}

/// A decoded separator checkpoint.
pub type Checkpoint = super::checkpoint::Checkpoint<SeparationTrainingConfig>;

impl SeparationTrainingConfig {
    /// The kept (lowest-loss) separator of `cp`, on `device`, without autodiff.
    pub fn best_model(cp: &Checkpoint, device: &Device) -> Result<Separator, String> {
        cp.load_best(cp.config.model.init(device, cp.config.seed))
            .map_err(|e| e.to_string())
    }
}

/// The loss's three terms (element means) and their sum as trained on.
pub struct Loss {
    /// L1 between log(|Ŝ| + 1e-6) and log(|S| + 1e-6).
    pub log_magnitude: Tensor<1>,
    /// MSE between |Ŝ|^0.3 and |S|^0.3.
    pub compressed: Tensor<1>,
    /// SmoothL1 (β 0.5) between the real/imaginary parts.
    pub complex: Tensor<1>,
}

impl Loss {
    /// `log_magnitude + compressed + 0.05·complex`.
    pub fn total(self) -> Tensor<1> {
        self.log_magnitude + self.compressed + self.complex.mul_scalar(0.05)
    }
}

/// Magnitudes `sqrt(re² + im² + 1e-8)` of `[B, 2, …]` real/imaginary parts.
fn magnitude(ri: Tensor<4>) -> Tensor<4> {
    ri.powi_scalar(2).sum_dim(1).add_scalar(1e-8).sqrt()
}

/// The study's separation loss between an estimate and the clean target, both real and
/// imaginary parts `[B, 2, T, F]`.
pub fn loss(estimate: Tensor<4>, target: Tensor<4>) -> Loss {
    let (m_est, m_tgt) = (magnitude(estimate.clone()), magnitude(target.clone()));
    let log_magnitude = (m_est.clone().add_scalar(1e-6).log()
        - m_tgt.clone().add_scalar(1e-6).log())
    .abs()
    .mean();
    let compressed = (m_est.powf_scalar(0.3) - m_tgt.powf_scalar(0.3))
        .powi_scalar(2)
        .mean();
    // SmoothL1 with β: ½d²/β below β, |d| − ½β above; with c = min(|d|, β) it is
    // ½c²/β + (|d| − c), one expression for both sides.
    const BETA: f64 = 0.5;
    let d = (estimate - target).abs();
    let c = d.clone().clamp_max(BETA);
    let complex = (c.clone().powi_scalar(2).mul_scalar(0.5 / BETA) + d - c).mean();
    Loss {
        log_magnitude,
        compressed,
        complex,
    }
}

/// One training batch: mixtures and clean targets as real/imaginary STFT parts, each
/// `[items, 2, frames, bins]` row-major.
pub struct Batch {
    /// The mixtures' STFTs.
    pub mixture: Vec<f32>,
    /// The targets' STFTs.
    pub target: Vec<f32>,
    /// Items in the batch.
    pub items: usize,
    /// Frames per item.
    pub frames: usize,
}

/// Why training could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum SeparationError {
    /// The training items could not be made.
    #[error("training data: {0}")]
    Data(String),
    /// A checkpoint does not belong to this run or cannot be decoded.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
}

impl From<super::checkpoint::CheckpointError> for SeparationError {
    fn from(e: super::checkpoint::CheckpointError) -> SeparationError {
        SeparationError::Checkpoint(e.0)
    }
}

/// The state of a run at the end of an epoch, handed to `on_epoch`.
pub type EpochEnd<'a> = super::checkpoint::EpochEnd<'a, SeparationTrainingConfig, Separator>;

/// The outcome of a run.
pub type Trained = super::checkpoint::Run<Separator>;

/// The batches of an epoch over `items` shuffled from (seed, epoch): full batches of
/// `batch` (the study drops the last short one), or one short batch when there are fewer
/// items than a batch.
pub fn epoch_batches(items: usize, batch: usize, seed: u64, epoch: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..items).collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(epoch as u64);
    order.shuffle(&mut rng);
    let batch = batch.max(1);
    if items < batch {
        return if items == 0 { Vec::new() } else { vec![order] };
    }
    order.chunks_exact(batch).map(<[usize]>::to_vec).collect()
}

/// Trains on `items` training items, from scratch or from `resume`: `make_batch(epoch,
/// indices)` builds each batch (the mixtures are drawn from the seed, the epoch and the
/// item, so a resumed run sees the same data), `on_epoch` is called after each epoch and
/// [`ControlFlow::Break`] stops the run there (cancellation).
pub fn train(
    cfg: &SeparationTrainingConfig,
    items: usize,
    device: &Device,
    resume: Option<&Checkpoint>,
    mut make_batch: impl FnMut(usize, &[usize]) -> Result<Batch, String>,
    on_epoch: impl FnMut(&EpochEnd<'_>) -> ControlFlow<()>,
) -> Result<Trained, SeparationError> {
    if items == 0 {
        return Err(SeparationError::Data("no training items".into()));
    }
    let bins = cfg.model.bins;
    let train_device = device.clone().autodiff();
    let model = cfg.model.init(&train_device, cfg.seed);
    let fresh = || Ok(cfg.model.init(device, cfg.seed));
    let epoch = |epoch: usize, lr: f64, mut model: Separator, optim: &mut ModuleOptimizer| {
        let mut sum = EpochSum::default();
        for indices in epoch_batches(items, cfg.schedule.batch_size, cfg.seed, epoch) {
            let b = make_batch(epoch, &indices).map_err(SeparationError::Data)?;
            let shape = [b.items, 2, b.frames, bins];
            let x = Tensor::<4>::from_data(TensorData::new(b.mixture, shape), &train_device);
            let y = Tensor::<4>::from_data(TensorData::new(b.target, shape), &train_device);
            let loss = loss(model.forward(x).estimate, y).total();
            let value: f32 = loss.clone().into_scalar::<f32>();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(lr, model, grads);
            sum.add(f64::from(value), b.items);
        }
        Ok((model, sum))
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

    #[test]
    fn an_epoch_is_full_batches_of_a_seeded_shuffle_or_one_short_batch() {
        let a = epoch_batches(10, 4, 7, 1);
        assert_eq!(
            a.len(),
            2,
            "the short last batch is dropped, as the study's drop_last"
        );
        assert!(a.iter().all(|b| b.len() == 4));
        assert_eq!(
            a,
            epoch_batches(10, 4, 7, 1),
            "same seed and epoch, same order"
        );
        assert_ne!(
            a,
            epoch_batches(10, 4, 7, 2),
            "another epoch, another order"
        );
        let short = epoch_batches(3, 12, 7, 1);
        assert_eq!(short.len(), 1);
        let mut items = short[0].clone();
        items.sort();
        assert_eq!(
            items,
            [0, 1, 2],
            "fewer items than a batch: one batch of all"
        );
        assert!(epoch_batches(0, 4, 7, 1).is_empty());
    }

    /// Random STFT-shaped items (`frames` × 201), the same for the same (epoch, item).
    fn items(frames: usize) -> impl FnMut(usize, &[usize]) -> Result<Batch, String> {
        move |epoch, indices| {
            let per = 2 * frames * 201;
            let (mut mixture, mut target) = (Vec::new(), Vec::new());
            for &i in indices {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64((epoch * 100 + i) as u64);
                let t: Vec<f32> = (0..per).map(|_| rng.random_range(-1.0..1.0)).collect();
                mixture.extend(t.iter().map(|v| v + rng.random_range(-0.5..0.5)));
                target.extend(t);
            }
            Ok(Batch {
                mixture,
                target,
                items: indices.len(),
                frames,
            })
        }
    }

    fn tiny(epochs: usize) -> SeparationTrainingConfig {
        let schedule = Schedule {
            epochs,
            batch_size: 2,
            lr: 1e-2,
            ..asdsweep_shared::family::separation::study_schedule()
        };
        SeparationTrainingConfig::new(SeparatorConfig::new(4, 0), schedule).with_seed(3)
    }

    #[test]
    fn a_run_stopped_after_an_epoch_and_resumed_from_its_checkpoint_repeats_the_loss_curve() {
        let device = Device::flex();
        let cfg = tiny(3);
        let whole = train(&cfg, 4, &device, None, items(6), |_| {
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(whole.losses.len(), 3);
        assert!(whole.finished && whole.losses.iter().all(|l| l.is_finite()));
        assert!(whole.losses[2] < whole.losses[0], "{:?}", whole.losses);

        let mut saved = None;
        let first = train(&cfg, 4, &device, None, items(6), |end| {
            saved = Some(end.checkpoint().unwrap().encode());
            ControlFlow::Break(())
        })
        .unwrap();
        assert!(!first.finished);
        assert_eq!(first.losses.len(), 1);
        let cp = Checkpoint::decode(&saved.unwrap()).unwrap();
        let resumed = train(&cfg, 4, &device, Some(&cp), items(6), |_| {
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(
            resumed.losses, whole.losses,
            "the same curve, resumed or not"
        );
        assert_eq!(resumed.best_epoch, whole.best_epoch);

        // A checkpoint of another config is refused by name.
        let other = SeparationTrainingConfig::new(SeparatorConfig::new(8, 0), cfg.schedule.clone());
        let err = train(&other, 4, &device, Some(&cp), items(6), |_| {
            ControlFlow::Continue(())
        })
        .err()
        .expect("refused")
        .to_string();
        assert!(
            err.contains("checkpoint") && err.contains("trained with"),
            "{err}"
        );
    }
}
