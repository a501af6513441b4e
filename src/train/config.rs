//! Experiment configuration: one TOML file per experiment (`experiments/*.toml`)
//! with `[data]`, `[features]`, `[model]`, `[train]` and `[output]`; any value
//! can be overridden from the command line with `--set section.key=value`.
//! The resolved configuration is saved with every run as `config.toml`, so a
//! run can be reproduced from its directory alone.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::run::OutputConfig;

use crate::error::{Error, Result};
use crate::features::FeatureConfig;
use crate::models::ModelConfig;

/// The `[data]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// A dataset directory written by `ctr-dl convert` or `ctr-dl simulate`
    /// (relative paths are relative to the working directory).
    pub path: PathBuf,
    /// Where encoded splits are cached (default `<path>/encoded`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<PathBuf>,
}

/// Optimizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    Adam,
    /// Adam with decoupled weight decay (on dense parameters).
    Adamw,
    /// SGD, with optional momentum on dense parameters.
    Sgd,
}

/// How the rows of the embedding tables (the parameters with sparse
/// gradients) are updated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmbeddingOptimizer {
    /// The main optimizer's rule, lazily on the rows a batch uses (default).
    #[default]
    Same,
    /// Row-wise Adagrad: a row's step shrinks with the squared gradients it
    /// has had, so a row seen rarely keeps a large step and a frequent one
    /// settles (the usual choice for CTR embeddings).
    Adagrad,
}

/// How the learning rate moves over a run's steps, on top of the decay on
/// plateau.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LrSchedule {
    /// `lr` throughout (default).
    #[default]
    Constant,
    /// From `lr` down to 0 along half a cosine, over the run's planned steps.
    Cosine,
    /// From `lr` down to 0 in a straight line, over the run's planned steps.
    Linear,
}

impl LrSchedule {
    /// The name the config uses.
    pub fn name(self) -> &'static str {
        match self {
            LrSchedule::Constant => "constant",
            LrSchedule::Cosine => "cosine",
            LrSchedule::Linear => "linear",
        }
    }

    /// The factor on the learning rate for the step after `step` completed
    /// ones, of `total` planned, the first `warmup` of them rising linearly
    /// from `1 / warmup` to 1.
    pub fn factor(self, step: u64, total: u64, warmup: u64) -> f64 {
        if step < warmup {
            return (step + 1) as f64 / warmup as f64;
        }
        let span = total.saturating_sub(warmup);
        if span == 0 {
            return 1.0;
        }
        let progress = ((step - warmup) as f64 / span as f64).min(1.0);
        match self {
            LrSchedule::Constant => 1.0,
            LrSchedule::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
            LrSchedule::Linear => 1.0 - progress,
        }
    }
}

/// The metric that picks the best checkpoint and drives early stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Monitor {
    Auc,
    Logloss,
    /// AUC minus log loss (FuxiCTR's `{AUC: 1, logloss: -1}`).
    AucMinusLogloss,
}

impl Monitor {
    /// The monitored value; higher is better.
    pub fn score(self, auc: Option<f64>, logloss: f64) -> f64 {
        let auc = auc.unwrap_or(0.5);
        match self {
            Monitor::Auc => auc,
            Monitor::Logloss => -logloss,
            Monitor::AucMinusLogloss => auc - logloss,
        }
    }
}

