//! Dropout with a counter-based mask on burn's flex CPU backend.
//!
//! burn 0.22's `Dropout` draws a float Bernoulli tensor element by element from the device's
//! ChaCha generator and multiplies by it, so autodiff keeps that float mask for the backward
//! pass. In a separator training step the draws were ~8 % of the time, and at the study's
//! batch of 12 the masks of one step several GB. Here one seed is drawn from the device's
//! generator per call (so a seeded device still gives the same masks), element `i` is kept
//! when a SplitMix64 hash of (seed, i) falls under the keep probability, and the backward
//! pass recomputes the mask from the seed: nothing but the seed is kept, and the mask
//! depends neither on the thread count nor on scheduling.
//!
//! [`dropout`] replaces `Dropout::forward`: on flex with autodiff it runs through the
//! [`FlexDropout`] backend extension, elsewhere (or for types other than f32) it is burn's.

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, DType, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::nn::Dropout;
use burn::tensor::{Distribution, Tensor, TensorData};
use rayon::prelude::*;

use crate::conv::on_flex;

/// Dropout whose mask comes from a seed and is recomputed for the backward pass.
#[backend_extension(Flex, Autodiff)]
pub trait FlexDropout: Backend {
    /// `x` with each element zeroed with probability `prob` (the mask drawn from `seed`)
    /// and the others scaled by `1 / (1 − prob)`.
    fn dropout_seeded(x: FloatTensor<Self>, prob: f64, seed: u64) -> FloatTensor<Self>;
}

impl FlexDropout for Flex {
    fn dropout_seeded(x: FloatTensor<Self>, prob: f64, seed: u64) -> FloatTensor<Self> {
        apply_mask(x, prob, seed)
    }
}

impl<C: CheckpointStrategy> FlexDropout for Autodiff<Flex, C> {
    fn dropout_seeded(x: FloatTensor<Self>, prob: f64, seed: u64) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct DropoutBackward;

        impl Backward<Flex, 1> for DropoutBackward {
            type State = (f64, u64);

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _checkpointer: &mut Checkpointer,
            ) {
                let [node] = ops.parents;
                let grad = grads.consume::<Flex>(&ops.node);
                let (prob, seed) = ops.state;
                if let Some(node) = node {
                    // The same mask and scale applied to the gradient.
                    grads.register::<Flex>(node.id, apply_mask(grad, prob, seed));
                }
            }
        }

        match DropoutBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                prep.finish((prob, seed), apply_mask(x.into_primitive(), prob, seed))
            }
            OpsKind::UnTracked(prep) => prep.finish(apply_mask(x.into_primitive(), prob, seed)),
        }
    }
}

/// `layer.forward(x)`, with the mask drawn as the module docs say when `x` is an f32 tensor
/// on flex. Identity outside training, off autodiff or with probability 0, as burn's.
pub fn dropout<const D: usize>(layer: &Dropout, x: Tensor<D>) -> Tensor<D> {
    let device = x.device();
    if !layer.training.is_enabled() || !device.is_autodiff() || layer.prob == 0.0 {
        return x;
    }
    if !on_flex(device.as_dispatch()) || x.dtype() != DType::F32 {
        return layer.forward(x);
    }
    // Two 24-bit draws from the device's generator make the seed.
    let draws = Tensor::<1>::random([2], Distribution::Uniform(0.0, 16_777_216.0), &device)
        .into_data()
        .try_to_vec::<f32>()
        .expect("f32 draws");
    let seed = ((draws[0] as u64) << 24) | draws[1] as u64;
    Tensor::from_dispatch(<Dispatch as FlexDropout>::dropout_seeded(
        x.into_dispatch(),
        layer.prob,
        seed,
    ))
}

