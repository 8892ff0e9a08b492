//! The contrastive family's 33 augmented views of a training clip, as the study's authors
//! made them (`prepare_dataset_features.py`, `make_33_aug_for_file`, at 16 kHz):
//!
//! | views | what |
//! |---|---|
//! | `np-3.0` `pp3.0` … `np-18.0` `pp18.0` | 12 pitch shifts of ±3, ±6, … ±18 steps of 24 per octave (±1.5 … ±9 semitones), alternating down and up |
//! | `wn15` `wn12` `wn9` `wn6` `wn3` | white noise at an SNR of 15 … 3 dB |
//! | `ts0.8` `ts0.85` `ts0.9` `ts0.95` | time stretches (longer clips: 12.5 … 10.5 s from 10 s) |
//! | `tm0` `fm0` … `tm5` `fm5` | 6 time-masked and 6 frequency-masked versions (STFT 512/128) |
//!
//! The authors' code differs from what its names say in three places, so there are two
//! readings, [`Augmentations::Study`] (their code, the default: it reproduces the study) and
//! [`Augmentations::AsNamed`]:
//!
//! | | `study` | `as_named` |
//! |---|---|---|
//! | noise level | variance = mean\|x\| / 10^(SNR/10) (the mean absolute amplitude stands in for the power) | variance = mean(x²) / 10^(SNR/10) |
//! | masks | one shared spectrogram: every iteration adds 10 time masks and then 7 frequency masks to it, so `tm{k}` and `fm{k}` are the same signal and masks accumulate from `k` to `k + 1` | `tm{k}`: 10 time masks on the clip's own spectrogram; `fm{k}`: 7 frequency masks on it |
//! | frequency mask at bin f | rows f−1 ×0.5, f ×0.3, and every row above f set to 0.5 × row f+1 | rows f−1 ×0.5, f ×0.3, f+1 ×0.5 |
//!
//! Both: a time mask at frame t scales frames t−2 … t+2 by 0.5, 0.4, 0.3, 0.4, 0.5 (t drawn
//! from 3 … T−4); a frequency mask's f is drawn from 2 … F−3; a noisy view whose maximum
//! exceeds 1 is divided by its peak magnitude (librosa's `normalize`).
//!
//! Randomness (noise, mask positions) comes from one ChaCha8 stream per clip seeded by the
//! caller, so the views of a clip are the same bytes on every machine, thread count and
//! processing order. NumPy's global Mersenne Twister stream of the authors' run is not
//! reproduced: a view is one draw of the same distribution, not the authors' draw.

pub mod bench;
mod store;
mod vocoder;

pub use store::{Clip, Made, StoreError, VIEW_RATE, ViewStore};
use vocoder::Analysed;
pub use vocoder::{pitch_shift, time_stretch};

use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use crate::audio::AudioError;
use crate::stft::{Complex32, Complex64, Stft, StftError};

/// Views per training clip.
pub const VIEWS_PER_CLIP: usize = 33;

/// Pitch shifts in steps of 1/24 octave, in the order the views are made (down, up, …).
const PITCH_STEPS: [f64; 6] = [3.0, 6.0, 9.0, 12.0, 15.0, 18.0];
/// Steps per octave of the pitch shifts.
const BINS_PER_OCTAVE: f64 = 24.0;
/// Noise levels, dB.
const SNRS_DB: [u32; 5] = [15, 12, 9, 6, 3];
/// Time-stretch rates (below 1: slower, longer).
const STRETCH_RATES: [f64; 4] = [0.8, 0.85, 0.9, 0.95];
/// Mask iterations: `tm0` … `tm5` and `fm0` … `fm5`.
const MASK_ITERATIONS: usize = 6;
/// Time masks per iteration.
const TIME_MASKS: usize = 10;
/// Frequency masks per iteration.
const FREQ_MASKS: usize = 7;
/// The masks' STFT.
const MASK_N_FFT: usize = 512;
/// The masks' hop.
const MASK_HOP: usize = 128;
/// Gains of a time mask on frames t−2 … t+2.
const TIME_MASK_GAINS: [f32; 5] = [0.5, 0.4, 0.3, 0.4, 0.5];

