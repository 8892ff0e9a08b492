//! The study's source-separation family: a CMGAN-style conformer separator trained per
//! target machine type to pull that type's sound out of a mixture with another type's;
//! its proxy metric is SI-SDR on held-out mixtures (higher is better) — the one proxy
//! task whose quality the study found to track anomaly-detection quality.

use serde::{Deserialize, Serialize};

use super::{Direction, Family, GridContext, Kind, ProxyMetric, Schedule, params_json};
use crate::spec::{Backend, DatasetSpec, Result, SpecError, TrainingScope, check_range};

/// The kind that runs it.
pub const KIND: Kind = Kind::new("separation");

const fn higher(name: &'static str) -> ProxyMetric {
    ProxyMetric {
        name,
        direction: Direction::HigherIsBetter,
    }
}

/// Its proxy metric: mean SI-SDR (dB) of the separated test-normal mixtures over the
/// SNRs [`PROXY_SNRS_DB`] (the mean of the three per-SNR means).
pub const PROXY: ProxyMetric = higher("si_sdr");

/// The SNRs (dB) of the proxy's mixtures, with the metric of each one's mean SI-SDR.
pub const PROXY_SNRS_DB: [(i32, ProxyMetric); 3] = [
    (-5, higher("si_sdr_m5db")),
    (0, higher("si_sdr_0db")),
    (5, higher("si_sdr_5db")),
];

/// Mean SI-SDR of the unprocessed mixtures against their targets (over every SNR): the
/// baseline the separator improves on.
pub const UNPROCESSED: ProxyMetric = higher("si_sdr_unprocessed");

/// Every metric it reports, the main one first.
pub fn proxies() -> Vec<ProxyMetric> {
    let mut all = vec![PROXY];
    all.extend(PROXY_SNRS_DB.iter().map(|(_, m)| *m));
    all.push(UNPROCESSED);
    all
}

/// The `separation` section: training and evaluation settings shared by its configs
/// (defaults are the study's), and the configs (channels × two-stage blocks).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Separation {
    /// Name in results; defaults to `separation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Scheduling priority (higher runs first).
    #[serde(default)]
    pub priority: i32,
    /// Backends its jobs may run on: any of `flex`, `tch`, `cuda` (absent or empty: any worker).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<Backend>,
    /// Training epochs (1..=10000; the study: 200).
    #[serde(default = "defaults::epochs")]
    pub epochs: u32,
    /// Mixtures per mini-batch (1..=65536; the study: 12).
    #[serde(default = "defaults::batch_size")]
    pub batch_size: u32,
    /// Initial AdamW learning rate (0 < lr ≤ 1; the study: 5e-4).
    #[serde(default = "defaults::lr")]
    pub lr: f64,
    /// Epochs between learning-rate decays (≥ 1; the study: 40).
    #[serde(default = "defaults::lr_step_epochs")]
    pub lr_step_epochs: u32,
    /// Decay factor (0 < γ < 1; the study: 0.5).
    #[serde(default = "defaults::lr_gamma")]
    pub lr_gamma: f64,
    /// A checkpoint is saved and uploaded every this many epochs (≥ 1), and at the end.
    #[serde(default = "defaults::checkpoint_every")]
    pub checkpoint_every: u32,
    /// Mixtures per SNR the proxy metric is measured on (1..=100000; the study: 1000).
    #[serde(default = "defaults::proxy_mixtures")]
    pub proxy_mixtures: u32,
    /// The grid of configs ("checkpoints").
    pub configs: Vec<SeparationConfig>,
}

/// The study's separation settings.
mod defaults {
    pub fn epochs() -> u32 {
        200
    }
    pub fn batch_size() -> u32 {
        12
    }
    pub fn lr() -> f64 {
        5e-4
    }
    pub fn lr_step_epochs() -> u32 {
        40
    }
    pub fn lr_gamma() -> f64 {
        0.5
    }
    pub fn checkpoint_every() -> u32 {
        10
    }
    pub fn proxy_mixtures() -> u32 {
        1000
    }
}

/// One separator config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeparationConfig {
    /// Config name, unique within the family.
    pub name: String,
    /// Channels `C` of every stage (4..=512, a multiple of 4 for the 4 attention heads;
    /// the study: 64, 128).
    pub channels: u32,
    /// Two-stage conformer blocks `cb` (0..=8; the study: 0, 1, 2, 4).
    pub blocks: u32,
}

