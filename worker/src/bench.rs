//! Training throughput: steps per second of one training step (forward, loss, backward,
//! AdamW update) of the study's models on random input, as `asdsweep bench train` reports
//! them beside PyTorch's (`scripts/bench_train_torch.py` times the same models the same way).
//!
//! A run builds the model with the family's config `init`, draws one random batch (seeded),
//! runs `warmup` untimed steps, then `repeats` timed runs of `steps` steps each, and reports
//! the median run. Every step reads its loss back to the host (as training does, to log it),
//! so no work is left queued when the clock stops. Threads: the steps run inside a rayon pool
//! of the size asked for, which is the pool burn's flex backend and its matrix kernels use.

use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};

use crate::families::ConfigError;
use crate::families::ae::AeConfig;
use crate::families::classifier::{ClassifierConfig, HeadKind};
use crate::families::contrastive::{ContrastiveConfig, Mode};
use crate::families::resnet::ResNetConfig;
use crate::families::separation::{SeparatorConfig, loss};
use asdsweep_shared::spec::Backend;

/// Machine types of DCASE 2022 Task 2, the classification family's classes.
pub const STUDY_CLASSES: usize = 7;

/// Why a benchmark cannot run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The model config cannot be built.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A count that must be positive is zero.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    /// The device cannot be used by this build.
    #[error(transparent)]
    Device(#[from] crate::backend::BackendError),
    /// The thread pool could not be started.
    #[error("cannot start a pool of {threads} threads: {message}")]
    Pool {
        /// Threads asked for.
        threads: usize,
        /// rayon's reason.
        message: String,
    },
}

/// What is trained: a model shape, a batch size and the input shape.
#[derive(Debug, Clone, PartialEq)]
pub enum Workload {
    /// The autoencoder family on `[batch, input_dim]` rows, MSE reconstruction loss.
    Autoencoder {
        /// Model shape.
        model: AeConfig,
        /// Rows per step.
        batch: usize,
        /// AdamW learning rate.
        lr: f64,
    },
    /// The classification family (ResNet + cross-entropy head) on `[batch, 1, mels, frames]`.
    Classifier {
        /// Backbone shape.
        backbone: ResNetConfig,
        /// Classes of the head.
        classes: usize,
        /// Clips per step.
        batch: usize,
        /// Mel bins of a clip.
        mels: usize,
        /// Frames of a clip.
        frames: usize,
        /// AdamW learning rate.
        lr: f64,
    },
    /// The contrastive family (SimCLR: ResNet + projector, NT-Xent) on two views
    /// `[batch, 1, mels, frames]` each.
    Contrastive {
        /// Model shape.
        model: ContrastiveConfig,
        /// View pairs per step.
        batch: usize,
        /// Mel bins of a view.
        mels: usize,
        /// Frames of a view.
        frames: usize,
        /// AdamW learning rate.
        lr: f64,
    },
    /// The separation family on `[batch, 2, frames, bins]` mixture STFTs, against random
    /// target STFTs of the same shape, with the family's loss.
    Separator {
        /// Model shape.
        model: SeparatorConfig,
        /// Mixtures per step.
        batch: usize,
        /// STFT frames of a mixture (2 s at hop 200: 161).
        frames: usize,
        /// AdamW learning rate.
        lr: f64,
    },
}

impl Workload {
    /// The study's autoencoder (hidden 128, latent 8, 640-dim input) at batch 512.
    pub fn study_autoencoder() -> Workload {
        Workload::Autoencoder {
            model: AeConfig::new(),
            batch: 512,
            lr: 5e-4,
        }
    }

    /// The study's ResNet-18 classifier (full width, 7 classes) at batch 32 on 1×128×313 clips.
    pub fn study_resnet18() -> Workload {
        Workload::Classifier {
            backbone: ResNetConfig::new().with_depth(18),
            classes: STUDY_CLASSES,
            batch: 32,
            mels: 128,
            frames: 313,
            lr: 1e-5,
        }
    }

    /// The study's SimCLR on ResNet-18 (full width) at batch 96 view pairs of 1×128×313.
    pub fn study_simclr() -> Workload {
        Workload::Contrastive {
            model: ContrastiveConfig::new(ResNetConfig::new().with_depth(18), Mode::SimClr),
            batch: 96,
            mels: 128,
            frames: 313,
            lr: 5e-4,
        }
    }

    /// The study's separator at C 64, cb 2, batch 12 on 2-s mixtures (161 frames × 201 bins).
    pub fn study_separator() -> Workload {
        Workload::Separator {
            model: SeparatorConfig::new(64, 2),
            batch: 12,
            frames: 161,
            lr: 5e-4,
        }
    }

