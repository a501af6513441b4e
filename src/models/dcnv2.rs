//! DCN-V2: cross layers with a full weight matrix (`low_rank = 0`) or a
//! low-rank mixture of `experts` (`low_rank = r`), combined with an MLP either
//! in parallel (outputs concatenated) or stacked (the MLP reads the cross
//! network's output).
use serde::{Deserialize, Serialize};
use tch::nn::{self, Module};
use tch::Tensor;

use super::dcn::DcnConfig;
use super::layers::{head, CrossLayerV2, CrossMixLayer, EmbeddingTable, Mlp};
use super::{deep_input, CtrModel, InputShape, ModelSettings};

#[derive(Debug)]
enum Cross {
    Full(CrossLayerV2),
    Mix(CrossMixLayer),
}

#[derive(Debug)]
pub struct DcnV2 {
    embedding: EmbeddingTable,
    cross: Vec<Cross>,
    mlp: Option<Mlp>,
    structure: Structure,
    out: nn::Linear,
}

/// DCNv2's arrangement of cross network and MLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Structure {
    /// Cross network and MLP side by side, outputs concatenated.
    #[default]
    Parallel,
    /// The MLP on top of the cross network.
    Stacked,
}

/// DCNv2's settings: DCN's, and how its cross layers are made and placed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DcnV2Config {
    #[serde(flatten)]
    pub dcn: DcnConfig,
    /// 0 (default) for full-rank cross layers, else the rank of the
    /// low-rank mixture.
    #[serde(default)]
    pub low_rank: i64,
    /// Low rank: the number of experts (default 4).
    #[serde(default = "default_experts")]
    pub experts: i64,
    /// `parallel` (default) or `stacked`.
    #[serde(default)]
    pub structure: Structure,
}

impl ModelSettings for DcnV2Config {
    fn check(&self) -> Result<(), String> {
        self.dcn.check()?;
        if self.low_rank < 0 || self.experts <= 0 {
            return Err("model.low_rank must be >= 0, experts > 0".into());
        }
        Ok(())
    }

    fn build(&self, vs: &nn::Path, shape: InputShape) -> Box<dyn CtrModel> {
        Box::new(DcnV2::new(vs, self, shape))
    }

    /// `dim 16 mlp [..] cross 3 parallel`, and `rank 64x4` for a low-rank
    /// mixture.
    fn summary(&self) -> String {
        let mut s = self.dcn.summary();
        s += &format!(" {:?}", self.structure).to_lowercase();
        if self.low_rank > 0 {
            s += &format!(" rank {}x{}", self.low_rank, self.experts);
        }
        s
    }
}

fn default_experts() -> i64 {
    4
}

impl DcnV2 {
    pub fn new(vs: &nn::Path, cfg: &DcnV2Config, shape: InputShape) -> Self {
        let in_dim = shape.deep_dim(cfg.dcn.embedding.embedding_dim);
        let cross = (0..cfg.dcn.cross_layers)
            .map(|i| {
                let p = vs / "cross" / i;
                if cfg.low_rank > 0 {
                    Cross::Mix(CrossMixLayer::new(&p, in_dim, cfg.low_rank, cfg.experts))
                } else {
                    Cross::Full(CrossLayerV2::new(&p, in_dim))
                }
            })
            .collect();
        let mlp = Mlp::optional(&(vs / "mlp"), in_dim, &cfg.dcn.mlp);
        let mlp_out = mlp.as_ref().map_or(in_dim, |m| m.out_dim);
        let out_dim = match (cfg.structure, &mlp) {
            (Structure::Parallel, Some(_)) => in_dim + mlp_out,
            _ => mlp_out,
        };
        DcnV2 {
            embedding: EmbeddingTable::for_model(&(vs / "embedding"), &cfg.dcn.embedding, shape),
            cross,
            mlp,
            structure: cfg.structure,
            out: head(&(vs / "head"), out_dim, shape.prior_logit),
        }
    }
}

impl CtrModel for DcnV2 {
    fn forward_t(&self, ids: &Tensor, dense: &Tensor, train: bool) -> Tensor {
        let x0 = deep_input(&self.embedding.forward(ids), dense);
        let mut x = x0.shallow_clone();
        for layer in &self.cross {
            x = match layer {
                Cross::Full(l) => l.forward(&x0, &x),
                Cross::Mix(l) => l.forward(&x0, &x),
            };
        }
        let h = match (&self.mlp, self.structure) {
            (None, _) => x,
            (Some(mlp), Structure::Stacked) => mlp.forward_t(&x, train),
            (Some(mlp), Structure::Parallel) => Tensor::cat(&[x, mlp.forward_t(&x0, train)], 1),
        };
        self.out.forward(&h).squeeze_dim(-1)
    }
}
