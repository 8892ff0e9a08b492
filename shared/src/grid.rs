//! Expansion of a spec into jobs: proxy family × config × machine type × seed.
//!
//! Pure and deterministic: the same spec always yields the same job keys in
//! the same order, so launching a spec twice never duplicates work. Training
//! jobs are deduplicated by (family, config, training scope, seed); evaluation
//! jobs depend on their training job.

use crate::family::GridContext;
use crate::spec::{Backend, Spec, TrainingScope};
use serde::{Deserialize, Serialize};

/// Device label of a job that spans every machine type (global training).
pub const ALL_DEVICES: &str = "*";

/// What a job does within its family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Single-stage job: no training dependency.
    Run,
    /// Trains a checkpoint.
    Train,
    /// Evaluates a trained checkpoint on one machine type.
    Eval,
}

impl Stage {
    /// The stage's name as stored and sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Run => "run",
            Stage::Train => "train",
            Stage::Eval => "eval",
        }
    }
}

/// One job of an expanded sweep, before it is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// Stable key, unique within the sweep: `family/config/device/sSEED/stage`.
    pub key: String,
    /// Job kind the worker dispatches on (e.g. `noop`).
    pub kind: String,
    /// Stage within the family.
    pub stage: Stage,
    /// Family name.
    pub family: String,
    /// Config name.
    pub config: String,
    /// Machine type, or [`ALL_DEVICES`] for a global training job.
    pub device: String,
    /// Seed of this run.
    pub seed: u64,
    /// Parameters handed to the worker.
    pub params: serde_json::Value,
    /// Keys of the jobs that must succeed before this one may run.
    pub depends_on: Vec<String>,
    /// Scheduling priority (higher first).
    pub priority: i32,
    /// Backends a worker must have to be leased this job (empty: any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<Backend>,
}

/// Expands a validated spec into its job list.
pub fn expand(spec: &Spec) -> Vec<JobSpec> {
    let dataset = spec.dataset.clone().unwrap_or_default();
    let mut machine_types = spec.devices.clone();
    machine_types.sort();
    let grid = GridContext {
        dataset: &dataset,
        machine_types: &machine_types,
    };
    let mut jobs = Vec::new();
    for family in &spec.families {
        for (config, params) in family.jobs(&grid) {
            for &seed in &spec.seeds {
                let job = |stage: Stage, device: &str, depends_on: Vec<String>| JobSpec {
                    key: job_key(family.name(), &config, device, seed, stage),
                    kind: family.kind().as_str().to_owned(),
                    stage,
                    family: family.name().to_owned(),
                    config: config.clone(),
                    device: device.to_owned(),
                    seed,
                    params: params.clone(),
                    depends_on,
                    priority: family.priority(),
                    backends: family.backends().to_vec(),
                };
                match family.training() {
                    TrainingScope::None => {
                        jobs.extend(spec.devices.iter().map(|d| job(Stage::Run, d, vec![])));
                    }
                    TrainingScope::PerDevice => {
                        for d in &spec.devices {
                            let train = job(Stage::Train, d, vec![]);
                            let eval = job(Stage::Eval, d, vec![train.key.clone()]);
                            jobs.push(train);
                            jobs.push(eval);
                        }
                    }
                    TrainingScope::Global => {
                        let train = job(Stage::Train, ALL_DEVICES, vec![]);
                        let key = train.key.clone();
                        jobs.push(train);
                        jobs.extend(
                            spec.devices
                                .iter()
                                .map(|d| job(Stage::Eval, d, vec![key.clone()])),
                        );
                    }
                }
            }
        }
    }
    jobs
}

