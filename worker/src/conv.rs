//! 2-D convolution for the models, as im2col tiles and GEMMs on burn's flex CPU backend.
//!
//! burn 0.22's flex runs a convolution's forward pass by converting its input to NHWC with
//! scalar loops, the input gradient as a transposed convolution, and the weight gradient,
//! which flex does not override, as one skinny GEMM per input channel that reads the whole
//! output gradient again each time (in a ResNet-18 step that alone cost about twice the
//! forward convolution; README, Training speed). Here all three are computed the way
//! PyTorch's CPU backend does it, over tiles of output positions across the batch (the
//! columns) and the matrix `im2col(x)` of the input values each position reads (the rows:
//! input channel × kernel row × kernel column):
//! - forward: `Y = W · im2col(x)`, one GEMM per tile, written into the NCHW output;
//! - input gradient: `col2im(Wᵀ · G)`, one GEMM per tile, added back to the input
//!   positions each column read, one sample per task;
//! - weight gradient: `dW = G · im2col(x)ᵀ`, accumulated over the tiles.
//!
//! [`conv2d`] replaces `Conv2d::forward`. On flex, with or without autodiff, it runs through
//! the [`FlexConv`] backend extension (burn's supported way to add an operation with its own
//! backward pass). On every other backend it is `Conv2d::forward`. f32 convolutions with one
//! group and symmetric padding (every convolution of the models) take the tiles; anything
//! else falls back to flex's own operations.

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::ModuleOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    Autodiff, Backend, DType, Dispatch, DispatchDevice, Flex, TensorMetadata, backend_extension,
};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

/// A convolution without bias computed by [`forward`], [`input_grad`] and [`weight_grad`].
#[backend_extension(Flex, Autodiff)]
pub trait FlexConv: Backend {
    /// `conv2d(x, weight)` without bias.
    fn conv2d_im2col(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self>;
}

impl FlexConv for Flex {
    fn conv2d_im2col(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        forward(x, weight, options)
    }
}

impl<C: CheckpointStrategy> FlexConv for Autodiff<Flex, C> {
    fn conv2d_im2col(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct Conv2dBackward;

        impl Backward<Flex, 2> for Conv2dBackward {
            type State = (FlexTensor, FlexTensor, ConvOptions<2>);

            fn backward(
                self,
                ops: Ops<Self::State, 2>,
                grads: &mut Gradients,
                _checkpointer: &mut Checkpointer,
            ) {
                let [node_x, node_weight] = ops.parents;
                let grad = grads.consume::<Flex>(&ops.node);
                let (x, weight, options) = ops.state;
                if let Some(node) = node_x {
                    let dx = input_grad(&x, weight.clone(), grad.clone(), options.clone());
                    grads.register::<Flex>(node.id, dx);
                }
                if let Some(node) = node_weight {
                    grads.register::<Flex>(node.id, weight_grad(x, weight, grad, options));
                }
            }
        }

        match Conv2dBackward
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (x, weight) = (x.into_primitive(), weight.into_primitive());
                let output = forward(x.clone(), weight.clone(), options.clone());
                prep.finish((x, weight, options), output)
            }
            OpsKind::UnTracked(prep) => prep.finish(forward(
                x.into_primitive(),
                weight.into_primitive(),
                options,
            )),
        }
    }
}

/// `conv.forward(x)`, through [`FlexConv`] when `x` is on flex and the padding is explicit
/// or none (`Same` padding, which the models do not use, is left to
/// `Conv2d::forward`).
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let ((top, bottom), (left, right)) = match conv.padding {
        PaddingConfig2d::Valid => ((0, 0), (0, 0)),
        PaddingConfig2d::Explicit(top, left, bottom, right) => ((top, bottom), (left, right)),
        PaddingConfig2d::Same => return conv.forward(x),
    };
    if !on_flex(x.device().as_dispatch()) {
        return conv.forward(x);
    }
    let options = ConvOptions::new_with_padding(
        conv.stride,
        [(top, bottom), (left, right)],
        conv.dilation,
        conv.groups,
    );
    let y = Tensor::<4>::from_dispatch(<Dispatch as FlexConv>::conv2d_im2col(
        x.into_dispatch(),
        conv.weight.val().into_dispatch(),
        options,
    ));
    match &conv.bias {
        Some(bias) => y + bias.val().reshape([1, -1, 1, 1]),
        None => y,
    }
}

/// Whether `device` is flex, with or without autodiff around it.
pub(crate) fn on_flex(device: &DispatchDevice) -> bool {
    match device {
        DispatchDevice::Flex(_) => true,
        DispatchDevice::Autodiff(inner) => on_flex(inner),
        #[allow(unreachable_patterns)] // other variants exist only with the tch/cuda features
        _ => false,
    }
}

