//! Typed ids of the queue's rows and the lease's fencing token, so that a job
//! id cannot be passed where a token (or a sweep id) is meant.
//!
//! Each wraps the column's own type: the database schema and the wire format
//! are unchanged. The entities read and write them directly (sea-orm's
//! `DeriveValueType`); the gRPC handlers convert at the wire (`JobId(r.job_id)`,
//! `job.id.0`).

use sea_orm::{DbErr, DeriveValueType, TryFromU64};
use std::fmt;

/// A job (`jobs.id`; `job_id` on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, DeriveValueType)]
pub struct JobId(pub i64);

/// A sweep (`sweeps.id`; `sweep_id` on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, DeriveValueType)]
pub struct SweepId(pub i64);

/// A registered worker (`workers.id`, handed out at registration: `w-` and 16 hex digits).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, DeriveValueType)]
pub struct WorkerId(pub String);

/// The fencing token of a lease (`jobs.lease_token`; `token` on the wire). Every
/// claim of a job takes the next one, so a call carrying an older token comes
/// from a lease that has ended (see [`crate::queue::judge_lease`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, DeriveValueType)]
pub struct FencingToken(pub i64);

impl WorkerId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<String> for WorkerId {
    fn from(id: String) -> WorkerId {
        WorkerId(id)
    }
}

impl From<&str> for WorkerId {
    fn from(id: &str) -> WorkerId {
        WorkerId(id.to_owned())
    }
}

/// Worker ids are chosen by the coordinator, never by the database: a string
/// primary key has no auto-increment value to convert (as for `String`).
impl TryFromU64 for WorkerId {
    fn try_from_u64(_: u64) -> Result<Self, DbErr> {
        Err(DbErr::ConvertFromU64("WorkerId"))
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for SweepId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
