//! FinalMLP: two MLP streams (`mlp` and `mlp2`) over the flattened
//! embeddings, each input first scaled by a learned feature gate of its own,
//! and a multi-head bilinear fusion of the two streams' outputs into one
//! logit: `w1.o1 + w2.o2 + sum_h o1_h^T W_h o2_h + b`.
use serde::{Deserialize, Serialize};
use tch::nn::{self, Init, Module};
use tch::{Kind, Tensor};

use super::layers::{default_mlp, head, EmbeddingTable, Mlp, MlpConfig};
use super::{deep_input, CtrModel, Embedding, InputShape, ModelSettings};

/// Hidden units of each feature gate's MLP (FuxiCTR's default).
const GATE_HIDDEN: i64 = 64;

/// Feature selection without context fields: `2 * sigmoid(MLP(c))` of a
/// learned vector `c`, one weight per input in (0, 2), starting at 1.
#[derive(Debug)]
struct FeatureGate {
    ctx: Tensor,
    mlp: Mlp,
    out: nn::Linear,
}

/// FinalMLP's settings: `mlp` (with `dropout`, `batch_norm`) is the first
/// stream, `mlp2` the second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinalMlpConfig {
    #[serde(flatten)]
    pub embedding: Embedding,
    #[serde(flatten)]
    pub mlp: MlpConfig,
    /// Hidden sizes of the second stream (default [400, 400, 400]).
    #[serde(default = "default_mlp")]
    pub mlp2: Vec<i64>,
    /// Heads of the bilinear fusion (default 10); must divide both streams'
    /// output sizes.
    #[serde(default = "default_fusion_heads")]
    pub fusion_heads: i64,
}

impl ModelSettings for FinalMlpConfig {
    fn check(&self) -> Result<(), String> {
        self.embedding.check()?;
        self.mlp.check()?;
        if self.mlp2.iter().any(|&h| h <= 0) {
            return Err("model.mlp2 sizes must be positive".into());
        }
        let (a, b) = (self.mlp.hidden.last(), self.mlp2.last());
        let (Some(&a), Some(&b)) = (a, b) else {
            return Err("model.mlp and model.mlp2: finalmlp needs both streams".into());
        };
        if self.fusion_heads <= 0 || a % self.fusion_heads != 0 || b % self.fusion_heads != 0 {
            return Err(format!(
                "model.fusion_heads = {} must divide both streams' output sizes ({a} and {b})",
                self.fusion_heads
            ));
        }
        Ok(())
    }

    fn build(&self, vs: &nn::Path, shape: InputShape) -> Box<dyn CtrModel> {
        Box::new(FinalMlp::new(vs, self, shape))
    }

    fn summary(&self) -> String {
        format!(
            "{} mlp2 {:?} heads {}",
            self.embedding.summary(Some(&self.mlp)),
            self.mlp2,
            self.fusion_heads
        )
    }
}

fn default_fusion_heads() -> i64 {
    10
}

impl FeatureGate {
    fn new(vs: &nn::Path, ctx_dim: i64, in_dim: i64) -> Self {
        let mlp = Mlp::new(
            &(vs / "mlp"),
            ctx_dim,
            &MlpConfig {
                hidden: vec![GATE_HIDDEN],
                dropout: 0.0,
                batch_norm: false,
            },
        );
        FeatureGate {
            ctx: vs.zeros("ctx", &[1, ctx_dim]),
            // Zero weights and bias: every gate starts at 2 * sigmoid(0) = 1.
            out: nn::linear(
                vs / "out",
                mlp.out_dim,
                in_dim,
                nn::LinearConfig {
                    ws_init: Init::Const(0.0),
                    bs_init: Some(Init::Const(0.0)),
                    bias: true,
                },
            ),
            mlp,
        }
    }

    /// `[1, in_dim]` weights.
    fn forward(&self) -> Tensor {
        self.out
            .forward(&self.mlp.forward_t(&self.ctx, false))
            .sigmoid()
            * 2.0
    }
}

