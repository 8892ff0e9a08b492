//! `asdsweep bench fleet`: one coordinator, started as a process of its own, against N
//! simulated workers in this process, each with its own gRPC connection, that register,
//! lease, heartbeat at the coordinator's interval while "running" a job of a drawn
//! duration, and complete it; the calls' latencies, the coordinator's CPU and memory and
//! the database's load are measured over a window after a warm-up.
//!
//! Timeline: the workers start spread evenly over `ramp` (connect, register), everything
//! runs until `warmup` has passed since the first start, then the measurement window of
//! `seconds` begins. Only calls that start inside the window are counted. At the end of
//! the window the workers stop (a job being held is abandoned) and the coordinator is
//! stopped; a Postgres run's schema is dropped.
//!
//! Job durations are log-normal with the given mean and σ of the logarithm (σ = 0: every
//! job takes the mean), drawn from a generator seeded per worker from `seed`, so two runs
//! with the same flags hold the same sequence of durations.

use crate::{Error, Result};
use asdsweep_shared::proto::{
    self as pb, sweep_service_client::SweepServiceClient,
    worker_service_client::WorkerServiceClient,
};
use rand::{Rng, SeedableRng, rngs::StdRng};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, FromQueryResult, Statement};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

/// What to run.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// The `asdsweep` binary to start the coordinator with (`serve`).
    pub exe: PathBuf,
    /// Simulated workers, each with a connection of its own.
    pub workers: u32,
    /// Database URL; `None`: a SQLite file in a temporary directory.
    pub db_url: Option<String>,
    /// Postgres schema to create and drop (it must not exist); `None`: a fresh unique name.
    pub db_schema: Option<String>,
    /// Length of the measurement window.
    pub seconds: f64,
    /// From the first worker's start to the measurement window.
    pub warmup: Duration,
    /// The workers' starts are spread evenly over this (0: all at once).
    pub ramp: Duration,
    /// Mean job duration, ms.
    pub job_ms_mean: f64,
    /// σ of the logarithm of the job duration (0: constant durations).
    pub job_ms_sigma: f64,
    /// The coordinator's `--heartbeat-ms`.
    pub heartbeat_ms: u64,
    /// Seed of the job durations.
    pub seed: u64,
    /// Jobs to launch; `None`: enough that the queue does not run dry.
    pub jobs: Option<u32>,
}

impl FleetConfig {
    /// The defaults of `asdsweep bench fleet`, with `exe` as the coordinator's binary.
    pub fn new(exe: PathBuf) -> FleetConfig {
        FleetConfig {
            exe,
            workers: 1000,
            db_url: None,
            db_schema: None,
            seconds: 60.0,
            warmup: Duration::from_secs(15),
            ramp: Duration::from_secs(5),
            job_ms_mean: 10_000.0,
            job_ms_sigma: 0.5,
            heartbeat_ms: 5_000,
            seed: 1,
            jobs: None,
        }
    }

    /// Jobs launched when `jobs` is not given: one per worker, plus 1.5 times what the
    /// fleet finishes at the mean duration until the window ends.
    pub fn jobs_needed(&self) -> u32 {
        let horizon_ms = (self.warmup.as_secs_f64() + self.seconds) * 1e3;
        let per_worker = horizon_ms / self.job_ms_mean.max(1.0);
        let n = self.workers as f64 * (1.0 + 1.5 * per_worker) + 100.0;
        n.min(u32::MAX as f64) as u32
    }
}

