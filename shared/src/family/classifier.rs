//! The study's classification family: a ResNet trained once across every machine type
//! to name the machine type, with a cross-entropy or ArcFace head; its proxy metric is the
//! macro-F1 of that prediction on held-out training clips (higher is better).

use serde::{Deserialize, Serialize};

use super::{Direction, Family, GridContext, Kind, ProxyMetric, Schedule, params_json};
use crate::spec::{
    Backend, DatasetSpec, Result, SpecError, TrainingScope, check_open, check_range,
};

/// The kind that runs it.
pub const KIND: Kind = Kind::new("classifier");

/// Its proxy metric: macro-F1 of the machine-type prediction on held-out clips.
pub const PROXY: ProxyMetric = ProxyMetric {
    name: "macro_f1",
    direction: Direction::HigherIsBetter,
};

/// The classifier's head, which also names the family by default (the study's "CE" and "ArcFace").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Head {
    /// A linear layer trained with cross-entropy (family name `ce`).
    CrossEntropy,
    /// An ArcFace head trained with the additive angular margin loss (family name `arcface`).
    #[serde(rename = "arcface")]
    ArcFace,
}

impl Head {
    /// The family name a head gives when `name` is left out.
    pub fn default_name(self) -> &'static str {
        match self {
            Head::CrossEntropy => "ce",
            Head::ArcFace => "arcface",
        }
    }
}

/// The `classifier` section: one head, training settings shared by its configs (defaults
/// are the study's), and the configs (ResNet depth × width).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Classifier {
    /// Name in results; defaults to `ce` or `arcface` after the head.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Scheduling priority (higher runs first).
    #[serde(default)]
    pub priority: i32,
    /// Backends its jobs may run on: any of `flex`, `tch`, `cuda` (absent or empty: any
    /// worker); e.g. `["cuda", "tch"]` keeps a full-size model off CPU workers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<Backend>,
    /// The head: `cross_entropy` or `arcface`.
    pub head: Head,
    /// Training epochs (1..=10000; the study: 200).
    #[serde(default = "defaults::epochs")]
    pub epochs: u32,
    /// Mini-batch size (1..=65536; the study: 64).
    #[serde(default = "defaults::batch_size")]
    pub batch_size: u32,
    /// Initial AdamW learning rate (0 < lr ≤ 1; the study: 1e-5).
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
    /// Log-mel frames the model reads per clip (1..=100000; the study: 313, 10 s at 16 kHz):
    /// training reads a random window of this length, evaluation the centred one; shorter
    /// clips are padded with their quietest value.
    #[serde(default = "defaults::crop_frames")]
    pub crop_frames: u32,
    /// Mel bands (8..=256; the study: 128).
    #[serde(default = "defaults::n_mels")]
    pub n_mels: u32,
    /// ArcFace angular margin in radians (0 ≤ m < π/2; the study: 0.5); ignored by `cross_entropy`.
    #[serde(default = "defaults::arcface_margin")]
    pub arcface_margin: f64,
    /// ArcFace logit scale (0 < s ≤ 1000; the study: 30); ignored by `cross_entropy`.
    #[serde(default = "defaults::arcface_scale")]
    pub arcface_scale: f64,
    /// Share of each machine type's training clips held out for the proxy metric, macro-F1
    /// (0 < f < 1; default 0.1; at least one clip per machine type).
    #[serde(default = "defaults::held_out_fraction")]
    pub held_out_fraction: f64,
    /// The grid of configs ("checkpoints").
    pub configs: Vec<ClassifierConfig>,
}

/// The study's classifier training settings.
mod defaults {
    pub fn epochs() -> u32 {
        200
    }
    pub fn batch_size() -> u32 {
        64
    }
    pub fn lr() -> f64 {
        1e-5
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
    pub fn crop_frames() -> u32 {
        313
    }
    pub fn n_mels() -> u32 {
        128
    }
    pub fn arcface_margin() -> f64 {
        0.5
    }
    pub fn arcface_scale() -> f64 {
        30.0
    }
    pub fn held_out_fraction() -> f64 {
        0.1
    }
    pub fn multiplier() -> f64 {
        1.0
    }
}

/// ResNet depths a classifier config may name.
pub const RESNET_DEPTHS: [u32; 5] = [18, 34, 50, 101, 152];

/// One classifier config: the ResNet's depth and its scaling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifierConfig {
    /// Config name, unique within the family.
    pub name: String,
    /// ResNet depth: 18, 34, 50, 101 or 152.
    pub depth: u32,
    /// Scales every stage's channel width (0 < w ≤ 16; the study: 1.0).
    #[serde(default = "defaults::multiplier")]
    pub width_multiplier: f64,
    /// Scales the number of blocks per stage (0 < d ≤ 16; the study: 1.0).
    #[serde(default = "defaults::multiplier")]
    pub depth_multiplier: f64,
}

