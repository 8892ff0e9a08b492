//! Building blocks of the synthetic sounds: fast noise, biquad filters, resonators, harmonic oscillators.

use std::f64::consts::TAU;

/// A fast deterministic noise source (xorshift64*), seeded from the clip's RNG.
#[derive(Debug, Clone)]
pub struct Noise(u64);

impl Noise {
    /// A noise source for `seed` (any value; zero is remapped).
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    /// Next uniform value in [0, 1).
    #[inline]
    pub fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Next white sample with unit variance (sum of two uniforms: triangular, cheap and smooth enough).
    #[inline]
    pub fn white(&mut self) -> f64 {
        (self.uniform() + self.uniform() - 1.0) * 6f64.sqrt()
    }

    /// A standard normal value (Box–Muller), for parameters rather than sample streams.
    pub fn gauss(&mut self) -> f64 {
        let u = self.uniform().max(1e-300);
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (TAU * v).cos()
    }
}

/// A biquad filter (RBJ cookbook), direct form I.
#[derive(Debug, Clone, Copy)]
pub struct Biquad {
    b: [f64; 3],
    a: [f64; 2],
    x: [f64; 2],
    y: [f64; 2],
}

impl Biquad {
    fn from(b0: f64, b1: f64, b2: f64, a0: f64, a1: f64, a2: f64) -> Self {
        Self {
            b: [b0 / a0, b1 / a0, b2 / a0],
            a: [a1 / a0, a2 / a0],
            x: [0.0; 2],
            y: [0.0; 2],
        }
    }

    fn w(f: f64, sr: f64) -> (f64, f64) {
        let w = TAU * (f / sr).clamp(1e-5, 0.499);
        (w.cos(), w.sin())
    }

    /// Low-pass at `f` Hz with quality `q`.
    pub fn lowpass(f: f64, q: f64, sr: f64) -> Self {
        let (c, s) = Self::w(f, sr);
        let al = s / (2.0 * q);
        Self::from(
            (1.0 - c) / 2.0,
            1.0 - c,
            (1.0 - c) / 2.0,
            1.0 + al,
            -2.0 * c,
            1.0 - al,
        )
    }

    /// High-pass at `f` Hz with quality `q`.
    pub fn highpass(f: f64, q: f64, sr: f64) -> Self {
        let (c, s) = Self::w(f, sr);
        let al = s / (2.0 * q);
        Self::from(
            (1.0 + c) / 2.0,
            -(1.0 + c),
            (1.0 + c) / 2.0,
            1.0 + al,
            -2.0 * c,
            1.0 - al,
        )
    }

    /// Band-pass centred at `f` Hz (0 dB peak) with quality `q`.
    pub fn bandpass(f: f64, q: f64, sr: f64) -> Self {
        let (c, s) = Self::w(f, sr);
        let al = s / (2.0 * q);
        Self::from(al, 0.0, -al, 1.0 + al, -2.0 * c, 1.0 - al)
    }

    /// Filters one sample.
    #[inline]
    pub fn step(&mut self, x: f64) -> f64 {
        let y = self.b[0] * x + self.b[1] * self.x[0] + self.b[2] * self.x[1]
            - self.a[0] * self.y[0]
            - self.a[1] * self.y[1];
        self.x = [x, self.x[0]];
        self.y = [y, self.y[0]];
        y
    }

    /// Filters a whole buffer in place.
    pub fn run(&mut self, buf: &mut [f64]) {
        for v in buf {
            *v = self.step(*v);
        }
    }
}

/// A two-pole resonator: an impulse makes it ring at `f` Hz, decaying by 60 dB in `t60` seconds.
#[derive(Debug, Clone, Copy)]
pub struct Resonator {
    a1: f64,
    a2: f64,
    g: f64,
    y: [f64; 2],
}

impl Resonator {
    /// A resonator at `f` Hz with decay time `t60` s.
    pub fn new(f: f64, t60: f64, sr: f64) -> Self {
        let r = (-6.9078 / (t60.max(1e-4) * sr)).exp();
        let w = TAU * (f / sr).clamp(1e-4, 0.49);
        Self {
            a1: 2.0 * r * w.cos(),
            a2: -r * r,
            g: w.sin().max(1e-3),
            y: [0.0; 2],
        }
    }

    /// Filters one excitation sample.
    #[inline]
    pub fn step(&mut self, x: f64) -> f64 {
        let y = self.g * x + self.a1 * self.y[0] + self.a2 * self.y[1];
        self.y = [y, self.y[0]];
        y
    }
}

