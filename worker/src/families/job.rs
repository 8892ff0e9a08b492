//! What the families' job kinds share: running blocking work off the runtime, opening
//! the job's dataset, training with checkpoints uploaded as they are taken and resumed
//! from the last one an earlier attempt reported, fetching an evaluation's checkpoint,
//! the probes (Mahalanobis and both linear probes) and provenance.

use super::checkpoint::{Checkpoint, TrainingConfig};
use crate::backend;
use crate::data::{DataRoot, Dataset};
use crate::registry::{JobContext, JobError, JobOutput};
use asdsweep_shared::dataset::{Entry, Label, Split};
use asdsweep_shared::probe::linear::LinearProbeConfig;
use asdsweep_shared::probe::report::{ClipEmbedding, ProbeOptions, run_probes};
use asdsweep_shared::spec::DatasetSpec;
use serde_json::json;
use std::ops::ControlFlow;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// Parses a job's parameters and runs its stage: `train` or `eval`. Bad parameters and
/// any other stage fail the job permanently, naming the kind and the job.
pub(crate) async fn run_stage<P, T, E>(
    kind: &str,
    ctx: JobContext,
    train: impl FnOnce(JobContext, P) -> T,
    eval: impl FnOnce(JobContext, P) -> E,
) -> Result<JobOutput, JobError>
where
    P: serde::de::DeserializeOwned,
    T: std::future::Future<Output = Result<JobOutput, JobError>>,
    E: std::future::Future<Output = Result<JobOutput, JobError>>,
{
    let key = ctx.job.job_key.clone();
    let params: P = serde_path_to_error::deserialize(&ctx.params).map_err(|e| {
        JobError::permanent(format!(
            "{kind} job {key}: bad parameters: `{}`: {}",
            e.path(),
            e.inner()
        ))
    })?;
    match ctx.job.stage.as_str() {
        "train" => train(ctx, params).await,
        "eval" => eval(ctx, params).await,
        other => Err(JobError::permanent(format!(
            "{kind} job {key}: unknown stage \"{other}\"; expected train or eval"
        ))),
    }
}

/// Runs blocking work (scans, decoding, training) off the async runtime; a panic becomes a failure.
pub(crate) async fn blocking<T: Send + 'static>(
    key: &str,
    work: impl FnOnce() -> Result<T, JobError> + Send + 'static,
) -> Result<T, JobError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| JobError::retryable(format!("job {key}: worker thread failed: {e}")))?
}

/// Clips of one machine type in a split (`label`: only that label).
pub(crate) fn clips<'a>(
    ds: &'a Dataset,
    device: &str,
    split: Split,
    label: Option<Label>,
) -> Vec<&'a Entry> {
    ds.manifest
        .entries
        .iter()
        .filter(|e| e.device == device && e.split == split && label.is_none_or(|l| e.label == l))
        .collect()
}

/// Machine types the dataset holds, for error messages.
pub(crate) fn machine_types(ds: &Dataset) -> String {
    let mut types: Vec<&str> = ds
        .manifest
        .entries
        .iter()
        .map(|e| e.device.as_str())
        .collect();
    types.sort_unstable();
    types.dedup();
    if types.is_empty() {
        "none".into()
    } else {
        types.join(", ")
    }
}

/// The dataset a job names, with its fingerprint checked.
pub(crate) async fn open_dataset(
    ctx: &JobContext,
    spec: &DatasetSpec,
) -> Result<(Arc<DataRoot>, Arc<Dataset>), JobError> {
    let key = ctx.job.job_key.clone();
    let data = ctx.data.clone().ok_or_else(|| {
        JobError::retryable(format!(
            "job {key} reads a dataset, but this worker was started without --data DIR"
        ))
    })?;
    let spec = spec.clone();
    let root = data.clone();
    let ds = blocking(&key.clone(), move || {
        root.dataset(&spec)
            .map_err(|e| JobError::retryable(format!("job {key}: {e}")))
    })
    .await?;
    Ok((data, ds))
}

/// The burn device of the worker's `--device`.
pub(crate) fn device_of(ctx: &JobContext) -> Result<backend::Selected, JobError> {
    backend::select(&ctx.device)
        .map_err(|e| JobError::permanent(format!("job {}: {e}", ctx.job.job_key)))
}

/// Provenance every result carries, with the family's own fields (`extra`, a JSON object) added.
pub(crate) fn provenance(
    ctx: &JobContext,
    selected: &backend::Selected,
    ds: &Dataset,
    extra: serde_json::Value,
) -> String {
    let mut p = json!({
        "spec_hash": ctx.job.spec_hash,
        "dataset_fingerprint": ds.fingerprint,
        "seed": ctx.job.seed,
        "backend": selected.backend,
        "device": selected.name,
        "code_version": env!("CARGO_PKG_VERSION"),
    });
    if let (Some(p), serde_json::Value::Object(extra)) = (p.as_object_mut(), extra) {
        p.extend(extra);
    }
    p.to_string()
}

