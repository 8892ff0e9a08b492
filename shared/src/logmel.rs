//! Log-mel spectrograms exactly as the reference pipeline computes them with librosa 0.11.
//!
//! n_fft 1024, hop 512, periodic Hann window, centred frames with zero padding, power 2,
//! 128 Slaney-scale mel bands (fmin 0, fmax sr/2) with Slaney area normalisation, then
//! `10·log10(max(mel, f64::EPSILON))` as float32. The window and FFT run in f64 (as numpy's
//! `rfft` does for librosa), mel sums in f64 and the result is rounded to f32, which keeps
//! every bin within 0.01 dB of librosa (see the parity tests against committed fixtures).
//!
//! Also: the AE input ([`stack_frames`]: 5 consecutive frames → 640-dim rows), fixed-length
//! crops ([`fixed_length`]) and [`logmel_files`], which runs over many files in parallel.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ndarray::{Array2, ArrayView2, s};
use rayon::prelude::*;
use realfft::{RealFftPlanner, RealToComplex};
use rustfft::num_complex::Complex;

/// Floor of the power before the logarithm: `sys.float_info.epsilon`, as in the reference.
pub const POWER_FLOOR: f64 = f64::EPSILON;

/// Errors of the log-mel front end.
#[derive(Debug, thiserror::Error)]
pub enum LogMelError {
    /// The configuration cannot work (e.g. hop 0, fmax above Nyquist).
    #[error("invalid log-mel configuration: {0}")]
    Config(String),
    /// The signal has no samples.
    #[error("the signal is empty: a log-mel spectrogram needs at least one sample")]
    EmptySignal,
    /// Decoding the file failed.
    #[error(transparent)]
    Audio(#[from] crate::audio::AudioError),
    /// A crop or stack was asked for more frames than exist.
    #[error("{0}")]
    Shape(String),
}

/// Result of this module.
pub type Result<T> = std::result::Result<T, LogMelError>;

/// Parameters of the log-mel front end; the default is the reference pipeline's.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LogMelConfig {
    /// FFT size and window length in samples.
    pub n_fft: usize,
    /// Hop between frames in samples.
    pub hop_length: usize,
    /// Number of mel bands.
    pub n_mels: usize,
    /// Lowest band edge in Hz.
    pub fmin: f64,
    /// Highest band edge in Hz (`None`: sr/2).
    pub fmax: Option<f64>,
}

impl Default for LogMelConfig {
    fn default() -> Self {
        Self {
            n_fft: 1024,
            hop_length: 512,
            n_mels: 128,
            fmin: 0.0,
            fmax: None,
        }
    }
}

impl LogMelConfig {
    /// Number of centred frames for a signal of `len` samples (`1 + len / hop`).
    pub fn n_frames(&self, len: usize) -> usize {
        1 + len / self.hop_length
    }
}

/// Hz → mel on the Slaney scale (linear below 1 kHz, logarithmic above), as `librosa.hz_to_mel(htk=False)`.
pub fn hz_to_mel(hz: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = 6.4f64.ln() / 27.0;
    if hz >= min_log_hz {
        min_log_mel + (hz / min_log_hz).ln() / logstep
    } else {
        hz / f_sp
    }
}

/// Mel → Hz on the Slaney scale, as `librosa.mel_to_hz(htk=False)`.
pub fn mel_to_hz(mel: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = 6.4f64.ln() / 27.0;
    if mel >= min_log_mel {
        min_log_hz * (logstep * (mel - min_log_mel)).exp()
    } else {
        f_sp * mel
    }
}

/// A Slaney mel filterbank stored sparsely: each band keeps its first bin and its nonzero weights.
#[derive(Debug, Clone, PartialEq)]
pub struct MelFilterbank {
    /// Per band: (first FFT bin, weights from that bin on).
    bands: Vec<(usize, Vec<f32>)>,
    /// Number of FFT bins (n_fft/2 + 1).
    n_bins: usize,
}