/// Checks each ResNet config of a family section at `key` (depth, multipliers).
pub(crate) fn validate_configs(key: &str, configs: &[ClassifierConfig]) -> Result<()> {
    for (j, c) in configs.iter().enumerate() {
        let ckey = format!("{key}.configs[{j}]");
        if !RESNET_DEPTHS.contains(&c.depth) {
            return Err(SpecError::Invalid {
                key: format!("{ckey}.depth"),
                problem: format!("is {}; allowed: 18, 34, 50, 101, 152", c.depth),
            });
        }
        for (name, value) in [
            ("width_multiplier", c.width_multiplier),
            ("depth_multiplier", c.depth_multiplier),
        ] {
            check_open(&format!("{ckey}.{name}"), value, 0.0, 16.0, true)?;
        }
    }
    Ok(())
}

/// One job's parameters: the config's backbone, the family's head, schedule and feature
/// settings, the machine types (classes) and the dataset. The grid writes them; the worker
/// reads them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The head.
    pub head: Head,
    /// ResNet depth.
    pub depth: usize,
    /// Scales every stage's channel width.
    pub width_multiplier: f64,
    /// Scales the number of blocks per stage.
    pub depth_multiplier: f64,
    /// Log-mel frames the model reads per clip.
    pub crop_frames: usize,
    /// Mel bands.
    pub n_mels: usize,
    /// ArcFace angular margin in radians.
    pub arcface_margin: f64,
    /// ArcFace logit scale.
    pub arcface_scale: f64,
    /// Share of each machine type's training clips held out for macro-F1.
    pub held_out_fraction: f64,
    /// How it trains.
    pub schedule: Schedule,
    /// Every machine type of the sweep, sorted: a class is an index into it.
    pub machine_types: Vec<String>,
    /// The data it reads.
    pub dataset: DatasetSpec,
}

/// The study's classifier schedule: the defaults of a `classifier` table.
pub fn study_schedule() -> Schedule {
    let defaults: Classifier =
        serde_json::from_value(serde_json::json!({ "head": "cross_entropy", "configs": [] }))
            .expect("a table of defaults parses");
    defaults.schedule()
}

impl Classifier {
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

impl Family for Classifier {
    fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(self.head.default_name())
    }

    fn priority(&self) -> i32 {
        self.priority
    }

    fn backends(&self) -> &[Backend] {
        &self.backends
    }

    fn training(&self) -> TrainingScope {
        TrainingScope::Global
    }

    fn proxies(&self) -> Vec<ProxyMetric> {
        vec![PROXY]
    }

    fn config_names(&self) -> Vec<&str> {
        self.configs.iter().map(|c| c.name.as_str()).collect()
    }

    fn validate(&self, key: &str) -> Result<()> {
        self.schedule().validate(key, 1)?;
        check_range(&format!("{key}.crop_frames"), self.crop_frames, 1..=100_000)?;
        check_range(&format!("{key}.n_mels"), self.n_mels, 8..=256)?;
        if !(self.arcface_margin >= 0.0 && self.arcface_margin < std::f64::consts::FRAC_PI_2) {
            return Err(SpecError::Invalid {
                key: format!("{key}.arcface_margin"),
                problem: format!(
                    "is {}; allowed 0 <= arcface_margin < π/2 (radians)",
                    self.arcface_margin
                ),
            });
        }
        check_open(
            &format!("{key}.arcface_scale"),
            self.arcface_scale,
            0.0,
            1000.0,
            true,
        )?;
        check_open(
            &format!("{key}.held_out_fraction"),
            self.held_out_fraction,
            0.0,
            1.0,
            false,
        )?;
        validate_configs(key, &self.configs)
    }

    fn jobs(&self, grid: &GridContext<'_>) -> Vec<(String, serde_json::Value)> {
        self.configs
            .iter()
            .map(|c| {
                let params = Params {
                    head: self.head,
                    depth: c.depth as usize,
                    width_multiplier: c.width_multiplier,
                    depth_multiplier: c.depth_multiplier,
                    crop_frames: self.crop_frames as usize,
                    n_mels: self.n_mels as usize,
                    arcface_margin: self.arcface_margin,
                    arcface_scale: self.arcface_scale,
                    held_out_fraction: self.held_out_fraction,
                    schedule: self.schedule(),
                    machine_types: grid.machine_types.to_vec(),
                    dataset: grid.dataset.clone(),
                };
                (c.name.clone(), params_json(&params))
            })
            .collect()
    }
}
