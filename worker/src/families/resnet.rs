//! ResNet backbones as the study trains them: `models/resnet_oth.py` wraps torchvision's
//! ResNet-18/34/50/101/152 (a 7×7 stride-2 stem with a 1-channel input, 3×3 stride-2 max
//! pool, four stages of basic blocks (18/34) or bottleneck blocks with the stride on the
//! 3×3 convolution (50/101/152, "v1.5"), global average pooling). The embedding is the
//! pooled penultimate layer. Parameter names follow torchvision's (`conv1`, `bn1`,
//! `layer1.0.conv1`, `downsample`), so PyTorch weights map onto them one to one.
//!
//! Beyond the study, stage widths and block counts scale by a multiplier, so that a CPU
//! preset can train a ResNet-18 at 1/8 width in seconds.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, PaddingConfig2d};
use burn::prelude::Config;
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use super::ConfigError;
use crate::conv::conv2d;
use crate::norm::batch_norm;

/// The depths the study trains.
pub const DEPTHS: [usize; 5] = [18, 34, 50, 101, 152];

/// torchvision's stage widths (64, 128, 256, 512 channels) at `width_multiplier = 1`.
const BASE_WIDTHS: [usize; 4] = [64, 128, 256, 512];

/// Shape of a ResNet backbone.
#[derive(Config, Debug, PartialEq)]
pub struct ResNetConfig {
    /// Depth: 18, 34 (basic blocks), 50, 101 or 152 (bottleneck blocks).
    #[config(default = 18)]
    pub depth: usize,
    /// Scales every stage's channel width (1.0 = the study: 64/128/256/512), each rounded and at least 1.
    #[config(default = 1.0)]
    pub width_multiplier: f64,
    /// Scales the number of blocks in every stage (1.0 = the study), each rounded up and at least 1.
    #[config(default = 1.0)]
    pub depth_multiplier: f64,
    /// Blocks per stage, replacing the depth's standard counts (and `depth_multiplier`).
    #[config(default = "None")]
    pub blocks: Option<[usize; 4]>,
    /// Input channels (1: a log-mel image).
    #[config(default = 1)]
    pub in_channels: usize,
}

/// Which residual block a depth uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// Two 3×3 convolutions (ResNet-18/34), expansion 1.
    Basic,
    /// 1×1, 3×3, 1×1 convolutions (ResNet-50/101/152), expansion 4.
    Bottleneck,
}

impl BlockKind {
    /// Output channels per unit of stage width.
    pub fn expansion(self) -> usize {
        match self {
            BlockKind::Basic => 1,
            BlockKind::Bottleneck => 4,
        }
    }
}

/// A validated layout: block kind, stage widths and blocks per stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The residual block.
    pub kind: BlockKind,
    /// Width of each stage (before the block's expansion).
    pub widths: [usize; 4],
    /// Blocks in each stage.
    pub blocks: [usize; 4],
}

impl Layout {
    /// Width of the embedding (the pooled output of the last stage).
    pub fn embedding_dim(&self) -> usize {
        self.widths[3] * self.kind.expansion()
    }
}

fn positive_multiplier(key: &'static str, value: f64) -> Result<f64, ConfigError> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(ConfigError {
            key,
            value: value.to_string(),
            expected: "a finite number above 0",
        })
    }
}

impl ResNetConfig {
    /// Checks the config and works out its layout.
    pub fn layout(&self) -> Result<Layout, ConfigError> {
        let (kind, standard) = match self.depth {
            18 => (BlockKind::Basic, [2, 2, 2, 2]),
            34 => (BlockKind::Basic, [3, 4, 6, 3]),
            50 => (BlockKind::Bottleneck, [3, 4, 6, 3]),
            101 => (BlockKind::Bottleneck, [3, 4, 23, 3]),
            152 => (BlockKind::Bottleneck, [3, 8, 36, 3]),
            other => {
                return Err(ConfigError {
                    key: "depth",
                    value: other.to_string(),
                    expected: "one of 18, 34, 50, 101, 152",
                });
            }
        };
        let width = positive_multiplier("width_multiplier", self.width_multiplier)?;
        let deeper = positive_multiplier("depth_multiplier", self.depth_multiplier)?;
        if self.in_channels == 0 {
            return Err(ConfigError {
                key: "in_channels",
                value: "0".into(),
                expected: "at least 1",
            });
        }
        let blocks = match self.blocks {
            Some(b) if b.contains(&0) => {
                return Err(ConfigError {
                    key: "blocks",
                    value: format!("{b:?}"),
                    expected: "four counts, each at least 1",
                });
            }
            Some(b) => b,
            None => standard.map(|n| ((n as f64 * deeper).ceil() as usize).max(1)),
        };
        let widths = BASE_WIDTHS.map(|w| ((w as f64 * width).round() as usize).max(1));
        Ok(Layout {
            kind,
            widths,
            blocks,
        })
    }

