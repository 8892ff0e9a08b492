//! Multi-head self-attention with Shaw relative-position scores, as the study's conformer
//! uses it (burn's `MultiHeadAttention` has no relative positions): after a LayerNorm,
//! `score(i, j) = (q_i·k_j + q_i·E[clamp(i − j, −M, M) + M]) / √d_head`, with one embedding
//! table `E` of `2M + 1` rows of width `d_head` shared by every head; softmax over `j`;
//! the heads' weighted values concatenated, projected, and dropped out (on the output, not
//! on the attention weights). No mask.

use burn::module::Module;
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear,
    LinearConfig,
};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::dropout::dropout;
use crate::softmax::softmax_last;

/// See the module docs.
#[derive(Module, Debug)]
pub struct RelativeAttention {
    norm: LayerNorm,
    q: Linear,
    /// Keys (first half of the outputs) and values (second half).
    kv: Linear,
    out: Linear,
    rel: Embedding,
    dropout: Dropout,
    heads: usize,
    max_relative: usize,
}

/// Row of the embedding table for each pair `(i, j)` of a sequence of `len`, row-major:
/// `clamp(i − j, −max, max) + max`.
fn distance_rows(len: usize, max: usize) -> Vec<i64> {
    let (len, max) = (len as i64, max as i64);
    (0..len)
        .flat_map(|i| (0..len).map(move |j| (i - j).clamp(-max, max) + max))
        .collect()
}

impl RelativeAttention {
    /// Attention of width `dim` with `heads` heads of `dim / heads`, relative distances
    /// clamped to ±`max_relative`, output dropout `dropout`.
    pub fn new(
        dim: usize,
        heads: usize,
        max_relative: usize,
        dropout: f64,
        device: &Device,
    ) -> RelativeAttention {
        assert!(
            heads > 0 && dim.is_multiple_of(heads),
            "width {dim} does not split into {heads} heads"
        );
        RelativeAttention {
            norm: LayerNormConfig::new(dim).init(device),
            q: LinearConfig::new(dim, dim).with_bias(false).init(device),
            kv: LinearConfig::new(dim, 2 * dim)
                .with_bias(false)
                .init(device),
            out: LinearConfig::new(dim, dim).init(device),
            rel: EmbeddingConfig::new(2 * max_relative + 1, dim / heads).init(device),
            dropout: DropoutConfig::new(dropout).init(),
            heads,
            max_relative,
        }
    }

    /// `[N, L, C]` → `[N, L, C]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [n, len, dim] = x.dims();
        let (heads, head) = (self.heads, dim / self.heads);
        let device = x.device();
        let x = self.norm.forward(x);
        // [N, L, C] → [N, H, L, d]
        let split = |t: Tensor<3>| t.reshape([n, len, heads, head]).swap_dims(1, 2);
        let scale = (head as f64).powf(-0.5);
        let q = split(self.q.forward(x.clone())).mul_scalar(scale);
        let kv = self.kv.forward(x);
        let k = split(kv.clone().narrow(2, 0, dim));
        let v = split(kv.narrow(2, dim, dim));
        let content = q.clone().matmul(k.swap_dims(2, 3));
        // Relative term: for each query position i, q_i against the embeddings of its
        // distances to every j — a batched product with the position i as the batch.
        let rows = Tensor::<1, Int>::from_data(
            TensorData::new(distance_rows(len, self.max_relative), [len * len]),
            &device,
        );
        let table = self
            .rel
            .weight
            .val()
            .select(0, rows)
            .reshape([len, len, head]);
        let q_by_position = q.reshape([n * heads, len, head]).swap_dims(0, 1);
        let relative = q_by_position
            .matmul(table.swap_dims(1, 2))
            .swap_dims(0, 1)
            .reshape([n, heads, len, len]);
        let weights = softmax_last(content + relative);
        let mixed = weights.matmul(v).swap_dims(1, 2).reshape([n, len, dim]);
        dropout(&self.dropout, self.out.forward(mixed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_are_clamped_and_offset_into_the_table() {
        // len 4, max 2: row i, column j holds clamp(i − j, −2, 2) + 2.
        assert_eq!(
            distance_rows(4, 2),
            vec![2, 1, 0, 0, 3, 2, 1, 0, 4, 3, 2, 1, 4, 4, 3, 2]
        );
        assert_eq!(distance_rows(1, 512), vec![512]);
    }
}
