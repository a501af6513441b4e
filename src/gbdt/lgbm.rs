//! A small safe layer over LightGBM's C API. Datasets are made here from a
//! row-major `f32` matrix with the parameter string (so `categorical_feature`
//! is honoured), and training runs one boosting round at a time so the
//! trainer can log, evaluate and stop early itself.
//!
//! The `lightgbm` feature links the `lib_lightgbm.so` that the
//! `lightgbm==4.7.0` wheel ships (scripts/setup.sh installs it into the
//! project venv; build.rs links it and puts it on the rpath), so the Rust
//! baseline and the Python package are the same library. The twenty C
//! functions used are declared by hand in [`sys`] rather than taken from a
//! `-sys` crate: `lightgbm3-sys`, the maintained one, compiles LightGBM's C++
//! from source with CMake and generates its bindings with bindgen and
//! libclang, which cost a fresh build nine minutes on one core for these
//! declarations (issue 31).
//!
//! Every call that can fail returns LightGBM's own message.
use std::ffi::{c_char, c_void, CStr, CString};
use std::path::Path;

use crate::error::LightgbmError;

/// The part of LightGBM 4's C API (`include/LightGBM/c_api.h`) this module
/// calls, declared as the header declares it. build.rs links the library.
#[allow(non_snake_case)]
mod sys {
    use std::ffi::{c_char, c_int, c_void};

    pub type DatasetHandle = *mut c_void;
    pub type BoosterHandle = *mut c_void;

    extern "C" {
        pub fn LGBM_GetLastError() -> *const c_char;
        pub fn LGBM_DatasetCreateFromMat(
            data: *const c_void,
            data_type: c_int,
            nrow: i32,
            ncol: i32,
            is_row_major: c_int,
            parameters: *const c_char,
            reference: DatasetHandle,
            out: *mut DatasetHandle,
        ) -> c_int;
        pub fn LGBM_DatasetSetField(
            handle: DatasetHandle,
            field_name: *const c_char,
            field_data: *const c_void,
            num_element: c_int,
            data_type: c_int,
        ) -> c_int;
        pub fn LGBM_DatasetSetFeatureNames(
            handle: DatasetHandle,
            feature_names: *mut *const c_char,
            num_feature_names: c_int,
        ) -> c_int;
        pub fn LGBM_DatasetFree(handle: DatasetHandle) -> c_int;
        pub fn LGBM_BoosterCreate(
            train_data: DatasetHandle,
            parameters: *const c_char,
            out: *mut BoosterHandle,
        ) -> c_int;
        pub fn LGBM_BoosterAddValidData(handle: BoosterHandle, valid_data: DatasetHandle) -> c_int;
        pub fn LGBM_BoosterCreateFromModelfile(
            filename: *const c_char,
            out_num_iterations: *mut c_int,
            out: *mut BoosterHandle,
        ) -> c_int;
        pub fn LGBM_BoosterGetNumFeature(handle: BoosterHandle, out_len: *mut c_int) -> c_int;
        pub fn LGBM_BoosterUpdateOneIter(
            handle: BoosterHandle,
            produced_empty_tree: *mut c_int,
        ) -> c_int;
        pub fn LGBM_BoosterGetCurrentIteration(
            handle: BoosterHandle,
            out_iteration: *mut c_int,
        ) -> c_int;
        pub fn LGBM_BoosterGetEvalCounts(handle: BoosterHandle, out_len: *mut c_int) -> c_int;
        pub fn LGBM_BoosterGetEvalNames(
            handle: BoosterHandle,
            len: c_int,
            out_len: *mut c_int,
            buffer_len: usize,
            out_buffer_len: *mut usize,
            out_strs: *mut *mut c_char,
        ) -> c_int;
        pub fn LGBM_BoosterGetEval(
            handle: BoosterHandle,
            data_idx: c_int,
            out_len: *mut c_int,
            out_results: *mut f64,
        ) -> c_int;
        pub fn LGBM_BoosterGetPredict(
            handle: BoosterHandle,
            data_idx: c_int,
            out_len: *mut i64,
            out_result: *mut f64,
        ) -> c_int;
        pub fn LGBM_BoosterRollbackOneIter(handle: BoosterHandle) -> c_int;
        pub fn LGBM_BoosterPredictForMat(
            handle: BoosterHandle,
            data: *const c_void,
            data_type: c_int,
            nrow: i32,
            ncol: i32,
            is_row_major: c_int,
            predict_type: c_int,
            start_iteration: c_int,
            num_iteration: c_int,
            parameter: *const c_char,
            out_len: *mut i64,
            out_result: *mut f64,
        ) -> c_int;
        pub fn LGBM_BoosterSaveModelToString(
            handle: BoosterHandle,
            start_iteration: c_int,
            num_iteration: c_int,
            feature_importance_type: c_int,
            buffer_len: i64,
            out_len: *mut i64,
            out_str: *mut c_char,
        ) -> c_int;
        pub fn LGBM_BoosterFeatureImportance(
            handle: BoosterHandle,
            num_iteration: c_int,
            importance_type: c_int,
            out_results: *mut f64,
        ) -> c_int;
        pub fn LGBM_BoosterFree(handle: BoosterHandle) -> c_int;
    }
}