impl MelFilterbank {
    /// Builds the filterbank of `librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax, htk=False, norm="slaney")`.
    pub fn slaney(sr: u32, n_fft: usize, n_mels: usize, fmin: f64, fmax: f64) -> Self {
        let n_bins = n_fft / 2 + 1;
        let fftfreqs: Vec<f64> = (0..n_bins)
            .map(|k| k as f64 * f64::from(sr) / n_fft as f64)
            .collect();
        let (mmin, mmax) = (hz_to_mel(fmin), hz_to_mel(fmax));
        let mel_f: Vec<f64> = (0..n_mels + 2)
            .map(|i| mel_to_hz(mmin + (mmax - mmin) * i as f64 / (n_mels + 1) as f64))
            .collect();
        let bands = (0..n_mels)
            .map(|i| {
                let (lo, c, hi) = (mel_f[i], mel_f[i + 1], mel_f[i + 2]);
                let enorm = 2.0 / (hi - lo);
                let w: Vec<f64> = fftfreqs
                    .iter()
                    .map(|&f| {
                        let lower = (f - lo) / (c - lo);
                        let upper = (hi - f) / (hi - c);
                        lower.min(upper).max(0.0) * enorm
                    })
                    .collect();
                let first = w.iter().position(|&v| v > 0.0).unwrap_or(0);
                let last = w.iter().rposition(|&v| v > 0.0).map_or(first, |l| l + 1);
                (first, w[first..last].iter().map(|&v| v as f32).collect())
            })
            .collect();
        Self { bands, n_bins }
    }

    /// The filterbank as a dense [n_mels, n_fft/2+1] matrix (as librosa returns it).
    pub fn dense(&self) -> Array2<f32> {
        let mut m = Array2::zeros((self.bands.len(), self.n_bins));
        for (i, (first, w)) in self.bands.iter().enumerate() {
            m.slice_mut(s![i, *first..*first + w.len()])
                .assign(&ndarray::ArrayView1::from(w.as_slice()));
        }
        m
    }

    /// Number of mel bands.
    pub fn n_mels(&self) -> usize {
        self.bands.len()
    }
}

/// A planned log-mel extractor for one sample rate; reuse it across files of that rate.
pub struct LogMel {
    cfg: LogMelConfig,
    sample_rate: u32,
    window: Vec<f64>,
    fft: Arc<dyn RealToComplex<f64>>,
    mel: MelFilterbank,
    frame: Vec<f64>,
    spectrum: Vec<Complex<f64>>,
    scratch: Vec<Complex<f64>>,
    power: Vec<f64>,
}

impl std::fmt::Debug for LogMel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogMel")
            .field("cfg", &self.cfg)
            .field("sample_rate", &self.sample_rate)
            .finish_non_exhaustive()
    }
}

