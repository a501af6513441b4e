//! Deep & Cross Network: `cross_layers` vector cross layers over the
//! embeddings and dense inputs, an MLP beside them, and one linear head over
//! both outputs. With `cross_layers = 0` it is a plain MLP; with an empty
//! `mlp`, a cross network alone.
use serde::{Deserialize, Serialize};
use tch::nn::{self, Module};
use tch::Tensor;

use super::layers::{head, CrossLayer, EmbeddingTable, Mlp, MlpConfig};
use super::{deep_input, CtrModel, Embedding, InputShape, ModelSettings};

#[derive(Debug)]
pub struct Dcn {
    embedding: EmbeddingTable,
    cross: Vec<CrossLayer>,
    mlp: Option<Mlp>,
    out: nn::Linear,
}

/// DCN's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DcnConfig {
    #[serde(flatten)]
    pub embedding: Embedding,
    #[serde(flatten)]
    pub mlp: MlpConfig,
    /// Cross layers (default 3).
    #[serde(default = "default_cross")]
    pub cross_layers: i64,
}

impl ModelSettings for DcnConfig {
    fn check(&self) -> Result<(), String> {
        self.embedding.check()?;
        self.mlp.check()?;
        if self.cross_layers < 0 {
            return Err("model.cross_layers must be >= 0".into());
        }
        Ok(())
    }

    fn build(&self, vs: &nn::Path, shape: InputShape) -> Box<dyn CtrModel> {
        Box::new(Dcn::new(vs, self, shape))
    }

    fn summary(&self) -> String {
        format!(
            "{} cross {}",
            self.embedding.summary(Some(&self.mlp)),
            self.cross_layers
        )
    }
}

fn default_cross() -> i64 {
    3
}

impl Dcn {
    pub fn new(vs: &nn::Path, cfg: &DcnConfig, shape: InputShape) -> Self {
        let in_dim = shape.deep_dim(cfg.embedding.embedding_dim);
        let cross = (0..cfg.cross_layers)
            .map(|i| CrossLayer::new(&(vs / "cross" / i), in_dim))
            .collect::<Vec<_>>();
        let mlp = Mlp::optional(&(vs / "mlp"), in_dim, &cfg.mlp);
        let mut out_dim = mlp.as_ref().map_or(0, |m| m.out_dim);
        if !cross.is_empty() || mlp.is_none() {
            out_dim += in_dim;
        }
        Dcn {
            embedding: EmbeddingTable::for_model(&(vs / "embedding"), &cfg.embedding, shape),
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
