//! The run contract: what a run is, whichever model family trained it.
//!
//! A run is a folder `runs/<run>/` (`run.json`: [`RunInfo`], what it was made
//! from; `metrics.json`: [`RunMetrics`], every evaluation, the final valid and
//! test metrics and, on simulated data, the distance from the true click
//! probability) beside `checkpoints/<run>/`. The deep trainer
//! ([`crate::train`]) and LightGBM ([`crate::gbdt`]) write it; `eval`,
//! `compare`, `report` and `export` read it, through this module only.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::manifest::DatasetManifest;
use crate::data::writer::Split;
use crate::error::{Error, Result};
use crate::features::EncodedDataset;
use crate::metrics::Metrics;
use crate::tensorboard::{EventWriter, HParamValue};

/// The `[output]` section of an experiment: where runs and checkpoints go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// Run directories: `<runs>/<run>/` (default `runs`).
    #[serde(default = "d_runs")]
    pub runs: PathBuf,
    /// Checkpoints: `<checkpoints>/<run>/` (default `checkpoints`).
    #[serde(default = "d_checkpoints")]
    pub checkpoints: PathBuf,
}

fn d_runs() -> PathBuf {
    "runs".into()
}
fn d_checkpoints() -> PathBuf {
    "checkpoints".into()
}

impl Default for OutputConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults parse")
    }
}

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    /// Run name (default `<name>-<UTC time>`).
    pub run: Option<String>,
    /// Progress bars on a terminal.
    pub progress: bool,
    /// Print nothing but errors.
    pub quiet: bool,
    /// Stop (as if interrupted) after this many steps of this invocation,
    /// leaving the last checkpoint: for testing `--resume`.
    pub stop_after_steps: Option<u64>,
}

/// One evaluation on valid.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalRecord {
    pub epoch: u64,
    pub step: u64,
    pub lr: f64,
    /// Mean train loss since the previous evaluation.
    pub train_loss: f64,
    pub valid: Metrics,
    pub improved: bool,
    pub seconds: f64,
}

/// `run.json`: what a run was made from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunInfo {
    pub run: String,
    pub name: String,
    pub model: String,
    pub created: String,
    pub commit: Option<String>,
    pub seed: u64,
    pub data: PathBuf,
    pub encoded: PathBuf,
    pub device: String,
    pub checkpoints: PathBuf,
    pub parameters: i64,
    pub ctr_dl_version: String,
}

