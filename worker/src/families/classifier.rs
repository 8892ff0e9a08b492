//! The classification family, as the study's `train_classifier.py`: a ResNet
//! ([`super::resnet`]) on 1×mels×frames log-mel images (the study: 128×313, a 10 s clip at
//! 16 kHz) trained to name the machine type, with a cross-entropy head (`fc`) or an ArcFace
//! head ([`super::arcface`], margin 0.5, scale 30). AdamW at lr 1e-5, halved every 50
//! epochs, batch 64, the state with the lowest training loss kept. The embedding is the
//! backbone's pooled penultimate layer; the proxy metric is macro-F1 on held-out clips.
//!
//! Where this differs from the study, on purpose:
//! - clips may be longer than `crop_frames`: training reads a random window (seeded),
//!   evaluation the centred one; the study feeds whole clips (`crop_frames` = 313);
//! - an epoch visits every clip once in a seeded order; the study's `ARCDataset` draws
//!   clips with replacement;
//! - the ArcFace model predicts the class with the largest cosine; the study instead
//!   fine-tunes `fc` on the frozen backbone for a second run of epochs and predicts with it.
//!
//! Training checkpoints like the autoencoder ([`super::checkpoint`]) and resumes with the
//! same loss curve: shuffles and crops are drawn per epoch from (seed, epoch).

pub mod job;

use std::ops::ControlFlow;

use asdsweep_shared::family::Schedule;
use asdsweep_shared::metrics::MetricsError;
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::Config;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::ConfigError;
use super::arcface::{ArcFace, ArcFaceConfig, STUDY_MARGIN, STUDY_SCALE, arcface_loss};
use super::checkpoint::{CheckpointError, EpochSum, TrainingConfig, run_epochs};
use super::resnet::{ResNet, ResNetConfig};

/// Clips per forward pass when computing embeddings and predictions.
const EVAL_BATCH: usize = 64;

/// Why a classifier cannot be built, trained or evaluated on the data given.
#[derive(Debug, thiserror::Error)]
pub enum ClassifierError {
    /// The config names a shape that cannot be built.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The clip buffer does not hold a whole number of clips.
    #[error("clip buffer holds {values} values, not a whole number of {mels}×{frames} clips")]
    Ragged {
        /// Values in the buffer.
        values: usize,
        /// Mel bins per frame.
        mels: usize,
        /// Frames per clip.
        frames: usize,
    },
    /// Clips are shorter than the crop the model reads.
    #[error("clips have {frames} frames, fewer than crop_frames = {crop_frames}")]
    ClipTooShort {
        /// Frames per clip.
        frames: usize,
        /// Frames the model reads.
        crop_frames: usize,
    },
    /// Labels and clips differ in number.
    #[error("{clips} clips but {labels} labels")]
    LabelCount {
        /// Clips given.
        clips: usize,
        /// Labels given.
        labels: usize,
    },
    /// A label is not a class of the model.
    #[error("label {label} of clip {clip} is not below the class count {classes}")]
    LabelOutOfRange {
        /// Index of the clip.
        clip: usize,
        /// Its label.
        label: usize,
        /// Classes of the model.
        classes: usize,
    },
    /// There are no clips to work on.
    #[error("no clips to {0}")]
    NoClips(&'static str),
    /// The proxy metric could not be computed.
    #[error(transparent)]
    Metric(#[from] MetricsError),
    /// A checkpoint does not belong to this run or cannot be decoded.
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
}

/// Log-mel clips, row-major `[clips, mels, frames]`, borrowed from the caller.
#[derive(Debug, Clone, Copy)]
pub struct Clips<'a> {
    data: &'a [f32],
    mels: usize,
    frames: usize,
}

impl<'a> Clips<'a> {
    /// Views `data` as clips of `mels × frames` values each.
    pub fn new(data: &'a [f32], mels: usize, frames: usize) -> Result<Self, ClassifierError> {
        let per_clip = mels * frames;
        if per_clip == 0 || !data.len().is_multiple_of(per_clip) {
            return Err(ClassifierError::Ragged {
                values: data.len(),
                mels,
                frames,
            });
        }
        Ok(Clips { data, mels, frames })
    }

