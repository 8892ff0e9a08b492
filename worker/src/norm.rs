//! Batch normalisation in training mode as two fused passes on burn's flex CPU backend.
//!
//! burn 0.22 differentiates `batch_norm_train` as one operation, but flex does not implement
//! it: it runs the backend's default, composed of tensor operations. For a `[N, C, H, W]`
//! activation that is two transposing copies, two means, a subtraction and a square for the
//! statistics, then four broadcast operations for the output; its backward pass takes about
//! fifteen more full-size operations. Each is a pass over the activation (80 MB for the first
//! block of a ResNet-18 at batch 32), and at the autoencoder's `[512, 128]` each is a
//! separate kernel launch on the main thread. Here, for f32:
//! - forward: one pass for the per-channel sum and sum of squares (f64 accumulators), one
//!   pass writing `(x − μ) · γ/σ + β`;
//! - backward: one pass for the per-channel `Σ g` and `Σ g·x` (f64), one pass writing
//!   `dx = γ/σ · (g − mean(g)) − γ/σ³ · mean(g·(x − μ)) · (x − μ)`, which is the same formula
//!   as the default's `γ/σ · (g − mean(g) − x̂ · mean(g·x̂))`, with `dγ = Σ g·x̂` and `dβ = Σ g`.
//!
//! [`batch_norm`] replaces `BatchNorm::forward`: in training mode on flex (with autodiff) it
//! runs through the [`FlexBatchNorm`] backend extension and updates the running statistics
//! as burn does; in inference mode, on other backends or for other types, it is burn's.

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::ModuleOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    Autodiff, AutodiffBackend, Backend, DType, Dispatch, Flex, TensorMetadata, backend_extension,
};
use burn::nn::BatchNorm;
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

use crate::conv::on_flex;