    /// Builds a backbone on `device` with weights drawn from `seed` (torchvision's
    /// initialisation: Kaiming-normal fan-out convolutions, BatchNorm at 1 and 0).
    pub fn init(&self, device: &Device, seed: u64) -> Result<ResNet, ConfigError> {
        let layout = self.layout()?;
        Ok(super::init_seeded(device, seed, || {
            ResNet::new(self.in_channels, &layout, device)
        }))
    }
}

/// torchvision's convolution initialisation: `kaiming_normal_(mode="fan_out", nonlinearity="relu")`.
fn conv(
    input: usize,
    output: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    device: &Device,
) -> Conv2d {
    Conv2dConfig::new([input, output], [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(
            padding, padding, padding, padding,
        ))
        .with_bias(false)
        .with_initializer(Initializer::KaimingNormal {
            gain: std::f64::consts::SQRT_2,
            fan_out_only: true,
        })
        .init(device)
}

/// BatchNorm2d with PyTorch's defaults (momentum 0.1, eps 1e-5).
fn norm(channels: usize, device: &Device) -> BatchNorm {
    BatchNormConfig::new(channels).init(device)
}

/// The 1×1 convolution + BatchNorm that matches the shortcut to a block's output.
#[derive(Module, Debug)]
pub struct Downsample {
    conv: Conv2d,
    bn: BatchNorm,
}

impl Downsample {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        batch_norm(&self.bn, conv2d(&self.conv, x))
    }
}

/// torchvision's `BasicBlock`: 3×3 (stride) → BN → ReLU → 3×3 → BN, plus the shortcut, ReLU.
#[derive(Module, Debug)]
pub struct BasicBlock {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    downsample: Option<Downsample>,
}

/// torchvision's `Bottleneck` (v1.5): 1×1 → 3×3 (stride) → 1×1 (×4), each with BN, plus the shortcut, ReLU.
#[derive(Module, Debug)]
pub struct Bottleneck {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    conv3: Conv2d,
    bn3: BatchNorm,
    downsample: Option<Downsample>,
}

/// One residual block of either kind.
// A stage holds blocks of one kind only, so boxing the larger variant would save nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Block {
    /// ResNet-18/34.
    Basic(BasicBlock),
    /// ResNet-50/101/152.
    Bottleneck(Bottleneck),
}

impl Block {
    fn new(kind: BlockKind, input: usize, width: usize, stride: usize, device: &Device) -> Block {
        let output = width * kind.expansion();
        let downsample = (stride != 1 || input != output).then(|| Downsample {
            conv: conv(input, output, 1, stride, 0, device),
            bn: norm(output, device),
        });
        match kind {
            BlockKind::Basic => Block::Basic(BasicBlock {
                conv1: conv(input, width, 3, stride, 1, device),
                bn1: norm(width, device),
                conv2: conv(width, width, 3, 1, 1, device),
                bn2: norm(width, device),
                downsample,
            }),
            BlockKind::Bottleneck => Block::Bottleneck(Bottleneck {
                conv1: conv(input, width, 1, 1, 0, device),
                bn1: norm(width, device),
                conv2: conv(width, width, 3, stride, 1, device),
                bn2: norm(width, device),
                conv3: conv(width, output, 1, 1, 0, device),
                bn3: norm(output, device),
                downsample,
            }),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let (out, downsample) = match self {
            Block::Basic(b) => {
                let h = relu(batch_norm(&b.bn1, conv2d(&b.conv1, x.clone())));
                (batch_norm(&b.bn2, conv2d(&b.conv2, h)), &b.downsample)
            }
            Block::Bottleneck(b) => {
                let h = relu(batch_norm(&b.bn1, conv2d(&b.conv1, x.clone())));
                let h = relu(batch_norm(&b.bn2, conv2d(&b.conv2, h)));
                (batch_norm(&b.bn3, conv2d(&b.conv3, h)), &b.downsample)
            }
        };
        let identity = match downsample {
            Some(d) => d.forward(x),
            None => x,
        };
        relu(out + identity)
    }
}

/// A ResNet backbone: `[batch, channels, mels, frames]` → `[batch, embedding_dim]`.
#[derive(Module, Debug)]
pub struct ResNet {
    conv1: Conv2d,
    bn1: BatchNorm,
    maxpool: MaxPool2d,
    layer1: Vec<Block>,
    layer2: Vec<Block>,
    layer3: Vec<Block>,
    layer4: Vec<Block>,
    embedding_dim: usize,
}

impl ResNet {
    fn new(in_channels: usize, layout: &Layout, device: &Device) -> ResNet {
        let mut input = layout.widths[0];
        let mut stage = |i: usize| -> Vec<Block> {
            (0..layout.blocks[i])
                .map(|b| {
                    let stride = if i > 0 && b == 0 { 2 } else { 1 };
                    let block = Block::new(layout.kind, input, layout.widths[i], stride, device);
                    input = layout.widths[i] * layout.kind.expansion();
                    block
                })
                .collect()
        };
        let (layer1, layer2, layer3, layer4) = (stage(0), stage(1), stage(2), stage(3));
        ResNet {
            conv1: conv(in_channels, layout.widths[0], 7, 2, 3, device),
            bn1: norm(layout.widths[0], device),
            maxpool: MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
            layer1,
            layer2,
            layer3,
            layer4,
            embedding_dim: layout.embedding_dim(),
        }
    }

