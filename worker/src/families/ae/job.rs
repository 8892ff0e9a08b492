//! The autoencoder on the job skeleton: `train` trains one config on one machine type's
//! training normals; `eval` embeds each clip as its reconstruction residual (stacked-frame
//! rows) for the probes and measures the proxy metric, the mean L1 reconstruction error
//! on the test normals.

use super::{AeConfig, AeTrainingConfig, Autoencoder as Model};
use crate::data::{DataRoot, Dataset};
use crate::families::checkpoint::Checkpoint;
use crate::families::inputs::training_normals;
use crate::families::skeleton::{EvalInput, Evaluate, Measured, Train, TrainInput, Trained};
use crate::families::training::{EpochReporter, Ran};
use crate::registry::JobError;
use asdsweep_shared::dataset::Entry;
use asdsweep_shared::family::autoencoder::{KIND, PROXY, Params};
use asdsweep_shared::family::{Kind, ProxyMetric, Schedule};
use asdsweep_shared::logmel::stack_frames;
use asdsweep_shared::metrics::proxy::mean_l1_error;
use asdsweep_shared::probe::report::{self, ClipEmbedding};
use asdsweep_shared::spec::DatasetSpec;
use burn::tensor::{Device, Tensor, TensorData};
use ndarray::{Array2, Axis};
use serde_json::json;

/// The autoencoder family's hooks (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct Autoencoder;

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

/// A clip's reconstruction residual `x − x̂`, `[rows, dim]`.
fn residual(model: &Model, rows: &Array2<f32>, device: &Device) -> Result<Array2<f64>, String> {
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
    Ok(rows.mapv(f64::from) - recon)
}

impl Evaluate for Autoencoder {
    type Params = Params;
    type Model = Model;
    const KIND: Kind = KIND;

    fn dataset(params: &Params) -> &DatasetSpec {
        &params.dataset
    }

    fn proxies(&self, _: &Params) -> Vec<ProxyMetric> {
        vec![PROXY]
    }

    fn embed(
        &self,
        input: &EvalInput<'_, Params>,
        model: &Model,
        set: &[&Entry],
    ) -> Result<Vec<Array2<f64>>, JobError> {
        let (k, p) = (input.key, input.params);
        set.iter()
            .zip(rows_of(input.data, input.ds, set, p, k)?)
            .map(|(entry, rows)| {
                if rows.nrows() == 0 {
                    return Err(JobError::permanent(format!(
                        "job {k}: {} is shorter than {} frames",
                        entry.path, p.frames
                    )));
                }
                residual(model, &rows, input.device)
                    .map_err(|e| JobError::retryable(format!("job {k}: {}: {e}", entry.path)))
            })
            .collect()
    }

    /// Mean L1 reconstruction error over every row of the test normals ([`mean_l1_error`]),
    /// from the clips' embeddings, which are their residuals.
    fn measure(
        &self,
        input: &EvalInput<'_, Params>,
        _: &Model,
        clips: &[ClipEmbedding],
    ) -> Vec<Measured> {
        let normals: Vec<_> = clips
            .iter()
            .filter(|c| c.entry.split == report::Split::Test && !c.entry.is_anomaly)
            .map(|c| c.rows.view())
            .collect();
        let l1 = if normals.is_empty() {
            Err(format!(
                "machine type \"{}\" has no normal test clips",
                input.machine
            ))
        } else {
            // The residual is x − x̂, so its mean L1 distance from zero is mean |x − x̂|.
            ndarray::concatenate(Axis(0), &normals)
                .map_err(|e| e.to_string())
                .and_then(|residual| {
                    let zero = Array2::<f64>::zeros(residual.dim());
                    mean_l1_error(residual.view(), zero.view()).map_err(|e| e.to_string())
                })
        };
        vec![(PROXY, l1)]
    }
}

impl Train for Autoencoder {
    type Config = AeTrainingConfig;

