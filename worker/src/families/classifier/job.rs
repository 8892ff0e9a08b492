//! The `classifier` job kind: the `train` stage trains one config once across every
//! machine type (label = the machine type's index in the sorted list), holding out a
//! seeded share of each machine type's training clips, uploading checkpoints as it goes
//! and resuming from the last one an earlier attempt reported; its last checkpoint records
//! the proxy metric, macro-F1 of the best state on the held-out clips. The `eval` stage
//! (one per machine type) loads that checkpoint, embeds each clip (penultimate layer,
//! centred crop) and runs the linear probes and Mahalanobis on the embeddings.

use super::{Classifier, ClassifierConfig, ClassifierTrainingConfig, Clips, HeadKind};
use crate::data::{DataRoot, Dataset};
use crate::families::job::{
    Ran, blocking, clips, device_of, input_checkpoint, machine_types, open_dataset, probe_all,
    provenance, resume_point, run_stage, train_uploading,
};
use crate::families::resnet::ResNetConfig;
use crate::registry::{JobContext, JobError, JobKind, JobOutput};
use asdsweep_shared::dataset::{Entry, Label, Split};
use asdsweep_shared::probe::report::{self, ClipEmbedding, ManifestEntry};
use asdsweep_shared::spec::DatasetSpec;
use burn::tensor::Device;
use futures::future::BoxFuture;
use ndarray::Array2;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde_json::json;
use std::time::Instant;

/// Name of the proxy metric: macro-F1 of the machine-type prediction on held-out clips.
pub const PROXY_METRIC: &str = "macro_f1";

/// The classifier job kind (see the module docs).
pub struct ClassifierKind;

/// A job's parameters, as the grid writes them (`shared::spec::ClassifierFamily`).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    head: HeadKind,
    depth: usize,
    width_multiplier: f64,
    depth_multiplier: f64,
    epochs: usize,
    batch_size: usize,
    lr: f64,
    lr_step_epochs: usize,
    lr_gamma: f64,
    checkpoint_every: usize,
    crop_frames: usize,
    n_mels: usize,
    arcface_margin: f64,
    arcface_scale: f64,
    held_out_fraction: f64,
    /// Every machine type of the sweep, sorted: a class is an index into it.
    machine_types: Vec<String>,
    dataset: DatasetSpec,
}

impl Params {
    fn training(&self, seed: u64) -> ClassifierTrainingConfig {
        let backbone = ResNetConfig::new()
            .with_depth(self.depth)
            .with_width_multiplier(self.width_multiplier)
            .with_depth_multiplier(self.depth_multiplier);
        let model = ClassifierConfig::new(backbone, self.machine_types.len())
            .with_head(self.head)
            .with_crop_frames(self.crop_frames)
            .with_arcface_margin(self.arcface_margin)
            .with_arcface_scale(self.arcface_scale);
        ClassifierTrainingConfig::new(model)
            .with_epochs(self.epochs)
            .with_batch_size(self.batch_size)
            .with_lr(self.lr)
            .with_lr_step_epochs(self.lr_step_epochs)
            .with_lr_gamma(self.lr_gamma)
            .with_seed(seed)
    }
}

impl JobKind for ClassifierKind {
    fn name(&self) -> &'static str {
        "classifier"
    }

    fn run(&self, ctx: JobContext) -> BoxFuture<'static, Result<JobOutput, JobError>> {
        Box::pin(run_stage::<Params, _, _>(
            "classifier",
            ctx,
            train,
            evaluate,
        ))
    }
}

/// Clips as the model reads them: log-mels (`[mels, frames]`) fitted to one length, the
/// longest that every clip reaches but at least `crop_frames` (longer clips centre-cropped,
/// shorter ones padded with their quietest value), flattened `[clips, mels, frames]`.
struct Fitted {
    values: Vec<f32>,
    mels: usize,
    frames: usize,
}

impl Fitted {
    fn of(logmels: &[std::sync::Arc<Array2<f32>>], crop_frames: usize) -> Fitted {
        let mels = logmels.first().map_or(0, |lm| lm.nrows());
        let frames = logmels
            .iter()
            .map(|lm| lm.ncols())
            .min()
            .unwrap_or(0)
            .max(crop_frames);
        let mut values = Vec::with_capacity(logmels.len() * mels * frames);
        for lm in logmels {
            let n = lm.ncols();
            let floor = lm.iter().copied().fold(f32::INFINITY, f32::min);
            let start = n.saturating_sub(frames) / 2;
            for row in lm.rows() {
                let kept = row.slice(ndarray::s![start..(start + frames).min(n)]);
                values.extend(kept.iter().copied());
                values.extend(std::iter::repeat_n(
                    if floor.is_finite() { floor } else { 0.0 },
                    frames - kept.len(),
                ));
            }
        }
        Fitted {
            values,
            mels,
            frames,
        }
    }