    /// Width of the embedding this backbone returns.
    pub fn embedding_dim(&self) -> usize {
        self.embedding_dim
    }

    /// The pooled penultimate layer: `[batch, channels, mels, frames]` → `[batch, embedding_dim]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let mut h = self
            .maxpool
            .forward(relu(batch_norm(&self.bn1, conv2d(&self.conv1, x))));
        for block in self
            .layer1
            .iter()
            .chain(&self.layer2)
            .chain(&self.layer3)
            .chain(&self.layer4)
        {
            h = block.forward(h);
        }
        let [batch, channels, height, width] = h.dims();
        h.reshape([batch, channels, height * width])
            .mean_dim(2)
            .reshape([batch, channels])
    }

    /// Residual blocks in each stage.
    pub fn stage_lengths(&self) -> [usize; 4] {
        [
            self.layer1.len(),
            self.layer2.len(),
            self.layer3.len(),
            self.layer4.len(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_depth_at_a_small_width_maps_a_log_mel_image_to_its_embedding() {
        let device = crate::families::test_device();
        for (depth, blocks, dim) in [
            (18, [2, 2, 2, 2], 8),
            (34, [3, 4, 6, 3], 8),
            (50, [3, 4, 6, 3], 32),
            (101, [3, 4, 23, 3], 32),
            (152, [3, 8, 36, 3], 32),
        ] {
            let cfg = ResNetConfig::new()
                .with_depth(depth)
                .with_width_multiplier(1.0 / 64.0);
            assert_eq!(cfg.layout().expect("valid").widths, [1, 2, 4, 8]);
            let model = cfg.init(&device, 1).expect("valid config");
            assert_eq!(model.stage_lengths(), blocks, "depth {depth}");
            assert_eq!(model.embedding_dim(), dim, "depth {depth}");
            let x = Tensor::<4>::zeros([2, 1, 128, 40], &device);
            assert_eq!(model.forward(x).dims(), [2, dim], "depth {depth}");
        }
    }

    #[test]
    fn the_study_width_gives_torchvision_embedding_sizes() {
        for (depth, dim) in [(18, 512), (34, 512), (50, 2048), (101, 2048), (152, 2048)] {
            let layout = ResNetConfig::new()
                .with_depth(depth)
                .layout()
                .expect("valid");
            assert_eq!(layout.widths, [64, 128, 256, 512]);
            assert_eq!(layout.embedding_dim(), dim);
        }
    }

    #[test]
    fn multipliers_and_block_overrides_reshape_the_stages() {
        let deeper = ResNetConfig::new()
            .with_depth(50)
            .with_depth_multiplier(0.5)
            .layout()
            .expect("valid");
        assert_eq!(deeper.blocks, [2, 2, 3, 2]);
        let explicit = ResNetConfig::new()
            .with_depth(101)
            .with_depth_multiplier(3.0)
            .with_blocks(Some([1, 1, 2, 1]));
        assert_eq!(explicit.layout().expect("valid").blocks, [1, 1, 2, 1]);
        assert_eq!(
            ResNetConfig::new()
                .with_width_multiplier(0.125)
                .layout()
                .expect("valid")
                .widths,
            [8, 16, 32, 64]
        );
    }

    #[test]
    fn unsupported_shapes_are_errors_that_name_the_key() {
        let err = ResNetConfig::new()
            .with_depth(20)
            .layout()
            .expect_err("depth 20");
        assert_eq!(err.key, "depth");
        assert!(err.to_string().contains("18, 34, 50, 101, 152"), "{err}");
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(
                ResNetConfig::new()
                    .with_width_multiplier(bad)
                    .layout()
                    .expect_err("bad")
                    .key,
                "width_multiplier"
            );
            assert_eq!(
                ResNetConfig::new()
                    .with_depth_multiplier(bad)
                    .layout()
                    .expect_err("bad")
                    .key,
                "depth_multiplier"
            );
        }
        assert_eq!(
            ResNetConfig::new()
                .with_blocks(Some([1, 0, 1, 1]))
                .layout()
                .expect_err("zero")
                .key,
            "blocks"
        );
        assert_eq!(
            ResNetConfig::new()
                .with_in_channels(0)
                .layout()
                .expect_err("zero")
                .key,
            "in_channels"
        );
    }

    #[test]
    fn the_same_seed_draws_the_same_weights() {
        let device = crate::families::test_device();
        let cfg = ResNetConfig::new().with_width_multiplier(1.0 / 16.0);
        let x = Tensor::<4>::ones([1, 1, 64, 32], &device);
        let a = cfg
            .init(&device, 3)
            .expect("valid")
            .forward(x.clone())
            .into_data();
        let b = cfg
            .init(&device, 3)
            .expect("valid")
            .forward(x.clone())
            .into_data();
        let c = cfg.init(&device, 4).expect("valid").forward(x).into_data();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
