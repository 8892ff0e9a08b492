//! `asdsweep`: the command line. Each subcommand parses its flags and calls
//! one library function; nothing else lives here.

mod cli;

use anyhow::{Context, Result, bail};
use asdsweep_coordinator::operator::{self, Format};
use asdsweep_coordinator::server::ServerTls;
use asdsweep_coordinator::{Coordinator, CoordinatorConfig, bench, local};
use asdsweep_shared::auth::{Secret, Tokens};
use asdsweep_shared::proto as pb;
use asdsweep_shared::remote::{ClientTls, coordinator_url};
use asdsweep_worker::{WorkerConfig, run_worker};
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

/// Where workers and operator commands find the coordinator, and how they prove who they are.
#[derive(clap::Args, Debug)]
struct CoordinatorAddr {
    /// Coordinator address: host:port, http://host:port, or https://host:port (TLS; also
    /// implied by any --tls-* setting).
    #[arg(long, env = "ASDSWEEP_COORDINATOR", default_value = "127.0.0.1:7070")]
    coordinator: String,
    /// Bearer token: the worker token for `worker`, the operator token for the operator
    /// commands (or the one token a coordinator started with --token takes for both).
    #[arg(long, env = "ASDSWEEP_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// PEM CA certificate that signed the coordinator's certificate [default: the system's roots].
    #[arg(long, env = "ASDSWEEP_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// PEM client certificate, for a coordinator that requires one (mutual TLS).
    #[arg(long, env = "ASDSWEEP_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "ASDSWEEP_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Name the coordinator's certificate must carry [default: the address's host].
    #[arg(long, env = "ASDSWEEP_TLS_DOMAIN")]
    tls_domain: Option<String>,
}

impl CoordinatorAddr {
    fn tls(&self) -> ClientTls {
        ClientTls {
            ca: self.tls_ca.clone(),
            cert: self.tls_cert.clone(),
            key: self.tls_key.clone(),
            domain: self.tls_domain.clone(),
        }
    }