/// The answer; its field names are kept stable so that JSON lines of different
/// releases can be compared. Latencies are in ms, rates per second of the window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FleetReport {
    /// Always `"fleet"`.
    pub bench: &'static str,
    /// The asdsweep version that measured.
    pub version: &'static str,
    /// `"sqlite"` or `"postgres"`.
    pub db: String,
    /// Cores of this machine (the coordinator and the simulated workers share them).
    pub cpus: usize,
    /// Simulated workers.
    pub workers: u32,
    /// Workers that connected and registered.
    pub registered: u64,
    /// Jobs launched.
    pub jobs_launched: u32,
    /// The coordinator's heartbeat interval, as Register answered it.
    pub heartbeat_ms: u64,
    /// Mean job duration asked for, ms.
    pub job_ms_mean: f64,
    /// σ of the log of the job duration.
    pub job_ms_sigma: f64,
    /// Seed of the durations.
    pub seed: u64,
    /// Warm-up before the window, s.
    pub warmup_s: f64,
    /// The measurement window, s (rates are per second of it).
    pub seconds: f64,
    /// Lease calls that started in the window (with or without a job).
    pub lease_calls: u64,
    /// Lease calls answered without a job (the queue had none ready).
    pub lease_empty: u64,
    /// Lease calls per second.
    pub lease_per_s: f64,
    /// Lease latency, median.
    pub lease_p50_ms: f64,
    /// Lease latency, 90th percentile.
    pub lease_p90_ms: f64,
    /// Lease latency, 99th percentile.
    pub lease_p99_ms: f64,
    /// Lease latency, largest.
    pub lease_max_ms: f64,
    /// Heartbeat calls that started in the window.
    pub heartbeat_calls: u64,
    /// Heartbeat calls per second.
    pub heartbeat_per_s: f64,
    /// Heartbeat latency, median.
    pub heartbeat_p50_ms: f64,
    /// Heartbeat latency, 90th percentile.
    pub heartbeat_p90_ms: f64,
    /// Heartbeat latency, 99th percentile.
    pub heartbeat_p99_ms: f64,
    /// Heartbeat latency, largest.
    pub heartbeat_max_ms: f64,
    /// Complete calls that started in the window.
    pub complete_calls: u64,
    /// Complete calls per second.
    pub complete_per_s: f64,
    /// Complete latency, median.
    pub complete_p50_ms: f64,
    /// Complete latency, 90th percentile.
    pub complete_p90_ms: f64,
    /// Complete latency, 99th percentile.
    pub complete_p99_ms: f64,
    /// Complete latency, largest.
    pub complete_max_ms: f64,
    /// Jobs completed (accepted) per second.
    pub jobs_per_s: f64,
    /// Failed calls in the window.
    pub errors_total: u64,
    /// Failed calls by `call:gRPC code` (e.g. `heartbeat:FailedPrecondition`); also
    /// `connect:Transport` and `register:CODE` from the start.
    pub errors: BTreeMap<String, u64>,
    /// The coordinator's CPU use over the window, in cores (Δ CPU time / wall time, from
    /// /proc/PID/stat; process_cpu_seconds_total, whole seconds only, where there is no /proc).
    pub coordinator_cpu_cores: f64,
    /// The coordinator's peak resident memory over the whole run (VmHWM), MiB.
    pub coordinator_peak_rss_mib: f64,
    /// The coordinator's resident memory at the end of the window, MiB.
    pub coordinator_rss_mib: f64,
    /// This process's CPU use over the window (the simulated workers), in cores.
    pub bench_cpu_cores: f64,
    /// The whole machine's CPU use over the window, in cores (coordinator, simulated
    /// workers, the database server and anything else running), from /proc/stat.
    pub machine_cpu_cores: f64,
    /// Queue operations the coordinator ran on the database per second: lease (also those
    /// that found nothing), heartbeat, complete and fail calls, from asdsweep_db_seconds.
    pub db_queue_ops_per_s: f64,
    /// The same by operation.
    pub db_ops_per_s: BTreeMap<String, f64>,
    /// Postgres only: committed transactions per second in the whole database
    /// (pg_stat_database.xact_commit; every session, not only the coordinator's).
    pub pg_xact_commit_per_s: Option<f64>,
}

