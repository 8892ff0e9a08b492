//! Correlation statistics as scipy computes them: Pearson (t-test p), Spearman (average
//! ranks; exact permutation p for small n), Kendall τ-b, confidence intervals and
//! Benjamini–Hochberg q-values.

pub mod bh;
pub mod correlation;
pub mod interval;

/// Why a statistic could not be computed from its input.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum StatsError {
    /// The two samples differ in length.
    #[error("samples differ in length: {left} vs {right}")]
    LengthMismatch {
        /// Length of x.
        left: usize,
        /// Length of y.
        right: usize,
    },
    /// A value is NaN or infinite.
    #[error("non-finite value at index {index} of {what}")]
    NonFinite {
        /// Which sample.
        what: &'static str,
        /// Position.
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
}
