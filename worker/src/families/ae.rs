//! The autoencoder family, as the reference study's `ae_baseline_utils.py` /
//! `train_ae.py` (the DCASE baseline): 5 stacked log-mel frames (640 values)
//! → Linear+BatchNorm1d+ReLU ×4 at width `hidden` → Linear+BN+ReLU to
//! `latent` → Linear+BN+ReLU ×4 at `hidden` → Linear back to 640. MSE loss,
//! AdamW, learning rate halved every 50 epochs, the state with the lowest
//! training loss kept.

use burn::module::Module;
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::Config;
use burn::tensor::{Device, Tensor, TensorData};
use rand::SeedableRng;
use rand::seq::SliceRandom;

/// Input width: 5 frames × 128 mel bins.
pub const INPUT_DIM: usize = 640;

/// Shape of one autoencoder checkpoint.
#[derive(Config, Debug, PartialEq)]
pub struct AeConfig {
    /// Width of the hidden layers (the study: 64, 128, 256).
    #[config(default = 128)]
    pub hidden: usize,
    /// Width of the bottleneck (the study: 4, 8, 16).
    #[config(default = 8)]
    pub latent: usize,
    /// Hidden blocks on each side of the bottleneck.
    #[config(default = 4)]
    pub depth: usize,
    /// Input (and output) width.
    #[config(default = 640)]
    pub input_dim: usize,
}

/// How an autoencoder is trained.
#[derive(Config, Debug, PartialEq)]
pub struct AeTrainingConfig {
    /// Model shape.
    pub model: AeConfig,
    /// Epochs (the study: 200).
    #[config(default = 200)]
    pub epochs: usize,
    /// Batch size (the study: 128).
    #[config(default = 128)]
    pub batch_size: usize,
    /// Initial learning rate (the study: 5e-4).
    #[config(default = 5e-4)]
    pub lr: f64,
    /// Learning-rate decay factor applied every `lr_step_epochs`.
    #[config(default = 0.5)]
    pub lr_gamma: f64,
    /// Epochs between learning-rate decays.
    #[config(default = 50)]
    pub lr_step_epochs: usize,
    /// AdamW weight decay (PyTorch's default, 0.01).
    #[config(default = 0.01)]
    pub weight_decay: f32,
    /// Seed for initialisation and shuffling.
    #[config(default = 1)]
    pub seed: u64,
}

/// Linear → BatchNorm1d(momentum 0.01, eps 1e-3) → ReLU.
#[derive(Module, Debug)]
pub struct Block {
    linear: Linear,
    norm: BatchNorm,
}

impl Block {
    fn new(input: usize, output: usize, device: &Device) -> Block {
        Block {
            linear: LinearConfig::new(input, output).init(device),
            norm: BatchNormConfig::new(output).with_momentum(0.01).with_epsilon(1e-3).init(device),
        }
    }

    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        burn::tensor::activation::relu(self.norm.forward(self.linear.forward(x)))
    }
}

/// The autoencoder.
#[derive(Module, Debug)]
pub struct Autoencoder {
    encoder: Vec<Block>,
    bottleneck: Block,
    decoder: Vec<Block>,
    output: Linear,
}

impl AeConfig {
    /// Builds a model on `device` with weights drawn from `seed`.
    pub fn init(&self, device: &Device, seed: u64) -> Autoencoder {
        super::init_seeded(device, seed, || {
            let encoder = (0..self.depth)
                .map(|i| Block::new(if i == 0 { self.input_dim } else { self.hidden }, self.hidden, device))
                .collect();
            let bottleneck = Block::new(self.hidden, self.latent, device);
            let decoder = (0..self.depth)
                .map(|i| Block::new(if i == 0 { self.latent } else { self.hidden }, self.hidden, device))
                .collect();
            Autoencoder { encoder, bottleneck, decoder, output: LinearConfig::new(self.hidden, self.input_dim).init(device) }
        })
    }
}

impl Autoencoder {
    /// Reconstructs `x` (`[rows, 640]` → `[rows, 640]`).
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let mut h = x;
        for b in &self.encoder {
            h = b.forward(h);
        }
        h = self.bottleneck.forward(h);
        for b in &self.decoder {
            h = b.forward(h);
        }
        self.output.forward(h)
    }
}

/// The outcome of training.
pub struct Trained {
    /// The state with the lowest epoch loss.
    pub model: Autoencoder,
    /// Mean training loss per epoch.
    pub losses: Vec<f32>,
    /// Epoch (1-based) whose state was kept.
    pub best_epoch: usize,
}

