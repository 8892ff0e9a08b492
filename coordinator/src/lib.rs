//! The asdsweep coordinator: the durable job queue and the gRPC services that
//! hand its jobs to workers and its results to operators.
//!
//! - [`queue`]: job states and transition rules (pure).
//! - [`ids`]: typed ids of jobs, sweeps and workers, and the lease's fencing token.
//! - [`store`]: the queue on SQLite or Postgres through sea-orm.
//! - [`service`]: the gRPC services over the store.
//! - [`artifact`]: the content-addressed artifact directory.
//! - [`operator`]: the operator's calls and their rendering.
//! - [`report`]: a sweep's results.csv, correlations and HTML report.
//! - [`metrics`]: the Prometheus metrics (`/metrics`).
//! - [`server`]: starting and stopping a coordinator.
//! - [`bench`]: the queue benchmark.
//! - [`fleet`]: the fleet benchmark (N simulated workers against a coordinator process).
//! - [`local`]: a whole sweep on one machine (`asdsweep run`).

#![warn(missing_docs)]

pub mod artifact;
pub mod backup;
pub mod bench;
pub mod entity;
pub mod error;
pub mod fleet;
pub mod ids;
pub mod local;
pub mod metrics;
pub mod operator;
pub mod queue;
pub mod report;
pub mod server;
pub mod service;
pub mod store;

pub use error::{Error, Result};
pub use server::{Coordinator, CoordinatorConfig};
