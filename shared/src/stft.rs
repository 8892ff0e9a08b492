//! The short-time Fourier transform and its inverse, centred and one-sided, not normalised;
//! the inverse by overlap-add with window-square normalisation. Two conventions:
//!
//! - [`Stft::new`]: as the separation family's `torch.stft` / `torch.istft` — a periodic
//!   Hamming window of `n_fft` samples (0.54 − 0.46·cos(2πn/n_fft)) and reflect padding of
//!   `n_fft/2`; [`Stft::separation`] is n_fft 400, hop 200 (201 bins).
//!   `tests/fixtures/gen/stft_fixtures.py` makes the parity fixtures with torch.
//! - [`Stft::hann`]: as librosa's `stft` / `istft` defaults — a periodic Hann window and zero
//!   padding of `n_fft/2` (the contrastive family's augmentations; parity in
//!   [`crate::augment`]'s tests against librosa).
//!
//! Computed in f64 on the CPU.

use std::sync::Arc;

use ndarray::Array2;
pub use realfft::num_complex::{Complex32, Complex64};
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

/// Why a transform cannot be taken.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StftError {
    /// The signal is too short for reflect padding (as torch, which refuses it too).
    #[error(
        "a signal of {len} samples is too short for a centred STFT with n_fft {n_fft}: reflect padding needs more than {pad} samples"
    )]
    TooShort {
        /// Samples given.
        len: usize,
        /// The transform's size.
        n_fft: usize,
        /// The padding on each side.
        pad: usize,
    },
    /// There is no sample to transform.
    #[error("an STFT needs at least one sample; the signal is empty")]
    Empty,
    /// A spectrogram of the wrong width was given to the inverse.
    #[error("a spectrogram of {got} bins was given to an inverse STFT of {expected} bins")]
    Bins {
        /// Bins given.
        got: usize,
        /// Bins of this transform (`n_fft/2 + 1`).
        expected: usize,
    },
    /// The inverse has no frame to overlap-add.
    #[error("an inverse STFT needs at least one frame")]
    NoFrames,
}

/// A planned STFT of one size and hop.
#[derive(Clone)]
pub struct Stft {
    n_fft: usize,
    hop: usize,
    window: Vec<f64>,
    padding: Padding,
    forward: Arc<dyn RealToComplex<f64>>,
    inverse: Arc<dyn ComplexToReal<f64>>,
}

impl std::fmt::Debug for Stft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Stft {{ n_fft: {}, hop: {} }}", self.n_fft, self.hop)
    }
}

/// How a centred transform extends the signal by `n_fft/2` samples on each side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Padding {
    /// Mirror images without repeating the edge sample (torch's `pad_mode="reflect"`).
    Reflect,
    /// Zeros (librosa's default `pad_mode="constant"`).
    Zero,
}

impl Stft {
    /// An STFT of `n_fft` samples (even, ≥ 2) per frame, `hop` (≥ 1) apart, with a periodic
    /// Hamming window as long as the frame and reflect padding, as torch.
    pub fn new(n_fft: usize, hop: usize) -> Stft {
        Stft::planned(n_fft, hop, (0.54, 0.46), Padding::Reflect)
    }

    /// An STFT with librosa's defaults: a periodic Hann window of `n_fft` samples and zero
    /// padding.
    pub fn hann(n_fft: usize, hop: usize) -> Stft {
        Stft::planned(n_fft, hop, (0.5, 0.5), Padding::Zero)
    }

    /// A periodic cosine window `a − b·cos(2πn/n_fft)`.
    fn planned(n_fft: usize, hop: usize, (a, b): (f64, f64), padding: Padding) -> Stft {
        assert!(
            n_fft >= 2 && n_fft.is_multiple_of(2) && hop >= 1,
            "n_fft must be even and at least 2, hop at least 1"
        );
        let mut planner = RealFftPlanner::<f64>::new();
        let window = (0..n_fft)
            .map(|n| a - b * (2.0 * std::f64::consts::PI * n as f64 / n_fft as f64).cos())
            .collect();
        Stft {
            n_fft,
            hop,
            window,
            padding,
            forward: planner.plan_fft_forward(n_fft),
            inverse: planner.plan_fft_inverse(n_fft),
        }
    }

