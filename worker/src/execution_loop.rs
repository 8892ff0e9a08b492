//! The worker loop: register, then per slot lease → run → heartbeat while
//! running → complete or fail. Calls that fail because the coordinator is
//! unreachable (restarting, network drop) are retried with backoff, and a
//! finished result is held until the coordinator has answered for it, so a
//! coordinator restart loses no result.

use crate::artifacts::Artifacts;
use crate::data::DataRoot;
use crate::metrics::WorkerMetrics;
use crate::registry::{JobContext, JobError, Registry};
use asdsweep_shared::auth::Bearer;
use asdsweep_shared::proto::{
    self as pb, AuthChannel, artifact_service_client::ArtifactServiceClient,
    worker_service_client::WorkerServiceClient,
};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, watch};
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status};
use tracing::Instrument;

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Coordinator URL, e.g. `http://127.0.0.1:7070`.
    pub coordinator: String,
    /// Name reported to the coordinator.
    pub name: String,
    /// Training backend compiled in.
    pub backend: String,
    /// Device jobs run on.
    pub device: String,
    /// Memory for jobs, bytes (0 = unknown).
    pub memory_bytes: u64,
    /// Free-form labels.
    pub labels: Vec<String>,
    /// Jobs run at once.
    pub slots: usize,
    /// Stop after this many jobs (all outcomes counted).
    pub max_jobs: Option<u64>,
    /// Exit once no job was available for this long.
    pub exit_when_idle: Option<Duration>,
    /// Give up a call after the coordinator was unreachable this long.
    pub patience: Duration,
    /// Bearer token for the coordinator (`None`: send none).
    pub token: Option<String>,
    /// TLS to the coordinator (used for `https://` addresses).
    pub tls: asdsweep_shared::remote::ClientTls,
    /// Where to serve the worker's `/metrics` (`None`: nowhere).
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Dataset root (`--data`); jobs that read data fail without one.
    pub data_root: Option<PathBuf>,
    /// Where downloaded artifacts (checkpoints) are cached.
    pub cache_dir: PathBuf,
    /// Where augmented views are kept (`None`: `<data root>/.asdsweep/views`).
    pub view_cache: Option<PathBuf>,
    /// Where log-mels are kept on disk (`None`: `<data root>/.asdsweep/logmel`).
    pub feature_cache: Option<PathBuf>,
}

impl WorkerConfig {
    /// Defaults for a coordinator URL: one slot, CPU, no backend.
    pub fn new(coordinator: impl Into<String>) -> WorkerConfig {
        WorkerConfig {
            coordinator: coordinator.into(),
            name: std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into()),
            backend: "none".into(),
            device: "cpu".into(),
            memory_bytes: 0,
            labels: Vec::new(),
            slots: 1,
            max_jobs: None,
            exit_when_idle: None,
            patience: Duration::from_secs(300),
            token: None,
            tls: Default::default(),
            metrics_listen: None,
            data_root: None,
            cache_dir: std::env::temp_dir().join("asdsweep-artifact-cache"),
            view_cache: None,
            feature_cache: None,
        }
    }
}

/// What a worker did before it stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerSummary {
    /// Results the coordinator accepted.
    pub succeeded: u64,
    /// Attempts reported as failed.
    pub failed: u64,
    /// Leases handed back on shutdown.
    pub released: u64,
    /// Jobs whose lease was lost or whose sweep was cancelled while running.
    pub abandoned: u64,
}