/// Batch normalisation with batch statistics: `(output, mean, biased variance)`.
#[backend_extension(Flex, Autodiff)]
pub trait FlexBatchNorm: Backend {
    /// `batch_norm_train(x, gamma, beta, epsilon)` as `(output, mean, variance)`.
    fn batch_norm_fused(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

impl FlexBatchNorm for Flex {
    fn batch_norm_fused(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        forward(x, gamma, beta, epsilon)
    }
}

impl<C: CheckpointStrategy> FlexBatchNorm for Autodiff<Flex, C> {
    fn batch_norm_fused(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        #[derive(Debug)]
        struct BatchNormBackward;

        impl Backward<Flex, 3> for BatchNormBackward {
            /// The input, gamma, the batch mean and variance, epsilon.
            type State = (FlexTensor, FlexTensor, FlexTensor, FlexTensor, f64);

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                _checkpointer: &mut Checkpointer,
            ) {
                let [node_x, node_gamma, node_beta] = ops.parents;
                let grad = grads.consume::<Flex>(&ops.node);
                let (x, gamma, mean, variance, epsilon) = ops.state;
                let (dx, dgamma, dbeta) = backward(x, gamma, mean, variance, epsilon, grad);
                for (node, g) in [(node_x, dx), (node_gamma, dgamma), (node_beta, dbeta)] {
                    if let Some(node) = node {
                        grads.register::<Flex>(node.id, g);
                    }
                }
            }
        }

        let prepared = BatchNormBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful();
        let (x, gamma, beta) = (
            x.into_primitive(),
            gamma.into_primitive(),
            beta.into_primitive(),
        );
        let (output, mean, variance) = forward(x.clone(), gamma.clone(), beta, epsilon);
        let statistic = |t: FlexTensor| <Self as AutodiffBackend>::from_inner(t);
        let output = match prepared {
            OpsKind::Tracked(prep) => {
                let state = (x, gamma, mean.clone(), variance.clone(), epsilon);
                prep.finish(state, output)
            }
            OpsKind::UnTracked(prep) => prep.finish(output),
        };
        (output, statistic(mean), statistic(variance))
    }
}

/// `bn.forward(x)`, with two differences in training mode: on flex the normalisation runs
/// through [`FlexBatchNorm`], and the running variance is updated with the unbiased batch
/// variance (`n / (n − 1)` times the biased one that normalises the batch), as PyTorch's
/// `BatchNorm` does, where burn's uses the biased one. In inference mode it is
/// `bn.forward(x)`.
pub fn batch_norm<const D: usize>(bn: &BatchNorm, x: Tensor<D>) -> Tensor<D> {
    let device = x.device();
    if !(device.is_autodiff() && bn.training.is_enabled()) {
        return bn.forward(x);
    }
    let dims = x.dims();
    let [channels] = bn.gamma.shape().dims();
    assert!(
        D >= 2 && dims[1] == channels,
        "batch norm over {channels} channels given an input of shape {dims:?}"
    );
    let (gamma, beta) = (bn.gamma.val(), bn.beta.val());
    let (output, mean, variance) = if on_flex(device.as_dispatch()) {
        let (output, mean, variance) = <Dispatch as FlexBatchNorm>::batch_norm_fused(
            x.into_dispatch(),
            gamma.into_dispatch(),
            beta.into_dispatch(),
            bn.epsilon,
        );
        (
            Tensor::from_dispatch(output),
            Tensor::from_dispatch(mean),
            Tensor::from_dispatch(variance),
        )
    } else {
        let r = burn::tensor::module::batch_norm_train(x, gamma, beta, bn.epsilon);
        (r.output, r.mean, r.variance)
    };
    let count = dims[0] * dims[2..].iter().product::<usize>();
    let unbiased = count as f64 / (count.max(2) - 1) as f64;
    let momentum = bn.momentum;
    let running = |state: Tensor<1>, batch: Tensor<1>| {
        state
            .to_device(&device)
            .mul_scalar(1.0 - momentum)
            .add(batch.detach().mul_scalar(momentum))
            .detach()
    };
    bn.running_mean
        .update(running(bn.running_mean.value_sync(), mean));
    bn.running_var.update(running(
        bn.running_var.value_sync(),
        variance.mul_scalar(unbiased),
    ));
    output
}

/// `x` viewed as `[samples, channels, positions]`: channel `c` of sample `n` is the
/// contiguous run `(n · channels + c) · positions ..` of `positions` values.
#[derive(Clone, Copy)]
struct Layout {
    samples: usize,
    channels: usize,
    positions: usize,
}

/// Below this many values a pass runs on the calling thread; it is also the size of the
/// row blocks whose partial sums are added in order (so that the sums do not depend on the
/// thread count).
const PARALLEL_FLOATS: usize = 1 << 14;

/// Runs shorter than this are processed a sample at a time, all channels together (the
/// autoencoder's `[512, 128]` has runs of one value).
const ROW_POSITIONS: usize = 16;

/// `p · (u − q) + r · (v − s) + t`, the same for every value of a channel.
#[derive(Clone, Copy)]
struct Affine {
    p: f32,
    q: f32,
    r: f32,
    s: f32,
    t: f32,
}

impl Affine {
    #[inline(always)]
    fn at(&self, u: f32, v: f32) -> f32 {
        self.p * (u - self.q) + self.r * (v - self.s) + self.t
    }
}

impl Layout {
    fn of(x: &FlexTensor) -> Self {
        let shape = x.shape();
        let dims = shape.as_slice();
        Layout {
            samples: dims[0],
            channels: dims[1],
            positions: dims[2..].iter().product(),
        }
    }

    /// Values per channel.
    fn count(&self) -> usize {
        self.samples * self.positions
    }

    /// Values per sample.
    fn width(&self) -> usize {
        self.channels * self.positions
    }

    /// Per channel, `(Σ a, Σ a·b)` over its values, in f64.
    fn sums(&self, a: &[f32], b: &[f32]) -> Vec<[f64; 2]> {
        if self.positions < ROW_POSITIONS {
            return self.sums_by_rows(a, b);
        }
        let channel = |c: usize| {
            (0..self.samples)
                .map(|n| {
                    let start = (n * self.channels + c) * self.positions;
                    let run = start..start + self.positions;
                    run_sums(&a[run.clone()], &b[run])
                })
                .fold([0.0; 2], |x, y| [x[0] + y[0], x[1] + y[1]])
        };
        if a.len() < PARALLEL_FLOATS {
            (0..self.channels).map(channel).collect()
        } else {
            (0..self.channels).into_par_iter().map(channel).collect()
        }
    }