    fn config(p: &Params, seed: u64) -> AeTrainingConfig {
        let model = AeConfig::new()
            .with_hidden(p.hidden)
            .with_latent(p.latent)
            .with_input_dim(p.frames * p.n_mels);
        AeTrainingConfig::new(model, p.schedule.clone()).with_seed(seed)
    }

    fn schedule(p: &Params) -> &Schedule {
        &p.schedule
    }

    fn train(
        &self,
        input: TrainInput<Self>,
        reporter: &mut EpochReporter,
    ) -> Result<Ran<Trained>, JobError> {
        let TrainInput {
            key: k,
            machine,
            params,
            config,
            data,
            ds,
            device,
            resume,
            ..
        } = input;
        let train = training_normals(&ds, &machine, &k)?;
        let rows: Vec<f32> = rows_of(&data, &ds, &train, &params, &k)?
            .iter()
            .flat_map(|r| r.iter().copied())
            .collect();
        let trained = super::train(&config, &rows, &device, resume.as_ref(), |end| {
            reporter.epoch_end(end.stats(), || {
                end.checkpoint()
                    .map(|c| c.encode())
                    .map_err(|e| e.to_string())
            })
        })
        .map_err(|e| JobError::permanent(format!("job {k}: {e}")))?;
        let mut extra = serde_json::Map::new();
        extra.insert("train_clips".into(), json!(train.len()));
        Ok(Trained {
            losses: trained.losses,
            best_epoch: trained.best_epoch,
            proxy: None,
            extra,
        }
        .ran(trained.finished))
    }

    fn load(cp: &Checkpoint<AeTrainingConfig>, device: &Device) -> Result<Model, String> {
        cp.best_model(device).map_err(|e| e.to_string())
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifacts::Artifacts;
    use crate::families::skeleton::Trainable;
    use crate::registry::{JobContext, JobKind};
    use asdsweep_shared::proto::{Job, Progress, artifact_service_client::ArtifactServiceClient};
    use asdsweep_shared::synth::{self, Machine, SynthConfig};
    use std::sync::Arc;
    use tokio_util::sync::CancellationToken;

    /// A context whose artifact client points nowhere (these jobs fail before using it).
    fn context(stage: &str, device: &str, data: Option<Arc<DataRoot>>) -> JobContext {
        let channel = tonic::transport::Channel::from_static("http://127.0.0.1:1").connect_lazy();
        let bearer = asdsweep_shared::auth::Bearer::new(None).unwrap();
        let params = json!({
            "hidden": 8, "latent": 2, "frames": 5, "n_mels": 32, "dataset": { "path": "d" },
            "schedule": { "epochs": 1, "batch_size": 8, "lr": 1e-3, "lr_step_epochs": 1, "lr_gamma": 0.5, "checkpoint_every": 1 },
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
            drain: CancellationToken::new(),
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

        let err = Trainable(Autoencoder)
            .run(context("train", "fan", None))
            .await
            .unwrap_err();
        assert!(
            err.message.contains("without --data") && err.retryable,
            "{err:?}"
        );

        let err = Trainable(Autoencoder)
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

        let err = Trainable(Autoencoder)
            .run(context("eval", "fan", data.clone()))
            .await
            .unwrap_err();
        assert!(
            err.message.contains("expected the one checkpoint") && err.message.contains("got 0"),
            "{err:?}"
        );

        let mut bad = context("train", "fan", data.clone());
        bad.params.as_object_mut().unwrap().remove("hidden");
        let err = Trainable(Autoencoder).run(bad).await.unwrap_err();
        assert!(
            err.message.contains("bad parameters") && err.message.contains("hidden"),
            "{err:?}"
        );
        // A value of the wrong type is named by its key, not only by the types involved.
        let mut bad = context("train", "fan", data);
        bad.params["latent"] = serde_json::json!("eight");
        let err = Trainable(Autoencoder).run(bad).await.unwrap_err();
        assert!(
            err.message
                .contains("bad parameters: `latent`: invalid type: string \"eight\""),
            "{err:?}"
        );
    }
}
