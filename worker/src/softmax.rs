//! Softmax over the last dimension with its own backward pass on burn's flex CPU backend.
//!
//! burn 0.22's autodiff has no softmax of its own: it records the default decomposition
//! (max, subtract, exp, sum, divide) op by op, and keeps the exponentials, their sums and
//! the output alive for the backward pass, then runs about ten full-size operations there.
//! In the separator's attention, at the study's batch of 12, one such tensor is
//! [1212, 4, 161, 161] floats (500 MB), so that retention alone decided whether a training
//! step fits in memory. Here the forward pass is flex's fused softmax and the backward pass
//! keeps only the output `y`: `dx = y ⊙ (g − Σ_j g ⊙ y)`, one fused pass per row. Attention's
//! next product (`y · V`) keeps the same `y`, so the softmax adds no memory of its own.
//!
//! [`softmax_last`] replaces `burn::tensor::activation::softmax(x, D - 1)`: on flex (with or
//! without autodiff) it runs through the [`FlexSoftmax`] backend extension, elsewhere it is
//! burn's.

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::{ActivationOps, FloatTensorOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, DType, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::tensor::{Tensor, TensorData, activation};
use rayon::prelude::*;

use crate::conv::on_flex;

/// Softmax over the last dimension whose autodiff backward keeps only the output.
#[backend_extension(Flex, Autodiff)]
pub trait FlexSoftmax: Backend {
    /// Softmax of `x` over its last dimension.
    fn softmax_last(x: FloatTensor<Self>) -> FloatTensor<Self>;
}

impl FlexSoftmax for Flex {
    fn softmax_last(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let last = x.shape().num_dims() - 1;
        Flex::softmax(x, last)
    }
}

impl<C: CheckpointStrategy> FlexSoftmax for Autodiff<Flex, C> {
    fn softmax_last(x: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct SoftmaxBackward;

        impl Backward<Flex, 1> for SoftmaxBackward {
            type State = FlexTensor;

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _checkpointer: &mut Checkpointer,
            ) {
                let [node] = ops.parents;
                let grad = grads.consume::<Flex>(&ops.node);
                if let Some(node) = node {
                    grads.register::<Flex>(node.id, input_grad(ops.state, grad));
                }
            }
        }

        let last = x.shape().num_dims() - 1;
        match SoftmaxBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = Flex::softmax(x.into_primitive(), last);
                prep.finish(y.clone(), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::softmax(x.into_primitive(), last)),
        }
    }
}

/// `softmax(x, D - 1)`, with [`input_grad`] as its backward pass on flex.
pub fn softmax_last<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if !on_flex(x.device().as_dispatch()) {
        return activation::softmax(x, D - 1);
    }
    Tensor::from_dispatch(<Dispatch as FlexSoftmax>::softmax_last(x.into_dispatch()))
}

/// The gradient of softmax over the last dimension at the output `y` for the output
/// gradient `grad`: `y ⊙ (grad − Σ_last grad ⊙ y)`. f32 runs as one fused pass per row;
/// other types as flex operations.
pub fn input_grad(y: FlexTensor, grad: FlexTensor) -> FlexTensor {
    let shape = y.shape();
    let dims = shape.num_dims();
    let row = shape.as_slice().last().copied().unwrap_or(1);
    if y.dtype() != DType::F32 || grad.dtype() != DType::F32 || row == 0 {
        let dot = Flex::float_sum_dim(Flex::float_mul(grad.clone(), y.clone()), dims - 1);
        return Flex::float_mul(y, Flex::float_sub(grad, dot));
    }
    let (y, grad) = (y.to_contiguous(), grad.to_contiguous());
    let (ys, gs) = (y.storage::<f32>(), grad.storage::<f32>());
    let mut dx = vec![0.0f32; ys.len()];
    // A few rows per task: rows of the attention are 100–200 values long.
    let rows_per_task = 64;
    dx.par_chunks_mut(rows_per_task * row)
        .zip(ys.par_chunks(rows_per_task * row))
        .zip(gs.par_chunks(rows_per_task * row))
        .for_each(|((dx, y), g)| {
            for ((dx, y), g) in dx
                .chunks_exact_mut(row)
                .zip(y.chunks_exact(row))
                .zip(g.chunks_exact(row))
            {
                let dot: f32 = y.iter().zip(g).map(|(y, g)| y * g).sum();
                for ((dx, y), g) in dx.iter_mut().zip(y).zip(g) {
                    *dx = y * (g - dot);
                }
            }
        });
    FlexTensor::from_data(TensorData::new(dx, y.shape()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution};

    /// (output, input gradient) of Σ softmax(x) ⊙ w through `f`.
    fn run(f: fn(Tensor<4>) -> Tensor<4>, x: &Tensor<4>, w: &Tensor<4>) -> (Vec<f32>, Vec<f32>) {
        let x = x.clone().autodiff().require_grad();
        let y = f(x.clone());
        let grads = (y.clone() * w.clone().autodiff()).sum().backward();
        let dx = x.grad(&grads).expect("input gradient");
        let vec = |t: Tensor<4>| t.into_data().try_to_vec::<f32>().expect("f32");
        (vec(y.inner()), vec(dx))
    }

    fn assert_close(ours: &[f32], theirs: &[f32], tol: f32, what: &str) {
        assert_eq!(ours.len(), theirs.len(), "{what}: lengths");
        for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
            assert!((a - b).abs() <= tol, "{what}[{i}]: {a} vs {b}");
        }
    }

    #[test]
    fn output_and_gradient_match_burns_softmax() {
        let device = Device::flex();
        // Rows of 37 (not a multiple of the SIMD width), 3 × 5 × 7 = 105 rows: two tasks.
        let x = Tensor::<4>::random([3, 5, 7, 37], Distribution::Normal(0.0, 3.0), &device);
        let w = Tensor::<4>::random(x.dims(), Distribution::Normal(0.0, 1.0), &device);
        let ours = run(softmax_last, &x, &w);
        let burns = run(|x| activation::softmax(x, 3), &x, &w);
        assert_close(&ours.0, &burns.0, 1e-6, "output");
        assert_close(&ours.1, &burns.1, 1e-6, "input gradient");
        // And the gradient is the closed form, not burn's by construction: rows sum to 0.
        for row in ours.1.chunks(37) {
            assert!(row.iter().sum::<f32>().abs() < 1e-5);
        }
    }

    #[test]
    fn untracked_input_gives_the_plain_softmax() {
        let device = Device::flex();
        let x = Tensor::<2>::from_floats([[0.0, 1.0, 2.0], [5.0, 5.0, 5.0]], &device);
        let y = softmax_last(x)
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32");
        let e = [1.0f32, 1.0f32.exp(), 2.0f32.exp()];
        let s: f32 = e.iter().sum();
        let expected = [
            e[0] / s,
            e[1] / s,
            e[2] / s,
            1.0 / 3.0,
            1.0 / 3.0,
            1.0 / 3.0,
        ];
        assert_close(&y, &expected, 1e-6, "softmax");
    }
}
