//! A training checkpoint of any family, as one self-describing blob: burn's own records
//! (the model's and the optimizer's, in burn's burnpack format) behind a small JSON header
//! that carries the family's training config, the epoch, the loss curve, the best state's
//! epoch and loss, and the proxy metric once it is measured.
//!
//! Layout: the family's magic line (`asdsweep-ae-checkpoint\n`), the header's length as a
//! little-endian `u64`, the header (JSON), then the model record, the optimizer record and
//! the best model's record, whose lengths the header gives. Anything else — a truncated
//! blob, extra bytes, another magic — is refused with a message saying so.
//!
//! [`run_epochs`] is the epoch loop every trained family runs: optimizer, learning-rate
//! schedule, resume from such a checkpoint, the kept best state and the per-epoch hook.

use super::step_decay;
use asdsweep_shared::family::Schedule;
use burn::module::Module;
use burn::optim::{AdamWConfig, ModuleOptimizer, OptimizerRecord};
use burn::store::ModuleRecord;
use burn::tensor::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::ops::ControlFlow;

const VERSION: u32 = 1;

/// A family's training settings, saved in (and checked against) its checkpoints.
pub trait TrainingConfig: Clone + PartialEq + Serialize + DeserializeOwned {
    /// The magic line that opens the family's checkpoints.
    const MAGIC: &'static [u8];
    /// The family with its article, as named in messages ("an autoencoder").
    const FAMILY: &'static str;
}

/// A checkpoint that cannot be made, decoded or applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct CheckpointError(pub String);

/// Where a run stood when the checkpoint was taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Epochs completed.
    pub epoch: usize,
    /// Mean training loss of each completed epoch.
    pub losses: Vec<f32>,
    /// Epoch (1-based) of the lowest loss; 0 if none yet.
    pub best_epoch: usize,
    /// That lowest loss.
    pub best_loss: f32,
    /// Seconds spent training, over every attempt so far.
    pub train_seconds: f64,
}

/// A proxy metric measured on the checkpoint's best state (e.g. the classifier's held-out
/// macro-F1), so that its evaluation jobs report it without the held-out data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProxyValue {
    /// The metric's name, as results carry it (`macro_f1`).
    pub metric: String,
    /// Its value.
    pub value: f64,
}

/// A decoded checkpoint of a family trained with settings `C`.
#[derive(Clone)]
pub struct Checkpoint<C> {
    /// The run's settings, as saved beside its weights.
    pub config: C,
    /// Epoch, loss curve and best state.
    pub progress: Progress,
    /// The proxy metric of the best state, once measured.
    pub proxy: Option<ProxyValue>,
    model: Vec<u8>,
    optimizer: Vec<u8>,
    best: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct Header<C> {
    version: u32,
    config: C,
    progress: Progress,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    proxy: Option<ProxyValue>,
    /// Byte lengths of the model, optimizer and best-model records, in that order.
    sections: [u64; 3],
}

fn record_err(what: &str) -> impl FnOnce(burn::store::RecordError) -> CheckpointError + '_ {
    move |e| CheckpointError(format!("{what}: {e}"))
}

/// The lowest-loss state so far: loss, epoch, and the model without autodiff.
pub type Best<M> = Option<(f32, usize, M)>;

/// A run's state restored from a checkpoint, to go on training from.
pub struct Restored<M> {
    /// The model, with the saved weights.
    pub model: M,
    /// The optimizer, with the saved state.
    pub optim: ModuleOptimizer,
    /// The best state so far.
    pub best: Best<M>,
    /// The loss curve so far.
    pub losses: Vec<f32>,
    /// Seconds trained so far.
    pub train_seconds: f64,
}

