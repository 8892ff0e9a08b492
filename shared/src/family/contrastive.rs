//! The study's contrastive family: a ResNet trained once across every machine type with
//! SimCLR or SimSiam on pairs of augmented views of each training clip
//! ([`crate::augment`]); its proxy metric is the uniformity of the backbone's embeddings of
//! seeded view pairs (lower is better), with their alignment as a further metric.

use serde::{Deserialize, Serialize};

use super::classifier::{ClassifierConfig, validate_configs};
use super::{Direction, Family, GridContext, Kind, ProxyMetric, Schedule, params_json};
use crate::augment::Augmentations;
use crate::spec::{Backend, DatasetSpec, Result, TrainingScope, check_range};

/// The kind that runs it.
pub const KIND: Kind = Kind::new("contrastive");

/// Its proxy metric: uniformity of the normalised backbone embeddings of view pairs.
pub const PROXY: ProxyMetric = ProxyMetric {
    name: "uniformity",
    direction: Direction::LowerIsBetter,
};

/// A further metric of its result: mean squared distance between a pair's two embeddings.
pub const ALIGNMENT: &str = "alignment";

/// The views' seed when a spec names none.
pub const VIEW_SEED: u64 = 42;

/// The self-supervised objective, which also names the family by default (the study's
/// "SimCLR" and "SimSiam").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// NT-Xent at τ 0.1 over the batch's 2B views (family name `simclr`).
    SimClr,
    /// Negative cosine between predictions and stop-gradient projections (family name `simsiam`).
    SimSiam,
}

impl Mode {
    /// The family name a mode gives when `name` is left out.
    pub fn default_name(self) -> &'static str {
        match self {
            Mode::SimClr => "simclr",
            Mode::SimSiam => "simsiam",
        }
    }
}

/// The `contrastive` section: one mode, training and view settings shared by its configs
/// (defaults are the study's), and the configs (ResNet depth × width).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contrastive {
    /// Name in results; defaults to `simclr` or `simsiam` after the mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Scheduling priority (higher runs first).
    #[serde(default)]
    pub priority: i32,
    /// Backends its jobs may run on: any of `flex`, `tch`, `cuda` (absent or empty: any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<Backend>,
    /// The objective: `simclr` or `simsiam`.
    pub mode: Mode,
    /// Training epochs (1..=10000; the study: 200).
    #[serde(default = "defaults::epochs")]
    pub epochs: u32,
    /// View pairs per mini-batch (2..=65536; the study: 96; BatchNorm needs two rows).
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
    /// Log-mel frames of a training view (1..=100000; the study: 313): the centred window,
    /// shorter views padded with their quietest value.
    #[serde(default = "defaults::crop_frames")]
    pub crop_frames: u32,
    /// Mel bands (8..=256; the study: 128).
    #[serde(default = "defaults::n_mels")]
    pub n_mels: u32,
    /// Which reading of the authors' augmentation code: `study` (the default) or `as_named`.
    #[serde(default)]
    pub augmentations: Augmentations,
    /// Seed of the views' noise and mask positions: the same seed gives the same views,
    /// byte for byte (the study's global NumPy seed was 42).
    #[serde(default = "defaults::view_seed")]
    pub view_seed: u64,
    /// The grid of configs ("checkpoints").
    pub configs: Vec<ClassifierConfig>,
}

/// The study's contrastive training settings (`train_contrastive.py`).
mod defaults {
    pub fn epochs() -> u32 {
        200
    }
    pub fn batch_size() -> u32 {
        96
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
    pub fn crop_frames() -> u32 {
        313
    }
    pub fn n_mels() -> u32 {
        128
    }
    pub fn view_seed() -> u64 {
        super::VIEW_SEED
    }
}

/// One job's parameters: the config's backbone, the family's mode, schedule, feature and
/// view settings, the machine types (all of whose training clips it trains on) and the
/// dataset. The grid writes them; the worker reads them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The objective.
    pub mode: Mode,
    /// ResNet depth.
    pub depth: usize,
    /// Scales every stage's channel width.
    pub width_multiplier: f64,
    /// Scales the number of blocks per stage.
    pub depth_multiplier: f64,
    /// Log-mel frames of a training view.
    pub crop_frames: usize,
    /// Mel bands.
    pub n_mels: usize,
    /// Which reading of the authors' augmentation code.
    pub augmentations: Augmentations,
    /// Seed of the views.
    pub view_seed: u64,
    /// How it trains.
    pub schedule: Schedule,
    /// Every machine type of the sweep, sorted.
    pub machine_types: Vec<String>,
    /// The data it reads.
    pub dataset: DatasetSpec,
}