    /// The coordinator's sweep service, for operator commands.
    async fn connect(
        &self,
    ) -> Result<pb::sweep_service_client::SweepServiceClient<pb::AuthChannel>> {
        Ok(operator::connect(&self.coordinator, self.token.as_deref(), &self.tls()).await?)
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a coordinator: migrate the database, then serve workers and operators over gRPC.
    Serve {
        /// Database URL: sqlite://PATH?mode=rwc or postgres://USER@HOST:PORT/DB.
        #[arg(
            long,
            env = "ASDSWEEP_DB",
            default_value = "sqlite://asdsweep.db?mode=rwc"
        )]
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
        /// One bearer token for both roles, workers' and operators' (they pass it with --token).
        #[arg(long, env = "ASDSWEEP_TOKEN", hide_env_values = true, conflicts_with_all = ["worker_token", "operator_token"])]
        token: Option<String>,
        /// Token of the worker role: register, lease, heartbeat, complete, fail, artifacts.
        #[arg(
            long,
            env = "ASDSWEEP_WORKER_TOKEN",
            hide_env_values = true,
            requires = "operator_token"
        )]
        worker_token: Option<String>,
        /// Token of the operator role: launch, cancel, retry, every read-only call, artifact downloads.
        #[arg(
            long,
            env = "ASDSWEEP_OPERATOR_TOKEN",
            hide_env_values = true,
            requires = "worker_token"
        )]
        operator_token: Option<String>,
        /// PEM certificate (chain) to serve gRPC over TLS with.
        #[arg(long, env = "ASDSWEEP_TLS_CERT", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// PEM private key of --tls-cert.
        #[arg(long, env = "ASDSWEEP_TLS_KEY", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// PEM CA certificate: every client must present a certificate it signed (mutual TLS).
        #[arg(long, env = "ASDSWEEP_TLS_CLIENT_CA", requires = "tls_cert")]
        tls_client_ca: Option<PathBuf>,
        /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 0.0.0.0:9464).
        #[arg(long, env = "ASDSWEEP_METRICS_LISTEN")]
        metrics_listen: Option<SocketAddr>,
        /// Also serve grpc.health.v1 alone, in plain text, on this address (for probes that
        /// cannot speak TLS, such as Kubernetes' gRPC probes).
        #[arg(long, env = "ASDSWEEP_HEALTH_LISTEN")]
        health_listen: Option<SocketAddr>,
        /// How often the gRPC health service (grpc.health.v1, open without a token, for
        /// readiness probes) checks that the database answers, in milliseconds.
        #[arg(long, default_value_t = 5_000)]
        health_ms: u64,
        /// Largest artifact (checkpoint) accepted, in MiB; a larger upload is refused while it streams.
        #[arg(long, default_value_t = 8192)]
        max_artifact_mb: u64,
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
        /// Threads a job's training may use (burn's CPU backend and its matrix kernels) [default: all cores].
        #[arg(long)]
        threads: Option<usize>,
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
        /// Dataset root: a spec's `[dataset] path` is resolved under it (never outside it). Needed by every family but `noop`.
        #[arg(long, env = "ASDSWEEP_DATA")]
        data: Option<PathBuf>,
        /// Where fetched artifacts (checkpoints) are cached, by sha256 (default: a folder in the system temp dir).
        #[arg(long, env = "ASDSWEEP_CACHE")]
        cache_dir: Option<PathBuf>,
        /// Where augmented views (contrastive family) are kept [default: <data>/.asdsweep/views]; for a read-only data mount.
        #[arg(long, env = "ASDSWEEP_VIEW_CACHE")]
        view_cache: Option<PathBuf>,
        /// Where log-mel spectrograms are kept on disk, shared by the workers of a machine [default: <data>/.asdsweep/logmel]; for a read-only data mount.
        #[arg(long, env = "ASDSWEEP_FEATURE_CACHE")]
        feature_cache: Option<PathBuf>,
        /// Serve this worker's Prometheus metrics (job, epoch, loss, steps/s) at http://ADDR/metrics.
        #[arg(long, env = "ASDSWEEP_METRICS_LISTEN")]
        metrics_listen: Option<SocketAddr>,
    },
    /// Run a whole sweep on this machine: synthesise the data if the spec names none, start
    /// the coordinator (SQLite) and local workers, show progress, write the report. Running
    /// it again resumes the sweep; on a finished sweep it only writes the report again.
    Run(RunArgs),
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
    /// Show job counts by state (overall and per family), live workers, throughput, ETA and dead jobs.
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
        /// Only jobs of this proxy family (as named in the spec).
        #[arg(long)]
        family: Option<String>,
        /// Only jobs of this machine type, e.g. fan (training jobs shared by all machine types have `*`).
        #[arg(long)]
        device: Option<String>,
        /// Only jobs that report this metric, and of the metric columns only this one (JSON keeps every field):
        /// proxy_value, an ASD column (lp_in_auc, lp_in_pauc, lp_out_auc, lp_out_pauc, md_auc, md_pauc),
        /// or any metric the results report by name — a proxy metric (ae_l1) or a further metric (si_sdr_0db).
        #[arg(long, value_name = "NAME")]
        metric: Option<operator::Metric>,
        /// Output format: aligned table, CSV with a header, or a JSON array.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Print a sweep's proxy-vs-ASD correlations so far (one test per family × ASD metric; provisional while jobs are open).
    Correlations {
        #[command(flatten)]
        addr: CoordinatorAddr,
        /// Sweep id or name.
        sweep: String,
        /// Correlate this metric instead of each family's main proxy metric: a proxy or further
        /// metric the results report (e.g. si_sdr_0db), with its declared direction; rows without it are left out and counted.
        #[arg(long, value_name = "NAME")]
        proxy: Option<String>,
        /// Output format: aligned table, CSV (the columns of correlations.csv), or JSON.
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
    /// Workers seen lately: live ones and lost ones (no heartbeat for a minute), with
    /// backend, device, the job each holds and when each was last heard from.
    Workers {
        #[command(flatten)]
        addr: CoordinatorAddr,
        /// List lost workers last seen up to this many hours ago.
        #[arg(long, default_value_t = 24.0)]
        lost_within_h: f64,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Log-mel spectrograms (librosa-exact) of a WAV file or a directory of WAVs, as float32 .npy [128, frames].
    Features(cli::audio::FeaturesArgs),
    /// Make a dataset's augmented views (the contrastive family's 33 per training clip) into
    /// the store the workers read, with a progress bar, ahead of the jobs; resumes where it stopped.
    Views(cli::audio::ViewsArgs),
    /// Dataset tools.
    #[command(subcommand)]
    Data(DataCommand),
    /// Queue database tools.
    #[command(subcommand)]
    Db(DbCommand),
    /// Generate a synthetic DCASE 2022-style machine-sound dataset.
    Synth(cli::audio::SynthArgs),
    /// Per-section AUC and pAUC (McClish and raw) of a `section,label,score` CSV.
    EvaluateScores(cli::analysis::EvaluateScoresArgs),
    /// Mahalanobis and linear probes on per-clip embeddings (`.npy`) listed in a manifest.
    Probe(cli::analysis::ProbeArgs),
    /// Proxy-vs-ASD correlations (Pearson, Spearman, Kendall, BH) and the alignment report.
    Analyze(cli::analysis::AnalyzeArgs),
    /// Separate a mixture with a separation checkpoint, to hear what it does.
    Separate(cli::separation::SeparateArgs),
    /// Mix a target and an interferer at an SNR, as the separation family trains.
    Mix(cli::separation::MixArgs),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// The sweep spec (TOML), e.g. sweeps/quick.toml.
    spec: PathBuf,
    /// Local worker processes (default: one per core); each trains with cores / workers threads (at least 1).
    #[arg(long)]
    workers: Option<usize>,
    /// Database URL (default: sqlite://OUT/<sweep name>/asdsweep.db?mode=rwc).
    #[arg(long)]
    db: Option<String>,
    /// Output root: the sweep's files go to OUT/<sweep name>/.
    #[arg(long, default_value = "out")]
    out: PathBuf,
    /// Root the spec's `[dataset] path` is resolved under.
    #[arg(long, default_value = ".")]
    data: PathBuf,
    /// Where synthesised data sets are cached (one directory per `[synth]` setting).
    #[arg(long, default_value = "data")]
    data_cache: PathBuf,
    /// Device the workers train on: `cpu`, or `cuda:N` in builds with the `cuda` or `tch` feature.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Progress as plain log lines even on a terminal.
    #[arg(long)]
    plain: bool,
}

#[derive(Subcommand, Debug)]
enum DataCommand {
    /// Per device/section/split/label counts, durations and rates, and every problem with its path.
    Check(cli::audio::DataCheckArgs),
}

#[derive(Subcommand, Debug)]
enum DbCommand {
    /// Copy a SQLite queue database into a new FILE, online and consistent (a coordinator may
    /// keep running); Postgres databases are backed up with pg_dump.
    Backup {
        /// Database URL, as `serve --db`.
        #[arg(
            long,
            env = "ASDSWEEP_DB",
            default_value = "sqlite://asdsweep.db?mode=rwc"
        )]
        db: String,
        /// The backup file to create (it must not exist).
        file: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Clips per second of the log-mel front end on synthetic clips.
    Features(cli::audio::BenchFeaturesArgs),
    /// Views per second of the contrastive family's 33 augmentations on synthetic clips.
    Augment(cli::audio::BenchAugmentArgs),
    /// Training steps per second of the autoencoder and ResNet-18 on burn's flex CPU backend.
    Train(cli::bench::BenchTrainArgs),
    /// A fleet of N simulated workers (a connection each) against one coordinator process:
    /// lease, heartbeat and complete latency, the coordinator's CPU and memory, database load.
    Fleet(cli::bench::BenchFleetArgs),
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

fn init_logging(format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| default_filter.into());
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
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("installing a SIGTERM handler");
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
    // `run` draws progress and `bench` prints figures: only warnings interleave with them by default.
    let quiet = matches!(cli.command, Command::Run(_) | Command::Bench(_));
    init_logging(cli.log_format, if quiet { "warn" } else { "info" });
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
        Command::Serve {
            db,
            db_schema,
            listen,
            artifacts,
            heartbeat_ms,
            reap_ms,
            token,
            worker_token,
            operator_token,
            tls_cert,
            tls_key,
            tls_client_ca,
            metrics_listen,
            health_listen,
            health_ms,
            max_artifact_mb,
        } => {
            let tokens = match token {
                Some(t) => Tokens::shared(&Secret::new(t)),
                None => Tokens::new(
                    worker_token.map(Secret::new).as_ref(),
                    operator_token.map(Secret::new).as_ref(),
                )
                .map_err(anyhow::Error::msg)?,
            };
            let tls = tls_cert.zip(tls_key).map(|(cert, key)| ServerTls {
                cert,
                key,
                client_ca: tls_client_ca,
            });
            let cfg = CoordinatorConfig {
                db_url: db,
                db_schema,
                listen,
                artifact_dir: artifacts,
                reap_interval: Duration::from_millis(reap_ms.max(10)),
                heartbeat_interval: Duration::from_millis(heartbeat_ms.max(100)),
                tokens,
                tls,
                metrics_listen,
                health_listen,
                health_interval: Duration::from_millis(health_ms.max(10)),
                max_artifact_bytes: max_artifact_mb.saturating_mul(1 << 20),
            };
            Coordinator::start(cfg)
                .await
                .context("starting the coordinator")?
                .run_until(shutdown_signal())
                .await;
        }
        Command::Worker {
            addr,
            name,
            device,
            slots,
            threads,
            labels,
            max_jobs,
            exit_when_idle_s,
            patience_s,
            data,
            cache_dir,
            view_cache,
            feature_cache,
            metrics_listen,
        } => {
            if let Some(n) = threads {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n.max(1))
                    .build_global()
                    .context("setting the worker's compute threads")?;
            }
            let tls = addr.tls();
            let mut cfg = WorkerConfig::new(coordinator_url(&addr.coordinator, &tls));
            if let Some(name) = name {
                cfg.name = name;
            }
            // Fails here, before registering, if this build cannot drive the device.
            let selected = asdsweep_worker::backend::select(&device)?;
            cfg.backend = selected.backend.as_str().into();
            cfg.device = selected.name;
            cfg.slots = slots;
            cfg.labels = labels;
            cfg.max_jobs = max_jobs;
            cfg.exit_when_idle = exit_when_idle_s.map(Duration::from_secs_f64);
            cfg.patience = Duration::from_secs_f64(patience_s);
            cfg.token = addr.token;
            cfg.tls = tls;
            cfg.metrics_listen = metrics_listen;
            cfg.data_root = data;
            cfg.view_cache = view_cache;
            cfg.feature_cache = feature_cache;
            if let Some(dir) = cache_dir {
                cfg.cache_dir = dir;
            }
            let summary =
                run_worker(cfg, asdsweep_worker::families::builtin(), shutdown_signal()).await?;
            tracing::info!(?summary, "worker stopped");
        }
        Command::Run(args) => return run_local(args).await,
        Command::Launch {
            addr,
            spec,
            dry_run,
            new,
        } => {
            let (parsed, text) = operator::read_spec(&spec)?;
            if dry_run {
                print!("{}", operator::dry_run(&parsed));
                return Ok(());
            }
            let r = addr
                .connect()
                .await?
                .launch(pb::LaunchRequest {
                    spec_toml: text,
                    force_new: new,
                })
                .await
                .map_err(operator::Error::from)?
                .into_inner();
            let verb = if r.created {
                "launched"
            } else {
                "already launched; reusing"
            };
            println!(
                "sweep {} \"{}\" {verb} ({} jobs)",
                r.sweep_id, r.name, r.jobs
            );
        }
        Command::Status { addr, sweep } => {
            let req = pb::StatusRequest {
                sweep: sweep.unwrap_or_default(),
            };
            let r = addr
                .connect()
                .await?
                .status(req)
                .await
                .map_err(operator::Error::from)?
                .into_inner();
            print!("{}", operator::render_status(&r));
        }
        Command::Workers {
            addr,
            lost_within_h,
            json,
        } => {
            if !(lost_within_h.is_finite() && lost_within_h > 0.0) {
                anyhow::bail!(
                    "--lost-within-h {lost_within_h}: expected a positive number of hours"
                );
            }
            let r = addr
                .connect()
                .await?
                .workers(pb::WorkersRequest {
                    lost_within_ms: (lost_within_h * 3_600_000.0).round() as i64,
                })
                .await
                .map_err(operator::Error::from)?
                .into_inner();
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&operator::workers_json(&r))?
                );
            } else {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64);
                print!("{}", operator::render_workers(&r, now));
            }
        }
        Command::Results {
            addr,
            sweep,
            family,
            device,
            metric,
            format,
        } => {
            let r = addr
                .connect()
                .await?
                .results(pb::ResultsRequest { sweep })
                .await
                .map_err(operator::Error::from)?
                .into_inner();
            let filter = operator::ResultFilter {
                family,
                device,
                metric,
            };
            print!(
                "{}",
                operator::render_filtered_results(&r.rows, &filter, format)?
            );
        }
        Command::Correlations {
            addr,
            sweep,
            proxy,
            format,
        } => {
            let r = addr
                .connect()
                .await?
                .correlations(pb::CorrelationsRequest {
                    sweep,
                    proxy: proxy.clone().unwrap_or_default(),
                })
                .await
                .map_err(operator::Error::from)?
                .into_inner();
            print!(
                "{}",
                operator::render_correlations_of(&r, proxy.as_deref(), format)?
            );
        }
        Command::Cancel { addr, sweep } => {
            let r = addr
                .connect()
                .await?
                .cancel(pb::CancelRequest {
                    sweep: sweep.clone(),
                })
                .await
                .map_err(operator::Error::from)?
                .into_inner();
            println!("sweep {sweep}: {} jobs cancelled", r.cancelled);
        }
        Command::Retry { addr, sweep, dead } => {
            let r = addr
                .connect()
                .await?
                .retry(pb::RetryRequest {
                    sweep: sweep.clone(),
                    dead,
                })
                .await
                .map_err(operator::Error::from)?
                .into_inner();
            println!("sweep {sweep}: {} jobs re-queued", r.requeued);
        }
        Command::Features(args) => cli::audio::run_features(args)?,
        Command::Views(args) => cli::audio::run_views(args)?,
        Command::Data(DataCommand::Check(args)) => cli::audio::run_data_check(args)?,
        Command::Db(DbCommand::Backup { db, file }) => {
            let bytes = asdsweep_coordinator::backup::backup_sqlite(&db, &file).await?;
            println!("{} -> {} ({bytes} bytes)", db, file.display());
        }
        Command::Synth(args) => cli::audio::run_synth(args)?,
        Command::Separate(args) => cli::separation::run_separate(&args)?,
        Command::Mix(args) => cli::separation::run_mix(&args)?,
        Command::Bench(BenchCommand::Features(args)) => cli::audio::run_bench_features(args)?,
        Command::Bench(BenchCommand::Augment(args)) => cli::audio::run_bench_augment(args)?,
        Command::Bench(BenchCommand::Train(args)) => cli::bench::run_bench_train(&args)?,
        Command::Bench(BenchCommand::Fleet(args)) => cli::bench::run_bench_fleet(args).await?,
        Command::EvaluateScores(args) => cli::analysis::run_evaluate_scores(&args)?,
        Command::Probe(args) => cli::analysis::run_probe(&args)?,
        Command::Analyze(args) => cli::analysis::run_analyze(&args)?,
        Command::Bench(BenchCommand::Queue {
            jobs,
            workers,
            db,
            json,
            deadline_s,
        }) => {
            let cfg = bench::BenchConfig {
                jobs,
                workers,
                db_url: db,
                deadline: Duration::from_secs(deadline_s),
            };
            let report = bench::queue(cfg).await?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!(
                    "{} jobs, {} workers: {:.2} s, {:.0} jobs/s, lease p50 {:.2} ms p99 {:.2} ms, {} duplicates, {} lost",
                    report.jobs,
                    report.workers,
                    report.seconds,
                    report.jobs_per_s,
                    report.lease_p50_ms,
                    report.lease_p99_ms,
                    report.duplicates,
                    report.lost
                );
            }
        }
    }
    Ok(())
}