/// The `[train]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// `adam` (default), `adamw` or `sgd`.
    #[serde(default = "d_optimizer")]
    pub optimizer: OptimizerKind,
    /// Learning rate (default 1e-3).
    #[serde(default = "d_lr")]
    pub lr: f64,
    /// Adam's betas and epsilon.
    #[serde(default = "d_beta1")]
    pub beta1: f64,
    #[serde(default = "d_beta2")]
    pub beta2: f64,
    #[serde(default = "d_eps")]
    pub eps: f64,
    /// SGD momentum on dense parameters (default 0).
    #[serde(default)]
    pub momentum: f64,
    /// Rows per step (default 4096).
    #[serde(default = "d_batch")]
    pub batch_size: usize,
    /// Passes over train (default 10; early stopping usually ends sooner).
    #[serde(default = "d_epochs")]
    pub epochs: u64,
    /// Stop after this many steps in all (default 0: no limit).
    #[serde(default)]
    pub max_steps: u64,
    /// `constant` (default), `cosine` or `linear`: the learning rate over the
    /// planned steps (`epochs` passes, or `max_steps` when fewer), multiplied
    /// with the decay on plateau.
    #[serde(default)]
    pub lr_schedule: LrSchedule,
    /// Steps of linear warm-up to `lr` at the start (default 0).
    #[serde(default)]
    pub warmup_steps: u64,
    /// Update rule of the embedding rows: `same` (default) or `adagrad`.
    #[serde(default)]
    pub embedding_optimizer: EmbeddingOptimizer,
    /// Learning rate of the embedding rows (default 0: `lr`); decayed on
    /// plateau by the same factor as `lr`.
    #[serde(default)]
    pub embedding_lr: f64,
    /// L1 on the embedding rows a batch uses (LR's weights), added to their
    /// gradient as `embedding_l1 * sign(w)` (default 0).
    #[serde(default)]
    pub embedding_l1: f64,
    /// L2 on the embedding rows a batch uses, added to their gradient as
    /// `embedding_l2 * w` (FuxiCTR's `embedding_regularizer`; default 0).
    #[serde(default)]
    pub embedding_l2: f64,
    /// Weight decay of dense parameters (L2 for adam and sgd, decoupled for
    /// adamw; default 0).
    #[serde(default)]
    pub weight_decay: f64,
    /// Clip the global gradient norm to this (default 0: off).
    #[serde(default)]
    pub grad_clip: f64,
    /// `auto` (CUDA when present), `cpu`, `cuda` or `cuda:N`.
    #[serde(default = "d_device")]
    pub device: String,
    /// Mixed precision on CUDA (autocast; ignored on CPU).
    #[serde(default)]
    pub amp: bool,
    /// libtorch intra-op threads (default 0: libtorch's default, the cores).
    #[serde(default)]
    pub threads: usize,
    /// Evaluate on valid every this many steps (default 0: once an epoch);
    /// when set, also once when training ends, not at every epoch's end.
    #[serde(default)]
    pub eval_every: u64,
    /// `auc` (default), `logloss` or `auc_minus_logloss`.
    #[serde(default = "d_monitor")]
    pub monitor: Monitor,
    /// Evaluations without improvement before stopping (default 2).
    #[serde(default = "d_patience")]
    pub patience: u64,
    /// Learning rate factor on an evaluation without improvement (default
    /// 0.1, as BARS; 1 turns it off).
    #[serde(default = "d_lr_decay")]
    pub lr_decay: f64,
    /// Lower bound of the decayed learning rate (default 1e-6).
    #[serde(default = "d_min_lr")]
    pub min_lr: f64,
    /// Shuffle train each epoch (default true).
    #[serde(default = "d_true")]
    pub shuffle: bool,
    /// Chunks of 262,144 rows shuffled together (default 4).
    #[serde(default = "d_shuffle_chunks")]
    pub shuffle_chunks: usize,
    /// Steps between train-loss points in TensorBoard (default 50).
    #[serde(default = "d_log_every")]
    pub log_every: u64,
}

impl TrainConfig {
    /// The embedding rows' learning rate: `embedding_lr`, or `lr` when unset.
    pub fn embedding_lr_or_lr(&self) -> f64 {
        if self.embedding_lr > 0.0 {
            self.embedding_lr
        } else {
            self.lr
        }
    }
}

fn d_optimizer() -> OptimizerKind {
    OptimizerKind::Adam
}
fn d_lr() -> f64 {
    1e-3
}
fn d_beta1() -> f64 {
    0.9
}
fn d_beta2() -> f64 {
    0.999
}
fn d_eps() -> f64 {
    1e-8
}
fn d_batch() -> usize {
    4096
}
fn d_epochs() -> u64 {
    10
}
fn d_device() -> String {
    "auto".into()
}
fn d_monitor() -> Monitor {
    Monitor::Auc
}
fn d_patience() -> u64 {
    2
}
fn d_lr_decay() -> f64 {
    0.1
}
fn d_min_lr() -> f64 {
    1e-6
}
fn d_true() -> bool {
    true
}
fn d_shuffle_chunks() -> usize {
    4
}
fn d_log_every() -> u64 {
    50
}

