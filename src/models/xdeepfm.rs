//! xDeepFM: LR, a compressed interaction network over the field vectors
//! (embeddings and embedded dense inputs) and an MLP over the flattened
//! embeddings; their logits add. With `mlp = []` it is LR plus CIN.
use serde::{Deserialize, Serialize};
use tch::nn::{self, Module};
use tch::Tensor;

use super::layers::{head, Cin, DeepTower, DenseFields, EmbeddingTable, LinearPart, MlpConfig};
use super::{CtrModel, Embedding, InputShape, ModelSettings};

#[derive(Debug)]
pub struct XDeepFm {
    linear: LinearPart,
    embedding: EmbeddingTable,
    dense_fields: DenseFields,
    cin: Cin,
    cin_out: nn::Linear,
    deep: Option<DeepTower>,
}

/// xDeepFM's settings (`mlp = []`: no MLP).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct XDeepFmConfig {
    #[serde(flatten)]
    pub embedding: Embedding,
    #[serde(flatten)]
    pub mlp: MlpConfig,
    /// Feature maps of each CIN layer (default [64, 64]).
    #[serde(default = "default_cin")]
    pub cin: Vec<i64>,
}

impl ModelSettings for XDeepFmConfig {
    fn check(&self) -> Result<(), String> {
        self.embedding.check()?;
        self.mlp.check()?;
        if self.cin.is_empty() {
            return Err("model.cin: xdeepfm needs at least one CIN layer".into());
        }
        if self.cin.iter().any(|&h| h <= 0) {
            return Err("model.cin sizes must be positive".into());
        }
        Ok(())
    }

    fn build(&self, vs: &nn::Path, shape: InputShape) -> Box<dyn CtrModel> {
        Box::new(XDeepFm::new(vs, self, shape))
    }

    fn summary(&self) -> String {
        format!(
            "{} cin {:?}",
            self.embedding.summary(Some(&self.mlp)),
            self.cin
        )
    }
}

fn default_cin() -> Vec<i64> {
    vec![64, 64]
}

impl XDeepFm {
    pub fn new(vs: &nn::Path, cfg: &XDeepFmConfig, shape: InputShape) -> Self {
        let cin = Cin::new(&(vs / "cin"), DenseFields::fields(shape), &cfg.cin);
        XDeepFm {
            linear: LinearPart::for_model(
                &(vs / "linear"),
                cfg.embedding.embedding_init_std,
                shape,
            ),
            embedding: EmbeddingTable::for_model(&(vs / "embedding"), &cfg.embedding, shape),
            dense_fields: DenseFields::for_model(&(vs / "dense_fields"), &cfg.embedding, shape),
            cin_out: head(&(vs / "cin_head"), cin.out_dim, 0.0),
            cin,
            deep: DeepTower::optional(vs, &cfg.embedding, &cfg.mlp, shape),
        }
    }
}

impl CtrModel for XDeepFm {
    fn forward_t(&self, ids: &Tensor, dense: &Tensor, train: bool) -> Tensor {
        let emb = self.embedding.forward(ids);
        let fields = self.dense_fields.append(&emb, dense);
        let mut logit = self.linear.forward(ids, dense)
            + self
                .cin_out
                .forward(&self.cin.forward(&fields))
                .squeeze_dim(-1);
        if let Some(deep) = &self.deep {
            logit += deep.forward_t(&emb, dense, train);
        }
        logit
    }
}