/// `metrics.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunMetrics {
    pub run: String,
    pub model: String,
    pub evals: Vec<EvalRecord>,
    pub best_step: u64,
    pub best_epoch: u64,
    pub valid: Option<Metrics>,
    pub test: Option<Metrics>,
    pub train: TrainSummary,
    /// Simulated data only: the true click probability's test log loss and
    /// this model's distance from it.
    pub truth: Option<Truth>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainSummary {
    pub steps: u64,
    pub epochs: u64,
    pub samples: u64,
    pub seconds: f64,
    pub samples_per_sec: f64,
    /// Share of the training time spent waiting for the next batch.
    pub data_wait_fraction: f64,
    pub stopped_early: bool,
    pub finished: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Truth {
    pub test_logloss: f64,
    pub test_auc: Option<f64>,
    pub gap: f64,
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct TrainReport {
    pub run: String,
    pub run_dir: PathBuf,
    pub checkpoint_dir: PathBuf,
    pub metrics: RunMetrics,
    pub encoded_reused: bool,
}

pub fn git_commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The name of a new run (`--run`, or `<experiment>-<UTC time>`); an error
/// when `runs/<name>` holds a run already.
pub fn new_run_name(runs: &Path, experiment: &str, opts: &TrainOptions) -> Result<String> {
    let run = opts.run.clone().unwrap_or_else(|| {
        format!(
            "{experiment}-{}",
            chrono::Utc::now().format("%Y%m%d-%H%M%S")
        )
    });
    let run_dir = runs.join(&run);
    if run_dir.join("run.json").exists() {
        return Err(Error::Invalid(format!(
            "{} exists: pick another --run name, or continue it with --resume {}",
            run_dir.display(),
            run_dir.display()
        )));
    }
    Ok(run)
}

/// Check that the encoded data can train (non-empty train and valid), then
/// create `runs/<run>/` and `checkpoints/<run>/`.
pub fn run_dirs(
    ds: &EncodedDataset,
    data: &Path,
    output: &OutputConfig,
    run: &str,
) -> Result<(PathBuf, PathBuf)> {
    if ds.split(Split::Train).rows == 0 || ds.split(Split::Valid).rows == 0 {
        return Err(Error::Invalid(format!(
            "{}: training needs non-empty train and valid splits (train {}, valid {} rows)",
            data.display(),
            ds.split(Split::Train).rows,
            ds.split(Split::Valid).rows
        )));
    }
    let run_dir = output.runs.join(run);
    let ckpt_dir = output.checkpoints.join(run);
    for d in [&run_dir, &ckpt_dir] {
        std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
    }
    Ok((run_dir, ckpt_dir))
}

/// The true click probability's test log loss and AUC, when the data are
/// simulated.
pub fn simulated_truth(data: &Path) -> Option<(f64, Option<f64>)> {
    DatasetManifest::load(data)
        .ok()
        .and_then(|m| m.simulation)
        .and_then(|s| {
            let t = &s["true_metrics"]["splits"]["test"];
            Some((t["logloss"].as_f64()?, t["auc"].as_f64()))
        })
}

impl Truth {
    /// A model's distance from the truth on test.
    pub fn of(test: Option<&Metrics>, truth: Option<(f64, Option<f64>)>) -> Option<Truth> {
        match (test, truth) {
            (Some(t), Some((ll, auc))) => Some(Truth {
                test_logloss: ll,
                test_auc: auc,
                gap: t.logloss - ll,
            }),
            _ => None,
        }
    }
}

/// Begin a run's TensorBoard record: its resolved configuration as text,
/// and its settings for the HPARAMS tab: `model`, `data` (the dataset
/// folder, so runs on different data are told apart), `seed`, then
/// `settings` (the family's own: a deep model's and its training's, or
/// LightGBM's). Every family writes the same first three.
pub fn tensorboard_start(
    tb: &mut EventWriter,
    model: &str,
    data: &Path,
    seed: u64,
    settings: Vec<(String, HParamValue)>,
    config_toml: &str,
) -> std::io::Result<()> {
    // Markdown: an indented block keeps the TOML as it is.
    let text: String = config_toml.lines().map(|l| format!("    {l}\n")).collect();
    tb.add_text("config", &text, 0)?;
    let mut hparams = vec![
        ("model".to_string(), HParamValue::Text(model.into())),
        (
            "data".to_string(),
            HParamValue::Text(data.display().to_string()),
        ),
        ("seed".to_string(), HParamValue::Number(seed as f64)),
    ];
    hparams.extend(settings);
    tb.add_hparams(&hparams)
}

/// End a run's TensorBoard record with the metrics every family has, at
/// `step`, so HPARAMS compares any runs on them: `best/valid_auc`,
/// `best/valid_logloss` (the kept model's), `test/auc`, `test/logloss`, and
/// on simulated data `test/gap_to_truth`; then the session's end.
pub fn tensorboard_finish(tb: &mut EventWriter, m: &RunMetrics, step: i64) -> std::io::Result<()> {
    let mut scalars = Vec::new();
    if let Some(v) = &m.valid {
        scalars.push(("best/valid_auc", v.auc.unwrap_or(f64::NAN)));
        scalars.push(("best/valid_logloss", v.logloss));
    }
    if let Some(t) = &m.test {
        scalars.push(("test/auc", t.auc.unwrap_or(f64::NAN)));
        scalars.push(("test/logloss", t.logloss));
    }
    if let Some(truth) = &m.truth {
        scalars.push(("test/gap_to_truth", truth.gap));
    }
    for (tag, value) in scalars {
        tb.add_scalar(tag, value, step)?;
    }
    tb.end_hparams(true)?;
    tb.flush()
}