/// Which reading of the authors' augmentation code to follow (see the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Augmentations {
    /// As the authors' code does it (the study's views).
    #[default]
    Study,
    /// As the names say: noise by power, masks that neither accumulate nor overwrite.
    AsNamed,
}

impl Augmentations {
    /// The spec's spelling: `study` or `as_named`.
    pub fn as_str(self) -> &'static str {
        match self {
            Augmentations::Study => "study",
            Augmentations::AsNamed => "as_named",
        }
    }
}

/// Why the views of a clip cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum AugmentError {
    /// The clip cannot be transformed (empty).
    #[error(transparent)]
    Stft(#[from] StftError),
    /// The pitch shift's resampling failed.
    #[error(transparent)]
    Resample(#[from] AudioError),
    /// A time-stretch rate that is not a positive number.
    #[error("a time-stretch rate must be a positive number, not {0}")]
    Rate(f64),
}

/// One augmented view of a clip.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    /// The study's file-name prefix without its `_`: `np-3.0`, `wn15`, `ts0.85`, `tm0`, …
    pub name: String,
    /// Mono samples at the clip's rate (16 kHz in the study).
    pub samples: Vec<f32>,
}

/// The 33 view names in the order [`views`] makes them.
pub fn view_names() -> &'static [String] {
    static NAMES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    NAMES.get_or_init(|| {
        let mut names = Vec::with_capacity(VIEWS_PER_CLIP);
        for s in PITCH_STEPS {
            names.push(format!("np{:?}", -s));
            names.push(format!("pp{s:?}"));
        }
        names.extend(SNRS_DB.iter().map(|s| format!("wn{s}")));
        names.extend(STRETCH_RATES.iter().map(|r| format!("ts{r:?}")));
        for k in 0..MASK_ITERATIONS {
            names.push(format!("tm{k}"));
            names.push(format!("fm{k}"));
        }
        names
    })
}

/// The 33 views of `clip` (16 kHz mono) under `mode`, with noise and mask positions drawn
/// from a stream seeded by `seed`: the same inputs give the same views, bit for bit.
pub fn views(clip: &[f32], mode: Augmentations, seed: u64) -> Result<Vec<View>, AugmentError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut samples = Vec::with_capacity(VIEWS_PER_CLIP);
    let analysed = Analysed::new(clip)?;
    for s in PITCH_STEPS {
        samples.push(analysed.pitch_shift(-s, BINS_PER_OCTAVE)?);
        samples.push(analysed.pitch_shift(s, BINS_PER_OCTAVE)?);
    }
    for snr in SNRS_DB {
        samples.push(white_noise(clip, f64::from(snr), mode, &mut rng));
    }
    for rate in STRETCH_RATES {
        samples.push(analysed.stretch(rate)?);
    }
    samples.extend(masked(clip, mode, &mut rng)?);
    Ok(view_names()
        .iter()
        .zip(samples)
        .map(|(name, samples)| View {
            name: name.clone(),
            samples,
        })
        .collect())
}

/// `x` plus Gaussian white noise `snr_db` below the signal's level as `mode` defines it,
/// divided by its peak magnitude if its maximum exceeds 1.
pub fn white_noise(x: &[f32], snr_db: f64, mode: Augmentations, rng: &mut impl Rng) -> Vec<f32> {
    let n = x.len().max(1) as f64;
    let level = match mode {
        Augmentations::Study => x.iter().map(|v| f64::from(v.abs())).sum::<f64>() / n,
        Augmentations::AsNamed => x.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / n,
    }
    .max(f64::from(f32::MIN_POSITIVE));
    let sd = (level / 10f64.powf(snr_db / 10.0)).sqrt();
    let noisy: Vec<f64> = x
        .iter()
        .map(|v| f64::from(*v) + sd * rng.sample::<f64, _>(StandardNormal))
        .collect();
    let max = noisy.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let scale = if max > 1.0 {
        1.0 / noisy.iter().fold(0.0f64, |m, v| m.max(v.abs()))
    } else {
        1.0
    };
    noisy.iter().map(|v| (v * scale) as f32).collect()
}

/// Where one iteration's masks fall: time-mask centre frames and frequency-mask bins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct MaskDraw {
    pub(crate) frames: Vec<usize>,
    pub(crate) bins: Vec<usize>,
}

