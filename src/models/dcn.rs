//! Deep & Cross Network: `cross_layers` vector cross layers over the
//! embeddings and dense inputs, an MLP beside them, and one linear head over
//! both outputs. With `cross_layers = 0` it is a plain MLP; with an empty
//! `mlp`, a cross network alone.
use tch::nn::{self, Module};
use tch::Tensor;

use super::layers::{head, CrossLayer, EmbeddingTable, Mlp};
use super::{deep_input, CtrModel, InputShape, ModelConfig};

#[derive(Debug)]
pub struct Dcn {
    embedding: EmbeddingTable,
    cross: Vec<CrossLayer>,
    mlp: Option<Mlp>,
    out: nn::Linear,
}

impl Dcn {
    pub fn new(vs: &nn::Path, cfg: &ModelConfig, shape: InputShape) -> Self {
        let in_dim = shape.deep_dim(cfg);
        let cross = (0..cfg.cross_layers)
            .map(|i| CrossLayer::new(&(vs / "cross" / i), in_dim))
            .collect::<Vec<_>>();
        let mlp = Mlp::optional(&(vs / "mlp"), in_dim, cfg);
        let mut out_dim = mlp.as_ref().map_or(0, |m| m.out_dim);
        if !cross.is_empty() || mlp.is_none() {
            out_dim += in_dim;
        }
        Dcn {
            embedding: EmbeddingTable::for_model(&(vs / "embedding"), cfg, shape),
            cross,
            mlp,
            out: head(&(vs / "head"), out_dim, shape.prior_logit),
        }
    }
}

impl CtrModel for Dcn {
    fn forward_t(&self, ids: &Tensor, dense: &Tensor, train: bool) -> Tensor {
        let x0 = deep_input(&self.embedding.forward(ids), dense);
        let mut parts = Vec::new();
        if !self.cross.is_empty() || self.mlp.is_none() {
            let mut x = x0.shallow_clone();
            for layer in &self.cross {
                x = layer.forward(&x0, &x);
            }
            parts.push(x);
        }
        if let Some(mlp) = &self.mlp {
            parts.push(mlp.forward_t(&x0, train));
        }
        self.out.forward(&Tensor::cat(&parts, 1)).squeeze_dim(-1)
    }
}
