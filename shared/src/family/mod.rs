//! Proxy-task families as units: each module here declares one family — its spec section
//! (with the study's defaults), its typed job parameters (the very type the grid serialises
//! and the worker deserialises), its kind, training scope, proxy metrics with their
//! directions, its validation and its jobs — behind the one [`Family`] trait.
//!
//! Spec parsing finds a `[[family]]` table's section type by its `kind` among the
//! [`Declaration`]s: [`builtin`] lists this crate's, [`register`] adds one from outside
//! (a test, a plugin build) before specs naming it are parsed.
//!
//! - [`noop`]: the diagnostic family (sleeps, fails on purpose; measures nothing).
//! - [`autoencoder`]: the study's autoencoder, trained per machine type.
//! - [`classifier`]: the study's classification family, trained across machine types.
//! - [`contrastive`]: the study's SimCLR / SimSiam family, trained across machine types.
//! - [`separation`]: the study's source-separation family, trained per machine type.

pub mod autoencoder;
pub mod classifier;
pub mod contrastive;
pub mod noop;
pub mod separation;

use std::any::Any;
use std::fmt;
use std::sync::{Arc, LazyLock, RwLock};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use crate::analysis::Direction;
use crate::spec::{Backend, DatasetSpec, SpecError, TrainingScope};

/// A family's kind: the one typed name that a spec's `kind`, a job row and a worker's
/// registry share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Kind(&'static str);

impl Kind {
    /// A kind named `name` (lowercase, as spelled in specs).
    pub const fn new(name: &'static str) -> Kind {
        Kind(name)
    }

    /// The name as spelled in specs and stored with each job.
    pub const fn as_str(self) -> &'static str {
        self.0
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// A proxy metric as its family declares it: results carry the name and the direction,
/// and the analysis negates lower-is-better metrics from the declaration, not the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyMetric {
    /// The metric's name in results (`ae_l1`, `macro_f1`).
    pub name: &'static str,
    /// Whether a larger value means a better proxy-task result.
    pub direction: Direction,
}

/// What every family's jobs are expanded with, besides its own section.
#[derive(Debug, Clone, Copy)]
pub struct GridContext<'a> {
    /// The dataset the sweep reads (`[dataset]`, or the worker's root as it is).
    pub dataset: &'a DatasetSpec,
    /// Every machine type of the sweep, sorted: a class index means the same machine
    /// type in every job.
    pub machine_types: &'a [String],
}

/// The training schedule every trained family shares: written flat in the family's spec
/// table (`epochs = 200`, …), carried as one value in its job parameters and checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// Training epochs.
    pub epochs: usize,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Initial AdamW learning rate.
    pub lr: f64,
    /// Epochs between learning-rate decays (PyTorch's `StepLR` step size).
    pub lr_step_epochs: usize,
    /// Decay factor.
    pub lr_gamma: f64,
    /// A checkpoint is saved and uploaded every this many epochs, and at the end.
    pub checkpoint_every: usize,
}

impl Schedule {
    /// Checks every setting, naming `key.setting` and the allowed range; a batch holds at
    /// least `min_batch` rows (batch normalisation over rows needs 2).
    pub fn validate(&self, key: &str, min_batch: usize) -> Result<(), SpecError> {
        use crate::spec::check_range;
        check_range(&format!("{key}.epochs"), self.epochs, 1..=10_000)?;
        check_range(
            &format!("{key}.batch_size"),
            self.batch_size,
            min_batch..=65_536,
        )?;
        let invalid = |name: &str, value: f64, allowed: &str| SpecError::Invalid {
            key: format!("{key}.{name}"),
            problem: format!("is {value}; allowed {allowed}"),
        };
        if !(self.lr > 0.0 && self.lr <= 1.0) {
            return Err(invalid("lr", self.lr, "0 < lr <= 1"));
        }
        check_range(
            &format!("{key}.lr_step_epochs"),
            self.lr_step_epochs,
            1..=10_000,
        )?;
        if !(self.lr_gamma > 0.0 && self.lr_gamma < 1.0) {
            return Err(invalid("lr_gamma", self.lr_gamma, "0 < lr_gamma < 1"));
        }
        check_range(
            &format!("{key}.checkpoint_every"),
            self.checkpoint_every,
            1..=10_000,
        )
    }
}

/// Lets a family section be looked at as its own type (tests, tools).
pub trait AsAny {
    /// The section as [`Any`].
    fn as_any(&self) -> &dyn Any;
}

impl<T: Any> AsAny for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// One family's spec section: what it runs and how it is measured.
pub trait Family: erased_serde::Serialize + AsAny + fmt::Debug + Send + Sync + 'static {
    /// The family's name in results (the spec's `name`, else the family's default).
    fn name(&self) -> &str;
    /// Scheduling priority of its jobs (higher first).
    fn priority(&self) -> i32;
    /// Backends its jobs may run on (empty: any).
    fn backends(&self) -> &[Backend];
    /// Where it trains: per machine type, once across all, or not at all.
    fn training(&self) -> TrainingScope;
    /// The proxy metrics it measures, its main one first (empty: it measures none).
    fn proxies(&self) -> Vec<ProxyMetric>;
    /// Its config names, in spec order.
    fn config_names(&self) -> Vec<&str>;
    /// Checks the section's own settings; `key` is its dotted path (`family[0]`).
    fn validate(&self, key: &str) -> Result<(), SpecError>;
    /// Each config's name with its job parameters (the family's typed parameters,
    /// serialised); every stage of a config's jobs reads the same parameters.
    fn jobs(&self, grid: &GridContext<'_>) -> Vec<(String, serde_json::Value)>;
}