    fn clips(&self) -> Result<Clips<'_>, super::ClassifierError> {
        Clips::new(&self.values, self.mels, self.frames)
    }
}

/// Log-mels of `clips`, fitted (see [`Fitted`]).
fn fitted(
    data: &DataRoot,
    ds: &Dataset,
    clips: &[&Entry],
    p: &Params,
    key: &str,
) -> Result<Fitted, JobError> {
    let logmels = data
        .logmels(ds, clips, p.n_mels)
        .map_err(|e| JobError::permanent(format!("job {key}: {e}")))?;
    Ok(Fitted::of(&logmels, p.crop_frames))
}

/// Clips with their class labels.
type Labelled<'a> = (Vec<&'a Entry>, Vec<usize>);

/// Each machine type's training normals, split (seeded) into training and held-out clips
/// with their class labels: `held_out_fraction` of each, at least one, never all.
fn split_held_out<'a>(
    ds: &'a Dataset,
    p: &Params,
    seed: u64,
    key: &str,
) -> Result<(Labelled<'a>, Labelled<'a>), JobError> {
    let (mut train, mut held) = ((Vec::new(), Vec::new()), (Vec::new(), Vec::new()));
    for (class, machine) in p.machine_types.iter().enumerate() {
        let mut normals = clips(ds, machine, Split::Train, Some(Label::Normal));
        if normals.len() < 2 {
            return Err(JobError::permanent(format!(
                "job {key}: machine type \"{machine}\" has {} training normals in {}; at least 2 are needed (one to hold out for macro-F1) (machine types there: {})",
                normals.len(),
                ds.manifest.root.display(),
                machine_types(ds)
            )));
        }
        normals.sort_by(|a, b| a.path.cmp(&b.path));
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(class as u64);
        normals.shuffle(&mut rng);
        let n_held = ((normals.len() as f64 * p.held_out_fraction).round() as usize)
            .clamp(1, normals.len() - 1);
        for (i, entry) in normals.into_iter().enumerate() {
            let (set, labels) = if i < n_held {
                (&mut held.0, &mut held.1)
            } else {
                (&mut train.0, &mut train.1)
            };
            set.push(entry);
            labels.push(class);
        }
    }
    Ok((train, held))
}