    /// Number of clips.
    pub fn len(&self) -> usize {
        self.data.len() / (self.mels * self.frames)
    }

    /// Whether there are no clips.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// A `[batch, 1, mels, crop]` tensor of the windows `offsets[i]..offsets[i] + crop` of `clips[i]`.
    fn batch(&self, clips: &[usize], offsets: &[usize], crop: usize, device: &Device) -> Tensor<4> {
        let mut buf = Vec::with_capacity(clips.len() * self.mels * crop);
        for (&clip, &offset) in clips.iter().zip(offsets) {
            let base = clip * self.mels * self.frames + offset;
            for mel in 0..self.mels {
                let start = base + mel * self.frames;
                buf.extend_from_slice(&self.data[start..start + crop]);
            }
        }
        Tensor::from_data(
            TensorData::new(buf, [clips.len(), 1, self.mels, crop]),
            device,
        )
    }
}

/// Which head classifies the embedding (the spec's `head`).
pub use asdsweep_shared::family::classifier::Head as HeadKind;

/// Shape of one classifier checkpoint.
#[derive(Config, Debug, PartialEq)]
pub struct ClassifierConfig {
    /// The backbone.
    pub backbone: ResNetConfig,
    /// Number of classes (machine types).
    pub classes: usize,
    /// The head.
    #[config(default = "HeadKind::CrossEntropy")]
    pub head: HeadKind,
    /// Frames the model reads from each clip (the study: 313, a whole 10 s clip).
    #[config(default = 313)]
    pub crop_frames: usize,
    /// ArcFace angular margin in radians (the study: 0.5).
    #[config(default = 0.5)]
    pub arcface_margin: f64,
    /// ArcFace logit scale (the study: 30).
    #[config(default = 30.0)]
    pub arcface_scale: f64,
}

/// How a classifier is trained.
#[derive(Config, Debug, PartialEq)]
pub struct ClassifierTrainingConfig {
    /// Model shape.
    pub model: ClassifierConfig,
    /// Epochs, batch size, learning rate and its step decay (the study's:
    /// [`asdsweep_shared::family::classifier::study_schedule`]).
    pub schedule: Schedule,
    /// AdamW weight decay (PyTorch's default, 0.01).
    #[config(default = 0.01)]
    pub weight_decay: f32,
    /// Seed for initialisation, shuffling and crops.
    #[config(default = 1)]
    pub seed: u64,
}

impl TrainingConfig for ClassifierTrainingConfig {
    const MAGIC: &'static [u8] = b"asdsweep-classifier-checkpoint\n";
    const FAMILY: &'static str = "a classifier";
}

/// A decoded classifier checkpoint.
pub type Checkpoint = super::checkpoint::Checkpoint<ClassifierTrainingConfig>;

impl Checkpoint {
    /// The lowest-loss model, on `device` (without autodiff): what evaluation uses.
    pub fn best_model(&self, device: &Device) -> Result<Classifier, ClassifierError> {
        Ok(self.load_best(self.config.model.init(device, self.config.seed)?)?)
    }
}

/// The state of a run at the end of an epoch, handed to `on_epoch`.
pub type EpochEnd<'a> = super::checkpoint::EpochEnd<'a, ClassifierTrainingConfig, Classifier>;

/// The classifier's head.
#[derive(Module, Debug)]
pub enum Head {
    /// `fc`: logits.
    CrossEntropy(Linear),
    /// ArcFace: cosines to the class centres.
    ArcFace(ArcFace),
}

/// A ResNet with a classification head.
#[derive(Module, Debug)]
pub struct Classifier {
    backbone: ResNet,
    head: Head,
    classes: usize,
    crop_frames: usize,
    margin: f64,
    scale: f64,
}

fn check_positive(key: &'static str, value: f64) -> Result<(), ConfigError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(ConfigError {
            key,
            value: value.to_string(),
            expected: "a finite number above 0",
        })
    }
}

