//! DCN-V2: cross layers with a full weight matrix (`low_rank = 0`) or a
//! low-rank mixture of `experts` (`low_rank = r`), combined with an MLP either
//! in parallel (outputs concatenated) or stacked (the MLP reads the cross
//! network's output).
use tch::nn::{self, Module};
use tch::Tensor;

use super::layers::{head, CrossLayerV2, CrossMixLayer, EmbeddingTable, Mlp};
use super::{deep_input, CtrModel, InputShape, ModelConfig, Structure};

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

impl DcnV2 {
    pub fn new(vs: &nn::Path, cfg: &ModelConfig, shape: InputShape) -> Self {
        let in_dim = shape.deep_dim(cfg);
        let cross = (0..cfg.cross_layers)
            .map(|i| {
                let p = vs / "cross" / i;
                if cfg.low_rank > 0 {
                    Cross::Mix(CrossMixLayer::new(&p, in_dim, cfg.low_rank, cfg.experts))
                } else {
                    Cross::Full(CrossLayerV2::new(&p, in_dim))
                }
            })
            .collect();
        let mlp = Mlp::optional(&(vs / "mlp"), in_dim, cfg);
        let mlp_out = mlp.as_ref().map_or(in_dim, |m| m.out_dim);
        let out_dim = match (cfg.structure, &mlp) {
            (Structure::Parallel, Some(_)) => in_dim + mlp_out,
            _ => mlp_out,
        };
        DcnV2 {
            embedding: EmbeddingTable::for_model(&(vs / "embedding"), cfg, shape),
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
