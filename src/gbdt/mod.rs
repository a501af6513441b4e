//! Gradient-boosted trees (LightGBM) on the same splits and feature map as
//! the deep models: `ctr-dl baseline --config experiments/lightgbm.toml`.
//!
//! A LightGBM run directory has the deep runs' layout (`config.toml`,
//! `features.json`, `run.json`, `metrics.json`, TensorBoard events) plus
//! `importance.json`; the model file is `checkpoints/<run>/model.lgb`, cut at
//! the best round. The C++ library is behind the `lightgbm` cargo feature.
pub mod config;
#[cfg(feature = "lightgbm")]
pub mod lgbm;
#[cfg(feature = "lightgbm")]
mod scoring;
#[cfg(feature = "lightgbm")]
mod train;

pub use config::{is_gbdt_experiment, GbdtExperiment, LightGbmConfig};
#[cfg(feature = "lightgbm")]
pub use train::{load_gbdt_run, train_gbdt, GbdtRun};

use std::path::Path;

use crate::error::Result;
use crate::features::map::Rows;
use crate::features::FeatureMap;
use crate::run::{TrainOptions, TrainReport};
use crate::scoring::{OpenRun, Scorer};

// The crate's only switches on the `lightgbm` feature are in this folder:
// without it, every way in below is an error that says how to build it.

/// Train a LightGBM experiment.
pub fn train(cfg: &GbdtExperiment, opts: &TrainOptions) -> Result<TrainReport> {
    #[cfg(feature = "lightgbm")]
    return train_gbdt(cfg, opts);
    #[cfg(not(feature = "lightgbm"))]
    {
        let _ = (cfg, opts);
        Err(not_built())
    }
}

/// Open a finished LightGBM run for prediction.
pub fn open_run(run_dir: &Path) -> Result<OpenRun> {
    #[cfg(feature = "lightgbm")]
    return scoring::open_run(run_dir);
    #[cfg(not(feature = "lightgbm"))]
    Err(crate::error::Error::Invalid(format!(
        "{}: {}",
        run_dir.display(),
        not_built()
    )))
}

/// Load a LightGBM bundle's model (`dir/model.lgb`), which must read the
/// columns of `map`.
pub fn load_bundle(dir: &Path, map: &FeatureMap) -> Result<Box<dyn Scorer + Send + Sync>> {
    #[cfg(feature = "lightgbm")]
    return Ok(Box::new(scoring::load_bundle(dir, map)?));
    #[cfg(not(feature = "lightgbm"))]
    {
        let _ = map;
        Err(crate::error::Error::Invalid(format!(
            "{}: {}",
            dir.display(),
            not_built()
        )))
    }
}

/// The model's name in `run.json` and bundles.
pub const LIGHTGBM: &str = "lightgbm";
/// The model file of a LightGBM run (in its checkpoint directory) or bundle.
pub const MODEL_FILE: &str = "model.lgb";

/// LightGBM's input matrix of encoded rows, row-major `[rows, F + D]`: each
/// categorical field's index within the field (0 missing, 1 out of
/// vocabulary, as the feature map assigns them), then the dense inputs.
pub fn matrix(e: Rows<'_>, offsets: &[u32], num_dense: usize) -> Vec<f32> {
    let nf = offsets.len();
    let mut out = Vec::with_capacity(e.rows * (nf + num_dense));
    for r in 0..e.rows {
        let ids = &e.ids[r * nf..(r + 1) * nf];
        out.extend(
            ids.iter()
                .zip(offsets)
                .map(|(&id, &o)| (id as u32 - o) as f32),
        );
        out.extend_from_slice(&e.dense[r * num_dense..(r + 1) * num_dense]);
    }
    out
}

/// The error of a LightGBM feature missing from this build.
pub fn not_built() -> crate::error::Error {
    crate::error::Error::Invalid(
        "this ctr-dl was built without LightGBM: build with `--features lightgbm` \
         (the README's commands do)"
            .into(),
    )
}
