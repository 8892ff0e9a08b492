//! The sweep spec: a versioned TOML document that names the grid to run.
//!
//! Parsing is strict: an unknown key or a value outside the allowed set is an
//! error that names the key and what is allowed, so a typo never silently
//! changes a sweep. [`Spec::hash`] is computed over the parsed spec, not the
//! text, so comments and formatting do not change a sweep's identity.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use crate::family::FamilySpec;

/// The only spec version this build understands.
pub const SPEC_VERSION: u32 = 1;

/// Why a spec was rejected.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The TOML did not parse or did not match the schema (unknown key, wrong type, bad value).
    #[error("invalid sweep spec: {0}")]
    Parse(String),
    /// The spec parsed but a value breaks a rule of the schema.
    #[error("invalid sweep spec: `{key}` {problem}")]
    Invalid {
        /// Dotted path of the offending key, e.g. `family[0].configs[1].name`.
        key: String,
        /// What is wrong and what is allowed.
        problem: String,
    },
}

/// Result alias for spec handling.
pub type Result<T> = std::result::Result<T, SpecError>;

/// A parsed and validated sweep spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Schema version; must be [`SPEC_VERSION`].
    pub version: u32,
    /// Human name of the sweep (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// Free text shown in reports.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Machine types (the study's "devices"), e.g. `["fan", "pump"]`.
    pub devices: Vec<String>,
    /// Seeds: every config runs once per seed.
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
    /// Retry, lease and priority settings.
    #[serde(default)]
    pub queue: QueueSpec,
    /// The dataset every training and evaluation job reads (absent: the worker's `--data` root as it is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<DatasetSpec>,
    /// Synthetic data for `asdsweep run` when no dataset is given (absent: the defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synth: Option<SynthSpec>,
    /// The proxy-task families to train and evaluate.
    #[serde(rename = "family")]
    pub families: Vec<FamilySpec>,
}

/// Where the data of a sweep lies and what it must be.
///
/// Workers hold the dataset themselves (`asdsweep worker --data ROOT`); `path` is resolved
/// under that root and never outside it, and a worker whose files do not give `fingerprint`
/// refuses the job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    /// Directory of the dataset, relative to each worker's `--data` root (`"."`: the root itself).
    #[serde(default = "default_dataset_path")]
    pub path: String,
    /// Layout name (dcase2020, dcase2021, merged, mimii, toyadmos); detected when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<String>,
    /// Expected manifest fingerprint (`asdsweep data check --json` prints it); not checked when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

fn default_dataset_path() -> String {
    ".".into()
}

impl Default for DatasetSpec {
    fn default() -> Self {
        Self {
            path: default_dataset_path(),
            layout: None,
            fingerprint: None,
        }
    }
}

/// Layout names a `[dataset]` may give (those of `dataset::Layout`).
pub const LAYOUTS: [&str; 5] = ["dcase2020", "dcase2021", "merged", "mimii", "toyadmos"];

fn default_seeds() -> Vec<u64> {
    vec![1]
}

/// The synthetic data set `asdsweep run` generates (once, cached by these settings) when
/// a spec names no dataset: the spec's `devices` are its machine types.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SynthSpec {
    /// Sections (operating conditions) per machine type.
    pub sections: u32,
    /// Source-domain training normals per section (the target domain gets a tenth, at least 1).
    pub train: usize,
    /// Test clips per section, domain and label.
    pub test: usize,
    /// Clip length in seconds.
    pub seconds: f64,
    /// Seed of the generator: the same settings give byte-identical files.
    pub seed: u64,
    /// Sample rate in Hz.
    pub sample_rate: u32,
}

impl Default for SynthSpec {
    fn default() -> Self {
        Self {
            sections: 2,
            train: 24,
            test: 6,
            seconds: 2.0,
            seed: 0,
            sample_rate: 16_000,
        }
    }
}

