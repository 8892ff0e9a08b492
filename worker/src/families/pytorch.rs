//! Importing the study's PyTorch weights into the burn families, the way a user brings a
//! PyTorch checkpoint: its `state_dict` saved as safetensors
//! (`safetensors.torch.save_file(model.state_dict(), path)`), read with burn's
//! [`SafetensorsStore`], PyTorch names remapped onto ours, linear weights transposed and
//! BatchNorm `weight`/`bias` renamed by burn's [`PyTorchToBurnAdapter`]. Tensors the
//! model has no place for (`num_batches_tracked`, the AE's `cov_*` buffers) are ignored;
//! a tensor the model needs but the file lacks, or one of the wrong shape, is an error.

use std::path::{Path, PathBuf};

use burn::store::{
    KeyRemapper, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore, SafetensorsStoreError,
};

use super::ae::{AeConfig, Autoencoder};
use super::classifier::{Classifier, HeadKind};

/// Why PyTorch weights could not be imported.
#[derive(Debug, thiserror::Error)]
#[error("cannot import PyTorch weights from {}: {source}", path.display())]
pub struct ImportError {
    /// The safetensors file.
    pub path: PathBuf,
    /// What the store reported (unreadable file, missing tensor, shape mismatch).
    #[source]
    pub source: SafetensorsStoreError,
}

/// Remaps the first `blocks` repeats of `[Linear, BatchNorm1d, ReLU]` in an `nn.Sequential`
/// onto `Vec<Block { linear, norm }>`: PyTorch index `3b` is block `b`'s linear layer and
/// `3b + 1` its norm. Anchored on the parameter name, so a remapped key is never remapped again.
fn sequential_blocks(
    mut remapper: KeyRemapper,
    prefix: &str,
    blocks: usize,
    target: impl Fn(usize) -> String,
) -> KeyRemapper {
    for b in 0..blocks {
        for (offset, layer) in [(0, "linear"), (1, "norm")] {
            let from = format!(
                r"^{prefix}\.{}\.(weight|bias|running_mean|running_var)$",
                3 * b + offset
            );
            remapper = remapper
                .add_pattern(from, format!("{}.{layer}.$1", target(b)))
                .expect("a valid pattern");
        }
    }
    remapper
}

/// Loads the study's `AENet` (`ae_baseline_utils.py`) `state_dict` into `model`, which
/// must have been built from `cfg` with the same `hidden` and `latent`.
pub fn load_autoencoder(
    model: &mut Autoencoder,
    cfg: &AeConfig,
    path: &Path,
) -> Result<(), ImportError> {
    let d = cfg.depth;
    // The encoder's block after the hidden ones is the bottleneck.
    let mut remapper = sequential_blocks(KeyRemapper::new(), "encoder", d + 1, |b| {
        if b == d {
            "bottleneck".to_owned()
        } else {
            format!("encoder.{b}")
        }
    });
    remapper = sequential_blocks(remapper, "decoder", d, |b| format!("decoder.{b}"));
    let output = format!(r"^decoder\.{}\.(weight|bias)$", 3 * d);
    remapper = remapper
        .add_pattern(output, "output.$1")
        .expect("a valid pattern");
    let mut store = SafetensorsStore::from_file(path)
        .remap(remapper)
        .with_from_adapter(PyTorchToBurnAdapter);
    model
        .load_from(&mut store)
        .map(drop)
        .map_err(|source| ImportError {
            path: path.to_owned(),
            source,
        })
}

/// Loads the study's classifier weights into `model`: the `state_dict` of
/// `models/resnet_oth.ResNet` (`model.conv1…`, `model.layer1.0.downsample.0…`, `model.fc`),
/// and for an ArcFace model the head's `W` (`ArcFaceClassifier.W`, `[embedding, classes]`)
/// in the same file: the study's `train_classifier.py` saves only the ResNet, so `W` must be
/// added to it; the ResNet's phase-2 `fc` is then ignored.
pub fn load_classifier(model: &mut Classifier, path: &Path) -> Result<(), ImportError> {
    let head = match model.head_kind() {
        HeadKind::CrossEntropy => [(r"^model\.fc\.(weight|bias)$", "head.$1")],
        HeadKind::ArcFace => [(r"^W$", "head.weight")],
    };
    let remapper = KeyRemapper::from_patterns(
        head.into_iter()
            .chain([
                (r"\.downsample\.0\.", ".downsample.conv."),
                (r"\.downsample\.1\.", ".downsample.bn."),
                (r"^model\.", "backbone."),
            ])
            .collect(),
    )
    .expect("valid patterns");
    let mut store = SafetensorsStore::from_file(path)
        .remap(remapper)
        .with_from_adapter(PyTorchToBurnAdapter)
        .skip_enum_variants(true);
    model
        .load_from(&mut store)
        .map(drop)
        .map_err(|source| ImportError {
            path: path.to_owned(),
            source,
        })
}

#[cfg(test)]
pub(crate) mod tests {
    //! Parity with PyTorch: `tests/fixtures/gen/model_fixtures.py` builds our own PyTorch
    //! implementation of the study's modules (same `state_dict` names and shapes) with
    //! seeded random weights, runs it in eval mode on a fixed input and saves weights,
    //! input and outputs to `tests/fixtures/models/`.

    use super::*;
    use crate::families::arcface::{ArcFace, ArcFaceConfig, arcface_loss};
    use crate::families::classifier::ClassifierConfig;
    use crate::families::resnet::ResNetConfig;
    use burn::store::ModuleStore;
    use burn::tensor::{Device, Int, Tensor, TensorData};

