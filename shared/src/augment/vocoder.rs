//! Phase-vocoder time stretching and pitch shifting as librosa 0.11 computes them
//! (`librosa.effects.time_stretch`, `librosa.effects.pitch_shift`, `librosa.phase_vocoder`):
//! an STFT with librosa's defaults (n_fft 2048, hop 512, periodic Hann, zero padding),
//! the vocoder on the complex64 spectrogram, and the inverse STFT cut to `round(len / rate)`
//! samples. librosa keeps the spectrogram and the running phase in single precision, and the
//! running phase reaches hundreds of thousands of radians at the top bins, where one f32 step
//! is a few hundredths of a radian; so do we, in the same order of operations, which is what
//! makes the result agree with librosa's to 1e-4 rather than drift away from it.

use ndarray::Array2;

use super::AugmentError;
use crate::audio::resample_by_ratio;
use crate::stft::{Complex32, Complex64, Stft};

/// librosa's `time_stretch` transform: n_fft 2048.
const N_FFT: usize = 2048;
/// librosa's default hop: n_fft / 4.
const HOP: usize = N_FFT / 4;

/// `x` played `rate` times as fast (rate > 1 shortens it) at the same pitch:
/// `round(len / rate)` samples (ties to even, as Python's `round`).
pub fn time_stretch(x: &[f32], rate: f64) -> Result<Vec<f32>, AugmentError> {
    Analysed::new(x)?.stretch(rate)
}

/// `x` moved by `n_steps` steps of `1 / bins_per_octave` octave at the same length: stretched
/// in time by `2^(−n_steps / bins_per_octave)`, then resampled by that ratio
/// ([`resample_by_ratio`], where librosa uses soxr's HQ resampler), then cut or zero-padded to
/// `x.len()`.
pub fn pitch_shift(
    x: &[f32],
    n_steps: f64,
    bins_per_octave: f64,
) -> Result<Vec<f32>, AugmentError> {
    Analysed::new(x)?.pitch_shift(n_steps, bins_per_octave)
}

/// A clip's spectrogram as the phase vocoder reads it — the magnitude and phase of each
/// complex64 value, as librosa computes them — taken once for all of the clip's stretches
/// and pitch shifts.
pub(crate) struct Analysed {
    stft: Stft,
    len: usize,
    /// `[frames, bins]` magnitudes (`hypotf`).
    magnitude: Array2<f32>,
    /// `[frames, bins]` phases (`atan2f`).
    phase: Array2<f32>,
}

impl Analysed {
    pub(crate) fn new(x: &[f32]) -> Result<Analysed, AugmentError> {
        let stft = Stft::hann(N_FFT, HOP);
        let spec = stft.forward(x)?.mapv(single);
        Ok(Analysed {
            stft,
            len: x.len(),
            magnitude: spec.mapv(|c| c.norm()),
            phase: spec.mapv(|c| c.arg()),
        })
    }

    /// [`time_stretch`] of the clip.
    pub(crate) fn stretch(&self, rate: f64) -> Result<Vec<f32>, AugmentError> {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(AugmentError::Rate(rate));
        }
        let stretched = phase_vocoder(&self.magnitude, &self.phase, rate, HOP)
            .mapv(|c| Complex64::new(c.re.into(), c.im.into()));
        let len = (self.len as f64 / rate).round_ties_even() as usize;
        Ok(self
            .stft
            .inverse(&stretched, Some(len))?
            .into_iter()
            .map(|v| v as f32)
            .collect())
    }

    /// [`pitch_shift`] of the clip.
    pub(crate) fn pitch_shift(
        &self,
        n_steps: f64,
        bins_per_octave: f64,
    ) -> Result<Vec<f32>, AugmentError> {
        let rate = 2f64.powf(-n_steps / bins_per_octave);
        let mut y = resample_by_ratio(&self.stretch(rate)?, rate)?;
        y.resize(self.len, 0.0);
        Ok(y)
    }
}

fn single(c: Complex64) -> Complex32 {
    Complex32::new(c.re as f32, c.im as f32)
}

/// librosa's `phase_vocoder` on a `[frames, bins]` spectrogram taken with `hop`: output
/// frame `t` reads input position `t · rate`, takes the magnitude linearly interpolated
/// between the two neighbouring frames and advances each bin's phase by its expected advance
/// plus the measured deviation wrapped to (−π, π]. Beyond the last frame, frames are zero.
/// The spectrogram comes as its magnitudes and phases.
fn phase_vocoder(
    magnitude: &Array2<f32>,
    phase_in: &Array2<f32>,
    rate: f64,
    hop: usize,
) -> Array2<Complex32> {
    let (frames, bins) = magnitude.dim();
    let out_frames = (frames as f64 / rate).ceil() as usize;
    let mut out = Array2::<Complex32>::zeros((out_frames, bins));
    if frames == 0 || bins == 0 {
        return out;
    }
    // hop · np.fft.rfftfreq(n_fft, 1 / 2π), operation for operation.
    let n_fft = 2 * (bins - 1);
    let per_bin = 1.0 / (n_fft as f64 * (1.0 / std::f64::consts::TAU));
    let advance: Vec<f64> = (0..bins)
        .map(|k| hop as f64 * (k as f64 * per_bin))
        .collect();
    // (magnitude, phase) of frame t, bin k; zero beyond the last frame.
    let at = |t: usize, k: usize| {
        if t < frames {
            (magnitude[[t, k]], phase_in[[t, k]])
        } else {
            (0.0, 0.0)
        }
    };
    let mut phase: Vec<f32> = phase_in.row(0).to_vec();
    for (t, mut row) in out.rows_mut().into_iter().enumerate() {
        let position = t as f64 * rate;
        let i = position as usize;
        let alpha = position % 1.0;
        for (k, o) in row.iter_mut().enumerate() {
            let ((m0, p0), (m1, p1)) = (at(i, k), at(i + 1, k));
            let magnitude = (1.0 - alpha) * f64::from(m0) + alpha * f64::from(m1);
            let (sin, cos) = phase[k].sin_cos();
            *o = Complex32::new(
                (f64::from(cos) * magnitude) as f32,
                (f64::from(sin) * magnitude) as f32,
            );
            let measured = f64::from(p1 - p0) - advance[k];
            let wrapped = measured
                - std::f64::consts::TAU * (measured / std::f64::consts::TAU).round_ties_even();
            phase[k] = (f64::from(phase[k]) + (advance[k] + wrapped)) as f32;
        }
    }
    out
}
