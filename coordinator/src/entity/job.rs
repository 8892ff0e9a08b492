//! A job of a sweep and its lease.
use crate::ids::{FencingToken, JobId, SweepId, WorkerId};
use crate::queue::JobState;
use sea_orm::entity::prelude::*;

/// Row of `jobs`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "jobs")]
pub struct Model {
    /// Job id.
    #[sea_orm(primary_key)]
    pub id: JobId,
    /// Owning sweep.
    pub sweep_id: SweepId,
    /// Stable key from grid expansion.
    pub job_key: String,
    /// Kind the worker dispatches on.
    pub kind: String,
    /// `run`, `train` or `eval`.
    pub stage: String,
    /// Family name.
    pub family: String,
    /// Config name.
    pub config: String,
    /// Machine type or `*`.
    pub device: String,
    /// Seed.
    pub seed: i64,
    /// Job parameters.
    pub params: Json,
    /// Queue state.
    pub state: JobState,
    /// Higher runs first.
    pub priority: i32,
    /// Attempts started so far.
    pub attempts: i32,
    /// Attempts allowed before `dead`.
    pub max_attempts: i32,
    /// Lease time-to-live.
    pub lease_ttl_ms: i64,
    /// First retry delay.
    pub backoff_base_ms: i64,
    /// Largest retry delay.
    pub backoff_max_ms: i64,
    /// Fencing token of the current (or last) lease.
    pub lease_token: FencingToken,
    /// When the current lease expires.
    pub lease_expires_at_ms: Option<i64>,
    /// Worker holding (or last holding) the lease.
    pub worker_id: Option<WorkerId>,
    /// A retried job waits until then.
    pub not_before_ms: i64,
    /// Last failure, kept after retries and on `dead`.
    pub last_error: Option<String>,
    /// Number of jobs waiting for this one.
    pub dependents: i32,
    /// Last progress report of the running attempt.
    pub progress: Option<Json>,
    /// Creation time.
    pub created_at_ms: i64,
    /// Start of the latest attempt.
    pub started_at_ms: Option<i64>,
    /// End of the job.
    pub finished_at_ms: Option<i64>,
    /// Latest checkpoint (sha256) reported by any attempt; kept across claims so a retry resumes.
    pub checkpoint: Option<String>,
    /// Backends a worker must have to be leased this job, comma-separated (`cuda,tch`); NULL: any.
    pub backends: Option<String>,
}

/// No relations are navigated through the ORM.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
