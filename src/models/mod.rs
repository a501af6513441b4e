//! The model zoo: one file a model, all built from [`layers`]. Every model maps
//! `ids: i64 [B, F]` (global rows of one shared embedding table) and
//! `dense: f32 [B, D]` to click logits `[B]`; the sigmoid is applied by the
//! trainer's loss and by the exported module.
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

pub mod autoint;
pub mod dcn;
pub mod dcnv2;
pub mod deepfm;
pub mod finalmlp;
pub mod fm;
pub mod layers;
pub mod lr;
pub mod wide_deep;
pub mod xdeepfm;

/// Which model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Logistic regression on one-hot categorical values and the dense inputs.
    Lr,
    /// Factorization machine (Rendle 2010).
    Fm,
    /// Wide & Deep (Cheng et al. 2016): LR plus an MLP over embeddings.
    WideDeep,
    /// DeepFM (Guo et al. 2017): FM plus an MLP sharing its embeddings.
    Deepfm,
    /// Deep & Cross Network (Wang et al. 2017): cross network beside an MLP.
    Dcn,
    /// DCN-V2 (Wang et al. 2021): matrix cross layers, full-rank or a
    /// low-rank mixture of experts, parallel to or stacked with an MLP.
    Dcnv2,
    /// xDeepFM (Lian et al. 2018): LR, a compressed interaction network and
    /// an MLP, their logits added.
    Xdeepfm,
    /// AutoInt (Song et al. 2019): multi-head self-attention over the field
    /// embeddings; AutoInt+ with an MLP beside it.
    Autoint,
    /// FinalMLP (Mao et al. 2023): two MLP streams over gated embeddings,
    /// fused by a multi-head bilinear layer.
    Finalmlp,
}

impl ModelKind {
    /// Every model, in the order of the docs.
    pub const ALL: [ModelKind; 9] = [
        ModelKind::Lr,
        ModelKind::Fm,
        ModelKind::WideDeep,
        ModelKind::Deepfm,
        ModelKind::Dcn,
        ModelKind::Dcnv2,
        ModelKind::Xdeepfm,
        ModelKind::Autoint,
        ModelKind::Finalmlp,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Lr => "lr",
            ModelKind::Fm => "fm",
            ModelKind::WideDeep => "wide_deep",
            ModelKind::Deepfm => "deepfm",
            ModelKind::Dcn => "dcn",
            ModelKind::Dcnv2 => "dcnv2",
            ModelKind::Xdeepfm => "xdeepfm",
            ModelKind::Autoint => "autoint",
            ModelKind::Finalmlp => "finalmlp",
        }
    }
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

/// The `[model]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub kind: ModelKind,
    /// Embedding dimension of every field (default 16).
    #[serde(default = "default_dim")]
    pub embedding_dim: i64,
    /// Standard deviation of the embedding initialisation (default 1e-4).
    #[serde(default = "default_init_std")]
    pub embedding_init_std: f64,
    /// Hidden sizes of the MLP (default [400, 400, 400]); Wide&Deep, DeepFM, DCN, DCNv2.
    #[serde(default = "default_mlp")]
    pub mlp: Vec<i64>,
    /// Dropout after each hidden layer (default 0).
    #[serde(default)]
    pub dropout: f64,
    /// Batch norm after each hidden linear layer (default false).
    #[serde(default)]
    pub batch_norm: bool,
    /// Cross layers of DCN and DCNv2 (default 3).
    #[serde(default = "default_cross")]
    pub cross_layers: i64,
    /// DCNv2: 0 (default) for full-rank cross layers, else the rank of the
    /// low-rank mixture.
    #[serde(default)]
    pub low_rank: i64,
    /// DCNv2 low-rank: number of experts (default 4).
    #[serde(default = "default_experts")]
    pub experts: i64,
    /// DCNv2: `parallel` (default) or `stacked`.
    #[serde(default)]
    pub structure: Structure,
    /// xDeepFM: feature maps of each CIN layer (default [64, 64]).
    #[serde(default = "default_cin")]
    pub cin: Vec<i64>,
    /// AutoInt: self-attention layers (default 3).
    #[serde(default = "default_attention_layers")]
    pub attention_layers: i64,
    /// AutoInt: heads of each attention layer (default 2).
    #[serde(default = "default_attention_heads")]
    pub attention_heads: i64,
    /// AutoInt: width of each head (default 32).
    #[serde(default = "default_attention_dim")]
    pub attention_dim: i64,
    /// FinalMLP: hidden sizes of the second stream (default [400, 400, 400]);
    /// the first is `mlp`.
    #[serde(default = "default_mlp")]
    pub mlp2: Vec<i64>,
    /// FinalMLP: heads of the bilinear fusion (default 10); must divide both
    /// streams' output sizes.
    #[serde(default = "default_fusion_heads")]
    pub fusion_heads: i64,
}

fn default_dim() -> i64 {
    16
}
fn default_init_std() -> f64 {
    1e-4
}
fn default_mlp() -> Vec<i64> {
    vec![400, 400, 400]
}
fn default_cross() -> i64 {
    3
}
fn default_experts() -> i64 {
    4
}
fn default_cin() -> Vec<i64> {
    vec![64, 64]
}
fn default_attention_layers() -> i64 {
    3
}
fn default_attention_heads() -> i64 {
    2
}
fn default_attention_dim() -> i64 {
    32
}
fn default_fusion_heads() -> i64 {
    10
}