/// The stable key of a job.
pub fn job_key(family: &str, config: &str, device: &str, seed: u64, stage: Stage) -> String {
    format!("{family}/{config}/{device}/s{seed}/{}", stage.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn spec(devices: usize, configs: usize, seeds: usize, training: &str) -> Spec {
        let devices: Vec<String> = (0..devices).map(|i| format!("\"m{i}\"")).collect();
        let seeds: Vec<String> = (1..=seeds).map(|s| s.to_string()).collect();
        let configs: Vec<String> = (0..configs)
            .map(|i| format!("{{ name = \"c{i}\" }}"))
            .collect();
        Spec::from_toml(&format!(
            "version = 1\nname = \"t\"\ndevices = [{}]\nseeds = [{}]\n[[family]]\nkind = \"noop\"\ntraining = \"{training}\"\nconfigs = [{}]\n",
            devices.join(","),
            seeds.join(","),
            configs.join(",")
        ))
        .unwrap()
    }

    #[test]
    fn per_device_training_gives_a_train_and_an_eval_job_per_machine_type() {
        let jobs = expand(&spec(2, 1, 1, "per_device"));
        let keys: Vec<&str> = jobs.iter().map(|j| j.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "noop/c0/m0/s1/train",
                "noop/c0/m0/s1/eval",
                "noop/c0/m1/s1/train",
                "noop/c0/m1/s1/eval"
            ]
        );
        assert_eq!(jobs[1].depends_on, vec!["noop/c0/m0/s1/train".to_owned()]);
    }

    #[test]
    fn global_training_is_shared_by_every_machine_type() {
        let jobs = expand(&spec(3, 1, 1, "global"));
        assert_eq!(jobs.len(), 4);
        assert_eq!(jobs[0].device, ALL_DEVICES);
        assert!(
            jobs[1..]
                .iter()
                .all(|j| j.depends_on == vec![jobs[0].key.clone()])
        );
    }

    #[test]
    fn an_autoencoder_family_trains_per_machine_type_and_its_jobs_carry_settings_and_dataset() {
        let spec = Spec::from_toml(
            r#"
            version = 1
            name = "ae"
            devices = ["fan", "pump"]
            [dataset]
            path = "dev"
            fingerprint = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
            [[family]]
            kind = "autoencoder"
            epochs = 3
            configs = [{ name = "a", hidden = 32, latent = 4 }, { name = "b", hidden = 64, latent = 8 }]
            "#,
        )
        .unwrap();
        let jobs = expand(&spec);
        let keys: Vec<&str> = jobs.iter().map(|j| j.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "ae/a/fan/s1/train",
                "ae/a/fan/s1/eval",
                "ae/a/pump/s1/train",
                "ae/a/pump/s1/eval",
                "ae/b/fan/s1/train",
                "ae/b/fan/s1/eval",
                "ae/b/pump/s1/train",
                "ae/b/pump/s1/eval",
            ]
        );
        assert!(jobs.iter().all(|j| j.kind == "autoencoder"));
        assert_eq!(jobs[5].depends_on, vec!["ae/b/fan/s1/train".to_owned()]);
        let p = &jobs[4].params;
        assert_eq!(
            (
                p["hidden"].as_u64(),
                p["latent"].as_u64(),
                p["schedule"]["epochs"].as_u64()
            ),
            (Some(64), Some(8), Some(3))
        );
        assert_eq!(p["schedule"]["batch_size"], 128);
        assert_eq!(p["dataset"]["path"], "dev");
        assert_eq!(p["dataset"]["fingerprint"].as_str().map(str::len), Some(64));
        assert_eq!(
            jobs[4].params, jobs[5].params,
            "train and eval read the same settings"
        );
    }

    #[test]
    fn a_classifier_family_trains_once_for_all_machine_types_then_evaluates_each() {
        let spec = Spec::from_toml(
            r#"
            version = 1
            name = "cls"
            devices = ["pump", "fan"]
            [[family]]
            kind = "classifier"
            head = "cross_entropy"
            configs = [{ name = "r18", depth = 18 }, { name = "r34", depth = 34, width_multiplier = 0.5 }]
            "#,
        )
        .unwrap();
        let jobs = expand(&spec);
        let keys: Vec<&str> = jobs.iter().map(|j| j.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "ce/r18/*/s1/train",
                "ce/r18/pump/s1/eval",
                "ce/r18/fan/s1/eval",
                "ce/r34/*/s1/train",
                "ce/r34/pump/s1/eval",
                "ce/r34/fan/s1/eval"
            ]
        );
        assert!(jobs.iter().all(|j| j.kind == "classifier"));
        assert_eq!(jobs[5].depends_on, vec!["ce/r34/*/s1/train".to_owned()]);
        let p = &jobs[3].params;
        assert_eq!(
            p["machine_types"],
            serde_json::json!(["fan", "pump"]),
            "sorted: class indices do not depend on the spec's order"
        );
        assert_eq!(
            (
                p["depth"].as_u64(),
                p["width_multiplier"].as_f64(),
                p["head"].as_str()
            ),
            (Some(34), Some(0.5), Some("cross_entropy"))
        );
        assert_eq!(p["dataset"]["path"], ".");
        assert_eq!(
            jobs[3].params, jobs[4].params,
            "train and eval read the same settings"
        );
    }

    #[test]
    fn noop_jobs_carry_no_dataset() {
        let jobs = expand(&spec(1, 1, 1, "per_device"));
        assert!(jobs[0].params.get("dataset").is_none());
    }

    proptest! {
        #[test]
        fn expansion_is_deterministic_unique_and_sized_by_the_grid(
            devices in 1usize..5, configs in 1usize..5, seeds in 1usize..4, scope in 0usize..3,
        ) {
            let training = ["none", "per_device", "global"][scope];
            let s = spec(devices, configs, seeds, training);
            let jobs = expand(&s);
            prop_assert_eq!(&jobs, &expand(&s));
            let per_cell = match training { "none" => devices, "per_device" => 2 * devices, _ => devices + 1 };
            prop_assert_eq!(jobs.len(), configs * seeds * per_cell);
            let keys: HashSet<&str> = jobs.iter().map(|j| j.key.as_str()).collect();
            prop_assert_eq!(keys.len(), jobs.len());
            for j in &jobs {
                for d in &j.depends_on {
                    prop_assert!(keys.contains(d.as_str()), "dangling dependency {}", d);
                }
            }
        }
    }
}
