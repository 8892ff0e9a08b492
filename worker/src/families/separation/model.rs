//! The separator, as the study's `TSCNet_Cont` (CMGAN-style, `models/generator_comp.py`):
//! a dense encoder over the mixture's magnitude, real and imaginary parts, `cb` two-stage
//! conformer blocks (over time per frequency bin, then over frequency per frame), and two
//! decoders — a magnitude mask applied with the mixture's phase and a complex residual.
//!
//! Tensors are `[batch, channels, time, frequency]`. burn's layers are used where they
//! exist; what it lacks is here, small: the causal (time) padding is a zero pad before
//! the conv ([`ConvNormAct`]), the sub-pixel upsampling is [`SubPixel`], the
//! relative-position attention is [`super::attention::RelativeAttention`].

use super::attention::RelativeAttention;
use crate::conv::conv2d;
use crate::dropout::dropout;
use crate::norm::batch_norm;
use burn::module::Module;
use burn::nn::conv::{Conv1d, Conv1dConfig, Conv2d, Conv2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, InstanceNorm, InstanceNormConfig,
    LayerNorm, LayerNormConfig, Linear, LinearConfig, PRelu, PReluConfig, PaddingConfig1d,
    PaddingConfig2d,
};
use burn::prelude::Config;
use burn::tensor::activation::{glu, relu, silu};
use burn::tensor::{Device, Tensor};

/// Shape of a separator: every size of the architecture.
#[derive(Config, Debug, PartialEq)]
pub struct SeparatorConfig {
    /// Channels `C` of every stage (the study: 64, 128).
    pub channels: usize,
    /// Two-stage conformer blocks `cb` (the study: 0, 1, 2, 4).
    pub blocks: usize,
    /// Frequency bins of the STFT (n_fft 400: 201).
    #[config(default = 201)]
    pub bins: usize,
    /// Layers of each dilated dense block (time dilations 1, 2, 4, …).
    #[config(default = 4)]
    pub dense_depth: usize,
    /// The conformers' settings.
    #[config(default = "ConformerConfig::study()")]
    pub conformer: ConformerConfig,
}

/// A conformer block's settings besides its width (the study's, from `TSCB`).
#[derive(Config, Debug, PartialEq)]
pub struct ConformerConfig {
    /// Attention heads (each of width `C / heads`).
    #[config(default = 4)]
    pub heads: usize,
    /// Feed-forward expansion.
    #[config(default = 4)]
    pub ff_mult: usize,
    /// Convolution-module expansion.
    #[config(default = 2)]
    pub conv_expansion: usize,
    /// Depthwise convolution kernel (odd).
    #[config(default = 31)]
    pub kernel: usize,
    /// Relative distances beyond ± this share one embedding.
    #[config(default = 512)]
    pub max_relative: usize,
    /// Dropout after the feed-forward layers and the attention output.
    #[config(default = 0.2)]
    pub dropout: f64,
}

impl ConformerConfig {
    /// The study's conformer: 4 heads, FF ×4, conv ×2, kernel 31, distances ±512, dropout 0.2.
    pub fn study() -> ConformerConfig {
        ConformerConfig::new()
    }
}

/// Conv → instance norm (affine) → PReLU: the unit every dense block is made of. The
/// input is first zero-padded by `causal` frames at the start of the time axis (only the
/// past is seen); the conv's own padding stays symmetric, which keeps it on
/// [`conv2d`]'s fast weight gradient.
#[derive(Module, Debug)]
struct ConvNormAct {
    conv: Conv2d,
    norm: InstanceNorm,
    act: PRelu,
    causal: usize,
}

fn instance_norm(channels: usize, device: &Device) -> InstanceNorm {
    InstanceNormConfig::new(channels)
        .with_affine(true)
        .init(device)
}

fn prelu(channels: usize, device: &Device) -> PRelu {
    PReluConfig::new()
        .with_num_parameters(channels)
        .init(device)
}

impl ConvNormAct {
    fn new(conv: Conv2dConfig, causal: usize, device: &Device) -> ConvNormAct {
        let out = conv.channels[1];
        ConvNormAct {
            conv: conv.init(device),
            norm: instance_norm(out, device),
            act: prelu(out, device),
            causal,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = if self.causal > 0 {
            x.pad([(self.causal, 0), (0, 0)], 0.0)
        } else {
            x
        };
        self.act.forward(self.norm.forward(conv2d(&self.conv, x)))
    }
}

/// Dilated dense block: layer `i` sees the concatenation of every earlier output and the
/// input (`C·(i+1)` channels), convolves (kernel (2,3), time dilation 2^i, causal in time)
/// to `C`; the block returns the last layer's output.
#[derive(Module, Debug)]
pub struct DilatedDense {
    layers: Vec<ConvNormAct>,
}

impl DilatedDense {
    pub(crate) fn new(channels: usize, depth: usize, device: &Device) -> DilatedDense {
        let layers = (0..depth)
            .map(|i| {
                let dilation = 1 << i;
                // Kernel (2, 3) over (time, frequency): the frame `dilation` back and this
                // one, one bin each side in frequency.
                let conv = Conv2dConfig::new([channels * (i + 1), channels], [2, 3])
                    .with_dilation([dilation, 1])
                    .with_padding(PaddingConfig2d::Explicit(0, 1, 0, 1));
                ConvNormAct::new(conv, dilation, device)
            })
            .collect();
        DilatedDense { layers }
    }

