//! The one place that maps `--device` and the compiled-in backends to a burn
//! [`Device`]. A new backend is a cargo feature here, not a rewrite elsewhere:
//! models and training code take a `Device` and nothing else.

use asdsweep_shared::spec::Backend;
use burn::tensor::Device;

/// Why a device cannot be used by this build.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BackendError {
    /// The device string is not `cpu` or `cuda:N`.
    #[error("unknown device \"{0}\": expected cpu or cuda:N (e.g. cuda:0)")]
    UnknownDevice(String),
    /// The device needs a backend this binary was built without.
    #[error(
        "device \"{device}\" needs a build with the `cuda` or `tch` cargo feature (e.g. cargo build --release --features cuda); this build has: {compiled}"
    )]
    MissingFeature {
        /// The device asked for.
        device: String,
        /// Backends compiled in.
        compiled: String,
    },
}

/// A chosen device and the backend that runs it.
#[derive(Clone)]
pub struct Selected {
    /// The burn device (without autodiff; training adds it).
    pub device: Device,
    /// Backend reported to the coordinator.
    pub backend: Backend,
    /// The device string as given (`cpu`, `cuda:0`).
    pub name: String,
}

/// Backends compiled into this build.
pub fn compiled() -> Vec<Backend> {
    let mut v = vec![Backend::Flex];
    if cfg!(feature = "tch") {
        v.push(Backend::Tch);
    }
    if cfg!(feature = "cuda") {
        v.push(Backend::Cuda);
    }
    v
}

/// Picks the device for `--device`: `cpu` runs on flex (burn's pure-Rust CPU
/// backend); `cuda:N` runs on burn-cuda if compiled in, else on libtorch.
pub fn select(device: &str) -> Result<Selected, BackendError> {
    if device == "cpu" {
        return Ok(Selected {
            device: Device::flex(),
            backend: Backend::Flex,
            name: device.to_owned(),
        });
    }
    let index: usize = device
        .strip_prefix("cuda:")
        .and_then(|i| i.parse().ok())
        .ok_or_else(|| BackendError::UnknownDevice(device.to_owned()))?;
    cuda_device(index)
        .map(|(d, backend)| Selected {
            device: d,
            backend,
            name: device.to_owned(),
        })
        .ok_or_else(|| BackendError::MissingFeature {
            device: device.to_owned(),
            compiled: Backend::join(&compiled(), ", "),
        })
}

#[cfg(feature = "cuda")]
fn cuda_device(index: usize) -> Option<(Device, Backend)> {
    Some((Device::cuda(index), Backend::Cuda))
}

#[cfg(all(feature = "tch", not(feature = "cuda")))]
#[allow(deprecated)] // burn-tch is deprecated upstream; the design card still asks for it
fn cuda_device(index: usize) -> Option<(Device, Backend)> {
    Some((Device::libtorch_cuda(index), Backend::Tch))
}

#[cfg(not(any(feature = "cuda", feature = "tch")))]
fn cuda_device(_index: usize) -> Option<(Device, Backend)> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_runs_on_flex() {
        let s = select("cpu").unwrap();
        assert_eq!((s.backend, s.name.as_str()), (Backend::Flex, "cpu"));
    }

    #[test]
    fn a_malformed_device_names_the_accepted_forms() {
        let err = select("gpu0").err().unwrap().to_string();
        assert!(err.contains("gpu0") && err.contains("cuda:N"), "{err}");
    }

    #[cfg(not(any(feature = "cuda", feature = "tch")))]
    #[test]
    fn cuda_without_a_gpu_backend_names_the_missing_feature() {
        let err = select("cuda:0").err().unwrap().to_string();
        assert!(
            err.contains("`cuda` or `tch` cargo feature") && err.contains("flex"),
            "{err}"
        );
    }
}
