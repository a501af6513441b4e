//! xDeepFM: LR, a compressed interaction network over the field vectors
//! (embeddings and embedded dense inputs) and an MLP over the flattened
//! embeddings; their logits add. With `mlp = []` it is LR plus CIN.
use tch::nn::{self, Module};
use tch::Tensor;

use super::layers::{head, Cin, DeepTower, DenseFields, EmbeddingTable, LinearPart};
use super::{CtrModel, InputShape, ModelConfig};

#[derive(Debug)]
pub struct XDeepFm {
    linear: LinearPart,
    embedding: EmbeddingTable,
    dense_fields: DenseFields,
    cin: Cin,
    cin_out: nn::Linear,
    deep: Option<DeepTower>,
}

impl XDeepFm {
    pub fn new(vs: &nn::Path, cfg: &ModelConfig, shape: InputShape) -> Self {
        let cin = Cin::new(&(vs / "cin"), DenseFields::fields(shape), &cfg.cin);
        XDeepFm {
            linear: LinearPart::for_model(&(vs / "linear"), cfg, shape),
            embedding: EmbeddingTable::for_model(&(vs / "embedding"), cfg, shape),
            dense_fields: DenseFields::for_model(&(vs / "dense_fields"), cfg, shape),
            cin_out: head(&(vs / "cin_head"), cin.out_dim, 0.0),
            cin,
            deep: DeepTower::optional(vs, cfg, shape),
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
