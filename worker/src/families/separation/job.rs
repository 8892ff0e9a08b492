//! The separation family on the job skeleton: `train` trains one config on mixtures of
//! the target machine type's training normals with other types' (drawn per item from the
//! seed and the epoch); `eval` embeds each clip (five 2-s segments, the separator's
//! features of each) for the probes and measures SI-SDR on seeded mixtures of the target
//! type's 10-s test normals with other types' training normals at −5, 0 and 5 dB, each
//! separated as five 2-s segments.

use super::{Batch, SeparationTrainingConfig, Separator, SeparatorConfig};
use crate::data::Dataset;
use crate::families::checkpoint::Checkpoint;
use crate::families::inputs::{clips, machine_types, training_normals};
use crate::families::skeleton::{EvalInput, Evaluate, Measured, Train, TrainInput, Trained};
use crate::families::training::{EpochReporter, Ran};
use crate::registry::JobError;
use asdsweep_shared::audio::decode_wav_file_at;
use asdsweep_shared::dataset::{Entry, Label, Split};
use asdsweep_shared::family::separation::{KIND, PROXY, PROXY_SNRS_DB, Params, UNPROCESSED};
use asdsweep_shared::family::{Kind, ProxyMetric, Schedule};
use asdsweep_shared::metrics::proxy::si_sdr_f32;
use asdsweep_shared::mixture::{Draw, TRAINING_SAMPLES, crop_or_pad, mix};
use asdsweep_shared::probe::report::ClipEmbedding;
use asdsweep_shared::spec::DatasetSpec;
use asdsweep_shared::stft::{Complex64, Stft};
use burn::tensor::{Device, Tensor, TensorData};
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde_json::json;
use std::sync::OnceLock;

/// The sample rate the separator works at (clips at another rate are resampled).
pub const SAMPLE_RATE: u32 = 16_000;

/// Segments of an evaluated clip: 10 s as five 2-s segments.
pub const SEGMENTS: usize = 5;

/// Samples of an evaluated clip (padded or cut to this).
pub const EVAL_SAMPLES: usize = SEGMENTS * TRAINING_SAMPLES;

/// Segments separated per forward pass in evaluation (two 10-s clips; the attention scores
/// of one pass at C 64 take ~0.4 GB each).
const EVAL_BATCH: usize = 10;

/// The separation family's hooks (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct Separation;

/// A clip's samples at [`SAMPLE_RATE`] (mono).
pub fn waveform(ds: &Dataset, entry: &Entry) -> Result<Vec<f32>, String> {
    let path = ds.manifest.full_path(entry);
    decode_wav_file_at(&path, SAMPLE_RATE).map_err(|e| format!("{}: {e}", path.display()))
}

/// Real and imaginary parts of the STFT of `signal`, appended to `out` as `[2, frames, bins]`.
fn push_stft(stft: &Stft, signal: &[f32], out: &mut Vec<f32>) -> Result<usize, String> {
    let spec = stft.forward(signal).map_err(|e| e.to_string())?;
    out.extend(spec.iter().map(|c| c.re as f32));
    out.extend(spec.iter().map(|c| c.im as f32));
    Ok(spec.nrows())
}

/// One separated segment: the estimate (back through the inverse STFT, [`TRAINING_SAMPLES`]
/// samples; empty when not asked for) and the features (`C·(2 + cb)`).
#[derive(Clone)]
struct Separated {
    estimate: Vec<f32>,
    features: Vec<f32>,
}

/// A separator on a device, running 2-s segments in batches. An all-zero segment (the
/// padding of a clip shorter than 10 s) is run once and its result reused: in evaluation
/// the model is a fixed function of its input, so every all-zero segment gives the same.
pub struct Segments<'a> {
    model: &'a Separator,
    device: &'a Device,
    zero: OnceLock<Result<Separated, String>>,
}