impl std::fmt::Display for FleetReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} simulated workers ({} registered) on {}, {} cpus, heartbeat every {} ms, jobs log-normal mean {} ms σ {}; window {:.1} s after {:.0} s warm-up",
            self.workers,
            self.registered,
            self.db,
            self.cpus,
            self.heartbeat_ms,
            self.job_ms_mean,
            self.job_ms_sigma,
            self.seconds,
            self.warmup_s
        )?;
        writeln!(
            f,
            "  call       calls/s    p50 ms    p90 ms    p99 ms    max ms"
        )?;
        let rows = [
            (
                "lease",
                self.lease_per_s,
                [
                    self.lease_p50_ms,
                    self.lease_p90_ms,
                    self.lease_p99_ms,
                    self.lease_max_ms,
                ],
            ),
            (
                "heartbeat",
                self.heartbeat_per_s,
                [
                    self.heartbeat_p50_ms,
                    self.heartbeat_p90_ms,
                    self.heartbeat_p99_ms,
                    self.heartbeat_max_ms,
                ],
            ),
            (
                "complete",
                self.complete_per_s,
                [
                    self.complete_p50_ms,
                    self.complete_p90_ms,
                    self.complete_p99_ms,
                    self.complete_max_ms,
                ],
            ),
        ];
        for (name, rate, [p50, p90, p99, max]) in rows {
            writeln!(
                f,
                "  {name:<9} {rate:>8.1} {p50:>9.2} {p90:>9.2} {p99:>9.2} {max:>9.2}"
            )?;
        }
        writeln!(
            f,
            "  jobs completed: {:.1}/s; leases without a job: {}; errors: {}{}",
            self.jobs_per_s,
            self.lease_empty,
            self.errors_total,
            if self.errors.is_empty() {
                String::new()
            } else {
                format!(" {:?}", self.errors)
            }
        )?;
        writeln!(
            f,
            "  coordinator: {:.2} cores, peak RSS {:.1} MiB (now {:.1} MiB); simulated workers: {:.2} cores; machine: {:.2} of {} cores busy",
            self.coordinator_cpu_cores,
            self.coordinator_peak_rss_mib,
            self.coordinator_rss_mib,
            self.bench_cpu_cores,
            self.machine_cpu_cores,
            self.cpus
        )?;
        write!(
            f,
            "  database: {:.1} queue operations/s",
            self.db_queue_ops_per_s
        )?;
        if let Some(x) = self.pg_xact_commit_per_s {
            write!(f, ", {x:.1} committed transactions/s (whole database)")?;
        }
        Ok(())
    }
}

fn fail(msg: impl Into<String>) -> Error {
    Error::Config(msg.into())
}

/// Raises this process's soft open-file limit to at least `needed` (children inherit it),
/// up to the hard limit, or the hard limit too where that is allowed.
pub fn raise_open_files(needed: u64) -> Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)
        .map_err(|e| fail(format!("reading the open-file limit: {e}")))?;
    if soft >= needed {
        return Ok(soft);
    }
    if hard >= needed {
        setrlimit(Resource::RLIMIT_NOFILE, needed, hard)
            .map_err(|e| fail(format!("raising the open-file limit to {needed}: {e}")))?;
        return Ok(needed);
    }
    setrlimit(Resource::RLIMIT_NOFILE, needed, needed).map_err(|e| {
        fail(format!(
            "{needed} open files are needed (a connection per simulated worker, at both ends) but the limit is {soft} (hard {hard}) and cannot be raised: {e}; raise it (ulimit -Hn {needed}, or LimitNOFILE=) or simulate fewer workers"
        ))
    })?;
    Ok(needed)
}

/// Calls made by one worker inside the window.
#[derive(Default)]
struct Log {
    lease: Vec<f64>,
    heartbeat: Vec<f64>,
    complete: Vec<f64>,
    lease_empty: u64,
    completed: u64,
    errors: BTreeMap<String, u64>,
}

impl Log {
    fn error(&mut self, call: &str, code: tonic::Code) {
        *self.errors.entry(format!("{call}:{code:?}")).or_default() += 1;
    }

    fn merge(&mut self, o: Log) {
        self.lease.extend(o.lease);
        self.heartbeat.extend(o.heartbeat);
        self.complete.extend(o.complete);
        self.lease_empty += o.lease_empty;
        self.completed += o.completed;
        for (k, v) in o.errors {
            *self.errors.entry(k).or_default() += v;
        }
    }
}

/// When the window is.
#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
}

impl Window {
    fn holds(&self, t: Instant) -> bool {
        t >= self.start && t < self.end
    }
}

/// Draws job durations: log-normal with the given mean (ms) and σ of the log.
struct Durations {
    rng: StdRng,
    mu: f64,
    sigma: f64,
}

impl Durations {
    fn new(seed: u64, mean_ms: f64, sigma: f64) -> Durations {
        Durations {
            rng: StdRng::seed_from_u64(seed),
            mu: mean_ms.max(1.0).ln() - sigma * sigma / 2.0,
            sigma,
        }
    }

