//! The diagnostic `noop` family, for tests and benchmarks: its jobs sleep and may fail on
//! purpose; they read no data, train nothing and measure nothing.

use serde::{Deserialize, Serialize};

use super::{Family, GridContext, Kind, ProxyMetric, params_json};
use crate::spec::{Backend, Result, TrainingScope};

/// The kind that runs it.
pub const KIND: Kind = Kind::new("noop");

/// The `noop` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Noop {
    /// Name in results; defaults to `noop`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Scheduling priority (higher runs first).
    #[serde(default)]
    pub priority: i32,
    /// Backends its jobs may run on: any of `flex`, `tch`, `cuda` (absent or empty: any
    /// worker); e.g. `["cuda", "tch"]` keeps a full-size model off CPU workers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<Backend>,
    /// Whether to model a train → evaluate dependency, and at which scope.
    #[serde(default)]
    pub training: TrainingScope,
    /// The grid of configs ("checkpoints").
    pub configs: Vec<Params>,
}

/// One config of the `noop` family, which is also its jobs' parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Config name, unique within the family.
    pub name: String,
    /// How long each job sleeps, in milliseconds.
    #[serde(default)]
    pub sleep_ms: u64,
    /// The job fails its first `fail_times` attempts with a retryable error.
    #[serde(default)]
    pub fail_times: u32,
}

impl Family for Noop {
    fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("noop")
    }

    fn priority(&self) -> i32 {
        self.priority
    }

    fn backends(&self) -> &[Backend] {
        &self.backends
    }

    fn training(&self) -> TrainingScope {
        self.training
    }

    fn proxies(&self) -> Vec<ProxyMetric> {
        Vec::new()
    }

    fn config_names(&self) -> Vec<&str> {
        self.configs.iter().map(|c| c.name.as_str()).collect()
    }

    fn validate(&self, _key: &str) -> Result<()> {
        Ok(())
    }

    fn jobs(&self, _grid: &GridContext<'_>) -> Vec<(String, serde_json::Value)> {
        self.configs
            .iter()
            .map(|c| (c.name.clone(), params_json(c)))
            .collect()
    }
}