/// One job's parameters. The grid writes them; the worker reads them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Channels of every stage.
    pub channels: usize,
    /// Two-stage conformer blocks.
    pub blocks: usize,
    /// Mixtures per SNR of the proxy metric.
    pub proxy_mixtures: usize,
    /// Every machine type of the sweep, sorted: the interferers come from the others.
    pub machine_types: Vec<String>,
    /// How it trains.
    pub schedule: Schedule,
    /// The data it reads.
    pub dataset: DatasetSpec,
}

/// The study's separation schedule: the defaults of a `separation` table.
pub fn study_schedule() -> Schedule {
    let defaults: Separation = serde_json::from_value(serde_json::json!({ "configs": [] }))
        .expect("a table of defaults parses");
    defaults.schedule()
}

impl Separation {
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

impl Family for Separation {
    fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("separation")
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
        proxies()
    }

    fn config_names(&self) -> Vec<&str> {
        self.configs.iter().map(|c| c.name.as_str()).collect()
    }

    fn validate(&self, key: &str) -> Result<()> {
        self.schedule().validate(key, 1)?;
        check_range(
            &format!("{key}.proxy_mixtures"),
            self.proxy_mixtures,
            1..=100_000,
        )?;
        for (j, c) in self.configs.iter().enumerate() {
            let at = format!("{key}.configs[{j}]");
            check_range(&format!("{at}.channels"), c.channels, 4..=512)?;
            if !c.channels.is_multiple_of(4) {
                return Err(SpecError::Invalid {
                    key: format!("{at}.channels"),
                    problem: format!(
                        "is {}; expected a multiple of 4 (4 attention heads share the channels)",
                        c.channels
                    ),
                });
            }
            check_range(&format!("{at}.blocks"), c.blocks, 0..=8)?;
        }
        Ok(())
    }

    fn jobs(&self, grid: &GridContext<'_>) -> Vec<(String, serde_json::Value)> {
        self.configs
            .iter()
            .map(|c| {
                let params = Params {
                    channels: c.channels as usize,
                    blocks: c.blocks as usize,
                    proxy_mixtures: self.proxy_mixtures as usize,
                    machine_types: grid.machine_types.to_vec(),
                    schedule: self.schedule(),
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

    fn section(configs: serde_json::Value) -> Separation {
        serde_json::from_value(serde_json::json!({ "configs": configs })).unwrap()
    }

    #[test]
    fn defaults_are_the_studys_and_each_config_becomes_one_job_with_every_machine_type() {
        let s =
            section(serde_json::json!([{ "name": "sep_cb2_ch64", "channels": 64, "blocks": 2 }]));
        assert_eq!(s.name(), "separation");
        assert_eq!((s.epochs, s.batch_size, s.lr_step_epochs), (200, 12, 40));
        assert_eq!((s.lr, s.lr_gamma, s.proxy_mixtures), (5e-4, 0.5, 1000));
        s.validate("family[0]").unwrap();
        let ds = DatasetSpec {
            path: "d".into(),
            ..DatasetSpec::default()
        };
        let types = ["fan".to_owned(), "valve".to_owned()];
        let jobs = s.jobs(&GridContext {
            dataset: &ds,
            machine_types: &types,
        });
        assert_eq!(jobs.len(), 1);
        let p: Params = serde_json::from_value(jobs[0].1.clone()).unwrap();
        assert_eq!((p.channels, p.blocks, p.proxy_mixtures), (64, 2, 1000));
        assert_eq!(p.machine_types, types);
        assert_eq!(p.schedule, study_schedule());
        let names: Vec<_> = s.proxies().iter().map(|m| m.name).collect();
        assert_eq!(
            names,
            [
                "si_sdr",
                "si_sdr_m5db",
                "si_sdr_0db",
                "si_sdr_5db",
                "si_sdr_unprocessed"
            ]
        );
    }

    #[test]
    fn channels_that_do_not_split_into_four_heads_are_named() {
        let s = section(serde_json::json!([{ "name": "c", "channels": 30, "blocks": 1 }]));
        let err = s.validate("family[2]").unwrap_err().to_string();
        assert!(
            err.contains("family[2].configs[0].channels") && err.contains("multiple of 4"),
            "{err}"
        );
        let s = section(serde_json::json!([{ "name": "c", "channels": 64, "blocks": 9 }]));
        let err = s.validate("family[2]").unwrap_err().to_string();
        assert!(err.contains("configs[0].blocks"), "{err}");
        let err = serde_json::from_value::<Separation>(
            serde_json::json!({ "configs": [], "proxy_mixturez": 3 }),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("proxy_mixturez"), "{err}");
    }
}