/// Queue settings that apply to every job of the sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueSpec {
    /// Attempts a job gets before it ends `dead` (1..=100).
    pub max_attempts: u32,
    /// Lease time-to-live in milliseconds: a worker that does not heartbeat
    /// within it loses the job (1000..=3_600_000).
    pub lease_ttl_ms: u64,
    /// First retry waits this long; each further retry doubles it.
    pub backoff_base_ms: u64,
    /// Upper bound of the retry wait.
    pub backoff_max_ms: u64,
}

impl Default for QueueSpec {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            lease_ttl_ms: 30_000,
            backoff_base_ms: 1_000,
            backoff_max_ms: 60_000,
        }
    }
}

/// Where a family trains: once per machine type, once across all, or not at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TrainingScope {
    /// No training job: one single-stage job per (config, device, seed).
    #[default]
    None,
    /// One training job per machine type (the autoencoder's way).
    PerDevice,
    /// One training job across all machine types (classifier, contrastive, separation).
    Global,
}

/// A training backend a worker can be built with; the names workers report when they register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// burn's pure-Rust CPU backend (every build).
    Flex,
    /// libtorch through burn-tch (`--features tch`).
    Tch,
    /// burn-cuda (`--features cuda`).
    Cuda,
}

impl Backend {
    /// The name as spelled in specs and reported by workers.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Flex => "flex",
            Backend::Tch => "tch",
            Backend::Cuda => "cuda",
        }
    }

    /// The names of `backends` joined by `sep` (`"cuda or tch"`, `"cuda,tch"`).
    pub fn join(backends: &[Backend], sep: &str) -> String {
        backends
            .iter()
            .map(|b| b.as_str())
            .collect::<Vec<_>>()
            .join(sep)
    }
}

impl Spec {
    /// Parses and validates a spec from TOML text.
    pub fn from_toml(text: &str) -> Result<Spec> {
        let spec: Spec = toml::from_str(text).map_err(|e| SpecError::Parse(e.to_string()))?;
        spec.validate()?;
        Ok(spec)
    }

    /// Checks that workers on `backend` may run every family's jobs (for `asdsweep run`,
    /// whose local workers share one backend); names the first family that forbids it.
    pub fn check_backend(&self, backend: Backend) -> Result<()> {
        for (i, f) in self.families.iter().enumerate() {
            let allowed = f.backends();
            if !allowed.is_empty() && !allowed.contains(&backend) {
                return Err(SpecError::Invalid {
                    key: format!("family[{i}].backends"),
                    problem: format!(
                        "allows family \"{}\" only on {}, but these workers run on {}",
                        f.name(),
                        Backend::join(allowed, " or "),
                        backend.as_str()
                    ),
                });
            }
        }
        Ok(())
    }