    /// Samples between frames.
    pub fn hop(&self) -> usize {
        self.hop
    }

    /// Samples per frame.
    pub fn n_fft(&self) -> usize {
        self.n_fft
    }

    /// The separation family's transform: n_fft 400, hop 200 (201 bins).
    pub fn separation() -> Stft {
        Stft::new(400, 200)
    }

    /// Frequency bins per frame: `n_fft/2 + 1`.
    pub fn bins(&self) -> usize {
        self.n_fft / 2 + 1
    }

    /// Frames of a signal of `len` samples: `1 + len / hop`.
    pub fn frames(&self, len: usize) -> usize {
        1 + len / self.hop
    }

    /// The spectrogram of `signal`, `[frames, bins]`.
    pub fn forward(&self, signal: &[f32]) -> Result<Array2<Complex64>, StftError> {
        let pad = self.n_fft / 2;
        let len = signal.len();
        if len == 0 {
            return Err(StftError::Empty);
        }
        if self.padding == Padding::Reflect && len <= pad {
            return Err(StftError::TooShort {
                len,
                n_fft: self.n_fft,
                pad,
            });
        }
        let at = |i: isize| -> f64 {
            let n = len as isize;
            let j = match self.padding {
                _ if (0..n).contains(&i) => i,
                Padding::Zero => return 0.0,
                Padding::Reflect if i < 0 => -i,
                Padding::Reflect => 2 * (n - 1) - i,
            };
            f64::from(signal[j as usize])
        };
        let frames = self.frames(len);
        let mut out = Array2::<Complex64>::zeros((frames, self.bins()));
        let mut frame = self.forward.make_input_vec();
        let mut spectrum = self.forward.make_output_vec();
        let mut scratch = self.forward.make_scratch_vec();
        for (f, mut row) in out.rows_mut().into_iter().enumerate() {
            let start = (f * self.hop) as isize - pad as isize;
            for (k, v) in frame.iter_mut().enumerate() {
                *v = at(start + k as isize) * self.window[k];
            }
            self.forward
                .process_with_scratch(&mut frame, &mut spectrum, &mut scratch)
                .expect("buffers are planned for this size");
            row.iter_mut().zip(&spectrum).for_each(|(o, s)| *o = *s);
        }
        Ok(out)
    }

    /// The signal of a spectrogram `[frames, bins]`: `length` samples (absent: `hop ·
    /// (frames − 1)`; samples beyond what the frames reach are zero), as `torch.istft`.
    /// The imaginary parts of the DC and Nyquist bins are ignored, as an inverse real FFT does.
    pub fn inverse(
        &self,
        spec: &Array2<Complex64>,
        length: Option<usize>,
    ) -> Result<Vec<f64>, StftError> {
        let (frames, bins) = spec.dim();
        if bins != self.bins() {
            return Err(StftError::Bins {
                got: bins,
                expected: self.bins(),
            });
        }
        self.inverse_from(frames, length, |f, spectrum| {
            spectrum
                .iter_mut()
                .zip(spec.row(f))
                .for_each(|(s, v)| *s = *v)
        })
    }

