//! `asdsweep`: the command line. Each subcommand parses its flags and calls
//! one library function; nothing else lives here.

mod cli;

use anyhow::{Context, Result};
use asdsweep_coordinator::operator::{self, Format};
use asdsweep_coordinator::{Coordinator, CoordinatorConfig, bench};
use asdsweep_shared::proto as pb;
use asdsweep_worker::{Registry, WorkerConfig, run_worker};
use clap::{Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Distributed sweeps for anomalous-sound-detection proxy-task studies.
#[derive(Parser, Debug)]
#[command(name = "asdsweep", version, about, long_about = None)]
struct Cli {
    /// Log format: `human` for terminals, `json` for log collectors. Filter with RUST_LOG (default: info).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human, env = "ASDSWEEP_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

/// Where operator commands find the coordinator.
#[derive(clap::Args, Debug)]
struct CoordinatorAddr {
    /// Coordinator address (host:port or http://host:port).
    #[arg(long, env = "ASDSWEEP_COORDINATOR", default_value = "127.0.0.1:7070")]
    coordinator: String,
    /// Bearer token the coordinator expects (if it was started with one).
    #[arg(long, env = "ASDSWEEP_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a coordinator: migrate the database, then serve workers and operators over gRPC.
    Serve {
        /// Database URL: sqlite://PATH?mode=rwc or postgres://USER@HOST:PORT/DB.
        #[arg(long, env = "ASDSWEEP_DB", default_value = "sqlite://asdsweep.db?mode=rwc")]
        db: String,
        /// Postgres schema to keep the tables in (created if missing); ignored for SQLite.
        #[arg(long, env = "ASDSWEEP_DB_SCHEMA")]
        db_schema: Option<String>,
        /// Address to listen on.
        #[arg(long, env = "ASDSWEEP_LISTEN", default_value = "127.0.0.1:7070")]
        listen: SocketAddr,
        /// Directory of the content-addressed artifact store (a shared filesystem path for clusters).
        #[arg(long, env = "ASDSWEEP_ARTIFACTS", default_value = "artifacts")]
        artifacts: PathBuf,
        /// How often workers heartbeat a running job, in milliseconds.
        #[arg(long, default_value_t = 5_000)]
        heartbeat_ms: u64,
        /// How often expired leases are returned to the queue, in milliseconds.
        #[arg(long, default_value_t = 1_000)]
        reap_ms: u64,
        /// Require this bearer token on every call (workers and operators pass it with --token).
        #[arg(long, env = "ASDSWEEP_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Run a worker: lease jobs from a coordinator and run them until stopped (SIGTERM/Ctrl-C hands the running lease back).
    Worker {
        #[command(flatten)]
        addr: CoordinatorAddr,
        /// Name shown in `status` (default: $HOSTNAME).
        #[arg(long)]
        name: Option<String>,
        /// Device to train on: `cpu` (burn's flex backend) or `cuda:N` (builds with the `cuda` or `tch` feature).
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Jobs to run at once.
        #[arg(long, default_value_t = 1)]
        slots: usize,
        /// Label to report (repeatable), e.g. --label zone=a.
        #[arg(long = "label")]
        labels: Vec<String>,
        /// Exit after this many jobs.
        #[arg(long)]
        max_jobs: Option<u64>,
        /// Exit after no job was available for this many seconds.
        #[arg(long)]
        exit_when_idle_s: Option<f64>,
        /// Give up when the coordinator stays unreachable this many seconds.
        #[arg(long, default_value_t = 300.0)]
        patience_s: f64,
    },
    /// Launch a sweep spec (idempotent: the same spec twice is the same sweep).
    Launch {
        #[command(flatten)]
        addr: CoordinatorAddr,
        /// The sweep spec (TOML).
        spec: PathBuf,
        /// Print the expanded job table and counts; create nothing.
        #[arg(long)]
        dry_run: bool,
        /// Create a fresh sweep even if this spec was launched before.
        #[arg(long)]
        new: bool,
    },
    /// Show job counts by state, live workers, throughput, ETA and dead jobs.
    Status {
        #[command(flatten)]
        addr: CoordinatorAddr,
        /// Sweep id or name (default: every sweep).
        sweep: Option<String>,
    },
    /// Print a sweep's jobs with their metrics or errors.
    Results {
        #[command(flatten)]
        addr: CoordinatorAddr,
        /// Sweep id or name.
        sweep: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Cancel a sweep: nothing more of it is leased; running jobs stop at their next heartbeat.
    Cancel {
        #[command(flatten)]
        addr: CoordinatorAddr,
        /// Sweep id or name.
        sweep: String,
    },
    /// Re-queue a sweep's cancelled jobs with a fresh attempt budget.
    Retry {
        #[command(flatten)]
        addr: CoordinatorAddr,
        /// Sweep id or name.
        sweep: String,
        /// Also re-queue dead jobs.
        #[arg(long)]
        dead: bool,
    },
    /// Log-mel spectrograms (librosa-exact) of a WAV file or a directory of WAVs, as float32 .npy [128, frames].
    Features(cli::audio::FeaturesArgs),
    /// Dataset tools.
    #[command(subcommand)]
    Data(DataCommand),
    /// Generate a synthetic DCASE 2022-style machine-sound dataset.
    Synth(cli::audio::SynthArgs),
    /// Per-section AUC and pAUC (McClish and raw) of a `section,label,score` CSV.
    EvaluateScores(cli::analysis::EvaluateScoresArgs),
    /// Mahalanobis and linear probes on per-clip embeddings (`.npy`) listed in a manifest.
    Probe(cli::analysis::ProbeArgs),
    /// Proxy-vs-ASD correlations (Pearson, Spearman, Kendall, BH) and the alignment report.
    Analyze(cli::analysis::AnalyzeArgs),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand, Debug)]
enum DataCommand {
    /// Per device/section/split/label counts, durations and rates, and every problem with its path.
    Check(cli::audio::DataCheckArgs),
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Clips per second of the log-mel front end on synthetic clips.
    Features(cli::audio::BenchFeaturesArgs),
    /// Training steps per second of the autoencoder and ResNet-18 on burn's flex CPU backend.
    Train(cli::bench::BenchTrainArgs),
    /// Queue throughput: a real coordinator and W gRPC clients that lease, heartbeat and complete no-op jobs.
    Queue {
        /// Jobs to run.
        #[arg(long, default_value_t = 10_000)]
        jobs: u32,
        /// Concurrent worker clients.
        #[arg(long, default_value_t = 16)]
        workers: u32,
        /// Database URL (a Postgres run uses a fresh schema and drops it afterwards).
        #[arg(long, default_value = "sqlite://bench.db?mode=rwc")]
        db: String,
        /// Print one JSON object instead of a sentence.
        #[arg(long)]
        json: bool,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 600)]
        deadline_s: u64,
    },
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Cancelled on SIGTERM or Ctrl-C.
fn shutdown_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("installing a SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("stop requested; finishing up");
        t.cancel();
    });
    token
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match run(cli.command).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<()> {
    match command {
        Command::Serve { db, db_schema, listen, artifacts, heartbeat_ms, reap_ms, token } => {
            let cfg = CoordinatorConfig {
                db_url: db,
                db_schema,
                listen,
                artifact_dir: artifacts,
                reap_interval: Duration::from_millis(reap_ms.max(10)),
                heartbeat_interval: Duration::from_millis(heartbeat_ms.max(100)),
                token,
            };
            Coordinator::start(cfg).await.context("starting the coordinator")?.run_until(shutdown_signal()).await;
        }
        Command::Worker { addr, name, device, slots, labels, max_jobs, exit_when_idle_s, patience_s } => {
            let mut cfg = WorkerConfig::new(with_scheme(&addr.coordinator));
            if let Some(name) = name {
                cfg.name = name;
            }
            // Fails here, before registering, if this build cannot drive the device.
            let selected = asdsweep_worker::backend::select(&device)?;
            cfg.backend = selected.backend.into();
            cfg.device = selected.name;
            cfg.slots = slots;
            cfg.labels = labels;
            cfg.max_jobs = max_jobs;
            cfg.exit_when_idle = exit_when_idle_s.map(Duration::from_secs_f64);
            cfg.patience = Duration::from_secs_f64(patience_s);
            cfg.token = addr.token;
            let summary = run_worker(cfg, Registry::builtin(), shutdown_signal()).await?;
            tracing::info!(?summary, "worker stopped");
        }
        Command::Launch { addr, spec, dry_run, new } => {
            let (parsed, text) = operator::read_spec(&spec)?;
            if dry_run {
                print!("{}", operator::dry_run(&parsed));
                return Ok(());
            }
            let r = operator::connect(&addr.coordinator, addr.token.as_deref())
                .await?
                .launch(pb::LaunchRequest { spec_toml: text, force_new: new })
                .await
                .map_err(operator::Error::from)?
                .into_inner();
            let verb = if r.created { "launched" } else { "already launched; reusing" };
            println!("sweep {} \"{}\" {verb} ({} jobs)", r.sweep_id, r.name, r.jobs);
        }
        Command::Status { addr, sweep } => {
            let req = pb::StatusRequest { sweep: sweep.unwrap_or_default() };
            let r = operator::connect(&addr.coordinator, addr.token.as_deref()).await?.status(req).await.map_err(operator::Error::from)?.into_inner();
            print!("{}", operator::render_status(&r));
        }
        Command::Results { addr, sweep, format } => {
            let r = operator::connect(&addr.coordinator, addr.token.as_deref())
                .await?
                .results(pb::ResultsRequest { sweep })
                .await
                .map_err(operator::Error::from)?
                .into_inner();
            print!("{}", operator::render_results(&r.rows, format)?);
        }
        Command::Cancel { addr, sweep } => {
            let r = operator::connect(&addr.coordinator, addr.token.as_deref())
                .await?
                .cancel(pb::CancelRequest { sweep: sweep.clone() })
                .await
                .map_err(operator::Error::from)?
                .into_inner();
            println!("sweep {sweep}: {} jobs cancelled", r.cancelled);
        }
        Command::Retry { addr, sweep, dead } => {
            let r = operator::connect(&addr.coordinator, addr.token.as_deref())
                .await?
                .retry(pb::RetryRequest { sweep: sweep.clone(), dead })
                .await
                .map_err(operator::Error::from)?
                .into_inner();
            println!("sweep {sweep}: {} jobs re-queued", r.requeued);
        }
        Command::Features(args) => cli::audio::run_features(args)?,
        Command::Data(DataCommand::Check(args)) => cli::audio::run_data_check(args)?,
        Command::Synth(args) => cli::audio::run_synth(args)?,
        Command::Bench(BenchCommand::Features(args)) => cli::audio::run_bench_features(args)?,
        Command::Bench(BenchCommand::Train(args)) => cli::bench::run_bench_train(&args)?,
        Command::EvaluateScores(args) => cli::analysis::run_evaluate_scores(&args)?,
        Command::Probe(args) => cli::analysis::run_probe(&args)?,
        Command::Analyze(args) => cli::analysis::run_analyze(&args)?,
        Command::Bench(BenchCommand::Queue { jobs, workers, db, json, deadline_s }) => {
            let cfg = bench::BenchConfig { jobs, workers, db_url: db, deadline: Duration::from_secs(deadline_s) };
            let report = bench::queue(cfg).await?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!(
                    "{} jobs, {} workers: {:.2} s, {:.0} jobs/s, lease p50 {:.2} ms p99 {:.2} ms, {} duplicates, {} lost",
                    report.jobs, report.workers, report.seconds, report.jobs_per_s, report.lease_p50_ms, report.lease_p99_ms,
                    report.duplicates, report.lost
                );
            }
        }
    }
    Ok(())
}

fn with_scheme(addr: &str) -> String {
    if addr.contains("://") { addr.to_owned() } else { format!("http://{addr}") }
}
