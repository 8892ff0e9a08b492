//! `asdsweep bench train`: flags, and the printing of the worker's training benchmark.

use anyhow::Result;
use asdsweep_worker::bench::{self, BenchOptions, Workload};
use clap::{Args, ValueEnum};

/// Which model `bench train` times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchModel {
    /// The autoencoder (hidden 128, latent 8, 640-dim input) at batch 512.
    Ae,
    /// ResNet-18 (full width, cross-entropy head, 7 classes) at batch 32 on 1×128×313 log-mel images.
    Resnet18,
    /// The separator (C 64, 2 two-stage conformer blocks) at batch 12 on 2-s mixtures (161 frames × 201 bins).
    Separator,
    /// SimCLR on a full-width ResNet-18 (projector 512 → 512 → 128, NT-Xent) at batch 96
    /// view pairs of 1×128×313.
    Simclr,
    /// The autoencoder, then ResNet-18 (not the separator or SimCLR, which take minutes on a 2-core CPU).
    All,
}

/// Flags of `asdsweep bench train`.
#[derive(Args, Debug)]
#[command(
    after_help = "Each model: WARMUP untimed steps, then REPEATS timed runs of STEPS steps; the figure is the median run. \
A step is one training step as the worker runs it (forward, loss, backward, AdamW update, loss read back) on a fixed random batch. \
Compare with PyTorch on the same models: scripts/bench_train_torch.py --threads N. Build with --release: a debug build is 10-50x slower."
)]
pub struct BenchTrainArgs {
    /// Model(s) to time.
    #[arg(long, value_enum, default_value_t = BenchModel::All)]
    pub model: BenchModel,
    /// Timed steps per run [default: 100 for ae, 3 for resnet18 and the separator, which take seconds per step on a 2-core CPU].
    #[arg(long)]
    pub steps: Option<usize>,
    /// Untimed warm-up steps before the first run [default: 10 for ae, 1 for the others].
    #[arg(long)]
    pub warmup: Option<usize>,
    /// Samples per step instead of the model's study batch (e.g. a smaller one where the
    /// study's does not fit in memory).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Timed runs per model; the reported figure is their median.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Compute threads (the rayon pool burn's flex backend runs on) [default: all cores].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Seed of the weights, the input and the labels.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Device to train on: `cpu` (flex) or `cuda:N` (a build with the `cuda` or `tch` feature).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Print one JSON object per model (JSON Lines) instead of a sentence.
    #[arg(long)]
    pub json: bool,
}

/// Runs the benchmark for each model asked for and prints its report.
pub fn run_bench_train(args: &BenchTrainArgs) -> Result<()> {
    let workloads = match args.model {
        BenchModel::Ae => vec![Workload::study_autoencoder()],
        BenchModel::Resnet18 => vec![Workload::study_resnet18()],
        BenchModel::Separator => vec![Workload::study_separator()],
        BenchModel::Simclr => vec![Workload::study_simclr()],
        BenchModel::All => vec![Workload::study_autoencoder(), Workload::study_resnet18()],
    };
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if args.batch == Some(0) {
        anyhow::bail!("--batch must be at least 1");
    }
    let workloads: Vec<Workload> = workloads
        .into_iter()
        .map(|w| match args.batch {
            Some(n) => w.with_batch(n),
            None => w,
        })
        .collect();
    for workload in &workloads {
        let (steps, warmup) = match workload {
            Workload::Autoencoder { .. } => (100, 10),
            Workload::Classifier { .. }
            | Workload::Separator { .. }
            | Workload::Contrastive { .. } => (3, 1),
        };
        let options = BenchOptions {
            warmup: args.warmup.unwrap_or(warmup),
            steps: args.steps.unwrap_or(steps),
            repeats: args.repeats,
            threads,
            seed: args.seed,
            device: args.device.clone(),
        };
        let report = bench::train_throughput(workload, &options)?;
        if args.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            println!("{report}");
        }
    }
    Ok(())
}

/// Flags of `asdsweep bench fleet`.
#[derive(Args, Debug)]
#[command(
    after_help = "Starts one coordinator (this binary's `serve`, on free loopback ports) and simulates the workers in this \
process, each with a gRPC connection of its own: register, then lease; a leased job is held for a duration drawn \
from a log-normal distribution (seeded per worker), heartbeating at the interval Register answers, then completed; \
with no job, wait retry_after_ms. Worker starts are spread over --ramp-s; calls that start in the --seconds window \
after --warmup-s are measured. A Postgres run creates a fresh schema and drops it at the end. \
Build with --release. JSON fields: README, Performance (bench fleet)."
)]
pub struct BenchFleetArgs {
    /// Simulated workers (a connection each).
    #[arg(long, default_value_t = 1000)]
    pub workers: u32,
    /// Database URL, e.g. postgres://postgres@127.0.0.1:5432/test [default: a SQLite file in a temporary directory].
    #[arg(long)]
    pub db: Option<String>,
    /// Postgres schema to create and drop (must not exist) [default: bench_fleet_<random>].
    #[arg(long)]
    pub db_schema: Option<String>,
    /// Length of the measurement window, seconds.
    #[arg(long, default_value_t = 60.0)]
    pub seconds: f64,
    /// From the first worker's start to the window, seconds (at least --ramp-s).
    #[arg(long, default_value_t = 15.0)]
    pub warmup_s: f64,
    /// Worker starts are spread evenly over this many seconds.
    #[arg(long, default_value_t = 5.0)]
    pub ramp_s: f64,
    /// Mean job duration, ms (log-normal).
    #[arg(long, default_value_t = 10_000.0)]
    pub job_ms_mean: f64,
    /// σ of the logarithm of the job duration (0: every job takes the mean).
    #[arg(long, default_value_t = 0.5)]
    pub job_ms_sigma: f64,
    /// The coordinator's heartbeat interval (serve --heartbeat-ms).
    #[arg(long, default_value_t = 5_000)]
    pub heartbeat_ms: u64,
    /// Seed of the job durations.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Jobs to launch [default: enough that the queue does not run dry].
    #[arg(long)]
    pub jobs: Option<u32>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `asdsweep bench fleet` and prints its report.
pub async fn run_bench_fleet(args: BenchFleetArgs) -> Result<()> {
    use asdsweep_coordinator::fleet;
    use std::time::Duration;
    for (name, v) in [("--warmup-s", args.warmup_s), ("--ramp-s", args.ramp_s)] {
        if !(v.is_finite() && v >= 0.0) {
            anyhow::bail!("{name} must be a number of seconds, at least 0");
        }
    }
    let exe = std::env::current_exe().map_err(|e| {
        anyhow::anyhow!("locating the asdsweep binary to start the coordinator with: {e}")
    })?;
    let cfg = fleet::FleetConfig {
        workers: args.workers,
        db_url: args.db,
        db_schema: args.db_schema,
        seconds: args.seconds,
        warmup: Duration::from_secs_f64(args.warmup_s),
        ramp: Duration::from_secs_f64(args.ramp_s),
        job_ms_mean: args.job_ms_mean,
        job_ms_sigma: args.job_ms_sigma,
        heartbeat_ms: args.heartbeat_ms,
        seed: args.seed,
        jobs: args.jobs,
        ..fleet::FleetConfig::new(exe)
    };
    let report = fleet::fleet(cfg).await?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{report}");
    }
    Ok(())
}
