//! Job kinds: a worker dispatches each leased job on its `kind` through one
//! [`Registry`]. This module knows no family: the built-in kinds are listed in
//! [`crate::families::builtin`], and a build or a test may add its own with [`Registry::with`].

use crate::artifacts::Artifacts;
use crate::data::DataRoot;
use asdsweep_shared::family::Kind;
use asdsweep_shared::proto::{Job, JobMetrics, Progress};
use futures::future::BoxFuture;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What a job needs while it runs.
#[derive(Clone)]
pub struct JobContext {
    /// The leased job.
    pub job: Job,
    /// Parsed `job.params_json`.
    pub params: serde_json::Value,
    /// Cancelled when the job must stop (sweep cancelled, lease lost, shutdown).
    pub cancel: CancellationToken,
    /// Cancelled, before `cancel`, when the worker is drained (SIGTERM): a training job
    /// saves a checkpoint of the epoch it is finishing before it stops, and the worker
    /// reports it before handing the lease back, so a preempted worker loses at most the
    /// epoch it was in.
    pub drain: CancellationToken,
    /// Latest progress; sent with every heartbeat, and at once when its `checkpoint` changes.
    pub progress: watch::Sender<Progress>,
    /// The coordinator's artifact store, with this worker's cache.
    pub artifacts: Artifacts,
    /// The worker's dataset root (`--data`), if it was given one.
    pub data: Option<Arc<DataRoot>>,
    /// The device jobs train on (`--device`: `cpu`, `cuda:0`).
    pub device: String,
}

/// A finished job's report.
pub type JobOutput = JobMetrics;

/// Why a job did not finish.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct JobError {
    /// What went wrong, naming the thing.
    pub message: String,
    /// False when retrying cannot help (bad parameters, unknown kind).
    pub retryable: bool,
}

impl JobError {
    /// A failure another attempt may not repeat.
    pub fn retryable(message: impl Into<String>) -> JobError {
        JobError {
            message: message.into(),
            retryable: true,
        }
    }
    /// A failure every attempt would repeat.
    pub fn permanent(message: impl Into<String>) -> JobError {
        JobError {
            message: message.into(),
            retryable: false,
        }
    }
}

/// A kind of job a worker can run.
pub trait JobKind: Send + Sync + 'static {
    /// The kind, as in `Job.kind` and the spec's `kind`.
    fn kind(&self) -> Kind;
    /// Runs one job. Must return soon after `ctx.cancel` fires.
    fn run(&self, ctx: JobContext) -> BoxFuture<'static, Result<JobOutput, JobError>>;
}

/// The job kinds a worker runs, by name.
#[derive(Clone, Default)]
pub struct Registry {
    kinds: BTreeMap<&'static str, Arc<dyn JobKind>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Adds a kind.
    pub fn with(mut self, kind: impl JobKind) -> Registry {
        self.kinds.insert(kind.kind().as_str(), Arc::new(kind));
        self
    }

    /// Names of the kinds, sorted.
    pub fn names(&self) -> Vec<String> {
        self.kinds.keys().map(|k| k.to_string()).collect()
    }

    /// Runs a job on its kind; an unknown kind is a permanent failure.
    pub fn dispatch(&self, ctx: JobContext) -> BoxFuture<'static, Result<JobOutput, JobError>> {
        match self.kinds.get(ctx.job.kind.as_str()) {
            Some(kind) => kind.run(ctx),
            None => {
                let msg = format!(
                    "unknown job kind \"{}\" for job {}: this worker runs {}",
                    ctx.job.kind,
                    ctx.job.job_key,
                    self.names().join(", ")
                );
                Box::pin(async move { Err(JobError::permanent(msg)) })
            }
        }
    }
}