impl<C: TrainingConfig> Checkpoint<C> {
    /// Takes a checkpoint of a run: `model` and `best` without autodiff.
    pub fn from_parts<M: Module>(
        config: C,
        progress: Progress,
        model: M,
        optim: &ModuleOptimizer,
        best: M,
    ) -> Result<Checkpoint<C>, CheckpointError> {
        Ok(Checkpoint {
            config,
            progress,
            proxy: None,
            model: model
                .into_record()
                .into_bytes()
                .map_err(record_err("saving the model"))?
                .to_vec(),
            optimizer: optim
                .to_record()
                .into_bytes()
                .map_err(record_err("saving the optimizer state"))?
                .to_vec(),
            best: best
                .into_record()
                .into_bytes()
                .map_err(record_err("saving the best model"))?
                .to_vec(),
        })
    }

    /// The same checkpoint, recording the proxy metric of its best state.
    pub fn with_proxy(mut self, metric: &str, value: f64) -> Checkpoint<C> {
        self.proxy = Some(ProxyValue {
            metric: metric.to_owned(),
            value,
        });
        self
    }

    /// The blob to store.
    pub fn encode(&self) -> Vec<u8> {
        let header = Header {
            version: VERSION,
            config: self.config.clone(),
            progress: self.progress.clone(),
            proxy: self.proxy.clone(),
            sections: [
                self.model.len() as u64,
                self.optimizer.len() as u64,
                self.best.len() as u64,
            ],
        };
        let header =
            serde_json::to_vec(&header).expect("a checkpoint header always serialises to JSON");
        let mut out = Vec::with_capacity(
            C::MAGIC.len()
                + 8
                + header.len()
                + self.model.len()
                + self.optimizer.len()
                + self.best.len(),
        );
        out.extend_from_slice(C::MAGIC);
        out.extend_from_slice(&(header.len() as u64).to_le_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(&self.model);
        out.extend_from_slice(&self.optimizer);
        out.extend_from_slice(&self.best);
        out
    }

    /// Reads a blob written by [`Checkpoint::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Checkpoint<C>, CheckpointError> {
        let bad = CheckpointError;
        let rest = bytes.strip_prefix(C::MAGIC).ok_or_else(|| {
            let magic = String::from_utf8_lossy(C::MAGIC);
            bad(format!(
                "not {} checkpoint (the magic line `{}` is missing)",
                C::FAMILY,
                magic.trim_end()
            ))
        })?;
        let (len, rest) = rest
            .split_at_checked(8)
            .ok_or_else(|| bad("truncated before its header length".into()))?;
        let len = u64::from_le_bytes(len.try_into().expect("split_at_checked(8) gives 8 bytes"));
        let (header, rest) = usize::try_from(len)
            .ok()
            .and_then(|l| rest.split_at_checked(l))
            .ok_or_else(|| bad(format!("truncated inside its {len}-byte header")))?;
        let header: Header<C> =
            serde_json::from_slice(header).map_err(|e| bad(format!("unreadable header: {e}")))?;
        if header.version != VERSION {
            return Err(bad(format!(
                "format version {} (this build reads {VERSION})",
                header.version
            )));
        }
        let want = header
            .sections
            .iter()
            .try_fold(0u64, |sum, &n| sum.checked_add(n));
        if want != Some(rest.len() as u64) {
            let want = want.map_or_else(|| "more than 2^64".to_owned(), |w| w.to_string());
            return Err(bad(format!(
                "the header announces {want} bytes of records but {} follow (truncated or corrupt)",
                rest.len()
            )));
        }
        let [m, o, _] = header.sections.map(|n| n as usize);
        Ok(Checkpoint {
            config: header.config,
            progress: header.progress,
            proxy: header.proxy,
            model: rest[..m].to_vec(),
            optimizer: rest[m..m + o].to_vec(),
            best: rest[m + o..].to_vec(),
        })
    }