    /// [`Stft::inverse`] of `frames` frames that `fill(f, spectrum)` writes one at a time, in
    /// order (`spectrum` has [`Stft::bins`] values), so that no whole spectrogram is needed.
    pub fn inverse_from(
        &self,
        frames: usize,
        length: Option<usize>,
        mut fill: impl FnMut(usize, &mut [Complex64]),
    ) -> Result<Vec<f64>, StftError> {
        if frames == 0 {
            return Err(StftError::NoFrames);
        }
        let bins = self.bins();
        let total = self.n_fft + self.hop * (frames - 1);
        let (mut sum, mut envelope) = (vec![0.0; total], vec![0.0; total]);
        let mut spectrum = self.inverse.make_input_vec();
        let mut frame = self.inverse.make_output_vec();
        let mut scratch = self.inverse.make_scratch_vec();
        let scale = 1.0 / self.n_fft as f64;
        for f in 0..frames {
            fill(f, &mut spectrum);
            spectrum[0].im = 0.0;
            spectrum[bins - 1].im = 0.0;
            self.inverse
                .process_with_scratch(&mut spectrum, &mut frame, &mut scratch)
                .expect("buffers are planned for this size");
            let span = f * self.hop..f * self.hop + self.n_fft;
            for ((s, e), (v, w)) in sum[span.clone()]
                .iter_mut()
                .zip(&mut envelope[span])
                .zip(frame.iter().zip(&self.window))
            {
                *s += v * scale * w;
                *e += w * w;
            }
        }
        let start = self.n_fft / 2;
        let length = length.unwrap_or(self.hop * (frames - 1));
        Ok((start..start + length)
            .map(|i| match (sum.get(i), envelope.get(i)) {
                (Some(s), Some(e)) if *e > 1e-11 => s / e,
                _ => 0.0,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn fixture() -> Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/stft/stft.json");
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("JSON")
    }

    fn vector(v: &Value) -> Vec<f64> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|x| x.as_f64().expect("number"))
            .collect()
    }

    fn complex(re: &Value, im: &Value) -> Array2<Complex64> {
        let (re, im): (Vec<Vec<f64>>, Vec<Vec<f64>>) = (
            re.as_array().unwrap().iter().map(vector).collect(),
            im.as_array().unwrap().iter().map(vector).collect(),
        );
        Array2::from_shape_fn((re.len(), re[0].len()), |(f, b)| {
            Complex64::new(re[f][b], im[f][b])
        })
    }

    fn max_diff(a: &[f64], b: &[f64]) -> f64 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    }

    #[test]
    fn the_stft_and_its_inverse_match_torch() {
        let fx = fixture();
        let stft = Stft::separation();
        let signal: Vec<f32> = vector(&fx["signal"]).iter().map(|&v| v as f32).collect();
        let expected = complex(&fx["stft_re"], &fx["stft_im"]);
        let got = stft.forward(&signal).unwrap();
        assert_eq!(got.dim(), (17, 201));
        let worst = got
            .iter()
            .zip(expected.iter())
            .map(|(a, b)| (a - b).norm())
            .fold(0.0, f64::max);
        assert!(worst < 1e-5, "stft differs from torch by {worst}");

        let back = stft.inverse(&expected, Some(signal.len())).unwrap();
        let diff = max_diff(&back, &vector(&fx["roundtrip"]));
        assert!(diff < 1e-5, "roundtrip differs from torch by {diff}");

        let random = complex(&fx["random_re"], &fx["random_im"]);
        let diff = max_diff(
            &stft.inverse(&random, None).unwrap(),
            &vector(&fx["inverse"]),
        );
        assert!(diff < 1e-5, "istft differs from torch by {diff}");
        let len = fx["inverse_len"].as_u64().unwrap() as usize;
        let padded = stft.inverse(&random, Some(len)).unwrap();
        let diff = max_diff(&padded, &vector(&fx["inverse_padded"]));
        assert!(
            diff < 1e-5,
            "istft with a length differs from torch by {diff}"
        );
        assert_eq!(padded[len - 1], 0.0, "beyond the frames: zeros");
    }

    #[test]
    fn bad_input_is_an_error_that_names_the_sizes() {
        let stft = Stft::separation();
        let err = stft.forward(&[0.0; 200]).unwrap_err().to_string();
        assert!(
            err.contains("200 samples") && err.contains("n_fft 400"),
            "{err}"
        );
        let err = stft
            .inverse(&Array2::zeros((3, 200)), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("200 bins") && err.contains("201"), "{err}");
        assert_eq!(
            stft.inverse(&Array2::zeros((0, 201)), None),
            Err(StftError::NoFrames)
        );
    }
}
