//! The contrastive family on the job skeleton: `train` trains one config once across every
//! machine type on the augmented views of all their training normals (made once per
//! dataset and setting into the worker's view store, `<data root>/.asdsweep/views`); its
//! last checkpoint records the proxy metric, the uniformity of the kept backbone's
//! embeddings of the first view of one seeded view pair per clip, with the pairs'
//! alignment in the result's `extra`. `eval` (one per machine type) embeds each clip's
//! whole log-mel with the backbone for the probes and reports the recorded uniformity.

use std::borrow::Borrow;

use super::{
    Contrastive as Model, ContrastiveConfig, ContrastiveTrainingConfig, Views, view_pairs,
};
use crate::data::{DataRoot, Dataset};
use crate::families::checkpoint::Checkpoint;
use crate::families::inputs::{self, clips};
use crate::families::resnet::ResNetConfig;
use crate::families::skeleton::{EvalInput, Evaluate, Measured, Train, TrainInput, Trained};
use crate::families::training::{EpochReporter, Ran};
use crate::progress::ProgressLog;
use crate::registry::JobError;
use asdsweep_shared::augment::{Augmentations, Clip, VIEW_RATE, ViewStore};
use asdsweep_shared::dataset::{Entry, Label, Split};
use asdsweep_shared::family::contrastive::{ALIGNMENT, KIND, PROXY, Params};
use asdsweep_shared::family::{Kind, ProxyMetric, Schedule};
use asdsweep_shared::logmel::{LogMel, LogMelConfig};
use asdsweep_shared::metrics::proxy::{alignment, uniformity};
use asdsweep_shared::probe::report::ClipEmbedding;
use asdsweep_shared::spec::DatasetSpec;
use burn::tensor::{Device, Tensor, TensorData};
use ndarray::Array2;
use serde_json::json;

/// The stream of [`view_pairs`] the uniformity pairs are drawn from (epochs use 1, 2, …).
const UNIFORMITY_STREAM: u64 = u64::MAX;

/// The contrastive family's hooks (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct Contrastive;