impl ClassifierConfig {
    /// A config with the study's settings for `depth` and `classes` (full width, 313 frames).
    pub fn study(depth: usize, head: HeadKind, classes: usize) -> Self {
        ClassifierConfig::new(ResNetConfig::new().with_depth(depth), classes)
            .with_head(head)
            .with_arcface_margin(STUDY_MARGIN)
            .with_arcface_scale(STUDY_SCALE)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.classes < 2 {
            return Err(ConfigError {
                key: "classes",
                value: self.classes.to_string(),
                expected: "at least 2",
            });
        }
        if self.crop_frames == 0 {
            return Err(ConfigError {
                key: "crop_frames",
                value: "0".into(),
                expected: "at least 1",
            });
        }
        if !(self.arcface_margin.is_finite() && self.arcface_margin >= 0.0) {
            return Err(ConfigError {
                key: "arcface_margin",
                value: self.arcface_margin.to_string(),
                expected: "a finite number ≥ 0",
            });
        }
        check_positive("arcface_scale", self.arcface_scale)
    }

    /// Builds a model on `device` with weights drawn from `seed`.
    pub fn init(&self, device: &Device, seed: u64) -> Result<Classifier, ConfigError> {
        self.validate()?;
        let layout = self.backbone.layout()?;
        let backbone = self.backbone.init(device, seed)?;
        // The head draws from its own stream, derived from the job seed.
        let head =
            super::init_seeded(
                device,
                seed.wrapping_add(0x9e37_79b9_7f4a_7c15),
                || match self.head {
                    HeadKind::CrossEntropy => Head::CrossEntropy(
                        LinearConfig::new(layout.embedding_dim(), self.classes).init(device),
                    ),
                    HeadKind::ArcFace => Head::ArcFace(
                        ArcFaceConfig::new(layout.embedding_dim(), self.classes).init(device),
                    ),
                },
            );
        Ok(Classifier {
            backbone,
            head,
            classes: self.classes,
            crop_frames: self.crop_frames,
            margin: self.arcface_margin,
            scale: self.arcface_scale,
        })
    }
}

impl Classifier {
    /// The embedding (pooled penultimate layer): `[batch, 1, mels, frames]` → `[batch, dim]`.
    pub fn embed(&self, x: Tensor<4>) -> Tensor<2> {
        self.backbone.forward(x)
    }

    /// Class scores of embeddings: logits (cross-entropy) or cosines (ArcFace).
    pub fn scores(&self, embedding: Tensor<2>) -> Tensor<2> {
        match &self.head {
            Head::CrossEntropy(fc) => fc.forward(embedding),
            Head::ArcFace(arc) => arc.cosine(embedding),
        }
    }

    /// `(scores, embedding)` of a batch, as the study's `ResNet.forward` returns `(logits, features)`.
    pub fn forward(&self, x: Tensor<4>) -> (Tensor<2>, Tensor<2>) {
        let embedding = self.embed(x);
        (self.scores(embedding.clone()), embedding)
    }

    /// The training loss of a batch: cross-entropy, or the ArcFace loss.
    pub fn loss(&self, x: Tensor<4>, targets: Tensor<1, Int>) -> Tensor<1> {
        let (scores, _) = self.forward(x);
        match &self.head {
            Head::CrossEntropy(_) => CrossEntropyLossConfig::new()
                .init(&scores.device())
                .forward(scores, targets),
            Head::ArcFace(_) => arcface_loss(scores, targets, self.margin, self.scale),
        }
    }

    /// Width of the embedding.
    pub fn embedding_dim(&self) -> usize {
        self.backbone.embedding_dim()
    }