    /// [`Layout::sums`] a sample at a time: per value of a sample, sums over the samples
    /// (vectorised across the sample's values), then each channel's positions added up.
    fn sums_by_rows(&self, a: &[f32], b: &[f32]) -> Vec<[f64; 2]> {
        let width = self.width();
        let block = PARALLEL_FLOATS.div_ceil(width) * width;
        let partial = |(a, b): (&[f32], &[f32])| {
            let (mut s, mut p) = (vec![0.0f64; width], vec![0.0f64; width]);
            for (a, b) in a.chunks_exact(width).zip(b.chunks_exact(width)) {
                // Equal lengths up front, so that the loop has no bounds checks and vectorises.
                let (s, p, b) = (&mut s[..a.len()], &mut p[..a.len()], &b[..a.len()]);
                for j in 0..a.len() {
                    s[j] += a[j] as f64;
                    p[j] += a[j] as f64 * b[j] as f64;
                }
            }
            (s, p)
        };
        let partials: Vec<_> = if a.len() <= block {
            a.chunks(block).zip(b.chunks(block)).map(partial).collect()
        } else {
            a.par_chunks(block)
                .zip(b.par_chunks(block))
                .map(partial)
                .collect()
        };
        let mut sums = vec![[0.0f64; 2]; self.channels];
        for (s, p) in partials {
            for (j, (s, p)) in s.iter().zip(&p).enumerate() {
                let sum = &mut sums[j / self.positions];
                sum[0] += s;
                sum[1] += p;
            }
        }
        sums
    }

    /// `f[c].at(u, v)` for every value, `c` its channel.
    fn apply(&self, f: &[Affine], u: &[f32], v: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0f32; u.len()];
        if self.positions < ROW_POSITIONS {
            // The channels' coefficients spread over a sample's values, once, so that a
            // sample is one vectorised loop.
            let spread = |field: fn(&Affine) -> f32| -> Vec<f32> {
                (0..self.width())
                    .map(|j| field(&f[j / self.positions]))
                    .collect()
            };
            let (p, q, r) = (spread(|f| f.p), spread(|f| f.q), spread(|f| f.r));
            let (s, t) = (spread(|f| f.s), spread(|f| f.t));
            self.each_sample(&mut out, u, v, |out, u, v| {
                // Equal lengths up front, so that the loop has no bounds checks and vectorises.
                let n = out.len();
                let (u, v, p, q, r, s, t) = (
                    &u[..n],
                    &v[..n],
                    &p[..n],
                    &q[..n],
                    &r[..n],
                    &s[..n],
                    &t[..n],
                );
                for j in 0..n {
                    out[j] = p[j] * (u[j] - q[j]) + r[j] * (v[j] - s[j]) + t[j];
                }
            });
        } else {
            self.each_sample(&mut out, u, v, |out, u, v| {
                let runs = out.chunks_exact_mut(self.positions);
                let inputs = u
                    .chunks_exact(self.positions)
                    .zip(v.chunks_exact(self.positions));
                for ((out, (u, v)), f) in runs.zip(inputs).zip(f) {
                    for ((o, u), v) in out.iter_mut().zip(u).zip(v) {
                        *o = f.at(*u, *v);
                    }
                }
            });
        }
        out
    }

    /// `write(out, u, v)` on each sample's values, samples in parallel for large inputs.
    fn each_sample(
        &self,
        out: &mut [f32],
        u: &[f32],
        v: &[f32],
        write: impl Fn(&mut [f32], &[f32], &[f32]) + Sync,
    ) {
        let width = self.width();
        let write = |((out, u), v): ((&mut [f32], &[f32]), &[f32])| write(out, u, v);
        if u.len() < PARALLEL_FLOATS {
            out.chunks_mut(width)
                .zip(u.chunks(width))
                .zip(v.chunks(width))
                .for_each(write);
        } else {
            (out.par_chunks_mut(width)
                .zip(u.par_chunks(width))
                .zip(v.par_chunks(width)))
            .with_min_len(PARALLEL_FLOATS.div_ceil(width))
            .for_each(write);
        }
    }
}

