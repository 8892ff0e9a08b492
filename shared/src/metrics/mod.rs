//! Detection and proxy-task metrics: AUC/pAUC as scikit-learn computes them and the
//! proxy metrics of the study (SI-SDR, uniformity, macro-F1, L1 reconstruction error).

pub mod auc;
pub mod proxy;
pub mod sections;

/// Why a metric could not be computed from its input.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MetricsError {
    /// Scores and labels (or estimate and target) differ in length.
    #[error("length mismatch: {what} has {left} values but {right} were expected")]
    LengthMismatch {
        /// Which inputs disagree.
        what: &'static str,
        /// Length of the first input.
        left: usize,
        /// Length of the second input.
        right: usize,
    },
    /// The input holds only one class, so an ROC curve is undefined.
    #[error("only one class present ({n_normal} normal, {n_anomaly} anomalous); AUC is undefined")]
    SingleClass {
        /// Number of normal (label 0) items.
        n_normal: usize,
        /// Number of anomalous (label 1) items.
        n_anomaly: usize,
    },
    /// A score or sample is NaN or infinite.
    #[error("non-finite value at index {index} of {what}")]
    NonFinite {
        /// Which input holds the value.
        what: &'static str,
        /// Position of the value.
        index: usize,
    },
    /// A parameter is outside its allowed range.
    #[error("invalid parameter {name} = {value}: {allowed}")]
    InvalidParameter {
        /// Parameter name.
        name: &'static str,
        /// Offending value.
        value: f64,
        /// What is allowed.
        allowed: &'static str,
    },
    /// The input is empty or too small for the metric.
    #[error("too few values for {what}: got {got}, need at least {need}")]
    TooFew {
        /// What was being computed.
        what: &'static str,
        /// Values supplied.
        got: usize,
        /// Values required.
        need: usize,
    },
}