    /// Applies the best state's weights to `model` (freshly built, without autodiff): what evaluation uses.
    pub fn load_best<M: Module>(&self, model: M) -> Result<M, CheckpointError> {
        let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(self.best.clone()))
            .map_err(record_err("reading the best model"))?;
        model
            .try_load_record(record)
            .map_err(record_err("loading the best model"))
    }

    /// The state to go on training from, for a run with settings `cfg`: `model` and `optim` get
    /// the saved weights (with their parameter ids, which key the optimizer state) and
    /// optimizer state, `fresh` builds a model without autodiff for the best state.
    /// A checkpoint of other settings is refused.
    pub fn restore<M: Module>(
        &self,
        cfg: &C,
        model: M,
        optim: ModuleOptimizer,
        fresh: impl FnOnce() -> Result<M, CheckpointError>,
    ) -> Result<Restored<M>, CheckpointError> {
        if self.config != *cfg {
            return Err(CheckpointError(format!(
                "it was trained with {} but this job asks for {}",
                serde_json::to_string(&self.config).unwrap_or_default(),
                serde_json::to_string(cfg).unwrap_or_default()
            )));
        }
        let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(self.model.clone()))
            .map_err(record_err("reading the model"))?;
        let model = model
            .try_load_record(record)
            .map_err(record_err("loading the model"))?;
        let record = OptimizerRecord::from_bytes(Bytes::from_bytes_vec(self.optimizer.clone()))
            .map_err(record_err("reading the optimizer state"))?;
        let optim = optim.load_record(record);
        let best = if self.progress.best_epoch > 0 {
            Some((
                self.progress.best_loss,
                self.progress.best_epoch,
                self.load_best(fresh()?)?,
            ))
        } else {
            None
        };
        Ok(Restored {
            model,
            optim,
            best,
            losses: self.progress.losses.clone(),
            train_seconds: self.progress.train_seconds,
        })
    }
}

/// The outcome of a training run ([`run_epochs`]).
pub struct Run<M> {
    /// The state with the lowest epoch loss (without autodiff).
    pub model: M,
    /// Mean training loss per epoch, from epoch 1 (including epochs of a resumed checkpoint).
    pub losses: Vec<f32>,
    /// Epoch (1-based) whose state was kept.
    pub best_epoch: usize,
    /// False when `on_epoch` stopped the run before its last epoch.
    pub finished: bool,
}

/// What one epoch's steps summed: the loss times the items of each batch, the items,
/// and the steps.
#[derive(Debug, Default)]
pub struct EpochSum {
    /// Σ batch loss × batch items.
    pub loss: f64,
    /// Items trained on.
    pub items: usize,
    /// Optimiser steps (batches).
    pub steps: usize,
}

impl EpochSum {
    /// Adds one step: a batch of `items` with mean loss `loss`.
    pub fn add(&mut self, loss: f64, items: usize) {
        self.loss += loss * items as f64;
        self.items += items;
        self.steps += 1;
    }
}

/// An epoch's end as the worker reports it (progress, metrics).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochStats {
    /// Epoch just finished (1-based).
    pub epoch: usize,
    /// Its mean training loss.
    pub loss: f32,
    /// Optimiser steps per second of its wall time.
    pub steps_per_s: f64,
}