    /// `[B, C, T, F]` → `[B, C, T, F]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut skip = x.clone();
        let mut out = x;
        for layer in &self.layers {
            out = layer.forward(skip.clone());
            skip = Tensor::cat(vec![out.clone(), skip], 1);
        }
        out
    }
}

/// The dense encoder: 1×1 conv from the 3 input channels, a dilated dense block, and a
/// (1,3) conv with frequency stride 2 (201 → 101 bins).
#[derive(Module, Debug)]
pub struct DenseEncoder {
    conv_in: Conv2d,
    norm_in: InstanceNorm,
    act_in: PRelu,
    dense: DilatedDense,
    conv_out: Conv2d,
    norm_out: InstanceNorm,
    act_out: PRelu,
}

impl DenseEncoder {
    pub(crate) fn new(channels: usize, depth: usize, device: &Device) -> DenseEncoder {
        DenseEncoder {
            conv_in: Conv2dConfig::new([3, channels], [1, 1]).init(device),
            norm_in: instance_norm(channels, device),
            act_in: prelu(channels, device),
            dense: DilatedDense::new(channels, depth, device),
            conv_out: Conv2dConfig::new([channels, channels], [1, 3])
                .with_stride([1, 2])
                .with_padding(PaddingConfig2d::Explicit(0, 1, 0, 1))
                .init(device),
            norm_out: instance_norm(channels, device),
            act_out: prelu(channels, device),
        }
    }

    /// `[B, 3, T, F]` → `[B, C, T, ⌈F/2⌉]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self
            .act_in
            .forward(self.norm_in.forward(conv2d(&self.conv_in, x)));
        let x = self.dense.forward(x);
        self.act_out
            .forward(self.norm_out.forward(conv2d(&self.conv_out, x)))
    }
}

/// LayerNorm → Linear (×mult) → Swish → dropout → Linear → dropout.
#[derive(Module, Debug)]
struct FeedForward {
    norm: LayerNorm,
    up: Linear,
    down: Linear,
    dropout: Dropout,
}

impl FeedForward {
    fn new(dim: usize, cfg: &ConformerConfig, device: &Device) -> FeedForward {
        FeedForward {
            norm: LayerNormConfig::new(dim).init(device),
            up: LinearConfig::new(dim, dim * cfg.ff_mult).init(device),
            down: LinearConfig::new(dim * cfg.ff_mult, dim).init(device),
            dropout: DropoutConfig::new(cfg.dropout).init(),
        }
    }

    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let h = silu(self.up.forward(self.norm.forward(x)));
        dropout(&self.dropout, self.down.forward(dropout(&self.dropout, h)))
    }
}

/// The conformer's convolution module over the sequence: LayerNorm → pointwise conv to
/// 2·E channels → GLU → depthwise conv → BatchNorm → Swish → pointwise conv back.
#[derive(Module, Debug)]
struct ConvModule {
    norm: LayerNorm,
    point_in: Conv1d,
    depthwise: Conv1d,
    batch_norm: BatchNorm,
    point_out: Conv1d,
}

impl ConvModule {
    fn new(dim: usize, cfg: &ConformerConfig, device: &Device) -> ConvModule {
        let inner = dim * cfg.conv_expansion;
        let half = cfg.kernel / 2;
        ConvModule {
            norm: LayerNormConfig::new(dim).init(device),
            point_in: Conv1dConfig::new(dim, 2 * inner, 1).init(device),
            depthwise: Conv1dConfig::new(inner, inner, cfg.kernel)
                .with_groups(inner)
                .with_padding(PaddingConfig1d::Explicit(half, cfg.kernel - 1 - half))
                .init(device),
            batch_norm: BatchNormConfig::new(inner).init(device),
            point_out: Conv1dConfig::new(inner, dim, 1).init(device),
        }
    }

    /// `[N, L, C]` → `[N, L, C]`.
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let h = self.norm.forward(x).swap_dims(1, 2);
        let h = glu(self.point_in.forward(h), 1);
        let h = silu(batch_norm(&self.batch_norm, self.depthwise.forward(h)));
        self.point_out.forward(h).swap_dims(1, 2)
    }
}

