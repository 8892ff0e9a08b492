//! The classifier on the job skeleton: `train` trains one config once across every
//! machine type (label = the machine type's index in the sorted list), holding out a
//! seeded share of each machine type's training clips; its last checkpoint records the
//! proxy metric, macro-F1 of the kept state on the held-out clips. `eval` (one per machine
//! type) embeds each clip (penultimate layer, centred crop) for the probes and reports the
//! recorded macro-F1.

use super::{Classifier as Model, ClassifierConfig, ClassifierTrainingConfig, Clips};
use crate::data::{DataRoot, Dataset};
use crate::families::checkpoint::Checkpoint;
use crate::families::inputs::{clips, machine_types};
use crate::families::resnet::ResNetConfig;
use crate::families::skeleton::{EvalInput, Evaluate, Measured, Train, TrainInput, Trained};
use crate::families::training::{EpochReporter, Ran};
use crate::registry::JobError;
use asdsweep_shared::dataset::{Entry, Label, Split};
use asdsweep_shared::family::classifier::{KIND, PROXY, Params};
use asdsweep_shared::family::{Kind, ProxyMetric, Schedule};
use asdsweep_shared::probe::report::ClipEmbedding;
use asdsweep_shared::spec::DatasetSpec;
use burn::tensor::Device;
use ndarray::Array2;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde_json::json;

/// The classifier family's hooks (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct Classifier;

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

impl Evaluate for Classifier {
    type Params = Params;
    type Model = Model;
    const KIND: Kind = KIND;

    fn dataset(params: &Params) -> &DatasetSpec {
        &params.dataset
    }

    fn proxies(&self, _: &Params) -> Vec<ProxyMetric> {
        vec![PROXY]
    }

    /// Penultimate-layer embeddings of the centred crops, one row per clip.
    fn embed(
        &self,
        input: &EvalInput<'_, Params>,
        model: &Model,
        set: &[&Entry],
    ) -> Result<Vec<Array2<f64>>, JobError> {
        let k = input.key;
        let fitted = fitted(input.data, input.ds, set, input.params, k)?;
        let embed = || -> Result<Vec<Array2<f64>>, String> {
            let clips = fitted.clips().map_err(|e| e.to_string())?;
            let e = model
                .embeddings(&clips, input.device)
                .map_err(|e| e.to_string())?;
            (0..e.rows())
                .map(|i| {
                    Array2::from_shape_vec(
                        (1, e.dim),
                        e.row(i).iter().map(|&v| f64::from(v)).collect(),
                    )
                    .map_err(|e| e.to_string())
                })
                .collect()
        };
        embed().map_err(|e| JobError::retryable(format!("job {k}: {e}")))
    }

    /// The macro-F1 its training job recorded in the checkpoint.
    fn measure(
        &self,
        input: &EvalInput<'_, Params>,
        _: &Model,
        _: &[ClipEmbedding],
    ) -> Vec<Measured> {
        vec![input.recorded_proxy(PROXY)]
    }
}

impl Train for Classifier {
    type Config = ClassifierTrainingConfig;

    fn config(p: &Params, seed: u64) -> ClassifierTrainingConfig {
        let backbone = ResNetConfig::new()
            .with_depth(p.depth)
            .with_width_multiplier(p.width_multiplier)
            .with_depth_multiplier(p.depth_multiplier);
        let model = ClassifierConfig::new(backbone, p.machine_types.len())
            .with_head(p.head)
            .with_crop_frames(p.crop_frames)
            .with_arcface_margin(p.arcface_margin)
            .with_arcface_scale(p.arcface_scale);
        ClassifierTrainingConfig::new(model, p.schedule.clone()).with_seed(seed)
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
            seed,
            params,
            config,
            data,
            ds,
            device,
            resume,
            ..
        } = input;
        let ((train_set, labels), (held_set, held_labels)) =
            split_held_out(&ds, &params, seed, &k)?;
        let train_clips = fitted(&data, &ds, &train_set, &params, &k)?;
        let held_clips = fitted(&data, &ds, &held_set, &params, &k)?;
        let bad = |e: super::ClassifierError| JobError::permanent(format!("job {k}: {e}"));
        let (clips, held) = (
            train_clips.clips().map_err(bad)?,
            held_clips.clips().map_err(bad)?,
        );
        // A run resumed from its last epoch trains nothing more: its checkpoint holds the proxy.
        let mut macro_f1 = resume
            .as_ref()
            .and_then(|cp| cp.proxy.as_ref())
            .map(|p| p.value);
        let epochs = config.schedule.epochs;
        let trained = super::train(&config, &clips, &labels, &device, resume.as_ref(), |end| {
            reporter.epoch_end(end.stats(), || {
                let mut cp = end.checkpoint().map_err(|e| e.to_string())?;
                if end.epoch == epochs {
                    let f1 = end
                        .best_model()
                        .macro_f1(&held, &held_labels, &device)
                        .map_err(|e| format!("macro-F1 on held-out clips: {e}"))?;
                    macro_f1 = Some(f1);
                    cp = cp.with_proxy(PROXY.name, f1);
                }
                Ok(cp.encode())
            })
        })
        .map_err(bad)?;
        if trained.finished && macro_f1.is_none() {
            return Err(JobError::permanent(format!(
                "job {k}: the final checkpoint records no {}",
                PROXY.name
            )));
        }
        let mut extra = serde_json::Map::new();
        extra.insert("train_clips".into(), json!(train_set.len()));
        extra.insert("held_out_clips".into(), json!(held_set.len()));
        extra.insert("machine_types".into(), json!(params.machine_types));
        Ok(Trained {
            losses: trained.losses,
            best_epoch: trained.best_epoch,
            proxy: macro_f1,
            extra,
        }
        .ran(trained.finished))
    }

    fn load(cp: &Checkpoint<ClassifierTrainingConfig>, device: &Device) -> Result<Model, String> {
        cp.best_model(device).map_err(|e| e.to_string())
    }
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
