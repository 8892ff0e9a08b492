//! The one job skeleton every model family runs on. A family supplies what is its own —
//! how to train one config ([`Train::train`]), how to load the model an evaluation uses
//! ([`Train::load`] from a checkpoint, or [`Pretrained::load`] when nothing is trained),
//! how to embed clips ([`Evaluate::embed`]) and how to measure its proxy metrics
//! ([`Evaluate::measure`]) — and the skeleton does the rest once: parameters, the dataset
//! and its fingerprint, resuming from the last checkpoint an earlier attempt reported,
//! cancellation, checkpoint upload, fetching the evaluated checkpoint, the probes and the
//! provenance of every result.
//!
//! Stages: a [`Train`] family's jobs are `train` then `eval` (per machine type); a
//! [`Pretrained`] family's are single `run` jobs (the `eval` work without a checkpoint).

use super::checkpoint::{Checkpoint, ProxyValue, TrainingConfig};
use super::inputs::{
    blocking, clips, device_of, input_checkpoint, machine_types, open_dataset, provenance,
};
use super::probes::probe_all;
use super::training::{EpochReporter, Ran, resume_point, train_uploading};
use crate::data::{DataRoot, Dataset};
use crate::registry::{JobContext, JobError, JobKind, JobOutput};
use asdsweep_shared::dataset::{Entry, Label, Split};
use asdsweep_shared::family::{Kind, ProxyMetric, Schedule};
use asdsweep_shared::probe::report::{self, ClipEmbedding, ManifestEntry};
use asdsweep_shared::proto::MetricDirection;
use asdsweep_shared::spec::DatasetSpec;
use burn::tensor::Device;
use futures::future::BoxFuture;
use ndarray::Array2;
use serde::de::DeserializeOwned;
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

/// A proxy metric with its value on one machine type, or why it could not be measured.
pub type Measured = (ProxyMetric, Result<f64, String>);

/// What an evaluation works on (on a blocking thread).
pub struct EvalInput<'a, P> {
    /// The job's key, for messages.
    pub key: &'a str,
    /// The machine type evaluated.
    pub machine: &'a str,
    /// The job's seed.
    pub seed: u64,
    /// The job's parameters.
    pub params: &'a P,
    /// The worker's dataset root (log-mel cache).
    pub data: &'a DataRoot,
    /// The job's dataset.
    pub ds: &'a Dataset,
    /// The device the model runs on.
    pub device: &'a Device,
    /// The proxy metric the training job recorded in its checkpoint, if it did.
    pub recorded: Option<&'a ProxyValue>,
}

impl<P> EvalInput<'_, P> {
    /// `metric` as the training job recorded it in its last checkpoint, for families that
    /// measure their proxy while training; an error if the checkpoint holds none.
    pub fn recorded_proxy(&self, metric: ProxyMetric) -> Measured {
        let value = match self.recorded {
            Some(v) if v.metric == metric.name => Ok(v.value),
            _ => Err(format!(
                "the checkpoint records no {} (it is not a finished run's last checkpoint)",
                metric.name
            )),
        };
        (metric, value)
    }
}

/// A family's evaluation: every family has one.
pub trait Evaluate: Send + Sync + 'static {
    /// Its job parameters, as `shared::family` declares them.
    type Params: DeserializeOwned + Clone + Send + Sync + 'static;
    /// What it embeds clips with.
    type Model;
    /// The kind its jobs carry.
    const KIND: Kind;

    /// The dataset a job reads.
    fn dataset(params: &Self::Params) -> &DatasetSpec;

    /// The proxy metrics it measures, its main one first.
    fn proxies(&self, params: &Self::Params) -> Vec<ProxyMetric>;

    /// One embedding per clip of `set` (`[rows, dim]`; one row for a clip-level embedding), in order.
    fn embed(
        &self,
        input: &EvalInput<'_, Self::Params>,
        model: &Self::Model,
        set: &[&Entry],
    ) -> Result<Vec<Array2<f64>>, JobError>;

    /// Its proxy metrics on the machine type (each of [`Evaluate::proxies`]), from the
    /// clips' embeddings, the model, its own evaluation data or what training recorded.
    fn measure(
        &self,
        input: &EvalInput<'_, Self::Params>,
        model: &Self::Model,
        clips: &[ClipEmbedding],
    ) -> Vec<Measured>;
}