impl ModelConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.embedding_dim <= 0 {
            return Err("model.embedding_dim must be positive".into());
        }
        if self.mlp.iter().any(|&h| h <= 0) {
            return Err("model.mlp sizes must be positive".into());
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err("model.dropout must be in [0, 1)".into());
        }
        if self.cross_layers < 0 || self.low_rank < 0 || self.experts <= 0 {
            return Err("model.cross_layers and low_rank must be >= 0, experts > 0".into());
        }
        if self.embedding_init_std.is_nan() || self.embedding_init_std <= 0.0 {
            return Err("model.embedding_init_std must be positive".into());
        }
        if self.cin.iter().chain(&self.mlp2).any(|&h| h <= 0) {
            return Err("model.cin and model.mlp2 sizes must be positive".into());
        }
        if self.attention_layers < 0 || self.attention_heads <= 0 || self.attention_dim <= 0 {
            return Err(
                "model.attention_layers must be >= 0, attention_heads and attention_dim > 0".into(),
            );
        }
        if self.kind == ModelKind::Xdeepfm && self.cin.is_empty() {
            return Err("model.cin: xdeepfm needs at least one CIN layer".into());
        }
        if self.kind == ModelKind::Finalmlp {
            let (a, b) = (self.mlp.last(), self.mlp2.last());
            let (Some(&a), Some(&b)) = (a, b) else {
                return Err("model.mlp and model.mlp2: finalmlp needs both streams".into());
            };
            if self.fusion_heads <= 0 || a % self.fusion_heads != 0 || b % self.fusion_heads != 0 {
                return Err(format!(
                    "model.fusion_heads = {} must divide both streams' output sizes ({a} and {b})",
                    self.fusion_heads
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn mlp_config(&self) -> layers::MlpConfig {
        layers::MlpConfig {
            hidden: self.mlp.clone(),
            dropout: self.dropout,
            batch_norm: self.batch_norm,
        }
    }
}

/// The input sizes a model is built for.
#[derive(Debug, Clone, Copy)]
pub struct InputShape {
    /// Rows of the shared embedding table.
    pub vocab_size: i64,
    pub num_fields: i64,
    pub num_dense: i64,
    /// The logit of the train click rate: the initial output bias, so
    /// training starts from the base rate instead of spending its first
    /// thousands of steps moving a bias from 0 (p = 0.5) to about -3.5.
    pub prior_logit: f64,
}

impl InputShape {
    /// The width of [`deep_input`]: the flattened embeddings and the dense
    /// inputs, `F*K + D`.
    pub fn deep_dim(&self, cfg: &ModelConfig) -> i64 {
        self.num_fields * cfg.embedding_dim + self.num_dense
    }
}

/// A CTR model.
pub trait CtrModel: Send {
    /// # Shapes
    /// `ids: i64 [B, F]`, `dense: f32 [B, D]` -> logits `f32 [B]`.
    fn forward_t(&self, ids: &Tensor, dense: &Tensor, train: bool) -> Tensor;
}

/// Build a model's parameters under `vs`.
pub fn build(vs: &nn::Path, cfg: &ModelConfig, shape: InputShape) -> Box<dyn CtrModel> {
    match cfg.kind {
        ModelKind::Lr => Box::new(lr::Lr::new(vs, cfg, shape)),
        ModelKind::Fm => Box::new(fm::Fm::new(vs, cfg, shape)),
        ModelKind::WideDeep => Box::new(wide_deep::WideDeep::new(vs, cfg, shape)),
        ModelKind::Deepfm => Box::new(deepfm::DeepFm::new(vs, cfg, shape)),
        ModelKind::Dcn => Box::new(dcn::Dcn::new(vs, cfg, shape)),
        ModelKind::Dcnv2 => Box::new(dcnv2::DcnV2::new(vs, cfg, shape)),
        ModelKind::Xdeepfm => Box::new(xdeepfm::XDeepFm::new(vs, cfg, shape)),
        ModelKind::Autoint => Box::new(autoint::AutoInt::new(vs, cfg, shape)),
        ModelKind::Finalmlp => Box::new(finalmlp::FinalMlp::new(vs, cfg, shape)),
    }
}

/// The embeddings of a batch flattened, with the dense inputs appended: the
/// input of the deep parts. `[B, F*K + D]`.
pub(crate) fn deep_input(emb: &Tensor, dense: &Tensor) -> Tensor {
    let flat = emb.flatten(1, 2);
    if dense.size()[1] > 0 {
        Tensor::cat(&[flat, dense.shallow_clone()], 1)
    } else {
        flat
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(text: &str) -> ModelConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn new_models_settings_are_checked() {
        let ok = model("kind = 'finalmlp'\nmlp = [40]\nmlp2 = [60]\nfusion_heads = 20");
        assert!(ok.validate().is_ok());
        let err = model("kind = 'finalmlp'\nmlp = [40]\nmlp2 = [60]\nfusion_heads = 3")
            .validate()
            .unwrap_err();
        assert!(
            err.contains("fusion_heads = 3") && err.contains("40 and 60"),
            "{err}"
        );
        let err = model("kind = 'finalmlp'\nmlp = []").validate().unwrap_err();
        assert!(err.contains("both streams"), "{err}");
        let err = model("kind = 'xdeepfm'\ncin = []").validate().unwrap_err();
        assert!(err.contains("model.cin"), "{err}");
        let err = model("kind = 'autoint'\nattention_heads = 0")
            .validate()
            .unwrap_err();
        assert!(err.contains("attention_heads"), "{err}");
        // CIN settings mean nothing to other models and are not checked there.
        assert!(model("kind = 'deepfm'\ncin = []").validate().is_ok());
    }
}