    /// Short name (`ae`, `resnet18`, …) used in reports.
    pub fn name(&self) -> String {
        match self {
            Workload::Autoencoder { .. } => "ae".into(),
            Workload::Classifier { backbone, .. } => format!("resnet{}", backbone.depth),
            Workload::Separator { .. } => "separator".into(),
            Workload::Contrastive { .. } => "simclr".into(),
        }
    }

    /// The same workload at another batch size.
    pub fn with_batch(mut self, n: usize) -> Workload {
        match &mut self {
            Workload::Autoencoder { batch, .. }
            | Workload::Classifier { batch, .. }
            | Workload::Separator { batch, .. }
            | Workload::Contrastive { batch, .. } => *batch = n,
        }
        self
    }

    /// Samples per step.
    pub fn batch(&self) -> usize {
        match self {
            Workload::Autoencoder { batch, .. }
            | Workload::Classifier { batch, .. }
            | Workload::Separator { batch, .. }
            | Workload::Contrastive { batch, .. } => *batch,
        }
    }

    /// Shape of one step's input tensor.
    pub fn input_shape(&self) -> Vec<usize> {
        match self {
            Workload::Autoencoder { model, batch, .. } => vec![*batch, model.input_dim],
            Workload::Classifier {
                batch,
                mels,
                frames,
                ..
            } => vec![*batch, 1, *mels, *frames],
            Workload::Separator {
                model,
                batch,
                frames,
                ..
            } => vec![*batch, 2, *frames, model.bins],
            Workload::Contrastive {
                batch,
                mels,
                frames,
                ..
            } => vec![2, *batch, 1, *mels, *frames],
        }
    }
}

/// How long and on how many threads to measure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchOptions {
    /// Untimed steps before the first timed run (allocator, caches, lazy initialisation).
    pub warmup: usize,
    /// Steps per timed run.
    pub steps: usize,
    /// Timed runs; the report's figure is their median.
    pub repeats: usize,
    /// Threads of the compute pool.
    pub threads: usize,
    /// Seed of the weights, the input and the labels.
    pub seed: u64,
    /// Device to train on, as `worker --device` takes it (`cpu`, `cuda:0`).
    pub device: String,
}

/// One workload's measured throughput.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TrainBenchReport {
    /// Workload name (`ae`, `resnet18`).
    pub model: String,
    /// The backend measured: `burn-flex`, or `burn-flex+x86-v4` in a build with AVX-512
    /// kernels, `burn-cuda`, `burn-tch`.
    pub framework: String,
    /// The device trained on (`cpu`, `cuda:0`).
    pub device: String,
    /// Threads of the compute pool.
    pub threads: usize,
    /// Samples per step.
    pub batch: usize,
    /// Shape of one step's input.
    pub input_shape: Vec<usize>,
    /// Untimed warm-up steps.
    pub warmup: usize,
    /// Steps per timed run.
    pub steps: usize,
    /// Steps per second of each timed run, in run order.
    pub runs_steps_per_s: Vec<f64>,
    /// Median of `runs_steps_per_s`: the figure to quote.
    pub steps_per_s: f64,
    /// `steps_per_s × batch`.
    pub samples_per_s: f64,
    /// Loss of the last step (finite if training is sane).
    pub last_loss: f32,
    /// 1-, 5- and 15-minute load averages when the measurement started (Linux only).
    pub load_average: Option<[f64; 3]>,
}

impl std::fmt::Display for TrainBenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let runs: Vec<String> = self
            .runs_steps_per_s
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect();
        write!(
            f,
            "{} ({}, batch {}, input {:?}, {} threads): {:.2} steps/s ({:.0} samples/s), median of {} runs of {} steps [{}] after {} warm-up steps",
            self.model,
            self.framework,
            self.batch,
            self.input_shape,
            self.threads,
            self.steps_per_s,
            self.samples_per_s,
            self.runs_steps_per_s.len(),
            self.steps,
            runs.join(", "),
            self.warmup,
        )?;
        if let Some([one, five, fifteen]) = self.load_average {
            write!(f, "; load average {one:.2} {five:.2} {fifteen:.2}")?;
        }
        Ok(())
    }
}