impl Default for TrainConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults parse")
    }
}

/// A whole experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    /// Name of the experiment: the prefix of its run names.
    pub name: String,
    /// Seed of initialisation, shuffling and dropout (default 2018).
    #[serde(default = "d_seed")]
    pub seed: u64,
    pub data: DataConfig,
    #[serde(default)]
    pub features: FeatureConfig,
    pub model: ModelConfig,
    #[serde(default)]
    pub train: TrainConfig,
    #[serde(default)]
    pub output: OutputConfig,
}

fn d_seed() -> u64 {
    2018
}

impl ExperimentConfig {
    /// Read a TOML file, apply `--set` overrides, validate.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        Self::parse(&read_config(path)?, path, overrides)
    }

    /// Parse TOML text (`path` names it in errors).
    pub fn parse(text: &str, path: &Path, overrides: &[String]) -> Result<Self> {
        parse_experiment(text, path, overrides, ExperimentConfig::validate)
    }

    /// Read the `config.toml` a run saved. Runs saved before each model had
    /// its own settings hold every model's keys in `[model]`: the keys that
    /// are not the run's model's are dropped (a user's experiment file gets
    /// an error for them instead).
    pub fn load_saved(path: &Path) -> Result<Self> {
        let text = read_config(path)?;
        let err = |message: String| Error::Config {
            path: path.into(),
            message,
        };
        let mut table: toml::Table = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
        if let Some(toml::Value::Table(model)) = table.get_mut("model") {
            let own = ModelConfig::from_table(model.clone(), false).map_err(err)?;
            *model = own.settings_table();
            model.insert("kind".into(), own.kind().name().into());
        }
        parse_experiment_table(table, None, path, &[], ExperimentConfig::validate)
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        self.features.validate()?;
        self.model.validate()?;
        let t = &self.train;
        if t.lr.is_nan() || t.lr <= 0.0 || t.batch_size == 0 {
            return Err("train.lr and train.batch_size must be positive".into());
        }
        if !(0.0..1.0).contains(&t.beta1) || !(0.0..1.0).contains(&t.beta2) {
            return Err("train.beta1 and train.beta2 must be in [0, 1)".into());
        }
        if !(0.0 < t.lr_decay && t.lr_decay <= 1.0) {
            return Err("train.lr_decay must be in (0, 1]".into());
        }
        if t.embedding_l1 < 0.0
            || t.embedding_l2 < 0.0
            || t.weight_decay < 0.0
            || t.grad_clip < 0.0
            || t.embedding_lr.is_nan()
            || t.embedding_lr < 0.0
        {
            return Err(
                "train.embedding_l1, embedding_l2, embedding_lr, weight_decay and grad_clip must be >= 0"
                    .into(),
            );
        }
        check_name(&self.name)?;
        crate::device::resolve_device(&t.device).map(|_| ())
    }

    /// The configuration as TOML, as saved with a run.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

/// The text of an experiment file; a missing one is an error that says it
/// is the experiment config.
pub fn read_config(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io(path, e).context("experiment config"))
}

/// Parse an experiment's TOML text, apply `--set` overrides, then `validate`
/// (`path` names the file in errors).
pub fn parse_experiment<T: serde::de::DeserializeOwned>(
    text: &str,
    path: &Path,
    overrides: &[String],
    validate: impl Fn(&T) -> std::result::Result<(), String>,
) -> Result<T> {
    let value: toml::Table = toml::from_str(text).map_err(|e| Error::Config {
        path: path.into(),
        message: e.to_string(),
    })?;
    parse_experiment_table(value, Some(text), path, overrides, validate)
}

/// [`parse_experiment`] of a table already read.
fn parse_experiment_table<T: serde::de::DeserializeOwned>(
    mut value: toml::Table,
    text: Option<&str>,
    path: &Path,
    overrides: &[String],
    validate: impl Fn(&T) -> std::result::Result<(), String>,
) -> Result<T> {
    let err = |message: String| Error::Config {
        path: path.into(),
        message,
    };
    for o in overrides {
        apply_override(&mut value, o).map_err(err)?;
    }
    // Straight from the text, a mistake has its line and column; with
    // overrides, the table they changed is all there is.
    let parsed: std::result::Result<T, toml::de::Error> = match text {
        Some(text) if overrides.is_empty() => toml::from_str(text),
        _ => toml::Value::Table(value).try_into(),
    };
    let cfg = parsed.map_err(|e| explain(&e.to_string(), path, overrides))?;
    validate(&cfg).map_err(err)?;
    Ok(cfg)
}

