//! Wide & Deep: the wide part is LR over the raw categorical values, the deep
//! part an MLP over the concatenated embeddings and dense inputs; their logits add.
use tch::{nn, Tensor};

use super::layers::{DeepTower, EmbeddingTable, LinearPart};
use super::{CtrModel, InputShape, ModelConfig};

#[derive(Debug)]
pub struct WideDeep {
    wide: LinearPart,
    embedding: EmbeddingTable,
    deep: DeepTower,
}

impl WideDeep {
    pub fn new(vs: &nn::Path, cfg: &ModelConfig, shape: InputShape) -> Self {
        WideDeep {
            wide: LinearPart::for_model(&(vs / "linear"), cfg, shape),
            embedding: EmbeddingTable::for_model(&(vs / "embedding"), cfg, shape),
            deep: DeepTower::for_model(vs, cfg, shape),
        }
    }
}

impl CtrModel for WideDeep {
    fn forward_t(&self, ids: &Tensor, dense: &Tensor, train: bool) -> Tensor {
        let emb = self.embedding.forward(ids);
        self.wide.forward(ids, dense) + self.deep.forward_t(&emb, dense, train)
    }
}
