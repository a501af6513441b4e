//! The one place that picks a model family: from `run.json`'s `model` for a
//! run, from `metadata.json`'s `format` for a bundle. Everything after
//! training (eval, report, export, serve) opens models through here and then
//! sees only the traits of [`crate::scoring`].
use std::path::Path;

use tch::Device;

use crate::data::io::read_json;
use crate::error::{Error, Result};
use crate::features::FeatureMap;
use crate::gbdt;
use crate::run::RunInfo;
use crate::scoring::{OpenRun, Scorer, FORMAT_LIGHTGBM, FORMAT_TORCHSCRIPT};
use crate::train::scoring as deep;

/// Open a finished run; deep models on `device`, LightGBM on the CPU.
pub fn open_run(run_dir: &Path, device: Device) -> Result<OpenRun> {
    if !run_dir.join("run.json").exists() {
        return Err(Error::Invalid(format!(
            "{}: not a run directory (no run.json); runs are written by `ctr-dl train`",
            run_dir.display()
        )));
    }
    let info: RunInfo = read_json(&run_dir.join("run.json"))?;
    if info.model == gbdt::LIGHTGBM {
        return gbdt::open_run(run_dir);
    }
    deep::open_run(run_dir, device)
}

/// Load the model of the bundle in `dir`, whose `metadata.json` names
/// `format` and whose feature map is `map`.
pub fn load_bundle(
    format: &str,
    dir: &Path,
    map: &FeatureMap,
    device: Device,
) -> Result<Box<dyn Scorer + Send + Sync>> {
    match format {
        FORMAT_TORCHSCRIPT => Ok(Box::new(deep::TorchScript::load(
            dir,
            (map.num_fields(), map.num_dense()),
            device,
        )?)),
        FORMAT_LIGHTGBM => gbdt::load_bundle(dir, map),
        other => Err(Error::Invalid(format!(
            "{}: unknown bundle format `{other}` (torchscript or lightgbm)",
            dir.join("metadata.json").display()
        ))),
    }
}