    fn next(&mut self) -> Duration {
        // Box–Muller; 1 - u keeps the logarithm finite.
        let u1: f64 = 1.0 - self.rng.random::<f64>();
        let u2: f64 = self.rng.random::<f64>();
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        Duration::from_secs_f64((self.mu + self.sigma * z).exp().max(1.0) / 1e3)
    }
}

/// One simulated worker, from its start to the end of the window.
async fn simulate(
    index: u32,
    start_at: Instant,
    endpoint: Endpoint,
    mut durations: Durations,
    window: Window,
    registered: Arc<AtomicU64>,
    interval_seen: Arc<AtomicU64>,
) -> Log {
    let mut log = Log::default();
    tokio::time::sleep_until(start_at).await;
    // A connection of its own, as each worker process has.
    let channel = match endpoint.connect().await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(worker = index, error = %e, "simulated worker could not connect");
            *log.errors.entry("connect:Transport".into()).or_default() += 1;
            return log;
        }
    };
    let mut client = WorkerServiceClient::new(channel);
    let reg = pb::RegisterRequest {
        name: format!("fleet-{index:05}"),
        capabilities: Some(pb::Capabilities {
            backend: "none".into(),
            device: "none".into(),
            kinds: vec!["noop".into()],
            ..Default::default()
        }),
        version: env!("CARGO_PKG_VERSION").into(),
    };
    let (worker_id, interval) = match client.register(reg).await {
        Ok(r) => {
            let r = r.into_inner();
            (
                r.worker_id,
                Duration::from_millis(r.heartbeat_interval_ms.max(100) as u64),
            )
        }
        Err(s) => {
            log.error("register", s.code());
            return log;
        }
    };
    registered.fetch_add(1, Ordering::Relaxed);
    interval_seen.store(interval.as_millis() as u64, Ordering::Relaxed);
    while Instant::now() < window.end {
        let t = Instant::now();
        let answer = client
            .lease(pb::LeaseRequest {
                worker_id: worker_id.clone(),
            })
            .await;
        let counted = window.holds(t);
        if counted {
            log.lease.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let lease = match answer {
            Ok(r) => {
                let r = r.into_inner();
                match r.lease {
                    Some(l) => l,
                    None => {
                        if counted {
                            log.lease_empty += 1;
                        }
                        let wait = Duration::from_millis(r.retry_after_ms.max(1) as u64);
                        tokio::time::sleep_until((Instant::now() + wait).min(window.end)).await;
                        continue;
                    }
                }
            }
            Err(s) => {
                if counted {
                    log.error("lease", s.code());
                }
                tokio::time::sleep_until(
                    (Instant::now() + Duration::from_millis(200)).min(window.end),
                )
                .await;
                continue;
            }
        };
        let job_id = lease.job.as_ref().map(|j| j.job_id).unwrap_or_default();
        let leased_at = Instant::now();
        let done_at = leased_at + durations.next();
        let mut next_beat = leased_at + interval;
        let mut lost = false;
        // Hold the job, heartbeating at the interval, as a worker running it does.
        while next_beat < done_at {
            if next_beat >= window.end {
                break;
            }
            tokio::time::sleep_until(next_beat).await;
            let t = Instant::now();
            let answer = client
                .heartbeat(pb::HeartbeatRequest {
                    worker_id: worker_id.clone(),
                    job_id,
                    token: lease.token,
                    progress: None,
                })
                .await;
            let counted = window.holds(t);
            if counted {
                log.heartbeat.push(t.elapsed().as_secs_f64() * 1e3);
            }
            match answer {
                Ok(r) if r.get_ref().cancelled => {
                    lost = true;
                    break;
                }
                Ok(_) => {}
                Err(s) => {
                    if counted {
                        log.error("heartbeat", s.code());
                    }
                    if matches!(
                        s.code(),
                        tonic::Code::FailedPrecondition | tonic::Code::NotFound
                    ) {
                        lost = true;
                        break;
                    }
                }
            }
            next_beat += interval;
        }
        if lost {
            continue;
        }
        if done_at >= window.end {
            // The window ends while the job runs: it is abandoned with the fleet.
            break;
        }
        tokio::time::sleep_until(done_at).await;
        let t = Instant::now();
        let answer = client
            .complete(pb::CompleteRequest {
                worker_id: worker_id.clone(),
                job_id,
                token: lease.token,
                metrics: Some(pb::JobMetrics {
                    proxy_metric: "noop".into(),
                    ..Default::default()
                }),
            })
            .await;
        if window.holds(t) {
            log.complete.push(t.elapsed().as_secs_f64() * 1e3);
            match answer {
                Ok(_) => log.completed += 1,
                Err(s) => log.error("complete", s.code()),
            }
        }
    }
    log
}