/// The views contrastive jobs over `machine_types` of `ds` train on, with `mode` and `seed`:
/// the store under the data root's view cache, and every machine type's training normals,
/// sorted by path. `asdsweep views` makes the same ones ahead of the jobs.
pub fn training_views(
    data: &DataRoot,
    ds: &Dataset,
    machine_types: &[String],
    mode: Augmentations,
    seed: u64,
) -> Result<(ViewStore, Vec<Clip>), String> {
    let mut entries = Vec::new();
    for machine in machine_types {
        let normals = clips(ds, machine, Split::Train, Some(Label::Normal));
        if normals.is_empty() {
            return Err(format!(
                "machine type \"{machine}\" has no training normals in {} (machine types there: {})",
                ds.manifest.root.display(),
                inputs::machine_types(ds)
            ));
        }
        entries.extend(normals);
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    let clips = entries
        .iter()
        .map(|e| Clip {
            key: e.path.clone(),
            path: ds.manifest.full_path(e),
        })
        .collect();
    let store = ViewStore::new(data.view_cache(), &ds.fingerprint, mode, seed);
    Ok((store, clips))
}

/// Log-mels embedded together (as one batch) when they have the same shape.
const EMBED_BATCH: usize = 16;

/// The backbone's embedding of each log-mel `[mels, frames]`, in order, on `device`: runs of
/// equally shaped log-mels go through the backbone together, up to [`EMBED_BATCH`] at a time
/// (batch normalisation is in evaluation mode, so a clip's embedding does not depend on its
/// batch).
fn embed<L: Borrow<Array2<f32>>>(model: &Model, logmels: &[L], device: &Device) -> Vec<Vec<f64>> {
    let dim = model.embedding_dim();
    let mut out = Vec::with_capacity(logmels.len());
    let mut rest = logmels;
    while let Some(first) = rest.first() {
        let shape = first.borrow().dim();
        let n = rest
            .iter()
            .take(EMBED_BATCH)
            .take_while(|lm: &&L| (*lm).borrow().dim() == shape)
            .count();
        let (batch, after) = rest.split_at(n);
        let values: Vec<f32> = batch
            .iter()
            .flat_map(|lm| lm.borrow().iter().copied())
            .collect();
        let x = Tensor::<4>::from_data(TensorData::new(values, [n, 1, shape.0, shape.1]), device);
        let embedded: Vec<f64> = model
            .embed(x)
            .into_data()
            .iter::<f32>()
            .map(f64::from)
            .collect();
        out.extend(embedded.chunks(dim).map(<[f64]>::to_vec));
        rest = after;
    }
    out
}

/// The stored views of a job's training clips, read as log-mels.
struct StoredViews {
    store: ViewStore,
    clips: Vec<Clip>,
    /// Each clip's length in samples at 16 kHz: a view is cut to it before its log-mel (the
    /// study's features cover the clip's 10 s; time stretches are longer).
    lengths: Vec<usize>,
    logmel: LogMelConfig,
}

impl StoredViews {
    /// The log-mel of view `view` of clip `clip`, cut to `limit` samples when given.
    fn read(&self, clip: usize, view: usize, limit: Option<usize>) -> Result<Array2<f32>, String> {
        let mut samples = self
            .store
            .load(&self.clips[clip].key, view)
            .map_err(|e| e.to_string())?;
        if let Some(n) = limit {
            samples.truncate(n);
        }
        LogMel::new(self.logmel, VIEW_RATE)
            .and_then(|mut lm| lm.compute(&samples))
            .map_err(|e| e.to_string())
    }
}

impl Views for StoredViews {
    fn clips(&self) -> usize {
        self.clips.len()
    }

    fn logmel(&self, clip: usize, view: usize) -> Result<Array2<f32>, String> {
        self.read(clip, view, Some(self.lengths[clip]))
    }
}

/// Uniformity of the first views' and alignment of both views' embeddings, one seeded pair
/// per clip, whole views (time stretches at their full length, as the study evaluates).
fn geometry(
    model: &Model,
    views: &StoredViews,
    seed: u64,
    device: &Device,
) -> Result<(f64, f64), String> {
    let pairs = view_pairs(views.clips.len(), seed, UNIFORMITY_STREAM);
    let dim = model.embedding_dim();
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for (c, chunk) in pairs.chunks(EMBED_BATCH).enumerate() {
        let read = |pick: fn(&(usize, usize)) -> usize| {
            chunk
                .iter()
                .enumerate()
                .map(|(i, pair)| views.read(c * EMBED_BATCH + i, pick(pair), None))
                .collect::<Result<Vec<_>, String>>()
        };
        first.extend(embed(model, &read(|p| p.0)?, device).concat());
        second.extend(embed(model, &read(|p| p.1)?, device).concat());
    }
    let matrix = |v: Vec<f64>| Array2::from_shape_vec((pairs.len(), dim), v);
    let (first, second) = (
        matrix(first).map_err(|e| e.to_string())?,
        matrix(second).map_err(|e| e.to_string())?,
    );
    Ok((
        uniformity(first.view()).map_err(|e| e.to_string())?,
        alignment(first.view(), second.view()).map_err(|e| e.to_string())?,
    ))
}

impl Evaluate for Contrastive {
    type Params = Params;
    type Model = Model;
    const KIND: Kind = KIND;

    fn dataset(params: &Params) -> &DatasetSpec {
        &params.dataset
    }

    fn proxies(&self, _: &Params) -> Vec<ProxyMetric> {
        vec![PROXY]
    }

    /// The backbone's embedding of each clip's whole log-mel, one row per clip.
    fn embed(
        &self,
        input: &EvalInput<'_, Params>,
        model: &Model,
        set: &[&Entry],
    ) -> Result<Vec<Array2<f64>>, JobError> {
        let k = input.key;
        let logmels = input
            .data
            .logmels(input.ds, set, input.params.n_mels)
            .map_err(|e| JobError::permanent(format!("job {k}: {e}")))?;
        embed(model, &logmels, input.device)
            .into_iter()
            .map(|row| {
                Array2::from_shape_vec((1, row.len()), row)
                    .map_err(|e| JobError::retryable(format!("job {k}: {e}")))
            })
            .collect()
    }

    /// The uniformity its training job recorded in the checkpoint.
    fn measure(
        &self,
        input: &EvalInput<'_, Params>,
        _: &Model,
        _: &[ClipEmbedding],
    ) -> Vec<Measured> {
        vec![input.recorded_proxy(PROXY)]
    }
}

impl Train for Contrastive {
    type Config = ContrastiveTrainingConfig;

    fn config(p: &Params, seed: u64) -> ContrastiveTrainingConfig {
        let backbone = ResNetConfig::new()
            .with_depth(p.depth)
            .with_width_multiplier(p.width_multiplier)
            .with_depth_multiplier(p.depth_multiplier);
        ContrastiveTrainingConfig::new(ContrastiveConfig::new(backbone, p.mode), p.schedule.clone())
            .with_crop_frames(p.crop_frames)
            .with_seed(seed)
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
        let (store, clips) = training_views(
            &data,
            &ds,
            &params.machine_types,
            params.augmentations,
            params.view_seed,
        )
        .map_err(|e| JobError::permanent(format!("job {k}: {e}")))?;
        let lengths = clips
            .iter()
            .map(|c| {
                asdsweep_shared::audio::read_wav_info(&c.path)
                    .map(|info| (info.duration_s() * f64::from(VIEW_RATE)).round() as usize)
                    .map_err(|err| JobError::permanent(format!("job {k}: {err}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        tracing::info!(job = %k, clips = clips.len(), store = %store.dir().display(), "making views");
        let progress = ProgressLog::new(&k, "making views", clips.len());
        let made = store
            .ensure(&clips, &|| progress.tick())
            .map_err(|e| JobError::permanent(format!("job {k}: {e}")))?;
        tracing::info!(job = %k, computed = made.computed, reused = made.reused, "views ready");
        let views = StoredViews {
            store,
            clips,
            lengths,
            logmel: LogMelConfig {
                n_mels: params.n_mels,
                ..LogMelConfig::default()
            },
        };
        // A run resumed from its last epoch trains nothing more: its checkpoint holds the proxy.
        let mut measured = resume
            .as_ref()
            .and_then(|cp| cp.proxy.as_ref())
            .map(|p| (p.value, None));
        let epochs = config.schedule.epochs;
        let bad = |e: super::ContrastiveError| JobError::permanent(format!("job {k}: {e}"));
        let trained = super::train(&config, &views, &device, resume.as_ref(), |end| {
            reporter.epoch_end(end.stats(), || {
                let mut cp = end.checkpoint().map_err(|e| e.to_string())?;
                if end.epoch == epochs {
                    let (u, a) = geometry(&end.best_model(), &views, seed, &device)
                        .map_err(|e| format!("uniformity of view pairs: {e}"))?;
                    measured = Some((u, Some(a)));
                    cp = cp.with_proxy(PROXY.name, u);
                }
                Ok(cp.encode())
            })
        })
        .map_err(bad)?;
        if trained.finished && measured.is_none() {
            return Err(JobError::permanent(format!(
                "job {k}: the final checkpoint records no {}",
                PROXY.name
            )));
        }
        let mut extra = serde_json::Map::new();
        extra.insert("train_clips".into(), json!(views.clips.len()));
        extra.insert("machine_types".into(), json!(params.machine_types));
        extra.insert("augmentations".into(), json!(params.augmentations.as_str()));
        extra.insert("views_computed".into(), json!(made.computed));
        extra.insert("views_reused".into(), json!(made.reused));
        if let Some((_, Some(a))) = measured {
            extra.insert(ALIGNMENT.into(), json!(a));
        }
        Ok(Trained {
            losses: trained.losses,
            best_epoch: trained.best_epoch,
            proxy: measured.map(|(u, _)| u),
            extra,
        }
        .ran(trained.finished))
    }

    fn load(cp: &Checkpoint<ContrastiveTrainingConfig>, device: &Device) -> Result<Model, String> {
        cp.config
            .model
            .init(device, cp.config.seed)
            .map_err(|e| e.to_string())
            .and_then(|m| cp.load_best(m).map_err(|e| e.to_string()))
    }
}
