//! The study's autoencoder family: the DCASE baseline autoencoder trained per machine type
//! on stacked log-mel frames; its proxy metric is the mean L1 reconstruction error of the
//! test normals (lower is better).

use serde::{Deserialize, Serialize};

use super::{Direction, Family, GridContext, Kind, ProxyMetric, Schedule, params_json};
use crate::spec::{Backend, DatasetSpec, Result, TrainingScope, check_range};

/// The kind that runs it.
pub const KIND: Kind = Kind::new("autoencoder");

/// Its proxy metric: mean L1 reconstruction error on the test normals.
pub const PROXY: ProxyMetric = ProxyMetric {
    name: "ae_l1",
    direction: Direction::LowerIsBetter,
};

/// The `autoencoder` section: training settings shared by its configs (defaults are the
/// study's), and the configs (hidden width × bottleneck width).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Autoencoder {
    /// Name in results; defaults to `ae`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Scheduling priority (higher runs first).
    #[serde(default)]
    pub priority: i32,
    /// Backends its jobs may run on: any of `flex`, `tch`, `cuda` (absent or empty: any
    /// worker); e.g. `["cuda", "tch"]` keeps a full-size model off CPU workers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<Backend>,
    /// Training epochs (1..=10000; the study: 200).
    #[serde(default = "defaults::epochs")]
    pub epochs: u32,
    /// Mini-batch size (2..=65536; the study: 128).
    #[serde(default = "defaults::batch_size")]
    pub batch_size: u32,
    /// Initial AdamW learning rate (0 < lr ≤ 1; the study: 5e-4).
    #[serde(default = "defaults::lr")]
    pub lr: f64,
    /// Epochs between learning-rate decays (≥ 1; the study: 50).
    #[serde(default = "defaults::lr_step_epochs")]
    pub lr_step_epochs: u32,
    /// Decay factor (0 < γ < 1; the study: 0.5).
    #[serde(default = "defaults::lr_gamma")]
    pub lr_gamma: f64,
    /// A checkpoint is saved and uploaded every this many epochs (≥ 1), and at the end.
    #[serde(default = "defaults::checkpoint_every")]
    pub checkpoint_every: u32,
    /// Consecutive log-mel frames stacked into one input row (1..=32; the study: 5).
    #[serde(default = "defaults::frames")]
    pub frames: u32,
    /// Mel bands (8..=256; the study: 128).
    #[serde(default = "defaults::n_mels")]
    pub n_mels: u32,
    /// The grid of configs ("checkpoints").
    pub configs: Vec<AeConfig>,
}

/// The study's autoencoder training settings.
mod defaults {
    pub fn epochs() -> u32 {
        200
    }
    pub fn batch_size() -> u32 {
        128
    }
    pub fn lr() -> f64 {
        5e-4
    }
    pub fn lr_step_epochs() -> u32 {
        50
    }
    pub fn lr_gamma() -> f64 {
        0.5
    }
    pub fn checkpoint_every() -> u32 {
        10
    }
    pub fn frames() -> u32 {
        5
    }
    pub fn n_mels() -> u32 {
        128
    }
}

/// One autoencoder config: the widths of its layers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AeConfig {
    /// Config name, unique within the family.
    pub name: String,
    /// Width of the hidden layers (1..=4096; the study: 64, 128, 256).
    pub hidden: u32,
    /// Width of the bottleneck (1..=hidden; the study: 4, 8, 16).
    pub latent: u32,
}

/// One job's parameters: the config's shape, the family's schedule and feature settings,
/// and the dataset. The grid writes them; the worker reads them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Width of the hidden layers.
    pub hidden: usize,
    /// Width of the bottleneck.
    pub latent: usize,
    /// Consecutive log-mel frames stacked into one input row.
    pub frames: usize,
    /// Mel bands.
    pub n_mels: usize,
    /// How it trains.
    pub schedule: Schedule,
    /// The data it reads.
    pub dataset: DatasetSpec,
}

/// The study's autoencoder schedule: the defaults of an `autoencoder` table.
pub fn study_schedule() -> Schedule {
    Schedule {
        epochs: defaults::epochs() as usize,
        batch_size: defaults::batch_size() as usize,
        lr: defaults::lr(),
        lr_step_epochs: defaults::lr_step_epochs() as usize,
        lr_gamma: defaults::lr_gamma(),
        checkpoint_every: defaults::checkpoint_every() as usize,
    }
}

impl Autoencoder {
    /// The training schedule its configs share.
    pub fn schedule(&self) -> Schedule {
        Schedule {
            epochs: self.epochs as usize,
            batch_size: self.batch_size as usize,
            lr: self.lr,
            lr_step_epochs: self.lr_step_epochs as usize,
            lr_gamma: self.lr_gamma,
            checkpoint_every: self.checkpoint_every as usize,
        }
    }
}

impl Family for Autoencoder {
    fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("ae")
    }

    fn priority(&self) -> i32 {
        self.priority
    }

    fn backends(&self) -> &[Backend] {
        &self.backends
    }

    fn training(&self) -> TrainingScope {
        TrainingScope::PerDevice
    }

    fn proxies(&self) -> Vec<ProxyMetric> {
        vec![PROXY]
    }

    fn config_names(&self) -> Vec<&str> {
        self.configs.iter().map(|c| c.name.as_str()).collect()
    }

    fn validate(&self, key: &str) -> Result<()> {
        // Batch normalisation over rows needs two of them.
        self.schedule().validate(key, 2)?;
        check_range(&format!("{key}.frames"), self.frames, 1..=32)?;
        check_range(&format!("{key}.n_mels"), self.n_mels, 8..=256)?;
        for (j, c) in self.configs.iter().enumerate() {
            check_range(&format!("{key}.configs[{j}].hidden"), c.hidden, 1..=4096)?;
            check_range(
                &format!("{key}.configs[{j}].latent"),
                c.latent,
                1..=c.hidden,
            )?;
        }
        Ok(())
    }

    fn jobs(&self, grid: &GridContext<'_>) -> Vec<(String, serde_json::Value)> {
        self.configs
            .iter()
            .map(|c| {
                let params = Params {
                    hidden: c.hidden as usize,
                    latent: c.latent as usize,
                    frames: self.frames as usize,
                    n_mels: self.n_mels as usize,
                    schedule: self.schedule(),
                    dataset: grid.dataset.clone(),
                };
                (c.name.clone(), params_json(&params))
            })
            .collect()
    }
}
