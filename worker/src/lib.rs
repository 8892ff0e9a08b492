//! The asdsweep worker: pulls jobs from a coordinator over gRPC and runs them
//! through the job-kind [`registry`].
//!
//! - [`registry`]: the job kinds this worker can run and how they are called.
//! - [`noop`]: the diagnostic `noop` kind.
//! - [`backend`]: `--device` to a burn device.
//! - [`conv`]: 2-D convolution with a faster weight gradient on flex.
//! - [`bench`]: training throughput (`asdsweep bench train`).
//! - [`families`]: the model families (training with burn).
//! - [`execution_loop`]: register, lease, heartbeat, complete or fail.
//! - [`metrics`]: the worker's Prometheus metrics (`--metrics-listen`).
//! - [`artifacts`]: uploads to and verified, cached downloads from the artifact service.
//! - [`data`]: the `--data` root, dataset manifests and the log-mel cache.

#![warn(missing_docs)]

pub mod artifacts;
pub mod backend;
pub mod bench;
pub mod conv;
pub mod data;
pub mod dropout;
pub mod execution_loop;
pub mod families;
pub mod metrics;
pub mod norm;
pub mod progress;
pub mod registry;
pub mod softmax;

pub use execution_loop::{WorkerConfig, WorkerSummary, run_worker};
pub use registry::{JobContext, JobError, JobKind, JobOutput, Registry};