    pub(crate) fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/models")
            .join(name)
    }

    /// A fixture tensor's values and shape, read through the same store.
    fn tensor(path: &Path, name: &str) -> (Vec<u8>, Vec<usize>) {
        let mut store = SafetensorsStore::from_file(path);
        let t = store
            .get_tensor(name)
            .expect("readable")
            .unwrap_or_else(|| panic!("{name} in the fixture"));
        (t.to_bytes().expect("bytes").to_vec(), t.shape.to_vec())
    }

    pub(crate) fn floats<const D: usize>(path: &Path, name: &str, device: &Device) -> Tensor<D> {
        let (bytes, shape) = tensor(path, name);
        let values: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Tensor::from_data(TensorData::new(values, shape), device)
    }

    /// max |ours − theirs| and max(1, max |theirs|), after checking the shapes agree.
    pub(crate) fn differences<const D: usize>(
        ours: Tensor<D>,
        theirs: Tensor<D>,
        what: &str,
    ) -> (f32, f32) {
        assert_eq!(ours.dims(), theirs.dims(), "{what}: shape");
        let (a, b) = (
            ours.into_data().try_to_vec::<f32>().expect("f32"),
            theirs.into_data().try_to_vec::<f32>().expect("f32"),
        );
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        (worst, b.iter().fold(1.0f32, |m, v| m.max(v.abs())))
    }

    pub(crate) fn assert_close<const D: usize>(
        ours: Tensor<D>,
        theirs: Tensor<D>,
        tol: f32,
        what: &str,
    ) {
        let (worst, _) = differences(ours, theirs, what);
        assert!(
            worst <= tol,
            "{what}: max |burn − PyTorch| = {worst:e} > {tol:e}"
        );
    }

    #[test]
    fn the_autoencoder_matches_the_study_aenet_within_1e_4() {
        let device = crate::families::test_device();
        let path = fixture("ae_h32_l4.safetensors");
        let cfg = AeConfig::new().with_hidden(32).with_latent(4);
        let mut model = cfg.init(&device, 0);
        load_autoencoder(&mut model, &cfg, &path).expect("loads");
        let out = model.forward(floats(&path, "input", &device));
        assert_close(
            out,
            floats(&path, "expected.reconstruction", &device),
            1e-4,
            "reconstruction",
        );
    }

    fn classifier(depth: usize, width: f64, path: &Path) -> Classifier {
        let device = crate::families::test_device();
        let backbone = ResNetConfig::new()
            .with_depth(depth)
            .with_width_multiplier(width);
        let mut model = ClassifierConfig::new(backbone, 3)
            .with_crop_frames(40)
            .init(&device, 0)
            .expect("valid");
        load_classifier(&mut model, path).expect("loads");
        model
    }

    #[test]
    fn resnet18_matches_the_study_resnet_embedding_and_logits_within_1e_4() {
        let device = crate::families::test_device();
        let path = fixture("resnet18_w4.safetensors");
        let model = classifier(18, 1.0 / 16.0, &path);
        let (logits, embedding) = model.forward(floats(&path, "input", &device));
        assert_close(
            embedding,
            floats(&path, "expected.embedding", &device),
            1e-4,
            "embedding",
        );
        assert_close(
            logits,
            floats(&path, "expected.logits", &device),
            1e-4,
            "logits",
        );
    }

    #[test]
    fn resnet50_matches_the_study_resnet_embedding_and_logits_within_1e_4() {
        let device = crate::families::test_device();
        let path = fixture("resnet50_w2.safetensors");
        let model = classifier(50, 1.0 / 32.0, &path);
        let (logits, embedding) = model.forward(floats(&path, "input", &device));
        assert_close(
            embedding,
            floats(&path, "expected.embedding", &device),
            1e-4,
            "embedding",
        );
        assert_close(
            logits,
            floats(&path, "expected.logits", &device),
            1e-4,
            "logits",
        );
    }

    #[test]
    fn a_checkpoint_of_another_width_is_an_error_that_names_the_file() {
        let path = fixture("resnet18_w4.safetensors");
        let device = crate::families::test_device();
        let backbone = ResNetConfig::new().with_width_multiplier(1.0 / 8.0);
        let mut model = ClassifierConfig::new(backbone, 3)
            .init(&device, 0)
            .expect("valid");
        let err = load_classifier(&mut model, &path).expect_err("shape mismatch");
        assert!(err.to_string().contains("resnet18_w4.safetensors"), "{err}");
        let mut model = ClassifierConfig::new(
            ResNetConfig::new()
                .with_depth(34)
                .with_width_multiplier(1.0 / 16.0),
            3,
        )
        .init(&device, 0)
        .expect("valid");
        assert!(
            load_classifier(&mut model, &path).is_err(),
            "ResNet-34 blocks are missing from a ResNet-18 file"
        );
    }

    #[test]
    fn the_arcface_cosines_and_loss_match_the_study_within_1e_5() {
        let device = crate::families::test_device();
        let path = fixture("arcface.safetensors");
        let mut head: ArcFace = ArcFaceConfig::new(16, 4).init(&device);
        let mut store = SafetensorsStore::from_file(&path).with_key_remapping("^W$", "weight");
        head.load_from(&mut store).expect("loads");
        let cosine = head.cosine(floats(&path, "input", &device));
        assert_close(
            cosine.clone(),
            floats(&path, "expected.cosine", &device),
            1e-6,
            "cosine",
        );
        let (bytes, shape) = tensor(&path, "labels");
        let labels: Vec<i64> = bytes
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect();
        let labels = Tensor::<1, Int>::from_data(TensorData::new(labels, shape), &device);
        let loss = arcface_loss(cosine, labels, 0.5, 30.0);
        assert_close(
            loss,
            floats(&path, "expected.loss", &device),
            1e-5,
            "ArcFace loss",
        );
    }
}
