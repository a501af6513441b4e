//! The one scoring interface: what every trained model is to the stages that
//! use it, whatever its family.
//!
//! - [`Scorer`]: encoded rows in, click probabilities out. Serving holds a
//!   bundle's model as one; evaluation, reports and export hold a run's.
//! - [`RunModel`]: a finished run's model, which can also write itself into a
//!   bundle (and check the copy) and may know its own feature importance.
//!
//! Each family keeps its side beside its own code: the deep models in
//! `train/scoring.rs` (a run's weights, a TorchScript bundle), LightGBM in
//! `gbdt/scoring.rs`. [`crate::family`] is the one place that picks a family,
//! from `run.json`'s model or a bundle's format, so a new family (XGBoost, an
//! ensemble) is one new file and one arm there.
use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::Device;

use crate::data::writer::Split;
use crate::error::{Error, Result};
use crate::features::map::{binary_labels, Encoded, Rows};
use crate::features::EncodedDataset;
use crate::run::RunInfo;

/// `metadata.json`'s `format` of a TorchScript bundle (`model.pt`) ...
pub const FORMAT_TORCHSCRIPT: &str = "torchscript";
/// ... and of a LightGBM one (`model.lgb`).
pub const FORMAT_LIGHTGBM: &str = "lightgbm";

/// Encoded rows to click probabilities.
pub trait Scorer {
    /// The model's own (uncalibrated) probabilities of `x`, one per row.
    fn score(&self, x: Rows<'_>) -> Result<Vec<f64>>;

    /// The device it computes on.
    fn device(&self) -> Device {
        Device::Cpu
    }
}

/// A finished run's model.
pub trait RunModel: Scorer {
    /// The bundle format it exports to ([`FORMAT_TORCHSCRIPT`], [`FORMAT_LIGHTGBM`]).
    fn bundle_format(&self) -> &'static str;

    /// Write the bundle's model file(s) into `dir`, load them back, and
    /// compare their probabilities with this model's on the head of `ds`'s
    /// test split (up to `check_rows` rows, and row by row on the first 16).
    fn write_bundle_model(
        &mut self,
        dir: &Path,
        ds: &EncodedDataset,
        check_rows: usize,
    ) -> Result<ExportCheck>;

    /// The model's own importance of each input column (the feature map's
    /// fields, then its dense inputs), where the family has one (LightGBM's
    /// total gain); `None` otherwise.
    fn gain_importance(&self) -> Result<Option<Vec<f64>>> {
        Ok(None)
    }
}

/// Export's self-check: the largest absolute difference between the bundle's
/// model, as loaded back, and the run's, at batch 1 and at batch `rows`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportCheck {
    pub rows: usize,
    pub max_abs_diff_batch1: f64,
    pub max_abs_diff_batch_n: f64,
}

/// A finished run opened for prediction.
pub struct OpenRun {
    pub info: RunInfo,
    /// The experiment's name (the default bundle name).
    pub name: String,
    /// The resolved experiment config, as bundles record it.
    pub config: serde_json::Value,
    pub ds: EncodedDataset,
    pub model: Box<dyn RunModel>,
}

impl OpenRun {
    /// A run of the experiment `config` (named `name`) and its model.
    pub fn new(
        info: RunInfo,
        name: &str,
        config: &impl Serialize,
        ds: EncodedDataset,
        model: Box<dyn RunModel>,
    ) -> Result<OpenRun> {
        let config = serde_json::to_value(config).map_err(|source| Error::Json {
            what: format!("{name}: config"),
            source,
        })?;
        Ok(OpenRun {
            info,
            name: name.to_string(),
            config,
            ds,
            model,
        })
    }

    /// Click probabilities of encoded rows.
    pub fn predict(&self, e: &Encoded) -> Result<Vec<f64>> {
        self.model.score(e.view())
    }

    /// Probabilities and labels of a whole split.
    pub fn predict_split(&self, s: Split) -> Result<(Vec<f64>, Vec<u8>, Encoded)> {
        if self.ds.split(s).rows == 0 {
            return Err(Error::Invalid(format!(
                "{}: the {} split is empty",
                self.ds.meta.source.display(),
                s.name()
            )));
        }
        let e = self.ds.read_all(s)?;
        let p = self.predict(&e)?;
        let y = binary_labels(&e.labels);
        Ok((p, y, e))
    }
}

/// The largest absolute difference between two equally long lists.
pub fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}