/// Output positions (across the batch) per im2col tile: wide enough for an efficient GEMM,
/// small enough that a tile of the widest ResNet layer (4,608 rows) stays under 20 MB.
const TILE_COLUMNS: usize = 1024;

/// Floats (1 MiB) in an input-gradient tile, which col2im reads back at once.
const COL2IM_TILE_FLOATS: usize = 1 << 18;

/// The narrowest input-gradient tile, for GEMM efficiency.
const MIN_TILE_COLUMNS: usize = 64;

/// At most this many floats (32 MiB) in the per-thread partial gradients together.
const PARTIALS_BUDGET: usize = 8 << 20;

/// Whether the tiles serve this convolution: f32, one group, symmetric padding.
fn tiled(x: &FlexTensor, options: &ConvOptions<2>) -> bool {
    x.dtype() == DType::F32 && options.groups == 1 && !options.is_asymmetric()
}

/// `conv2d(x, weight, options)` without bias.
pub fn forward(x: FlexTensor, weight: FlexTensor, options: ConvOptions<2>) -> FlexTensor {
    if !tiled(&x, &options) || weight.dtype() != DType::F32 {
        return Flex::conv2d(x, weight, None, options);
    }
    let out = output_shape(x.shape().dims(), weight.shape().dims(), &options);
    let geometry = Geometry::new(x.shape().dims(), weight.shape().dims(), out, &options);
    let (x, weight) = (x.to_contiguous(), weight.to_contiguous());
    let y = geometry.forward(x.storage(), weight.storage());
    FlexTensor::from_data(TensorData::new(y, out))
}

/// `[batch, c_out, out_h, out_w]` of a convolution, as PyTorch computes it.
fn output_shape(x: [usize; 4], weight: [usize; 4], options: &ConvOptions<2>) -> [usize; 4] {
    let [padding_h, padding_w] = options.padding_begin();
    let size = |input: usize, kernel: usize, axis: usize, padding: usize| {
        let span = options.dilation[axis] * (kernel - 1) + 1;
        (input + 2 * padding).saturating_sub(span) / options.stride[axis] + 1
    };
    [
        x[0],
        weight[0],
        size(x[2], weight[2], 0, padding_h),
        size(x[3], weight[3], 1, padding_w),
    ]
}

/// The input gradient of `conv2d(x, weight, options)` for the output gradient `grad`.
pub fn input_grad(
    x: &FlexTensor,
    weight: FlexTensor,
    grad: FlexTensor,
    options: ConvOptions<2>,
) -> FlexTensor {
    if !tiled(x, &options) || grad.dtype() != DType::F32 {
        return Flex::conv2d_x_backward(x.clone(), weight, grad, options);
    }
    let geometry = Geometry::of_gradient(x, &weight, &grad, &options);
    let (weight, grad) = (weight.to_contiguous(), grad.to_contiguous());
    let dx = geometry.input_grad(weight.storage(), grad.storage());
    FlexTensor::from_data(TensorData::new(dx, x.shape()))
}

/// The weight gradient of `conv2d(x, weight, options)` for the output gradient `grad`.
///
/// The columns (batch × output positions) are split into one contiguous range per thread,
/// each summed in a fixed order and the partial sums added in range order, so the result
/// does not depend on scheduling: with the same thread count, the same job twice gives the
/// same bits.
pub fn weight_grad(
    x: FlexTensor,
    weight: FlexTensor,
    grad: FlexTensor,
    options: ConvOptions<2>,
) -> FlexTensor {
    if !tiled(&x, &options) {
        return Flex::conv2d_weight_backward(x, weight, grad, options);
    }
    let geometry = Geometry::of_gradient(&x, &weight, &grad, &options);
    let (x, grad) = (x.to_contiguous(), grad.to_contiguous());
    let dw = geometry.weight_grad(x.storage(), grad.storage());
    FlexTensor::from_data(TensorData::new(dw, weight.shape()))
}

/// A pointer to an output buffer that tasks write disjoint parts of.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);

// SAFETY: only used by `Geometry::forward`, whose tasks write disjoint elements.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

/// The GEMM parallelism left to each of `parts` tasks.
fn inner_parallelism(parts: usize) -> gemm::Parallelism {
    match rayon::current_num_threads() / parts.max(1) {
        0 | 1 => gemm::Parallelism::None,
        n => gemm::Parallelism::Rayon(n),
    }
}

/// Sizes of one convolution, as the tile loops use them.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    batch: usize,
    c_in: usize,
    in_h: usize,
    in_w: usize,
    c_out: usize,
    kernel: [usize; 2],
    out_h: usize,
    out_w: usize,
    stride: [usize; 2],
    dilation: [usize; 2],
    padding: [usize; 2],
}