/// One conformer block on `[N, L, C]`: ½·FF, relative-position self-attention, the
/// convolution module, ½·FF (each with a residual), final LayerNorm.
#[derive(Module, Debug)]
pub struct Conformer {
    ff1: FeedForward,
    attn: RelativeAttention,
    conv: ConvModule,
    ff2: FeedForward,
    norm: LayerNorm,
}

impl Conformer {
    /// A block of width `dim`.
    pub fn new(dim: usize, cfg: &ConformerConfig, device: &Device) -> Conformer {
        Conformer {
            ff1: FeedForward::new(dim, cfg, device),
            attn: RelativeAttention::new(dim, cfg.heads, cfg.max_relative, cfg.dropout, device),
            conv: ConvModule::new(dim, cfg, device),
            ff2: FeedForward::new(dim, cfg, device),
            norm: LayerNormConfig::new(dim).init(device),
        }
    }

    /// `[N, L, C]` → `[N, L, C]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let x = self.ff1.forward(x.clone()).mul_scalar(0.5) + x;
        let x = self.attn.forward(x.clone()) + x;
        let x = self.conv.forward(x.clone()) + x;
        let x = self.ff2.forward(x.clone()).mul_scalar(0.5) + x;
        self.norm.forward(x)
    }
}

/// A conformer over time (each frequency bin a sequence), then one over frequency (each
/// frame a sequence), each with an outer residual.
#[derive(Module, Debug)]
pub struct TwoStage {
    time: Conformer,
    freq: Conformer,
}

impl TwoStage {
    fn new(dim: usize, cfg: &ConformerConfig, device: &Device) -> TwoStage {
        TwoStage {
            time: Conformer::new(dim, cfg, device),
            freq: Conformer::new(dim, cfg, device),
        }
    }

    /// `[B, C, T, F]` → `[B, C, T, F]`.
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, t, f] = x.dims();
        let x = x.permute([0, 3, 2, 1]).reshape([b * f, t, c]);
        let x = self.time.forward(x.clone()) + x;
        let x = x
            .reshape([b, f, t, c])
            .permute([0, 2, 1, 3])
            .reshape([b * t, f, c]);
        let x = self.freq.forward(x.clone()) + x;
        x.reshape([b, t, f, c]).permute([0, 3, 1, 2])
    }
}

/// The decoders' upsampling factor along frequency: undoes the encoder's stride 2.
const UPSAMPLE: usize = 2;

/// Sub-pixel upsampling along frequency by `r` ([`UPSAMPLE`]): a (1,3) conv (frequency
/// padded by one bin each side) to `C_out·r` channels, then output channel `c` at bin
/// `w·r + j` is conv channel `j·C_out + c`.
#[derive(Module, Debug)]
struct SubPixel {
    conv: Conv2d,
}

impl SubPixel {
    fn new(channels_in: usize, channels_out: usize, device: &Device) -> SubPixel {
        SubPixel {
            conv: Conv2dConfig::new([channels_in, channels_out * UPSAMPLE], [1, 3])
                .with_padding(PaddingConfig2d::Explicit(0, 1, 0, 1))
                .init(device),
        }
    }

    /// `[B, C_in, T, F]` → `[B, C_out, T, F·r]`.
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = conv2d(&self.conv, x);
        let [b, channels, t, f] = y.dims();
        let r = UPSAMPLE;
        y.reshape([b, r, channels / r, t, f])
            .permute([0, 2, 3, 4, 1])
            .reshape([b, channels / r, t, f * r])
    }
}

/// The magnitude-mask decoder: sub-pixel upsampling (101 → 202 bins), a (1,2) conv to one
/// channel (201 bins), IN + PReLU, a 1×1 conv, and a PReLU with one slope per frequency
/// bin. The mask is unbounded.
#[derive(Module, Debug)]
struct MaskDecoder {
    up: SubPixel,
    conv: Conv2d,
    norm: InstanceNorm,
    act: PRelu,
    point: Conv2d,
    slope: PRelu,
}

impl MaskDecoder {
    fn new(channels: usize, bins: usize, device: &Device) -> MaskDecoder {
        MaskDecoder {
            up: SubPixel::new(channels, channels, device),
            conv: Conv2dConfig::new([channels, 1], [1, 2]).init(device),
            norm: instance_norm(1, device),
            act: prelu(1, device),
            point: Conv2dConfig::new([1, 1], [1, 1]).init(device),
            slope: PReluConfig::new()
                .with_num_parameters(bins)
                .with_alpha(-0.25)
                .init(device),
        }
    }