/// The median of `values` (the mean of the middle two for an even count); NaN when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The system's load averages, from `/proc/loadavg`.
pub fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = text.split_whitespace().map(|s| s.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// Times training steps of `workload` on burn's flex backend.
pub fn train_throughput(
    workload: &Workload,
    options: &BenchOptions,
) -> Result<TrainBenchReport, BenchError> {
    for (name, value) in [
        ("steps", options.steps),
        ("repeats", options.repeats),
        ("threads", options.threads),
        ("batch", workload.batch()),
    ] {
        if value == 0 {
            return Err(BenchError::Zero(name));
        }
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(options.threads)
        .thread_name(|i| format!("bench-{i}"))
        .build()
        .map_err(|e| BenchError::Pool {
            threads: options.threads,
            message: e.to_string(),
        })?;
    let selected = crate::backend::select(&options.device)?;
    let framework = match selected.backend {
        Backend::Flex if cfg!(feature = "x86-v4") => "burn-flex+x86-v4".to_owned(),
        b => format!("burn-{}", b.as_str()),
    };
    let load = load_average();
    let (runs, last_loss) = pool.install(|| time_steps(workload, options, &selected.device))?;
    let steps_per_s = median(&runs);
    Ok(TrainBenchReport {
        model: workload.name(),
        framework,
        device: selected.name,
        threads: options.threads,
        batch: workload.batch(),
        input_shape: workload.input_shape(),
        warmup: options.warmup,
        steps: options.steps,
        runs_steps_per_s: runs,
        steps_per_s,
        samples_per_s: steps_per_s * workload.batch() as f64,
        last_loss,
        load_average: load,
    })
}

/// Random values in [-1, 1) from `seed`.
fn random_values(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

/// Runs the warm-up, then `repeats` timed runs; returns each run's steps/s and the last loss.
fn time_steps(
    workload: &Workload,
    o: &BenchOptions,
    device: &Device,
) -> Result<(Vec<f64>, f32), BenchError> {
    let device = device.clone().autodiff();
    let shape = workload.input_shape();
    let values = random_values(shape.iter().product(), o.seed);
    match workload {
        Workload::Autoencoder { model, batch, lr } => {
            let net = model.init(&device, o.seed);
            let x =
                Tensor::<2>::from_data(TensorData::new(values, [*batch, model.input_dim]), &device);
            // As `ae::train`.
            Ok(adamw_steps(o, net, *lr, |net| {
                (net.forward(x.clone()) - x.clone()).powi_scalar(2).mean()
            }))
        }
        Workload::Classifier {
            backbone,
            classes,
            batch,
            mels,
            frames,
            lr,
        } => {
            let cfg = ClassifierConfig::new(backbone.clone(), *classes)
                .with_head(HeadKind::CrossEntropy)
                .with_crop_frames(*frames);
            let net = cfg.init(&device, o.seed)?;
            let x = Tensor::<4>::from_data(
                TensorData::new(values, [*batch, 1, *mels, *frames]),
                &device,
            );
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(o.seed ^ 0x5eed);
            let labels: Vec<i64> = (0..*batch)
                .map(|_| rng.random_range(0..*classes as i64))
                .collect();
            let targets = Tensor::<1, Int>::from_data(TensorData::new(labels, [*batch]), &device);
            // As `classifier::train`.
            Ok(adamw_steps(o, net, *lr, |net| {
                net.loss(x.clone(), targets.clone())
            }))
        }
        Workload::Contrastive {
            model,
            batch,
            mels,
            frames,
            lr,
        } => {
            let net = model.init(&device, o.seed)?;
            let half = values.len() / 2;
            let shape = [*batch, 1, *mels, *frames];
            let a =
                Tensor::<4>::from_data(TensorData::new(values[..half].to_vec(), shape), &device);
            let b =
                Tensor::<4>::from_data(TensorData::new(values[half..].to_vec(), shape), &device);
            // As `contrastive::train`.
            Ok(adamw_steps(o, net, *lr, |net| {
                net.loss(a.clone(), b.clone())
            }))
        }
        Workload::Separator {
            model,
            batch,
            frames,
            lr,
        } => {
            let net = model.init(&device, o.seed);
            let shape = [*batch, 2, *frames, model.bins];
            let x = Tensor::<4>::from_data(TensorData::new(values, shape), &device);
            let target = random_values(x.shape().num_elements(), o.seed ^ 0x5eed);
            let y = Tensor::<4>::from_data(TensorData::new(target, shape), &device);
            // As `separation::train`.
            Ok(adamw_steps(o, net, *lr, |net| {
                loss(net.forward(x.clone()).estimate, y.clone()).total()
            }))
        }
    }
}

/// [`timed_runs`] of training steps of `model` at `lr` on the loss `loss_of` gives: AdamW with
/// PyTorch's weight decay and epsilon, as every family trains, the model taken by value
/// into each update as training does (the old parameters are not kept alive, so the update
/// may reuse their buffers).
fn adamw_steps<M: Module>(
    o: &BenchOptions,
    model: M,
    lr: f64,
    loss_of: impl Fn(&M) -> Tensor<1>,
) -> (Vec<f64>, f32) {
    let mut optim = AdamWConfig::new()
        .with_weight_decay(0.01)
        .with_epsilon(1e-8)
        .init();
    let mut slot = Some(model);
    timed_runs(o, || {
        let net = slot
            .take()
            .expect("the step loop puts the model back after every step");
        let loss = loss_of(&net);
        let value: f32 = loss.clone().into_scalar::<f32>();
        let grads = GradientsParams::from_grads(loss.backward(), &net);
        slot = Some(optim.step(lr, net, grads));
        value
    })
}

/// `warmup` steps, then `repeats` runs of `steps` steps, each timed on its own.
fn timed_runs(o: &BenchOptions, mut step: impl FnMut() -> f32) -> (Vec<f64>, f32) {
    let mut last = f32::NAN;
    for _ in 0..o.warmup {
        last = step();
    }
    let mut runs = Vec::with_capacity(o.repeats);
    for _ in 0..o.repeats {
        let start = Instant::now();
        for _ in 0..o.steps {
            last = step();
        }
        runs.push(o.steps as f64 / start.elapsed().as_secs_f64());
    }
    (runs, last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_options() -> BenchOptions {
        BenchOptions {
            warmup: 1,
            steps: 2,
            repeats: 3,
            threads: 1,
            seed: 1,
            device: "cpu".into(),
        }
    }

    #[test]
    fn a_tiny_autoencoder_run_reports_every_repeat_and_a_finite_loss() {
        let w = Workload::Autoencoder {
            model: AeConfig::new().with_hidden(16).with_latent(4),
            batch: 8,
            lr: 5e-4,
        };
        let r = train_throughput(&w, &tiny_options()).expect("runs");
        assert_eq!((r.model.as_str(), r.batch, r.steps), ("ae", 8, 2));
        assert!(r.framework.starts_with("burn-flex"), "{}", r.framework);
        assert_eq!(r.input_shape, vec![8, 640]);
        assert_eq!(r.runs_steps_per_s.len(), 3);
        assert!(r.runs_steps_per_s.iter().all(|s| s.is_finite() && *s > 0.0));
        assert_eq!(r.steps_per_s, median(&r.runs_steps_per_s));
        assert!(r.last_loss.is_finite());
    }

    #[test]
    fn a_tiny_resnet_run_trains_the_classifier_with_its_cross_entropy_head() {
        let w = Workload::Classifier {
            backbone: ResNetConfig::new()
                .with_depth(18)
                .with_width_multiplier(1.0 / 32.0),
            classes: 3,
            batch: 2,
            mels: 32,
            frames: 24,
            lr: 1e-3,
        };
        let r = train_throughput(
            &w,
            &BenchOptions {
                repeats: 1,
                ..tiny_options()
            },
        )
        .expect("runs");
        assert_eq!(r.model, "resnet18");
        assert_eq!(r.input_shape, vec![2, 1, 32, 24]);
        assert!(r.last_loss.is_finite() && r.last_loss > 0.0);
    }

    #[test]
    fn a_tiny_simclr_run_trains_on_two_views_with_nt_xent() {
        let w = Workload::Contrastive {
            model: ContrastiveConfig::new(
                ResNetConfig::new().with_width_multiplier(1.0 / 32.0),
                Mode::SimClr,
            ),
            batch: 3,
            mels: 32,
            frames: 24,
            lr: 1e-3,
        };
        let r = train_throughput(
            &w,
            &BenchOptions {
                repeats: 1,
                ..tiny_options()
            },
        )
        .expect("runs");
        assert_eq!((r.model.as_str(), r.batch), ("simclr", 3));
        assert_eq!(r.input_shape, vec![2, 3, 1, 32, 24]);
        assert!(
            r.last_loss.is_finite() && r.last_loss > 0.0,
            "{}",
            r.last_loss
        );
    }

    #[test]
    fn zero_steps_threads_or_repeats_are_refused_by_name() {
        let w = Workload::study_autoencoder();
        for (o, name) in [
            (
                BenchOptions {
                    steps: 0,
                    ..tiny_options()
                },
                "steps",
            ),
            (
                BenchOptions {
                    threads: 0,
                    ..tiny_options()
                },
                "threads",
            ),
            (
                BenchOptions {
                    repeats: 0,
                    ..tiny_options()
                },
                "repeats",
            ),
        ] {
            let err = train_throughput(&w, &o).expect_err("zero").to_string();
            assert!(err.starts_with(name), "{err}");
        }
        if !cfg!(any(feature = "cuda", feature = "tch")) {
            let gpu = BenchOptions {
                device: "cuda:0".into(),
                ..tiny_options()
            };
            let err = train_throughput(&w, &gpu)
                .expect_err("no GPU backend")
                .to_string();
            assert!(err.contains("cuda:0"), "{err}");
        }
    }

    #[test]
    fn the_study_workloads_have_the_issue_s_batch_and_input_sizes() {
        assert_eq!(Workload::study_autoencoder().input_shape(), vec![512, 640]);
        assert_eq!(
            Workload::study_resnet18().input_shape(),
            vec![32, 1, 128, 313]
        );
        assert_eq!(Workload::study_resnet18().name(), "resnet18");
    }

    #[test]
    fn the_median_takes_the_middle_value_or_the_mean_of_the_middle_two() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
