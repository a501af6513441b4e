//! `ctr-dl export`: a trained run to a model bundle that serving loads without
//! the training data or the model code.
//!
//! A bundle is a directory `models/<name>/<version>/` with
//! - `model.pt`: TorchScript, `forward(cat_ids: i64[B, F], dense: f32[B, D])
//!   -> f32[B]` click probabilities, traced from the best checkpoint on CPU;
//!   or, from a LightGBM run, `model.lgb`, LightGBM's model file cut at the
//!   best round, which reads the matrix of [`crate::gbdt::matrix`];
//! - `features.json`: the run's feature map, the only thing needed to encode a
//!   request (the same Rust encoder as training);
//! - `metadata.json`: [`BundleMetadata`].
//!
//! Export checks itself before the bundle appears: the saved module is loaded
//! back and, on rows of the test split at batch 1 and at batch `check_rows`,
//! must give the training-side probabilities to [`TOLERANCE`]. The bundle is
//! written to a temporary directory and renamed, so a failed export leaves
//! nothing behind.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::Device;

use crate::data::io::{build_dir_atomically, read_json, write_json};
use crate::data::manifest::now_rfc3339;
use crate::error::{Error, Result};
use crate::eval::calibrate::Calibrator;
use crate::family::open_run;
use crate::run::{git_commit, RunInfo};
use crate::scoring::OpenRun;
pub use crate::scoring::{ExportCheck, FORMAT_LIGHTGBM, FORMAT_TORCHSCRIPT};

/// The largest difference allowed between the exported module's
/// probabilities and the training-side model's.
pub const TOLERANCE: f64 = 1e-6;

/// Bundle format version, bumped when `model.pt`'s signature or the files change.
pub const BUNDLE_VERSION: u32 = 1;

#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub run: PathBuf,
    /// The bundle directory; by default `models/<experiment name>/<next version>`.
    pub out: Option<PathBuf>,
    pub models_root: PathBuf,
    /// Rows of the test split in the batch-N check.
    pub check_rows: usize,
    pub overwrite: bool,
}

impl ExportOptions {
    pub fn new(run: impl Into<PathBuf>) -> Self {
        ExportOptions {
            run: run.into(),
            out: None,
            models_root: PathBuf::from("models"),
            check_rows: 1000,
            overwrite: false,
        }
    }
}

/// `metadata.json` of a bundle.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BundleMetadata {
    pub bundle_version: u32,
    /// `torchscript` (`model.pt`) or `lightgbm` (`model.lgb`); bundles from
    /// before LightGBM have none and are TorchScript.
    #[serde(default = "d_format")]
    pub format: String,
    pub name: String,
    pub version: String,
    pub model: String,
    pub run: String,
    pub run_dir: PathBuf,
    pub data: PathBuf,
    pub created: String,
    /// The commit the model was trained at, and the one it was exported at.
    pub train_commit: Option<String>,
    pub export_commit: Option<String>,
    pub ctr_dl_version: String,
    pub num_fields: usize,
    pub num_dense: usize,
    pub vocab_size: usize,
    pub parameters: i64,
    /// The resolved experiment config.
    pub config: serde_json::Value,
    /// Best valid and final test metrics of the run (and the simulator's truth
    /// where the data was simulated).
    pub metrics: serde_json::Value,
    /// The self-check: largest absolute difference at batch 1 and batch N.
    pub check: ExportCheck,
    /// The post-hoc calibrator (`calibration.json`) serving applies, if any.
    #[serde(default)]
    pub calibration: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ExportReport {
    pub out: PathBuf,
    pub metadata: BundleMetadata,
}

/// The next free integer version under `root/name` (1 when there is none).
fn next_version(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
                .max()
                .unwrap_or(0)
                + 1
        })
        .unwrap_or(1)
}

fn d_format() -> String {
    FORMAT_TORCHSCRIPT.into()
}

