//! The synthetic machine-sound generator: a DCASE 2022-style data set that needs no download.
//!
//! Nine machine types ([`Machine`]), each section a different operating condition (rate,
//! load, shape of the machine, microphone position), the target domain shifted from the
//! source (speed ±12–25 %, load, microphone position), factory background noise mixed at
//! −6/0/+6 dB SNR, and anomalies that are physically plausible faults of graded severity.
//! Output: `<out>/<machine>/{train,test}/section_XX_{source,target}_{train,test}_{normal,anomaly}_NNNN_noise_<snr>.wav`
//! (16-bit PCM, 16 kHz mono) plus `synth.json` with the configuration and every clip's fault.
//! Deterministic: the same configuration gives byte-identical files, in any thread order.

pub mod dsp;
pub mod machines;

use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::dataset::{Domain, Label, Split};
use dsp::{Biquad, Noise, Resonator, add_harmonics, add_impacts, rms};
pub use machines::{Fault, Machine, Operating};

/// Errors of the generator.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// The configuration cannot produce a data set.
    #[error("invalid synth configuration: {0}")]
    Config(String),
    /// Writing the output failed.
    #[error("{}: cannot write: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating-system error.
        source: std::io::Error,
    },
    /// Writing a WAV failed.
    #[error(transparent)]
    Audio(#[from] crate::audio::AudioError),
}

/// What to generate.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SynthConfig {
    /// Machine types.
    pub devices: Vec<Machine>,
    /// Sections per machine type.
    pub sections: u32,
    /// Source-domain training normals per section (target gets max(1, train/10), as DCASE 2022's 990/10).
    pub train: usize,
    /// Test files per section, domain and label.
    pub test: usize,
    /// Clip length in seconds.
    pub seconds: f64,
    /// Master seed.
    pub seed: u64,
    /// Sample rate in Hz.
    pub sample_rate: u32,
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self {
            devices: Machine::ALL.to_vec(),
            sections: 3,
            train: 100,
            test: 20,
            seconds: 10.0,
            seed: 0,
            sample_rate: 16000,
        }
    }
}

impl SynthConfig {
    /// Checks the settings (machine types given, sizes in range) without generating anything.
    pub fn validate(&self) -> Result<(), SynthError> {
        let bad = |m: &str| Err(SynthError::Config(m.to_string()));
        if self.devices.is_empty() {
            return bad("no machine types (--devices) given");
        }
        if self.sections == 0 || self.sections > 100 {
            return bad("sections must be between 1 and 100");
        }
        if !(self.seconds > 0.05 && self.seconds <= 600.0) {
            return bad("seconds must be in (0.05, 600]");
        }
        if !(4000..=192_000).contains(&self.sample_rate) {
            return bad("sample rate must be between 4000 and 192000 Hz");
        }
        if self.train == 0 && self.test == 0 {
            return bad("nothing to generate: train and test are both 0");
        }
        Ok(())
    }

    /// Number of clips this configuration produces.
    pub fn n_clips(&self) -> usize {
        self.devices.len()
            * self.sections as usize
            * (self.train + self.target_train() + 4 * self.test)
    }

    fn target_train(&self) -> usize {
        if self.train == 0 {
            0
        } else {
            (self.train / 10).max(1)
        }
    }
}

/// One clip to generate: where it goes and what it contains.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClipPlan {
    /// Path relative to the output root.
    pub path: String,
    /// Machine type.
    pub machine: Machine,
    /// Section.
    pub section: u32,
    /// Domain.
    pub domain: Domain,
    /// Split.
    pub split: Split,
    /// Label.
    pub label: Label,
    /// Index within (section, domain, split, label).
    pub index: usize,
    /// Fault name (anomalies only).
    pub fault: Option<String>,
    /// Fault severity in (0, 1] (anomalies only).
    pub severity: Option<f64>,
    /// Machine-to-background ratio in dB.
    pub snr_db: i32,
}