    /// Which head the model has.
    pub fn head_kind(&self) -> HeadKind {
        match self.head {
            Head::CrossEntropy(_) => HeadKind::CrossEntropy,
            Head::ArcFace(_) => HeadKind::ArcFace,
        }
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Frames the model reads from each clip.
    pub fn crop_frames(&self) -> usize {
        self.crop_frames
    }

    fn centred_offset(&self, clips: &Clips) -> Result<usize, ClassifierError> {
        if clips.frames < self.crop_frames {
            return Err(ClassifierError::ClipTooShort {
                frames: clips.frames,
                crop_frames: self.crop_frames,
            });
        }
        Ok((clips.frames - self.crop_frames) / 2)
    }

    /// Runs `f` on the scores and embeddings of the centred window of every clip, in batches.
    fn each_batch(
        &self,
        clips: &Clips,
        device: &Device,
        mut f: impl FnMut(Tensor<2>, Tensor<2>),
    ) -> Result<(), ClassifierError> {
        let offset = self.centred_offset(clips)?;
        let order: Vec<usize> = (0..clips.len()).collect();
        for batch in order.chunks(EVAL_BATCH) {
            let x = clips.batch(batch, &vec![offset; batch.len()], self.crop_frames, device);
            let (scores, embedding) = self.forward(x);
            f(scores, embedding);
        }
        Ok(())
    }

    /// Embeddings of the centred window of each clip, row-major `[clips, embedding_dim]`.
    /// The model must live on `device` (a trained model lives on the device given to [`train`]).
    pub fn embeddings(
        &self,
        clips: &Clips,
        device: &Device,
    ) -> Result<Embeddings, ClassifierError> {
        let mut values = Vec::with_capacity(clips.len() * self.embedding_dim());
        self.each_batch(clips, device, |_, e| {
            values.extend(e.into_data().iter::<f32>())
        })?;
        Ok(Embeddings {
            dim: self.embedding_dim(),
            values,
        })
    }

    /// Predicted class of each clip: the largest logit, or for ArcFace the largest cosine.
    pub fn predict(&self, clips: &Clips, device: &Device) -> Result<Vec<usize>, ClassifierError> {
        let mut predicted = Vec::with_capacity(clips.len());
        self.each_batch(clips, device, |s, _| {
            predicted.extend(s.argmax(1).into_data().iter::<i64>().map(|c| c as usize));
        })?;
        Ok(predicted)
    }

    /// The proxy metric: macro-F1 of the predictions on held-out `clips` against `labels`
    /// (scikit-learn's `f1_score(average="macro")`).
    pub fn macro_f1(
        &self,
        clips: &Clips,
        labels: &[usize],
        device: &Device,
    ) -> Result<f64, ClassifierError> {
        if clips.is_empty() {
            return Err(ClassifierError::NoClips("score"));
        }
        check_labels(clips, labels, self.classes)?;
        let predicted = self.predict(clips, device)?;
        Ok(asdsweep_shared::metrics::proxy::macro_f1(
            labels, &predicted,
        )?)
    }
}

/// Embeddings, row-major `[rows, dim]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    /// Width of each row.
    pub dim: usize,
    /// `rows × dim` values.
    pub values: Vec<f32>,
}

impl Embeddings {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.values.len().checked_div(self.dim).unwrap_or(0)
    }

    /// Row `i`; panics if `i >= rows()`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.values[i * self.dim..(i + 1) * self.dim]
    }
}

fn check_labels(clips: &Clips, labels: &[usize], classes: usize) -> Result<(), ClassifierError> {
    if labels.len() != clips.len() {
        return Err(ClassifierError::LabelCount {
            clips: clips.len(),
            labels: labels.len(),
        });
    }
    match labels.iter().position(|&l| l >= classes) {
        Some(clip) => Err(ClassifierError::LabelOutOfRange {
            clip,
            label: labels[clip],
            classes,
        }),
        None => Ok(()),
    }
}

/// The outcome of training.
pub type Trained = super::checkpoint::Run<Classifier>;

