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
        let mut vocoder = PhaseVocoder::new(&self.magnitude, &self.phase, rate, HOP);
        let len = (self.len as f64 / rate).round_ties_even() as usize;
        let signal = self
            .stft
            .inverse_from(vocoder.frames(), Some(len), |t, spectrum| {
                vocoder.frame(t, spectrum)
            })?;
        Ok(signal.into_iter().map(|v| v as f32).collect())
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

/// librosa's `phase_vocoder` on a `[frames, bins]` spectrogram taken with `hop`, one output
/// frame at a time (so the stretched spectrogram is never held whole): output frame `t`
/// reads input position `t · rate`, takes the magnitude linearly interpolated between the
/// two neighbouring frames and advances each bin's phase by its expected advance plus the
/// measured deviation wrapped to (−π, π]. Beyond the last frame, frames are zero. The
/// spectrogram comes as its magnitudes and phases; values are complex64 as librosa's,
/// handed on widened.
struct PhaseVocoder<'a> {
    magnitude: &'a Array2<f32>,
    phase_in: &'a Array2<f32>,
    rate: f64,
    /// hop · np.fft.rfftfreq(n_fft, 1 / 2π), operation for operation.
    advance: Vec<f64>,
    /// The running phase.
    phase: Vec<f32>,
    zeros: Vec<f32>,
}

impl<'a> PhaseVocoder<'a> {
    fn new(
        magnitude: &'a Array2<f32>,
        phase_in: &'a Array2<f32>,
        rate: f64,
        hop: usize,
    ) -> PhaseVocoder<'a> {
        let bins = magnitude.ncols();
        let n_fft = 2 * bins.saturating_sub(1);
        let per_bin = 1.0 / (n_fft as f64 * (1.0 / std::f64::consts::TAU));
        PhaseVocoder {
            magnitude,
            phase_in,
            rate,
            advance: (0..bins)
                .map(|k| hop as f64 * (k as f64 * per_bin))
                .collect(),
            phase: match phase_in.nrows() {
                0 => vec![0.0; bins],
                _ => phase_in.row(0).to_vec(),
            },
            zeros: vec![0.0; bins],
        }
    }

    /// Output frames: ⌈frames / rate⌉.
    fn frames(&self) -> usize {
        (self.magnitude.nrows() as f64 / self.rate).ceil() as usize
    }

    /// Output frame `t` into `out`; frames must come in order, from 0.
    fn frame(&mut self, t: usize, out: &mut [Complex64]) {
        let PhaseVocoder {
            magnitude,
            phase_in,
            rate,
            advance,
            phase,
            zeros,
        } = self;
        // (magnitudes, phases) of input frame t; zero beyond the last frame.
        let input = |t: usize| match t < magnitude.nrows() {
            true => (
                magnitude.row(t).to_slice().expect("standard layout"),
                phase_in.row(t).to_slice().expect("standard layout"),
            ),
            false => (&zeros[..], &zeros[..]),
        };
        let position = t as f64 * *rate;
        let i = position as usize;
        let ((m0, p0), (m1, p1)) = (input(i), input(i + 1));
        let step = Step {
            alpha: position % 1.0,
            m0,
            m1,
            p0,
            p1,
            advance,
        };
        step.run(phase, out);
    }
}

/// One output frame of the vocoder: the input frames around its position and how far
/// between them it lies.
struct Step<'a> {
    alpha: f64,
    m0: &'a [f32],
    m1: &'a [f32],
    p0: &'a [f32],
    p1: &'a [f32],
    advance: &'a [f64],
}

impl Step<'_> {
    /// Writes the frame from the running `phase` into `out` and advances the phase. With
    /// AVX2 at hand the same operations run four bins at a time (no FMA, so the same bits).
    fn run(&self, phase: &mut [f32], out: &mut [Complex64]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { self.run_avx2(phase, out) };
        }
        self.run_portable(phase, out)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn run_avx2(&self, phase: &mut [f32], out: &mut [Complex64]) {
        self.run_portable(phase, out)
    }

    #[inline(always)]
    fn run_portable(&self, phase: &mut [f32], out: &mut [Complex64]) {
        use std::f64::consts::TAU;
        let n = phase.len();
        let (m0, m1, p0, p1) = (&self.m0[..n], &self.m1[..n], &self.p0[..n], &self.p1[..n]);
        let (advance, out, alpha) = (&self.advance[..n], &mut out[..n], self.alpha);
        for k in 0..n {
            let magnitude = (1.0 - alpha) * f64::from(m0[k]) + alpha * f64::from(m1[k]);
            let (sin, cos) = sin_cos(phase[k]);
            // complex64 as librosa's, widened for the inverse transform.
            out[k] = Complex64::new(
                f64::from((f64::from(cos) * magnitude) as f32),
                f64::from((f64::from(sin) * magnitude) as f32),
            );
            let measured = f64::from(p1[k] - p0[k]) - advance[k];
            let wrapped = measured - TAU * round_ties_even(measured / TAU);
            phase[k] = (f64::from(phase[k]) + (advance[k] + wrapped)) as f32;
        }
    }
}

/// 1.5 · 2⁵²: adding it to an f64 below 2⁵¹ in magnitude rounds it to an integer (ties to
/// even, the default rounding), which then sits in the sum's low mantissa bits.
const ROUNDER: f64 = 6_755_399_441_055_744.0;

