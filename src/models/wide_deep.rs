//! Wide & Deep: the wide part is LR over the raw categorical values, the deep
//! part an MLP over the concatenated embeddings and dense inputs; their logits add.
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use super::layers::{DeepTower, EmbeddingTable, LinearPart, MlpConfig};
use super::{CtrModel, Embedding, InputShape, ModelSettings};

#[derive(Debug)]
pub struct WideDeep {
    wide: LinearPart,
    embedding: EmbeddingTable,
    deep: DeepTower,
}

/// Wide&Deep's settings: embeddings and an MLP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WideDeepConfig {
    #[serde(flatten)]
    pub embedding: Embedding,
    #[serde(flatten)]
    pub mlp: MlpConfig,
}

impl ModelSettings for WideDeepConfig {
    fn check(&self) -> Result<(), String> {
        self.embedding.check()?;
        self.mlp.check()
    }

    fn build(&self, vs: &nn::Path, shape: InputShape) -> Box<dyn CtrModel> {
        Box::new(WideDeep::new(vs, self, shape))
    }

    fn summary(&self) -> String {
        self.embedding.summary(Some(&self.mlp))
    }
}

impl WideDeep {
    pub fn new(vs: &nn::Path, cfg: &WideDeepConfig, shape: InputShape) -> Self {
        WideDeep {
            wide: LinearPart::for_model(&(vs / "linear"), cfg.embedding.embedding_init_std, shape),
            embedding: EmbeddingTable::for_model(&(vs / "embedding"), &cfg.embedding, shape),
            deep: DeepTower::for_model(vs, &cfg.embedding, &cfg.mlp, shape),
        }
    }
}

impl CtrModel for WideDeep {
    fn forward_t(&self, ids: &Tensor, dense: &Tensor, train: bool) -> Tensor {
        let emb = self.embedding.forward(ids);
        self.wide.forward(ids, dense) + self.deep.forward_t(&emb, dense, train)
    }
}