/// The error of a configuration that does not parse: a mistyped key gets
/// the nearest key it may have meant, and is blamed on the `--set` that
/// brought it when the file does not hold it.
fn explain(message: &str, path: &Path, overrides: &[String]) -> Error {
    let message = crate::error::did_you_mean(message);
    let from_set = crate::error::unknown_key(&message).and_then(|key| {
        overrides.iter().find(|o| {
            o.split_once('=')
                .is_some_and(|(k, _)| k.trim().rsplit('.').next() == Some(key))
        })
    });
    match from_set {
        Some(o) => Error::Invalid(format!("--set {o} (over {}): {message}", path.display())),
        None => Error::Config {
            path: path.into(),
            message,
        },
    }
}

/// An experiment name is the prefix of run directories: no slashes.
pub fn check_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() || name.contains(['/', '\\']) {
        return Err(format!("name `{name}` must be non-empty, without slashes"));
    }
    Ok(())
}

/// Apply `section.key=value` to a TOML table. The value is read as TOML
/// (`3`, `1e-4`, `true`, `[400, 400]`, `"text"`), or as a bare string.
pub fn apply_override(table: &mut toml::Table, spec: &str) -> std::result::Result<(), String> {
    let (key, raw) = spec
        .split_once('=')
        .ok_or_else(|| format!("--set `{spec}`: expected section.key=value"))?;
    let value: toml::Value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t.remove("v").unwrap_or(toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.into()),
    };
    let parts: Vec<&str> = key.trim().split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(format!("--set `{spec}`: empty key part"));
    }
    let mut t = table;
    for p in &parts[..parts.len() - 1] {
        let entry = t
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        t = entry
            .as_table_mut()
            .ok_or_else(|| format!("--set `{spec}`: `{p}` is not a section"))?;
    }
    t.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = "name = 'x'\n[data]\npath = 'd'\n[model]\nkind = 'deepfm'\n";

    #[test]
    fn overrides_reach_any_value() {
        let sets = [
            "model.embedding_dim=8".to_string(),
            "train.lr=1e-4".into(),
            "model.mlp=[64, 32]".into(),
            "train.device=cpu".into(),
            "features.fields.user_id.encoding=hash".into(),
        ];
        let c = ExperimentConfig::parse(MIN, Path::new("x.toml"), &sets).unwrap();
        let crate::models::ModelConfig::Deepfm(m) = &c.model else {
            panic!("{:?}", c.model)
        };
        assert_eq!(m.embedding.embedding_dim, 8);
        assert_eq!(c.train.lr, 1e-4);
        assert_eq!(m.mlp.hidden, vec![64, 32]);
        assert_eq!(c.train.device, "cpu");
        assert_eq!(
            c.features.fields["user_id"].encoding,
            Some(crate::features::Encoding::Hash)
        );
        // The saved form parses back to the same configuration.
        let again = ExperimentConfig::parse(&c.to_toml(), Path::new("y"), &[]).unwrap();
        assert_eq!(again, c);
    }

    /// A run saved before each model had its own settings holds every
    /// model's keys; it still loads, with its own model's values.
    #[test]
    fn runs_saved_with_every_models_keys_still_load() {
        let legacy = "name = 'x'\n[data]\npath = 'd'\n[model]\nkind = 'dcn'\n\
            embedding_dim = 32\nembedding_init_std = 0.0001\nmlp = [400, 400]\ndropout = 0.0\n\
            batch_norm = false\ncross_layers = 5\nlow_rank = 0\nexperts = 4\n\
            structure = 'parallel'\ncin = [64, 64]\nattention_layers = 3\nattention_heads = 2\n\
            attention_dim = 32\nmlp2 = [400]\nfusion_heads = 10\n";
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("config.toml");
        std::fs::write(&path, legacy).unwrap();
        // As an experiment file, the other models' keys are mistakes...
        let e = ExperimentConfig::load(&path, &[]).unwrap_err().to_string();
        assert!(
            e.contains("config.toml") && e.contains("dcn has no setting `attention_dim`"),
            "{e}"
        );
        // ... as a run's saved configuration, they are dropped.
        let c = ExperimentConfig::load_saved(&path).unwrap();
        let crate::models::ModelConfig::Dcn(m) = &c.model else {
            panic!("{:?}", c.model)
        };
        assert_eq!((m.embedding.embedding_dim, m.cross_layers), (32, 5));
        assert_eq!(m.mlp.hidden, vec![400, 400]);
    }

    #[test]
    fn mistakes_name_the_file_and_key() {
        let e = ExperimentConfig::parse(MIN, Path::new("x.toml"), &["model.embeding_dim=8".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("x.toml") && e.contains("embeding_dim"), "{e}");
        let e = ExperimentConfig::parse(MIN, Path::new("x.toml"), &["train.lr=-1".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("train.lr"), "{e}");
        let e = ExperimentConfig::parse(MIN, Path::new("x.toml"), &["nokey".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("section.key=value"), "{e}");
    }

    /// A mistyped key: a `--set` is named as the cause (the file does not
    /// hold it), a key in the file gets its line, and both get the key they
    /// were near.
    #[test]
    fn typos_name_their_set_or_line_and_the_nearest_key() {
        let e = ExperimentConfig::parse(MIN, Path::new("x.toml"), &["model.embeding_dim=8".into()])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("--set model.embeding_dim=8 (over x.toml)"),
            "{e}"
        );
        assert!(e.contains("did you mean `embedding_dim`?"), "{e}");
        let e = ExperimentConfig::parse(MIN, Path::new("x.toml"), &["train.batchsize=8".into()])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--set train.batchsize=8") && e.contains("`batch_size`"),
            "{e}"
        );
        let text = format!("{MIN}[train]\nlr = 0.01\nbatchsize = 64\n");
        let e = ExperimentConfig::parse(&text, Path::new("x.toml"), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("config x.toml") && e.contains("line 8"), "{e}");
        assert!(e.contains("did you mean `batch_size`?"), "{e}");
        // Nothing near: no guess.
        let e = ExperimentConfig::parse(MIN, Path::new("x.toml"), &["train.zzzzzzzzz=1".into()])
            .unwrap_err()
            .to_string();
        assert!(!e.contains("did you mean"), "{e}");
    }

    #[test]
    fn lr_schedules_follow_their_formulas() {
        use LrSchedule::*;
        // Warm-up rises to the full rate over its steps, for every schedule.
        for s in [Constant, Cosine, Linear] {
            assert_eq!(s.factor(0, 100, 4), 0.25);
            assert_eq!(s.factor(3, 100, 4), 1.0);
        }
        assert_eq!(Constant.factor(70, 100, 0), 1.0);
        assert_eq!(Cosine.factor(0, 100, 0), 1.0);
        assert!((Cosine.factor(50, 100, 0) - 0.5).abs() < 1e-12);
        assert!((Cosine.factor(25, 100, 0) - (0.5 + 0.5 * 0.5f64.sqrt())).abs() < 1e-12);
        assert!((Linear.factor(75, 100, 0) - 0.25).abs() < 1e-12);
        // After warm-up the decay spans the remaining steps; past the plan it
        // stays at the end.
        assert!((Linear.factor(60, 100, 20) - 0.5).abs() < 1e-12);
        assert_eq!(Cosine.factor(150, 100, 0), 0.0);
        assert_eq!(Linear.factor(10, 10, 10), 1.0);
        let c = ExperimentConfig::parse(
            MIN,
            Path::new("x.toml"),
            &[
                "train.lr_schedule=cosine".into(),
                "train.warmup_steps=10".into(),
            ],
        )
        .unwrap();
        assert_eq!((c.train.lr_schedule, c.train.warmup_steps), (Cosine, 10));
        let e =
            ExperimentConfig::parse(MIN, Path::new("x.toml"), &["train.lr_schedule=step".into()])
                .unwrap_err()
                .to_string();
        assert!(e.contains("lr_schedule"), "{e}");
    }
}
