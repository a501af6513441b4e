//! The building blocks every model shares, each once: the embedding table of
//! all categorical fields, the MLP, the cross layers of DCN and DCNv2, and the
//! FM interaction. Shapes: `B` batch, `F` categorical fields, `D` dense
//! inputs, `K` embedding dimension.
use tch::nn::{self, Init, Module, ModuleT};
use tch::{Kind, Tensor};

use serde::{Deserialize, Serialize};

use super::{Embedding, InputShape};

/// One embedding table for all categorical fields (rows are global: each
/// field's offset is already added to its ids), looked up once per batch with
/// a sparse gradient, so the optimizer touches only the rows a batch uses.
#[derive(Debug)]
pub struct EmbeddingTable {
    pub weight: Tensor,
}

impl EmbeddingTable {
    /// `rows x dim`, initialised N(0, std) (FuxiCTR uses std 1e-4).
    pub fn new(vs: &nn::Path, rows: i64, dim: i64, std: f64) -> Self {
        let weight = vs.var(
            "weight",
            &[rows, dim],
            Init::Randn {
                mean: 0.0,
                stdev: std,
            },
        );
        EmbeddingTable { weight }
    }

    /// The model's table: all fields' rows, `embedding_dim` wide.
    pub fn for_model(vs: &nn::Path, cfg: &Embedding, shape: InputShape) -> Self {
        Self::new(
            vs,
            shape.vocab_size,
            cfg.embedding_dim,
            cfg.embedding_init_std,
        )
    }

    /// # Shapes
    /// `ids: i64 [B, F]` -> `[B, F, K]`.
    pub fn forward(&self, ids: &Tensor) -> Tensor {
        Tensor::embedding(&self.weight, ids, -1, false, true)
    }
}

/// The first-order (linear) part of LR, FM and Wide&Deep's wide side: a
/// weight per categorical value, a linear map of the dense inputs, a bias.
#[derive(Debug)]
pub struct LinearPart {
    table: EmbeddingTable,
    dense: Option<nn::Linear>,
    bias: Tensor,
}

impl LinearPart {
    pub fn new(vs: &nn::Path, rows: i64, num_dense: i64, std: f64, bias: f64) -> Self {
        LinearPart {
            table: EmbeddingTable::new(&(vs / "table"), rows, 1, std),
            dense: (num_dense > 0).then(|| {
                nn::linear(
                    vs / "dense",
                    num_dense,
                    1,
                    nn::LinearConfig {
                        bias: false,
                        ..Default::default()
                    },
                )
            }),
            bias: vs.var("bias", &[1], Init::Const(bias)),
        }
    }

    /// The model's linear part (its per-value weights initialised
    /// N(0, `init_std`)), its bias starting at the prior logit.
    pub fn for_model(vs: &nn::Path, init_std: f64, shape: InputShape) -> Self {
        Self::new(
            vs,
            shape.vocab_size,
            shape.num_dense,
            init_std,
            shape.prior_logit,
        )
    }

    /// # Shapes
    /// `ids [B, F]`, `dense [B, D]` -> logits `[B]`.
    pub fn forward(&self, ids: &Tensor, dense: &Tensor) -> Tensor {
        let mut out = self
            .table
            .forward(ids)
            .sum_dim_intlist(&[1i64, 2][..], false, Kind::Float)
            + &self.bias;
        if let Some(d) = &self.dense {
            out += d.forward(dense).squeeze_dim(-1);
        }
        out
    }
}

/// FM's pairwise interaction `sum_{i<j} <e_i, e_j>`, computed as
/// `0.5 * ((sum_i e_i)^2 - sum_i e_i^2)` summed over the embedding dimension.
///
/// # Shapes
/// `emb [B, F, K]` -> `[B]`.
pub fn fm_interaction(emb: &Tensor) -> Tensor {
    let sum = emb.sum_dim_intlist(&[1i64][..], false, Kind::Float);
    let sum_sq = (emb * emb).sum_dim_intlist(&[1i64][..], false, Kind::Float);
    ((&sum * &sum) - sum_sq).sum_dim_intlist(&[1i64][..], false, Kind::Float) * 0.5
}