/// SplitMix64's output function of the `index`-th state after `seed`.
fn hash(seed: u64, index: u64) -> u64 {
    let mut z = seed.wrapping_add(index.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Bits of the hash compared against the keep threshold.
const BITS: u32 = 24;

/// Whether element `index` is kept: its hash's top [`BITS`] bits fall under `threshold`.
fn kept(seed: u64, index: usize, threshold: u64) -> bool {
    hash(seed, index as u64) >> (64 - BITS) < threshold
}

/// `x ⊙ mask / (1 − prob)` for the mask of `seed`; `x` must be f32.
fn apply_mask(x: FlexTensor, prob: f64, seed: u64) -> FlexTensor {
    let keep = 1.0 - prob;
    let threshold = (keep * f64::from(1u32 << BITS)).round() as u64;
    let scale = (1.0 / keep) as f32;
    let x = x.to_contiguous();
    let values = x.storage::<f32>();
    let mut out = vec![0.0f32; values.len()];
    const CHUNK: usize = 1 << 14;
    out.par_chunks_mut(CHUNK)
        .zip(values.par_chunks(CHUNK))
        .enumerate()
        .for_each(|(c, (out, values))| {
            for (i, (o, v)) in out.iter_mut().zip(values).enumerate() {
                if kept(seed, c * CHUNK + i, threshold) {
                    *o = v * scale;
                }
            }
        });
    FlexTensor::from_data(TensorData::new(out, x.shape()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::DropoutConfig;
    use burn::tensor::Device;

    fn vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().expect("f32")
    }

    #[test]
    fn keeps_the_probability_scales_the_kept_and_the_gradient_follows_the_mask() {
        let device = Device::flex().autodiff();
        let layer = DropoutConfig::new(0.2).init();
        let n = 200_000;
        let x = Tensor::<2>::random([400, 500], Distribution::Uniform(1.0, 2.0), &device)
            .require_grad();
        let w = Tensor::<2>::random([400, 500], Distribution::Uniform(1.0, 2.0), &device);
        let y = dropout(&layer, x.clone());
        let grads = (y.clone() * w.clone()).sum().backward();
        let dx = vec(x.grad(&grads).expect("gradient"));
        let (x, y, w) = (vec(x.inner()), vec(y.inner()), vec(w.inner()));
        let mut kept = 0;
        for i in 0..n {
            if y[i] == 0.0 {
                assert_eq!(dx[i], 0.0, "dropped element {i} has a gradient");
            } else {
                kept += 1;
                assert!((y[i] - x[i] / 0.8).abs() < 1e-6, "element {i} not scaled");
                assert!((dx[i] - w[i] / 0.8).abs() < 1e-6, "gradient {i} not scaled");
            }
        }
        // Binomial(200,000, 0.8): standard deviation ≈ 179; allow 5 of them.
        let expected = 0.8 * n as f64;
        assert!(
            (kept as f64 - expected).abs() < 5.0 * 179.0,
            "kept {kept} of {n}"
        );
    }

    #[test]
    fn the_mask_depends_on_the_seed_not_on_the_thread_count() {
        let x = FlexTensor::from_data(TensorData::new(vec![1.0f32; 50_000], [50_000]));
        let masked = |threads: usize, seed: u64| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("pool");
            pool.install(|| apply_mask(x.clone(), 0.5, seed))
                .into_data()
                .try_to_vec::<f32>()
                .expect("f32")
        };
        assert_eq!(masked(1, 7), masked(3, 7));
        assert_ne!(masked(1, 7), masked(1, 8));
    }

    #[test]
    fn outside_training_or_autodiff_it_is_the_identity() {
        let x = Tensor::<1>::from_floats([1.0, 2.0, 3.0], &Device::flex());
        let layer = DropoutConfig::new(0.5).init();
        assert_eq!(vec(dropout(&layer, x.clone())), vec![1.0, 2.0, 3.0]);
        let mut off = layer.clone();
        off.training = burn::module::Param::from_bool(false);
        let tracked = x.autodiff();
        assert_eq!(vec(dropout(&off, tracked).inner()), vec![1.0, 2.0, 3.0]);
    }
}