/// A scrape of the coordinator's `/metrics`: the values of the samples named, by their
/// full name with labels as written (`asdsweep_db_seconds_count{op="lease"}`).
async fn scrape(addr: std::net::SocketAddr) -> Result<HashMap<String, f64>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let io = |source| Error::Io {
        path: format!("http://{addr}/metrics"),
        source,
    };
    let mut s = tokio::net::TcpStream::connect(addr).await.map_err(io)?;
    s.write_all(
        format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .map_err(io)?;
    let mut body = String::new();
    s.read_to_string(&mut body).await.map_err(io)?;
    if !body.starts_with("HTTP/1.1 200") {
        return Err(fail(format!(
            "the coordinator's /metrics answered {:?}",
            body.lines().next().unwrap_or("")
        )));
    }
    let mut values = HashMap::new();
    for line in body.lines() {
        if line.starts_with('#') {
            continue;
        }
        if let Some((name, value)) = line.rsplit_once(' ')
            && let Ok(v) = value.trim().parse::<f64>()
        {
            values.insert(name.trim().to_owned(), v);
        }
    }
    Ok(values)
}

/// What is read at each end of the window.
struct Snapshot {
    at: Instant,
    coordinator_cpu: Option<f64>,
    own_cpu: Option<f64>,
    machine_cpu: Option<f64>,
    metrics: HashMap<String, f64>,
    xact_commit: Option<i64>,
}

impl Snapshot {
    async fn take(
        pid: &str,
        metrics: std::net::SocketAddr,
        pg: Option<&DatabaseConnection>,
    ) -> Result<Snapshot> {
        // The CPU times first and together: they are what `at` times.
        let at = Instant::now();
        let coordinator_cpu = cpu_seconds(pid);
        let own_cpu = cpu_seconds("self");
        let machine_cpu = machine_busy_seconds();
        let metrics = scrape(metrics).await?;
        let xact_commit = match pg {
            Some(db) => Some(xact_commit(db).await?),
            None => None,
        };
        Ok(Snapshot {
            at,
            coordinator_cpu,
            own_cpu,
            machine_cpu,
            metrics,
            xact_commit,
        })
    }
}

/// CPU seconds (user + system) of a process (`self` or a pid), from /proc/PID/stat.
fn cpu_seconds(pid: &str) -> Option<f64> {
    if pid.is_empty() {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // In clock ticks of USER_HZ, which is 100 on Linux.
    Some((utime + stime) / 100.0)
}

/// CPU seconds all cores of the machine spent busy (not idle or waiting), from /proc/stat.
fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<f64> = cpu
        .split_whitespace()
        .map(|t| t.parse().unwrap_or(0.0))
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let busy: f64 = ticks.iter().take(8).sum::<f64>() - ticks.get(3)? - ticks.get(4)?;
    Some(busy / 100.0)
}

/// Peak resident memory (VmHWM) of a process in MiB, from /proc/PID/status.
fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

#[derive(FromQueryResult)]
struct Xact {
    xact_commit: i64,
}

async fn xact_commit(db: &DatabaseConnection) -> Result<i64> {
    Ok(Xact::find_by_statement(Statement::from_string(
        db.get_database_backend(),
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
    ))
    .one(db)
    .await?
    .map(|x| x.xact_commit)
    .unwrap_or(0))
}

#[derive(FromQueryResult)]
struct Exists {
    n: i64,
}

/// A free loopback port (taken by the coordinator right after).
fn free_port() -> Result<std::net::SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|source| Error::Io {
        path: "127.0.0.1:0".into(),
        source,
    })?;
    l.local_addr().map_err(|source| Error::Io {
        path: "127.0.0.1:0".into(),
        source,
    })
}

