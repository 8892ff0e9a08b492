//! The coordinator's one error type and its mapping to gRPC status codes.

use crate::ids::{FencingToken, JobId};
use crate::queue::JobState;
use tonic::{Code, Status};

/// Everything that can go wrong in the coordinator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A sweep, job, worker or artifact that does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for, e.g. `sweep "demo"`.
        what: String,
    },
    /// A call carried a fencing token that is no longer current: the lease
    /// expired and the job was re-leased, or the job already finished.
    #[error(
        "stale lease for job {job_key} (id {job_id}): token {token} is not current (current token {current}, state {state})"
    )]
    StaleLease {
        /// The job's id.
        job_id: JobId,
        /// The job's key.
        job_key: String,
        /// The token the caller sent.
        token: FencingToken,
        /// The job's current token.
        current: FencingToken,
        /// The job's current state.
        state: JobState,
    },
    /// The job's sweep was cancelled while it ran.
    #[error("job {job_key} (id {job_id}) was cancelled with its sweep")]
    Cancelled {
        /// The job's id.
        job_id: JobId,
        /// The job's key.
        job_key: String,
    },
    /// The request itself is malformed.
    #[error("invalid request: {0}")]
    InvalidArgument(String),
    /// A sweep spec was rejected.
    #[error(transparent)]
    Spec(#[from] asdsweep_shared::spec::SpecError),
    /// The database failed.
    #[error("database error: {0}")]
    Db(#[from] sea_orm::DbErr),
    /// The coordinator's own configuration is unusable (e.g. a TLS file).
    #[error("{0}")]
    Config(String),
    /// A report could not be computed or rendered.
    #[error("report: {0}")]
    Report(String),
    /// The disk failed (artifact store, report files).
    #[error("I/O error on {path}: {source}")]
    Io {
        /// File involved.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
}

/// Result alias for the coordinator.
pub type Result<T> = std::result::Result<T, Error>;

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        let code = match &e {
            Error::NotFound { .. } => Code::NotFound,
            Error::StaleLease { .. } => Code::FailedPrecondition,
            Error::Cancelled { .. } => Code::Aborted,
            Error::InvalidArgument(_) | Error::Spec(_) => Code::InvalidArgument,
            Error::Db(_) | Error::Io { .. } => Code::Unavailable,
            Error::Report(_) | Error::Config(_) => Code::Internal,
        };
        if code == Code::Unavailable {
            tracing::error!(error = %e, "internal failure answered as UNAVAILABLE");
        }
        Status::new(code, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_lease_is_a_failed_precondition_that_names_the_job() {
        let e = Error::StaleLease {
            job_id: JobId(7),
            job_key: "ae/c1/fan/s1/train".into(),
            token: FencingToken(1),
            current: FencingToken(2),
            state: JobState::Leased,
        };
        let s = Status::from(e);
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert!(s.message().contains("ae/c1/fan/s1/train") && s.message().contains("token 1"));
    }
}