/// Settings of an MLP: in a model's `[model]` section, `mlp`, `dropout`
/// and `batch_norm`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MlpConfig {
    /// Hidden sizes (default [400, 400, 400]); `[]` drops the MLP where the
    /// model has it as an option.
    #[serde(rename = "mlp", default = "default_mlp")]
    pub hidden: Vec<i64>,
    /// Dropout after each hidden layer (default 0).
    #[serde(default)]
    pub dropout: f64,
    /// Batch norm after each hidden linear layer (default false).
    #[serde(default)]
    pub batch_norm: bool,
}

pub(crate) fn default_mlp() -> Vec<i64> {
    vec![400, 400, 400]
}

impl MlpConfig {
    pub fn check(&self) -> Result<(), String> {
        if self.hidden.iter().any(|&h| h <= 0) {
            return Err("model.mlp sizes must be positive".into());
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err("model.dropout must be in [0, 1)".into());
        }
        Ok(())
    }
}

/// Linear, optional batch norm, ReLU, optional dropout; repeated.
#[derive(Debug)]
pub struct Mlp {
    layers: Vec<(nn::Linear, Option<nn::BatchNorm>)>,
    dropout: f64,
    pub out_dim: i64,
}

impl Mlp {
    pub fn new(vs: &nn::Path, in_dim: i64, cfg: &MlpConfig) -> Self {
        let mut layers = Vec::new();
        let mut d = in_dim;
        for (i, &h) in cfg.hidden.iter().enumerate() {
            let lin = nn::linear(vs / i / "linear", d, h, Default::default());
            let bn = cfg
                .batch_norm
                .then(|| nn::batch_norm1d(vs / i / "bn", h, Default::default()));
            layers.push((lin, bn));
            d = h;
        }
        Mlp {
            layers,
            dropout: cfg.dropout,
            out_dim: d,
        }
    }

    /// The model's MLP, or none when `mlp = []`.
    pub fn optional(vs: &nn::Path, in_dim: i64, cfg: &MlpConfig) -> Option<Self> {
        (!cfg.hidden.is_empty()).then(|| Self::new(vs, in_dim, cfg))
    }

    /// # Shapes
    /// `[B, in]` -> `[B, out_dim]` (the input itself when there are no layers).
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut x = x.shallow_clone();
        for (lin, bn) in &self.layers {
            x = lin.forward(&x);
            if let Some(bn) = bn {
                x = bn.forward_t(&x, train);
            }
            x = x.relu();
            if self.dropout > 0.0 {
                x = x.dropout(self.dropout, train);
            }
        }
        x
    }
}

/// The deep side of Wide&Deep, DeepFM, xDeepFM and AutoInt+: an MLP over the
/// flattened embeddings and dense inputs, then a linear map to one logit.
#[derive(Debug)]
pub struct DeepTower {
    mlp: Mlp,
    out: nn::Linear,
}

impl DeepTower {
    pub fn for_model(
        vs: &nn::Path,
        embedding: &Embedding,
        cfg: &MlpConfig,
        shape: InputShape,
    ) -> Self {
        let in_dim = shape.deep_dim(embedding.embedding_dim);
        let mlp = Mlp::new(&(vs / "mlp"), in_dim, cfg);
        DeepTower {
            out: head(&(vs / "head"), mlp.out_dim, 0.0),
            mlp,
        }
    }

    /// The model's deep tower, or none when `mlp = []` (xDeepFM and AutoInt,
    /// where the MLP is optional).
    pub fn optional(
        vs: &nn::Path,
        embedding: &Embedding,
        cfg: &MlpConfig,
        shape: InputShape,
    ) -> Option<Self> {
        (!cfg.hidden.is_empty()).then(|| Self::for_model(vs, embedding, cfg, shape))
    }

    /// # Shapes
    /// `emb [B, F, K]`, `dense [B, D]` -> logits `[B]`.
    pub fn forward_t(&self, emb: &Tensor, dense: &Tensor, train: bool) -> Tensor {
        self.out
            .forward(&self.mlp.forward_t(&super::deep_input(emb, dense), train))
            .squeeze_dim(-1)
    }
}

/// DCN's cross layer: `x_{l+1} = x_0 * (x_l . w) + b + x_l`.
#[derive(Debug)]
pub struct CrossLayer {
    w: Tensor,
    b: Tensor,
}