#[derive(Debug)]
pub struct FinalMlp {
    embedding: EmbeddingTable,
    gates: [FeatureGate; 2],
    streams: [Mlp; 2],
    w1: nn::Linear,
    w2: nn::Linear,
    bilinear: Tensor, // [heads, d1 / heads, d2 / heads]
}

impl FinalMlp {
    pub fn new(vs: &nn::Path, cfg: &FinalMlpConfig, shape: InputShape) -> Self {
        let in_dim = shape.deep_dim(cfg.embedding.embedding_dim);
        let mlp2 = MlpConfig {
            hidden: cfg.mlp2.clone(),
            ..cfg.mlp.clone()
        };
        let s1 = Mlp::new(&(vs / "mlp"), in_dim, &cfg.mlp);
        let s2 = Mlp::new(&(vs / "mlp2"), in_dim, &mlp2);
        let heads = cfg.fusion_heads;
        let (h1, h2) = (s1.out_dim / heads, s2.out_dim / heads);
        let std = (2.0 / (h1 + h2) as f64).sqrt();
        FinalMlp {
            embedding: EmbeddingTable::for_model(&(vs / "embedding"), &cfg.embedding, shape),
            gates: [
                FeatureGate::new(&(vs / "gate1"), cfg.embedding.embedding_dim, in_dim),
                FeatureGate::new(&(vs / "gate2"), cfg.embedding.embedding_dim, in_dim),
            ],
            w1: head(&(vs / "w1"), s1.out_dim, shape.prior_logit),
            w2: head(&(vs / "w2"), s2.out_dim, 0.0),
            bilinear: vs.var(
                "bilinear",
                &[heads, h1, h2],
                Init::Randn {
                    mean: 0.0,
                    stdev: std,
                },
            ),
            streams: [s1, s2],
        }
    }
}

impl CtrModel for FinalMlp {
    fn forward_t(&self, ids: &Tensor, dense: &Tensor, train: bool) -> Tensor {
        let x = deep_input(&self.embedding.forward(ids), dense);
        let o1 = self.streams[0].forward_t(&(&x * self.gates[0].forward()), train);
        let o2 = self.streams[1].forward_t(&(&x * self.gates[1].forward()), train);
        let xy = bilinear(&o1, &o2, &self.bilinear);
        (self.w1.forward(&o1) + self.w2.forward(&o2)).squeeze_dim(-1) + xy
    }
}

/// `sum_h o1_h^T W_h o2_h`, the heads being equal slices of `o1` and `o2`.
///
/// # Shapes
/// `o1 [B, h * d1]`, `o2 [B, h * d2]`, `w [h, d1, d2]` -> `[B]`.
fn bilinear(o1: &Tensor, o2: &Tensor, w: &Tensor) -> Tensor {
    let (h, d1, d2) = (w.size()[0], w.size()[1], w.size()[2]);
    // Heads first, so the map is one batched product per head (not a
    // broadcast, whose backward builds a `[B, h, d1, d2]` gradient):
    // [h, B, d1] x [h, d1, d2] -> [h, B, d2], times [h, B, d2], summed.
    let heads = |o: &Tensor, d: i64| o.view([-1, h, d]).transpose(0, 1);
    (heads(o1, d1).bmm(w) * heads(o2, d2)).sum_dim_intlist(&[0i64, 2][..], false, Kind::Float)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bilinear_fusion_matches_its_formula() {
        tch::manual_seed(3);
        let (b, h, d1, d2) = (3, 2, 3, 4);
        let o1 = Tensor::randn([b, h * d1], (Kind::Float, tch::Device::Cpu));
        let o2 = Tensor::randn([b, h * d2], (Kind::Float, tch::Device::Cpu));
        let w = Tensor::randn([h, d1, d2], (Kind::Float, tch::Device::Cpu));
        let got = bilinear(&o1, &o2, &w);
        for r in 0..b {
            let mut want = 0.0;
            for head in 0..h {
                for i in 0..d1 {
                    for j in 0..d2 {
                        want += o1.double_value(&[r, head * d1 + i])
                            * w.double_value(&[head, i, j])
                            * o2.double_value(&[r, head * d2 + j]);
                    }
                }
            }
            assert!((got.double_value(&[r]) - want).abs() < 1e-4, "row {r}");
        }
    }
}
