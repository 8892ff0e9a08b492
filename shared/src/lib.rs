//! asdsweep's pure core: what every other crate agrees on.
//!
//! - [`spec`]: the versioned sweep spec (TOML) and its validation.
//! - [`grid`]: expansion of a spec into the job grid (pure, deterministic).
//! - [`metrics`]: AUC/pAUC as scikit-learn and the proxy-task metrics.
//! - [`probe`]: Mahalanobis and linear probes on embeddings.
//! - [`stats`]: correlations, p-values, intervals and Benjamini–Hochberg.
//! - [`analysis`]: proxy-vs-ASD aggregation, the reference pipeline's summary reader and
//!   alignment verdicts.
//! - [`augment`]: the contrastive family's 33 augmented views of a clip.
//! - [`audio`]: WAV decoding (any PCM/float WAV → f32 mono as librosa), WAV writing, resampling.
//! - [`logmel`]: the reference log-mel front end, AE frame stacking and crops.
//! - [`npy`]: NumPy `.npy` float32 matrices.
//! - [`dataset`]: ASD dataset layouts, the manifest, its fingerprint and `data check`.
//! - [`synth`]: the synthetic machine-sound generator.
//! - [`throughput`]: the front end's clips-per-second benchmark.
//! - [`proto`]: the generated wire contract (feature `proto`).
//! - [`auth`]: bearer tokens on that wire (feature `proto`).

#![warn(missing_docs)]

pub mod analysis;
pub mod audio;
pub mod augment;
pub mod dataset;
pub mod family;
pub mod grid;
pub mod logmel;
pub mod metrics;
pub mod mixture;
pub mod npy;
pub mod probe;
pub mod spec;
pub mod stats;
pub mod stft;
pub mod synth;
pub mod throughput;

#[cfg(feature = "proto")]
pub mod auth;
#[cfg(feature = "proto")]
pub mod remote;
#[cfg(feature = "proto")]
pub mod telemetry;

#[cfg(feature = "proto")]
pub mod proto {
    //! Generated from `proto/asdsweep/v1/*.proto`.
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("asdsweep.v1");

    /// A gRPC channel that carries the bearer token, if one is configured.
    pub type AuthChannel = tonic::service::interceptor::InterceptedService<
        tonic::transport::Channel,
        crate::auth::Bearer,
    >;
}

#[cfg(feature = "proto")]
mod proto_direction {
    use crate::analysis::Direction;
    use crate::proto::MetricDirection;

    impl From<Direction> for MetricDirection {
        fn from(d: Direction) -> MetricDirection {
            match d {
                Direction::HigherIsBetter => MetricDirection::HigherIsBetter,
                Direction::LowerIsBetter => MetricDirection::LowerIsBetter,
            }
        }
    }

    impl MetricDirection {
        /// The direction on the wire as the analysis reads it; `None` when unspecified.
        pub fn direction(self) -> Option<Direction> {
            match self {
                MetricDirection::Unspecified => None,
                MetricDirection::HigherIsBetter => Some(Direction::HigherIsBetter),
                MetricDirection::LowerIsBetter => Some(Direction::LowerIsBetter),
            }
        }
    }
}
