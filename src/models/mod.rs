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

/// The `[model]` section: `kind` picks the model, and the other keys are
/// that model's own settings, whose type lives beside the model (a key of
/// another model is an error that names both).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelConfig {
    Lr(lr::LrConfig),
    Fm(fm::FmConfig),
    WideDeep(wide_deep::WideDeepConfig),
    Deepfm(deepfm::DeepFmConfig),
    Dcn(dcn::DcnConfig),
    Dcnv2(dcnv2::DcnV2Config),
    Xdeepfm(xdeepfm::XDeepFmConfig),
    Autoint(autoint::AutoIntConfig),
    Finalmlp(finalmlp::FinalMlpConfig),
}

/// What the registry needs of a model's settings.
pub trait ModelSettings {
    /// Check the settings; a message names the key (`model.cin: ...`).
    fn check(&self) -> Result<(), String>;
    /// Build the model's parameters under `vs`.
    fn build(&self, vs: &nn::Path, shape: InputShape) -> Box<dyn CtrModel>;
    /// The key settings in a few words, for `compare` (`dim 16 mlp [400]`).
    fn summary(&self) -> String;
}

impl ModelConfig {
    pub fn kind(&self) -> ModelKind {
        match self {
            ModelConfig::Lr(_) => ModelKind::Lr,
            ModelConfig::Fm(_) => ModelKind::Fm,
            ModelConfig::WideDeep(_) => ModelKind::WideDeep,
            ModelConfig::Deepfm(_) => ModelKind::Deepfm,
            ModelConfig::Dcn(_) => ModelKind::Dcn,
            ModelConfig::Dcnv2(_) => ModelKind::Dcnv2,
            ModelConfig::Xdeepfm(_) => ModelKind::Xdeepfm,
            ModelConfig::Autoint(_) => ModelKind::Autoint,
            ModelConfig::Finalmlp(_) => ModelKind::Finalmlp,
        }
    }

    fn settings(&self) -> &dyn ModelSettings {
        match self {
            ModelConfig::Lr(c) => c,
            ModelConfig::Fm(c) => c,
            ModelConfig::WideDeep(c) => c,
            ModelConfig::Deepfm(c) => c,
            ModelConfig::Dcn(c) => c,
            ModelConfig::Dcnv2(c) => c,
            ModelConfig::Xdeepfm(c) => c,
            ModelConfig::Autoint(c) => c,
            ModelConfig::Finalmlp(c) => c,
        }
    }

    /// The settings of `kind` in `table` (without `kind`); keys that are
    /// not the model's are left to the caller.
    fn of_kind(kind: ModelKind, table: toml::Table) -> Result<ModelConfig, String> {
        fn parse<T: serde::de::DeserializeOwned>(t: toml::Table) -> Result<T, String> {
            toml::Value::Table(t)
                .try_into()
                .map_err(|e: toml::de::Error| format!("model: {}", e.message()))
        }
        Ok(match kind {
            ModelKind::Lr => ModelConfig::Lr(parse(table)?),
            ModelKind::Fm => ModelConfig::Fm(parse(table)?),
            ModelKind::WideDeep => ModelConfig::WideDeep(parse(table)?),
            ModelKind::Deepfm => ModelConfig::Deepfm(parse(table)?),
            ModelKind::Dcn => ModelConfig::Dcn(parse(table)?),
            ModelKind::Dcnv2 => ModelConfig::Dcnv2(parse(table)?),
            ModelKind::Xdeepfm => ModelConfig::Xdeepfm(parse(table)?),
            ModelKind::Autoint => ModelConfig::Autoint(parse(table)?),
            ModelKind::Finalmlp => ModelConfig::Finalmlp(parse(table)?),
        })
    }

    /// A model's defaults.
    pub fn default_of(kind: ModelKind) -> ModelConfig {
        ModelConfig::of_kind(kind, toml::Table::new()).expect("every setting has a default")
    }

    /// The model's settings as a TOML table, without `kind`.
    pub fn settings_table(&self) -> toml::Table {
        let Ok(toml::Value::Table(mut t)) = toml::Value::try_from(self) else {
            unreachable!("model settings serialize as a table")
        };
        t.remove("kind");
        t
    }

    /// The keys a model of `kind` takes, besides `kind`.
    pub fn keys_of(kind: ModelKind) -> Vec<String> {
        ModelConfig::default_of(kind)
            .settings_table()
            .keys()
            .cloned()
            .collect()
    }