/// Trains on `rows` (row-major, `n × input_dim`), calling `on_epoch(epoch, loss)`
/// after each epoch. Deterministic for a seed on the CPU backend.
pub fn train(cfg: &AeTrainingConfig, rows: &[f32], device: &Device, mut on_epoch: impl FnMut(usize, f32)) -> Trained {
    let dim = cfg.model.input_dim;
    let n = rows.len() / dim;
    let device = device.clone().autodiff();
    let mut model = cfg.model.init(&device, cfg.seed);
    let mut optim = AdamWConfig::new().with_weight_decay(cfg.weight_decay).with_epsilon(1e-8).init();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut order: Vec<usize> = (0..n).collect();
    let mut best: Option<(f32, usize, Autoencoder)> = None;
    let mut losses = Vec::with_capacity(cfg.epochs);
    for epoch in 1..=cfg.epochs {
        let lr = cfg.lr * cfg.lr_gamma.powi(((epoch - 1) / cfg.lr_step_epochs.max(1)) as i32);
        order.shuffle(&mut rng);
        let (mut sum, mut seen) = (0.0f64, 0usize);
        for batch in order.chunks(cfg.batch_size) {
            // BatchNorm needs more than one row to estimate a variance.
            if batch.len() < 2 {
                continue;
            }
            let mut buf = Vec::with_capacity(batch.len() * dim);
            for &i in batch {
                buf.extend_from_slice(&rows[i * dim..(i + 1) * dim]);
            }
            let x = Tensor::<2>::from_data(TensorData::new(buf, [batch.len(), dim]), &device);
            let loss = (model.forward(x.clone()) - x).powi_scalar(2).mean();
            let value: f32 = loss.clone().into_scalar::<f32>();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(lr, model, grads);
            sum += value as f64 * batch.len() as f64;
            seen += batch.len();
        }
        let epoch_loss = if seen == 0 { f32::NAN } else { (sum / seen as f64) as f32 };
        losses.push(epoch_loss);
        on_epoch(epoch, epoch_loss);
        if best.as_ref().is_none_or(|(l, _, _)| epoch_loss < *l) {
            best = Some((epoch_loss, epoch, model.clone()));
        }
    }
    let (_, best_epoch, model) = best.unwrap_or((f32::NAN, 0, model));
    Trained { model, losses, best_epoch }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    fn data(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n * INPUT_DIM).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    #[test]
    fn every_grid_config_maps_640_wide_rows_back_to_640() {
        let device = crate::families::test_device();
        for hidden in [64, 128, 256] {
            for latent in [4, 8, 16] {
                let model = AeConfig::new().with_hidden(hidden).with_latent(latent).init(&device, 1);
                let x = Tensor::<2>::zeros([3, INPUT_DIM], &device);
                assert_eq!(model.forward(x).dims(), [3, INPUT_DIM], "hidden {hidden} latent {latent}");
                assert_eq!(model.encoder.len(), 4);
                assert_eq!(model.bottleneck.linear.weight.dims(), [hidden, latent]);
            }
        }
    }

    fn tiny(seed: u64) -> AeTrainingConfig {
        AeTrainingConfig::new(AeConfig::new().with_hidden(32).with_latent(4)).with_epochs(3).with_batch_size(16).with_seed(seed)
    }

    #[test]
    fn the_same_seed_gives_the_same_loss_curve_and_another_seed_another() {
        let rows = data(64, 7);
        let device = crate::families::test_device();
        let a = train(&tiny(1), &rows, &device, |_, _| {}).losses;
        let b = train(&tiny(1), &rows, &device, |_, _| {}).losses;
        let c = train(&tiny(2), &rows, &device, |_, _| {}).losses;
        assert_eq!(a.len(), 3);
        assert_eq!(a, b, "same seed, same curve");
        assert_ne!(a, c, "another seed, another curve");
        assert!(a.iter().all(|l| l.is_finite()));
    }

    #[test]
    fn training_lowers_the_reconstruction_loss_and_keeps_the_best_epoch() {
        let rows = data(128, 3);
        let mut seen = Vec::new();
        let t = train(&tiny(5).with_epochs(8).with_lr(1e-2), &rows, &crate::families::test_device(), |e, l| seen.push((e, l)));
        assert_eq!(seen.len(), 8);
        assert!(t.losses[7] < t.losses[0], "{:?}", t.losses);
        let best = t.losses.iter().cloned().fold(f32::INFINITY, f32::min);
        assert_eq!(t.losses[t.best_epoch - 1], best);
    }
}
