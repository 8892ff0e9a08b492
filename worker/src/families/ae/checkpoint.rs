//! A training checkpoint of the autoencoder, as one self-describing blob: burn's own
//! records (the model's and the optimizer's, in burn's burnpack format) behind a small
//! JSON header that carries the [`AeTrainingConfig`], the epoch, the loss curve and the
//! best state's epoch and loss.
//!
//! Layout: the magic line `asdsweep-ae-checkpoint\n`, the header's length as a
//! little-endian `u64`, the header (JSON), then the model record, the optimizer record
//! and the best model's record, whose lengths the header gives. Anything else — a
//! truncated blob, extra bytes, another magic — is refused with a message saying so.

use super::{AeError, AeTrainingConfig, Autoencoder};
use burn::module::Module;
use burn::optim::{ModuleOptimizer, OptimizerRecord};
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device};
use serde::{Deserialize, Serialize};

const MAGIC: &[u8] = b"asdsweep-ae-checkpoint\n";
const VERSION: u32 = 1;

/// Where a run stood when the checkpoint was taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Epochs completed.
    pub epoch: usize,
    /// Mean training loss of each completed epoch.
    pub losses: Vec<f32>,
    /// Epoch (1-based) of the lowest loss; 0 if none yet.
    pub best_epoch: usize,
    /// That lowest loss.
    pub best_loss: f32,
    /// Seconds spent training, over every attempt so far.
    pub train_seconds: f64,
}

/// A decoded checkpoint.
#[derive(Clone)]
pub struct Checkpoint {
    /// The run's settings, as saved beside its weights.
    pub config: AeTrainingConfig,
    /// Epoch, loss curve and best state.
    pub progress: Progress,
    model: Vec<u8>,
    optimizer: Vec<u8>,
    best: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct Header {
    version: u32,
    config: AeTrainingConfig,
    progress: Progress,
    /// Byte lengths of the model, optimizer and best-model records, in that order.
    sections: [u64; 3],
}

fn record_err(what: &str) -> impl FnOnce(burn::store::RecordError) -> AeError + '_ {
    move |e| AeError::Checkpoint(format!("{what}: {e}"))
}

impl Checkpoint {
    /// Takes a checkpoint of a run: `model` and `best` without autodiff.
    pub(super) fn from_parts(
        config: AeTrainingConfig,
        progress: Progress,
        model: Autoencoder,
        optim: &ModuleOptimizer,
        best: Autoencoder,
    ) -> Result<Checkpoint, AeError> {
        Ok(Checkpoint {
            config,
            progress,
            model: model.into_record().into_bytes().map_err(record_err("saving the model"))?.to_vec(),
            optimizer: optim.to_record().into_bytes().map_err(record_err("saving the optimizer state"))?.to_vec(),
            best: best.into_record().into_bytes().map_err(record_err("saving the best model"))?.to_vec(),
        })
    }

    /// The blob to store.
    pub fn encode(&self) -> Vec<u8> {
        let header = Header {
            version: VERSION,
            config: self.config.clone(),
            progress: self.progress.clone(),
            sections: [self.model.len() as u64, self.optimizer.len() as u64, self.best.len() as u64],
        };
        let header = serde_json::to_vec(&header).expect("a checkpoint header always serialises to JSON");
        let mut out = Vec::with_capacity(MAGIC.len() + 8 + header.len() + self.model.len() + self.optimizer.len() + self.best.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(header.len() as u64).to_le_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(&self.model);
        out.extend_from_slice(&self.optimizer);
        out.extend_from_slice(&self.best);
        out
    }

    /// Reads a blob written by [`Checkpoint::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Checkpoint, AeError> {
        let bad = |why: String| AeError::Checkpoint(why);
        let rest = bytes
            .strip_prefix(MAGIC)
            .ok_or_else(|| bad("not an autoencoder checkpoint (the magic line `asdsweep-ae-checkpoint` is missing)".into()))?;
        let (len, rest) = rest.split_at_checked(8).ok_or_else(|| bad("truncated before its header length".into()))?;
        let len = u64::from_le_bytes(len.try_into().expect("split_at_checked(8) gives 8 bytes"));
        let (header, rest) = usize::try_from(len)
            .ok()
            .and_then(|l| rest.split_at_checked(l))
            .ok_or_else(|| bad(format!("truncated inside its {len}-byte header")))?;
        let header: Header = serde_json::from_slice(header).map_err(|e| bad(format!("unreadable header: {e}")))?;
        if header.version != VERSION {
            return Err(bad(format!("format version {} (this build reads {VERSION})", header.version)));
        }
        let want = header.sections.iter().try_fold(0u64, |sum, &n| sum.checked_add(n));
        if want != Some(rest.len() as u64) {
            let want = want.map_or_else(|| "more than 2^64".to_owned(), |w| w.to_string());
            return Err(bad(format!("the header announces {want} bytes of records but {} follow (truncated or corrupt)", rest.len())));
        }
        let [m, o, _] = header.sections.map(|n| n as usize);
        Ok(Checkpoint {
            config: header.config,
            progress: header.progress,
            model: rest[..m].to_vec(),
            optimizer: rest[m..m + o].to_vec(),
            best: rest[m + o..].to_vec(),
        })
    }

    /// Applies the saved weights (and their parameter ids, which key the optimizer state) to `model`.
    pub(super) fn load_model(&self, model: Autoencoder) -> Result<Autoencoder, AeError> {
        let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(self.model.clone())).map_err(record_err("reading the model"))?;
        model.try_load_record(record).map_err(record_err("loading the model"))
    }

    /// Applies the saved optimizer state to `optim`.
    pub(super) fn load_optimizer(&self, optim: ModuleOptimizer) -> Result<ModuleOptimizer, AeError> {
        let record =
            OptimizerRecord::from_bytes(Bytes::from_bytes_vec(self.optimizer.clone())).map_err(record_err("reading the optimizer state"))?;
        Ok(optim.load_record(record))
    }

    /// The lowest-loss model, on `device` (without autodiff): what evaluation uses.
    pub fn best_model(&self, device: &Device) -> Result<Autoencoder, AeError> {
        let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(self.best.clone())).map_err(record_err("reading the best model"))?;
        self.config.model.init(device, self.config.seed).try_load_record(record).map_err(record_err("loading the best model"))
    }
}
