//! DeepFM: an FM and an MLP sharing one embedding table; their logits add.
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use super::layers::{fm_interaction, DeepTower, EmbeddingTable, LinearPart, MlpConfig};
use super::{CtrModel, Embedding, InputShape, ModelSettings};

#[derive(Debug)]
pub struct DeepFm {
    linear: LinearPart,
    embedding: EmbeddingTable,
    deep: DeepTower,
}

/// DeepFM's settings: embeddings and an MLP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeepFmConfig {
    #[serde(flatten)]
    pub embedding: Embedding,
    #[serde(flatten)]
    pub mlp: MlpConfig,
}

impl ModelSettings for DeepFmConfig {
    fn check(&self) -> Result<(), String> {
        self.embedding.check()?;
        self.mlp.check()
    }

    fn build(&self, vs: &nn::Path, shape: InputShape) -> Box<dyn CtrModel> {
        Box::new(DeepFm::new(vs, self, shape))
    }

    fn summary(&self) -> String {
        self.embedding.summary(Some(&self.mlp))
    }
}

impl DeepFm {
    pub fn new(vs: &nn::Path, cfg: &DeepFmConfig, shape: InputShape) -> Self {
        DeepFm {
            linear: LinearPart::for_model(
                &(vs / "linear"),
                cfg.embedding.embedding_init_std,
                shape,
            ),
            embedding: EmbeddingTable::for_model(&(vs / "embedding"), &cfg.embedding, shape),
            deep: DeepTower::for_model(vs, &cfg.embedding, &cfg.mlp, shape),
        }
    }
}

impl CtrModel for DeepFm {
    fn forward_t(&self, ids: &Tensor, dense: &Tensor, train: bool) -> Tensor {
        let emb = self.embedding.forward(ids);
        self.linear.forward(ids, dense)
            + fm_interaction(&emb)
            + self.deep.forward_t(&emb, dense, train)
    }
}
