//! The deep models' side of [`crate::scoring`]: a run's best weights
//! ([`DeepRun`]), which export traces to TorchScript, and a TorchScript
//! bundle's module ([`TorchScript`]), which serving loads.
use std::path::{Path, PathBuf};

use tch::{CModule, Device, Kind, Tensor};

use super::trainer::{load_run, torch_err, Loaded};
use crate::data::writer::Split;
use crate::error::{Error, Result};
use crate::features::cache::{Batch, Loader, LoaderOptions};
use crate::features::map::Rows;
use crate::features::EncodedDataset;
use crate::scoring::{max_abs_diff, ExportCheck, OpenRun, RunModel, Scorer, FORMAT_TORCHSCRIPT};

/// Rows per forward pass when scoring a whole split.
const CHUNK_ROWS: usize = 16_384;

/// A deep run's model at its best checkpoint.
pub struct DeepRun {
    net: Loaded,
    /// Categorical fields and dense inputs of a row.
    width: (usize, usize),
    /// The run directory, for messages.
    run_dir: PathBuf,
}

/// Open a deep run on `device`.
pub fn open_run(run_dir: &Path, device: Device) -> Result<OpenRun> {
    let (cfg, info, ds, net) = load_run(run_dir, device)?;
    let model = Box::new(DeepRun {
        net,
        width: (ds.meta.num_fields, ds.meta.num_dense),
        run_dir: run_dir.to_path_buf(),
    });
    OpenRun::new(info, &cfg.name, &cfg, ds, model)
}

/// `ids` and `dense` of `x` as the model's input tensors `[rows, nf]` and
/// `[rows, nd]` (on the CPU).
fn input_tensors(x: Rows<'_>, (nf, nd): (usize, usize)) -> (Tensor, Tensor) {
    let rows = x.rows as i64;
    let ids: Vec<i64> = x.ids.iter().map(|&i| i as i64).collect();
    let ids = Tensor::from_slice(&ids).view([rows, nf as i64]);
    let dense = Tensor::from_slice(x.dense).view([rows, nd as i64]);
    (ids, dense)
}

impl Scorer for DeepRun {
    fn score(&self, x: Rows<'_>) -> Result<Vec<f64>> {
        let _guard = tch::no_grad_guard();
        let mut out = Vec::with_capacity(x.rows);
        let (nf, nd) = self.width;
        for start in (0..x.rows).step_by(CHUNK_ROWS) {
            let end = (start + CHUNK_ROWS).min(x.rows);
            let (ids, dense) = input_tensors(
                Rows {
                    rows: end - start,
                    ids: &x.ids[start * nf..end * nf],
                    dense: &x.dense[start * nd..end * nd],
                },
                self.width,
            );
            out.extend(
                self.net
                    .probs_of(&ids, &dense)
                    .map_err(|e| torch_err(&self.run_dir, e))?,
            );
        }
        Ok(out)
    }

    fn device(&self) -> Device {
        self.net.device
    }
}

impl RunModel for DeepRun {
    fn bundle_format(&self) -> &'static str {
        FORMAT_TORCHSCRIPT
    }

    /// Trace the model on the CPU to `model.pt`; the check runs on the
    /// module as saved, loaded back.
    fn write_bundle_model(
        &mut self,
        dir: &Path,
        ds: &EncodedDataset,
        check_rows: usize,
    ) -> Result<ExportCheck> {
        let run_dir = &self.run_dir;
        let check = first_batch(ds, check_rows)?;
        self.net.vs.freeze();
        let _guard = tch::no_grad_guard();
        let model = &self.net.model;
        let mut forward = |x: &[Tensor]| vec![model.forward_t(&x[0], &x[1], false).sigmoid()];
        let module = CModule::create_by_tracing(
            "CtrModel",
            "forward",
            &[check.ids.shallow_clone(), check.dense.shallow_clone()],
            &mut forward,
        )
        .map_err(|e| torch_err(run_dir, e))?;
        let model_pt = dir.join("model.pt");
        module
            .save(&model_pt)
            .map_err(|e| torch_err(&model_pt, e))?;
        drop(module);
        let loaded =
            CModule::load_on_device(&model_pt, Device::Cpu).map_err(|e| torch_err(&model_pt, e))?;
        let probs = |t: Tensor| {
            Vec::<f64>::try_from(t.to_kind(Kind::Double)).map_err(|e| torch_err(&model_pt, e))
        };
        let want = probs(model.forward_t(&check.ids, &check.dense, false).sigmoid())?;
        let got = loaded
            .forward_ts(&[&check.ids, &check.dense])
            .map_err(|e| torch_err(&model_pt, e))?;
        let diff_n = max_abs_diff(&probs(got)?, &want);
        let mut diff_1 = 0f64;
        for r in 0..check.rows.min(16) {
            let ids = check.ids.narrow(0, r as i64, 1);
            let dense = check.dense.narrow(0, r as i64, 1);
            let got = loaded
                .forward_ts(&[&ids, &dense])
                .map_err(|e| torch_err(&model_pt, e))?;
            diff_1 = diff_1.max(max_abs_diff(&probs(got)?, &want[r..r + 1]));
        }
        Ok(ExportCheck {
            rows: check.rows,
            max_abs_diff_batch1: diff_1,
            max_abs_diff_batch_n: diff_n,
        })
    }
}

/// The first `rows` rows of the test split (fewer if the split is smaller).
fn first_batch(ds: &EncodedDataset, rows: usize) -> Result<Batch> {
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
        None => Err(Error::Invalid(format!(
            "{}: the test split is empty; export checks the module on test rows",
            ds.dir.display()
        ))),
    }
}

/// A TorchScript bundle's `model.pt`: `forward(cat_ids: i64[B, F], dense:
/// f32[B, D]) -> f32[B]`.
pub struct TorchScript {
    module: CModule,
    /// Categorical fields and dense inputs of a row.
    width: (usize, usize),
    device: Device,
    /// The bundle directory, for messages.
    dir: PathBuf,
}

impl TorchScript {
    /// Load `dir/model.pt`, whose rows are `width` (fields, dense inputs)
    /// wide, onto `device`.
    pub fn load(dir: &Path, width: (usize, usize), device: Device) -> Result<TorchScript> {
        let model_pt = dir.join("model.pt");
        if !model_pt.is_file() {
            return Err(Error::Invalid(format!(
                "{}: {}",
                model_pt.display(),
                if model_pt.exists() {
                    "not a file"
                } else {
                    "missing"
                }
            )));
        }
        let module =
            CModule::load_on_device(&model_pt, device).map_err(|e| torch_err(&model_pt, e))?;
        Ok(TorchScript {
            module,
            width,
            device,
            dir: dir.to_path_buf(),
        })
    }
}

impl Scorer for TorchScript {
    fn score(&self, x: Rows<'_>) -> Result<Vec<f64>> {
        let _guard = tch::no_grad_guard();
        let (ids, dense) = input_tensors(x, self.width);
        let p = self
            .module
            .forward_ts(&[ids.to(self.device), dense.to(self.device)])
            .map_err(|e| torch_err(&self.dir, e))?;
        let p = Vec::<f32>::try_from(p.to(Device::Cpu)).map_err(|e| torch_err(&self.dir, e))?;
        Ok(p.into_iter().map(f64::from).collect())
    }

    fn device(&self) -> Device {
        self.device
    }
}