const DTYPE_FLOAT32: i32 = 0;
const PREDICT_NORMAL: i32 = 0;
const IMPORTANCE_SPLIT: i32 = 0;
const IMPORTANCE_GAIN: i32 = 1;

pub type LgbmResult<T> = std::result::Result<T, LightgbmError>;

fn check(rc: i32) -> LgbmResult<()> {
    if rc == 0 {
        return Ok(());
    }
    // SAFETY: LGBM_GetLastError returns a NUL-terminated thread-local string.
    let msg = unsafe { CStr::from_ptr(sys::LGBM_GetLastError()) };
    Err(LightgbmError(msg.to_string_lossy().into_owned()))
}

fn cstring(s: &str) -> LgbmResult<CString> {
    CString::new(s).map_err(|_| LightgbmError(format!("NUL byte in {s:?}")))
}

/// A binned training or validation matrix.
pub struct Dataset {
    handle: sys::DatasetHandle,
    rows: usize,
}

impl Dataset {
    /// `data` is row-major `[rows, cols]`; `params` is LightGBM's `k=v k=v`
    /// string (binning and `categorical_feature`). A validation set passes
    /// its training set as `reference`, so both share the bins.
    pub fn from_rows(
        data: &[f32],
        cols: usize,
        labels: &[f32],
        params: &str,
        reference: Option<&Dataset>,
    ) -> LgbmResult<Dataset> {
        let rows = labels.len();
        if data.len() != rows * cols {
            return Err(LightgbmError(format!(
                "matrix of {} values is not {rows} rows x {cols} columns",
                data.len()
            )));
        }
        let p = cstring(params)?;
        let mut handle: sys::DatasetHandle = std::ptr::null_mut();
        // SAFETY: `data` holds rows * cols f32 values, as declared; LightGBM
        // copies what it needs before returning.
        check(unsafe {
            sys::LGBM_DatasetCreateFromMat(
                data.as_ptr() as *const c_void,
                DTYPE_FLOAT32,
                rows as i32,
                cols as i32,
                1,
                p.as_ptr(),
                reference.map_or(std::ptr::null_mut(), |r| r.handle),
                &mut handle,
            )
        })?;
        let ds = Dataset { handle, rows };
        let field = cstring("label")?;
        // SAFETY: `labels` holds `rows` f32 values.
        check(unsafe {
            sys::LGBM_DatasetSetField(
                ds.handle,
                field.as_ptr(),
                labels.as_ptr() as *const c_void,
                rows as i32,
                DTYPE_FLOAT32,
            )
        })?;
        Ok(ds)
    }

    /// Name the columns (shown in the model file and importances).
    pub fn set_feature_names(&mut self, names: &[String]) -> LgbmResult<()> {
        let owned: Vec<CString> = names
            .iter()
            .map(|n| cstring(&n.replace(char::is_whitespace, "_")))
            .collect::<LgbmResult<_>>()?;
        let mut ptrs: Vec<*const c_char> = owned.iter().map(|c| c.as_ptr()).collect();
        // SAFETY: `ptrs` points at live NUL-terminated strings.
        check(unsafe {
            sys::LGBM_DatasetSetFeatureNames(self.handle, ptrs.as_mut_ptr(), ptrs.len() as i32)
        })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }
}

