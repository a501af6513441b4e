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
mod train;

pub use config::{is_gbdt_experiment, GbdtExperiment, LightGbmConfig};
#[cfg(feature = "lightgbm")]
pub use train::{load_gbdt_run, train_gbdt, GbdtRun};

use crate::features::map::Encoded;

/// The model's name in `run.json` and bundles.
pub const LIGHTGBM: &str = "lightgbm";
/// The model file of a LightGBM run (in its checkpoint directory) or bundle.
pub const MODEL_FILE: &str = "model.lgb";

/// LightGBM's input matrix of encoded rows, row-major `[rows, F + D]`: each
/// categorical field's index within the field (0 missing, 1 out of
/// vocabulary, as the feature map assigns them), then the dense inputs.
pub fn matrix(e: &Encoded, offsets: &[u32], num_dense: usize) -> Vec<f32> {
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
pub fn not_built() -> crate::error::DataError {
    crate::error::DataError::Invalid(
        "this ctr-dl was built without LightGBM: build with `--features lightgbm` \
         (the README's commands do)"
            .into(),
    )
}