/// `(Σ a, Σ a·b)` over a run, in f64 lanes (the compiler vectorises the lanes).
fn run_sums(a: &[f32], b: &[f32]) -> [f64; 2] {
    const LANES: usize = 8;
    let (mut s, mut p) = ([0.0f64; LANES], [0.0f64; LANES]);
    let (a_lanes, b_lanes) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (a_rest, b_rest) = (a_lanes.remainder(), b_lanes.remainder());
    for (a, b) in a_lanes.zip(b_lanes) {
        for i in 0..LANES {
            s[i] += a[i] as f64;
            p[i] += a[i] as f64 * b[i] as f64;
        }
    }
    let (mut s, mut p) = (s.iter().sum::<f64>(), p.iter().sum::<f64>());
    for (a, b) in a_rest.iter().zip(b_rest) {
        s += *a as f64;
        p += *a as f64 * *b as f64;
    }
    [s, p]
}

fn is_f32(tensors: &[&FlexTensor]) -> bool {
    tensors.iter().all(|t| t.dtype() == DType::F32)
}

fn tensor(values: Vec<f32>, shape: impl Into<burn::tensor::Shape>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape.into()))
}

/// The batch statistics and the normalised output of `x`: `(output, mean, variance)`.
pub fn forward(
    x: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    epsilon: f64,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let layout = Layout::of(&x);
    if !is_f32(&[&x, &gamma, &beta]) || layout.count() == 0 {
        let r = Flex::batch_norm_train(x, gamma, beta, epsilon);
        return (r.output, r.mean, r.variance);
    }
    let (x, gamma, beta) = (
        x.to_contiguous(),
        gamma.to_contiguous(),
        beta.to_contiguous(),
    );
    let (xs, gs, bs) = (
        x.storage::<f32>(),
        gamma.storage::<f32>(),
        beta.storage::<f32>(),
    );
    let count = layout.count() as f64;
    let (mut mean, mut variance, mut affine) = (Vec::new(), Vec::new(), Vec::new());
    for (c, [sum, squares]) in layout.sums(xs, xs).into_iter().enumerate() {
        let m = sum / count;
        let v = (squares / count - m * m).max(0.0);
        mean.push(m as f32);
        variance.push(v as f32);
        // (x − μ) · γ/σ + β
        let scale = (gs[c] as f64 / (v + epsilon).sqrt()) as f32;
        affine.push(Affine {
            p: scale,
            q: m as f32,
            r: 0.0,
            s: 0.0,
            t: bs[c],
        });
    }
    let out = layout.apply(&affine, xs, xs);
    let channels = [layout.channels];
    (
        tensor(out, x.shape()),
        tensor(mean, channels),
        tensor(variance, channels),
    )
}