impl MaskDraw {
    /// Draws `TIME_MASKS` centres from 3 … frames−4 (none if frames ≤ 6) and, if `bins` is
    /// given, `FREQ_MASKS` bins from 2 … bins−3 (none if bins ≤ 4), in that order.
    fn draw(rng: &mut impl Rng, frames: Option<usize>, bins: Option<usize>) -> MaskDraw {
        let frames = frames
            .filter(|&t| t > 6)
            .map(|t| {
                (0..TIME_MASKS)
                    .map(|_| rng.random_range(3..t - 3))
                    .collect()
            })
            .unwrap_or_default();
        let bins = bins
            .filter(|&f| f > 4)
            .map(|f| {
                (0..FREQ_MASKS)
                    .map(|_| rng.random_range(2..f - 2))
                    .collect()
            })
            .unwrap_or_default();
        MaskDraw { frames, bins }
    }
}

/// Applies `draw` to a `[frames, bins]` spectrogram in place, time masks first, in the
/// order drawn; `overwrite_above` is the study's frequency mask (every row above f set to
/// 0.5 × row f+1) instead of row f+1 scaled by 0.5.
pub(crate) fn apply_masks(spec: &mut Array2<Complex32>, draw: &MaskDraw, overwrite_above: bool) {
    for &t in &draw.frames {
        for (d, gain) in TIME_MASK_GAINS.iter().enumerate() {
            spec.row_mut(t + d - 2).mapv_inplace(|c| c * gain);
        }
    }
    let bins = spec.ncols();
    for &f in &draw.bins {
        spec.column_mut(f - 1).mapv_inplace(|c| c * 0.5);
        spec.column_mut(f).mapv_inplace(|c| c * 0.3);
        if overwrite_above {
            for mut row in spec.rows_mut() {
                let value = row[f + 1] * 0.5;
                row.slice_mut(ndarray::s![f + 1..bins]).fill(value);
            }
        } else {
            spec.column_mut(f + 1).mapv_inplace(|c| c * 0.5);
        }
    }
}