/// `x.round_ties_even()` for |x| < 2⁵¹, in plain arithmetic that vectorises (the intrinsic
/// becomes a library call on x86-64 without SSE4.1).
#[inline(always)]
fn round_ties_even(x: f64) -> f64 {
    (x + ROUNDER) - ROUNDER
}

/// π/2 with its low 24 mantissa bits cleared: n · PIO2_HI is exact for |n| < 2²⁴.
const PIO2_HI: f64 = f64::from_bits(std::f64::consts::FRAC_PI_2.to_bits() & !0xff_ffff);
/// The rest of the f64 π/2 (exact: the subtraction drops nothing).
const PIO2_LO: f64 = std::f64::consts::FRAC_PI_2 - PIO2_HI;
/// π/2 less the f64 π/2: without it the remainder would be off by n · 6e-17.
const PIO2_TAIL: f64 = 6.123_233_995_736_766e-17;

/// sin and cos of an f32 angle, rounded to f32, as `f32::sin_cos` gives them (up to the last
/// bit, at most, where that one is not correctly rounded), in plain f64 arithmetic with no
/// library call, so that a loop over it vectorises: the angle less its nearest multiple n of
/// π/2 (three-part Cody–Waite reduction, to ~1e-16 rad up to 2.6e7 rad), Taylor series
/// of sin and cos on that remainder (|r| ≤ π/4: the first omitted terms are below 1e-13),
/// then the quadrant n mod 4 swaps and signs them.
#[inline(always)]
pub(crate) fn sin_cos(x: f32) -> (f32, f32) {
    let x = f64::from(x);
    let shifted = x * std::f64::consts::FRAC_2_PI + ROUNDER;
    let quadrant = shifted.to_bits();
    let n = shifted - ROUNDER;
    let r = ((x - n * PIO2_HI) - n * PIO2_LO) - n * PIO2_TAIL;
    let r2 = r * r;
    // sin r = r − r³/3! + r⁵/5! − … ; cos r = 1 − r²/2! + r⁴/4! − … (1/k! as literals).
    let s = r + r
        * r2
        * (-1.0 / 6.0
            + r2 * (1.0 / 120.0
                + r2 * (-1.0 / 5040.0
                    + r2 * (1.0 / 362_880.0
                        + r2 * (-1.0 / 39_916_800.0 + r2 * (1.0 / 6_227_020_800.0))))));
    let c = 1.0
        + r2 * (-0.5
            + r2 * (1.0 / 24.0
                + r2 * (-1.0 / 720.0
                    + r2 * (1.0 / 40_320.0
                        + r2 * (-1.0 / 3_628_800.0
                            + r2 * (1.0 / 479_001_600.0 + r2 * (-1.0 / 87_178_291_200.0)))))));
    // x = r + nπ/2: quadrant 1 gives (cos r, −sin r), 2 gives (−sin r, −cos r), 3 (−cos r, sin r).
    let (sin, cos) = if quadrant & 1 == 0 { (s, c) } else { (c, s) };
    let sin = f64::from_bits(sin.to_bits() ^ ((quadrant & 2) << 62));
    let cos = f64::from_bits(cos.to_bits() ^ (((quadrant ^ (quadrant >> 1)) & 1) << 63));
    (sin as f32, cos as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sin_cos_matches_the_f64_functions_to_the_f32_rounding_over_the_vocoders_range() {
        // Angles the running phase takes: small, around multiples of π/4, and up to 1e6 rad.
        let mut angles: Vec<f32> = (-2000..=2000).map(|k| k as f32 * 0.001_234_5).collect();
        angles.extend((0..200_000).map(|k| (k as f32 * 5.123_7) - 3.0e5));
        angles.extend((0..64).map(|k| k as f32 * std::f32::consts::FRAC_PI_4));
        angles.extend([1.0e6, -1.0e6, 2.0e7, 0.0, -0.0, f32::MIN_POSITIVE]);
        let mut off_by_one_bit = 0;
        for &x in &angles {
            let (sin, cos) = sin_cos(x);
            let (s64, c64) = f64::from(x).sin_cos();
            for (got, exact) in [(sin, s64), (cos, c64)] {
                let nearest = exact as f32;
                let ulp = f64::from(nearest.abs().max(f32::MIN_POSITIVE)) * f64::from(f32::EPSILON);
                assert!(
                    (f64::from(got) - exact).abs() <= ulp,
                    "sin_cos({x}) = ({sin}, {cos}); f64: ({s64}, {c64})"
                );
                off_by_one_bit += usize::from(got != nearest);
            }
        }
        // Correctly rounded but where the exact value lies within ~1e-9 of a rounding tie.
        assert!(
            off_by_one_bit * 10_000 < angles.len() * 2,
            "{off_by_one_bit} of {} values not the nearest f32",
            2 * angles.len()
        );
    }

    #[test]
    fn round_ties_even_agrees_with_the_intrinsic() {
        for x in [
            0.5,
            1.5,
            2.5,
            -0.5,
            -2.5,
            3.49,
            -3.51,
            1e6 + 0.5,
            12_345.678,
            -0.0,
        ] {
            assert_eq!(round_ties_even(x), f64::round_ties_even(x), "{x}");
        }
    }
}
