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
use tch::{CModule, Device, Kind, Tensor};

use crate::data::io::{build_dir_atomically, read_json, write_json};
use crate::data::manifest::now_rfc3339;
use crate::data::writer::Split;
use crate::error::{DataError, Result};
use crate::eval::calibrate::Calibrator;
use crate::features::cache::{Batch, Loader, LoaderOptions};
use crate::run::{git_commit, RunInfo};
use crate::train::trainer::{load_run, torch_err};

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

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportCheck {
    pub rows: usize,
    pub max_abs_diff_batch1: f64,
    pub max_abs_diff_batch_n: f64,
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

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double))
        .abs()
        .max()
        .double_value(&[])
}

/// `metadata.json`'s `format` of a TorchScript bundle (`model.pt`) ...
pub const FORMAT_TORCHSCRIPT: &str = "torchscript";
/// ... and of a LightGBM one (`model.lgb`).
pub const FORMAT_LIGHTGBM: &str = "lightgbm";

fn d_format() -> String {
    FORMAT_TORCHSCRIPT.into()
}

/// Export a run's best model as a bundle: TorchScript for a deep run, the
/// LightGBM model file for a LightGBM run.
pub fn export(opts: &ExportOptions) -> Result<ExportReport> {
    let run_dir = &opts.run;
    if !run_dir.join("run.json").exists() {
        return Err(DataError::Invalid(format!(
            "{}: not a run directory (no run.json); runs are written by `ctr-dl train`",
            run_dir.display()
        )));
    }
    let info: RunInfo = read_json(&run_dir.join("run.json"))?;
    if info.model == crate::gbdt::LIGHTGBM {
        #[cfg(feature = "lightgbm")]
        {
            let (cfg, info, ds, run) = crate::gbdt::load_gbdt_run(run_dir)?;
            let config = serde_json::to_value(&cfg)
                .map_err(|e| DataError::Invalid(format!("config: {e}")))?;
            let target = Target::of(opts, &cfg.name)?;
            let rows = opts.check_rows.max(2);
            return write_bundle(opts, target, &info, &ds, config, FORMAT_LIGHTGBM, |dir| {
                gbdt_model(dir, &run, &ds, rows)
            });
        }
        #[cfg(not(feature = "lightgbm"))]
        return Err(crate::gbdt::not_built());
    }
    let (cfg, info, ds, mut net) = load_run(run_dir, Device::Cpu)?;
    let target = Target::of(opts, &cfg.name)?;
    let config =
        serde_json::to_value(&cfg).map_err(|e| DataError::Invalid(format!("config: {e}")))?;

    // Rows to trace with and to check against: the head of the test split.
    let check = first_batch(&ds, opts.check_rows.max(2))?;
    net.vs.freeze();
    let _guard = tch::no_grad_guard();
    let model = &net.model;
    let mut forward = |x: &[Tensor]| vec![model.forward_t(&x[0], &x[1], false).sigmoid()];
    let module = CModule::create_by_tracing(
        "CtrModel",
        "forward",
        &[check.ids.shallow_clone(), check.dense.shallow_clone()],
        &mut forward,
    )
    .map_err(|e| torch_err(run_dir, e))?;
    write_bundle(
        opts,
        target,
        &info,
        &ds,
        config,
        FORMAT_TORCHSCRIPT,
        |dir| {
            let model_pt = dir.join("model.pt");
            module
                .save(&model_pt)
                .map_err(|e| torch_err(&model_pt, e))?;
            drop(module);
            // The check runs on the module as saved, loaded back.
            let loaded = CModule::load_on_device(&model_pt, Device::Cpu)
                .map_err(|e| torch_err(&model_pt, e))?;
            let want = model.forward_t(&check.ids, &check.dense, false).sigmoid();
            let got = loaded
                .forward_ts(&[&check.ids, &check.dense])
                .map_err(|e| torch_err(&model_pt, e))?;
            let diff_n = max_abs_diff(&got, &want);
            let mut diff_1 = 0f64;
            for r in 0..check.rows.min(16) as i64 {
                let ids = check.ids.narrow(0, r, 1);
                let dense = check.dense.narrow(0, r, 1);
                let got = loaded
                    .forward_ts(&[&ids, &dense])
                    .map_err(|e| torch_err(&model_pt, e))?;
                diff_1 = diff_1.max(max_abs_diff(&got, &want.narrow(0, r, 1)));
            }
            Ok(ExportCheck {
                rows: check.rows,
                max_abs_diff_batch1: diff_1,
                max_abs_diff_batch_n: diff_n,
            })
        },
    )
}

