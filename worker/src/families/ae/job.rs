//! The `autoencoder` job kind: the `train` stage trains one config on one machine
//! type's training normals, uploading checkpoints as it goes and resuming from the last
//! one an earlier attempt reported; the `eval` stage loads the trained checkpoint and
//! measures the proxy metric (mean L1 reconstruction error on test normals) and the
//! ASD quality of the reconstruction residual (linear probes and Mahalanobis).

use super::{AeConfig, AeTrainingConfig};
use crate::data::{DataRoot, Dataset};
use crate::families::job::{
    Ran, blocking, clips, device_of, input_checkpoint, machine_types, open_dataset, probe_all,
    provenance, resume_point, run_stage, train_uploading,
};
use crate::registry::{JobContext, JobError, JobKind, JobOutput};
use asdsweep_shared::dataset::{Entry, Label, Split};
use asdsweep_shared::logmel::stack_frames;
use asdsweep_shared::metrics::proxy::mean_l1_error;
use asdsweep_shared::probe::report::{self, ClipEmbedding, ManifestEntry};
use asdsweep_shared::spec::DatasetSpec;
use burn::tensor::{Device, Tensor, TensorData};
use futures::future::BoxFuture;
use ndarray::{Array2, Axis};
use serde_json::json;
use std::time::Instant;

/// Name of the proxy metric an evaluation reports.
pub const PROXY_METRIC: &str = "ae_l1";

/// The autoencoder job kind (see the module docs).
pub struct AutoencoderKind;

/// A job's parameters, as the grid writes them (`shared::spec::AutoencoderFamily`).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    hidden: usize,
    latent: usize,
    epochs: usize,
    batch_size: usize,
    lr: f64,
    lr_step_epochs: usize,
    lr_gamma: f64,
    checkpoint_every: usize,
    frames: usize,
    n_mels: usize,
    dataset: DatasetSpec,
}

impl Params {
    fn training(&self, seed: u64) -> AeTrainingConfig {
        AeTrainingConfig::new(
            AeConfig::new()
                .with_hidden(self.hidden)
                .with_latent(self.latent)
                .with_input_dim(self.frames * self.n_mels),
        )
        .with_epochs(self.epochs)
        .with_batch_size(self.batch_size)
        .with_lr(self.lr)
        .with_lr_step_epochs(self.lr_step_epochs)
        .with_lr_gamma(self.lr_gamma)
        .with_seed(seed)
    }
}

impl JobKind for AutoencoderKind {
    fn name(&self) -> &'static str {
        "autoencoder"
    }

    fn run(&self, ctx: JobContext) -> BoxFuture<'static, Result<JobOutput, JobError>> {
        Box::pin(run_stage::<Params, _, _>(
            "autoencoder",
            ctx,
            train,
            evaluate,
        ))
    }
}

/// Stacked-frame rows of each clip, `[rows, frames × n_mels]`.
fn rows_of(
    data: &DataRoot,
    ds: &Dataset,
    clips: &[&Entry],
    p: &Params,
    key: &str,
) -> Result<Vec<Array2<f32>>, JobError> {
    let logmels = data
        .logmels(ds, clips, p.n_mels)
        .map_err(|e| JobError::permanent(format!("job {key}: {e}")))?;
    Ok(logmels
        .iter()
        .map(|lm| stack_frames(lm.view(), p.frames))
        .collect())
}