impl LogMel {
    /// Plans the FFT, window and filterbank for `cfg` at `sample_rate`.
    pub fn new(cfg: LogMelConfig, sample_rate: u32) -> Result<Self> {
        let bad = |m: String| Err(LogMelError::Config(m));
        if cfg.n_fft < 2 || !cfg.n_fft.is_multiple_of(2) {
            return bad(format!(
                "n_fft must be even and at least 2, got {}",
                cfg.n_fft
            ));
        }
        if cfg.hop_length == 0 {
            return bad("hop_length must be positive".into());
        }
        if cfg.n_mels == 0 {
            return bad("n_mels must be positive".into());
        }
        if sample_rate == 0 {
            return bad("sample rate must be positive".into());
        }
        let nyquist = f64::from(sample_rate) / 2.0;
        let fmax = cfg.fmax.unwrap_or(nyquist);
        if !(cfg.fmin >= 0.0 && cfg.fmin < fmax && fmax <= nyquist) {
            return bad(format!(
                "need 0 <= fmin < fmax <= sr/2, got fmin {} fmax {fmax} at {sample_rate} Hz",
                cfg.fmin
            ));
        }
        let n = cfg.n_fft;
        // Periodic Hann (scipy get_window('hann', n, fftbins=True)).
        let window = (0..n)
            .map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos())
            .collect();
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(n);
        let spectrum = fft.make_output_vec();
        let scratch = fft.make_scratch_vec();
        Ok(Self {
            mel: MelFilterbank::slaney(sample_rate, n, cfg.n_mels, cfg.fmin, fmax),
            cfg,
            sample_rate,
            window,
            fft,
            frame: vec![0.0; n],
            spectrum,
            scratch,
            power: vec![0.0; n / 2 + 1],
        })
    }

    /// The configuration this extractor was planned for.
    pub fn config(&self) -> &LogMelConfig {
        &self.cfg
    }

    /// The sample rate this extractor was planned for.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Computes the [n_mels, 1 + len/hop] log-mel spectrogram (dB) of mono `samples`.
    pub fn compute(&mut self, samples: &[f32]) -> Result<Array2<f32>> {
        if samples.is_empty() {
            return Err(LogMelError::EmptySignal);
        }
        let (n, hop, n_mels) = (self.cfg.n_fft, self.cfg.hop_length, self.cfg.n_mels);
        let frames = self.cfg.n_frames(samples.len());
        let half = n / 2;
        // Row-major [n_mels, frames] filled column by column.
        let mut out = vec![0.0f32; n_mels * frames];
        let floor = POWER_FLOOR as f32;
        for t in 0..frames {
            // Frame t covers padded[t*hop .. t*hop+n], i.e. samples[t*hop - half ..].
            let start = (t * hop) as isize - half as isize;
            if start >= 0 && start as usize + n <= samples.len() {
                let src = &samples[start as usize..start as usize + n];
                for ((f, &x), &w) in self.frame.iter_mut().zip(src).zip(&self.window) {
                    *f = f64::from(x) * w;
                }
            } else {
                for (i, (f, &w)) in self.frame.iter_mut().zip(&self.window).enumerate() {
                    let idx = start + i as isize;
                    *f = if idx >= 0 && (idx as usize) < samples.len() {
                        f64::from(samples[idx as usize]) * w
                    } else {
                        0.0
                    };
                }
            }
            self.fft
                .process_with_scratch(&mut self.frame, &mut self.spectrum, &mut self.scratch)
                .map_err(|e| LogMelError::Config(format!("FFT failed: {e}")))?;
            for (p, c) in self.power.iter_mut().zip(&self.spectrum) {
                *p = c.norm_sqr();
            }
            for (m, (first, w)) in self.mel.bands.iter().enumerate() {
                let acc: f64 = self.power[*first..*first + w.len()]
                    .iter()
                    .zip(w)
                    .map(|(&p, &w)| p * f64::from(w))
                    .sum();
                out[m * frames + t] = 10.0 * (acc as f32).max(floor).log10();
            }
        }
        Ok(Array2::from_shape_vec((n_mels, frames), out)
            .expect("invariant: buffer holds n_mels * frames values"))
    }
}

/// Decodes the WAV at `path` and computes its log-mel spectrogram at the file's native rate.
pub fn logmel_file(path: &Path, cfg: &LogMelConfig) -> Result<Array2<f32>> {
    let audio = crate::audio::decode_wav_file(path)?;
    LogMel::new(*cfg, audio.sample_rate)?.compute(&audio.samples)
}

/// Computes log-mels of many WAV files in parallel (rayon), calling `on_done` after each file.
///
/// Extractors are planned once per worker thread and sample rate. The results keep the
/// order of `paths`; a failing file gives its own error without stopping the others.
pub fn logmel_files(
    paths: &[PathBuf],
    cfg: &LogMelConfig,
    on_done: &(dyn Fn() + Sync),
) -> Vec<Result<Array2<f32>>> {
    each_logmel_file(paths, cfg, |_, r| {
        on_done();
        r
    })
}

/// Log-mels of many files in parallel (rayon), each handed to `each(index, result)` on the
/// thread that computed it as soon as it is ready (to write it out, say, without keeping
/// it); returns what `each` returned, in the order of `paths`. One [`LogMel`] (filters,
/// window, FFT plan) per thread and sample rate.
pub fn each_logmel_file<T: Send>(
    paths: &[PathBuf],
    cfg: &LogMelConfig,
    each: impl Fn(usize, Result<Array2<f32>>) -> T + Sync + Send,
) -> Vec<T> {
    paths
        .par_iter()
        .enumerate()
        .map_init(
            || None::<LogMel>,
            |slot, (i, path)| {
                let r = (|| {
                    let audio = crate::audio::decode_wav_file(path)?;
                    let lm = match slot {
                        Some(lm) if lm.sample_rate == audio.sample_rate => lm,
                        _ => slot.insert(LogMel::new(*cfg, audio.sample_rate)?),
                    };
                    lm.compute(&audio.samples)
                })();
                each(i, r)
            },
        )
        .collect()
}