impl Geometry {
    fn new(x: [usize; 4], weight: [usize; 4], grad: [usize; 4], options: &ConvOptions<2>) -> Self {
        let [batch, c_in, in_h, in_w] = x;
        let [c_out, _, kernel_h, kernel_w] = weight;
        let [_, _, out_h, out_w] = grad;
        Geometry {
            batch,
            c_in,
            in_h,
            in_w,
            c_out,
            kernel: [kernel_h, kernel_w],
            out_h,
            out_w,
            stride: options.stride,
            dilation: options.dilation,
            padding: options.padding_begin(),
        }
    }

    /// The geometry of `conv2d(x, weight, options)` whose output gradient is `grad`.
    fn of_gradient(
        x: &FlexTensor,
        weight: &FlexTensor,
        grad: &FlexTensor,
        options: &ConvOptions<2>,
    ) -> Self {
        let dims = |t: &FlexTensor| t.shape().dims();
        Geometry::new(dims(x), dims(weight), dims(grad), options)
    }

    /// Output positions per sample.
    fn positions(&self) -> usize {
        self.out_h * self.out_w
    }

    /// Rows of an im2col tile: one per (input channel, kernel row, kernel column).
    fn rows(&self) -> usize {
        self.c_in * self.kernel[0] * self.kernel[1]
    }

    fn weight_grad(&self, x: &[f32], grad: &[f32]) -> Vec<f32> {
        let columns = self.batch * self.positions();
        let size = self.c_out * self.rows();
        if columns == 0 || size == 0 {
            return vec![0.0; size];
        }
        let threads = rayon::current_num_threads();
        let parts = threads
            .min(columns.div_ceil(TILE_COLUMNS))
            .min((PARTIALS_BUDGET / size).max(1));
        // Threads not given a range of their own help inside each range's GEMMs.
        let parallelism = inner_parallelism(parts);
        let mut partials = (0..parts)
            .into_par_iter()
            .map(|p| {
                self.accumulate(
                    x,
                    grad,
                    columns * p / parts..columns * (p + 1) / parts,
                    parallelism,
                )
            })
            .collect::<Vec<_>>()
            .into_iter();
        let mut dw = partials.next().expect("at least one range");
        for partial in partials {
            dw.iter_mut().zip(&partial).for_each(|(a, b)| *a += b);
        }
        dw
    }

    /// `W · im2col(x)` as `[batch, c_out, out_h, out_w]`: one range of columns per thread,
    /// each tile's GEMM written straight into the output.
    fn forward(&self, x: &[f32], w: &[f32]) -> Vec<f32> {
        let columns = self.batch * self.positions();
        let mut y = vec![0.0f32; columns * self.c_out];
        if columns == 0 || self.rows() == 0 {
            return y;
        }
        let parts = rayon::current_num_threads().min(columns.div_ceil(TILE_COLUMNS));
        let parallelism = inner_parallelism(parts);
        let out = SharedOut(y.as_mut_ptr());
        (0..parts).into_par_iter().for_each(|p| {
            let range = columns * p / parts..columns * (p + 1) / parts;
            self.forward_range(x, w, range, out, parallelism);
        });
        y
    }

    fn forward_range(
        &self,
        x: &[f32],
        w: &[f32],
        range: std::ops::Range<usize>,
        out: SharedOut,
        parallelism: gemm::Parallelism,
    ) {
        let (rows, positions) = (self.rows(), self.positions());
        let mut cols = vec![0.0f32; rows * TILE_COLUMNS];
        let mut tile = vec![0.0f32; self.c_out * TILE_COLUMNS];
        for start in range.clone().step_by(TILE_COLUMNS) {
            let n = TILE_COLUMNS.min(range.end - start);
            self.im2col(x, start, n, &mut cols[..rows * n]);
            // SAFETY: tile is c_out × n (row stride n), w is c_out × rows (row stride rows),
            // cols is rows × n (row stride n); all at least that long, none overlapping.
            unsafe {
                gemm::gemm(
                    self.c_out,
                    n,
                    rows,
                    tile.as_mut_ptr(),
                    1,
                    n as isize,
                    false,
                    w.as_ptr(),
                    1,
                    rows as isize,
                    cols.as_ptr(),
                    1,
                    n as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    parallelism,
                );
            }
            for (column, offset, run) in runs(start, n, positions) {
                let (sample, position) = (column / positions, column % positions);
                for o in 0..self.c_out {
                    let dst = (sample * self.c_out + o) * positions + position;
                    // SAFETY: the output holds batch × c_out × positions values and this
                    // run, of columns in this task's range only, is inside it; no other
                    // task writes these columns.
                    let dst = unsafe { std::slice::from_raw_parts_mut(out.0.add(dst), run) };
                    dst.copy_from_slice(&tile[o * n + offset..][..run]);
                }
            }
        }
    }

