//! Parity with PyTorch: `tests/fixtures/gen/separation_fixtures.py` defines the separator
//! in PyTorch from the issue's description (the same `state_dict` names as our modules),
//! with seeded random weights, runs it in eval mode and saves weights (safetensors) and
//! inputs/outputs (`tests/fixtures/separation/separation.json`).

use super::model::{Conformer, ConformerConfig, DenseEncoder, DilatedDense};
use super::{SeparatorConfig, loss};
use crate::families::pytorch::tests::assert_close;
use asdsweep_shared::metrics::proxy::si_sdr_f32;
use burn::module::Module;
use burn::store::{KeyRemapper, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};
use burn::tensor::{Device, Tensor, TensorData};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/separation")
}

static FIXTURES: LazyLock<Value> = LazyLock::new(|| {
    let text = std::fs::read_to_string(dir().join("separation.json")).expect("fixture");
    serde_json::from_str(&text).expect("JSON")
});

/// A fixture array as a tensor (values are the shortest decimals of f32s: parsed, then rounded).
fn array<const D: usize>(v: &Value, device: &Device) -> Tensor<D> {
    let shape: Vec<usize> = v["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    let data: Vec<f32> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    Tensor::from_data(TensorData::new(data, shape), device)
}

/// Loads our PyTorch definition's `state_dict`: instance norms' and PReLUs' `weight`/`bias`
/// take burn's names (`gamma`/`beta`, `alpha`; burn's adapter renames only batch and layer
/// norms), linear weights are transposed by the adapter.
fn load<M: Module>(mut model: M, file: &str) -> M {
    let remapper = KeyRemapper::from_patterns(vec![
        (r"(^|\.)(norm|norm_in|norm_out)\.weight$", "$1$2.gamma"),
        (r"(^|\.)(norm|norm_in|norm_out)\.bias$", "$1$2.beta"),
        (r"(^|\.)(act|act_in|act_out|slope)\.weight$", "$1$2.alpha"),
    ])
    .expect("valid patterns");
    let mut store = SafetensorsStore::from_file(dir().join(file))
        .remap(remapper)
        .with_from_adapter(PyTorchToBurnAdapter)
        .allow_partial(true);
    let applied = model.load_from(&mut store).expect("the weights load");
    assert!(
        applied.missing.is_empty(),
        "{file}: tensors the model needs but the file lacks: {:?}",
        applied.missing
    );
    model
}

fn conformer_case(case: &str) {
    let fx = &FIXTURES[case];
    let c = &fx["config"];
    let device = Device::flex();
    let cfg = ConformerConfig::new()
        .with_heads(c["heads"].as_u64().unwrap() as usize)
        .with_max_relative(c["max_rel"].as_u64().unwrap() as usize);
    let dim = c["dim"].as_u64().unwrap() as usize;
    let block = load(
        Conformer::new(dim, &cfg, &device),
        fx["weights"].as_str().unwrap(),
    );
    let out = block.forward(array(&fx["input"], &device));
    assert_close(out, array(&fx["output"], &device), 1e-4, case);
}

#[test]
fn a_conformer_block_matches_pytorch_within_1e_4() {
    conformer_case("conformer");
}

#[test]
fn relative_distances_beyond_the_table_share_its_last_rows_as_in_pytorch() {
    conformer_case("conformer_clamped");
}

#[test]
fn the_dilated_dense_block_and_the_dense_encoder_match_pytorch_within_1e_4() {
    let device = Device::flex();
    let fx = &FIXTURES["dilated_dense"];
    let c = fx["config"]["C"].as_u64().unwrap() as usize;
    let dense = load(
        DilatedDense::new(c, 4, &device),
        "dilated_dense.safetensors",
    );
    let out = dense.forward(array(&fx["input"], &device));
    assert_close(out, array(&fx["output"], &device), 1e-4, "dilated dense");

    let fx = &FIXTURES["dense_encoder"];
    let c = fx["config"]["C"].as_u64().unwrap() as usize;
    let encoder = load(
        DenseEncoder::new(c, 4, &device),
        "dense_encoder.safetensors",
    );
    let out = encoder.forward(array(&fx["input"], &device));
    assert_close(out, array(&fx["output"], &device), 1e-4, "dense encoder");
}

#[test]
fn the_whole_separator_matches_pytorch_within_1e_4_with_and_without_conformer_blocks() {
    let device = Device::flex();
    for case in ["separator", "separator_cb0"] {
        let fx = &FIXTURES[case];
        let c = &fx["config"];
        let cfg = SeparatorConfig::new(
            c["C"].as_u64().unwrap() as usize,
            c["cb"].as_u64().unwrap() as usize,
        );
        let model = load(cfg.init(&device, 0), fx["weights"].as_str().unwrap());
        // The fixture is [B, 2, F, T] as torch.stft stacks it; ours is [B, 2, T, F].
        let input = array::<4>(&fx["input"], &device).swap_dims(2, 3);
        let out = model.forward(input);
        assert_close(
            out.estimate.swap_dims(2, 3),
            array(&fx["output"], &device),
            1e-4,
            &format!("{case} estimate"),
        );
        assert_eq!(out.features.dims()[1], cfg.feature_dim(), "{case}");
        assert_close(
            out.features,
            array(&fx["features"], &device),
            1e-4,
            &format!("{case} features"),
        );
    }
}

#[test]
fn the_loss_and_each_of_its_terms_match_pytorch_within_1e_5() {
    let device = Device::flex();
    let fx = &FIXTURES["loss"];
    let est = array::<4>(&fx["est"], &device).swap_dims(2, 3);
    let target = array::<4>(&fx["target"], &device).swap_dims(2, 3);
    let l = loss(est, target);
    let scalar = |t: Tensor<1>| t.into_scalar::<f32>();
    let expect = |k: &str| fx[k]["data"][0].as_f64().unwrap() as f32;
    for (what, ours, theirs) in [
        (
            "log magnitude",
            scalar(l.log_magnitude.clone()),
            expect("log_mag"),
        ),
        (
            "compressed",
            scalar(l.compressed.clone()),
            expect("pow_mag"),
        ),
        ("smooth L1", scalar(l.complex.clone()), expect("smooth_l1")),
        ("total", scalar(l.total()), expect("loss")),
    ] {
        assert!(
            (ours - theirs).abs() <= 1e-5,
            "{what}: ours {ours}, PyTorch {theirs}"
        );
    }
}

#[test]
fn si_sdr_of_f32_signals_matches_the_torchmetrics_formula_within_1e_4_db() {
    let fx = &FIXTURES["si_sdr"];
    let rows = |k: &str| -> Vec<Vec<f64>> {
        fx[k]["data"]
            .as_array()
            .unwrap()
            .chunks(1000)
            .map(|r| {
                r.iter()
                    .map(|x| f64::from(x.as_f64().unwrap() as f32))
                    .collect()
            })
            .collect()
    };
    let (estimates, targets) = (rows("estimate"), rows("target"));
    let expected = fx["expected"]["data"].as_array().unwrap();
    for (i, ((e, t), want)) in estimates.iter().zip(&targets).zip(expected).enumerate() {
        let got = si_sdr_f32(e, t).unwrap();
        let want = want.as_f64().unwrap();
        assert!(
            (got - want).abs() <= 1e-4,
            "pair {i} ({}): ours {got} dB, reference {want} dB",
            fx["config"]["kinds"][i]
        );
    }
}