impl CrossLayer {
    pub fn new(vs: &nn::Path, dim: i64) -> Self {
        let bound = (1.0 / dim as f64).sqrt();
        CrossLayer {
            w: vs.var(
                "w",
                &[dim, 1],
                Init::Uniform {
                    lo: -bound,
                    up: bound,
                },
            ),
            b: vs.zeros("b", &[dim]),
        }
    }

    /// # Shapes
    /// `x0, xl [B, d]` -> `[B, d]`.
    pub fn forward(&self, x0: &Tensor, xl: &Tensor) -> Tensor {
        x0 * xl.matmul(&self.w) + &self.b + xl
    }
}

/// DCNv2's full-rank cross layer: `x_{l+1} = x_0 * (W x_l + b) + x_l`.
#[derive(Debug)]
pub struct CrossLayerV2 {
    lin: nn::Linear,
}

impl CrossLayerV2 {
    pub fn new(vs: &nn::Path, dim: i64) -> Self {
        CrossLayerV2 {
            lin: nn::linear(vs, dim, dim, Default::default()),
        }
    }

    pub fn forward(&self, x0: &Tensor, xl: &Tensor) -> Tensor {
        x0 * self.lin.forward(xl) + xl
    }
}

/// DCNv2's low-rank mixture of experts (DCN-Mix): expert `i` maps `x_l` through
/// `U_i tanh(C_i tanh(V_i^T x_l))`, gated by a softmax over experts:
/// `x_{l+1} = sum_i g_i(x_l) * (x_0 * (expert_i(x_l) + b)) + x_l`.
#[derive(Debug)]
pub struct CrossMixLayer {
    u: Tensor, // [E, d, r]
    v: Tensor, // [E, d, r]
    c: Tensor, // [E, r, r]
    b: Tensor, // [d]
    gate: nn::Linear,
}

impl CrossMixLayer {
    pub fn new(vs: &nn::Path, dim: i64, rank: i64, experts: i64) -> Self {
        let xavier = |fan_in: i64, fan_out: i64| {
            let bound = (6.0 / (fan_in + fan_out) as f64).sqrt();
            Init::Uniform {
                lo: -bound,
                up: bound,
            }
        };
        CrossMixLayer {
            u: vs.var("u", &[experts, dim, rank], xavier(dim, rank)),
            v: vs.var("v", &[experts, dim, rank], xavier(dim, rank)),
            c: vs.var("c", &[experts, rank, rank], xavier(rank, rank)),
            b: vs.zeros("b", &[dim]),
            gate: nn::linear(vs / "gate", dim, experts, Default::default()),
        }
    }

    pub fn forward(&self, x0: &Tensor, xl: &Tensor) -> Tensor {
        // [B, d] -> [E, B, d] broadcast over experts.
        let h = xl.unsqueeze(0).matmul(&self.v).tanh(); // [E, B, r]
        let h = h.matmul(&self.c).tanh(); // [E, B, r]
        let h = h.matmul(&self.u.transpose(1, 2)); // [E, B, d]
        let experts = x0.unsqueeze(0) * (h + &self.b); // [E, B, d]
        let g = self.gate.forward(xl).softmax(-1, Kind::Float); // [B, E]
        let mixed = (experts.permute([1, 0, 2]) * g.unsqueeze(-1)).sum_dim_intlist(
            &[1i64][..],
            false,
            Kind::Float,
        );
        mixed + xl
    }
}

/// Dense inputs as fields for the models that work on field vectors (CIN,
/// self-attention): input `d` becomes `x_d * v_d`, a learned `K`-vector
/// scaled by the value (AutoInt's numeric embedding).
#[derive(Debug)]
pub struct DenseFields {
    v: Option<Tensor>,
}

impl DenseFields {
    pub fn for_model(vs: &nn::Path, cfg: &Embedding, shape: InputShape) -> Self {
        DenseFields {
            v: (shape.num_dense > 0).then(|| {
                vs.var(
                    "v",
                    &[shape.num_dense, cfg.embedding_dim],
                    Init::Randn {
                        mean: 0.0,
                        stdev: cfg.embedding_init_std,
                    },
                )
            }),
        }
    }