/// What a training run works on (on a blocking thread).
pub struct TrainInput<F: Train> {
    /// The job's key, for messages.
    pub key: String,
    /// The machine type trained on (`*` for a job across all).
    pub machine: String,
    /// The job's seed.
    pub seed: u64,
    /// The job's parameters.
    pub params: F::Params,
    /// The training config built from them (saved in every checkpoint).
    pub config: F::Config,
    /// The worker's dataset root.
    pub data: Arc<DataRoot>,
    /// The job's dataset.
    pub ds: Arc<Dataset>,
    /// The device it trains on.
    pub device: Device,
    /// The checkpoint to go on from, if an earlier attempt left a usable one.
    pub resume: Option<Checkpoint<F::Config>>,
}

/// What a finished training run reports.
pub struct Trained {
    /// Mean training loss per epoch (including a resumed checkpoint's epochs).
    pub losses: Vec<f32>,
    /// Epoch (1-based) of the kept state.
    pub best_epoch: usize,
    /// The main proxy metric, when training measures it (and records it in the last checkpoint).
    pub proxy: Option<f64>,
    /// Further facts of the run for the result's `extra` (clip counts, classes).
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Trained {
    /// The run as the skeleton takes it; `finished` is false when it stopped early.
    pub fn ran(self, finished: bool) -> Ran<Trained> {
        Ran {
            epochs_run: self.losses.len(),
            finished,
            out: self,
        }
    }
}

/// A family that trains a model per config (per machine type or across all), then
/// evaluates the trained checkpoint on each machine type.
pub trait Train: Evaluate {
    /// Its training settings, saved in (and checked against) its checkpoints.
    type Config: TrainingConfig + Send + Sync + 'static;

    /// The training config of a job.
    fn config(params: &Self::Params, seed: u64) -> Self::Config;

    /// The job's schedule (epochs, checkpoint interval).
    fn schedule(params: &Self::Params) -> &Schedule;

    /// Trains, from `input.resume` when given, calling [`EpochReporter::epoch_end`] after
    /// each epoch (which uploads due checkpoints and says when to stop).
    fn train(
        &self,
        input: TrainInput<Self>,
        reporter: &mut EpochReporter,
    ) -> Result<Ran<Trained>, JobError>
    where
        Self: Sized;

    /// The model an evaluation embeds with: the checkpoint's kept state.
    fn load(checkpoint: &Checkpoint<Self::Config>, device: &Device) -> Result<Self::Model, String>;
}

/// A family with nothing to train: embeddings from a pre-trained model or from files.
pub trait Pretrained: Evaluate {
    /// The model a job embeds with.
    fn load(&self, params: &Self::Params, device: &Device) -> Result<Self::Model, String>;
}

/// The job kind of a [`Train`] family: stages `train` and `eval`.
pub struct Trainable<F>(pub F);

/// The job kind of a [`Pretrained`] family: stage `run`.
pub struct Untrained<F>(pub F);

impl<F: Train> JobKind for Trainable<F>
where
    F: Clone,
{
    fn kind(&self) -> Kind {
        F::KIND
    }

    fn run(&self, ctx: JobContext) -> BoxFuture<'static, Result<JobOutput, JobError>> {
        let family = Arc::new(self.0.clone());
        Box::pin(async move {
            let params = parse::<F::Params>(F::KIND, &ctx)?;
            match ctx.job.stage.as_str() {
                "train" => train_stage(family, ctx, params).await,
                "eval" => {
                    let cfg = F::config(&params, ctx.job.seed as u64);
                    let (cp, sha) = input_checkpoint(&ctx, &cfg).await?;
                    let trained = cp.progress.clone();
                    let source = Source {
                        load: Box::new(move |_: &F, _: &F::Params, device: &Device| {
                            let model = F::load(&cp, device);
                            (model, cp.proxy.clone())
                        }),
                        provenance: json!({
                            "checkpoint": sha,
                            "epochs_run": trained.epoch,
                            "best_loss": trained.best_loss,
                            "best_epoch": trained.best_epoch,
                            "train_s": trained.train_seconds,
                            "config": cfg,
                        }),
                    };
                    eval_stage(family, ctx, params, source).await
                }
                other => Err(wrong_stage(F::KIND, &ctx, other, "train or eval")),
            }
        })
    }
}