/// The last checkpoint an earlier attempt reported, if it can be used; else `None` (start over).
pub(crate) async fn resume_point<C: TrainingConfig>(
    ctx: &JobContext,
    cfg: &C,
) -> Option<(Checkpoint<C>, String)> {
    let sha = ctx.job.resume_checkpoint.clone()?;
    let key = &ctx.job.job_key;
    let cp = match ctx.artifacts.get(&sha).await {
        Ok(bytes) => Checkpoint::<C>::decode(&bytes),
        Err(e) => {
            tracing::warn!(job = %key, error = %e, "cannot fetch the checkpoint of the last attempt; training from epoch 0");
            return None;
        }
    };
    match cp {
        Ok(cp) if cp.config == *cfg => Some((cp, sha)),
        Ok(_) => {
            tracing::warn!(job = %key, checkpoint = %sha, "the last attempt's checkpoint has other settings; training from epoch 0");
            None
        }
        Err(e) => {
            tracing::warn!(job = %key, checkpoint = %sha, error = %e, "unusable checkpoint; training from epoch 0");
            None
        }
    }
}

/// The one checkpoint an evaluation job gets from its training job (cached, hash verified),
/// checked to have been trained with the settings the job evaluates.
pub(crate) async fn input_checkpoint<C: TrainingConfig>(
    ctx: &JobContext,
    cfg: &C,
) -> Result<(Checkpoint<C>, String), JobError> {
    let key = &ctx.job.job_key;
    let sha = match ctx.job.input_artifacts.as_slice() {
        [sha] => sha.clone(),
        other => {
            return Err(JobError::permanent(format!(
                "job {key}: expected the one checkpoint of its training job as input, got {} artifacts",
                other.len()
            )));
        }
    };
    ctx.progress
        .send_modify(|pr| pr.message = format!("fetching checkpoint {sha}"));
    let blob = ctx
        .artifacts
        .get(&sha)
        .await
        .map_err(|e| JobError::retryable(format!("job {key}: {e}")))?;
    let cp = Checkpoint::<C>::decode(&blob)
        .map_err(|e| JobError::permanent(format!("job {key}: artifact {sha}: {e}")))?;
    if cp.config != *cfg {
        return Err(JobError::permanent(format!(
            "job {key}: checkpoint {sha} was trained with {} but this job evaluates {}",
            serde_json::to_string(&cp.config).unwrap_or_default(),
            serde_json::to_string(cfg).unwrap_or_default()
        )));
    }
    Ok((cp, sha))
}

/// The training loop's side of checkpointing: reports progress after each epoch, hands
/// due checkpoints to the uploader, and says whether to go on (not after a cancel or a
/// failed hand-over).
pub(crate) struct EpochReporter {
    tx: mpsc::Sender<(usize, Vec<u8>)>,
    progress: watch::Sender<asdsweep_shared::proto::Progress>,
    cancel: CancellationToken,
    every: usize,
    epochs: usize,
    failure: Option<String>,
}