    /// `col2im(Wᵀ · G)` as `[batch, c_in, in_h, in_w]`: one range of whole samples per
    /// thread, so that the additions of overlapping kernel windows never race, with tiles
    /// that run across the samples of the range (deep layers have few positions a sample).
    fn input_grad(&self, w: &[f32], grad: &[f32]) -> Vec<f32> {
        let sample_len = self.c_in * self.in_h * self.in_w;
        let mut dx = vec![0.0f32; self.batch * sample_len];
        if dx.is_empty() || self.positions() == 0 || self.c_out == 0 {
            return dx;
        }
        let parts = rayon::current_num_threads().min(self.batch);
        let parallelism = inner_parallelism(parts);
        let mut ranges = Vec::with_capacity(parts);
        let (mut rest, mut first) = (dx.as_mut_slice(), 0);
        for p in 0..parts {
            let end = self.batch * (p + 1) / parts;
            let (head, tail) = rest.split_at_mut((end - first) * sample_len);
            ranges.push((first..end, head));
            (rest, first) = (tail, end);
        }
        ranges
            .into_par_iter()
            .for_each(|(samples, dx)| self.input_grad_range(w, grad, samples, dx, parallelism));
        dx
    }

    /// The input gradient of the samples `samples` into `dx`, which holds just those.
    fn input_grad_range(
        &self,
        w: &[f32],
        grad: &[f32],
        samples: std::ops::Range<usize>,
        dx: &mut [f32],
        parallelism: gemm::Parallelism,
    ) {
        let (rows, positions) = (self.rows(), self.positions());
        // The GEMM's result is read back right away by col2im: keep it in cache.
        let tile = (COL2IM_TILE_FLOATS / rows).clamp(MIN_TILE_COLUMNS, TILE_COLUMNS);
        let mut cols = vec![0.0f32; rows * tile];
        let mut g = vec![0.0f32; self.c_out * tile];
        let end = samples.end * positions;
        for start in (samples.start * positions..end).step_by(tile) {
            let n = tile.min(end - start);
            self.gather_grad(grad, start, n, &mut g[..self.c_out * n]);
            // SAFETY: cols is rows × n (row stride n); Wᵀ is read from w (c_out × rows, row
            // stride rows) with row stride 1 and column stride rows; g is c_out × n (row
            // stride n); all at least that long, none overlapping.
            unsafe {
                gemm::gemm(
                    rows,
                    n,
                    self.c_out,
                    cols.as_mut_ptr(),
                    1,
                    n as isize,
                    false,
                    w.as_ptr(),
                    rows as isize,
                    1,
                    g.as_ptr(),
                    1,
                    n as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    parallelism,
                );
            }
            self.col2im(&cols[..rows * n], start, n, samples.start, dx);
        }
    }

    /// Adds `cols[row * n + column]` (the columns `start..start + n`) to the input value each
    /// one was read from, in `dx`, which holds the samples from `first_sample` on: the
    /// transpose of [`Self::im2col`].
    fn col2im(&self, cols: &[f32], start: usize, n: usize, first_sample: usize, dx: &mut [f32]) {
        let [kernel_h, kernel_w] = self.kernel;
        let [stride_h, stride_w] = self.stride;
        let [dilation_h, dilation_w] = self.dilation;
        let [pad_h, pad_w] = self.padding;
        // Runs end at every output row, so each lies within one sample.
        for (column, offset, run) in runs(start, n, self.out_w) {
            let (sample, position) = (column / self.positions(), column % self.positions());
            let (out_y, out_x) = (position / self.out_w, position % self.out_w);
            let channels = (sample - first_sample) * self.c_in;
            for c in 0..self.c_in {
                for ky in 0..kernel_h {
                    let in_y = (out_y * stride_h + ky * dilation_h).checked_sub(pad_h);
                    let Some(y) = in_y.filter(|&y| y < self.in_h) else {
                        continue;
                    };
                    let base = ((channels + c) * self.in_h + y) * self.in_w;
                    let input_row = &mut dx[base..base + self.in_w];
                    for kx in 0..kernel_w {
                        let row = (c * kernel_h + ky) * kernel_w + kx;
                        let src = &cols[row * n + offset..][..run];
                        scatter_row(src, input_row, out_x, stride_w, kx * dilation_w, pad_w);
                    }
                }
            }
        }
    }