    /// The number of field vectors [`DenseFields::append`] gives.
    pub fn fields(shape: InputShape) -> i64 {
        shape.num_fields + shape.num_dense
    }

    /// # Shapes
    /// `emb [B, F, K]`, `dense [B, D]` -> `[B, F + D, K]`.
    pub fn append(&self, emb: &Tensor, dense: &Tensor) -> Tensor {
        match &self.v {
            None => emb.shallow_clone(),
            Some(v) => Tensor::cat(&[emb.shallow_clone(), dense.unsqueeze(-1) * v], 1),
        }
    }
}

/// xDeepFM's compressed interaction network. Layer `k` takes the outer
/// product of its input's `H_{k-1}` feature maps with the `m` fields, per
/// embedding dimension, and compresses the `H_{k-1} * m` products to `H_k`
/// maps (a 1x1 convolution, no activation: the paper's and FuxiCTR's
/// choice); each layer's maps are summed over the embedding dimension, and
/// the sums of all layers are the output.
#[derive(Debug)]
pub struct Cin {
    layers: Vec<(Tensor, Tensor)>, // ([H_k, H_{k-1} * m], [H_k])
    pub out_dim: i64,
}

impl Cin {
    pub fn new(vs: &nn::Path, fields: i64, maps: &[i64]) -> Self {
        let mut layers = Vec::new();
        let mut prev = fields;
        for (i, &h) in maps.iter().enumerate() {
            let fan_in = prev * fields;
            let bound = (1.0 / fan_in as f64).sqrt();
            let w = vs.var(
                &format!("w{i}"),
                &[h, fan_in],
                Init::Uniform {
                    lo: -bound,
                    up: bound,
                },
            );
            layers.push((w, vs.zeros(&format!("b{i}"), &[h])));
            prev = h;
        }
        Cin {
            layers,
            out_dim: maps.iter().sum(),
        }
    }

    /// # Shapes
    /// `x0 [B, m, K]` -> `[B, sum_k H_k]`.
    pub fn forward(&self, x0: &Tensor) -> Tensor {
        // Embedding dimension second, so each compression is one 2-D matrix
        // product over `B * K` rows (a broadcast batched product's backward
        // would build a `[B, H_k, H * m]` gradient per step).
        let x0 = x0.transpose(1, 2).contiguous(); // [B, K, m]
        let (k, m) = (x0.size()[1], x0.size()[2]);
        let mut x = x0.shallow_clone();
        let mut pooled = Vec::with_capacity(self.layers.len());
        for (w, b) in &self.layers {
            let h = x.size()[2];
            // [B, K, H, 1] * [B, K, 1, m] -> [B * K, H * m]
            let z = (x.unsqueeze(3) * x0.unsqueeze(2)).view([-1, h * m]);
            x = (z.matmul(&w.tr()) + b).view([-1, k, w.size()[0]]); // [B, K, H_k]
            pooled.push(x.sum_dim_intlist(&[1i64][..], false, Kind::Float));
        }
        Tensor::cat(&pooled, 1)
    }
}

/// AutoInt's interacting layer: multi-head scaled dot-product self-attention
/// over the field vectors, with a residual projection and a ReLU.
#[derive(Debug)]
pub struct SelfAttention {
    q: nn::Linear,
    k: nn::Linear,
    v: nn::Linear,
    residual: nn::Linear,
    heads: i64,
    head_dim: i64,
}

impl SelfAttention {
    pub fn new(vs: &nn::Path, in_dim: i64, heads: i64, head_dim: i64) -> Self {
        let no_bias = nn::LinearConfig {
            bias: false,
            ..Default::default()
        };
        let lin = |name: &str| nn::linear(vs / name, in_dim, heads * head_dim, no_bias);
        SelfAttention {
            q: lin("q"),
            k: lin("k"),
            v: lin("v"),
            residual: lin("residual"),
            heads,
            head_dim,
        }
    }

    /// The width of each field's output vector.
    pub fn out_dim(&self) -> i64 {
        self.heads * self.head_dim
    }

