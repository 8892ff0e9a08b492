//! Probes that turn embeddings into anomaly scores: the Mahalanobis distance to training
//! normals and the linear (logistic) probe with its in-domain and out-of-domain splits.
//! Backend-free (ndarray), so the coordinator and the CLI can score any model's embeddings.

pub mod linear;
pub mod mahalanobis;
pub mod report;
pub mod split;

/// Why a probe could not be fitted or applied.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProbeError {
    /// Too few training rows for the estimate.
    #[error("too few rows for {what}: got {got}, need at least {need}")]
    TooFewRows {
        /// What was being fitted.
        what: &'static str,
        /// Rows supplied.
        got: usize,
        /// Rows required.
        need: usize,
    },
    /// Embedding dimensions disagree.
    #[error("dimension mismatch: {what} has dimension {got}, expected {expected}")]
    DimensionMismatch {
        /// Which input.
        what: String,
        /// Its dimension.
        got: usize,
        /// The expected dimension.
        expected: usize,
    },
    /// A value is NaN or infinite.
    #[error("non-finite value in {what}")]
    NonFinite {
        /// Which input.
        what: String,
    },
    /// The covariance has no non-negligible eigenvalue (all training rows are equal).
    #[error(
        "covariance of the training embeddings is zero (all {rows} rows are identical); Mahalanobis distance is undefined"
    )]
    ZeroCovariance {
        /// Training rows.
        rows: usize,
    },
    /// The eigen-decomposition did not converge.
    #[error("eigen-decomposition of the {dim}×{dim} covariance did not converge")]
    NoConvergence {
        /// Matrix dimension.
        dim: usize,
    },
    /// The labels hold a single class, so a probe cannot be trained.
    #[error(
        "{what}: training data holds only one class ({n_normal} normal, {n_anomaly} anomalous)"
    )]
    SingleClass {
        /// Which probe or fold.
        what: String,
        /// Normal rows.
        n_normal: usize,
        /// Anomalous rows.
        n_anomaly: usize,
    },
    /// The probe manifest is malformed.
    #[error("{path}:{line}: {problem}")]
    Manifest {
        /// The manifest file.
        path: String,
        /// 1-based line number (0 for the whole file).
        line: u64,
        /// What is wrong.
        problem: String,
    },
    /// A split could not be formed.
    #[error("split: {0}")]
    Split(String),
    /// A configuration value is invalid.
    #[error("invalid probe setting {name}: {problem}")]
    InvalidSetting {
        /// Setting name.
        name: &'static str,
        /// What is wrong.
        problem: String,
    },
}
