//! The diagnostic `noop` kind, for tests and benchmarks only: it trains and
//! measures nothing. Parameters (from the spec's noop configs):
//! `sleep_ms` — how long the job takes; `fail_times` — the job fails its
//! first N attempts with a retryable error.

use crate::registry::{JobContext, JobError, JobKind, JobOutput};
use asdsweep_shared::family::Kind;
use asdsweep_shared::family::noop::{KIND, Params};
use futures::future::BoxFuture;
use std::time::Duration;

/// The diagnostic kind (see the module docs).
pub struct Noop;

impl JobKind for Noop {
    fn kind(&self) -> Kind {
        KIND
    }

    fn run(&self, ctx: JobContext) -> BoxFuture<'static, Result<JobOutput, JobError>> {
        Box::pin(async move {
            let p: Params = serde_json::from_value(ctx.params.clone()).map_err(|e| {
                JobError::permanent(format!("noop job {}: bad parameters: {e}", ctx.job.job_key))
            })?;
            if p.sleep_ms > 0 {
                tokio::select! {
                    _ = ctx.cancel.cancelled() => return Err(JobError::retryable("noop: cancelled")),
                    _ = tokio::time::sleep(Duration::from_millis(p.sleep_ms)) => {}
                }
            }
            if ctx.job.attempt <= p.fail_times {
                return Err(JobError::retryable(format!(
                    "noop: injected failure on attempt {} (fail_times = {})",
                    ctx.job.attempt, p.fail_times
                )));
            }
            Ok(JobOutput {
                proxy_metric: "noop".into(),
                extra_json:
                    serde_json::json!({ "slept_ms": p.sleep_ms, "attempt": ctx.job.attempt })
                        .to_string(),
                provenance_json: serde_json::json!({
                    "spec_hash": ctx.job.spec_hash,
                    "seed": ctx.job.seed,
                    "backend": "none",
                    "code_version": env!("CARGO_PKG_VERSION"),
                })
                .to_string(),
                ..Default::default()
            })
        })
    }
}