impl<F: Pretrained + Clone> JobKind for Untrained<F> {
    fn kind(&self) -> Kind {
        F::KIND
    }

    fn run(&self, ctx: JobContext) -> BoxFuture<'static, Result<JobOutput, JobError>> {
        let family = Arc::new(self.0.clone());
        Box::pin(async move {
            let params = parse::<F::Params>(F::KIND, &ctx)?;
            match ctx.job.stage.as_str() {
                "run" => {
                    let source = Source {
                        load: Box::new(|f: &F, p: &F::Params, device: &Device| {
                            (f.load(p, device), None)
                        }),
                        provenance: json!({}),
                    };
                    eval_stage(family, ctx, params, source).await
                }
                other => Err(wrong_stage(F::KIND, &ctx, other, "run")),
            }
        })
    }
}

/// The job's parameters as the family's type; a mismatch names the key.
fn parse<P: DeserializeOwned>(kind: Kind, ctx: &JobContext) -> Result<P, JobError> {
    serde_path_to_error::deserialize(&ctx.params).map_err(|e| {
        JobError::permanent(format!(
            "{kind} job {}: bad parameters: `{}`: {}",
            ctx.job.job_key,
            e.path(),
            e.inner()
        ))
    })
}

fn wrong_stage(kind: Kind, ctx: &JobContext, stage: &str, expected: &str) -> JobError {
    JobError::permanent(format!(
        "{kind} job {}: unknown stage \"{stage}\"; expected {expected}",
        ctx.job.job_key
    ))
}

/// How an evaluation gets its model (on the blocking thread), and the provenance of it.
struct Source<F: Evaluate> {
    #[allow(clippy::type_complexity)]
    load: Box<
        dyn FnOnce(&F, &F::Params, &Device) -> (Result<F::Model, String>, Option<ProxyValue>)
            + Send,
    >,
    provenance: serde_json::Value,
}

async fn train_stage<F: Train>(
    family: Arc<F>,
    ctx: JobContext,
    params: F::Params,
) -> Result<JobOutput, JobError> {
    let started = Instant::now();
    let key = ctx.job.job_key.clone();
    let selected = device_of(&ctx)?;
    let seed = ctx.job.seed as u64;
    let config = F::config(&params, seed);
    let schedule = F::schedule(&params).clone();
    let proxy = family.proxies(&params).first().copied();
    let (data, ds) = open_dataset(&ctx, F::dataset(&params)).await?;
    let resume = resume_point(&ctx, &config).await;
    let resumed = resume
        .as_ref()
        .map(|(cp, sha)| (cp.progress.epoch, sha.clone()));
    let resumed_from = resumed.as_ref().map_or(0, |(epoch, _)| *epoch);
    let input = TrainInput::<F> {
        key: key.clone(),
        machine: ctx.job.device.clone(),
        seed,
        params,
        config: config.clone(),
        data,
        ds: ds.clone(),
        device: selected.device.clone(),
        resume: resume.map(|(cp, _)| cp),
    };
    let (trained, sha) = train_uploading(
        &ctx,
        schedule.epochs,
        schedule.checkpoint_every,
        resumed,
        move |reporter| family.train(input, reporter),
    )
    .await?;
    let best_loss = trained
        .losses
        .get(trained.best_epoch.wrapping_sub(1))
        .copied();
    let mut extra = json!({
        "epochs": trained.losses.len(),
        "best_epoch": trained.best_epoch,
        "best_loss": best_loss,
        "final_loss": trained.losses.last(),
        "losses": trained.losses,
        "resumed_from_epoch": resumed_from,
    });
    if let Some(map) = extra.as_object_mut() {
        map.extend(trained.extra);
    }
    Ok(JobOutput {
        proxy_metric: proxy.map(|p| p.name.to_owned()).unwrap_or_default(),
        proxy_direction: proxy.map_or(MetricDirection::Unspecified, |p| p.direction.into()) as i32,
        proxy_value: trained.proxy,
        extra_json: extra.to_string(),
        provenance_json: provenance(
            &ctx,
            &selected,
            &ds,
            json!({
                "epochs_run": trained.losses.len(),
                "best_loss": best_loss,
                "best_epoch": trained.best_epoch,
                "resumed_from_epoch": resumed_from,
                "checkpoint": sha,
                "config": config,
                "wall_s": started.elapsed().as_secs_f64(),
            }),
        ),
        artifacts: vec![sha],
        ..Default::default()
    })
}