async fn train(ctx: JobContext, p: Params) -> Result<JobOutput, JobError> {
    let started = Instant::now();
    let key = ctx.job.job_key.clone();
    let selected = device_of(&ctx)?;
    let cfg = p.training(ctx.job.seed as u64);
    let (data, ds) = open_dataset(&ctx, &p.dataset).await?;
    let resume = resume_point(&ctx, &cfg).await;
    let resumed = resume
        .as_ref()
        .map(|(cp, sha)| (cp.progress.epoch, sha.clone()));
    let resumed_from = resumed.as_ref().map_or(0, |(epoch, _)| *epoch);
    let (k, d, params, train_cfg, seed) = (
        key.clone(),
        ds.clone(),
        p.clone(),
        cfg.clone(),
        ctx.job.seed as u64,
    );
    let device = selected.device.clone();
    let ((trained, macro_f1, n_train, n_held), sha) = train_uploading(
        &ctx,
        cfg.epochs,
        p.checkpoint_every,
        resumed,
        move |reporter| {
            let ((train_set, labels), (held_set, held_labels)) =
                split_held_out(&d, &params, seed, &k)?;
            let train_clips = fitted(&data, &d, &train_set, &params, &k)?;
            let held_clips = fitted(&data, &d, &held_set, &params, &k)?;
            let bad = |e: super::ClassifierError| JobError::permanent(format!("job {k}: {e}"));
            let (clips, held) = (
                train_clips.clips().map_err(bad)?,
                held_clips.clips().map_err(bad)?,
            );
            let resume = resume.map(|(cp, _)| cp);
            // A run resumed from its last epoch trains nothing more: its checkpoint holds the proxy.
            let mut macro_f1 = resume
                .as_ref()
                .and_then(|cp| cp.proxy.as_ref())
                .map(|p| p.value);
            let trained = super::train(
                &train_cfg,
                &clips,
                &labels,
                &device,
                resume.as_ref(),
                |end| {
                    reporter.epoch_end(end.epoch, end.loss, || {
                        let mut cp = end.checkpoint().map_err(|e| e.to_string())?;
                        if end.epoch == train_cfg.epochs {
                            let f1 = end
                                .best_model()
                                .macro_f1(&held, &held_labels, &device)
                                .map_err(|e| format!("macro-F1 on held-out clips: {e}"))?;
                            macro_f1 = Some(f1);
                            cp = cp.with_proxy(PROXY_METRIC, f1);
                        }
                        Ok(cp.encode())
                    })
                },
            )
            .map_err(bad)?;
            Ok(Ran {
                epochs_run: trained.losses.len(),
                finished: trained.finished,
                out: (trained, macro_f1, train_set.len(), held_set.len()),
            })
        },
    )
    .await?;
    let macro_f1 = macro_f1.ok_or_else(|| {
        JobError::permanent(format!(
            "job {key}: the final checkpoint {sha} records no {PROXY_METRIC}"
        ))
    })?;
    let best_loss = trained
        .losses
        .get(trained.best_epoch.wrapping_sub(1))
        .copied();
    Ok(JobOutput {
        proxy_metric: PROXY_METRIC.into(),
        proxy_value: Some(macro_f1),
        extra_json: json!({
            "epochs": trained.losses.len(),
            "best_epoch": trained.best_epoch,
            "best_loss": best_loss,
            "final_loss": trained.losses.last(),
            "losses": trained.losses,
            "resumed_from_epoch": resumed_from,
            "train_clips": n_train,
            "held_out_clips": n_held,
            "machine_types": p.machine_types,
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

/// Embeddings (penultimate layer, centred crop) of `set`, one row per clip.
fn embed(model: &Classifier, fitted: &Fitted, device: &Device) -> Result<Vec<Array2<f64>>, String> {
    let clips = fitted.clips().map_err(|e| e.to_string())?;
    let e = model
        .embeddings(&clips, device)
        .map_err(|e| e.to_string())?;
    (0..e.rows())
        .map(|i| {
            Array2::from_shape_vec((1, e.dim), e.row(i).iter().map(|&v| f64::from(v)).collect())
                .map_err(|e| e.to_string())
        })
        .collect()
}

async fn evaluate(ctx: JobContext, p: Params) -> Result<JobOutput, JobError> {
    let started = Instant::now();
    let key = ctx.job.job_key.clone();
    let machine = ctx.job.device.clone();
    let selected = device_of(&ctx)?;
    let cfg = p.training(ctx.job.seed as u64);
    let (cp, sha) = input_checkpoint::<ClassifierTrainingConfig>(&ctx, &cfg).await?;
    let proxy = match &cp.proxy {
        Some(v) if v.metric == PROXY_METRIC => Ok(v.value),
        _ => Err(format!(
            "checkpoint {sha} records no {PROXY_METRIC} (it is not a finished run's last checkpoint)"
        )),
    };
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
        let model = cp.best_model(&device).map_err(|e| JobError::permanent(format!("job {k}: {e}")))?;
        let mut embeddings = Vec::with_capacity(train.len() + test.len());
        for (split, set) in [(report::Split::Train, &train), (report::Split::Test, &test)] {
            let rows = embed(&model, &fitted(&data, &d, set, &p, &k)?, &device).map_err(|e| JobError::retryable(format!("job {k}: {e}")))?;
            for (entry, rows) in set.iter().zip(rows) {
                let is_anomaly = entry.label == Label::Anomaly;
                embeddings.push(ClipEmbedding {
                    entry: ManifestEntry { file: entry.path.clone(), section: format!("{:02}", entry.section), split, is_anomaly, line: 0 },
                    rows,
                });
            }
        }
        Ok(probe_all(&embeddings, seed, PROXY_METRIC, proxy, train.len(), test.len()))
    })
    .await?;
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
    use std::sync::Arc;

    #[test]
    fn clips_are_centre_cropped_to_the_shortest_length_and_short_ones_padded_with_their_floor() {
        let long = Arc::new(Array2::from_shape_fn((2, 10), |(m, f)| (10 * m + f) as f32));
        let short = Arc::new(Array2::from_shape_fn((2, 6), |(m, f)| {
            -((10 * m + f) as f32)
        }));
        let f = Fitted::of(&[long.clone(), short], 8);
        assert_eq!((f.mels, f.frames, f.values.len()), (2, 8, 32));
        assert_eq!(
            &f.values[..8],
            &[1., 2., 3., 4., 5., 6., 7., 8.],
            "centred window of the long clip"
        );
        assert_eq!(
            &f.values[16..24],
            &[0., -1., -2., -3., -4., -5., -15., -15.],
            "padded with the clip's quietest value"
        );
        let g = Fitted::of(&[long.clone(), long], 4);
        assert_eq!(
            g.frames, 10,
            "clips longer than the crop keep their length for random windows"
        );
        assert_eq!(g.clips().expect("whole clips").len(), 2);
    }
}