async fn train(ctx: JobContext, p: Params) -> Result<JobOutput, JobError> {
    let started = Instant::now();
    let key = ctx.job.job_key.clone();
    let machine = ctx.job.device.clone();
    let selected = device_of(&ctx)?;
    let cfg = p.training(ctx.job.seed as u64);
    let (data, ds) = open_dataset(&ctx, &p.dataset).await?;
    let (k, d, params) = (key.clone(), ds.clone(), p.clone());
    let (rows, n_clips) = blocking(&key, move || {
        let train = clips(&d, &machine, Split::Train, Some(Label::Normal));
        if train.is_empty() {
            return Err(JobError::permanent(format!(
                "job {k}: no training normals of machine type \"{machine}\" in {} (machine types there: {})",
                d.manifest.root.display(),
                machine_types(&d)
            )));
        }
        let rows: Vec<f32> = rows_of(&data, &d, &train, &params, &k)?.iter().flat_map(|r| r.iter().copied()).collect();
        Ok((rows, train.len()))
    })
    .await?;

    let resume = resume_point(&ctx, &cfg).await;
    let resumed = resume
        .as_ref()
        .map(|(cp, sha)| (cp.progress.epoch, sha.clone()));
    let resumed_from = resumed.as_ref().map_or(0, |(epoch, _)| *epoch);
    let (k, train_cfg) = (key.clone(), cfg.clone());
    let device = selected.device.clone();
    let (trained, sha) = train_uploading(
        &ctx,
        cfg.epochs,
        p.checkpoint_every,
        resumed,
        move |reporter| {
            let resume = resume.map(|(cp, _)| cp);
            let trained = super::train(&train_cfg, &rows, &device, resume.as_ref(), |end| {
                reporter.epoch_end(end.epoch, end.loss, || {
                    end.checkpoint()
                        .map(|c| c.encode())
                        .map_err(|e| e.to_string())
                })
            })
            .map_err(|e| JobError::permanent(format!("job {k}: {e}")))?;
            Ok(Ran {
                epochs_run: trained.losses.len(),
                finished: trained.finished,
                out: trained,
            })
        },
    )
    .await?;
    let best_loss = trained
        .losses
        .get(trained.best_epoch.wrapping_sub(1))
        .copied();
    Ok(JobOutput {
        proxy_metric: "ae_train_mse".into(),
        extra_json: json!({
            "epochs": trained.losses.len(),
            "best_epoch": trained.best_epoch,
            "best_loss": best_loss,
            "final_loss": trained.losses.last(),
            "losses": trained.losses,
            "resumed_from_epoch": resumed_from,
            "train_clips": n_clips,
        })
        .to_string(),
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
                "config": cfg,
                "wall_s": started.elapsed().as_secs_f64(),
            }),
        ),
        artifacts: vec![sha],
        ..Default::default()
    })
}

/// A clip's reconstruction residual `x − x̂`, `[rows, dim]`, and its input.
fn residual(
    model: &super::Autoencoder,
    rows: &Array2<f32>,
    device: &Device,
) -> Result<(Array2<f64>, Array2<f64>), String> {
    let (n, dim) = rows.dim();
    let x = Tensor::<2>::from_data(
        TensorData::new(rows.iter().copied().collect::<Vec<f32>>(), [n, dim]),
        device,
    );
    let recon: Vec<f32> = model
        .forward(x)
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| format!("reading the reconstruction: {e:?}"))?;
    let recon = Array2::from_shape_vec((n, dim), recon.into_iter().map(f64::from).collect())
        .map_err(|e| e.to_string())?;
    let input = rows.mapv(f64::from);
    Ok((&input - &recon, input))
}

