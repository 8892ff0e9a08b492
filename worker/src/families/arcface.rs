//! The ArcFace head and loss as the study's `models/generator_comp.py` (`ArcFaceClassifier`,
//! `arcface_loss`): cosines between the L2-normalised embedding and the L2-normalised
//! columns of a `[embedding, classes]` weight; the loss clips them to `±(1 − 1e-7)`, adds
//! the margin to the target class's angle, and takes cross-entropy over `scale · cos(angle)`.
//! The study trains with `s = 30` (the function's default) and `m = 0.5` (`--margin`).
//! At inference the predicted class is the one with the largest cosine.

use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::prelude::Config;
use burn::tensor::{Device, Int, Tensor};

/// The study's ArcFace scale.
pub const STUDY_SCALE: f64 = 30.0;
/// The study's ArcFace margin (radians).
pub const STUDY_MARGIN: f64 = 0.5;

/// Shape of an ArcFace head.
#[derive(Config, Debug, PartialEq)]
pub struct ArcFaceConfig {
    /// Width of the embedding it reads.
    pub embedding_dim: usize,
    /// Number of classes.
    pub classes: usize,
}

/// Class centres on the unit sphere; `weight` is `[embedding_dim, classes]` as the study's `W`.
#[derive(Module, Debug)]
pub struct ArcFace {
    /// One column per class.
    pub weight: Param<Tensor<2>>,
}

impl ArcFaceConfig {
    /// Builds the head with PyTorch's `kaiming_uniform_(W)`: PyTorch takes a 2-D tensor's
    /// fan-in from its second axis, here the class count, so `W ~ U(±√(6 / classes))`.
    pub fn init(&self, device: &Device) -> ArcFace {
        let weight = Initializer::KaimingUniform {
            gain: std::f64::consts::SQRT_2,
            fan_out_only: false,
        }
        .init_with(
            [self.embedding_dim, self.classes],
            Some(self.classes),
            Some(self.embedding_dim),
            device,
        );
        ArcFace { weight }
    }
}

/// `x / max(‖x‖₂, 1e-12)` along `dim`, as `torch.nn.functional.normalize`.
fn normalize(x: Tensor<2>, dim: usize) -> Tensor<2> {
    let norm = x
        .clone()
        .powi_scalar(2)
        .sum_dim(dim)
        .sqrt()
        .clamp_min(1e-12);
    x / norm
}

impl ArcFace {
    /// Cosine between each embedding and each class centre: `[batch, dim]` → `[batch, classes]`.
    pub fn cosine(&self, embedding: Tensor<2>) -> Tensor<2> {
        normalize(embedding, 1).matmul(normalize(self.weight.val(), 0))
    }
}

/// The study's `arcface_loss(cosine, targets, classes, s = scale, m = margin)`: mean
/// cross-entropy over `scale · cos(acos(clip(cosine)) + margin · onehot(target))`.
pub fn arcface_loss(
    cosine: Tensor<2>,
    targets: Tensor<1, Int>,
    margin: f64,
    scale: f64,
) -> Tensor<1> {
    let [_, classes] = cosine.dims();
    let eps = 1e-7;
    let angle = cosine.clamp(-1.0 + eps, 1.0 - eps).acos();
    let onehot: Tensor<2> = targets.clone().one_hot::<2>(classes).float();
    let logits = (angle + onehot * margin).cos() * scale;
    CrossEntropyLossConfig::new()
        .init(&logits.device())
        .forward(logits, targets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    #[test]
    fn cosines_lie_on_the_unit_interval_and_a_class_centre_scores_one_for_itself() {
        let device = crate::families::test_device();
        let head = ArcFaceConfig::new(4, 3).init(&device);
        let centre = head.weight.val().slice([0..4, 1..2]).reshape([1, 4]) * 5.0;
        let cos = head
            .cosine(centre)
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32");
        assert!((cos[1] - 1.0).abs() < 1e-6, "{cos:?}");
        assert!(cos.iter().all(|c| (-1.0..=1.0 + 1e-6).contains(c)));
    }

    #[test]
    fn the_margin_raises_the_loss_and_a_zero_margin_is_plain_scaled_cross_entropy() {
        let device = crate::families::test_device();
        let cosine = Tensor::<2>::from_data(
            TensorData::new(vec![0.9f32, 0.1, -0.2, 0.3, 0.5, 0.4], [2, 3]),
            &device,
        );
        let targets = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 2], [2]), &device);
        let with = arcface_loss(cosine.clone(), targets.clone(), 0.5, 30.0).into_scalar::<f32>();
        let without = arcface_loss(cosine.clone(), targets.clone(), 0.0, 30.0).into_scalar::<f32>();
        let plain = CrossEntropyLossConfig::new()
            .init(&device)
            .forward(cosine * 30.0, targets)
            .into_scalar::<f32>();
        assert!(with > without, "{with} {without}");
        assert!((without - plain).abs() < 1e-4, "{without} {plain}");
    }
}
