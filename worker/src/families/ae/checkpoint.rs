//! The autoencoder's training checkpoint: the families' container
//! ([`crate::families::checkpoint`]) holding an [`AeTrainingConfig`] and [`Autoencoder`]
//! records, opened by the magic line `asdsweep-ae-checkpoint`.

use super::{AeError, AeTrainingConfig, Autoencoder};
use crate::families::checkpoint::TrainingConfig;
use burn::tensor::Device;

pub use crate::families::checkpoint::Progress;

/// A decoded autoencoder checkpoint.
pub type Checkpoint = crate::families::checkpoint::Checkpoint<AeTrainingConfig>;

impl TrainingConfig for AeTrainingConfig {
    const MAGIC: &'static [u8] = b"asdsweep-ae-checkpoint\n";
    const FAMILY: &'static str = "an autoencoder";
}

impl Checkpoint {
    /// The lowest-loss model, on `device` (without autodiff): what evaluation uses.
    pub fn best_model(&self, device: &Device) -> Result<Autoencoder, AeError> {
        Ok(self.load_best(self.config.model.init(device, self.config.seed))?)
    }
}
