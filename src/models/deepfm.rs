//! DeepFM: an FM and an MLP sharing one embedding table; their logits add.
use tch::nn::{self, Module};
use tch::Tensor;

use super::layers::{fm_interaction, head, EmbeddingTable, LinearPart, Mlp};
use super::{deep_input, CtrModel, InputShape, ModelConfig};

#[derive(Debug)]
pub struct DeepFm {
    linear: LinearPart,
    embedding: EmbeddingTable,
    mlp: Mlp,
    out: nn::Linear,
}

impl DeepFm {
    pub fn new(vs: &nn::Path, cfg: &ModelConfig, shape: InputShape) -> Self {
        let in_dim = shape.num_fields * cfg.embedding_dim + shape.num_dense;
        let mlp = Mlp::new(&(vs / "mlp"), in_dim, &cfg.mlp_config());
        DeepFm {
            linear: LinearPart::new(
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

impl CtrModel for DeepFm {
    fn forward_t(&self, ids: &Tensor, dense: &Tensor, train: bool) -> Tensor {
        let emb = self.embedding.forward(ids);
        let deep = self
            .out
            .forward(&self.mlp.forward_t(&deep_input(&emb, dense), train))
            .squeeze_dim(-1);
        self.linear.forward(ids, dense) + fm_interaction(&emb) + deep
    }
}
