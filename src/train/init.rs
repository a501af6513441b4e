//! `ctr-dl init`: a starting experiment for a converted dataset, with only
//! the keys that apply to it and to the chosen model, sized to the data, and
//! checked to load before it is printed.
use std::path::Path;

use crate::data::manifest::DatasetManifest;
use crate::error::{Error, Result};
use crate::gbdt::{GbdtExperiment, LightGbmConfig, LIGHTGBM};
use crate::models::{ModelConfig, ModelKind};
use crate::train::config::ExperimentConfig;

/// The experiment TOML for `data` and `model` (a deep model's kind or
/// `lightgbm`), named `name`.
pub fn init_experiment(data: &Path, model: &str, name: &str) -> Result<String> {
    let m = DatasetManifest::load(data)?;
    let train_rows = m.train.rows;
    let time = m.schema.time_column().map(|c| c.name.clone());
    // Values seen fewer times share the out-of-vocabulary row: about one in
    // 20,000 train rows, at least 2 and at most 50.
    let min_count = (train_rows / 20_000).clamp(2, 50);
    let path = toml::Value::String(data.display().to_string());
    let mut out = format!(
        "# Written by `ctr-dl init` for {} ({} train rows, CTR {:.4}{}).\n\
         # Every key is documented on its field in src/train/config.rs, src/models/\n\
         # and src/features/config.rs; `--set section.key=value` overrides any.\n\
         name = {}\nseed = 2018\n\n[data]\npath = {path}\n\n[features]\n\
         categorical = \"vocab\"\nmin_count = {min_count}\n",
        data.display(),
        train_rows,
        m.train.positive_rate,
        time.as_ref()
            .map_or(String::new(), |t| format!(", time column `{t}`")),
        toml::Value::String(name.into()),
    );
    if time.is_some() {
        out += "time_parts = [\"hour\", \"weekday\", \"weekend\"]\n";
    } else {
        out += "time_parts = []\n";
    }
    if model == LIGHTGBM {
        let mut section = toml::Table::new();
        section.insert(
            "lightgbm".into(),
            toml::Value::try_from(LightGbmConfig::default())
                .map_err(|e| Error::Invalid(format!("the LightGBM settings: {e}")))?,
        );
        let lightgbm = toml::to_string(&section)
            .map_err(|e| Error::Invalid(format!("the LightGBM settings: {e}")))?;
        out += &format!("\n{lightgbm}");
        GbdtExperiment::parse(&out, Path::new("<init>"), &[])?;
        return Ok(out);
    }
    let kind: ModelKind = toml::Value::String(model.into()).try_into().map_err(|_| {
        Error::Invalid(format!(
            "--model {model}: not a model (lightgbm, {})",
            ModelKind::ALL.map(ModelKind::name).join(", ")
        ))
    })?;
    let settings = toml::to_string(&ModelConfig::default_of(kind).settings_table())
        .map_err(|e| Error::Invalid(format!("the model settings: {e}")))?;
    // About four evaluations an epoch, at least every 50 steps.
    let batch = if train_rows < 200_000 { 1024 } else { 4096 };
    let eval_every = (train_rows / batch / 4).max(50);
    out += &format!(
        "\n[model]\nkind = \"{}\"\n{settings}\n[train]\noptimizer = \"adam\"\nlr = 1e-3\n\
         embedding_lr = 1e-2\nbatch_size = {batch}\nepochs = 10\nmonitor = \"logloss\"\n\
         patience = 2\nlr_decay = 0.3\neval_every = {eval_every}\ndevice = \"auto\"\n",
        kind.name()
    );
    ExperimentConfig::parse(&out, Path::new("<init>"), &[])?;
    Ok(out)
}