/// Gradients of [`forward`]'s output for the output gradient `grad`: `(dx, dgamma, dbeta)`.
pub fn backward(
    x: FlexTensor,
    gamma: FlexTensor,
    mean: FlexTensor,
    variance: FlexTensor,
    epsilon: f64,
    grad: FlexTensor,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let layout = Layout::of(&x);
    if !is_f32(&[&x, &gamma, &mean, &variance, &grad]) || layout.count() == 0 {
        let r = Flex::batch_norm_train_backward(x, gamma, mean, variance, epsilon, grad);
        return (r.x_grad, r.gamma_grad, r.beta_grad);
    }
    let (x, grad) = (x.to_contiguous(), grad.to_contiguous());
    let (gamma, mean, variance) = (
        gamma.to_contiguous(),
        mean.to_contiguous(),
        variance.to_contiguous(),
    );
    let (xs, g) = (x.storage::<f32>(), grad.storage::<f32>());
    let (gs, ms, vs) = (
        gamma.storage::<f32>(),
        mean.storage::<f32>(),
        variance.storage::<f32>(),
    );
    let count = layout.count() as f64;
    let (mut dgamma, mut dbeta, mut affine) = (Vec::new(), Vec::new(), Vec::new());
    for (c, [sum_g, sum_gx]) in layout.sums(g, xs).into_iter().enumerate() {
        let inv_std = 1.0 / (vs[c] as f64 + epsilon).sqrt();
        let sum_g_centred = sum_gx - ms[c] as f64 * sum_g; // Σ g·(x − μ)
        dgamma.push((sum_g_centred * inv_std) as f32);
        dbeta.push(sum_g as f32);
        // dx = γ/σ · (g − ḡ) − γ/σ³ · mean(g·(x − μ)) · (x − μ)
        let a = gs[c] as f64 * inv_std;
        let k = a * inv_std * inv_std * sum_g_centred / count;
        let g_mean = (sum_g / count) as f32;
        affine.push(Affine {
            p: a as f32,
            q: g_mean,
            r: -k as f32,
            s: ms[c],
            t: 0.0,
        });
    }
    let dx = layout.apply(&affine, g, xs);
    let channels = [layout.channels];
    (
        tensor(dx, x.shape()),
        tensor(dgamma, channels),
        tensor(dbeta, channels),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::families::pytorch::tests::{differences, fixture, floats};
    use burn::module::Param;
    use burn::nn::BatchNormConfig;
    use burn::tensor::{Device, Distribution};

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().expect("f32")
    }

    /// max |ours − theirs| ≤ `tol` · max(1, max |theirs|).
    fn assert_close<const D: usize>(ours: Tensor<D>, theirs: Tensor<D>, tol: f32, what: &str) {
        let (worst, scale) = differences(ours, theirs, what);
        assert!(
            worst <= tol * scale,
            "{what}: max difference {worst:e} > {tol:e} × {scale}"
        );
    }

    /// A layer in training mode on flex with autodiff, with the given gamma and beta.
    fn layer(gamma: Tensor<1>, beta: Tensor<1>, epsilon: f64, momentum: f64) -> BatchNorm {
        let device = Device::flex().autodiff();
        let [channels] = gamma.dims();
        let mut bn = BatchNormConfig::new(channels)
            .with_epsilon(epsilon)
            .with_momentum(momentum)
            .init(&device);
        bn.gamma = Param::from_tensor(gamma.autodiff().require_grad());
        bn.beta = Param::from_tensor(beta.autodiff().require_grad());
        bn
    }

    /// A step's output and the gradients of the input, gamma and beta.
    struct Step<const D: usize> {
        y: Tensor<D>,
        dx: Tensor<D>,
        dgamma: Tensor<1>,
        dbeta: Tensor<1>,
    }

    /// One step of `f` with the output gradient `grad` (the running statistics stay in `bn`).
    fn step<const D: usize>(
        f: fn(&BatchNorm, Tensor<D>) -> Tensor<D>,
        bn: &BatchNorm,
        x: Tensor<D>,
        grad: Tensor<D>,
    ) -> Step<D> {
        let x = x.autodiff().require_grad();
        let y = f(bn, x.clone());
        let grads = (y.clone() * grad.autodiff()).sum().backward();
        Step {
            y: y.inner(),
            dx: x.grad(&grads).expect("input gradient"),
            dgamma: bn.gamma.val().grad(&grads).expect("gamma gradient"),
            dbeta: bn.beta.val().grad(&grads).expect("beta gradient"),
        }
    }

    fn pytorch_case<const D: usize>(i: usize, epsilon: f64, momentum: f64) {
        let path = fixture("batch_norm_grads.safetensors");
        let device = Device::flex();
        let name = |n: &str| format!("case{i}.{n}");
        let t1 = |n: &str| floats::<1>(&path, &name(n), &device);
        let t = |n: &str| floats::<D>(&path, &name(n), &device);
        let bn = layer(t1("weight"), t1("bias"), epsilon, momentum);
        let s = step(batch_norm, &bn, t("x"), t("grad_output"));
        let tol = 1e-5;
        assert_close(s.y, t("expected.output"), tol, &name("output"));
        assert_close(s.dx, t("expected.input_grad"), tol, &name("input gradient"));
        assert_close(
            s.dgamma,
            t1("expected.weight_grad"),
            tol,
            &name("gamma gradient"),
        );
        assert_close(
            s.dbeta,
            t1("expected.bias_grad"),
            tol,
            &name("beta gradient"),
        );
        let (mean, var) = (bn.running_mean.value_sync(), bn.running_var.value_sync());
        assert_close(
            mean.inner(),
            t1("expected.running_mean"),
            tol,
            &name("running mean"),
        );
        assert_close(
            var.inner(),
            t1("expected.running_var"),
            tol,
            &name("running variance"),
        );
    }

    #[test]
    fn a_training_step_matches_pytorch_within_1e_5() {
        // [batch, features] with the autoencoder's eps and momentum, a sequence, an image.
        pytorch_case::<2>(0, 1e-3, 0.01);
        pytorch_case::<3>(1, 1e-5, 0.1);
        pytorch_case::<4>(2, 1e-5, 0.1);
    }

    /// Output and gradients against burn's own (composed) batch norm on larger inputs.
    fn matches_burn<const D: usize>(shape: [usize; D], mean: f32) {
        let device = Device::flex();
        let x = Tensor::<D>::random(shape, Distribution::Normal(0.0, 2.0), &device) + mean;
        let g = Tensor::<D>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let gamma = Tensor::<1>::random([shape[1]], Distribution::Uniform(0.5, 1.5), &device);
        let beta = Tensor::<1>::random([shape[1]], Distribution::Normal(0.0, 1.0), &device);
        let run = |f: fn(&BatchNorm, Tensor<D>) -> Tensor<D>| {
            step(
                f,
                &layer(gamma.clone(), beta.clone(), 1e-5, 0.1),
                x.clone(),
                g.clone(),
            )
        };
        let (ours, theirs) = (run(batch_norm), run(|bn, x| bn.forward(x)));
        let what = |n: &str| format!("{shape:?} {n}");
        assert_close(ours.y, theirs.y, 2e-5, &what("output"));
        assert_close(ours.dx, theirs.dx, 2e-5, &what("input gradient"));
        assert_close(ours.dgamma, theirs.dgamma, 2e-5, &what("gamma gradient"));
        assert_close(ours.dbeta, theirs.dbeta, 2e-5, &what("beta gradient"));
    }

    #[test]
    fn output_and_gradients_match_burns_batch_norm_at_the_models_sizes() {
        // The autoencoder's [batch, features] and a ResNet activation (parallel passes, by
        // samples and by channels), and a small one (serial passes).
        matches_burn([512, 128], 0.0);
        matches_burn([8, 16, 24, 20], 0.5);
        matches_burn([3, 4, 2, 5], 20.0);
    }

    #[test]
    fn the_same_bits_on_one_and_on_two_threads() {
        let device = Device::flex();
        for shape in [[512, 128, 1, 1], [8, 16, 24, 20]] {
            let x = Tensor::<4>::random(shape, Distribution::Normal(1.0, 2.0), &device);
            let g = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
            let on = |threads| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .expect("pool");
                let gamma = Tensor::<1>::ones([shape[1]], &device);
                let beta = Tensor::<1>::zeros([shape[1]], &device);
                pool.install(|| {
                    let bn = layer(gamma, beta, 1e-5, 0.1);
                    let s = step(batch_norm, &bn, x.clone(), g.clone());
                    let running = values(bn.running_var.value_sync().inner());
                    [
                        values(s.y),
                        values(s.dx),
                        values(s.dgamma),
                        values(s.dbeta),
                        running,
                    ]
                })
            };
            assert_eq!(on(1), on(2), "{shape:?}");
        }
    }

    #[test]
    fn a_frozen_layer_normalises_with_its_running_statistics() {
        let device = Device::flex().autodiff();
        let mut bn = BatchNormConfig::new(3).init(&device);
        bn.training = bn.training.with_value(false);
        let x = Tensor::<2>::random([4, 3], Distribution::Normal(5.0, 1.0), &device);
        let y = batch_norm(&bn, x.clone()).inner();
        // Running statistics at their initial 0 and 1: y = x / √(1 + ε), not the batch's
        // standardised values, and the statistics stay as they were.
        let expected = x.inner() / (1.0f32 + 1e-5).sqrt();
        assert_close(y, expected, 1e-6, "frozen output");
        assert_eq!(values(bn.running_mean.value_sync().inner()), vec![0.0; 3]);
    }
}