fn mix(mut h: u64, v: u64) -> u64 {
    // splitmix64 step over the combined value.
    h ^= v
        .wrapping_add(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(h << 6)
        .wrapping_add(h >> 2);
    let mut z = h.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn rng_for(parts: &[u64]) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(parts.iter().fold(0x5EED, |h, &p| mix(h, p)))
}

/// Severity levels of anomalies, cycled through so every section has mild, medium and strong faults.
pub const SEVERITIES: [f64; 3] = [0.35, 0.65, 1.0];

/// Background levels: machine-to-noise ratio in dB.
pub const SNRS_DB: [i32; 3] = [-6, 0, 6];

/// Lists every clip of `cfg`, in a fixed order.
pub fn plan(cfg: &SynthConfig) -> Vec<ClipPlan> {
    let mut out = Vec::new();
    for &m in &cfg.devices {
        for section in 0..cfg.sections {
            let groups = [
                (Domain::Source, Split::Train, Label::Normal, cfg.train),
                (
                    Domain::Target,
                    Split::Train,
                    Label::Normal,
                    cfg.target_train(),
                ),
                (Domain::Source, Split::Test, Label::Normal, cfg.test),
                (Domain::Source, Split::Test, Label::Anomaly, cfg.test),
                (Domain::Target, Split::Test, Label::Normal, cfg.test),
                (Domain::Target, Split::Test, Label::Anomaly, cfg.test),
            ];
            for (domain, split, label, n) in groups {
                for index in 0..n {
                    let mut r = rng_for(&[
                        cfg.seed,
                        m as u64,
                        u64::from(section),
                        domain as u64,
                        split as u64,
                        label as u64,
                        index as u64,
                        1,
                    ]);
                    let snr_db = SNRS_DB[r.random_range(0..3)];
                    let (fault, severity) = if label == Label::Anomaly {
                        let faults = m.faults();
                        (
                            Some(faults[(index / 3 + section as usize) % faults.len()].to_string()),
                            Some(SEVERITIES[index % 3]),
                        )
                    } else {
                        (None, None)
                    };
                    let snr = match snr_db {
                        s if s < 0 => format!("m{}", -s),
                        s if s > 0 => format!("p{s}"),
                        _ => "0".to_string(),
                    };
                    let path = format!(
                        "{}/{split}/section_{section:02}_{domain}_{split}_{label}_{index:04}_noise_{snr}.wav",
                        m.name()
                    );
                    out.push(ClipPlan {
                        path,
                        machine: m,
                        section,
                        domain,
                        split,
                        label,
                        index,
                        fault,
                        severity,
                        snr_db,
                    });
                }
            }
        }
    }
    out
}

/// The condition of a (machine, section, domain): rate, load, shape, and microphone filter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Condition {
    /// Machine rate in Hz.
    pub rate: f64,
    /// Load.
    pub load: f64,
    /// Section shape numbers.
    pub shape: [f64; 4],
    /// Microphone: low-pass cutoff (distance) in Hz.
    pub mic_cutoff: f64,
    /// Microphone: early reflection delay in seconds.
    pub mic_delay: f64,
    /// Microphone: early reflection gain.
    pub mic_reflection: f64,
}

/// The operating condition of `machine` in `section` and `domain` for master `seed`.
pub fn condition(seed: u64, machine: Machine, section: u32, domain: Domain) -> Condition {
    let mut r = rng_for(&[seed, machine as u64, u64::from(section), 7]);
    let (lo, hi) = machine.base_rate();
    let mut c = Condition {
        rate: lo + (hi - lo) * r.random::<f64>(),
        load: 0.7 + 0.6 * r.random::<f64>(),
        shape: [r.random(), r.random(), r.random(), r.random()],
        mic_cutoff: 4500.0 + 3000.0 * r.random::<f64>(),
        mic_delay: 0.002 + 0.006 * r.random::<f64>(),
        mic_reflection: 0.2 + 0.2 * r.random::<f64>(),
    };
    if domain == Domain::Target {
        let shift = 0.12 + 0.13 * r.random::<f64>();
        c.rate *= if r.random::<bool>() {
            1.0 + shift
        } else {
            1.0 - shift
        };
        c.load *= 0.7 + 0.6 * r.random::<f64>();
        c.mic_cutoff = 3000.0 + 4500.0 * r.random::<f64>();
        c.mic_delay = 0.002 + 0.01 * r.random::<f64>();
        c.mic_reflection = 0.2 + 0.3 * r.random::<f64>();
    }
    c
}