    /// `[B, C, T, F']` → the mask `[B, 1, T, F]`.
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = conv2d(&self.conv, self.up.forward(x));
        let x = conv2d(&self.point, self.act.forward(self.norm.forward(x)));
        // PReLU over the frequency axis (burn's applies its slopes along axis 1).
        let [_, _, _, f] = x.dims();
        let slopes = self.slope.alpha.val().reshape([1, 1, 1, f]);
        relu(x.clone()) + x.clamp_max(0.0) * slopes
    }
}

/// The complex decoder: sub-pixel upsampling, IN + PReLU, a (1,2) conv to real and
/// imaginary parts (`[B, 2, T, F]`).
#[derive(Module, Debug)]
struct ComplexDecoder {
    up: SubPixel,
    norm: InstanceNorm,
    act: PRelu,
    conv: Conv2d,
}

impl ComplexDecoder {
    fn new(channels: usize, device: &Device) -> ComplexDecoder {
        ComplexDecoder {
            up: SubPixel::new(channels, channels, device),
            norm: instance_norm(channels, device),
            act: prelu(channels, device),
            conv: Conv2dConfig::new([channels, 2], [1, 2]).init(device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.act.forward(self.norm.forward(self.up.forward(x)));
        conv2d(&self.conv, x)
    }
}

/// The separator.
#[derive(Module, Debug)]
pub struct Separator {
    encoder: DenseEncoder,
    blocks: Vec<TwoStage>,
    dense_mask: DilatedDense,
    dense_complex: DilatedDense,
    mask_decoder: MaskDecoder,
    complex_decoder: ComplexDecoder,
}

/// A forward pass: the estimate and the clip-level features.
pub struct Separated {
    /// Real and imaginary parts of the estimated target, `[B, 2, T, F]`.
    pub estimate: Tensor<4>,
    /// Mean over time and frequency of each channel of the two decoder-side dense blocks'
    /// outputs, then of every two-stage block's output: `[B, C·(2 + cb)]`.
    pub features: Tensor<2>,
}

impl SeparatorConfig {
    /// A separator on `device` with weights drawn from `seed`.
    pub fn init(&self, device: &Device, seed: u64) -> Separator {
        let c = self.channels;
        super::super::init_seeded(device, seed, || Separator {
            encoder: DenseEncoder::new(c, self.dense_depth, device),
            blocks: (0..self.blocks)
                .map(|_| TwoStage::new(c, &self.conformer, device))
                .collect(),
            dense_mask: DilatedDense::new(c, self.dense_depth, device),
            dense_complex: DilatedDense::new(c, self.dense_depth, device),
            mask_decoder: MaskDecoder::new(c, self.bins, device),
            complex_decoder: ComplexDecoder::new(c, device),
        })
    }

    /// Width of the features [`Separator::forward`] returns per segment: `C·(2 + cb)`.
    pub fn feature_dim(&self) -> usize {
        self.channels * (2 + self.blocks)
    }
}

/// Per-channel mean over time and frequency: `[B, C, T, F]` → `[B, C]`.
fn channel_means(x: Tensor<4>) -> Tensor<2> {
    let [b, c, _, _] = x.dims();
    x.mean_dim(3).mean_dim(2).reshape([b, c])
}

impl Separator {
    /// Separates mixtures given as the real and imaginary parts of their STFT,
    /// `[B, 2, T, F]`.
    ///
    /// The mask multiplies the magnitude with the mixture's phase: `mask·|X|·cos∠X` is
    /// `mask·Re X` (and `sin` gives `Im X`), computed so without the angle, and equal to
    /// the reference also where |X| = 0 (both give 0).
    pub fn forward(&self, spec: Tensor<4>) -> Separated {
        let re = spec.clone().narrow(1, 0, 1);
        let im = spec.clone().narrow(1, 1, 1);
        let magnitude = (re.clone().powi_scalar(2) + im.clone().powi_scalar(2)).sqrt();
        let mut h = self.encoder.forward(Tensor::cat(vec![magnitude, spec], 1));
        let mut features = Vec::with_capacity(2 + self.blocks.len());
        let mut block_features = Vec::with_capacity(self.blocks.len());
        for block in &self.blocks {
            h = block.forward(h);
            block_features.push(channel_means(h.clone()));
        }
        let r = self.dense_mask.forward(h.clone());
        let p = self.dense_complex.forward(h);
        features.push(channel_means(r.clone()));
        features.push(channel_means(p.clone()));
        features.extend(block_features);
        let mask = self.mask_decoder.forward(r);
        let residual = self.complex_decoder.forward(p);
        let estimate = Tensor::cat(vec![mask.clone() * re, mask * im], 1) + residual;
        Separated {
            estimate,
            features: Tensor::cat(features, 1),
        }
    }
}