    /// Reads, parses and validates a spec file.
    pub fn from_path(path: &std::path::Path) -> Result<Spec> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| SpecError::Parse(format!("cannot read {}: {e}", path.display())))?;
        Self::from_toml(&text).map_err(|e| match e {
            SpecError::Parse(m) => SpecError::Parse(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Content hash of the parsed spec (sha256 hex of its canonical JSON form).
    pub fn hash(&self) -> String {
        let canonical = serde_json::to_vec(self).expect("a parsed spec always serialises to JSON");
        hex::encode(Sha256::digest(canonical))
    }

    fn validate(&self) -> Result<()> {
        let invalid = |key: &str, problem: String| {
            Err(SpecError::Invalid {
                key: key.to_owned(),
                problem,
            })
        };
        if self.version != SPEC_VERSION {
            return invalid(
                "version",
                format!(
                    "is {}; this build reads version {SPEC_VERSION}",
                    self.version
                ),
            );
        }
        check_name("name", &self.name)?;
        if self.devices.is_empty() {
            return invalid(
                "devices",
                "is empty; list at least one machine type, e.g. [\"fan\"]".into(),
            );
        }
        for (i, d) in self.devices.iter().enumerate() {
            check_name(&format!("devices[{i}]"), d)?;
            if self.devices[..i].contains(d) {
                return invalid(
                    &format!("devices[{i}]"),
                    format!("repeats \"{d}\"; machine types must be unique"),
                );
            }
        }
        if self.seeds.is_empty() {
            return invalid("seeds", "is empty; give at least one seed, e.g. [1]".into());
        }
        for (i, s) in self.seeds.iter().enumerate() {
            if self.seeds[..i].contains(s) {
                return invalid(
                    &format!("seeds[{i}]"),
                    format!("repeats {s}; seeds must be unique"),
                );
            }
        }
        let q = &self.queue;
        if !(1..=100).contains(&q.max_attempts) {
            return invalid(
                "queue.max_attempts",
                format!("is {}; allowed 1..=100", q.max_attempts),
            );
        }
        if !(1_000..=3_600_000).contains(&q.lease_ttl_ms) {
            return invalid(
                "queue.lease_ttl_ms",
                format!("is {}; allowed 1000..=3600000", q.lease_ttl_ms),
            );
        }
        if q.backoff_max_ms < q.backoff_base_ms {
            return invalid(
                "queue.backoff_max_ms",
                format!(
                    "is {}; must be at least queue.backoff_base_ms ({})",
                    q.backoff_max_ms, q.backoff_base_ms
                ),
            );
        }
        if self.dataset.is_some() && self.synth.is_some() {
            return invalid("synth", "is given with [dataset]; [synth] only describes the data `run` makes when no dataset is named: drop one".into());
        }
        if let Some(d) = &self.dataset {
            check_dataset(d)?;
        }
        if self.families.is_empty() {
            return invalid(
                "family",
                "is empty; add at least one [[family]] table".into(),
            );
        }
        for (i, f) in self.families.iter().enumerate() {
            let key = format!("family[{i}]");
            check_name(&format!("{key}.name"), f.name())?;
            if self.families[..i].iter().any(|g| g.name() == f.name()) {
                return invalid(
                    &format!("{key}.name"),
                    format!("repeats \"{}\"; family names must be unique", f.name()),
                );
            }
            let configs = f.config_names();
            if configs.is_empty() {
                return invalid(
                    &format!("{key}.configs"),
                    "is empty; give at least one config".into(),
                );
            }
            for (j, name) in configs.iter().enumerate() {
                check_name(&format!("{key}.configs[{j}].name"), name)?;
                if configs[..j].contains(name) {
                    return invalid(
                        &format!("{key}.configs[{j}].name"),
                        format!("repeats \"{name}\"; config names must be unique"),
                    );
                }
            }
            f.validate(&key)?;
        }
        Ok(())
    }
}

/// Checks `value` lies in `range`, naming `key` and the range otherwise.
pub(crate) fn check_range<T: PartialOrd + std::fmt::Display>(
    key: &str,
    value: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<()> {
    if range.contains(&value) {
        return Ok(());
    }
    Err(SpecError::Invalid {
        key: key.to_owned(),
        problem: format!("is {value}; allowed {}..={}", range.start(), range.end()),
    })
}

/// Checks `lo < value < hi` (or `≤ hi` when `hi_inclusive`), naming `key` and the bounds otherwise.
pub(crate) fn check_open(
    key: &str,
    value: f64,
    lo: f64,
    hi: f64,
    hi_inclusive: bool,
) -> Result<()> {
    let ok = value > lo && (value < hi || (hi_inclusive && value == hi));
    if ok {
        return Ok(());
    }
    let op = if hi_inclusive { "<=" } else { "<" };
    Err(SpecError::Invalid {
        key: key.to_owned(),
        problem: format!("is {value}; allowed {lo} < value {op} {hi}"),
    })
}

fn check_dataset(d: &DatasetSpec) -> Result<()> {
    let invalid = |key: &str, problem: String| {
        Err(SpecError::Invalid {
            key: key.to_owned(),
            problem,
        })
    };
    let path = std::path::Path::new(&d.path);
    let inside = !d.path.is_empty()
        && !d.path.contains('\\')
        && path.components().all(|c| {
            matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )
        });
    if !inside {
        return invalid(
            "dataset.path",
            format!(
                "is \"{}\"; give a relative path inside each worker's --data root (no leading /, no ..)",
                d.path
            ),
        );
    }
    if let Some(layout) = &d.layout
        && !LAYOUTS.contains(&layout.as_str())
    {
        return invalid(
            "dataset.layout",
            format!("is \"{layout}\"; allowed: {}", LAYOUTS.join(", ")),
        );
    }
    if let Some(fp) = &d.fingerprint
        && !(fp.len() == 64
            && fp
                .chars()
                .all(|c| c.is_ascii_digit() || matches!(c, 'a'..='f')))
    {
        return invalid(
            "dataset.fingerprint",
            format!(
                "is \"{fp}\"; expected 64 lowercase hex digits (sha256), as `asdsweep data check --json` prints"
            ),
        );
    }
    Ok(())
}

/// Names end up in job keys, file names and report labels: keep them plain.
fn check_name(key: &str, value: &str) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !value.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(SpecError::Invalid {
            key: key.to_owned(),
            problem: format!(
                "is \"{value}\"; allowed: 1-64 of A-Z a-z 0-9 - _ . (not starting with .)"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::family::GridContext;
    use crate::family::autoencoder::Autoencoder;
    use crate::family::classifier::{Classifier, Head};

    /// A family's configs with their job parameters, expanded without a dataset.
    fn jobs(f: &FamilySpec) -> Vec<(String, serde_json::Value)> {
        f.jobs(&GridContext {
            dataset: &DatasetSpec::default(),
            machine_types: &["fan".to_owned()],
        })
    }

    const GOOD: &str = r#"
        version = 1
        name = "demo"
        devices = ["fan", "pump"]
        [queue]
        max_attempts = 2
        [[family]]
        kind = "noop"
        training = "per_device"
        configs = [{ name = "a", sleep_ms = 5 }, { name = "b", fail_times = 1 }]
    "#;

    #[test]
    fn a_good_spec_parses_with_defaults_filled_in() {
        let spec = Spec::from_toml(GOOD).unwrap();
        assert_eq!(spec.seeds, vec![1]);
        assert_eq!(spec.queue.max_attempts, 2);
        assert_eq!(spec.queue.lease_ttl_ms, 30_000);
        assert_eq!(spec.families[0].name(), "noop");
        assert_eq!(spec.families[0].training(), TrainingScope::PerDevice);
        assert_eq!(spec.families[0].config_names(), ["a", "b"]);
    }

    #[test]
    fn the_hash_ignores_comments_and_layout_but_not_content() {
        let a = Spec::from_toml(GOOD).unwrap();
        let b = Spec::from_toml(&format!("# a comment\n{GOOD}\n\n")).unwrap();
        assert_eq!(a.hash(), b.hash());
        let c = Spec::from_toml(&GOOD.replace("sleep_ms = 5", "sleep_ms = 6")).unwrap();
        assert_ne!(a.hash(), c.hash());
    }

    #[test]
    fn an_unknown_top_level_key_is_named_with_the_allowed_keys() {
        let err = Spec::from_toml(&GOOD.replace("devices =", "devicez ="))
            .unwrap_err()
            .to_string();
        assert!(err.contains("devicez"), "{err}");
        assert!(err.contains("devices"), "{err}");
    }

    #[test]
    fn backends_keep_a_family_off_other_workers_and_a_wrong_name_lists_the_allowed_ones() {
        let gpu = GOOD.replace(
            "training = \"per_device\"",
            "training = \"per_device\"\nbackends = [\"cuda\", \"tch\"]",
        );
        let spec = Spec::from_toml(&gpu).unwrap();
        assert_eq!(spec.families[0].backends(), [Backend::Cuda, Backend::Tch]);
        assert!(
            crate::grid::expand(&spec)
                .iter()
                .all(|j| j.backends == [Backend::Cuda, Backend::Tch])
        );
        spec.check_backend(Backend::Tch).unwrap();
        let err = spec.check_backend(Backend::Flex).unwrap_err().to_string();
        assert!(
            err.contains("family[0].backends")
                && err.contains("cuda or tch")
                && err.contains("run on flex"),
            "{err}"
        );
        // Absent means any; it leaves the hash of specs written before the key existed alone.
        let any = Spec::from_toml(GOOD).unwrap();
        any.check_backend(Backend::Flex).unwrap();
        assert!(!toml::to_string(&any).unwrap().contains("backends"));
        let err = Spec::from_toml(&gpu.replace("\"tch\"", "\"gpu\""))
            .unwrap_err()
            .to_string();
        for n in ["gpu", "flex", "tch", "cuda"] {
            assert!(err.contains(n), "{n} missing from: {err}");
        }
    }

    #[test]
    fn an_unknown_config_key_is_named() {
        let err = Spec::from_toml(&GOOD.replace("sleep_ms = 5", "sleepms = 5"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("sleepms"), "{err}");
        assert!(err.contains("sleep_ms"), "{err}");
    }

    #[test]
    fn an_unknown_family_kind_lists_the_known_ones() {
        let err = Spec::from_toml(&GOOD.replace("kind = \"noop\"", "kind = \"nope\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope") && err.contains("noop"), "{err}");
    }

    #[test]
    fn a_bad_training_scope_lists_the_allowed_values() {
        let err = Spec::from_toml(&GOOD.replace("per_device", "sometimes"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sometimes") && err.contains("per_device") && err.contains("global"),
            "{err}"
        );
    }

    #[test]
    fn out_of_range_values_name_the_key_and_the_range() {
        let err = Spec::from_toml(&GOOD.replace("max_attempts = 2", "max_attempts = 0"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("queue.max_attempts") && err.contains("1..=100"),
            "{err}"
        );
        let err = Spec::from_toml(&GOOD.replace("version = 1", "version = 2"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`version`"), "{err}");
    }

    const AE: &str = r#"
        version = 1
        name = "ae"
        devices = ["fan", "pump"]
        [dataset]
        path = "dcase/dev"
        layout = "dcase2021"
        fingerprint = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
        [[family]]
        kind = "autoencoder"
        epochs = 2
        checkpoint_every = 1
        [[family.configs]]
        name = "h64-l4"
        hidden = 64
        latent = 4
        [[family.configs]]
        name = "h128-l8"
        hidden = 128
        latent = 8
    "#;

    #[test]
    fn an_autoencoder_family_takes_the_study_defaults_for_what_it_leaves_out() {
        let spec = Spec::from_toml(AE).unwrap();
        let Some(f) = spec.families[0].downcast::<Autoencoder>() else {
            panic!("not an autoencoder: {:?}", spec.families[0])
        };
        assert_eq!((f.epochs, f.checkpoint_every), (2, 1));
        assert_eq!(
            (
                f.batch_size,
                f.lr,
                f.lr_step_epochs,
                f.lr_gamma,
                f.frames,
                f.n_mels
            ),
            (128, 5e-4, 50, 0.5, 5, 128)
        );
        assert_eq!(spec.families[0].name(), "ae");
        assert_eq!(spec.families[0].training(), TrainingScope::PerDevice);
        let configs = jobs(&spec.families[0]);
        assert_eq!(configs[1].0, "h128-l8");
        assert_eq!(configs[1].1["hidden"], 128);
        assert_eq!(configs[1].1["latent"], 8);
        assert_eq!(configs[1].1["schedule"]["epochs"], 2);
        assert_eq!(configs[1].1["schedule"]["lr_gamma"], 0.5);
        let d = spec.dataset.as_ref().unwrap();
        assert_eq!(
            (d.path.as_str(), d.layout.as_deref()),
            ("dcase/dev", Some("dcase2021"))
        );
    }

    #[test]
    fn a_spec_without_a_dataset_section_keeps_its_hash() {
        // Specs written before `[dataset]` existed must keep their identity (no duplicate sweeps).
        let spec = Spec::from_toml(GOOD).unwrap();
        assert!(spec.dataset.is_none());
        assert!(!serde_json::to_string(&spec).unwrap().contains("dataset"));
    }

    #[test]
    fn autoencoder_settings_out_of_range_name_the_key_and_the_range() {
        let err = Spec::from_toml(&AE.replace("epochs = 2", "epochs = 0"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("family[0].epochs") && err.contains("1..=10000"),
            "{err}"
        );
        let err = Spec::from_toml(&AE.replace("latent = 8", "latent = 256"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("family[0].configs[1].latent") && err.contains("1..=128"),
            "{err}"
        );
        let err = Spec::from_toml(&AE.replace("checkpoint_every = 1", "lr_gamma = 1.0"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("family[0].lr_gamma") && err.contains("0 < lr_gamma < 1"),
            "{err}"
        );
        let err = Spec::from_toml(&AE.replace("checkpoint_every = 1", "checkpoint_every = 0"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("family[0].checkpoint_every"), "{err}");
    }

    #[test]
    fn unknown_autoencoder_keys_are_named_with_the_allowed_ones() {
        let err = Spec::from_toml(&AE.replace("checkpoint_every = 1", "checkpoint_evry = 1"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("checkpoint_evry") && err.contains("checkpoint_every"),
            "{err}"
        );
        let err = Spec::from_toml(&AE.replace("latent = 4", "latnt = 4"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("latnt") && err.contains("latent"), "{err}");
        let err = Spec::from_toml(&AE.replace("kind = \"autoencoder\"", "kind = \"autoencodr\""))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("autoencodr") && err.contains("autoencoder") && err.contains("noop"),
            "{err}"
        );
    }

    #[test]
    fn dataset_paths_must_stay_inside_the_worker_root_and_keys_must_be_known() {
        for bad in ["../elsewhere", "/etc", "a/../../b", ""] {
            let err = Spec::from_toml(&AE.replace("\"dcase/dev\"", &format!("\"{bad}\"")))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("`dataset.path`") && err.contains("--data root"),
                "{bad}: {err}"
            );
        }
        let err = Spec::from_toml(&AE.replace("\"dcase2021\"", "\"dcase2099\""))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("dataset.layout") && err.contains("dcase2099") && err.contains("toyadmos"),
            "{err}"
        );
        let err = Spec::from_toml(&AE.replace("fingerprint = \"0123", "fingerprint = \"X123"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("dataset.fingerprint") && err.contains("64 lowercase hex"),
            "{err}"
        );
        let err = Spec::from_toml(&AE.replace("layout =", "layot ="))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("layot") && err.contains("fingerprint"),
            "{err}"
        );
    }

    const CLS: &str = r#"
        version = 1
        name = "cls"
        devices = ["fan", "pump"]
        [[family]]
        kind = "classifier"
        head = "arcface"
        epochs = 2
        [[family.configs]]
        name = "r18"
        depth = 18
        width_multiplier = 0.25
        [[family.configs]]
        name = "r50"
        depth = 50
    "#;

    #[test]
    fn a_classifier_family_trains_globally_with_the_study_defaults() {
        let spec = Spec::from_toml(CLS).unwrap();
        let Some(f) = spec.families[0].downcast::<Classifier>() else {
            panic!("not a classifier: {:?}", spec.families[0])
        };
        assert_eq!(
            (
                f.head,
                f.epochs,
                f.batch_size,
                f.lr,
                f.lr_step_epochs,
                f.lr_gamma
            ),
            (Head::ArcFace, 2, 64, 1e-5, 50, 0.5)
        );
        assert_eq!(
            (
                f.crop_frames,
                f.n_mels,
                f.arcface_margin,
                f.arcface_scale,
                f.held_out_fraction
            ),
            (313, 128, 0.5, 30.0, 0.1)
        );
        assert_eq!(spec.families[0].name(), "arcface");
        assert_eq!(spec.families[0].kind(), crate::family::classifier::KIND);
        assert_eq!(spec.families[0].training(), TrainingScope::Global);
        let configs = jobs(&spec.families[0]);
        assert_eq!(configs[0].1["width_multiplier"], 0.25);
        assert_eq!(
            (
                configs[1].1["depth"].as_u64(),
                configs[1].1["width_multiplier"].as_f64()
            ),
            (Some(50), Some(1.0))
        );
        assert_eq!(configs[1].1["head"], "arcface");
        let ce = Spec::from_toml(&CLS.replace("\"arcface\"", "\"cross_entropy\"")).unwrap();
        assert_eq!(ce.families[0].name(), "ce");
        let named =
            Spec::from_toml(&CLS.replace("epochs = 2", "epochs = 2\n        name = \"arc2\""))
                .unwrap();
        assert_eq!(named.families[0].name(), "arc2");
    }

    /// Launching a spec again finds its sweep by this hash: it must not move between
    /// releases (values from the release before the family contract; `quick` and `paper`
    /// gained the separation family in issue 15 and the contrastive family in issue 16, so
    /// they are new specs with new hashes).
    #[test]
    fn the_example_sweeps_keep_their_hash_across_releases() {
        for (name, hash) in [
            (
                "ae-demo",
                "c8f62e9a8569f666b7fb098c50bedc2d946457966f2ddac29af7a6227e2128bc",
            ),
            (
                "classifier-demo",
                "f9aab983005d4e7ad796cae30383a8d9086276e192e3122e603b58f8de81118b",
            ),
            (
                "noop-demo",
                "fa980da65e707b2647505768b7d815d87667b8e9febc30c59e7774dec7d219c5",
            ),
            (
                "quick",
                "e9d57b65ef4f73e15a4af662f84dc17dfd85301ef8b86a3a1c965e49cff824c6",
            ),
            (
                "paper",
                "307084ddcf8f81ce36b08563bbb490f938d779bf27da019255d2378ff6f978b3",
            ),
        ] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(format!("../sweeps/{name}.toml"));
            assert_eq!(Spec::from_path(&path).unwrap().hash(), hash, "{name}");
        }
    }

    #[test]
    fn the_example_sweeps_parse() {
        for name in ["ae-demo", "classifier-demo", "noop-demo", "quick", "paper"] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(format!("../sweeps/{name}.toml"));
            let spec = Spec::from_path(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(spec.name, name);
            // Only the paper preset is meant for GPU workers; the rest run on `asdsweep run`'s CPU workers.
            assert_eq!(
                spec.check_backend(Backend::Flex).is_ok(),
                name != "paper",
                "{name}"
            );
        }
    }

    #[test]
    fn classifier_settings_out_of_range_name_the_key_and_the_allowed_values() {
        let err = |text: String| Spec::from_toml(&text).unwrap_err().to_string();
        let e = err(CLS.replace("depth = 50", "depth = 19"));
        assert!(
            e.contains("family[0].configs[1].depth") && e.contains("18, 34, 50, 101, 152"),
            "{e}"
        );
        let e = err(CLS.replace("\"arcface\"", "\"softmax\""));
        assert!(
            e.contains("softmax") && e.contains("cross_entropy") && e.contains("arcface"),
            "{e}"
        );
        let e = err(CLS.replace("width_multiplier = 0.25", "width_multiplier = 0.0"));
        assert!(
            e.contains("family[0].configs[0].width_multiplier") && e.contains("0 < value <= 16"),
            "{e}"
        );
        let e = err(CLS.replace("epochs = 2", "held_out_fraction = 1.0"));
        assert!(
            e.contains("family[0].held_out_fraction") && e.contains("0 < value < 1"),
            "{e}"
        );
        let e = err(CLS.replace("epochs = 2", "arcface_margin = 2.0"));
        assert!(e.contains("family[0].arcface_margin"), "{e}");
        let e = err(CLS.replace("epochs = 2", "crop_frames = 0"));
        assert!(
            e.contains("family[0].crop_frames") && e.contains("1..=100000"),
            "{e}"
        );
        let e = err(CLS.replace("depth = 18", "depht = 18"));
        assert!(e.contains("depht") && e.contains("width_multiplier"), "{e}");
        let e = err(CLS.replace("head = \"arcface\"", ""));
        assert!(e.contains("head"), "{e}");
    }

    #[test]
    fn duplicate_and_unsafe_names_are_rejected() {
        let err = Spec::from_toml(&GOOD.replace("\"pump\"", "\"fan\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("devices[1]"), "{err}");
        let err = Spec::from_toml(&GOOD.replace("name = \"b\"", "name = \"a\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("family[0].configs[1].name"), "{err}");
        let err = Spec::from_toml(&GOOD.replace("\"pump\"", "\"../etc\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("devices[1]"), "{err}");
    }
}