/// Why a worker stopped early.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The coordinator URL, token or TLS settings are unusable.
    #[error("bad coordinator address, token or TLS settings for \"{0}\": {1}")]
    Address(String, String),
    /// The metrics address cannot be served.
    #[error("--metrics-listen: {0}")]
    Metrics(String),
    /// The coordinator could not be reached within the patience window.
    #[error(
        "coordinator {coordinator} unreachable for {waited_s:.0} s while calling {call}: {last}"
    )]
    Unreachable {
        /// The coordinator URL.
        coordinator: String,
        /// The call that failed.
        call: &'static str,
        /// How long it was tried.
        waited_s: f64,
        /// The last error.
        last: String,
    },
    /// The dataset root cannot be used.
    #[error("--data: {0}")]
    Data(#[from] crate::data::DataError),
    /// The coordinator rejected a call in a way a retry cannot fix.
    #[error("coordinator rejected {call}: {status}")]
    Rejected {
        /// The call.
        call: &'static str,
        /// Its status.
        status: Status,
    },
}

/// Result alias for the worker.
pub type Result<T> = std::result::Result<T, Error>;

struct Shared {
    cfg: WorkerConfig,
    registry: Registry,
    client: WorkerServiceClient<AuthChannel>,
    artifacts: Artifacts,
    data: Option<Arc<DataRoot>>,
    /// Worker id and heartbeat interval; replaced if the coordinator forgets us.
    identity: Mutex<(String, Duration)>,
    shutdown: CancellationToken,
    /// Jobs leased so far (for `max_jobs`); how they ended is counted in `metrics`.
    started: AtomicU64,
    metrics: WorkerMetrics,
}

/// True for failures that mean "try again later" rather than "no".
fn transient(s: &Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable
            | Code::Unknown
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::ResourceExhausted
    )
}