/// Export a run's best model as a bundle: TorchScript for a deep run, the
/// LightGBM model file for a LightGBM run.
pub fn export(opts: &ExportOptions) -> Result<ExportReport> {
    let OpenRun {
        info,
        name,
        config,
        ds,
        mut model,
    } = open_run(&opts.run, Device::Cpu)?;
    let target = Target::of(opts, &name)?;
    let format = model.bundle_format();
    let rows = opts.check_rows.max(2);
    write_bundle(opts, target, &info, &ds, config, format, |dir| {
        model.write_bundle_model(dir, &ds, rows)
    })
}

/// Where a bundle goes: its directory, model name and version.
struct Target {
    out: PathBuf,
    name: String,
    version: String,
}

impl Target {
    fn of(opts: &ExportOptions, experiment: &str) -> Result<Target> {
        let out = match &opts.out {
            Some(p) => p.clone(),
            None => {
                let dir = opts.models_root.join(experiment);
                dir.join(next_version(&dir).to_string())
            }
        };
        if out.exists() && !opts.overwrite {
            return Err(Error::Invalid(format!(
                "{} exists; pass --overwrite to replace it",
                out.display()
            )));
        }
        let version = out
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("1")
            .to_string();
        let name = out
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .unwrap_or(experiment)
            .to_string();
        Ok(Target { out, name, version })
    }
}

/// Write a bundle through a temporary directory (`write_model` adds the
/// model file and returns its self-check), renamed into place once the check
/// has passed.
fn write_bundle(
    opts: &ExportOptions,
    target: Target,
    info: &RunInfo,
    ds: &crate::features::cache::EncodedDataset,
    config: serde_json::Value,
    format: &str,
    write_model: impl FnOnce(&Path) -> Result<ExportCheck>,
) -> Result<ExportReport> {
    let run_dir = &opts.run;
    let Target { out, name, version } = target;
    let metadata = build_dir_atomically(&out, |tmp| {
        let check = write_model(tmp)?;
        let (diff_1, diff_n) = (check.max_abs_diff_batch1, check.max_abs_diff_batch_n);
        if !(diff_n <= TOLERANCE && diff_1 <= TOLERANCE) {
            return Err(Error::Invalid(format!(
                "{}: the exported model disagrees with the trained one \
                 (max |difference| {diff_1:.3e} at batch 1, {diff_n:.3e} at batch {}; \
                 allowed {TOLERANCE:e})",
                run_dir.display(),
                check.rows
            )));
        }
        let features = run_dir.join("features.json");
        std::fs::copy(&features, tmp.join("features.json")).map_err(|e| Error::io(&features, e))?;
        // History counters start where the data ends.
        if ds.features.history.is_some() {
            let state = ds.dir.join(crate::features::history::STATE_FILE);
            std::fs::copy(&state, tmp.join(crate::features::history::STATE_FILE))
                .map_err(|e| Error::io(&state, e))?;
        }
        // A post-hoc calibrator saved with the run travels with the model.
        let calibration = Calibrator::load_from(run_dir)?;
        if let Some(c) = &calibration {
            c.save_to(tmp)?;
        }
        let metrics: serde_json::Value = read_json(&run_dir.join("metrics.json"))?;
        let metadata = BundleMetadata {
            bundle_version: BUNDLE_VERSION,
            format: format.into(),
            name: name.clone(),
            version: version.clone(),
            model: info.model.clone(),
            run: info.run.clone(),
            run_dir: run_dir.clone(),
            data: info.data.clone(),
            created: now_rfc3339(),
            train_commit: info.commit.clone(),
            export_commit: git_commit(),
            ctr_dl_version: env!("CARGO_PKG_VERSION").into(),
            num_fields: ds.meta.num_fields,
            num_dense: ds.meta.num_dense,
            vocab_size: ds.meta.vocab_size as usize,
            parameters: info.parameters,
            config,
            metrics: serde_json::json!({
                "best_step": metrics.get("best_step"),
                "valid": metrics.get("valid"),
                "test": metrics.get("test"),
                "truth": metrics.get("truth"),
            }),
            check,
            calibration: calibration.map(|c| c.method().to_string()),
        };
        write_json(&tmp.join("metadata.json"), &metadata)?;
        Ok(metadata)
    })?;
    Ok(ExportReport { out, metadata })
}
