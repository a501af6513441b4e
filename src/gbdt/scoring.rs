//! LightGBM's side of [`crate::scoring`]: a run's booster ([`GbdtRun`]),
//! which exports by copying its model file, and a bundle's `model.lgb`
//! ([`BundleBooster`]), which serving loads.
use std::path::{Path, PathBuf};

use super::lgbm::Booster;
use super::train::{load_gbdt_run, GbdtRun};
use super::{matrix, MODEL_FILE};
use crate::data::writer::Split;
use crate::error::{Error, LightgbmError, Result};
use crate::features::map::Rows;
use crate::features::{EncodedDataset, FeatureMap};
use crate::scoring::{max_abs_diff, ExportCheck, OpenRun, RunModel, Scorer, FORMAT_LIGHTGBM};

fn at(path: &Path) -> impl Fn(LightgbmError) -> Error + '_ {
    move |e| Error::lightgbm(path.display(), e)
}

/// Open a LightGBM run (always on the CPU).
pub fn open_run(run_dir: &Path) -> Result<OpenRun> {
    let (cfg, info, ds, run) = load_gbdt_run(run_dir)?;
    OpenRun::new(info, &cfg.name, &cfg, ds, Box::new(run))
}

impl Scorer for GbdtRun {
    fn score(&self, x: Rows<'_>) -> Result<Vec<f64>> {
        self.predict(&matrix(x, &self.offsets, self.num_dense))
    }
}

impl RunModel for GbdtRun {
    fn bundle_format(&self) -> &'static str {
        FORMAT_LIGHTGBM
    }

    /// Copy the booster into the bundle as `model.lgb` and check the copy,
    /// as loaded back, against the run's booster.
    fn write_bundle_model(
        &mut self,
        dir: &Path,
        ds: &EncodedDataset,
        check_rows: usize,
    ) -> Result<ExportCheck> {
        let e = ds.read_all(Split::Test)?;
        if e.rows == 0 {
            return Err(Error::Invalid(format!(
                "{}: the test split is empty; export checks the model on test rows",
                ds.dir.display()
            )));
        }
        let n = check_rows.min(e.rows);
        let cols = self.offsets.len() + self.num_dense;
        let x = matrix(e.view(), &self.offsets, self.num_dense);
        let x = &x[..n * cols];
        let path = dir.join(MODEL_FILE);
        let text = self.booster.to_model_string(0).map_err(at(&path))?;
        crate::data::io::atomic_write(&path, text.as_bytes())?;
        let loaded = Booster::from_file(&path).map_err(at(&path))?;
        let want = self.predict(x)?;
        let got = loaded.predict(x, 0, "").map_err(at(&path))?;
        let diff_n = max_abs_diff(&got, &want);
        let mut diff_1 = 0f64;
        for r in 0..n.min(16) {
            let one = loaded
                .predict(&x[r * cols..(r + 1) * cols], 0, "num_threads=1")
                .map_err(at(&path))?;
            diff_1 = diff_1.max(max_abs_diff(&one, &want[r..r + 1]));
        }
        Ok(ExportCheck {
            rows: n,
            max_abs_diff_batch1: diff_1,
            max_abs_diff_batch_n: diff_n,
        })
    }

    /// LightGBM's total gain of each column.
    fn gain_importance(&self) -> Result<Option<Vec<f64>>> {
        let gain = self
            .booster
            .importance(0, true)
            .map_err(|e| Error::lightgbm("feature importance", e))?;
        Ok(Some(gain))
    }
}

/// A bundle's `model.lgb`.
pub struct BundleBooster {
    booster: Booster,
    offsets: Vec<u32>,
    num_dense: usize,
    /// The bundle directory, for messages.
    dir: PathBuf,
}

/// Load `dir/model.lgb`, which must read the columns of `map`.
pub fn load_bundle(dir: &Path, map: &FeatureMap) -> Result<BundleBooster> {
    let path = dir.join(MODEL_FILE);
    let booster = Booster::from_file(&path).map_err(at(&path))?;
    if booster.cols() != map.num_fields() + map.num_dense() {
        return Err(Error::Invalid(format!(
            "{}: the model reads {} columns, features.json gives {}",
            path.display(),
            booster.cols(),
            map.num_fields() + map.num_dense()
        )));
    }
    Ok(BundleBooster {
        booster,
        offsets: map.offsets(),
        num_dense: map.num_dense(),
        dir: dir.to_path_buf(),
    })
}

impl Scorer for BundleBooster {
    /// One thread a call: serving runs many calls at once.
    fn score(&self, x: Rows<'_>) -> Result<Vec<f64>> {
        let x = matrix(x, &self.offsets, self.num_dense);
        self.booster
            .predict(&x, 0, "num_threads=1")
            .map_err(at(&self.dir))
    }
}