/// Adds `amp·sin(k·φ + phase_k)` for harmonics k = 1.. with amplitudes `amps`, φ following `freq(t)`.
///
/// `am(t)` multiplies the whole tone (amplitude modulation, e.g. imbalance).
pub fn add_harmonics(
    out: &mut [f64],
    sr: f64,
    freq: impl Fn(usize) -> f64,
    amps: &[f64],
    phases: &[f64],
    am: impl Fn(usize, f64) -> f64,
) {
    let mut phi = 0.0f64;
    let nyq = sr / 2.0;
    // sin(kφ + p) = sin(kφ)·cos p + cos(kφ)·sin p, with sin(kφ), cos(kφ) by angle addition:
    // one sin_cos per sample for all harmonics instead of one sin per harmonic.
    let rot: Vec<(f64, f64)> = phases.iter().map(|p| (p.cos(), p.sin())).collect();
    for (n, o) in out.iter_mut().enumerate() {
        let f = freq(n);
        phi += TAU * f / sr;
        if phi > TAU * 1e6 {
            phi -= TAU * 1e6;
        }
        let (s1, c1) = phi.sin_cos();
        let (mut sk, mut ck) = (s1, c1);
        let mut s = 0.0;
        for (k, (&a, &(cp, sp))) in amps.iter().zip(&rot).enumerate() {
            if (k + 1) as f64 * f >= nyq {
                break;
            }
            s += a * (sk * cp + ck * sp);
            (sk, ck) = (sk * c1 + ck * s1, ck * c1 - sk * s1);
        }
        *o += s * am(n, phi);
    }
}

/// Adds decaying rings at the given sample positions, each with its own amplitude, through `res`.
pub fn add_impacts(out: &mut [f64], hits: &[(usize, f64)], res: &[Resonator]) {
    if hits.is_empty() {
        return;
    }
    let mut rs: Vec<Resonator> = res.to_vec();
    let mut next = 0;
    let mut sorted = hits.to_vec();
    sorted.sort_by_key(|h| h.0);
    for (n, o) in out.iter_mut().enumerate() {
        let mut x = 0.0;
        while next < sorted.len() && sorted[next].0 == n {
            x += sorted[next].1;
            next += 1;
        }
        let mut y = 0.0;
        for r in rs.iter_mut() {
            y += r.step(x);
        }
        *o += y;
    }
}

/// Times (in samples) of a jittered periodic event train at `rate` Hz over `len` samples.
pub fn periodic_hits(
    len: usize,
    sr: f64,
    rate: f64,
    jitter: f64,
    start: f64,
    noise: &mut Noise,
) -> Vec<usize> {
    let mut out = Vec::new();
    if rate <= 0.0 {
        return out;
    }
    let period = sr / rate;
    let mut t = start * period;
    while (t as usize) < len {
        out.push(t as usize);
        t += period * (1.0 + jitter * noise.gauss()).max(0.2);
    }
    out
}

/// Root mean square of a buffer.
pub fn rms(x: &[f64]) -> f64 {
    (x.iter().map(|v| v * v).sum::<f64>() / x.len().max(1) as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harmonics_by_angle_addition_equal_direct_sines() {
        let sr = 16000.0;
        let (amps, phases) = ([1.0, 0.5, 0.25, 0.125], [0.3, 1.1, 2.0, 4.0]);
        let mut out = vec![0.0; 4000];
        add_harmonics(&mut out, sr, |_| 440.0, &amps, &phases, |_, _| 1.0);
        for (n, v) in out.iter().enumerate() {
            let phi = TAU * 440.0 * (n + 1) as f64 / sr;
            let want: f64 = (0..4)
                .map(|k| amps[k] * ((k + 1) as f64 * phi + phases[k]).sin())
                .sum();
            assert!((v - want).abs() < 1e-9, "sample {n}: {v} vs {want}");
        }
        // Harmonics at or above Nyquist are left out: 3 kHz at 16 kHz keeps 3 kHz and 6 kHz only.
        let mut hi = vec![0.0; 100];
        add_harmonics(
            &mut hi,
            sr,
            |_| 3000.0,
            &[1.0, 1.0, 1.0],
            &[0.0; 3],
            |_, _| 1.0,
        );
        let phi = TAU * 3000.0 / sr;
        assert!((hi[0] - (phi.sin() + (2.0 * phi).sin())).abs() < 1e-12);
    }

    #[test]
    fn white_noise_has_zero_mean_and_unit_variance() {
        let mut n = Noise::new(7);
        let x: Vec<f64> = (0..100_000).map(|_| n.white()).collect();
        let mean = x.iter().sum::<f64>() / x.len() as f64;
        assert!(mean.abs() < 0.02, "{mean}");
        assert!((rms(&x) - 1.0).abs() < 0.02);
    }

    #[test]
    fn a_lowpass_passes_low_tones_and_stops_high_ones() {
        let sr = 16000.0;
        let tone = |f: f64| -> f64 {
            let mut lp = Biquad::lowpass(1000.0, 0.707, sr);
            let y: Vec<f64> = (0..8000)
                .map(|i| lp.step((TAU * f * i as f64 / sr).sin()))
                .collect();
            rms(&y[2000..])
        };
        assert!(tone(200.0) > 0.65);
        assert!(tone(6000.0) < 0.03);
    }

    #[test]
    fn a_resonator_rings_at_its_frequency_and_decays() {
        let sr = 16000.0;
        let mut r = Resonator::new(2000.0, 0.05, sr);
        let y: Vec<f64> = (0..1600)
            .map(|i| r.step(if i == 0 { 1.0 } else { 0.0 }))
            .collect();
        // Zero crossings in the first 10 ms ≈ 2 per period.
        let zc = y[..160]
            .windows(2)
            .filter(|w| w[0].signum() != w[1].signum())
            .count();
        assert!((38..=42).contains(&zc), "{zc}");
        assert!(rms(&y[800..]) < 1e-3 * rms(&y[..80]) * 10.0);
    }
}
