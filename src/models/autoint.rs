//! AutoInt: `attention_layers` multi-head self-attention layers over the field
//! vectors (embeddings and embedded dense inputs), the last layer's vectors
//! flattened into one linear head. With a non-empty `mlp` it is AutoInt+: an
//! MLP over the flattened embeddings adds its logit.
use serde::{Deserialize, Serialize};
use tch::nn::{self, Module};
use tch::Tensor;

use super::layers::{head, DeepTower, DenseFields, EmbeddingTable, MlpConfig, SelfAttention};
use super::{CtrModel, Embedding, InputShape, ModelSettings};

#[derive(Debug)]
pub struct AutoInt {
    embedding: EmbeddingTable,
    dense_fields: DenseFields,
    attention: Vec<SelfAttention>,
    out: nn::Linear,
    deep: Option<DeepTower>,
}

/// AutoInt's settings (`mlp = []`: AutoInt without the MLP of AutoInt+).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutoIntConfig {
    #[serde(flatten)]
    pub embedding: Embedding,
    #[serde(flatten)]
    pub mlp: MlpConfig,
    /// Self-attention layers (default 3).
    #[serde(default = "default_attention_layers")]
    pub attention_layers: i64,
    /// Heads of each attention layer (default 2).
    #[serde(default = "default_attention_heads")]
    pub attention_heads: i64,
    /// Width of each head (default 32).
    #[serde(default = "default_attention_dim")]
    pub attention_dim: i64,
}

impl ModelSettings for AutoIntConfig {
    fn check(&self) -> Result<(), String> {
        self.embedding.check()?;
        self.mlp.check()?;
        if self.attention_layers < 0 || self.attention_heads <= 0 || self.attention_dim <= 0 {
            return Err(
                "model.attention_layers must be >= 0, attention_heads and attention_dim > 0".into(),
            );
        }
        Ok(())
    }

    fn build(&self, vs: &nn::Path, shape: InputShape) -> Box<dyn CtrModel> {
        Box::new(AutoInt::new(vs, self, shape))
    }

    fn summary(&self) -> String {
        format!(
            "{} attention {}x{}x{}",
            self.embedding.summary(Some(&self.mlp)),
            self.attention_layers,
            self.attention_heads,
            self.attention_dim
        )
    }
}

fn default_attention_layers() -> i64 {
    3
}
fn default_attention_heads() -> i64 {
    2
}
fn default_attention_dim() -> i64 {
    32
}

impl AutoInt {
    pub fn new(vs: &nn::Path, cfg: &AutoIntConfig, shape: InputShape) -> Self {
        let mut d = cfg.embedding.embedding_dim;
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
            embedding: EmbeddingTable::for_model(&(vs / "embedding"), &cfg.embedding, shape),
            dense_fields: DenseFields::for_model(&(vs / "dense_fields"), &cfg.embedding, shape),
            attention,
            out: head(
                &(vs / "head"),
                DenseFields::fields(shape) * d,
                shape.prior_logit,
            ),
            deep: DeepTower::optional(vs, &cfg.embedding, &cfg.mlp, shape),
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