    /// dW over the columns `range`: Σ over tiles of G[c_out × tile] · im2col[tile × rows].
    fn accumulate(
        &self,
        x: &[f32],
        grad: &[f32],
        range: std::ops::Range<usize>,
        parallelism: gemm::Parallelism,
    ) -> Vec<f32> {
        let (rows, c_out) = (self.rows(), self.c_out);
        let mut dw = vec![0.0f32; c_out * rows];
        let mut cols = vec![0.0f32; rows * TILE_COLUMNS];
        let mut g = vec![0.0f32; c_out * TILE_COLUMNS];
        // Both operands position-major: the product sums over positions, and gemm packs an
        // operand whose summed index is the contiguous one through a strided gather that
        // cost more than the multiplication itself (a blocked transpose is cheaper).
        let mut cols_t = vec![0.0f32; rows * TILE_COLUMNS];
        let mut g_t = vec![0.0f32; c_out * TILE_COLUMNS];
        for start in range.clone().step_by(TILE_COLUMNS) {
            let n = TILE_COLUMNS.min(range.end - start);
            self.im2col(x, start, n, &mut cols[..rows * n]);
            transpose(&cols[..rows * n], rows, n, &mut cols_t[..rows * n]);
            self.gather_grad(grad, start, n, &mut g[..c_out * n]);
            transpose(&g[..c_out * n], c_out, n, &mut g_t[..c_out * n]);
            // SAFETY: dw is c_out × rows (row stride rows); Gᵀ is n × c_out, read as G
            // (row stride 1, column stride c_out); im2colᵀ is n × rows (row stride rows);
            // all three buffers are at least that long and do not overlap.
            unsafe {
                gemm::gemm(
                    c_out,
                    rows,
                    n,
                    dw.as_mut_ptr(),
                    1,
                    rows as isize,
                    start != range.start,
                    g_t.as_ptr(),
                    c_out as isize,
                    1,
                    cols_t.as_ptr(),
                    1,
                    rows as isize,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    parallelism,
                );
            }
        }
        dw
    }

    /// im2col of the columns `start..start + n` into `cols[row * n + column]`, where row is
    /// (input channel, kernel row, kernel column) and padding reads as zero.
    fn im2col(&self, x: &[f32], start: usize, n: usize, cols: &mut [f32]) {
        let [kernel_h, kernel_w] = self.kernel;
        let [stride_h, stride_w] = self.stride;
        let [dilation_h, dilation_w] = self.dilation;
        let [pad_h, pad_w] = self.padding;
        // One output row of one sample at a time: its columns read one input row per kernel row.
        for (column, offset, run) in runs(start, n, self.out_w) {
            let (sample, position) = (column / self.positions(), column % self.positions());
            let (out_y, out_x) = (position / self.out_w, position % self.out_w);
            for c in 0..self.c_in {
                for ky in 0..kernel_h {
                    let in_y = (out_y * stride_h + ky * dilation_h).checked_sub(pad_h);
                    let input_row = in_y.filter(|&y| y < self.in_h).map(|y| {
                        let base = ((sample * self.c_in + c) * self.in_h + y) * self.in_w;
                        &x[base..base + self.in_w]
                    });
                    for kx in 0..kernel_w {
                        let row = (c * kernel_h + ky) * kernel_w + kx;
                        let dst = &mut cols[row * n + offset..][..run];
                        match input_row {
                            None => dst.fill(0.0),
                            Some(input_row) => {
                                gather_row(dst, input_row, out_x, stride_w, kx * dilation_w, pad_w)
                            }
                        }
                    }
                }
            }
        }
    }

    /// The output gradient of the columns `start..start + n` as `g[c_out * n + column]`.
    fn gather_grad(&self, grad: &[f32], start: usize, n: usize, g: &mut [f32]) {
        let positions = self.positions();
        // One sample at a time: each output channel's gradient is one contiguous run.
        for (column, offset, run) in runs(start, n, positions) {
            let (sample, position) = (column / positions, column % positions);
            for o in 0..self.c_out {
                let src = (sample * self.c_out + o) * positions + position;
                g[o * n + offset..][..run].copy_from_slice(&grad[src..src + run]);
            }
        }
    }
}

/// `dst[c · rows + r] = src[r · cols + c]`: the row-major `rows × cols` matrix `src`
/// transposed, in square blocks that both sides keep in cache. Each source row is read
/// contiguously: the tiles' rows are 4 KiB apart, and reading down a column of them would
/// put every line of a block in one L1 set.
fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    const BLOCK: usize = 16;
    for r0 in (0..rows).step_by(BLOCK) {
        for c0 in (0..cols).step_by(BLOCK) {
            let c1 = (c0 + BLOCK).min(cols);
            for r in r0..(r0 + BLOCK).min(rows) {
                for (c, v) in (c0..c1).zip(&src[r * cols + c0..r * cols + c1]) {
                    dst[c * rows + r] = *v;
                }
            }
        }
    }
}