/// The sweep spec of `jobs` no-op jobs (100 devices × configs), leases outliving a few
/// missed heartbeats.
fn spec_toml(jobs: u32, job_ms_mean: f64, heartbeat_ms: u64) -> String {
    let devices = jobs.clamp(1, 100);
    let configs = jobs.div_ceil(devices);
    let devices: Vec<String> = (0..devices).map(|i| format!("\"m{i:03}\"")).collect();
    let sleep_ms = job_ms_mean.round() as u64;
    let configs: Vec<String> = (0..configs)
        .map(|i| format!("{{ name = \"c{i:05}\", sleep_ms = {sleep_ms} }}"))
        .collect();
    let ttl = (heartbeat_ms.saturating_mul(4)).clamp(30_000, 3_600_000);
    format!(
        "version = 1\nname = \"bench-fleet\"\ndescription = \"asdsweep bench fleet: no-op jobs held by simulated workers\"\ndevices = [{}]\n[queue]\nlease_ttl_ms = {ttl}\n[[family]]\nkind = \"noop\"\nconfigs = [{}]\n",
        devices.join(", "),
        configs.join(", ")
    )
}

/// The coordinator process and what it needs cleaned up.
struct Started {
    child: tokio::process::Child,
    grpc: std::net::SocketAddr,
    metrics: std::net::SocketAddr,
    log: PathBuf,
}

