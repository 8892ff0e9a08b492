//! Audio front-end subcommands: `features`, `data check`, `synth`, `bench features`.
//!
//! Each only parses arguments, calls `asdsweep_shared` and prints.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use asdsweep_shared::augment::{Augmentations, VIEW_RATE, VIEWS_PER_CLIP, bench as augment_bench};
use asdsweep_shared::dataset::{self, Layout};
use asdsweep_shared::family::contrastive::VIEW_SEED;
use asdsweep_shared::logmel::{self, LogMelConfig};
use asdsweep_shared::spec::DatasetSpec;
use asdsweep_shared::synth::{self, Machine, SynthConfig};
use asdsweep_shared::{npy, throughput};
use asdsweep_worker::data::DataRoot;
use asdsweep_worker::families::contrastive::job::training_views;
use asdsweep_worker::families::inputs::machine_type_names;
use indicatif::{ProgressBar, ProgressStyle};

/// `asdsweep features`: log-mel spectrograms as `.npy`.
#[derive(Debug, clap::Args)]
pub struct FeaturesArgs {
    /// A WAV file, or a directory searched recursively for `.wav` files.
    pub input: PathBuf,
    /// Output `.npy` file (for a WAV input) or directory (for a directory input; mirrors the input tree, same stems).
    #[arg(long)]
    pub out: PathBuf,
    /// Worker threads (0: all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

/// `asdsweep views`: a dataset's augmented views, made ahead of the contrastive jobs.
#[derive(Debug, clap::Args)]
pub struct ViewsArgs {
    /// The dataset's directory under `--data` (a spec's `[dataset] path`).
    #[arg(default_value = ".")]
    pub dataset: String,
    /// Dataset root, as the workers' `--data`.
    #[arg(long, env = "ASDSWEEP_DATA")]
    pub data: PathBuf,
    /// Layout (a spec's `[dataset] layout`); detected when omitted.
    #[arg(long)]
    pub layout: Option<String>,
    /// Where views are kept, as the workers' `--view-cache` [default: <data>/.asdsweep/views].
    #[arg(long, env = "ASDSWEEP_VIEW_CACHE")]
    pub view_cache: Option<PathBuf>,
    /// Machine types, comma-separated [default: every one in the dataset].
    #[arg(long, value_delimiter = ',')]
    pub machine_types: Vec<String>,
    /// Which reading of the authors' code (a spec's `augmentations`): `study` or `as_named`.
    #[arg(long, default_value = "study", value_parser = parse_augmentations)]
    pub augmentations: Augmentations,
    /// The views' seed (a spec's `view_seed`).
    #[arg(long, default_value_t = VIEW_SEED)]
    pub view_seed: u64,
    /// Worker threads (0: all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

/// `asdsweep data check`: counts, durations, rates and problems of a dataset.
#[derive(Debug, clap::Args)]
pub struct DataCheckArgs {
    /// Dataset root (holding one folder per machine type).
    pub dir: PathBuf,
    /// Layout (dcase2020, dcase2021, merged, mimii, toyadmos); detected when omitted.
    #[arg(long)]
    pub layout: Option<Layout>,
    /// Expected sample rate in Hz; when omitted, each device's most common rate.
    #[arg(long)]
    pub rate: Option<u32>,
    /// Only validate headers instead of decoding every file (faster, misses corrupt sample data).
    #[arg(long)]
    pub headers_only: bool,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `asdsweep synth`: a synthetic DCASE 2022-style dataset.
#[derive(Debug, clap::Args)]
pub struct SynthArgs {
    /// Output directory (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Machine types, comma-separated (default: all nine: bearing, fan, gearbox, pump, slider, ToyCar, ToyConveyor, ToyTrain, valve).
    #[arg(long, value_delimiter = ',')]
    pub devices: Vec<Machine>,
    /// Sections (operating conditions) per machine type.
    #[arg(long, default_value_t = 3)]
    pub sections: u32,
    /// Source-domain training normals per section (the target domain gets a tenth, at least 1).
    #[arg(long, default_value_t = 100)]
    pub train: usize,
    /// Test clips per section, domain and label.
    #[arg(long, default_value_t = 20)]
    pub test: usize,
    /// Clip length in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Master seed: the same seed gives byte-identical files.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Sample rate in Hz.
    #[arg(long, default_value_t = 16000)]
    pub sample_rate: u32,
}

/// `asdsweep bench features`: clips per second of the log-mel front end.
#[derive(Debug, clap::Args)]
pub struct BenchFeaturesArgs {
    /// Number of synthetic clips.
    #[arg(long, default_value_t = 400)]
    pub clips: usize,
    /// Clip length in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Sample rate in Hz.
    #[arg(long, default_value_t = 16000)]
    pub sample_rate: u32,
    /// Worker threads (0: all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Also write the clips as 16-bit WAVs into this directory (to time other tools on the same clips).
    #[arg(long)]
    pub write_clips: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `asdsweep bench augment`.
#[derive(Debug, clap::Args)]
pub struct BenchAugmentArgs {
    /// Number of synthetic clips (33 views each).
    #[arg(long, default_value_t = 8)]
    pub clips: usize,
    /// Clip length in seconds (16 kHz; the study: 10).
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Threads for the parallel measurements (0: all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Which reading of the authors' code: `study` or `as_named`.
    #[arg(long, default_value = "study", value_parser = parse_augmentations)]
    pub mode: Augmentations,
    /// Also write the clips as 16-bit WAVs into this directory (for
    /// `scripts/bench_augment_librosa.py` on the same clips).
    #[arg(long)]
    pub write_clips: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_augmentations(s: &str) -> Result<Augmentations, String> {
    match s {
        "study" => Ok(Augmentations::Study),
        "as_named" => Ok(Augmentations::AsNamed),
        other => Err(format!("\"{other}\": expected study or as_named")),
    }
}

/// Runs `asdsweep bench augment`.
pub fn run_bench_augment(args: BenchAugmentArgs) -> anyhow::Result<()> {
    let cfg = augment_bench::BenchConfig {
        clips: args.clips,
        seconds: args.seconds,
        threads: args.threads,
        mode: args.mode,
    };
    if let Some(dir) = &args.write_clips {
        write_bench_clips(dir, cfg.clips, cfg.seconds, VIEW_RATE)?;
    }
    let r = augment_bench::run(&cfg)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "{} clips of {} s at 16 kHz, 33 views each ({}), {} threads\n  views in memory, 1 thread:    {:>8.1} views/s\n  views in memory, all threads: {:>8.1} views/s\n  decode + views + WAV writing, all threads: {:>8.1} views/s",
            cfg.clips,
            cfg.seconds,
            cfg.mode.as_str(),
            r.threads_used,
            r.views_single_thread_per_s,
            r.views_parallel_per_s,
            r.store_parallel_per_s
        );
    }
    Ok(())
}

/// Writes `n` synthetic benchmark clips as `clip_00000.wav`, … into `dir`.
fn write_bench_clips(dir: &Path, n: usize, seconds: f64, rate: u32) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("{}: cannot create directory", dir.display()))?;
    for (i, c) in throughput::bench_clips(n, seconds, rate).iter().enumerate() {
        asdsweep_shared::audio::write_wav_pcm16(&dir.join(format!("clip_{i:05}.wav")), c, rate, 1)?;
    }
    Ok(())
}

fn progress(n: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(n as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar
}

fn thread_pool(threads: usize) -> anyhow::Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("cannot start worker threads")
}

/// Runs `asdsweep features`.
pub fn run_features(args: FeaturesArgs) -> anyhow::Result<()> {
    let cfg = LogMelConfig::default();
    if args.input.is_file() {
        let feats = logmel::logmel_file(&args.input, &cfg)?;
        npy::write_f32(&args.out, feats.view())?;
        println!(
            "{} -> {} [{}, {}]",
            args.input.display(),
            args.out.display(),
            feats.dim().0,
            feats.dim().1
        );
        return Ok(());
    }
    if !args.input.is_dir() {
        bail!("{}: no such file or directory", args.input.display());
    }
    let rels = dataset::list_wavs(&args.input)?;
    if rels.is_empty() {
        bail!("{}: no .wav files found", args.input.display());
    }
    let paths: Vec<PathBuf> = rels.iter().map(|r| args.input.join(r)).collect();
    let outs: Vec<PathBuf> = rels
        .iter()
        .map(|r| args.out.join(Path::new(r).with_extension("npy")))
        .collect();
    let dirs: std::collections::BTreeSet<&Path> = outs.iter().filter_map(|o| o.parent()).collect();
    for dir in dirs {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create directory", dir.display()))?;
    }
    // Decoding, log-mel and writing happen together on every thread: each file is written
    // by the thread that computed it, as soon as it is ready, and nothing is kept.
    let bar = progress(paths.len(), "log-mel");
    let errors: Vec<Option<String>> = thread_pool(args.threads)?.install(|| {
        logmel::each_logmel_file(&paths, &cfg, |i, r| {
            let written = r.map_err(|e| e.to_string()).and_then(|feats| {
                npy::write_f32(&outs[i], feats.view()).map_err(|e| e.to_string())
            });
            bar.inc(1);
            written.err()
        })
    });
    bar.finish_and_clear();
    let mut failed = 0usize;
    for e in errors.into_iter().flatten() {
        failed += 1;
        eprintln!("error: {e}");
    }
    println!(
        "{} of {} files -> {}",
        rels.len() - failed,
        rels.len(),
        args.out.display()
    );
    if failed > 0 {
        bail!("{failed} file(s) could not be processed (no .npy written for them)");
    }
    Ok(())
}

/// Runs `asdsweep views`.
pub fn run_views(args: ViewsArgs) -> anyhow::Result<()> {
    let mut data = DataRoot::open(&args.data)?;
    if let Some(dir) = args.view_cache {
        data = data.with_view_cache(dir);
    }
    let dataset_name = args.dataset.clone();
    let ds = data.dataset(&DatasetSpec {
        path: args.dataset,
        layout: args.layout,
        fingerprint: None,
    })?;
    let machine_types = if args.machine_types.is_empty() {
        machine_type_names(&ds)
            .into_iter()
            .map(String::from)
            .collect()
    } else {
        args.machine_types
    };
    let (store, clips) = training_views(
        &data,
        &ds,
        &machine_types,
        args.augmentations,
        args.view_seed,
    )
    .map_err(anyhow::Error::msg)?;
    if clips.is_empty() {
        bail!(
            "no training clips in dataset {dataset_name} under {} (machine types there: {}): \
             nothing to make views of",
            args.data.display(),
            if machine_types.is_empty() {
                "none".to_owned()
            } else {
                machine_types.join(", ")
            }
        );
    }
    let bar = progress(clips.len(), "views");
    let made = thread_pool(args.threads)?.install(|| store.ensure(&clips, &|| bar.inc(1)));
    bar.finish_and_clear();
    let made = made?;
    println!(
        "{} clips of {} ({} views each): {} made, {} already there -> {}",
        clips.len(),
        machine_types.join(", "),
        VIEWS_PER_CLIP,
        made.computed,
        made.reused,
        store.dir().display()
    );
    Ok(())
}

/// Runs `asdsweep data check`; fails when any problem is found.
pub fn run_data_check(args: DataCheckArgs) -> anyhow::Result<()> {
    let report = dataset::check(&args.dir, args.layout, args.rate, !args.headers_only)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    if !report.problems.is_empty() {
        bail!(
            "{}: {} problem(s) found",
            args.dir.display(),
            report.problems.len()
        );
    }
    Ok(())
}

/// Runs `asdsweep synth`.
pub fn run_synth(args: SynthArgs) -> anyhow::Result<()> {
    let cfg = SynthConfig {
        devices: if args.devices.is_empty() {
            Machine::ALL.to_vec()
        } else {
            args.devices
        },
        sections: args.sections,
        train: args.train,
        test: args.test,
        seconds: args.seconds,
        seed: args.seed,
        sample_rate: args.sample_rate,
    };
    let bar = progress(cfg.n_clips(), "synth");
    let summary = synth::generate(&cfg, &args.out, &|| bar.inc(1))?;
    bar.finish_and_clear();
    println!("{} clips -> {}", summary.clips.len(), args.out.display());
    Ok(())
}

/// Runs `asdsweep bench features`.
pub fn run_bench_features(args: BenchFeaturesArgs) -> anyhow::Result<()> {
    let cfg = throughput::BenchConfig {
        clips: args.clips,
        seconds: args.seconds,
        sample_rate: args.sample_rate,
        threads: args.threads,
    };
    if let Some(dir) = &args.write_clips {
        write_bench_clips(dir, cfg.clips, cfg.seconds, cfg.sample_rate)?;
    }
    let r = throughput::run(&cfg)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "{} clips of {} s at {} Hz, {} threads\n  log-mel, 1 thread:        {:>8.1} clips/s\n  log-mel, all threads:     {:>8.1} clips/s\n  decode + log-mel, all:    {:>8.1} clips/s\n  decode only, all threads: {:>8.1} clips/s\n  synth, all threads:       {:>8.1} clips/s",
            cfg.clips,
            cfg.seconds,
            cfg.sample_rate,
            r.threads_used,
            r.logmel_single_thread_clips_per_s,
            r.logmel_parallel_clips_per_s,
            r.decode_logmel_parallel_clips_per_s,
            r.decode_parallel_clips_per_s,
            r.synth_parallel_clips_per_s
        );
    }
    Ok(())
}