/// Factory background: pink-ish rumble, mains hum, a distant machine and random impacts, unit RMS.
fn background(len: usize, sr: f64, noise: &mut Noise) -> Vec<f64> {
    let mut lp1 = Biquad::lowpass(250.0 + 200.0 * noise.uniform(), 0.7, sr);
    let mut lp2 = Biquad::lowpass(2500.0 + 1500.0 * noise.uniform(), 0.7, sr);
    let mut out: Vec<f64> = (0..len)
        .map(|_| lp1.step(noise.white()) + 0.35 * lp2.step(noise.white()) + 0.04 * noise.white())
        .collect();
    let base = rms(&out).max(1e-12);
    let tone_amp = base * (0.2 + 0.4 * noise.uniform());
    let hum = 50.0 * (1.0 + (noise.uniform() * 2.0).floor() * 0.2);
    let f_other = 30.0 + 250.0 * noise.uniform();
    let ph: Vec<f64> = (0..6)
        .map(|_| std::f64::consts::TAU * noise.uniform())
        .collect();
    add_harmonics(
        &mut out,
        sr,
        |_| hum,
        &[tone_amp * 0.5, tone_amp * 0.3],
        &ph[..2],
        |_, _| 1.0,
    );
    add_harmonics(
        &mut out,
        sr,
        |_| f_other,
        &[tone_amp * 0.4, tone_amp * 0.2, tone_amp * 0.1],
        &ph[2..5],
        |_, _| 1.0,
    );
    let mut hits = Vec::new();
    let mut t = 0.0;
    loop {
        t += -(noise.uniform().max(1e-12)).ln() / 1.5 * sr;
        if t as usize >= len {
            break;
        }
        hits.push((t as usize, base * 3.0 * (0.3 + noise.uniform())));
    }
    add_impacts(
        &mut out,
        &hits,
        &[
            Resonator::new(150.0 + 100.0 * noise.uniform(), 0.1, sr),
            Resonator::new(900.0, 0.04, sr),
        ],
    );
    let r = rms(&out).max(1e-12);
    out.iter_mut().for_each(|v| *v /= r);
    out
}

/// Renders one planned clip as f32 mono samples at `cfg.sample_rate`.
pub fn render_clip(cfg: &SynthConfig, clip: &ClipPlan) -> Vec<f32> {
    let sr = f64::from(cfg.sample_rate);
    let len = (cfg.seconds * sr).round() as usize;
    let c = condition(cfg.seed, clip.machine, clip.section, clip.domain);
    let mut r = rng_for(&[
        cfg.seed,
        clip.machine as u64,
        u64::from(clip.section),
        clip.domain as u64,
        clip.split as u64,
        clip.label as u64,
        clip.index as u64,
        2,
    ]);
    let mut noise = Noise::new(r.random());
    let op = Operating {
        rate: c.rate * (1.0 + 0.01 * noise.gauss()),
        load: c.load * (1.0 + 0.05 * noise.gauss()),
        shape: c.shape,
        wobble: (
            0.003,
            0.1 + 0.4 * noise.uniform(),
            std::f64::consts::TAU * noise.uniform(),
        ),
    };
    let fault = clip.fault.as_ref().and_then(|name| {
        let kind = clip.machine.faults().iter().position(|f| f == name)?;
        Some(Fault {
            kind,
            severity: clip.severity.unwrap_or(1.0),
        })
    });
    let mut x = machines::render(clip.machine, &op, fault, len, sr, &mut noise);
    // Microphone position: distance low-pass plus one early reflection.
    let mut lp = Biquad::lowpass(c.mic_cutoff.min(0.45 * sr), 0.7, sr);
    lp.run(&mut x);
    let d = (c.mic_delay * sr) as usize;
    for n in (d..len).rev() {
        x[n] += c.mic_reflection * x[n - d];
    }
    let level = 0.1 * (1.0 + 0.05 * noise.gauss());
    let xr = rms(&x).max(1e-12);
    let bg = background(len, sr, &mut noise);
    let bg_gain = level / 10f64.powf(f64::from(clip.snr_db) / 20.0);
    let mut y: Vec<f64> = x
        .iter()
        .zip(&bg)
        .map(|(m, b)| m * level / xr + b * bg_gain)
        .collect();
    let peak = y.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    if peak > 0.99 {
        y.iter_mut().for_each(|v| *v *= 0.99 / peak);
    }
    y.into_iter().map(|v| v as f32).collect()
}

/// Summary of a generated data set.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SynthSummary {
    /// The configuration used.
    pub config: SynthConfig,
    /// Every clip written.
    pub clips: Vec<ClipPlan>,
}

