//! Factorization machine: LR plus the pairwise dot products of the fields'
//! embeddings.
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use super::layers::{fm_interaction, EmbeddingTable, LinearPart};
use super::{CtrModel, Embedding, InputShape, ModelSettings};

#[derive(Debug)]
pub struct Fm {
    linear: LinearPart,
    embedding: EmbeddingTable,
}

/// FM's settings: its embeddings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FmConfig {
    #[serde(flatten)]
    pub embedding: Embedding,
}

impl ModelSettings for FmConfig {
    fn check(&self) -> Result<(), String> {
        self.embedding.check()
    }

    fn build(&self, vs: &nn::Path, shape: InputShape) -> Box<dyn CtrModel> {
        Box::new(Fm::new(vs, self, shape))
    }

    fn summary(&self) -> String {
        self.embedding.summary(None)
    }
}

impl Fm {
    pub fn new(vs: &nn::Path, cfg: &FmConfig, shape: InputShape) -> Self {
        Fm {
            linear: LinearPart::for_model(
                &(vs / "linear"),
                cfg.embedding.embedding_init_std,
                shape,
            ),
            embedding: EmbeddingTable::for_model(&(vs / "embedding"), &cfg.embedding, shape),
        }
    }
}

impl CtrModel for Fm {
    fn forward_t(&self, ids: &Tensor, dense: &Tensor, _train: bool) -> Tensor {
        self.linear.forward(ids, dense) + fm_interaction(&self.embedding.forward(ids))
    }
}