/// A family's typed job parameters as JSON; they always serialise.
pub fn params_json<P: Serialize>(params: &P) -> serde_json::Value {
    serde_json::to_value(params).expect("job parameters serialise to JSON")
}

/// How spec parsing turns a `[[family]]` table of one kind into its section.
#[derive(Clone, Copy)]
pub struct Declaration {
    kind: Kind,
    parse: fn(serde_json::Value) -> Result<Arc<dyn Family>, serde_json::Error>,
}

impl Declaration {
    /// The declaration of section type `F` under `kind`.
    pub fn of<F: Family + DeserializeOwned>(kind: Kind) -> Declaration {
        Declaration {
            kind,
            parse: |table| {
                serde_json::from_value::<F>(table).map(|f| Arc::new(f) as Arc<dyn Family>)
            },
        }
    }

    /// The kind it declares.
    pub fn kind(&self) -> Kind {
        self.kind
    }
}

/// The families this crate provides, one line each.
pub fn builtin() -> Vec<Declaration> {
    vec![
        Declaration::of::<noop::Noop>(noop::KIND),
        Declaration::of::<autoencoder::Autoencoder>(autoencoder::KIND),
        Declaration::of::<classifier::Classifier>(classifier::KIND),
        Declaration::of::<separation::Separation>(separation::KIND),
        Declaration::of::<contrastive::Contrastive>(contrastive::KIND),
    ]
}

static DECLARED: LazyLock<RwLock<Vec<Declaration>>> = LazyLock::new(|| RwLock::new(builtin()));

/// Makes `kind` parseable in specs from now on (replacing an earlier declaration of the
/// same kind): how a family defined outside this crate plugs in.
pub fn register(declaration: Declaration) {
    let mut all = DECLARED.write().unwrap_or_else(|p| p.into_inner());
    all.retain(|d| d.kind != declaration.kind);
    all.push(declaration);
}

/// The kinds specs may name, sorted.
pub fn kinds() -> Vec<Kind> {
    let mut kinds: Vec<Kind> = DECLARED
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|d| d.kind)
        .collect();
    kinds.sort();
    kinds
}

fn declared(kind: &str) -> Option<Declaration> {
    DECLARED
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .find(|d| d.kind.as_str() == kind)
        .copied()
}

/// One `[[family]]` of a spec: its kind and its parsed section.
#[derive(Clone)]
pub struct FamilySpec {
    kind: Kind,
    section: Arc<dyn Family>,
}

impl FamilySpec {
    /// The job kind that runs this family's jobs.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The parsed section.
    pub fn section(&self) -> &dyn Family {
        &*self.section
    }

    /// The section as its own type, if it is an `F`.
    pub fn downcast<F: Family>(&self) -> Option<&F> {
        self.section().as_any().downcast_ref::<F>()
    }
}

impl std::ops::Deref for FamilySpec {
    type Target = dyn Family;
    fn deref(&self) -> &dyn Family {
        &*self.section
    }
}

impl fmt::Debug for FamilySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {:?}", self.kind, self.section)
    }
}

impl PartialEq for FamilySpec {
    fn eq(&self, other: &FamilySpec) -> bool {
        self.kind == other.kind
            && serde_json::to_value(self).ok() == serde_json::to_value(other).ok()
    }
}

/// Serialised as the table it was parsed from: `kind` first, then the section's fields
/// (the spec hash is taken over this form).
impl Serialize for FamilySpec {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Tagged<'a> {
            kind: &'static str,
            #[serde(flatten)]
            section: &'a dyn erased_serde::Serialize,
        }
        let section: &dyn Family = &*self.section;
        Tagged {
            kind: self.kind.as_str(),
            section: section as &dyn erased_serde::Serialize,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for FamilySpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut table = serde_json::Map::<String, serde_json::Value>::deserialize(deserializer)?;
        let kinds = || {
            kinds()
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let kind = match table.remove("kind") {
            Some(serde_json::Value::String(kind)) => kind,
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "`kind` is {other}; expected one of {}",
                    kinds()
                )));
            }
            None => {
                return Err(D::Error::custom(format!(
                    "missing field `kind`; expected one of {}",
                    kinds()
                )));
            }
        };
        let declaration = declared(&kind).ok_or_else(|| {
            D::Error::custom(format!(
                "unknown family kind `{kind}`, expected one of {}",
                kinds()
            ))
        })?;
        let section = (declaration.parse)(serde_json::Value::Object(table))
            .map_err(|e| D::Error::custom(format!("family kind `{kind}`: {e}")))?;
        Ok(FamilySpec {
            kind: declaration.kind,
            section,
        })
    }
}