impl EpochReporter {
    /// After epoch `epoch` with mean loss `loss`: updates progress and, every `checkpoint_every`
    /// epochs and at the last, uploads the blob `checkpoint` makes.
    pub(crate) fn epoch_end(
        &mut self,
        epoch: usize,
        loss: f32,
        checkpoint: impl FnOnce() -> Result<Vec<u8>, String>,
    ) -> ControlFlow<()> {
        self.progress.send_modify(|pr| {
            pr.epoch = epoch as u32;
            pr.epochs = self.epochs as u32;
            pr.loss = Some(loss as f64);
        });
        if epoch.is_multiple_of(self.every) || epoch == self.epochs {
            let sent = checkpoint().and_then(|blob| {
                self.tx
                    .blocking_send((epoch, blob))
                    .map_err(|_| "the checkpoint uploader stopped".to_owned())
            });
            if let Err(e) = sent {
                self.failure = Some(e);
                return ControlFlow::Break(());
            }
        }
        if self.cancel.is_cancelled() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

/// How a training run ended, as [`train_uploading`]'s `work` reports it.
pub(crate) struct Ran<T> {
    /// What the family keeps of the run.
    pub out: T,
    /// Epochs of the loss curve (including a resumed checkpoint's).
    pub epochs_run: usize,
    /// False when the run stopped before its last epoch.
    pub finished: bool,
}

/// Runs `work` (the training loop, on a blocking thread, calling
/// [`EpochReporter::epoch_end`] after each epoch) of a job of `epochs` epochs that saves
/// every `every` epochs, uploading checkpoints as they come and reporting each one (the
/// worker loop heartbeats it at once, so a next attempt resumes from it). `resumed` is the
/// (epoch, sha) of the checkpoint the run goes on from. Returns what `work` kept and the
/// sha of the final checkpoint, which a killed attempt may have uploaded already.
pub(crate) async fn train_uploading<T: Send + 'static>(
    ctx: &JobContext,
    epochs: usize,
    every: usize,
    resumed: Option<(usize, String)>,
    work: impl FnOnce(&mut EpochReporter) -> Result<Ran<T>, JobError> + Send + 'static,
) -> Result<(T, String), JobError> {
    let key = ctx.job.job_key.clone();
    if let Some((epoch, sha)) = &resumed {
        tracing::info!("resuming {key} from epoch {epoch} (checkpoint {sha})");
        ctx.progress
            .send_modify(|pr| pr.checkpoint = Some(sha.clone()));
    }
    let (tx, mut rx) = mpsc::channel::<(usize, Vec<u8>)>(1);
    let artifacts = ctx.artifacts.clone();
    let progress = ctx.progress.clone();
    let uploader = async move {
        let mut last: Option<(usize, String)> = None;
        while let Some((epoch, blob)) = rx.recv().await {
            let sha = artifacts.put(blob, "checkpoint").await?;
            tracing::info!(epoch, checkpoint = %sha, "checkpoint uploaded");
            progress.send_modify(|pr| pr.checkpoint = Some(sha.clone()));
            last = Some((epoch, sha));
        }
        Ok::<_, crate::artifacts::ArtifactError>(last)
    };
    let mut reporter = EpochReporter {
        tx,
        progress: ctx.progress.clone(),
        cancel: ctx.cancel.clone(),
        every: every.max(1),
        epochs,
        failure: None,
    };
    let training = blocking(&key, move || {
        let ran = work(&mut reporter)?;
        Ok((ran, reporter.failure))
    });
    let (training, uploaded) = tokio::join!(training, uploader);
    let (ran, failure) = training?;
    let uploaded = uploaded
        .map_err(|e| JobError::retryable(format!("job {key}: uploading a checkpoint: {e}")))?;
    if let Some(why) = failure {
        return Err(JobError::retryable(format!(
            "job {key}: checkpoint at epoch {}: {why}",
            ran.epochs_run
        )));
    }
    if !ran.finished {
        return Err(JobError::retryable(format!(
            "job {key}: stopped at epoch {} of {epochs}",
            ran.epochs_run
        )));
    }
    let sha = match (uploaded, resumed) {
        (Some((epoch, sha)), _) if epoch == epochs => sha,
        (None, Some((epoch, sha))) if epoch == epochs => sha,
        _ => {
            return Err(JobError::retryable(format!(
                "job {key}: the final checkpoint was not uploaded"
            )));
        }
    };
    Ok((ran.out, sha))
}

/// Runs the Mahalanobis and both linear probes on a machine type's clip embeddings and
/// reports them with the proxy metric `proxy_metric`. A probe that cannot run on this data
/// (say, one section only: no leave-one-section-out) leaves its metrics empty and says why
/// in `extra.problems`; the others still report.
pub(crate) fn probe_all(
    clips: &[ClipEmbedding],
    seed: u64,
    proxy_metric: &str,
    proxy: Result<f64, String>,
    n_train: usize,
    n_test: usize,
) -> JobOutput {
    let none = ProbeOptions {
        mahalanobis: false,
        linear_in_domain: false,
        linear_out_of_domain: false,
        linear: LinearProbeConfig {
            seed,
            ..LinearProbeConfig::default()
        },
        ..ProbeOptions::default()
    };
    let mut problems = serde_json::Map::new();
    let mut note = |name: &str, e: String| {
        tracing::warn!(probe = name, error = %e, "probe not run");
        problems.insert(name.to_owned(), e.into());
    };
    let mut out = JobOutput {
        proxy_metric: proxy_metric.into(),
        ..Default::default()
    };
    match proxy {
        Ok(v) => out.proxy_value = Some(v),
        Err(e) => note(proxy_metric, e),
    }
    let mut md_hmean = None;
    match run_probes(
        clips,
        &ProbeOptions {
            mahalanobis: true,
            ..none.clone()
        },
    ) {
        Ok(r) => {
            if let Some(md) = r.mahalanobis {
                out.md_auc = md.evaluation.mean.auc;
                out.md_pauc = md.evaluation.mean.pauc;
                md_hmean = Some(md.evaluation.hmean);
            }
        }
        Err(e) => note("mahalanobis", e.to_string()),
    }
    match run_probes(
        clips,
        &ProbeOptions {
            linear_in_domain: true,
            ..none.clone()
        },
    ) {
        Ok(r) => {
            if let Some(lp) = r.linear_in_domain {
                out.lp_in_auc = Some(lp.auc);
                out.lp_in_pauc = Some(lp.pauc);
            }
        }
        Err(e) => note("linear_in_domain", e.to_string()),
    }
    match run_probes(
        clips,
        &ProbeOptions {
            linear_out_of_domain: true,
            ..none
        },
    ) {
        Ok(r) => {
            if let Some(lp) = r.linear_out_of_domain {
                out.lp_out_auc = Some(lp.auc);
                out.lp_out_pauc = Some(lp.pauc);
            }
        }
        Err(e) => note("linear_out_of_domain", e.to_string()),
    }
    out.extra_json = json!({
        "md_hmean_auc": md_hmean.and_then(|h| h.auc),
        "md_hmean_pauc": md_hmean.and_then(|h| h.pauc),
        "train_clips": n_train,
        "test_clips": n_test,
        "pauc": "McClish-standardised, max FPR 0.1",
        "problems": problems,
    })
    .to_string();
    out
}
