//! Throughput of the audio front end (`asdsweep bench features`): clips per second on synthetic clips.

use std::time::Instant;

use rayon::prelude::*;

use crate::logmel::{LogMel, LogMelConfig, LogMelError};
use crate::synth::{Machine, SynthConfig, plan, render_clip};

/// What to measure.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BenchConfig {
    /// Number of clips.
    pub clips: usize,
    /// Clip length in seconds.
    pub seconds: f64,
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// Worker threads for the parallel measurements (0: all cores).
    pub threads: usize,
}

/// Measured clips per second.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BenchReport {
    /// The configuration measured.
    pub config: BenchConfig,
    /// Threads used by the parallel measurements.
    pub threads_used: usize,
    /// Log-mel from samples in memory, one thread.
    pub logmel_single_thread_clips_per_s: f64,
    /// Log-mel from samples in memory, all threads.
    pub logmel_parallel_clips_per_s: f64,
    /// WAV decode (16-bit PCM bytes in memory) + log-mel, all threads: what `features` does per file.
    pub decode_logmel_parallel_clips_per_s: f64,
    /// WAV decode alone (16-bit PCM bytes in memory), all threads.
    pub decode_parallel_clips_per_s: f64,
    /// Synthetic clip generation (in memory, no file writing), all threads.
    pub synth_parallel_clips_per_s: f64,
}

/// Synthetic clips for benchmarks: `n` clips of `seconds` s at `sample_rate`, cycling over the nine machines.
pub fn bench_clips(n: usize, seconds: f64, sample_rate: u32) -> Vec<Vec<f32>> {
    let cfg = SynthConfig {
        devices: Machine::ALL.to_vec(),
        sections: 1,
        train: n.div_ceil(Machine::ALL.len()).max(1),
        test: 0,
        seconds,
        seed: 2024,
        sample_rate,
    };
    let clips: Vec<_> = plan(&cfg)
        .into_iter()
        .filter(|c| c.split == crate::dataset::Split::Train)
        .collect();
    (0..n)
        .into_par_iter()
        .map(|i| render_clip(&cfg, &clips[(i * 7) % clips.len()]))
        .collect()
}

/// Runs the benchmark of `cfg` and reports clips per second (each measurement after one warm-up clip).
pub fn run(cfg: &BenchConfig) -> Result<BenchReport, LogMelError> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.threads)
        .build()
        .map_err(|e| LogMelError::Config(format!("cannot start {} threads: {e}", cfg.threads)))?;
    let t = Instant::now();
    let clips = pool.install(|| bench_clips(cfg.clips.max(1), cfg.seconds, cfg.sample_rate));
    let synth_rate = clips.len() as f64 / t.elapsed().as_secs_f64();
    let wavs: Vec<Vec<u8>> = clips
        .iter()
        .map(|c| crate::audio::encode_wav_pcm16(c, cfg.sample_rate, 1))
        .collect();
    let lm_cfg = LogMelConfig::default();
    let mut lm = LogMel::new(lm_cfg, cfg.sample_rate)?;
    lm.compute(&clips[0])?;
    let t = Instant::now();
    for c in &clips {
        std::hint::black_box(lm.compute(c)?);
    }
    let single = clips.len() as f64 / t.elapsed().as_secs_f64();
    let par = pool.install(|| -> Result<f64, LogMelError> {
        let t = Instant::now();
        clips.par_iter().try_for_each_init(
            || LogMel::new(lm_cfg, cfg.sample_rate),
            |lm, c| -> Result<(), LogMelError> {
                let lm = lm
                    .as_mut()
                    .map_err(|e| LogMelError::Config(e.to_string()))?;
                std::hint::black_box(lm.compute(c)?);
                Ok(())
            },
        )?;
        Ok(clips.len() as f64 / t.elapsed().as_secs_f64())
    })?;
    let dec = pool.install(|| -> Result<f64, LogMelError> {
        let t = Instant::now();
        wavs.par_iter().try_for_each_init(
            || LogMel::new(lm_cfg, cfg.sample_rate),
            |lm, w| -> Result<(), LogMelError> {
                let lm = lm
                    .as_mut()
                    .map_err(|e| LogMelError::Config(e.to_string()))?;
                let a =
                    crate::audio::decode_wav_bytes(w.clone(), std::path::Path::new("bench.wav"))?;
                std::hint::black_box(lm.compute(&a.samples)?);
                Ok(())
            },
        )?;
        Ok(wavs.len() as f64 / t.elapsed().as_secs_f64())
    })?;
    let decode_only = pool.install(|| -> Result<f64, LogMelError> {
        let t = Instant::now();
        wavs.par_iter()
            .try_for_each(|w| -> Result<(), LogMelError> {
                std::hint::black_box(crate::audio::decode_wav_bytes(
                    w.clone(),
                    std::path::Path::new("bench.wav"),
                )?);
                Ok(())
            })?;
        Ok(wavs.len() as f64 / t.elapsed().as_secs_f64())
    })?;
    Ok(BenchReport {
        config: cfg.clone(),
        threads_used: pool.current_num_threads(),
        logmel_single_thread_clips_per_s: single,
        logmel_parallel_clips_per_s: par,
        decode_logmel_parallel_clips_per_s: dec,
        decode_parallel_clips_per_s: decode_only,
        synth_parallel_clips_per_s: synth_rate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_benchmark_reports_positive_rates_for_the_clips_it_was_given() {
        let r = run(&BenchConfig {
            clips: 3,
            seconds: 0.5,
            sample_rate: 16000,
            threads: 2,
        })
        .unwrap();
        assert_eq!(r.threads_used, 2);
        assert!(r.logmel_single_thread_clips_per_s > 0.0 && r.logmel_parallel_clips_per_s > 0.0);
        assert!(
            r.decode_logmel_parallel_clips_per_s.is_finite()
                && r.decode_logmel_parallel_clips_per_s > 0.0
        );
        assert!(r.decode_parallel_clips_per_s > 0.0 && r.synth_parallel_clips_per_s > 0.0);
    }

    #[test]
    fn benchmark_clips_have_the_requested_count_and_length() {
        let c = bench_clips(11, 0.25, 16000);
        assert_eq!(c.len(), 11);
        assert!(c.iter().all(|x| x.len() == 4000));
        assert_ne!(c[0], c[1]);
    }
}