    /// # Shapes
    /// `x [B, m, d]` -> `[B, m, heads * head_dim]`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let m = x.size()[1];
        let split = |t: Tensor| t.view([-1, m, self.heads, self.head_dim]).transpose(1, 2);
        let (q, k, v) = (
            split(self.q.forward(x)),
            split(self.k.forward(x)),
            split(self.v.forward(x)),
        ); // [B, H, m, d_h]
        let scores = q.matmul(&k.transpose(2, 3)) / (self.head_dim as f64).sqrt();
        let att = scores.softmax(-1, Kind::Float).matmul(&v); // [B, H, m, d_h]
        let out = att
            .transpose(1, 2)
            .contiguous()
            .view([-1, m, self.out_dim()]);
        (out + self.residual.forward(x)).relu()
    }
}

/// A linear map to one logit, its bias starting at `bias`.
pub fn head(vs: &nn::Path, in_dim: i64, bias: f64) -> nn::Linear {
    let bound = 1.0 / (in_dim.max(1) as f64).sqrt();
    nn::linear(
        vs,
        in_dim,
        1,
        nn::LinearConfig {
            ws_init: Init::Uniform {
                lo: -bound,
                up: bound,
            },
            bs_init: Some(Init::Const(bias)),
            bias: true,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fm_interaction_is_the_pairwise_sum() {
        let emb = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).view([1, 3, 2]);
        // <e0,e1> + <e0,e2> + <e1,e2> = (3+8) + (5+12) + (15+24) = 67
        let got = fm_interaction(&emb).double_value(&[0]);
        assert!((got - 67.0).abs() < 1e-6, "{got}");
    }

    #[test]
    fn cin_layer_matches_its_formula() {
        // One layer of one map over m = 2 fields, K = 2:
        // x1 = sum_k sum_{h,j} w[h*m + j] * x0[h][k] * x0[j][k] + b (b = 0).
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let cin = Cin::new(&vs.root(), 2, &[1]);
        let x0 = Tensor::from_slice(&[1.0f32, 2.0, -1.0, 3.0]).view([1, 2, 2]);
        let got = cin.forward(&x0);
        assert_eq!(got.size(), [1, 1]);
        let w: Vec<f32> = Vec::try_from(cin.layers[0].0.view([-1])).unwrap();
        let x = [[1.0f32, 2.0], [-1.0, 3.0]];
        let want: f32 = (0..2)
            .map(|k| {
                let mut s = 0.0;
                for h in 0..2 {
                    for j in 0..2 {
                        s += w[h * 2 + j] * x[h][k] * x[j][k];
                    }
                }
                s
            })
            .sum();
        assert!((got.double_value(&[0, 0]) - want as f64).abs() < 1e-5);
    }

    #[test]
    fn self_attention_mixes_fields_and_keeps_shapes() {
        tch::manual_seed(7);
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let layer = SelfAttention::new(&vs.root(), 4, 2, 3);
        let x = Tensor::randn([5, 7, 4], (Kind::Float, tch::Device::Cpu));
        let y = layer.forward(&x);
        assert_eq!(y.size(), [5, 7, 6]);
        // Changing field 0 changes every field's output through attention.
        let x2 = x.copy();
        let _ = x2.get(0).get(0).fill_(5.0);
        let y2 = layer.forward(&x2);
        let moved = (y2.get(0).get(3) - y.get(0).get(3)).abs().sum(Kind::Float);
        assert!(moved.double_value(&[]) > 0.0);
        // Other rows of the batch are untouched.
        let same = (y2.get(1) - y.get(1)).abs().sum(Kind::Float);
        assert_eq!(same.double_value(&[]), 0.0);
    }

    #[test]
    fn cross_layer_matches_its_formula() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let layer = CrossLayer::new(&vs.root(), 3);
        let x0 = Tensor::from_slice(&[1.0f32, 2.0, 3.0]).view([1, 3]);
        let xl = Tensor::from_slice(&[0.5f32, -1.0, 2.0]).view([1, 3]);
        let got = layer.forward(&x0, &xl);
        let w: Vec<f32> = Vec::try_from(layer.w.view([-1])).unwrap();
        let dot = 0.5 * w[0] - w[1] + 2.0 * w[2];
        let want = [1.0 * dot + 0.5, 2.0 * dot - 1.0, 3.0 * dot + 2.0];
        for (i, w) in want.iter().enumerate() {
            assert!((got.double_value(&[0, i as i64]) - *w as f64).abs() < 1e-5);
        }
    }
}
