//! Model families: each trains (or loads) models of one proxy task and reports its proxy
//! metrics, on the one job skeleton. A family is its spec module in `shared::family`, its
//! files here, and one line in [`builtin`].
//!
//! - [`skeleton`]: the job skeleton and the hooks a family implements.
//! - [`inputs`], [`training`], [`probes`]: what the skeleton is made of (data and
//!   checkpoints in, training with checkpoint upload and resume, the probes).
//! - [`checkpoint`]: the checkpoint container every trained family saves and resumes from.
//! - [`noop`]: the diagnostic kind.
//! - [`ae`]: the autoencoder family.
//! - [`resnet`]: the ResNet backbones (torchvision layout, as the study trains them).
//! - [`arcface`]: the ArcFace head and loss.
//! - [`classifier`]: the classification family (ResNet + cross-entropy or ArcFace head).
//! - [`contrastive`]: the contrastive family (SimCLR / SimSiam on a ResNet, augmented views).
//! - [`separation`]: the source-separation family (conformer separator, SI-SDR proxy).
//! - [`pytorch`]: importing the study's PyTorch weights (safetensors) with burn's store.

pub mod ae;
pub mod arcface;
pub mod checkpoint;
pub mod classifier;
pub mod contrastive;
pub mod inputs;
pub mod noop;
pub mod probes;
pub mod pytorch;
pub mod resnet;
pub mod separation;
pub mod skeleton;
pub mod training;

use crate::registry::Registry;
use skeleton::Trainable;

/// Every job kind this build runs: the one list of built-in families.
pub fn builtin() -> Registry {
    Registry::new()
        .with(noop::Noop)
        .with(Trainable(ae::job::Autoencoder))
        .with(Trainable(classifier::job::Classifier))
        .with(Trainable(separation::job::Separation))
        .with(Trainable(contrastive::job::Contrastive))
}

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};

/// A config value that no model can be built from.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{key} = {value} is not supported: expected {expected}")]
pub struct ConfigError {
    /// The config key.
    pub key: &'static str,
    /// The value given.
    pub value: String,
    /// What is allowed.
    pub expected: &'static str,
}

/// burn draws initial weights from the device's generator, which is shared by
/// every thread: seeding and initialising under one lock keeps concurrent jobs
/// (worker slots, parallel tests) from drawing from each other's sequence.
static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Builds a module with `build` on a device seeded with `seed`, drawing every
/// (lazily initialised) parameter before the lock is released, so the weights
/// depend on the seed alone.
pub(crate) fn init_seeded<M: Module>(device: &Device, seed: u64, build: impl FnOnce() -> M) -> M {
    let _guard = INIT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    device.seed(seed);
    let model = build();
    // Parameters are initialised lazily, on first use: draw them now, under the lock.
    model.visit(&mut Materialize);
    model
}

/// Touches every parameter so that its lazy initialiser runs.
struct Materialize;

impl ModuleVisitor for Materialize {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let _ = param.val();
    }
}

/// Learning rate of epoch `epoch` (1-based) under step decay: `lr · gamma^⌊(epoch−1)/step⌋`,
/// as PyTorch's `StepLR` stepped once per epoch.
pub(crate) fn step_decay(lr: f64, gamma: f64, step_epochs: usize, epoch: usize) -> f64 {
    let steps = (epoch.saturating_sub(1) / step_epochs.max(1)) as i32;
    lr * gamma.powi(steps)
}

/// The device the families' tests run on: flex; CPU libtorch in a build with the `tch`
/// feature when `ASDSWEEP_TEST_DEVICE=libtorch` (as `scripts/check-tch.sh` runs them); the
/// GPU `worker --device cuda:N` would use when `ASDSWEEP_TEST_DEVICE=cuda:N` (as
/// `scripts/check-gpu.sh` runs them; a build without `cuda` or `tch` panics, naming why).
#[cfg(test)]
pub(crate) fn test_device() -> Device {
    let asked = std::env::var("ASDSWEEP_TEST_DEVICE").unwrap_or_default();
    #[cfg(feature = "tch")]
    if asked == "libtorch" {
        #[allow(deprecated)] // burn-tch is deprecated upstream; the design card still asks for it
        return Device::libtorch();
    }
    if asked.starts_with("cuda:") {
        return crate::backend::select(&asked)
            .unwrap_or_else(|e| panic!("ASDSWEEP_TEST_DEVICE={asked}: {e}"))
            .device;
    }
    Device::flex()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tests_run_on_the_device_asked_for() {
        let asked = std::env::var("ASDSWEEP_TEST_DEVICE").unwrap_or_default();
        let device = format!("{:?}", test_device());
        let on_libtorch = device.contains("LibTorch");
        let on_cuda = device.contains("Cuda") || device.contains("Cuda(");
        if asked.starts_with("cuda:") {
            assert!(on_cuda || on_libtorch, "asked {asked}, got {device}");
        } else {
            assert!(!on_cuda, "{device}");
            assert_eq!(on_libtorch, asked == "libtorch" && cfg!(feature = "tch"));
        }
    }

    #[test]
    fn step_decay_halves_the_rate_every_step_epochs() {
        assert_eq!(step_decay(1e-5, 0.5, 50, 1), 1e-5);
        assert_eq!(step_decay(1e-5, 0.5, 50, 50), 1e-5);
        assert_eq!(step_decay(1e-5, 0.5, 50, 51), 5e-6);
        assert_eq!(step_decay(1e-5, 0.5, 50, 200), 1.25e-6);
    }
}