/// `asdsweep run`: fails before any job starts on a bad spec, device or data path.
async fn run_local(args: RunArgs) -> Result<()> {
    let (mut spec, _) = operator::read_spec(&args.spec)?;
    let backend = asdsweep_worker::backend::select(&args.device)?.backend;
    spec.check_backend(backend).with_context(|| {
        format!(
            "`asdsweep run --device {}` starts its workers on the {} backend",
            args.device,
            backend.as_str()
        )
    })?;
    let data_dir = local::prepare_data(&mut spec, &args.data, &args.data_cache)?;
    // Jobs in parallel beat threads in parallel here: on 2 cores the quick sweep took 83 s
    // with two 1-thread workers and 166 s with one 2-thread worker (README).
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let workers = args.workers.unwrap_or(cores).max(1);
    let threads = (cores / workers).max(1);
    let cfg = local::RunConfig {
        workers,
        db_url: args.db,
        out_dir: args.out.join(&spec.name),
        data_dir,
        worker_exe: std::env::current_exe()
            .context("locating the asdsweep binary to start workers with")?,
        worker_args: vec![
            "--device".into(),
            args.device,
            "--threads".into(),
            threads.to_string(),
        ],
        heartbeat: Duration::from_secs(1),
        progress: if args.plain {
            local::ProgressMode::Lines
        } else {
            local::ProgressMode::Auto
        },
    };
    let out = local::run(cfg, &spec, shutdown_signal()).await?;
    print!("{}", local::summary(&out));
    if out.interrupted {
        bail!("interrupted; run the same command again to resume");
    }
    if !out.progress.dead.is_empty() {
        bail!(
            "{} job(s) ended dead (reasons above)",
            out.progress.dead.len()
        );
    }
    Ok(())
}