async fn evaluate(ctx: JobContext, p: Params) -> Result<JobOutput, JobError> {
    let started = Instant::now();
    let key = ctx.job.job_key.clone();
    let machine = ctx.job.device.clone();
    let selected = device_of(&ctx)?;
    let cfg = p.training(ctx.job.seed as u64);
    let (cp, sha) = input_checkpoint(&ctx, &cfg).await?;
    let trained = cp.progress.clone();
    let (data, ds) = open_dataset(&ctx, &p.dataset).await?;
    ctx.progress
        .send_modify(|pr| pr.message = "embedding and probing".into());
    let (k, d, device, seed) = (
        key.clone(),
        ds.clone(),
        selected.device.clone(),
        ctx.job.seed as u64,
    );
    let scored = blocking(&key, move || {
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
        let model = cp.best_model(&device).map_err(|e| JobError::permanent(format!("job {k}: {e}")))?;
        let mut embeddings = Vec::with_capacity(train.len() + test.len());
        let (mut normal_inputs, mut normal_recons) = (Vec::new(), Vec::new());
        for (split, set) in [(report::Split::Train, &train), (report::Split::Test, &test)] {
            for (entry, rows) in set.iter().zip(rows_of(&data, &d, set, &p, &k)?) {
                if rows.nrows() == 0 {
                    return Err(JobError::permanent(format!("job {k}: {} is shorter than {} frames", entry.path, p.frames)));
                }
                let (res, input) = residual(&model, &rows, &device).map_err(|e| JobError::retryable(format!("job {k}: {}: {e}", entry.path)))?;
                let is_anomaly = entry.label == Label::Anomaly;
                if split == report::Split::Test && !is_anomaly {
                    normal_recons.push(&input - &res);
                    normal_inputs.push(input);
                }
                embeddings.push(ClipEmbedding {
                    entry: ManifestEntry { file: entry.path.clone(), section: format!("{:02}", entry.section), split, is_anomaly, line: 0 },
                    rows: res,
                });
            }
        }
        let proxy = if normal_inputs.is_empty() {
            Err(format!("machine type \"{machine}\" has no normal test clips"))
        } else {
            let cat = |m: &[Array2<f64>]| ndarray::concatenate(Axis(0), &m.iter().map(|a| a.view()).collect::<Vec<_>>());
            match (cat(&normal_inputs), cat(&normal_recons)) {
                (Ok(x), Ok(r)) => mean_l1_error(x.view(), r.view()).map_err(|e| e.to_string()),
                (Err(e), _) | (_, Err(e)) => Err(e.to_string()),
            }
        };
        Ok(probe_all(&embeddings, seed, PROXY_METRIC, proxy, train.len(), test.len()))
    })
    .await?;
    let mut out = scored;
    out.provenance_json = provenance(
        &ctx,
        &selected,
        &ds,
        json!({
            "checkpoint": sha,
            "epochs_run": trained.epoch,
            "best_loss": trained.best_loss,
            "best_epoch": trained.best_epoch,
            "train_s": trained.train_seconds,
            "config": cfg,
            "wall_s": started.elapsed().as_secs_f64(),
        }),
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifacts::Artifacts;
    use asdsweep_shared::proto::{Job, Progress, artifact_service_client::ArtifactServiceClient};
    use asdsweep_shared::synth::{self, Machine, SynthConfig};
    use std::sync::Arc;
    use tokio_util::sync::CancellationToken;

    /// A context whose artifact client points nowhere (these jobs fail before using it).
    fn context(stage: &str, device: &str, data: Option<Arc<DataRoot>>) -> JobContext {
        let channel = tonic::transport::Channel::from_static("http://127.0.0.1:1").connect_lazy();
        let bearer = asdsweep_shared::auth::Bearer::new(None).unwrap();
        let params = json!({
            "hidden": 8, "latent": 2, "epochs": 1, "batch_size": 8, "lr": 1e-3, "lr_step_epochs": 1, "lr_gamma": 0.5,
            "checkpoint_every": 1, "frames": 5, "n_mels": 32, "dataset": { "path": "d" },
        });
        JobContext {
            job: Job {
                job_key: format!("ae/c/{device}/s1/{stage}"),
                stage: stage.into(),
                device: device.into(),
                seed: 1,
                ..Job::default()
            },
            params,
            cancel: CancellationToken::new(),
            progress: tokio::sync::watch::channel(Progress::default()).0,
            artifacts: Artifacts::new(
                ArtifactServiceClient::with_interceptor(channel, bearer),
                std::env::temp_dir(),
            ),
            data,
            device: "cpu".into(),
        }
    }

    #[tokio::test]
    async fn missing_data_missing_clips_and_missing_checkpoints_are_named() {
        let root = tempfile::tempdir().unwrap();
        let cfg = SynthConfig {
            devices: vec![Machine::Fan],
            sections: 1,
            train: 2,
            test: 1,
            seconds: 0.2,
            ..SynthConfig::default()
        };
        synth::generate(&cfg, &root.path().join("d"), &|| {}).unwrap();
        let data = Some(Arc::new(DataRoot::open(root.path()).unwrap()));

        let err = AutoencoderKind
            .run(context("train", "fan", None))
            .await
            .unwrap_err();
        assert!(
            err.message.contains("without --data") && err.retryable,
            "{err:?}"
        );

        let err = AutoencoderKind
            .run(context("train", "valve", data.clone()))
            .await
            .unwrap_err();
        assert!(
            err.message
                .contains("no training normals of machine type \"valve\"")
                && err.message.contains("fan"),
            "{err:?}"
        );
        assert!(!err.retryable);

        let err = AutoencoderKind
            .run(context("eval", "fan", data.clone()))
            .await
            .unwrap_err();
        assert!(
            err.message.contains("expected the one checkpoint") && err.message.contains("got 0"),
            "{err:?}"
        );

        let mut bad = context("train", "fan", data.clone());
        bad.params.as_object_mut().unwrap().remove("hidden");
        let err = AutoencoderKind.run(bad).await.unwrap_err();
        assert!(
            err.message.contains("bad parameters") && err.message.contains("hidden"),
            "{err:?}"
        );
        // A value of the wrong type is named by its key, not only by the types involved.
        let mut bad = context("train", "fan", data);
        bad.params["latent"] = serde_json::json!("eight");
        let err = AutoencoderKind.run(bad).await.unwrap_err();
        assert!(
            err.message
                .contains("bad parameters: `latent`: invalid type: string \"eight\""),
            "{err:?}"
        );
    }
}