/// Trains on `clips` labelled `labels` (class indices), from scratch or from `resume`,
/// calling `on_epoch` after each epoch; [`ControlFlow::Break`] stops the run there
/// (cancellation). Batches follow the study's loader: full batches only (`drop_last`)
/// unless there are fewer clips than one batch. Deterministic for a seed on the CPU
/// backend, and a resumed run repeats the loss curve of an uninterrupted one.
pub fn train(
    cfg: &ClassifierTrainingConfig,
    clips: &Clips,
    labels: &[usize],
    device: &Device,
    resume: Option<&Checkpoint>,
    on_epoch: impl FnMut(&EpochEnd<'_>) -> ControlFlow<()>,
) -> Result<Trained, ClassifierError> {
    if clips.is_empty() {
        return Err(ClassifierError::NoClips("train on"));
    }
    if cfg.schedule.batch_size == 0 {
        return Err(ConfigError {
            key: "batch_size",
            value: "0".into(),
            expected: "at least 1",
        }
        .into());
    }
    check_labels(clips, labels, cfg.model.classes)?;
    let crop = cfg.model.crop_frames;
    if clips.frames < crop {
        return Err(ClassifierError::ClipTooShort {
            frames: clips.frames,
            crop_frames: crop,
        });
    }
    let train_device = device.clone().autodiff();
    let model = cfg.model.init(&train_device, cfg.seed)?;
    let fresh = || {
        cfg.model
            .init(device, cfg.seed)
            .map_err(|e| CheckpointError(e.to_string()))
    };
    let n = clips.len();
    let usable = if n >= cfg.schedule.batch_size {
        n - n % cfg.schedule.batch_size
    } else {
        n
    };
    let mut order: Vec<usize> = Vec::with_capacity(n);
    let epoch = |epoch: usize, lr: f64, mut model: Classifier, optim: &mut ModuleOptimizer| {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(cfg.seed);
        rng.set_stream(epoch as u64);
        order.clear();
        order.extend(0..n);
        order.shuffle(&mut rng);
        let mut sum = EpochSum::default();
        for batch in order[..usable].chunks(cfg.schedule.batch_size) {
            let offsets: Vec<usize> = batch
                .iter()
                .map(|_| rng.random_range(0..=clips.frames - crop))
                .collect();
            let x = clips.batch(batch, &offsets, crop, &train_device);
            let targets: Vec<i64> = batch.iter().map(|&i| labels[i] as i64).collect();
            let targets =
                Tensor::<1, Int>::from_data(TensorData::new(targets, [batch.len()]), &train_device);
            let loss = model.loss(x, targets);
            let value: f32 = loss.clone().into_scalar::<f32>();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(lr, model, grads);
            sum.add(value as f64, batch.len());
        }
        Ok::<_, ClassifierError>((model, sum))
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

    const MELS: usize = 128;

    fn go_on(_: &EpochEnd<'_>) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }

    /// `n` clips of `frames` frames; class `c`'s clips carry a tone in mel band `20 + 30·c`.
    fn data(n: usize, classes: usize, frames: usize, seed: u64) -> (Vec<f32>, Vec<usize>) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut values = Vec::with_capacity(n * MELS * frames);
        let labels: Vec<usize> = (0..n).map(|i| i % classes).collect();
        for &label in &labels {
            for mel in 0..MELS {
                let tone = if mel.abs_diff(20 + 30 * label) <= 2 {
                    3.0
                } else {
                    0.0
                };
                values.extend((0..frames).map(|_| tone + rng.random_range(-1.0f32..1.0)));
            }
        }
        (values, labels)
    }

    fn tiny(head: HeadKind, seed: u64) -> ClassifierTrainingConfig {
        let backbone = ResNetConfig::new().with_width_multiplier(0.125);
        let model = ClassifierConfig::new(backbone, 3)
            .with_head(head)
            .with_crop_frames(32);
        let schedule = Schedule {
            epochs: 2,
            batch_size: 8,
            lr: 1e-3,
            ..asdsweep_shared::family::classifier::study_schedule()
        };
        ClassifierTrainingConfig::new(model, schedule).with_seed(seed)
    }

    /// `cfg` with its schedule changed by `f`.
    fn sched(
        mut cfg: ClassifierTrainingConfig,
        f: impl FnOnce(&mut Schedule),
    ) -> ClassifierTrainingConfig {
        f(&mut cfg.schedule);
        cfg
    }

    #[test]
    fn the_same_seed_gives_the_same_loss_curve_and_another_seed_another() {
        let (values, labels) = data(16, 3, 40, 1);
        let clips = Clips::new(&values, MELS, 40).expect("whole clips");
        let device = crate::families::test_device();
        for head in [HeadKind::CrossEntropy, HeadKind::ArcFace] {
            let run = |seed| {
                train(&tiny(head, seed), &clips, &labels, &device, None, go_on)
                    .expect("trains")
                    .losses
            };
            let (a, b, c) = (run(1), run(1), run(2));
            assert_eq!(a.len(), 2);
            assert_eq!(a, b, "{head:?}: same seed, same curve");
            assert_ne!(a, c, "{head:?}: another seed, another curve");
            assert!(a.iter().all(|l| l.is_finite()), "{head:?}: {a:?}");
        }
    }

    #[test]
    fn a_small_resnet18_learns_to_tell_machine_types_apart_and_reports_macro_f1() {
        let (values, labels) = data(36, 3, 40, 2);
        let clips = Clips::new(&values, MELS, 40).expect("whole clips");
        let (held_values, held_labels) = data(12, 3, 40, 3);
        let held = Clips::new(&held_values, MELS, 40).expect("whole clips");
        let device = crate::families::test_device();
        for head in [HeadKind::CrossEntropy, HeadKind::ArcFace] {
            let mut seen = Vec::new();
            let cfg = sched(tiny(head, 5), |s| (s.epochs, s.batch_size) = (6, 12));
            let t = train(&cfg, &clips, &labels, &device, None, |e| {
                seen.push((e.epoch, e.loss));
                ControlFlow::Continue(())
            })
            .expect("trains");
            assert_eq!(seen.len(), 6);
            let best = t.losses.iter().cloned().fold(f32::INFINITY, f32::min);
            assert_eq!(
                t.losses[t.best_epoch - 1],
                best,
                "{head:?}: keeps the best epoch"
            );
            assert!(best < t.losses[0], "{head:?}: {:?}", t.losses);
            let f1 = t
                .model
                .macro_f1(&held, &held_labels, &device)
                .expect("scores");
            assert!(f1 > 0.6, "{head:?}: macro-F1 {f1}");
            let e = t.model.embeddings(&held, &device).expect("embeds");
            assert_eq!((e.rows(), e.dim, e.row(11).len()), (12, 64, 64));
        }
    }

    #[test]
    fn bad_data_and_configs_are_errors_not_panics() {
        let device = crate::families::test_device();
        let (values, labels) = data(4, 2, 40, 1);
        assert!(matches!(
            Clips::new(&values[1..], MELS, 40),
            Err(ClassifierError::Ragged { .. })
        ));
        let clips = Clips::new(&values, MELS, 40).expect("whole clips");
        let cfg = tiny(HeadKind::CrossEntropy, 1);
        let err = |cfg: &ClassifierTrainingConfig, labels: &[usize]| {
            train(cfg, &clips, labels, &device, None, go_on)
                .err()
                .expect("an error")
        };
        assert!(matches!(
            err(&cfg, &labels[..3]),
            ClassifierError::LabelCount {
                clips: 4,
                labels: 3
            }
        ));
        assert!(matches!(
            err(&cfg, &[0, 1, 3, 0]),
            ClassifierError::LabelOutOfRange {
                clip: 2,
                label: 3,
                ..
            }
        ));
        let with = |change: fn(&mut ClassifierConfig)| {
            let mut changed = cfg.clone();
            change(&mut changed.model);
            changed
        };
        let long = with(|m| m.crop_frames = 41);
        assert!(matches!(
            err(&long, &labels),
            ClassifierError::ClipTooShort {
                frames: 40,
                crop_frames: 41
            }
        ));
        let one_class = with(|m| m.classes = 1);
        assert!(matches!(
            err(&one_class, &[0; 4]),
            ClassifierError::Config(ConfigError { key: "classes", .. })
        ));
        let deep = with(|m| m.backbone.depth = 19);
        assert!(matches!(
            err(&deep, &labels),
            ClassifierError::Config(ConfigError { key: "depth", .. })
        ));
        let no_scale = with(|m| m.arcface_scale = 0.0);
        assert!(matches!(
            err(&no_scale, &labels),
            ClassifierError::Config(ConfigError {
                key: "arcface_scale",
                ..
            })
        ));
    }

    #[test]
    fn a_resumed_run_repeats_the_uninterrupted_loss_curve_and_keeps_the_proxy() {
        let (values, labels) = data(12, 3, 40, 4);
        let clips = Clips::new(&values, MELS, 40).expect("whole clips");
        let device = crate::families::test_device();
        let cfg = sched(tiny(HeadKind::ArcFace, 3), |s| {
            (s.epochs, s.batch_size) = (3, 6)
        });
        let whole = train(&cfg, &clips, &labels, &device, None, go_on).expect("trains");
        let mut at_one = None;
        let first = train(&cfg, &clips, &labels, &device, None, |e| {
            let cp = e
                .checkpoint()
                .expect("checkpoint")
                .with_proxy("macro_f1", 0.25);
            at_one = Some(cp.encode());
            ControlFlow::Break(())
        })
        .expect("trains");
        assert!(!first.finished);
        let cp = Checkpoint::decode(&at_one.expect("saved")).expect("decodes");
        assert_eq!(
            (cp.progress.epoch, cp.proxy.as_ref().map(|p| p.value)),
            (1, Some(0.25))
        );
        let mut epochs = Vec::new();
        let resumed = train(&cfg, &clips, &labels, &device, Some(&cp), |e| {
            epochs.push(e.epoch);
            ControlFlow::Continue(())
        })
        .expect("resumes");
        assert_eq!(epochs, [2, 3]);
        assert_eq!(
            resumed.losses, whole.losses,
            "same loss curve as without the interruption"
        );
        let e = |m: &Classifier| m.embeddings(&clips, &device).expect("embeds").values;
        assert_eq!(e(&resumed.model), e(&whole.model));
        let best = cp.best_model(&device).expect("loads");
        assert_eq!(best.head_kind(), HeadKind::ArcFace);
        let other = sched(cfg.clone(), |s| s.lr = 0.5);
        let err = train(&other, &clips, &labels, &device, Some(&cp), go_on)
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("checkpoint") && err.contains("0.5"), "{err}");
        let err = Checkpoint::decode(b"asdsweep-ae-checkpoint\n")
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("not a classifier checkpoint"), "{err}");
    }

    #[test]
    fn configs_round_trip_through_json_with_the_study_defaults() {
        let cfg = ClassifierTrainingConfig::new(
            ClassifierConfig::study(50, HeadKind::ArcFace, 7),
            asdsweep_shared::family::classifier::study_schedule(),
        );
        assert_eq!(
            (
                cfg.schedule.lr,
                cfg.schedule.batch_size,
                cfg.schedule.epochs,
                cfg.schedule.lr_step_epochs,
                cfg.schedule.lr_gamma
            ),
            (1e-5, 64, 200, 50, 0.5)
        );
        assert_eq!(
            (
                cfg.model.crop_frames,
                cfg.model.arcface_margin,
                cfg.model.arcface_scale
            ),
            (313, 0.5, 30.0)
        );
        let json = serde_json::to_string(&cfg).expect("serialises");
        assert!(json.contains("\"arcface\""), "{json}");
        let back: ClassifierTrainingConfig = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, cfg);
    }
}
