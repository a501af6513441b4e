//! Factorization machine: LR plus the pairwise dot products of the fields'
//! embeddings.
use tch::{nn, Tensor};

use super::layers::{fm_interaction, EmbeddingTable, LinearPart};
use super::{CtrModel, InputShape, ModelConfig};

#[derive(Debug)]
pub struct Fm {
    linear: LinearPart,
    embedding: EmbeddingTable,
}

impl Fm {
    pub fn new(vs: &nn::Path, cfg: &ModelConfig, shape: InputShape) -> Self {
        Fm {
            linear: LinearPart::for_model(&(vs / "linear"), cfg, shape),
            embedding: EmbeddingTable::for_model(&(vs / "embedding"), cfg, shape),
        }
    }
}

impl CtrModel for Fm {
    fn forward_t(&self, ids: &Tensor, dense: &Tensor, _train: bool) -> Tensor {
        self.linear.forward(ids, dense) + fm_interaction(&self.embedding.forward(ids))
    }
}