impl Drop for Dataset {
    fn drop(&mut self) {
        // SAFETY: the handle came from LGBM_DatasetCreateFromMat and is freed once.
        unsafe {
            sys::LGBM_DatasetFree(self.handle);
        }
    }
}

/// A boosted model, in training or loaded from a model file.
pub struct Booster {
    handle: sys::BoosterHandle,
    cols: usize,
}

// SAFETY: LightGBM's Booster guards its state with its own (shared) mutex:
// predictions may run from several threads, and training is driven from one.
unsafe impl Send for Booster {}
unsafe impl Sync for Booster {}

impl Booster {
    /// A new booster on `train` with `params`; `valid` sets are evaluated
    /// after every round (data index 1, 2, ...).
    pub fn new(train: &Dataset, valid: &[&Dataset], params: &str) -> LgbmResult<Booster> {
        let p = cstring(params)?;
        let mut handle: sys::BoosterHandle = std::ptr::null_mut();
        // SAFETY: `train` is a live dataset; the booster keeps a reference to
        // it, and the caller keeps the datasets alive while training.
        check(unsafe { sys::LGBM_BoosterCreate(train.handle, p.as_ptr(), &mut handle) })?;
        let mut b = Booster { handle, cols: 0 };
        for v in valid {
            // SAFETY: as above.
            check(unsafe { sys::LGBM_BoosterAddValidData(b.handle, v.handle) })?;
        }
        b.cols = b.num_features()?;
        Ok(b)
    }

    /// Load a model file (`model.lgb`).
    pub fn from_file(path: &Path) -> LgbmResult<Booster> {
        let p = cstring(&path.to_string_lossy())?;
        let (mut iters, mut handle) = (0i32, std::ptr::null_mut());
        // SAFETY: plain out-parameters.
        check(unsafe {
            sys::LGBM_BoosterCreateFromModelfile(p.as_ptr(), &mut iters, &mut handle)
        })?;
        let mut b = Booster { handle, cols: 0 };
        b.cols = b.num_features()?;
        Ok(b)
    }

    fn num_features(&self) -> LgbmResult<usize> {
        let mut n = 0i32;
        // SAFETY: plain out-parameter.
        check(unsafe { sys::LGBM_BoosterGetNumFeature(self.handle, &mut n) })?;
        Ok(n as usize)
    }

    /// Columns the model reads.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// One boosting round; true when no further split could be made.
    pub fn update(&mut self) -> LgbmResult<bool> {
        let mut finished = 0i32;
        // SAFETY: plain out-parameter.
        check(unsafe { sys::LGBM_BoosterUpdateOneIter(self.handle, &mut finished) })?;
        Ok(finished != 0)
    }

    /// Rounds trained so far.
    pub fn iterations(&self) -> LgbmResult<usize> {
        let mut n = 0i32;
        // SAFETY: plain out-parameter.
        check(unsafe { sys::LGBM_BoosterGetCurrentIteration(self.handle, &mut n) })?;
        Ok(n as usize)
    }

    /// Names of the metrics `eval` returns, in order.
    pub fn eval_names(&self) -> LgbmResult<Vec<String>> {
        const LEN: usize = 64;
        let mut count = 0i32;
        // SAFETY: plain out-parameter.
        check(unsafe { sys::LGBM_BoosterGetEvalCounts(self.handle, &mut count) })?;
        let mut bufs = vec![[0u8; LEN]; count as usize];
        let mut ptrs: Vec<*mut c_char> = bufs.iter_mut().map(|b| b.as_mut_ptr().cast()).collect();
        let (mut n, mut needed) = (0i32, 0usize);
        // SAFETY: `count` buffers of LEN bytes each, as declared.
        check(unsafe {
            sys::LGBM_BoosterGetEvalNames(
                self.handle,
                count,
                &mut n,
                LEN,
                &mut needed,
                ptrs.as_mut_ptr(),
            )
        })?;
        if needed > LEN {
            return Err(LightgbmError(format!(
                "metric name longer than {LEN} bytes"
            )));
        }
        Ok(bufs
            .iter()
            .take(n as usize)
            .map(|b| {
                let end = b.iter().position(|&c| c == 0).unwrap_or(LEN);
                String::from_utf8_lossy(&b[..end]).into_owned()
            })
            .collect())
    }