/// The columns `start..start + n` cut at every multiple of `period`, as
/// (first column, its offset from `start`, length).
fn runs(start: usize, n: usize, period: usize) -> impl Iterator<Item = (usize, usize, usize)> {
    let end = start + n;
    let next = move |column: usize| ((column / period + 1) * period).min(end);
    std::iter::successors((n > 0).then_some(start), move |&column| {
        Some(next(column)).filter(|&c| c < end)
    })
    .map(move |column| (column, column - start, next(column) - column))
}

/// The `i` in `0..len` whose column `(out_x + i)·stride + shift − pad` falls inside a row of
/// `row_len` values, as a range.
fn inside(
    len: usize,
    row_len: usize,
    out_x: usize,
    stride: usize,
    shift: usize,
    pad: usize,
) -> std::ops::Range<usize> {
    // With the padding added back, column (out_x + i)·stride + shift is in the row when it
    // is >= pad and < pad + row_len: the first i reaching `limit` is this.
    let first_reaching = |limit: usize| {
        limit
            .saturating_sub(shift)
            .div_ceil(stride)
            .saturating_sub(out_x)
            .min(len)
    };
    let first = first_reaching(pad);
    first..first_reaching(pad + row_len).max(first)
}

/// `dst[i] = row[(out_x + i) * stride + shift - pad]`, zero where that falls outside `row`.
fn gather_row(dst: &mut [f32], row: &[f32], out_x: usize, stride: usize, shift: usize, pad: usize) {
    let range = inside(dst.len(), row.len(), out_x, stride, shift, pad);
    dst[..range.start].fill(0.0);
    dst[range.end..].fill(0.0);
    if range.is_empty() {
        return;
    }
    let from = (out_x + range.start) * stride + shift - pad;
    if stride == 1 {
        dst[range.clone()].copy_from_slice(&row[from..from + range.len()]);
    } else {
        for (d, s) in dst[range]
            .iter_mut()
            .zip(row[from..].iter().step_by(stride))
        {
            *d = *s;
        }
    }
}

