//! AutoInt: `attention_layers` multi-head self-attention layers over the field
//! vectors (embeddings and embedded dense inputs), the last layer's vectors
//! flattened into one linear head. With a non-empty `mlp` it is AutoInt+: an
//! MLP over the flattened embeddings adds its logit.
use tch::nn::{self, Module};
use tch::Tensor;

use super::layers::{head, DeepTower, DenseFields, EmbeddingTable, SelfAttention};
use super::{CtrModel, InputShape, ModelConfig};

#[derive(Debug)]
pub struct AutoInt {
    embedding: EmbeddingTable,
    dense_fields: DenseFields,
    attention: Vec<SelfAttention>,
    out: nn::Linear,
    deep: Option<DeepTower>,
}

impl AutoInt {
    pub fn new(vs: &nn::Path, cfg: &ModelConfig, shape: InputShape) -> Self {
        let mut d = cfg.embedding_dim;
        let attention = (0..cfg.attention_layers)
            .map(|i| {
                let layer = SelfAttention::new(
                    &(vs / "attention" / i),
                    d,
                    cfg.attention_heads,
                    cfg.attention_dim,
                );
                d = layer.out_dim();
                layer
            })
            .collect();
        AutoInt {
            embedding: EmbeddingTable::for_model(&(vs / "embedding"), cfg, shape),
            dense_fields: DenseFields::for_model(&(vs / "dense_fields"), cfg, shape),
            attention,
            out: head(
                &(vs / "head"),
                DenseFields::fields(shape) * d,
                shape.prior_logit,
            ),
            deep: DeepTower::optional(vs, cfg, shape),
        }
    }
}

impl CtrModel for AutoInt {
    fn forward_t(&self, ids: &Tensor, dense: &Tensor, train: bool) -> Tensor {
        let emb = self.embedding.forward(ids);
        let mut x = self.dense_fields.append(&emb, dense);
        for layer in &self.attention {
            x = layer.forward(&x);
        }
        let mut logit = self.out.forward(&x.flatten(1, 2)).squeeze_dim(-1);
        if let Some(deep) = &self.deep {
            logit += deep.forward_t(&emb, dense, train);
        }
        logit
    }
}