impl<'a> Segments<'a> {
    /// Runs `model` on `device`.
    pub fn new(model: &'a Separator, device: &'a Device) -> Segments<'a> {
        Segments {
            model,
            device,
            zero: OnceLock::new(),
        }
    }

    /// Each segment's estimate (when `separate`) and features, in order.
    fn run(&self, segments: &[&[f32]], separate: bool) -> Result<Vec<Separated>, String> {
        let live: Vec<&[f32]> = segments
            .iter()
            .copied()
            .filter(|s| s.iter().any(|v| *v != 0.0))
            .collect();
        let mut done = self.batched(&live, separate)?.into_iter();
        segments
            .iter()
            .map(|s| {
                if s.iter().any(|v| *v != 0.0) {
                    Ok(done.next().expect("one result per live segment"))
                } else {
                    self.zero
                        .get_or_init(|| {
                            let zero = vec![0.0; s.len()];
                            let mut one = self.batched(&[&zero], true)?;
                            Ok(one.remove(0))
                        })
                        .clone()
                }
            })
            .collect()
    }

    fn batched(&self, segments: &[&[f32]], separate: bool) -> Result<Vec<Separated>, String> {
        let stft = Stft::separation();
        let bins = stft.bins();
        let mut out = Vec::with_capacity(segments.len());
        for chunk in segments.chunks(EVAL_BATCH) {
            let specs: Vec<(Vec<f32>, usize)> = chunk
                .par_iter()
                .map(|s| {
                    let mut v = Vec::new();
                    push_stft(&stft, s, &mut v).map(|frames| (v, frames))
                })
                .collect::<Result<_, _>>()?;
            let frames = specs[0].1;
            let input: Vec<f32> = specs.into_iter().flat_map(|(v, _)| v).collect();
            let x = Tensor::<4>::from_data(
                TensorData::new(input, [chunk.len(), 2, frames, bins]),
                self.device,
            );
            let result = self.model.forward(x);
            let dim = result.features.dims()[1];
            let features: Vec<f32> = result
                .features
                .into_data()
                .try_to_vec::<f32>()
                .map_err(|e| format!("reading the features: {e:?}"))?;
            let estimates: Vec<Vec<f32>> = if separate {
                let est: Vec<f32> = result
                    .estimate
                    .into_data()
                    .try_to_vec::<f32>()
                    .map_err(|e| format!("reading the estimate: {e:?}"))?;
                est.par_chunks(2 * frames * bins)
                    .map(|ri| {
                        let (re, im) = ri.split_at(frames * bins);
                        let spec = Array2::from_shape_fn((frames, bins), |(t, f)| {
                            Complex64::new(f64::from(re[t * bins + f]), f64::from(im[t * bins + f]))
                        });
                        stft.inverse(&spec, None)
                            .map(|s| s.into_iter().map(|v| v as f32).collect())
                            .map_err(|e| e.to_string())
                    })
                    .collect::<Result<_, String>>()?
            } else {
                vec![Vec::new(); chunk.len()]
            };
            out.extend(
                estimates
                    .into_iter()
                    .zip(features.chunks(dim))
                    .map(|(estimate, f)| Separated {
                        estimate,
                        features: f.to_vec(),
                    }),
            );
        }
        Ok(out)
    }

    /// Separates a signal of any length in consecutive [`TRAINING_SAMPLES`] segments (the
    /// last zero-padded) and returns the estimate at the signal's length.
    pub fn separate(&self, signal: &[f32]) -> Result<Vec<f32>, String> {
        let n = signal.len().div_ceil(TRAINING_SAMPLES).max(1);
        let padded = crop_or_pad(signal, 0, n * TRAINING_SAMPLES);
        let segments: Vec<&[f32]> = padded.chunks(TRAINING_SAMPLES).collect();
        let mut out: Vec<f32> = self
            .run(&segments, true)?
            .into_iter()
            .flat_map(|s| s.estimate)
            .collect();
        out.truncate(signal.len());
        Ok(out)
    }
}

/// `signal` padded or cut to [`EVAL_SAMPLES`], as its [`SEGMENTS`] segments.
fn segments_of(signal: &[f32]) -> Vec<f32> {
    crop_or_pad(signal, 0, EVAL_SAMPLES)
}

/// Separates `signal` (at [`SAMPLE_RATE`]) with the kept state of a separation checkpoint
/// (its bytes as a `train` job uploads them), on the CPU: what `asdsweep separate` runs.
pub fn separate_with_checkpoint(checkpoint: &[u8], signal: &[f32]) -> Result<Vec<f32>, String> {
    let cp =
        Checkpoint::<SeparationTrainingConfig>::decode(checkpoint).map_err(|e| e.to_string())?;
    let device = Device::flex();
    let model = SeparationTrainingConfig::best_model(&cp, &device)?;
    Segments::new(&model, &device).separate(signal)
}

/// The other machine types' training normals, by type, for interferers; types without
/// any are left out.
fn interferers<'a>(ds: &'a Dataset, p: &Params, machine: &str) -> Vec<Vec<&'a Entry>> {
    p.machine_types
        .iter()
        .filter(|t| t.as_str() != machine)
        .map(|t| clips(ds, t, Split::Train, Some(Label::Normal)))
        .filter(|c| !c.is_empty())
        .collect()
}

fn no_interferers(key: &str, ds: &Dataset, p: &Params, machine: &str) -> JobError {
    JobError::permanent(format!(
        "job {key}: separation needs training normals of a machine type other than \"{machine}\" for its mixtures; the sweep's types {:?} have none besides it in {} (machine types there: {})",
        p.machine_types,
        ds.manifest.root.display(),
        machine_types(ds)
    ))
}

