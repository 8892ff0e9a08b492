//! What a family's jobs read: blocking work off the runtime, the job's dataset (its
//! fingerprint checked), a machine type's clips, the burn device, the checkpoint an
//! evaluation gets from its training job, and the provenance every result carries.

use super::checkpoint::{Checkpoint, TrainingConfig};
use crate::backend;
use crate::data::{DataRoot, Dataset};
use crate::registry::{JobContext, JobError};
use asdsweep_shared::dataset::{Entry, Label, Split};
use asdsweep_shared::spec::DatasetSpec;
use serde_json::json;
use std::sync::Arc;

/// Runs blocking work (scans, decoding, training) off the async runtime; a panic becomes a failure.
pub async fn blocking<T: Send + 'static>(
    key: &str,
    work: impl FnOnce() -> Result<T, JobError> + Send + 'static,
) -> Result<T, JobError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| JobError::retryable(format!("job {key}: worker thread failed: {e}")))?
}

/// Clips of one machine type in a split (`label`: only that label).
pub fn clips<'a>(
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

/// A machine type's training normals (what a per-machine-type family trains on); none is
/// a permanent error of job `key` that names the machine types the dataset does hold.
pub fn training_normals<'a>(
    ds: &'a Dataset,
    machine: &str,
    key: &str,
) -> Result<Vec<&'a Entry>, JobError> {
    let normals = clips(ds, machine, Split::Train, Some(Label::Normal));
    if normals.is_empty() {
        return Err(JobError::permanent(format!(
            "job {key}: no training normals of machine type \"{machine}\" in {} (machine types there: {})",
            ds.manifest.root.display(),
            machine_types(ds)
        )));
    }
    Ok(normals)
}

/// The machine types the dataset holds, sorted.
pub fn machine_type_names(ds: &Dataset) -> Vec<&str> {
    let mut types: Vec<&str> = ds
        .manifest
        .entries
        .iter()
        .map(|e| e.device.as_str())
        .collect();
    types.sort_unstable();
    types.dedup();
    types
}

/// Machine types the dataset holds, for error messages.
pub fn machine_types(ds: &Dataset) -> String {
    let types = machine_type_names(ds);
    if types.is_empty() {
        "none".into()
    } else {
        types.join(", ")
    }
}

/// The dataset a job names, with its fingerprint checked.
pub async fn open_dataset(
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
pub fn device_of(ctx: &JobContext) -> Result<backend::Selected, JobError> {
    backend::select(&ctx.device)
        .map_err(|e| JobError::permanent(format!("job {}: {e}", ctx.job.job_key)))
}

/// Provenance every result carries, with the family's own fields (`extra`, a JSON object) added.
pub fn provenance(
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

/// The one checkpoint an evaluation job gets from its training job (cached, hash verified),
/// checked to have been trained with the settings the job evaluates.
pub async fn input_checkpoint<C: TrainingConfig>(
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