/// `row[(out_x + i) * stride + shift - pad] += src[i]` where that falls inside `row`: the
/// transpose of [`gather_row`].
fn scatter_row(
    src: &[f32],
    row: &mut [f32],
    out_x: usize,
    stride: usize,
    shift: usize,
    pad: usize,
) {
    let range = inside(src.len(), row.len(), out_x, stride, shift, pad);
    if range.is_empty() {
        return;
    }
    let from = (out_x + range.start) * stride + shift - pad;
    for (d, s) in row[from..].iter_mut().step_by(stride).zip(&src[range]) {
        *d += s;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::families::pytorch::tests::{differences, fixture, floats};
    use burn::module::Param;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::{Device, Distribution};

    /// max |ours − theirs| ≤ `tol` · max(1, max |theirs|): sums of thousands of products
    /// differ in their last bits with the summation order.
    fn assert_close<const D: usize>(ours: Tensor<D>, theirs: Tensor<D>, tol: f32, what: &str) {
        let (worst, scale) = differences(ours, theirs, what);
        assert!(
            worst <= tol * scale,
            "{what}: max difference {worst:e} > {tol:e} × {scale}"
        );
    }

    fn conv(
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        pad: usize,
        dilation: usize,
        bias: bool,
    ) -> Conv2d {
        Conv2dConfig::new([c_in, c_out], [k, k])
            .with_stride([stride, stride])
            .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
            .with_dilation([dilation, dilation])
            .with_bias(bias)
            .init(&Device::flex())
    }

    /// Gradients of Σ conv(x) ⊙ grad_output with respect to (weight, x, bias).
    fn gradients(
        conv: &Conv2d,
        x: Tensor<4>,
        grad_output: Tensor<4>,
        forward: fn(&Conv2d, Tensor<4>) -> Tensor<4>,
    ) -> (Tensor<4>, Tensor<4>, Option<Tensor<1>>) {
        let tracked = |t: Tensor<4>| t.autodiff().require_grad();
        let mut conv = conv.clone();
        conv.weight = Param::from_tensor(tracked(conv.weight.val()));
        conv.bias = conv
            .bias
            .map(|b| Param::from_tensor(b.val().autodiff().require_grad()));
        let x = tracked(x);
        let y = forward(&conv, x.clone());
        assert_eq!(y.dims(), grad_output.dims(), "output shape");
        let grads = (y * grad_output.autodiff()).sum().backward();
        (
            conv.weight.val().grad(&grads).expect("weight gradient"),
            x.grad(&grads).expect("input gradient"),
            conv.bias
                .as_ref()
                .map(|b| b.val().grad(&grads).expect("bias gradient")),
        )
    }

    /// `tests/fixtures/gen/model_fixtures.py`'s CONV_GRAD_CASES: (kernel, stride, padding, dilation).
    const PYTORCH_CASES: [(usize, usize, usize, usize); 5] = [
        (3, 1, 1, 1),
        (7, 2, 3, 1),
        (1, 2, 0, 1),
        (3, 2, 1, 2),
        (3, 1, 1, 1),
    ];

    #[test]
    fn output_and_gradients_match_pytorch() {
        let path = fixture("conv_grads.safetensors");
        let device = Device::flex();
        for (i, (k, stride, pad, dilation)) in PYTORCH_CASES.into_iter().enumerate() {
            let tensor = |name: &str| floats::<4>(&path, &format!("case{i}.{name}"), &device);
            let weight = tensor("weight");
            let [c_out, c_in, _, _] = weight.dims();
            let mut layer = conv(c_in, c_out, k, stride, pad, dilation, false);
            layer.weight = Param::from_tensor(weight);
            assert_close(
                conv2d(&layer, tensor("x")),
                tensor("expected.output"),
                1e-5,
                &format!("case {i} output"),
            );
            let (dw, dx, _) = gradients(&layer, tensor("x"), tensor("grad_output"), conv2d);
            assert_close(
                dw,
                tensor("expected.weight_grad"),
                1e-5,
                &format!("case {i} weight gradient"),
            );
            assert_close(
                dx,
                tensor("expected.input_grad"),
                1e-5,
                &format!("case {i} input gradient"),
            );
        }
    }

    #[test]
    fn forward_and_gradients_match_conv2d_forward_with_bias() {
        let device = Device::flex();
        let layer = conv(3, 5, 3, 2, 1, 1, true);
        let x = Tensor::<4>::random([2, 3, 10, 13], Distribution::Normal(0.0, 1.0), &device);
        let y = layer.forward(x.clone());
        assert_close(conv2d(&layer, x.clone()), y.clone(), 1e-6, "forward");
        let g = Tensor::<4>::random(y.dims(), Distribution::Normal(0.0, 1.0), &device);
        let ours = gradients(&layer, x.clone(), g.clone(), conv2d);
        let burns = gradients(&layer, x, g, Conv2d::forward);
        assert_close(ours.0, burns.0, 1e-5, "weight gradient");
        assert_close(ours.1, burns.1, 1e-6, "input gradient");
        assert_close(
            ours.2.expect("bias"),
            burns.2.expect("bias"),
            1e-6,
            "bias gradient",
        );
    }

    fn flex(t: Tensor<4>) -> FlexTensor {
        FlexTensor::from_data(t.into_data())
    }

    fn weight_grad_of(
        x: &Tensor<4>,
        w: &Tensor<4>,
        g: &Tensor<4>,
        options: &ConvOptions<2>,
    ) -> Vec<f32> {
        let dw = weight_grad(
            flex(x.clone()),
            flex(w.clone()),
            flex(g.clone()),
            options.clone(),
        );
        dw.into_data().try_to_vec::<f32>().expect("f32")
    }

    #[test]
    fn every_thread_count_matches_burns_default_and_repeats_bit_for_bit() {
        let device = Device::flex();
        let normal = Distribution::Normal(0.0, 1.0);
        // 3 × 33 × 40 = 3,960 output positions: four tiles, ranges that split samples.
        let x = Tensor::<4>::random([3, 4, 33, 40], normal, &device);
        let w = Tensor::<4>::random([6, 4, 3, 3], normal, &device);
        let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
        let g = Tensor::<4>::random([3, 6, 33, 40], normal, &device);
        let default = Flex::conv2d_weight_backward(
            flex(x.clone()),
            flex(w.clone()),
            flex(g.clone()),
            options.clone(),
        );
        let default = Tensor::<4>::from_data(default.into_data(), &device);
        for threads in [1, 2, 3, 5] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("pool");
            let (first, second) = pool.install(|| {
                (
                    weight_grad_of(&x, &w, &g, &options),
                    weight_grad_of(&x, &w, &g, &options),
                )
            });
            assert_eq!(first, second, "{threads} threads: not deterministic");
            let ours = Tensor::<4>::from_data(TensorData::new(first, [6, 4, 3, 3]), &device);
            assert_close(ours, default.clone(), 1e-5, &format!("{threads} threads"));
        }
    }

    #[test]
    fn forward_and_input_gradient_match_flex_for_every_geometry_and_thread_count() {
        let device = Device::flex();
        let normal = Distribution::Normal(0.0, 1.0);
        // (x, weight, stride, padding, dilation): the models' kernels (1×1, (2,3) dilated
        // in time, (1,3) with frequency stride 2, 3×3, 7×7 stride 2) on odd sizes, several
        // tiles per sample and samples that straddle tiles; the last has 2,700 rows, so
        // its input-gradient tiles (97 columns) are narrower than a thread's samples.
        type Case = ([usize; 4], [usize; 4], [usize; 2], [usize; 2], [usize; 2]);
        let cases: [Case; 6] = [
            ([3, 5, 37, 41], [4, 5, 1, 1], [1, 1], [0, 0], [1, 1]),
            ([2, 6, 33, 29], [7, 6, 2, 3], [1, 1], [0, 1], [4, 1]),
            ([2, 4, 21, 51], [3, 4, 1, 3], [1, 2], [0, 1], [1, 1]),
            ([3, 3, 19, 23], [5, 3, 3, 3], [2, 2], [1, 1], [2, 2]),
            ([2, 1, 40, 36], [4, 1, 7, 7], [2, 2], [3, 3], [1, 1]),
            ([4, 300, 6, 9], [6, 300, 3, 3], [1, 1], [1, 1], [1, 1]),
        ];
        for (i, (x_shape, w_shape, stride, padding, dilation)) in cases.into_iter().enumerate() {
            let options = ConvOptions::new(stride, padding, dilation, 1);
            let x = flex(Tensor::<4>::random(x_shape, normal, &device));
            let w = flex(Tensor::<4>::random(w_shape, normal, &device));
            let flex_y = Flex::conv2d(x.clone(), w.clone(), None, options.clone());
            let g = flex(Tensor::<4>::random(
                flex_y.shape().dims::<4>(),
                normal,
                &device,
            ));
            let flex_dx = Flex::conv2d_x_backward(x.clone(), w.clone(), g.clone(), options.clone());
            let tensor = |t: FlexTensor| Tensor::<4>::from_data(t.into_data(), &device);
            for threads in [1, 2, 3] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .expect("pool");
                let (y, dx) = pool.install(|| {
                    (
                        forward(x.clone(), w.clone(), options.clone()),
                        input_grad(&x, w.clone(), g.clone(), options.clone()),
                    )
                });
                assert_eq!(y.shape(), flex_y.shape(), "case {i}: output shape");
                let what = format!("case {i}, {threads} threads");
                assert_close(
                    tensor(y),
                    tensor(flex_y.clone()),
                    1e-5,
                    &format!("{what}: forward"),
                );
                assert_close(
                    tensor(dx),
                    tensor(flex_dx.clone()),
                    1e-5,
                    &format!("{what}: input gradient"),
                );
            }
        }
    }

    #[test]
    fn grouped_or_asymmetric_convolutions_fall_back_to_flex() {
        let device = Device::flex();
        let normal = Distribution::Normal(0.0, 1.0);
        let x = Tensor::<4>::random([2, 4, 7, 8], normal, &device);
        for (w_shape, options, out) in [
            (
                [6, 2, 3, 3],
                ConvOptions::new([1, 1], [1, 1], [1, 1], 2),
                [2, 6, 7, 8],
            ),
            (
                [6, 4, 3, 3],
                ConvOptions::new_with_padding([1, 1], [(0, 1), (1, 0)], [1, 1], 1),
                [2, 6, 6, 7],
            ),
        ] {
            let w = Tensor::<4>::random(w_shape, normal, &device);
            let g = Tensor::<4>::random(out, normal, &device);
            let default = Flex::conv2d_weight_backward(
                flex(x.clone()),
                flex(w.clone()),
                flex(g.clone()),
                options.clone(),
            );
            let values = |t: FlexTensor| t.into_data().try_to_vec::<f32>().expect("f32");
            assert_eq!(weight_grad_of(&x, &w, &g, &options), values(default));
            let (x, w, g) = (flex(x.clone()), flex(w), flex(g));
            assert_eq!(
                values(forward(x.clone(), w.clone(), options.clone())),
                values(Flex::conv2d(x.clone(), w.clone(), None, options.clone()))
            );
            assert_eq!(
                values(input_grad(&x, w.clone(), g.clone(), options.clone())),
                values(Flex::conv2d_x_backward(x, w, g, options.clone()))
            );
        }
    }

    #[test]
    fn gather_row_reads_the_strided_padded_row() {
        let row: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        for stride in 1..=3 {
            for shift in 0..=6 {
                for pad in 0..=4 {
                    for out_x in 0..=5 {
                        for len in 0..=7 {
                            let mut dst = vec![f32::NAN; len];
                            gather_row(&mut dst, &row, out_x, stride, shift, pad);
                            let expected: Vec<f32> = (0..len)
                                .map(|i| {
                                    let column =
                                        ((out_x + i) * stride + shift) as isize - pad as isize;
                                    usize::try_from(column)
                                        .ok()
                                        .and_then(|c| row.get(c))
                                        .copied()
                                        .unwrap_or(0.0)
                                })
                                .collect();
                            assert_eq!(
                                dst, expected,
                                "stride {stride} shift {shift} pad {pad} out_x {out_x} len {len}"
                            );
                        }
                    }
                }
            }
        }
    }
}