/// The proxy's SI-SDRs: per SNR of [`PROXY_SNRS_DB`], the mean over `k` mixtures of a
/// random test normal (drawn with replacement) and a random other type's training normal,
/// both 10 s, separated in 2-s segments; and the mean SI-SDR of the unprocessed mixtures.
fn proxy_si_sdrs(
    input: &EvalInput<'_, Params>,
    model: &Separator,
) -> Result<(Vec<f64>, f64), String> {
    let (ds, p, machine) = (input.ds, input.params, input.machine);
    let normals = clips(ds, machine, Split::Test, Some(Label::Normal));
    if normals.is_empty() {
        return Err(format!(
            "machine type \"{machine}\" has no normal test clips"
        ));
    }
    let others = interferers(ds, p, machine);
    if others.is_empty() {
        return Err(format!(
            "no training normals of a machine type other than \"{machine}\" to mix with"
        ));
    }
    let runner = Segments::new(model, input.device);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(input.seed);
    let (mut per_snr, mut unprocessed) = (Vec::new(), Vec::new());
    for (snr, _) in PROXY_SNRS_DB {
        let mut values = Vec::with_capacity(p.proxy_mixtures);
        for _ in 0..p.proxy_mixtures {
            let target = normals[rng.random_range(0..normals.len())];
            let kind = &others[rng.random_range(0..others.len())];
            let interferer = kind[rng.random_range(0..kind.len())];
            let m = mix(
                &segments_of(&waveform(ds, target)?),
                &segments_of(&waveform(ds, interferer)?),
                f64::from(snr),
            );
            let segments: Vec<&[f32]> = m.mixture.chunks(TRAINING_SAMPLES).collect();
            let estimate: Vec<f64> = runner
                .run(&segments, true)?
                .into_iter()
                .flat_map(|s| s.estimate)
                .map(f64::from)
                .collect();
            let target: Vec<f64> = m.target.iter().copied().map(f64::from).collect();
            let mixture: Vec<f64> = m.mixture.iter().copied().map(f64::from).collect();
            values.push(si_sdr_f32(&estimate, &target).map_err(|e| e.to_string())?);
            unprocessed.push(si_sdr_f32(&mixture, &target).map_err(|e| e.to_string())?);
        }
        per_snr.push(mean(&values));
    }
    Ok((per_snr, mean(&unprocessed)))
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

impl Evaluate for Separation {
    type Params = Params;
    type Model = Separator;
    const KIND: Kind = KIND;

    fn dataset(params: &Params) -> &DatasetSpec {
        &params.dataset
    }

    fn proxies(&self, _: &Params) -> Vec<ProxyMetric> {
        asdsweep_shared::family::separation::proxies()
    }

    /// Each clip padded or cut to 10 s, its five 2-s segments' features concatenated:
    /// one row of `5·C·(2 + cb)`.
    fn embed(
        &self,
        input: &EvalInput<'_, Params>,
        model: &Separator,
        set: &[&Entry],
    ) -> Result<Vec<Array2<f64>>, JobError> {
        let k = input.key;
        let per_batch = EVAL_BATCH / SEGMENTS;
        let runner = Segments::new(model, input.device);
        let mut rows = Vec::with_capacity(set.len());
        for group in set.chunks(per_batch) {
            let signals: Vec<Vec<f32>> = group
                .par_iter()
                .map(|e| waveform(input.ds, e).map(|w| segments_of(&w)))
                .collect::<Result<_, _>>()
                .map_err(|e| JobError::permanent(format!("job {k}: {e}")))?;
            let segments: Vec<&[f32]> = signals
                .iter()
                .flat_map(|s| s.chunks(TRAINING_SAMPLES))
                .collect();
            let separated = runner
                .run(&segments, false)
                .map_err(|e| JobError::retryable(format!("job {k}: {e}")))?;
            for clip in separated.chunks(SEGMENTS) {
                let row: Vec<f64> = clip
                    .iter()
                    .flat_map(|s| &s.features)
                    .copied()
                    .map(f64::from)
                    .collect();
                rows.push(Array2::from_shape_vec((1, row.len()), row).expect("one row"));
            }
        }
        Ok(rows)
    }

    /// SI-SDR of separated mixtures (see [`proxy_si_sdrs`]): the mean over the SNRs, each
    /// SNR's mean, and the unprocessed mixtures' mean.
    fn measure(
        &self,
        input: &EvalInput<'_, Params>,
        model: &Separator,
        _: &[ClipEmbedding],
    ) -> Vec<Measured> {
        match proxy_si_sdrs(input, model) {
            Ok((per_snr, unprocessed)) => {
                let mut out = vec![(PROXY, Ok(mean(&per_snr)))];
                out.extend(
                    PROXY_SNRS_DB
                        .iter()
                        .zip(&per_snr)
                        .map(|((_, metric), v)| (*metric, Ok(*v))),
                );
                out.push((UNPROCESSED, Ok(unprocessed)));
                out
            }
            Err(e) => self
                .proxies(input.params)
                .into_iter()
                .map(|m| (m, Err(e.clone())))
                .collect(),
        }
    }
}

impl Train for Separation {
    type Config = SeparationTrainingConfig;

    fn config(p: &Params, seed: u64) -> SeparationTrainingConfig {
        SeparationTrainingConfig::new(
            SeparatorConfig::new(p.channels, p.blocks),
            p.schedule.clone(),
        )
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
            machine,
            params,
            config,
            ds,
            device,
            resume,
            ..
        } = input;
        let targets = training_normals(&ds, &machine, &k)?;
        let others = interferers(&ds, &params, &machine);
        if others.is_empty() {
            return Err(no_interferers(&k, &ds, &params, &machine));
        }
        let stft = Stft::separation();
        let seed = config.seed;
        let make_batch = |epoch: usize, items: &[usize]| -> Result<Batch, String> {
            let parts: Vec<(Vec<f32>, Vec<f32>, usize)> = items
                .par_iter()
                .map(|&i| {
                    let draw = Draw::new(seed, epoch, i, others.len(), |t| others[t].len());
                    let target = waveform(&ds, targets[i])?;
                    let interferer = waveform(&ds, others[draw.other_type][draw.clip])?;
                    let m = draw.mixture(&target, &interferer);
                    let (mut x, mut y) = (Vec::new(), Vec::new());
                    let frames = push_stft(&stft, &m.mixture, &mut x)?;
                    push_stft(&stft, &m.target, &mut y)?;
                    Ok((x, y, frames))
                })
                .collect::<Result<_, String>>()?;
            let frames = parts[0].2;
            let (mut mixture, mut target) = (Vec::new(), Vec::new());
            for (x, y, _) in parts {
                mixture.extend(x);
                target.extend(y);
            }
            Ok(Batch {
                mixture,
                target,
                items: items.len(),
                frames,
            })
        };
        let trained = super::train(
            &config,
            targets.len(),
            &device,
            resume.as_ref(),
            make_batch,
            |end| {
                reporter.epoch_end(end.stats(), || {
                    end.checkpoint()
                        .map(|c| c.encode())
                        .map_err(|e| e.to_string())
                })
            },
        )
        .map_err(|e| JobError::permanent(format!("job {k}: {e}")))?;
        let mut extra = serde_json::Map::new();
        extra.insert("train_clips".into(), json!(targets.len()));
        extra.insert("interferer_types".into(), json!(others.len()));
        Ok(Trained {
            losses: trained.losses,
            best_epoch: trained.best_epoch,
            proxy: None,
            extra,
        }
        .ran(trained.finished))
    }

    fn load(
        cp: &Checkpoint<SeparationTrainingConfig>,
        device: &Device,
    ) -> Result<Separator, String> {
        SeparationTrainingConfig::best_model(cp, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_segments_are_run_once_and_give_what_running_them_gives() {
        let device = Device::flex();
        let model = SeparatorConfig::new(4, 0).init(&device, 5);
        let tone: Vec<f32> = (0..TRAINING_SAMPLES)
            .map(|i| 0.3 * (i as f32 * 0.05).sin())
            .collect();
        let zero = vec![0.0; TRAINING_SAMPLES];
        let runner = Segments::new(&model, &device);
        let memo = runner.run(&[&zero, &tone, &zero], true).unwrap();
        assert!(runner.zero.get().is_some(), "the zero segment was memoised");
        let direct = Segments::new(&model, &device)
            .batched(&[&zero, &tone], true)
            .unwrap();
        for (got, want) in [
            (&memo[0], &direct[0]),
            (&memo[1], &direct[1]),
            (&memo[2], &direct[0]),
        ] {
            assert_eq!(got.estimate.len(), TRAINING_SAMPLES);
            assert_eq!(got.features.len(), 4 * 2);
            for (a, b) in got
                .estimate
                .iter()
                .zip(&want.estimate)
                .chain(got.features.iter().zip(&want.features))
            {
                assert!((a - b).abs() < 1e-5, "{a} vs {b}");
            }
        }
        // A 3-s signal comes back at its length.
        let signal: Vec<f32> = tone.iter().chain(&tone[..16_000]).copied().collect();
        assert_eq!(runner.separate(&signal).unwrap().len(), 48_000);
    }
}