async fn eval_stage<F: Evaluate>(
    family: Arc<F>,
    ctx: JobContext,
    params: F::Params,
    source: Source<F>,
) -> Result<JobOutput, JobError> {
    let started = Instant::now();
    let key = ctx.job.job_key.clone();
    let machine = ctx.job.device.clone();
    let selected = device_of(&ctx)?;
    let (data, ds) = open_dataset(&ctx, F::dataset(&params)).await?;
    ctx.progress
        .send_modify(|pr| pr.message = "embedding and probing".into());
    let (k, d, device, seed) = (
        key.clone(),
        ds.clone(),
        selected.device.clone(),
        ctx.job.seed as u64,
    );
    let mut out = blocking(&key, move || {
        let train = clips(&d, &machine, Split::Train, Some(Label::Normal));
        let test = clips(&d, &machine, Split::Test, None);
        if train.is_empty() || test.is_empty() {
            return Err(JobError::permanent(format!(
                "job {k}: machine type \"{machine}\" has {} training normals and {} test clips in {}; both are needed (machine types there: {})",
                train.len(),
                test.len(),
                d.manifest.root.display(),
                machine_types(&d)
            )));
        }
        let (model, recorded) = (source.load)(&family, &params, &device);
        let model = model.map_err(|e| JobError::permanent(format!("job {k}: {e}")))?;
        let input = EvalInput {
            key: &k,
            machine: &machine,
            seed,
            params: &params,
            data: &data,
            ds: &d,
            device: &device,
            recorded: recorded.as_ref(),
        };
        let mut embeddings = Vec::with_capacity(train.len() + test.len());
        for (split, set) in [(report::Split::Train, &train), (report::Split::Test, &test)] {
            let rows = family.embed(&input, &model, set)?;
            if rows.len() != set.len() {
                return Err(JobError::permanent(format!(
                    "job {k}: {} embeddings for {} clips",
                    rows.len(),
                    set.len()
                )));
            }
            for (entry, rows) in set.iter().zip(rows) {
                embeddings.push(ClipEmbedding {
                    entry: ManifestEntry {
                        file: entry.path.clone(),
                        section: format!("{:02}", entry.section),
                        split,
                        is_anomaly: entry.label == Label::Anomaly,
                        line: 0,
                    },
                    rows,
                });
            }
        }
        let measured = family.measure(&input, &model, &embeddings);
        Ok(probe_all(&embeddings, seed, &measured, train.len(), test.len()))
    })
    .await?;
    let mut extra = source.provenance;
    if let Some(map) = extra.as_object_mut() {
        map.insert("wall_s".into(), started.elapsed().as_secs_f64().into());
    }
    out.provenance_json = provenance(&ctx, &selected, &ds, extra);
    Ok(out)
}