impl Started {
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// SIGTERM, then SIGKILL after 10 s.
    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

async fn start_coordinator(
    cfg: &FleetConfig,
    db_url: &str,
    schema: Option<&str>,
    dir: &std::path::Path,
) -> Result<Started> {
    let grpc = free_port()?;
    let metrics = free_port()?;
    let log = dir.join("coordinator.log");
    let log_file = std::fs::File::create(&log).map_err(|source| Error::Io {
        path: log.display().to_string(),
        source,
    })?;
    let mut cmd = tokio::process::Command::new(&cfg.exe);
    cmd.arg("serve")
        .arg("--listen")
        .arg(grpc.to_string())
        .arg("--metrics-listen")
        .arg(metrics.to_string())
        .arg("--db")
        .arg(db_url)
        .arg("--heartbeat-ms")
        .arg(cfg.heartbeat_ms.to_string())
        .arg("--artifacts")
        .arg(dir.join("artifacts"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .kill_on_drop(true);
    if let Some(s) = schema {
        cmd.arg("--db-schema").arg(s);
    }
    // One log line per registration is noise here; an explicit RUST_LOG still wins.
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "warn");
    }
    let child = cmd.spawn().map_err(|source| Error::Io {
        path: cfg.exe.display().to_string(),
        source,
    })?;
    let mut started = Started {
        child,
        grpc,
        metrics,
        log,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = started.child.try_wait() {
            return Err(fail(format!(
                "the coordinator exited ({status}) before serving:\n{}",
                started.log_tail()
            )));
        }
        if tokio::net::TcpStream::connect(grpc).await.is_ok()
            && tokio::net::TcpStream::connect(metrics).await.is_ok()
        {
            return Ok(started);
        }
        if Instant::now() > deadline {
            let tail = started.log_tail();
            started.stop().await;
            return Err(fail(format!(
                "the coordinator did not serve on {grpc} within 60 s:\n{tail}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Runs the fleet benchmark.
pub async fn fleet(cfg: FleetConfig) -> Result<FleetReport> {
    if cfg.workers == 0 {
        return Err(fail("--workers must be at least 1"));
    }
    let positive = |x: f64| x.is_finite() && x > 0.0;
    let sigma_ok = cfg.job_ms_sigma.is_finite() && cfg.job_ms_sigma >= 0.0;
    if !positive(cfg.seconds) || !positive(cfg.job_ms_mean) || !sigma_ok {
        return Err(fail(
            "--seconds and --job-ms-mean must be positive and --job-ms-sigma not negative",
        ));
    }
    // A connection per worker at this end and at the coordinator's (which inherits the
    // limit), plus the coordinator's database pool, files and listeners.
    raise_open_files(cfg.workers as u64 + 512)?;
    let dir = tempfile::tempdir().map_err(|source| Error::Io {
        path: "temporary directory".into(),
        source,
    })?;
    let db_url = cfg.db_url.clone().unwrap_or_else(|| {
        format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("fleet.db").display()
        )
    });
    let postgres = db_url.starts_with("postgres");
    let mut pg = None;
    let schema = if postgres {
        let schema = cfg
            .db_schema
            .clone()
            .unwrap_or_else(|| format!("bench_fleet_{:012x}", rand::random::<u64>() >> 16));
        if !schema
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(fail(format!(
                "--db-schema {schema:?}: letters, digits and _ only"
            )));
        }
        let db = Database::connect(&db_url).await?;
        let exists = Exists::find_by_statement(Statement::from_sql_and_values(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM pg_namespace WHERE nspname = $1",
            vec![schema.clone().into()],
        ))
        .one(&db)
        .await?
        .is_some_and(|e| e.n > 0);
        if exists {
            return Err(fail(format!(
                "schema {schema} exists; the benchmark creates and drops a schema of its own, so name a new one"
            )));
        }
        pg = Some(db);
        Some(schema)
    } else {
        None
    };
    let coordinator = start_coordinator(&cfg, &db_url, schema.as_deref(), dir.path()).await?;
    let outcome = measure(&cfg, &coordinator, pg.as_ref(), postgres).await;
    let peak = coordinator
        .child
        .id()
        .and_then(peak_rss_mib)
        .unwrap_or(f64::NAN);
    let tail = coordinator.log_tail();
    coordinator.stop().await;
    if let (Some(db), Some(schema)) = (&pg, &schema)
        && let Err(e) = db
            .execute_unprepared(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .await
    {
        tracing::warn!(%schema, error = %e, "dropping the benchmark's schema failed");
    }
    let mut report = outcome.map_err(|e| match e {
        Error::Config(m) => fail(format!("{m}\ncoordinator log:\n{tail}")),
        e => e,
    })?;
    report.coordinator_peak_rss_mib = peak;
    Ok(report)
}

async fn measure(
    cfg: &FleetConfig,
    coordinator: &Started,
    pg: Option<&DatabaseConnection>,
    postgres: bool,
) -> Result<FleetReport> {
    let url = format!("http://{}", coordinator.grpc);
    let endpoint = Endpoint::from_shared(url.clone())
        .map_err(|e| fail(e.to_string()))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30));
    let jobs = cfg.jobs.unwrap_or_else(|| cfg.jobs_needed());
    let channel: Channel = endpoint
        .connect()
        .await
        .map_err(|e| fail(format!("connecting to the coordinator at {url}: {e}")))?;
    let launched = SweepServiceClient::new(channel)
        .launch(pb::LaunchRequest {
            spec_toml: spec_toml(jobs, cfg.job_ms_mean, cfg.heartbeat_ms),
            force_new: true,
        })
        .await
        .map_err(|s| fail(format!("launching {jobs} no-op jobs: {}", s.message())))?
        .into_inner();

    let first = Instant::now() + Duration::from_millis(100);
    let start = first + cfg.warmup.max(cfg.ramp);
    let window = Window {
        start,
        end: start + Duration::from_secs_f64(cfg.seconds),
    };
    let registered = Arc::new(AtomicU64::new(0));
    let interval_seen = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..cfg.workers)
        .map(|i| {
            let offset = cfg.ramp.mul_f64(i as f64 / cfg.workers as f64);
            let seed = cfg
                .seed
                .wrapping_add((i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            tokio::spawn(simulate(
                i,
                first + offset,
                endpoint.clone(),
                Durations::new(seed, cfg.job_ms_mean, cfg.job_ms_sigma),
                window,
                registered.clone(),
                interval_seen.clone(),
            ))
        })
        .collect();

    let pid = coordinator
        .child
        .id()
        .map_or_else(String::new, |p| p.to_string());
    tokio::time::sleep_until(window.start).await;
    let before = Snapshot::take(&pid, coordinator.metrics, pg).await?;
    tokio::time::sleep_until(window.end).await;
    let after = Snapshot::take(&pid, coordinator.metrics, pg).await?;
    let wall = (after.at - before.at).as_secs_f64();

    let mut log = Log::default();
    for t in tasks {
        match tokio::time::timeout(Duration::from_secs(60), t).await {
            Ok(Ok(l)) => log.merge(l),
            Ok(Err(e)) => return Err(fail(format!("a simulated worker failed: {e}"))),
            Err(_) => return Err(fail("a simulated worker did not stop within 60 s")),
        }
    }
    for v in [&mut log.lease, &mut log.heartbeat, &mut log.complete] {
        v.sort_by(f64::total_cmp);
    }
    let delta = |name: &str| {
        after.metrics.get(name).copied().unwrap_or(0.0)
            - before.metrics.get(name).copied().unwrap_or(0.0)
    };
    let secs = cfg.seconds;
    let mut db_ops_per_s = BTreeMap::new();
    for op in ["lease", "heartbeat", "complete", "fail"] {
        db_ops_per_s.insert(
            op.to_owned(),
            delta(&format!("asdsweep_db_seconds_count{{op=\"{op}\"}}")) / wall,
        );
    }
    let stats = |v: &[f64]| {
        [
            percentile(v, 0.50),
            percentile(v, 0.90),
            percentile(v, 0.99),
            v.last().copied().unwrap_or(f64::NAN),
        ]
    };
    let [lease_p50_ms, lease_p90_ms, lease_p99_ms, lease_max_ms] = stats(&log.lease);
    let [
        heartbeat_p50_ms,
        heartbeat_p90_ms,
        heartbeat_p99_ms,
        heartbeat_max_ms,
    ] = stats(&log.heartbeat);
    let [
        complete_p50_ms,
        complete_p90_ms,
        complete_p99_ms,
        complete_max_ms,
    ] = stats(&log.complete);
    let heartbeat_ms = match interval_seen.load(Ordering::Relaxed) {
        0 => cfg.heartbeat_ms,
        ms => ms,
    };
    Ok(FleetReport {
        bench: "fleet",
        version: env!("CARGO_PKG_VERSION"),
        db: if postgres { "postgres" } else { "sqlite" }.into(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        workers: cfg.workers,
        registered: registered.load(Ordering::Relaxed),
        jobs_launched: launched.jobs,
        heartbeat_ms,
        job_ms_mean: cfg.job_ms_mean,
        job_ms_sigma: cfg.job_ms_sigma,
        seed: cfg.seed,
        warmup_s: (window.start - first).as_secs_f64(),
        seconds: secs,
        lease_calls: log.lease.len() as u64,
        lease_empty: log.lease_empty,
        lease_per_s: log.lease.len() as f64 / secs,
        lease_p50_ms,
        lease_p90_ms,
        lease_p99_ms,
        lease_max_ms,
        heartbeat_calls: log.heartbeat.len() as u64,
        heartbeat_per_s: log.heartbeat.len() as f64 / secs,
        heartbeat_p50_ms,
        heartbeat_p90_ms,
        heartbeat_p99_ms,
        heartbeat_max_ms,
        complete_calls: log.complete.len() as u64,
        complete_per_s: log.complete.len() as f64 / secs,
        complete_p50_ms,
        complete_p90_ms,
        complete_p99_ms,
        complete_max_ms,
        jobs_per_s: log.completed as f64 / secs,
        errors_total: log.errors.values().sum(),
        errors: log.errors,
        // /proc's figure has 10 ms resolution; the metric's, whole seconds.
        coordinator_cpu_cores: match (before.coordinator_cpu, after.coordinator_cpu) {
            (Some(a), Some(b)) => (b - a) / wall,
            _ => delta("process_cpu_seconds_total") / wall,
        },
        coordinator_peak_rss_mib: f64::NAN,
        coordinator_rss_mib: after
            .metrics
            .get("process_resident_memory_bytes")
            .copied()
            .unwrap_or(f64::NAN)
            / (1024.0 * 1024.0),
        bench_cpu_cores: match (before.own_cpu, after.own_cpu) {
            (Some(a), Some(b)) => (b - a) / wall,
            _ => f64::NAN,
        },
        machine_cpu_cores: match (before.machine_cpu, after.machine_cpu) {
            (Some(a), Some(b)) => (b - a) / wall,
            _ => f64::NAN,
        },
        db_queue_ops_per_s: db_ops_per_s.values().sum(),
        db_ops_per_s,
        pg_xact_commit_per_s: before
            .xact_commit
            .zip(after.xact_commit)
            .map(|(a, b)| (b - a) as f64 / wall),
    })
}