/// Generates the data set of `cfg` under `out` in parallel, calling `on_done` after each clip.
///
/// Writes `synth.json` (configuration and per-clip fault, severity and SNR) last, so its
/// presence marks a complete data set.
pub fn generate(
    cfg: &SynthConfig,
    out: &Path,
    on_done: &(dyn Fn() + Sync),
) -> Result<SynthSummary, SynthError> {
    cfg.validate()?;
    let clips = plan(cfg);
    for m in &cfg.devices {
        for split in ["train", "test"] {
            let dir = out.join(m.name()).join(split);
            std::fs::create_dir_all(&dir).map_err(|source| SynthError::Io {
                path: dir.clone(),
                source,
            })?;
        }
    }
    clips
        .par_iter()
        .try_for_each(|clip| -> Result<(), SynthError> {
            let x = render_clip(cfg, clip);
            crate::audio::write_wav_pcm16(&out.join(&clip.path), &x, cfg.sample_rate, 1)?;
            on_done();
            Ok(())
        })?;
    let summary = SynthSummary {
        config: cfg.clone(),
        clips,
    };
    let json =
        serde_json::to_vec_pretty(&summary).map_err(|e| SynthError::Config(e.to_string()))?;
    let path = out.join("synth.json");
    crate::audio::write_atomically(&path, &json)
        .map_err(|source| SynthError::Io { path, source })?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logmel::{LogMel, LogMelConfig};

    fn small(devices: Vec<Machine>) -> SynthConfig {
        SynthConfig {
            devices,
            sections: 1,
            train: 3,
            test: 2,
            seconds: 0.5,
            seed: 42,
            sample_rate: 16000,
        }
    }

    #[test]
    fn the_tree_is_a_dcase_2022_layout_that_the_dataset_reader_understands() {
        let d = tempfile::tempdir().unwrap();
        let cfg = SynthConfig {
            sections: 2,
            ..small(vec![Machine::Fan, Machine::ToyTrain])
        };
        let s = generate(&cfg, d.path(), &|| {}).unwrap();
        assert_eq!(s.clips.len(), cfg.n_clips());
        assert_eq!(cfg.n_clips(), 2 * 2 * (3 + 1 + 8));
        let m = crate::dataset::scan(d.path(), None).unwrap();
        assert_eq!(m.layout, crate::dataset::Layout::Dcase2021);
        assert!(m.problems.is_empty(), "{:?}", m.problems);
        assert_eq!(m.entries.len(), cfg.n_clips());
        assert!(
            m.entries
                .iter()
                .all(|e| e.sample_rate == 16000 && (e.duration_s - 0.5).abs() < 1e-9)
        );
        let anomalies = s.clips.iter().filter(|c| c.label == Label::Anomaly).count();
        assert_eq!(anomalies, 2 * 2 * 4);
        assert!(d.path().join("synth.json").exists());
    }

    #[test]
    fn the_same_seed_gives_identical_audio_and_another_seed_does_not() {
        let cfg = small(vec![Machine::Pump]);
        let clip = &plan(&cfg)[5];
        assert_eq!(render_clip(&cfg, clip), render_clip(&cfg, clip));
        let other = SynthConfig {
            seed: 43,
            ..cfg.clone()
        };
        assert_ne!(render_clip(&cfg, clip), render_clip(&other, clip));
    }

    #[test]
    fn target_domain_conditions_differ_from_source_by_a_real_speed_shift() {
        for m in Machine::ALL {
            let s = condition(1, m, 0, Domain::Source);
            let t = condition(1, m, 0, Domain::Target);
            let shift = (t.rate / s.rate - 1.0).abs();
            assert!((0.11..0.26).contains(&shift), "{m}: {shift}");
            assert_eq!(s.shape, t.shape, "same machine, other condition");
        }
    }

    #[test]
    fn background_noise_is_mixed_at_the_planned_snr() {
        let cfg = SynthConfig {
            seconds: 1.0,
            ..small(vec![Machine::Fan])
        };
        for clip in plan(&cfg).iter().take(6) {
            let y = render_clip(&cfg, clip);
            let r = (y.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / y.len() as f64).sqrt();
            // Machine RMS 0.1; total = 0.1·sqrt(1 + 10^(-snr/10)) (independent parts), within 15 %.
            let want = 0.1 * (1.0 + 10f64.powf(-f64::from(clip.snr_db) / 10.0)).sqrt();
            assert!(
                (r / want - 1.0).abs() < 0.15,
                "{}: rms {r} want {want}",
                clip.path
            );
        }
    }

    #[test]
    fn invalid_configurations_are_rejected() {
        let d = tempfile::tempdir().unwrap();
        let cfg = SynthConfig {
            devices: vec![],
            ..SynthConfig::default()
        };
        assert!(matches!(
            generate(&cfg, d.path(), &|| {}),
            Err(SynthError::Config(_))
        ));
        let cfg = SynthConfig {
            seconds: 0.0,
            ..SynthConfig::default()
        };
        assert!(
            generate(&cfg, d.path(), &|| {})
                .unwrap_err()
                .to_string()
                .contains("seconds")
        );
    }

    /// Mean log-mel of a clip (the simple detector's feature).
    fn mean_logmel(lm: &mut LogMel, x: &[f32]) -> Vec<f64> {
        let s = lm.compute(x).unwrap();
        s.rows()
            .into_iter()
            .map(|r| r.iter().map(|&v| f64::from(v)).sum::<f64>() / r.len() as f64)
            .collect()
    }

    // replaced by shared::metrics after merge
    fn md_scores(train: &[Vec<f64>], test: &[Vec<f64>]) -> Vec<f64> {
        let d = train[0].len();
        let n = train.len() as f64;
        let mean: Vec<f64> = (0..d)
            .map(|j| train.iter().map(|v| v[j]).sum::<f64>() / n)
            .collect();
        let mut cov = nalgebra::DMatrix::<f64>::zeros(d, d);
        for v in train {
            let c = nalgebra::DVector::from_iterator(d, v.iter().zip(&mean).map(|(a, m)| a - m));
            cov += &c * c.transpose();
        }
        cov /= n - 1.0;
        let inv = cov.pseudo_inverse(1e-10).unwrap();
        test.iter()
            .map(|v| {
                let c =
                    nalgebra::DVector::from_iterator(d, v.iter().zip(&mean).map(|(a, m)| a - m));
                (c.transpose() * &inv * &c)[(0, 0)]
            })
            .collect()
    }

    // replaced by shared::metrics after merge
    fn auc(normal: &[f64], anomaly: &[f64]) -> f64 {
        let mut s = 0.0;
        for a in anomaly {
            for n in normal {
                s += if a > n {
                    1.0
                } else if a == n {
                    0.5
                } else {
                    0.0
                };
            }
        }
        s / (normal.len() * anomaly.len()) as f64
    }

    #[test]
    fn a_mahalanobis_detector_on_mean_log_mel_is_neither_trivial_nor_hopeless() {
        let cfg = SynthConfig {
            devices: Machine::ALL.to_vec(),
            sections: 1,
            train: 160,
            test: 24,
            seconds: 1.0,
            seed: 7,
            sample_rate: 16000,
        };
        let clips = plan(&cfg);
        let feats: Vec<Vec<f64>> = clips
            .par_iter()
            .map_init(
                || LogMel::new(LogMelConfig::default(), 16000).unwrap(),
                |lm, c| mean_logmel(lm, &render_clip(&cfg, c)),
            )
            .collect();
        let mut aucs = Vec::new();
        for m in &cfg.devices {
            let pick = |f: &dyn Fn(&ClipPlan) -> bool| -> Vec<Vec<f64>> {
                clips
                    .iter()
                    .zip(&feats)
                    .filter(|(c, _)| c.machine == *m && f(c))
                    .map(|(_, v)| v.clone())
                    .collect()
            };
            let train = pick(&|c| c.split == Split::Train);
            for domain in [Domain::Source, Domain::Target] {
                let normal = md_scores(
                    &train,
                    &pick(&|c| {
                        c.split == Split::Test && c.domain == domain && c.label == Label::Normal
                    }),
                );
                let anomaly = md_scores(
                    &train,
                    &pick(&|c| {
                        c.split == Split::Test && c.domain == domain && c.label == Label::Anomaly
                    }),
                );
                let a = auc(&normal, &anomaly);
                println!("{m} {domain}: AUC {a:.3}");
                aucs.push(a);
            }
        }
        let mean = aucs.iter().sum::<f64>() / aucs.len() as f64;
        println!("mean AUC {mean:.3}");
        assert!((0.6..=0.95).contains(&mean), "mean AUC {mean}: {aucs:?}");
    }
}