impl Shared {
    /// Calls `f` until it answers something other than a transient failure,
    /// for at most `cfg.patience`. Calls that carry no result (`Register`,
    /// `Lease`) give up at shutdown with a `CANCELLED` status.
    async fn retry<T, F, Fut>(
        &self,
        call: &'static str,
        mut f: F,
    ) -> Result<std::result::Result<T, Status>>
    where
        F: FnMut(WorkerServiceClient<AuthChannel>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, Status>>,
    {
        let start = Instant::now();
        let mut delay = Duration::from_millis(50);
        loop {
            match f(self.client.clone()).await {
                Ok(r) => return Ok(Ok(r.into_inner())),
                Err(s) if transient(&s) => {
                    if start.elapsed() >= self.cfg.patience {
                        return Err(Error::Unreachable {
                            coordinator: self.cfg.coordinator.clone(),
                            call,
                            waited_s: start.elapsed().as_secs_f64(),
                            last: s.message().to_owned(),
                        });
                    }
                    tracing::debug!(call, error = %s.message(), "coordinator unreachable; retrying");
                    let abortable = matches!(call, "Register" | "Lease");
                    tokio::select! {
                        _ = self.shutdown.cancelled(), if abortable => return Ok(Err(Status::cancelled("worker shutting down"))),
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(s) => return Ok(Err(s)),
            }
        }
    }

    async fn register(&self) -> Result<()> {
        let req = pb::RegisterRequest {
            name: self.cfg.name.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            capabilities: Some(pb::Capabilities {
                backend: self.cfg.backend.clone(),
                device: self.cfg.device.clone(),
                memory_bytes: self.cfg.memory_bytes,
                labels: self.cfg.labels.clone(),
                kinds: self.registry.names(),
            }),
        };
        let resp = self
            .retry("Register", |mut c| {
                let req = req.clone();
                async move { c.register(req).await }
            })
            .await?
            .map_err(|status| Error::Rejected {
                call: "Register",
                status,
            })?;
        tracing::info!(worker_id = %resp.worker_id, kinds = ?self.registry.names(), "registered with {}", self.cfg.coordinator);
        *self.identity.lock().await = (
            resp.worker_id,
            Duration::from_millis(resp.heartbeat_interval_ms.max(100) as u64),
        );
        Ok(())
    }

    async fn worker_id(&self) -> String {
        self.identity.lock().await.0.clone()
    }

    fn reached_max_jobs(&self) -> bool {
        self.cfg
            .max_jobs
            .is_some_and(|m| self.started.load(Ordering::SeqCst) >= m)
    }

    async fn slot_loop(self: Arc<Self>) -> Result<()> {
        let mut idle_since: Option<Instant> = None;
        loop {
            if self.shutdown.is_cancelled() || self.reached_max_jobs() {
                return Ok(());
            }
            let worker_id = self.worker_id().await;
            let answer = self
                .retry("Lease", |mut c| {
                    let req = pb::LeaseRequest {
                        worker_id: worker_id.clone(),
                    };
                    async move { c.lease(req).await }
                })
                .await?;
            let resp = match answer {
                Ok(r) => r,
                Err(_) if self.shutdown.is_cancelled() => return Ok(()),
                Err(s) if s.code() == Code::NotFound => {
                    tracing::warn!(
                        "coordinator does not know worker {worker_id}: {}; registering again",
                        s.message()
                    );
                    self.register().await?;
                    continue;
                }
                Err(status) => {
                    return Err(Error::Rejected {
                        call: "Lease",
                        status,
                    });
                }
            };
            let Some(lease) = resp.lease else {
                let since = *idle_since.get_or_insert_with(Instant::now);
                if self
                    .cfg
                    .exit_when_idle
                    .is_some_and(|limit| since.elapsed() >= limit)
                {
                    return Ok(());
                }
                tokio::select! {
                    _ = self.shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_millis(resp.retry_after_ms.max(10) as u64)) => {}
                }
                continue;
            };
            idle_since = None;
            self.started.fetch_add(1, Ordering::SeqCst);
            // Every log line of the attempt carries its sweep, job and lease (JSON logs
            // show them as span fields).
            let span = match &lease.job {
                Some(j) => {
                    tracing::info_span!("job", sweep_id = j.sweep_id, job_id = j.job_id, job = %j.job_key, lease = lease.token)
                }
                None => tracing::Span::none(),
            };
            self.run_lease(lease).instrument(span).await?;
        }
    }

    async fn run_lease(&self, lease: pb::Lease) -> Result<()> {
        let token = lease.token;
        let Some(job) = lease.job else {
            tracing::warn!("coordinator sent a lease without a job; ignoring it");
            return Ok(());
        };
        let (worker_id, hb_interval) = self.identity.lock().await.clone();
        // Heartbeat well inside the lease's lifetime.
        let hb_interval = hb_interval.min(Duration::from_millis((lease.ttl_ms / 3).max(50) as u64));
        tracing::info!(job = %job.job_key, attempt = job.attempt, max = job.max_attempts, "running");
        let params = match serde_json::from_str(&job.params_json) {
            Ok(p) => p,
            Err(e) => serde_json::Value::String(format!("unparseable parameters: {e}")),
        };
        let (cancel, drain) = (CancellationToken::new(), CancellationToken::new());
        let (progress_tx, mut progress_rx) = watch::channel(pb::Progress::default());
        let ctx = JobContext {
            job: job.clone(),
            params,
            cancel: cancel.clone(),
            drain: drain.clone(),
            progress: progress_tx,
            artifacts: self.artifacts.clone(),
            data: self.data.clone(),
            device: self.cfg.device.clone(),
        };
        self.metrics.started(&job);
        let mut running = tokio::spawn(
            self.registry
                .dispatch(ctx)
                .instrument(tracing::Span::current()),
        );
        let mut beat = tokio::time::interval(hb_interval);
        beat.tick().await; // the first tick is immediate; the claim itself started the lease
        #[derive(PartialEq)]
        enum Stop {
            None,
            Shutdown,
            Lost,
        }
        let mut stop = Stop::None;
        // A new checkpoint is reported at once rather than at the next beat, so a worker
        // killed right after an upload still leaves it to the next attempt.
        let mut watching = true;
        let mut reported_checkpoint: Option<String> = None;
        let outcome = loop {
            let send_now = tokio::select! {
                joined = &mut running => break match joined {
                    Ok(r) => r,
                    Err(e) if e.is_panic() => Err(JobError::retryable(format!("job {} panicked: {}", job.job_key, panic_message(e)))),
                    Err(e) => Err(JobError::retryable(format!("job {} task failed: {e}", job.job_key))),
                },
                _ = beat.tick(), if stop == Stop::None => true,
                // While draining too: the checkpoint of the epoch being finished is reported.
                changed = progress_rx.changed(), if stop != Stop::Lost && watching => match changed {
                    Ok(()) => {
                        let p = progress_rx.borrow_and_update();
                        self.metrics.progress(&job, &p);
                        p.checkpoint != reported_checkpoint
                    }
                    Err(_) => {
                        watching = false;
                        false
                    }
                },
                _ = self.shutdown.cancelled(), if stop == Stop::None => {
                    tracing::info!(job = %job.job_key, "shutting down: finishing the epoch, saving a checkpoint and handing the lease back");
                    stop = Stop::Shutdown;
                    drain.cancel();
                    cancel.cancel();
                    false
                }
            };
            if !send_now {
                continue;
            }
            let progress = progress_rx.borrow().clone();
            reported_checkpoint = progress.checkpoint.clone();
            let req = pb::HeartbeatRequest {
                worker_id: worker_id.clone(),
                job_id: job.job_id,
                token,
                progress: Some(progress),
            };
            match self.client.clone().heartbeat(req).await {
                Ok(r) if r.get_ref().cancelled => {
                    tracing::info!(job = %job.job_key, "sweep cancelled; stopping the job");
                    stop = Stop::Lost;
                    cancel.cancel();
                }
                Ok(_) => {}
                // Every beat carries the latest checkpoint, so the next one reports it.
                Err(s) if transient(&s) => {
                    tracing::warn!(job = %job.job_key, error = %s.message(), "heartbeat not delivered; will retry")
                }
                Err(s) => {
                    tracing::warn!(job = %job.job_key, error = %s.message(), "lease lost; stopping the job");
                    stop = Stop::Lost;
                    cancel.cancel();
                }
            }
        };
        if stop == Stop::Lost {
            self.metrics.ended(&job, "abandoned");
            return Ok(());
        }
        // A checkpoint the drained job uploaded as it stopped goes to the coordinator before
        // the lease is handed back, so the next attempt resumes from it.
        let last = progress_rx.borrow().clone();
        if stop == Stop::Shutdown && last.checkpoint != reported_checkpoint {
            let req = pb::HeartbeatRequest {
                worker_id: worker_id.clone(),
                job_id: job.job_id,
                token,
                progress: Some(last),
            };
            if let Err(s) = self.client.clone().heartbeat(req).await {
                tracing::warn!(job = %job.job_key, error = %s.message(), "the drained job's checkpoint was not reported");
            }
        }
        let (call, answer) = match (outcome, stop == Stop::Shutdown) {
            (Ok(metrics), _) => {
                let req = pb::CompleteRequest {
                    worker_id: worker_id.clone(),
                    job_id: job.job_id,
                    token,
                    metrics: Some(metrics),
                };
                let answer = self
                    .retry("Complete", |mut c| {
                        let req = req.clone();
                        async move {
                            c.complete(req)
                                .await
                                .map(|r| r.map(|_| "succeeded".to_owned()))
                        }
                    })
                    .await?;
                ("Complete", answer)
            }
            (Err(err), shutting_down) => {
                let req = pb::FailRequest {
                    worker_id: worker_id.clone(),
                    job_id: job.job_id,
                    token,
                    error: err.message.clone(),
                    retryable: err.retryable,
                    release: shutting_down,
                };
                let answer = self
                    .retry("Fail", |mut c| {
                        let req = req.clone();
                        async move { c.fail(req).await.map(|r| r.map(|f| f.state)) }
                    })
                    .await?;
                if !shutting_down {
                    tracing::warn!(job = %job.job_key, error = %err.message, "job failed");
                }
                ("Fail", answer)
            }
        };
        match answer {
            Ok(state) => {
                let outcome = match (call, stop == Stop::Shutdown) {
                    ("Complete", _) => "succeeded",
                    (_, true) => "released",
                    _ => "failed",
                };
                self.metrics.ended(&job, outcome);
                tracing::info!(job = %job.job_key, %state, "reported");
            }
            Err(s) => {
                // Stale token or cancelled sweep: someone else owns the job now.
                self.metrics.ended(&job, "abandoned");
                tracing::warn!(job = %job.job_key, error = %s.message(), "{call} rejected; result dropped");
            }
        }
        Ok(())
    }
}

fn panic_message(e: tokio::task::JoinError) -> String {
    let p = e.into_panic();
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Runs a worker until `shutdown` fires (running jobs are stopped and their
/// leases handed back), `max_jobs` are done, or it has been idle for
/// `exit_when_idle`.
pub async fn run_worker(
    cfg: WorkerConfig,
    registry: Registry,
    shutdown: CancellationToken,
) -> Result<WorkerSummary> {
    let channel = asdsweep_shared::remote::endpoint(&cfg.coordinator, &cfg.tls)
        .map_err(|e| Error::Address(cfg.coordinator.clone(), e))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .connect_lazy();
    let bearer = Bearer::new(cfg.token.as_deref())
        .map_err(|e| Error::Address(cfg.coordinator.clone(), e))?;
    let data = cfg
        .data_root
        .as_deref()
        .map(DataRoot::open)
        .transpose()?
        .map(|d| {
            let d = match &cfg.feature_cache {
                Some(dir) => d.with_feature_cache(Some(dir.clone())),
                None => d,
            };
            Arc::new(match &cfg.view_cache {
                Some(dir) => d.with_view_cache(dir.clone()),
                None => d,
            })
        });
    let shared = Arc::new(Shared {
        client: WorkerServiceClient::with_interceptor(channel.clone(), bearer.clone()),
        artifacts: Artifacts::new(
            ArtifactServiceClient::with_interceptor(channel, bearer),
            cfg.cache_dir.clone(),
        ),
        data,
        registry,
        identity: Mutex::new((String::new(), Duration::from_secs(5))),
        shutdown,
        started: AtomicU64::new(0),
        metrics: WorkerMetrics::new(),
        cfg,
    });
    let stop_metrics = CancellationToken::new();
    let _stop_metrics_on_exit = stop_metrics.clone().drop_guard();
    if let Some(at) = shared.cfg.metrics_listen {
        let listener = asdsweep_shared::telemetry::bind(at)
            .await
            .map_err(Error::Metrics)?;
        tracing::info!(addr = %listener.local_addr().map_or(at, |a| a), "worker metrics at /metrics");
        let served = asdsweep_shared::telemetry::serve_metrics(
            listener,
            shared.metrics.registry().clone(),
            None,
            stop_metrics.cancelled_owned(),
        );
        tokio::spawn(async move {
            if let Err(e) = served.await {
                tracing::error!(error = %e, "the worker's metrics server failed");
            }
        });
    }
    if let Err(e) = shared.register().await {
        if shared.shutdown.is_cancelled() {
            return Ok(WorkerSummary::default());
        }
        return Err(e);
    }
    let slots: Vec<_> = (0..shared.cfg.slots.max(1))
        .map(|_| tokio::spawn(shared.clone().slot_loop()))
        .collect();
    let mut first_error = None;
    for s in slots {
        match s.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => first_error = first_error.or(Some(e)),
            Err(e) => tracing::error!(error = %e, "worker slot task failed"),
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let m = &shared.metrics;
    Ok(WorkerSummary {
        succeeded: m.attempts("succeeded"),
        failed: m.attempts("failed"),
        released: m.attempts("released"),
        abandoned: m.attempts("abandoned"),
    })
}