    /// The metrics of data set `idx` (0 train, 1.. valid) at the current round.
    pub fn eval(&self, idx: i32, count: usize) -> LgbmResult<Vec<f64>> {
        let mut out = vec![0f64; count];
        let mut n = 0i32;
        // SAFETY: `out` has room for every metric (count = eval_names().len()).
        check(unsafe { sys::LGBM_BoosterGetEval(self.handle, idx, &mut n, out.as_mut_ptr()) })?;
        out.truncate(n as usize);
        Ok(out)
    }

    /// The current probabilities of data set `idx` (0 train, 1.. valid),
    /// kept up to date by training itself: no pass over the trees.
    pub fn current_predictions(&self, idx: i32, rows: usize) -> LgbmResult<Vec<f64>> {
        let mut out = vec![0f64; rows];
        let mut n = 0i64;
        // SAFETY: `out` has room for the data set's rows (one class).
        check(unsafe { sys::LGBM_BoosterGetPredict(self.handle, idx, &mut n, out.as_mut_ptr()) })?;
        out.truncate(n as usize);
        Ok(out)
    }

    /// Drop the last round.
    pub fn rollback(&mut self) -> LgbmResult<()> {
        // SAFETY: no pointers.
        check(unsafe { sys::LGBM_BoosterRollbackOneIter(self.handle) })
    }

    /// Click probabilities of row-major `[rows, cols]` data with the first
    /// `iterations` rounds (0: all). `params` e.g. `num_threads=1`.
    pub fn predict(&self, data: &[f32], iterations: usize, params: &str) -> LgbmResult<Vec<f64>> {
        if self.cols == 0 || data.len() % self.cols != 0 {
            return Err(LightgbmError(format!(
                "{} values are not whole rows of {} columns",
                data.len(),
                self.cols
            )));
        }
        let rows = data.len() / self.cols;
        let mut out = vec![0f64; rows];
        let mut n = 0i64;
        let p = cstring(params)?;
        // SAFETY: `data` is rows x cols f32 values and `out` has one slot a row.
        check(unsafe {
            sys::LGBM_BoosterPredictForMat(
                self.handle,
                data.as_ptr() as *const c_void,
                DTYPE_FLOAT32,
                rows as i32,
                self.cols as i32,
                1,
                PREDICT_NORMAL,
                0,
                iterations as i32,
                p.as_ptr(),
                &mut n,
                out.as_mut_ptr(),
            )
        })?;
        out.truncate(n as usize);
        Ok(out)
    }

    /// The model text of the first `iterations` rounds (0: all).
    pub fn to_model_string(&self, iterations: usize) -> LgbmResult<String> {
        let mut len = 0i64;
        let mut buf = vec![0u8; 1 << 20];
        for _ in 0..2 {
            // SAFETY: `buf` has `buf.len()` bytes; LightGBM reports the size it
            // needs in `len` when that is more.
            check(unsafe {
                sys::LGBM_BoosterSaveModelToString(
                    self.handle,
                    0,
                    iterations as i32,
                    IMPORTANCE_SPLIT,
                    buf.len() as i64,
                    &mut len,
                    buf.as_mut_ptr().cast(),
                )
            })?;
            if (len as usize) <= buf.len() {
                break;
            }
            buf = vec![0u8; len as usize];
        }
        buf.truncate((len as usize).saturating_sub(1));
        String::from_utf8(buf).map_err(|_| LightgbmError("model text is not UTF-8".into()))
    }

    /// Total gain (or split count) per column with the first `iterations`
    /// rounds (0: all).
    pub fn importance(&self, iterations: usize, gain: bool) -> LgbmResult<Vec<f64>> {
        let mut out = vec![0f64; self.cols];
        let kind = if gain {
            IMPORTANCE_GAIN
        } else {
            IMPORTANCE_SPLIT
        };
        // SAFETY: `out` has one slot a column.
        check(unsafe {
            sys::LGBM_BoosterFeatureImportance(
                self.handle,
                iterations as i32,
                kind,
                out.as_mut_ptr(),
            )
        })?;
        Ok(out)
    }
}

impl Drop for Booster {
    fn drop(&mut self) {
        // SAFETY: the handle came from LightGBM and is freed once.
        unsafe {
            sys::LGBM_BoosterFree(self.handle);
        }
    }
}