    /// The `[model]` table: `kind`, then that model's settings. With
    /// `strict`, a key the model does not take is an error naming the model
    /// (and the models that take it); without, it is dropped (runs saved
    /// before each model had its own settings hold every model's keys).
    pub fn from_table(mut table: toml::Table, strict: bool) -> Result<ModelConfig, String> {
        let names = || {
            ModelKind::ALL
                .iter()
                .map(|k| k.name())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let kind: ModelKind = table
            .remove("kind")
            .ok_or_else(|| format!("model.kind is missing (one of {})", names()))?
            .try_into()
            .map_err(|e: toml::de::Error| {
                format!("model.kind: {} (one of {})", e.message(), names())
            })?;
        let own = ModelConfig::keys_of(kind);
        let foreign: Vec<String> = table.keys().filter(|k| !own.contains(k)).cloned().collect();
        if let (true, Some(key)) = (strict, foreign.first()) {
            let takers: Vec<&str> = ModelKind::ALL
                .iter()
                .filter(|k| ModelConfig::keys_of(**k).contains(key))
                .map(|k| k.name())
                .collect();
            let whose = match takers.is_empty() {
                true => "no model takes it".to_string(),
                false => format!("it is a setting of {}", takers.join(", ")),
            };
            return Err(format!(
                "model.{key}: {} has no setting `{key}` ({whose}); {}'s settings: {}",
                kind.name(),
                kind.name(),
                own.join(", ")
            ));
        }
        for key in foreign {
            table.remove(&key);
        }
        ModelConfig::of_kind(kind, table)
    }

    pub fn validate(&self) -> Result<(), String> {
        self.settings().check()
    }

    /// The key settings in a few words (empty for LR).
    pub fn summary(&self) -> String {
        self.settings().summary()
    }

    /// Build the model's parameters under `vs`.
    pub fn build(&self, vs: &nn::Path, shape: InputShape) -> Box<dyn CtrModel> {
        self.settings().build(vs, shape)
    }
}

impl<'de> Deserialize<'de> for ModelConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let table = toml::Table::deserialize(d)?;
        ModelConfig::from_table(table, true).map_err(serde::de::Error::custom)
    }
}

/// The embedding settings of every model with embeddings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Embedding {
    /// Embedding dimension of every field (default 16).
    #[serde(default = "default_dim")]
    pub embedding_dim: i64,
    /// Standard deviation of the embedding initialisation (default 1e-4).
    #[serde(default = "default_init_std")]
    pub embedding_init_std: f64,
}

impl Embedding {
    /// `dim K`, and ` mlp [..]` when there is an MLP.
    pub(crate) fn summary(&self, mlp: Option<&layers::MlpConfig>) -> String {
        let mut s = format!("dim {}", self.embedding_dim);
        if let Some(m) = mlp {
            s += &format!(" mlp {:?}", m.hidden);
        }
        s
    }

    pub fn check(&self) -> Result<(), String> {
        if self.embedding_dim <= 0 {
            return Err("model.embedding_dim must be positive".into());
        }
        check_init_std(self.embedding_init_std)
    }
}

pub(crate) fn check_init_std(std: f64) -> Result<(), String> {
    if std.is_nan() || std <= 0.0 {
        return Err("model.embedding_init_std must be positive".into());
    }
    Ok(())
}

pub(crate) fn default_dim() -> i64 {
    16
}
pub(crate) fn default_init_std() -> f64 {
    1e-4
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
    pub fn deep_dim(&self, embedding_dim: i64) -> i64 {
        self.num_fields * embedding_dim + self.num_dense
    }
}

/// A CTR model.
pub trait CtrModel: Send {
    /// # Shapes
    /// `ids: i64 [B, F]`, `dense: f32 [B, D]` -> logits `f32 [B]`.
    fn forward_t(&self, ids: &Tensor, dense: &Tensor, train: bool) -> Tensor;
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
        // Another model's key is an error that names both models.
        let err = toml::from_str::<ModelConfig>("kind = 'deepfm'\ncin = []")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("model.cin")
                && err.contains("deepfm has no setting")
                && err.contains("xdeepfm"),
            "{err}"
        );
        let err = toml::from_str::<ModelConfig>("kind = 'lr'\nembeding_dim = 4")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no model takes it"), "{err}");
        // Runs saved before per-model settings hold every model's keys.
        let legacy: toml::Table =
            toml::from_str("kind = 'deepfm'\nembedding_dim = 8\ncin = [64, 64]\nmlp2 = [400]")
                .unwrap();
        let ModelConfig::Deepfm(m) = ModelConfig::from_table(legacy, false).unwrap() else {
            panic!()
        };
        assert_eq!(m.embedding.embedding_dim, 8);
    }

    #[test]
    fn every_model_round_trips_its_defaults() {
        for kind in ModelKind::ALL {
            let cfg = ModelConfig::default_of(kind);
            assert_eq!(cfg.kind(), kind);
            cfg.validate().unwrap();
            let text = toml::to_string(&cfg).unwrap();
            assert_eq!(toml::from_str::<ModelConfig>(&text).unwrap(), cfg, "{text}");
        }
    }
}