/// Copy a LightGBM run's model file into the bundle and check the copy, as
/// loaded back, against the run's booster on the head of the test split.
#[cfg(feature = "lightgbm")]
fn gbdt_model(
    dir: &Path,
    run: &crate::gbdt::GbdtRun,
    ds: &crate::features::cache::EncodedDataset,
    rows: usize,
) -> Result<ExportCheck> {
    use crate::gbdt::{lgbm::Booster, matrix, MODEL_FILE};
    let e = ds.read_all(Split::Test)?;
    if e.rows == 0 {
        return Err(DataError::Invalid(format!(
            "{}: the test split is empty; export checks the model on test rows",
            ds.dir.display()
        )));
    }
    let n = rows.min(e.rows);
    let cols = run.offsets.len() + run.num_dense;
    let x = matrix(&e, &run.offsets, run.num_dense);
    let x = &x[..n * cols];
    let path = dir.join(MODEL_FILE);
    let text = run
        .booster
        .to_model_string(0)
        .map_err(|err| DataError::Invalid(format!("{}: {err}", path.display())))?;
    crate::data::io::atomic_write(&path, text.as_bytes())?;
    let loaded = Booster::from_file(&path)
        .map_err(|err| DataError::Invalid(format!("{}: {err}", path.display())))?;
    let lg = |r: std::result::Result<Vec<f64>, crate::gbdt::lgbm::LgbmError>| {
        r.map_err(|err| DataError::Invalid(format!("{}: {err}", path.display())))
    };
    let want = run.predict(x)?;
    let got = lg(loaded.predict(x, 0, ""))?;
    let diff = |a: &[f64], b: &[f64]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    };
    let diff_n = diff(&got, &want);
    let mut diff_1 = 0f64;
    for r in 0..n.min(16) {
        let one = lg(loaded.predict(&x[r * cols..(r + 1) * cols], 0, "num_threads=1"))?;
        diff_1 = diff_1.max(diff(&one, &want[r..r + 1]));
    }
    Ok(ExportCheck {
        rows: n,
        max_abs_diff_batch1: diff_1,
        max_abs_diff_batch_n: diff_n,
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
            return Err(DataError::Invalid(format!(
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
            return Err(DataError::Invalid(format!(
                "{}: the exported model disagrees with the trained one \
                 (max |difference| {diff_1:.3e} at batch 1, {diff_n:.3e} at batch {}; \
                 allowed {TOLERANCE:e})",
                run_dir.display(),
                check.rows
            )));
        }
        let features = run_dir.join("features.json");
        std::fs::copy(&features, tmp.join("features.json"))
            .map_err(|e| DataError::io(&features, e))?;
        // History counters start where the data ends.
        if ds.features.history.is_some() {
            let state = ds.dir.join(crate::features::history::STATE_FILE);
            std::fs::copy(&state, tmp.join(crate::features::history::STATE_FILE))
                .map_err(|e| DataError::io(&state, e))?;
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

/// The first `rows` rows of the test split (fewer if the split is smaller).
fn first_batch(ds: &crate::features::cache::EncodedDataset, rows: usize) -> Result<Batch> {
    let mut loader = Loader::new(
        ds,
        Split::Test,
        LoaderOptions {
            batch_size: rows,
            prefetch: 1,
            ..Default::default()
        },
    )?;
    match loader.next() {
        Some(b) => b,
        None => Err(DataError::Invalid(format!(
            "{}: the test split is empty; export checks the module on test rows",
            ds.dir.display()
        ))),
    }
}
