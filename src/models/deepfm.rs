//! DeepFM: an FM and an MLP sharing one embedding table; their logits add.
use tch::{nn, Tensor};

use super::layers::{fm_interaction, DeepTower, EmbeddingTable, LinearPart};
use super::{CtrModel, InputShape, ModelConfig};

#[derive(Debug)]
pub struct DeepFm {
    linear: LinearPart,
    embedding: EmbeddingTable,
    deep: DeepTower,
}

impl DeepFm {
    pub fn new(vs: &nn::Path, cfg: &ModelConfig, shape: InputShape) -> Self {
        DeepFm {
            linear: LinearPart::for_model(&(vs / "linear"), cfg, shape),
            embedding: EmbeddingTable::for_model(&(vs / "embedding"), cfg, shape),
            deep: DeepTower::for_model(vs, cfg, shape),
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