/// The epoch loop every trained family shares: AdamW (PyTorch's epsilon, `weight_decay`),
/// the learning rate of each epoch under the schedule's step decay, resume from a
/// checkpoint of the same settings (weights, optimizer state, best state, loss curve), the
/// lowest-loss state kept, and `on_epoch` after each epoch ([`ControlFlow::Break`] stops
/// the run there: cancellation). `model` is freshly built on the autodiff device; `fresh`
/// builds one without autodiff (for a resumed best state). `epoch(e, lr, model, optim)`
/// runs epoch `e`'s steps and gives the model back with its summed loss; an epoch without
/// items has loss NaN.
#[allow(clippy::too_many_arguments)]
pub fn run_epochs<C: TrainingConfig, M: Module, E: From<CheckpointError>>(
    cfg: &C,
    schedule: &Schedule,
    weight_decay: f32,
    model: M,
    fresh: impl FnOnce() -> Result<M, CheckpointError>,
    resume: Option<&Checkpoint<C>>,
    mut epoch: impl FnMut(usize, f64, M, &mut ModuleOptimizer) -> Result<(M, EpochSum), E>,
    mut on_epoch: impl FnMut(&EpochEnd<'_, C, M>) -> ControlFlow<()>,
) -> Result<Run<M>, E> {
    let mut model = model;
    let mut optim = AdamWConfig::new()
        .with_weight_decay(weight_decay)
        .with_epsilon(1e-8)
        .init();
    let mut best: Best<M> = None;
    let mut losses = Vec::with_capacity(schedule.epochs);
    let mut train_seconds = 0.0;
    if let Some(c) = resume {
        let restored = c.restore(cfg, model, optim, fresh)?;
        (model, optim, best, losses, train_seconds) = (
            restored.model,
            restored.optim,
            restored.best,
            restored.losses,
            restored.train_seconds,
        );
    }
    let finish = |best: Best<M>, model: &M, losses, finished| {
        let (_, best_epoch, model) = best.unwrap_or((f32::NAN, 0, model.valid()));
        Run {
            model,
            losses,
            best_epoch,
            finished,
        }
    };
    for e in losses.len() + 1..=schedule.epochs {
        let started = std::time::Instant::now();
        let lr = step_decay(schedule.lr, schedule.lr_gamma, schedule.lr_step_epochs, e);
        let sum;
        (model, sum) = epoch(e, lr, model, &mut optim)?;
        let seconds = started.elapsed().as_secs_f64();
        let epoch_loss = if sum.items == 0 {
            f32::NAN
        } else {
            (sum.loss / sum.items as f64) as f32
        };
        losses.push(epoch_loss);
        if best.as_ref().is_none_or(|(l, _, _)| epoch_loss < *l) {
            best = Some((epoch_loss, e, model.valid()));
        }
        train_seconds += started.elapsed().as_secs_f64();
        let end = EpochEnd {
            epoch: e,
            loss: epoch_loss,
            steps_per_s: sum.steps as f64 / seconds.max(1e-9),
            cfg,
            model: &model,
            optim: &optim,
            best: &best,
            losses: &losses,
            train_seconds,
        };
        if on_epoch(&end).is_break() && e < schedule.epochs {
            return Ok(finish(best, &model, losses, false));
        }
    }
    Ok(finish(best, &model, losses, true))
}

/// The state of a run at the end of an epoch, handed to the training loop's `on_epoch`.
pub struct EpochEnd<'a, C, M> {
    /// Epoch just finished (1-based).
    pub epoch: usize,
    /// Its mean training loss.
    pub loss: f32,
    /// Optimiser steps per second of its wall time.
    pub steps_per_s: f64,
    pub(crate) cfg: &'a C,
    pub(crate) model: &'a M,
    pub(crate) optim: &'a ModuleOptimizer,
    pub(crate) best: &'a Best<M>,
    pub(crate) losses: &'a [f32],
    pub(crate) train_seconds: f64,
}

impl<C: TrainingConfig, M: Module> EpochEnd<'_, C, M> {
    /// Epoch, loss and pace, for progress reports.
    pub fn stats(&self) -> EpochStats {
        EpochStats {
            epoch: self.epoch,
            loss: self.loss,
            steps_per_s: self.steps_per_s,
        }
    }

    /// The lowest-loss state so far (the current one if no epoch had a finite loss), without autodiff.
    pub fn best_model(&self) -> M {
        self.best
            .as_ref()
            .map_or_else(|| self.model.valid(), |(_, _, m)| m.clone())
    }

    /// Everything needed to go on from here, or to evaluate the best state: model,
    /// optimizer state, best state, loss curve and config.
    pub fn checkpoint(&self) -> Result<Checkpoint<C>, CheckpointError> {
        let (best_loss, best_epoch) = self
            .best
            .as_ref()
            .map_or((f32::NAN, 0), |(l, e, _)| (*l, *e));
        Checkpoint::from_parts(
            self.cfg.clone(),
            Progress {
                epoch: self.epoch,
                losses: self.losses.to_vec(),
                best_epoch,
                best_loss,
                train_seconds: self.train_seconds,
            },
            self.model.valid(),
            self.optim,
            self.best_model(),
        )
    }
}