impl Contrastive {
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

impl Family for Contrastive {
    fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(self.mode.default_name())
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
        self.schedule().validate(key, 2)?;
        check_range(&format!("{key}.crop_frames"), self.crop_frames, 1..=100_000)?;
        check_range(&format!("{key}.n_mels"), self.n_mels, 8..=256)?;
        validate_configs(key, &self.configs)
    }

    fn jobs(&self, grid: &GridContext<'_>) -> Vec<(String, serde_json::Value)> {
        self.configs
            .iter()
            .map(|c| {
                let params = Params {
                    mode: self.mode,
                    depth: c.depth as usize,
                    width_multiplier: c.width_multiplier,
                    depth_multiplier: c.depth_multiplier,
                    crop_frames: self.crop_frames as usize,
                    n_mels: self.n_mels as usize,
                    augmentations: self.augmentations,
                    view_seed: self.view_seed,
                    schedule: self.schedule(),
                    machine_types: grid.machine_types.to_vec(),
                    dataset: grid.dataset.clone(),
                };
                (c.name.clone(), params_json(&params))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(extra: &str) -> Contrastive {
        toml::from_str(&format!(
            "mode = \"simsiam\"\n{extra}\n[[configs]]\nname = \"r18\"\ndepth = 18\n"
        ))
        .expect("section parses")
    }

    #[test]
    fn defaults_are_the_studys() {
        let c = section("");
        assert_eq!(c.name(), "simsiam");
        assert_eq!(c.augmentations, Augmentations::Study);
        assert_eq!(c.view_seed, 42);
        let s = c.schedule();
        assert_eq!(
            (s.epochs, s.batch_size, s.lr, s.lr_step_epochs, s.lr_gamma),
            (200, 96, 5e-4, 50, 0.5)
        );
        assert_eq!((c.crop_frames, c.n_mels), (313, 128));
        assert_eq!(c.training(), TrainingScope::Global);
        assert_eq!(c.proxies()[0].direction, Direction::LowerIsBetter);
        c.validate("family[0]").unwrap();
    }

    #[test]
    fn bad_settings_name_their_key() {
        let err = section("batch_size = 1").validate("family[2]").unwrap_err();
        assert!(err.to_string().contains("family[2].batch_size"), "{err}");
        let mut c = section("augmentations = \"as_named\"");
        assert_eq!(c.augmentations, Augmentations::AsNamed);
        c.configs[0].depth = 20;
        let err = c.validate("family[0]").unwrap_err().to_string();
        assert!(err.contains("family[0].configs[0].depth"), "{err}");
        let err = toml::from_str::<Contrastive>(
            "mode = \"simclr\"\naugmentations = \"named\"\nconfigs = []\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("study") && err.contains("as_named"), "{err}");
    }

    #[test]
    fn each_config_is_one_job_with_the_sections_settings() {
        let c = section("view_seed = 7");
        let dataset: DatasetSpec = toml::from_str("path = \"data\"").expect("dataset");
        let machines = vec!["fan".to_string(), "pump".to_string()];
        let jobs = c.jobs(&GridContext {
            dataset: &dataset,
            machine_types: &machines,
        });
        assert_eq!(jobs.len(), 1);
        let p: Params = serde_json::from_value(jobs[0].1.clone()).expect("params");
        assert_eq!((p.mode, p.depth, p.view_seed), (Mode::SimSiam, 18, 7));
        assert_eq!(p.machine_types, machines);
    }
}