/// The 12 masked views `tm0, fm0, …, tm5, fm5`.
fn masked(
    clip: &[f32],
    mode: Augmentations,
    rng: &mut impl Rng,
) -> Result<Vec<Vec<f32>>, AugmentError> {
    let stft = Stft::hann(MASK_N_FFT, MASK_HOP);
    let original = stft
        .forward(clip)?
        .mapv(|c| Complex32::new(c.re as f32, c.im as f32));
    let (frames, bins) = original.dim();
    let inverse = |spec: &Array2<Complex32>| -> Result<Vec<f32>, AugmentError> {
        let signal = stft.inverse_from(frames, None, |f, spectrum| {
            for (s, c) in spectrum.iter_mut().zip(spec.row(f)) {
                *s = Complex64::new(c.re.into(), c.im.into());
            }
        })?;
        Ok(signal.into_iter().map(|v| v as f32).collect())
    };
    let mut out = Vec::with_capacity(2 * MASK_ITERATIONS);
    match mode {
        Augmentations::Study => {
            let mut shared = original;
            for _ in 0..MASK_ITERATIONS {
                apply_masks(
                    &mut shared,
                    &MaskDraw::draw(rng, Some(frames), Some(bins)),
                    true,
                );
                let view = inverse(&shared)?;
                out.push(view.clone());
                out.push(view);
            }
        }
        Augmentations::AsNamed => {
            for _ in 0..MASK_ITERATIONS {
                let mut time = original.clone();
                apply_masks(&mut time, &MaskDraw::draw(rng, Some(frames), None), false);
                let mut freq = original.clone();
                apply_masks(&mut freq, &MaskDraw::draw(rng, None, Some(bins)), false);
                out.push(inverse(&time)?);
                out.push(inverse(&freq)?);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    fn dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/augment")
    }

    fn load(name: &str) -> Vec<f32> {
        crate::npy::read_f32(&dir().join(format!("{name}.npy")))
            .expect("fixture")
            .into_iter()
            .collect()
    }

    fn meta() -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir().join("augment.json")).unwrap()).unwrap()
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len(), "lengths");
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    /// A sine's frequency in cycles per sample, from the peak of a Hann-windowed spectrum of
    /// `x` interpolated by a parabola through the log magnitudes.
    fn peak_frequency(x: &[f32]) -> f64 {
        let n = x.len();
        let stft = Stft::hann(n, n);
        let spec = stft.forward(x).unwrap();
        // The frame centred on the middle of the signal (frame 1 of a centred transform
        // with hop n starts at 0 and covers the signal once).
        let row = spec.row(0).mapv(|c| c.norm().max(1e-30).ln());
        let k = (1..row.len() - 1)
            .max_by(|&a, &b| row[a].total_cmp(&row[b]))
            .unwrap();
        let (a, b, c) = (row[k - 1], row[k], row[k + 1]);
        (k as f64 + 0.5 * (a - c) / (a - 2.0 * b + c)) / n as f64
    }

    #[test]
    fn time_stretch_matches_librosa() {
        let clip = load("clip");
        for rate in meta()["rates"].as_array().unwrap() {
            let rate = rate.as_f64().unwrap();
            let got = time_stretch(&clip, rate).unwrap();
            let want = load(&format!("ts{rate:?}"));
            let diff = max_diff(&got, &want);
            assert!(
                diff < 1e-4,
                "time stretch {rate}: differs from librosa by {diff}"
            );
        }
    }

    #[test]
    fn masks_match_the_study_procedure_under_librosa() {
        let clip = load("clip");
        let stft = Stft::hann(MASK_N_FFT, MASK_HOP);
        let original = stft
            .forward(&clip)
            .unwrap()
            .mapv(|c| Complex32::new(c.re as f32, c.im as f32));
        for (name, case) in meta()["masks"].as_object().unwrap() {
            let mut spec = original.clone();
            let indices = |v: &serde_json::Value| -> Vec<usize> {
                v.as_array()
                    .unwrap()
                    .iter()
                    .map(|i| i.as_u64().unwrap() as usize)
                    .collect()
            };
            for draw in case["draws"].as_array().unwrap() {
                let draw = MaskDraw {
                    frames: indices(&draw["frames"]),
                    bins: indices(&draw["bins"]),
                };
                apply_masks(&mut spec, &draw, case["overwrite_above"].as_bool().unwrap());
            }
            let spec = spec.mapv(|c| Complex64::new(c.re.into(), c.im.into()));
            let got: Vec<f32> = stft
                .inverse(&spec, None)
                .unwrap()
                .iter()
                .map(|v| *v as f32)
                .collect();
            let diff = max_diff(&got, &load(name));
            assert!(diff < 1e-5, "{name}: differs from librosa by {diff}");
        }
    }

    #[test]
    fn pitch_shift_moves_a_tone_by_the_ratio_and_keeps_the_length() {
        let f0 = 1000.0 / 16000.0;
        let tone: Vec<f32> = (0..16000)
            .map(|n| (0.5 * (std::f64::consts::TAU * f0 * n as f64).sin()) as f32)
            .collect();
        for steps in [-18.0, -6.0, 3.0, 18.0] {
            let shifted = pitch_shift(&tone, steps, 24.0).unwrap();
            assert_eq!(shifted.len(), tone.len());
            // The middle half: away from the edges the vocoder fades in and out.
            let got = peak_frequency(&shifted[4000..12000]);
            let want = f0 * 2f64.powf(steps / 24.0);
            assert!(
                (got / want - 1.0).abs() < 2e-3,
                "{steps} steps: tone at {} Hz, expected {} Hz",
                got * 16000.0,
                want * 16000.0
            );
        }
    }

    /// Ours resamples with rubato where librosa uses soxr, so the samples differ; this
    /// bounds the difference (the README quotes it) so that a regression shows.
    #[test]
    fn pitch_shift_stays_close_to_librosa() {
        let clip = load("clip");
        for steps in meta()["pitch_steps"].as_array().unwrap() {
            let steps = steps.as_f64().unwrap();
            let got = pitch_shift(&clip, steps, 24.0).unwrap();
            let want = load(&format!("ps{steps:?}"));
            assert_eq!(got.len(), want.len());
            let energy: f64 = want.iter().map(|v| f64::from(*v).powi(2)).sum();
            let error: f64 = got
                .iter()
                .zip(&want)
                .map(|(a, b)| f64::from(a - b).powi(2))
                .sum();
            let snr = 10.0 * (energy / error).log10();
            eprintln!(
                "pitch shift {steps}: {snr:.1} dB SNR against librosa, max |diff| {}",
                max_diff(&got, &want)
            );
            assert!(
                snr > 40.0,
                "pitch shift {steps}: only {snr:.1} dB from librosa"
            );
        }
    }

    #[test]
    fn noise_views_have_the_requested_snr_under_each_definition() {
        let clip: Vec<f32> = (0..160_000)
            .map(|n| (0.02 * (n as f64 * 0.05).sin() + 0.01 * (n as f64 * 0.31).sin()) as f32)
            .collect();
        let n = clip.len() as f64;
        let mean_abs = clip.iter().map(|v| f64::from(v.abs())).sum::<f64>() / n;
        let power = clip.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / n;
        for (mode, level) in [
            (Augmentations::Study, mean_abs),
            (Augmentations::AsNamed, power),
        ] {
            for snr in SNRS_DB {
                let mut rng = ChaCha8Rng::seed_from_u64(u64::from(snr));
                let noisy = white_noise(&clip, f64::from(snr), mode, &mut rng);
                assert!(noisy.iter().fold(0.0f32, |m, v| m.max(*v)) <= 1.0);
                let noise = noisy
                    .iter()
                    .zip(&clip)
                    .map(|(a, b)| f64::from(a - b).powi(2))
                    .sum::<f64>()
                    / n;
                let got = 10.0 * (level / noise).log10();
                assert!(
                    (got - f64::from(snr)).abs() < 0.05,
                    "{mode:?}: SNR {got} dB, asked {snr}"
                );
            }
        }
    }

    #[test]
    fn loud_noise_views_are_peak_normalised() {
        let clip = vec![0.99f32; 4000];
        let noisy = white_noise(
            &clip,
            3.0,
            Augmentations::AsNamed,
            &mut ChaCha8Rng::seed_from_u64(1),
        );
        let peak = noisy.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!((peak - 1.0).abs() < 1e-6, "peak {peak}");
    }

    #[test]
    fn views_are_named_reproducible_and_follow_their_mode() {
        let clip = load("clip");
        let study = views(&clip, Augmentations::Study, 3).unwrap();
        let names: Vec<&str> = study.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names.len(), VIEWS_PER_CLIP);
        assert_eq!(&names[..3], ["np-3.0", "pp3.0", "np-6.0"]);
        assert_eq!(&names[12..17], ["wn15", "wn12", "wn9", "wn6", "wn3"]);
        assert_eq!(&names[17..21], ["ts0.8", "ts0.85", "ts0.9", "ts0.95"]);
        assert_eq!(&names[31..], ["tm5", "fm5"]);
        for v in &study {
            let expected = match v.name.strip_prefix("ts") {
                Some(rate) => (clip.len() as f64 / rate.parse::<f64>().unwrap()).round() as usize,
                None => clip.len(),
            };
            assert_eq!(v.samples.len(), expected, "{}", v.name);
            assert!(v.samples.iter().all(|s| s.is_finite()), "{}", v.name);
        }
        assert_eq!(
            views(&clip, Augmentations::Study, 3).unwrap(),
            study,
            "same seed, same views"
        );
        let other = views(&clip, Augmentations::Study, 4).unwrap();
        assert_eq!(other[0], study[0], "pitch shifts draw nothing");
        assert_ne!(other[12], study[12], "another seed, other noise");
        assert_eq!(
            study[21].samples, study[22].samples,
            "study: tm0 and fm0 are one signal"
        );
        assert_ne!(
            study[21].samples, study[23].samples,
            "study: masks accumulate"
        );
        let named = views(&clip, Augmentations::AsNamed, 3).unwrap();
        assert_ne!(
            named[21].samples, named[22].samples,
            "as named: tm0 and fm0 differ"
        );
        assert_eq!(named[..12], study[..12]);
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        let err = views(&[], Augmentations::Study, 0).unwrap_err().to_string();
        assert!(err.contains("empty"), "{err}");
        let err = time_stretch(&[0.0; 100], 0.0).unwrap_err().to_string();
        assert!(err.contains("positive") && err.contains('0'), "{err}");
    }
}
