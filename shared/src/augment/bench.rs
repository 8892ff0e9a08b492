//! Throughput of the augmentations (`asdsweep bench augment`): views per second on
//! synthetic clips, made in memory on one thread and on all, and stored (decode, augment,
//! write 16-bit WAVs) through a [`ViewStore`] as a training job makes them.

use std::time::Instant;

use rayon::prelude::*;

use super::{Augmentations, Clip, StoreError, VIEW_RATE, VIEWS_PER_CLIP, ViewStore, views};
use crate::throughput::bench_clips;

/// What to measure.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BenchConfig {
    /// Number of clips.
    pub clips: usize,
    /// Clip length in seconds (at 16 kHz).
    pub seconds: f64,
    /// Threads for the parallel measurements (0: all cores).
    pub threads: usize,
    /// The reading of the authors' code.
    pub mode: Augmentations,
}

/// Measured views per second (33 per clip).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BenchReport {
    /// The configuration measured.
    pub config: BenchConfig,
    /// Threads used by the parallel measurements.
    pub threads_used: usize,
    /// Views made in memory, one thread.
    pub views_single_thread_per_s: f64,
    /// Views made in memory, all threads.
    pub views_parallel_per_s: f64,
    /// Views made from WAV files and stored as WAV files through a view store, all threads.
    pub store_parallel_per_s: f64,
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Making or storing views failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The thread pool or the scratch directory could not be set up.
    #[error("{0}")]
    Setup(String),
}

/// Runs the benchmark of `cfg` (each measurement after one warm-up clip).
pub fn run(cfg: &BenchConfig) -> Result<BenchReport, BenchError> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.threads)
        .build()
        .map_err(|e| BenchError::Setup(format!("cannot start {} threads: {e}", cfg.threads)))?;
    let clips = pool.install(|| bench_clips(cfg.clips.max(1), cfg.seconds, VIEW_RATE));
    let augment = |c: &Vec<f32>, i: usize| {
        views(c, cfg.mode, i as u64).map_err(|source| StoreError::Augment {
            clip: format!("synthetic clip {i}"),
            source,
        })
    };
    std::hint::black_box(augment(&clips[0], 0)?);
    let per_s = |t: Instant| (clips.len() * VIEWS_PER_CLIP) as f64 / t.elapsed().as_secs_f64();

    let t = Instant::now();
    for (i, c) in clips.iter().enumerate() {
        std::hint::black_box(augment(c, i)?);
    }
    let single = per_s(t);

    let parallel = pool.install(|| -> Result<f64, StoreError> {
        let t = Instant::now();
        clips
            .par_iter()
            .enumerate()
            .try_for_each(|(i, c)| augment(c, i).map(|v| drop(std::hint::black_box(v))))?;
        Ok(per_s(t))
    })?;

    let scratch = tempfile_in_temp()?;
    let files: Vec<Clip> = clips
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let key = format!("bench/train/clip_{i:05}.wav");
            let path = scratch.join(format!("clip_{i:05}.wav"));
            crate::audio::write_wav_pcm16(&path, c, VIEW_RATE, 1)
                .map_err(|e| BenchError::Setup(e.to_string()))?;
            Ok(Clip { key, path })
        })
        .collect::<Result<_, BenchError>>()?;
    let store = ViewStore::new(&scratch.join("views"), "bench", cfg.mode, 1);
    let stored = pool.install(|| -> Result<f64, StoreError> {
        let t = Instant::now();
        store.ensure(&files, &|| ())?;
        Ok(per_s(t))
    });
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(BenchReport {
        config: cfg.clone(),
        threads_used: pool.current_num_threads(),
        views_single_thread_per_s: single,
        views_parallel_per_s: parallel,
        store_parallel_per_s: stored?,
    })
}

/// A fresh directory under the system's temporary directory.
fn tempfile_in_temp() -> Result<std::path::PathBuf, BenchError> {
    let dir = std::env::temp_dir().join(format!(
        "asdsweep-bench-augment-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::create_dir_all(&dir)
        .map_err(|e| BenchError::Setup(format!("{}: {e}", dir.display())))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_benchmark_reports_positive_rates() {
        let r = run(&BenchConfig {
            clips: 2,
            seconds: 0.3,
            threads: 2,
            mode: Augmentations::Study,
        })
        .unwrap();
        assert_eq!(r.threads_used, 2);
        for rate in [
            r.views_single_thread_per_s,
            r.views_parallel_per_s,
            r.store_parallel_per_s,
        ] {
            assert!(rate.is_finite() && rate > 0.0, "{r:?}");
        }
    }
}
