//! Any finished run, deep or LightGBM, as one thing that predicts encoded
//! rows: what `eval`, `compare` and `report` read runs through.
use std::path::Path;

use tch::Device;

use crate::data::io::read_json;
use crate::data::writer::Split;
use crate::error::{DataError, Result};
use crate::features::map::{binary_labels, Encoded};
use crate::features::{Batch, EncodedDataset};
use crate::run::{RunInfo, RunMetrics};
use crate::train::trainer::{load_run, Loaded};

/// A run's model.
pub enum RunModel {
    Deep(Box<Loaded>),
    #[cfg(feature = "lightgbm")]
    Gbdt(crate::gbdt::GbdtRun),
}

/// A finished run opened for prediction.
pub struct OpenRun {
    pub info: RunInfo,
    pub ds: EncodedDataset,
    pub model: RunModel,
}

/// Open a run directory: `run.json` says which kind of model it holds.
pub fn open_run(run_dir: &Path, device: Device) -> Result<OpenRun> {
    if !run_dir.join("run.json").exists() {
        return Err(DataError::Invalid(format!(
            "{}: not a run directory (no run.json)",
            run_dir.display()
        )));
    }
    let info: RunInfo = read_json(&run_dir.join("run.json"))?;
    if info.model == crate::gbdt::LIGHTGBM {
        #[cfg(feature = "lightgbm")]
        {
            let (_cfg, info, ds, run) = crate::gbdt::load_gbdt_run(run_dir)?;
            return Ok(OpenRun {
                info,
                ds,
                model: RunModel::Gbdt(run),
            });
        }
        #[cfg(not(feature = "lightgbm"))]
        return Err(crate::gbdt::not_built());
    }
    let (_cfg, info, ds, net) = load_run(run_dir, device)?;
    Ok(OpenRun {
        info,
        ds,
        model: RunModel::Deep(Box::new(net)),
    })
}

/// A run's `metrics.json`; an error naming the file when it is missing or
/// half written.
pub fn run_metrics(run_dir: &Path) -> Result<RunMetrics> {
    read_json(&run_dir.join("metrics.json"))
}

impl OpenRun {
    /// Click probabilities of encoded rows.
    pub fn predict(&self, e: &Encoded) -> Result<Vec<f64>> {
        let (nf, nd) = (self.ds.meta.num_fields, self.ds.meta.num_dense);
        match &self.model {
            RunModel::Deep(net) => {
                let _guard = tch::no_grad_guard();
                let mut out = Vec::with_capacity(e.rows);
                let rows: Vec<usize> = (0..e.rows).collect();
                for chunk in rows.chunks(16_384) {
                    let b = Batch::from_encoded(e, nf, nd, chunk);
                    out.extend(net.probs(&b).map_err(|err| {
                        DataError::Invalid(format!("{}: {err}", self.ds.dir.display()))
                    })?);
                }
                Ok(out)
            }
            #[cfg(feature = "lightgbm")]
            RunModel::Gbdt(g) => g.predict(&crate::gbdt::matrix(e, &g.offsets, g.num_dense)),
        }
    }

    /// Probabilities and labels of a whole split.
    pub fn predict_split(&self, s: Split) -> Result<(Vec<f64>, Vec<u8>, Encoded)> {
        if self.ds.split(s).rows == 0 {
            return Err(DataError::Invalid(format!(
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