/// Stacks `n` consecutive frames of a [n_mels, frames] log-mel into rows of n·n_mels values (the AE input).
///
/// Row t is `[frame t, frame t+1, …, frame t+n-1]`, as the DCASE baseline builds its
/// 640-dim vectors for n = 5; a log-mel with fewer than `n` frames gives zero rows.
pub fn stack_frames(logmel: ArrayView2<'_, f32>, n: usize) -> Array2<f32> {
    let (n_mels, frames) = logmel.dim();
    let rows = (frames + 1).saturating_sub(n);
    Array2::from_shape_fn((rows, n * n_mels), |(t, j)| {
        logmel[[j % n_mels, t + j / n_mels]]
    })
}

/// A fixed-length crop of `frames` frames starting at `start`; a shorter log-mel is tiled (repeated) to length.
pub fn fixed_length(
    logmel: ArrayView2<'_, f32>,
    start: usize,
    frames: usize,
) -> Result<Array2<f32>> {
    let (n_mels, have) = logmel.dim();
    if have == 0 {
        return Err(LogMelError::Shape(
            "cannot crop a log-mel with no frames".into(),
        ));
    }
    if have >= frames {
        if start + frames > have {
            return Err(LogMelError::Shape(format!(
                "crop [{start}, {}) exceeds {have} frames",
                start + frames
            )));
        }
        return Ok(logmel.slice(s![.., start..start + frames]).to_owned());
    }
    Ok(Array2::from_shape_fn((n_mels, frames), |(m, t)| {
        logmel[[m, (start + t) % have]]
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/audio")
    }

    #[test]
    fn every_librosa_fixture_matches_within_a_hundredth_of_a_decibel() {
        let mut names: Vec<PathBuf> = std::fs::read_dir(fixtures())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "wav"))
            .collect();
        names.sort();
        assert!(names.len() >= 15, "fixtures missing: {names:?}");
        for wav in names {
            let want = crate::npy::read_f32(&wav.with_extension("npy")).unwrap();
            let got = logmel_file(&wav, &LogMelConfig::default()).unwrap();
            assert_eq!(got.dim(), want.dim(), "{}", wav.display());
            let mut worst = 0.0f32;
            for (g, w) in got.iter().zip(want.iter()) {
                if *w > -100.0 {
                    worst = worst.max((g - w).abs());
                }
            }
            assert!(
                worst < 0.01,
                "{}: worst difference {worst} dB",
                wav.display()
            );
        }
    }

    #[test]
    fn silence_gives_the_epsilon_floor_in_every_bin() {
        let got = logmel_file(
            &fixtures().join("pcm16_16k_silence.wav"),
            &LogMelConfig::default(),
        )
        .unwrap();
        let floor = 10.0 * (f64::EPSILON as f32).log10();
        assert!(got.iter().all(|&v| v == floor), "{floor}");
        assert!((floor + 156.54).abs() < 0.01);
    }

    #[test]
    fn filterbank_bands_have_unit_area_in_hz_per_slaney() {
        // Slaney normalisation: each triangle's area (in Hz) is 1 when sampled finely.
        let fb = MelFilterbank::slaney(16000, 1024, 128, 0.0, 8000.0).dense();
        assert_eq!(fb.dim(), (128, 513));
        let df = 16000.0 / 1024.0;
        // Bands above about 1.5 kHz span enough FFT bins for the sampled area to be close to 1.
        for m in 60..128 {
            let area: f32 = fb.row(m).sum() * df;
            assert!((area - 1.0).abs() < 0.05, "band {m} area {area}");
        }
        // Every band has some weight, and the lowest band starts at bin 1 (fmin = 0).
        assert!(fb.rows().into_iter().all(|r| r.sum() > 0.0));
        assert_eq!(fb[[0, 0]], 0.0);
        assert!(fb[[0, 1]] > 0.0);
    }

    #[test]
    fn the_slaney_scale_round_trips_and_is_linear_below_1khz() {
        assert!((hz_to_mel(1000.0) - 15.0).abs() < 1e-12);
        assert!((hz_to_mel(500.0) - 7.5).abs() < 1e-12);
        for hz in [0.0, 10.0, 999.0, 1000.0, 4321.0, 24000.0] {
            assert!((mel_to_hz(hz_to_mel(hz)) - hz).abs() < 1e-6);
        }
    }

    #[test]
    fn invalid_configurations_are_rejected_with_a_reason() {
        let c = LogMelConfig {
            hop_length: 0,
            ..Default::default()
        };
        assert!(matches!(LogMel::new(c, 16000), Err(LogMelError::Config(_))));
        let c = LogMelConfig {
            fmax: Some(9000.0),
            ..Default::default()
        };
        assert!(
            LogMel::new(c, 16000)
                .unwrap_err()
                .to_string()
                .contains("fmax")
        );
        let mut lm = LogMel::new(LogMelConfig::default(), 16000).unwrap();
        assert!(matches!(lm.compute(&[]), Err(LogMelError::EmptySignal)));
    }

    #[test]
    fn five_stacked_frames_make_640_dim_rows_in_baseline_order() {
        let lm = Array2::from_shape_fn((128, 10), |(m, t)| (m * 100 + t) as f32);
        let v = stack_frames(lm.view(), 5);
        assert_eq!(v.dim(), (6, 640));
        assert_eq!(v[[2, 0]], lm[[0, 2]]);
        assert_eq!(v[[2, 128 + 7]], lm[[7, 3]]);
        assert_eq!(v[[5, 639]], lm[[127, 9]]);
        assert_eq!(stack_frames(lm.slice(s![.., ..4]), 5).dim(), (0, 640));
    }

    #[test]
    fn a_short_log_mel_is_tiled_to_the_crop_length() {
        let lm = Array2::from_shape_fn((2, 3), |(m, t)| (m * 10 + t) as f32);
        let c = fixed_length(lm.view(), 1, 5).unwrap();
        assert_eq!(c.row(0).to_vec(), vec![1.0, 2.0, 0.0, 1.0, 2.0]);
        assert!(fixed_length(lm.view(), 0, 3).unwrap() == lm);
        assert!(fixed_length(lm.view(), 1, 3).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn frame_count_is_one_plus_length_over_hop_and_values_are_finite(
            len in 1usize..5000, hop in 1usize..700, half in 1usize..300, amp in 0.0f32..2.0
        ) {
            let cfg = LogMelConfig { n_fft: 2 * half, hop_length: hop, n_mels: 8, fmin: 0.0, fmax: None };
            let x: Vec<f32> = (0..len).map(|i| amp * ((i * 7919 % 113) as f32 / 56.0 - 1.0)).collect();
            let out = LogMel::new(cfg, 8000).unwrap().compute(&x).unwrap();
            prop_assert_eq!(out.dim(), (8, 1 + len / hop));
            prop_assert!(out.iter().all(|v| v.is_finite() && *v >= -156.6));
        }

        #[test]
        fn centred_padding_makes_the_first_frame_see_only_the_signal_start(
            len in 600usize..3000, spike in 0usize..3000
        ) {
            // An impulse affects exactly the frames whose window covers it.
            let spike = spike % len;
            let mut x = vec![0.0f32; len];
            x[spike] = 1.0;
            let cfg = LogMelConfig { n_fft: 512, hop_length: 128, n_mels: 16, fmin: 0.0, fmax: None };
            let out = LogMel::new(cfg, 16000).unwrap().compute(&x).unwrap();
            for t in 0..out.dim().1 {
                let lo = (t * 128) as isize - 256;
                // Window is zero at its first sample (periodic Hann), so exclude idx == lo.
                let covered = (spike as isize) > lo && (spike as isize) < lo + 512;
                let silent = out.column(t).iter().all(|&v| v < -150.0);
                prop_assert_eq!(silent, !covered, "frame {} spike {}", t, spike);
            }
        }

        #[test]
        fn stacking_keeps_every_value_once_per_covering_row(frames in 0usize..20, n in 1usize..7) {
            let lm = Array2::from_shape_fn((3, frames), |(m, t)| (m * 1000 + t) as f32);
            let v = stack_frames(lm.view(), n);
            prop_assert_eq!(v.dim(), ((frames + 1).saturating_sub(n), 3 * n));
            for t in 0..v.dim().0 {
                for k in 0..n {
                    for m in 0..3 {
                        prop_assert_eq!(v[[t, k * 3 + m]], lm[[m, t + k]]);
                    }
                }
            }
        }
    }
}
