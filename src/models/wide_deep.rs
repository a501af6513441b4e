//! Wide & Deep: the wide part is LR over the raw categorical values, the deep
//! part an MLP over the concatenated embeddings and dense inputs; their logits add.
use tch::nn::{self, Module};
use tch::Tensor;

use super::layers::{head, EmbeddingTable, LinearPart, Mlp};
use super::{deep_input, CtrModel, InputShape, ModelConfig};

#[derive(Debug)]
pub struct WideDeep {
    wide: LinearPart,
    embedding: EmbeddingTable,
    mlp: Mlp,
    out: nn::Linear,
}

impl WideDeep {
    pub fn new(vs: &nn::Path, cfg: &ModelConfig, shape: InputShape) -> Self {
        let in_dim = shape.num_fields * cfg.embedding_dim + shape.num_dense;
        let mlp = Mlp::new(&(vs / "mlp"), in_dim, &cfg.mlp_config());
        WideDeep {
            wide: LinearPart::new(
                &(vs / "linear"),
                shape.vocab_size,
                shape.num_dense,
                cfg.embedding_init_std,
                shape.prior_logit,
            ),
            embedding: EmbeddingTable::new(
                &(vs / "embedding"),
                shape.vocab_size,
                cfg.embedding_dim,
                cfg.embedding_init_std,
            ),
            out: head(&(vs / "head"), mlp.out_dim, 0.0),
            mlp,
        }
    }
}

impl CtrModel for WideDeep {
    fn forward_t(&self, ids: &Tensor, dense: &Tensor, train: bool) -> Tensor {
        let emb = self.embedding.forward(ids);
        let deep = self
            .out
            .forward(&self.mlp.forward_t(&deep_input(&emb, dense), train))
            .squeeze_dim(-1);
        self.wide.forward(ids, dense) + deep
    }
}
