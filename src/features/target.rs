//! Target encoding: a value's smoothed click rate in train,
//! `(clicks + m * prior) / (rows + m)`, given to the model as its logit
//! offset from the prior's. Valid, test and requests read it from all of
//! train; a train row reads it out of fold (train is cut into `folds` folds
//! by a hash of the row's position and the seed, and a row's value comes
//! from the other folds only), so no row ever sees its own label.
use std::collections::HashMap;
use std::path::Path;

use arrow::array::{Array, Int8Array};
use serde::{Deserialize, Serialize};

use super::hashing::xxh3;
use super::raw::{check_value_column, token, view};
use crate::data::reader::{ReaderOptions, ShardReader};
use crate::data::schema::DatasetSchema;
use crate::data::writer::Split;
use crate::error::{Error, Result};

/// The `[features.target_encoding]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// Columns to encode (each one input, `te_<column>`).
    pub columns: Vec<String>,
    /// Out-of-fold folds of train (default 5).
    #[serde(default = "d_folds")]
    pub folds: u32,
    /// Prior weight m (default 20).
    #[serde(default = "d_smoothing")]
    pub smoothing: f64,
    /// Seed of the fold assignment (default 2018).
    #[serde(default = "d_seed")]
    pub seed: u64,
}

fn d_folds() -> u32 {
    5
}
fn d_smoothing() -> f64 {
    20.0
}
fn d_seed() -> u64 {
    2018
}

impl TargetConfig {
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.columns.is_empty() {
            return Err("features.target_encoding.columns is empty".into());
        }
        if self.folds < 2 {
            return Err("features.target_encoding.folds must be at least 2".into());
        }
        if self.smoothing.is_nan() || self.smoothing <= 0.0 {
            return Err("features.target_encoding.smoothing must be positive".into());
        }
        Ok(())
    }
}

/// The fitted encoding, saved in `features.json`: per column, each train
/// value's clicks and rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetSpec {
    pub columns: Vec<String>,
    pub folds: u32,
    pub smoothing: f64,
    pub seed: u64,
    /// The train click rate.
    pub prior: f64,
    /// Per column: (value, clicks, rows) of every value in train.
    pub tables: Vec<Vec<(String, u64, u64)>>,
    #[serde(skip)]
    lookup: Vec<HashMap<String, (u64, u64)>>,
}

fn logit(p: f64) -> f64 {
    let p = p.clamp(1e-6, 1.0 - 1e-6);
    (p / (1.0 - p)).ln()
}

/// The fold of the train row at `row` (its position in the train split).
pub fn fold_of(seed: u64, row: u64, folds: u32) -> u32 {
    (xxh3(&row.to_le_bytes(), seed) % folds as u64) as u32
}

impl TargetSpec {
    pub fn new(cfg: &TargetConfig, prior: f64, tables: Vec<Vec<(String, u64, u64)>>) -> Self {
        let mut s = TargetSpec {
            columns: cfg.columns.clone(),
            folds: cfg.folds,
            smoothing: cfg.smoothing,
            seed: cfg.seed,
            prior,
            tables,
            lookup: Vec::new(),
        };
        s.finish();
        s
    }

    /// Rebuild the lookup tables (after loading).
    pub fn finish(&mut self) {
        self.lookup = self
            .tables
            .iter()
            .map(|t| t.iter().map(|(v, c, n)| (v.clone(), (*c, *n))).collect())
            .collect();
    }

    pub fn width(&self) -> usize {
        self.columns.len()
    }

    pub fn names(&self) -> Vec<String> {
        self.columns.iter().map(|c| format!("te_{c}")).collect()
    }

    /// The input for `clicks` of `rows`: the smoothed rate's logit offset.
    pub fn value(&self, clicks: f64, rows: f64) -> f32 {
        let p = (clicks + self.smoothing * self.prior) / (rows + self.smoothing);
        (logit(p) - logit(self.prior)) as f32
    }

    /// Column `k`'s input for a token (None: missing), from all of train.
    pub fn full(&self, k: usize, token: Option<&str>) -> f32 {
        let (c, n) = token
            .and_then(|t| self.lookup[k].get(t).copied())
            .unwrap_or((0, 0));
        self.value(c as f64, n as f64)
    }

    /// Column `k`'s out-of-fold input for a train row: all of train minus
    /// the row's fold (`fold_stats` holds each fold's (clicks, rows) per value).
    pub fn out_of_fold(
        &self,
        k: usize,
        token: Option<&str>,
        fold: u32,
        fold_stats: &[HashMap<String, (u64, u64)>],
    ) -> f32 {
        let Some(t) = token else {
            return self.value(0.0, 0.0);
        };
        let (c, n) = self.lookup[k].get(t).copied().unwrap_or((0, 0));
        let (fc, fn_) = fold_stats[fold as usize].get(t).copied().unwrap_or((0, 0));
        self.value((c - fc) as f64, (n - fn_) as f64)
    }
}

/// (clicks, rows) of each value of one column.
pub type ValueCounts = HashMap<String, (u64, u64)>;

/// Per target-encoded column, the value counts over all of train and per
/// out-of-fold fold (by the row's position in train).
pub type TargetStats = (Vec<ValueCounts>, Vec<Vec<ValueCounts>>);

/// One pass over train for the target encoding's statistics.
pub fn target_stats(
    dir: &Path,
    t: &super::target::TargetConfig,
    schema: &DatasetSchema,
) -> Result<TargetStats> {
    for c in &t.columns {
        check_value_column(schema, c, "features.target_encoding.columns")?;
    }
    let label = schema.label().to_string();
    let mut columns = t.columns.clone();
    columns.push(label.clone());
    let reader = ShardReader::open_split(
        dir,
        Split::Train,
        ReaderOptions {
            batch_size: 65_536,
            columns: Some(columns),
            ..Default::default()
        },
    )?;
    let nk = t.columns.len();
    let mut totals: Vec<ValueCounts> = vec![HashMap::new(); nk];
    let mut folds: Vec<Vec<ValueCounts>> = vec![vec![HashMap::new(); t.folds as usize]; nk];
    let mut row = 0u64;
    for batch in reader {
        let batch = batch?;
        let y = batch
            .column_by_name(&label)
            .and_then(|c| c.as_any().downcast_ref::<Int8Array>())
            .ok_or_else(|| Error::Invalid(format!("no Int8 label column `{label}`")))?;
        for (k, c) in t.columns.iter().enumerate() {
            let col = view(&batch, c)?;
            for r in 0..batch.num_rows() {
                let Some(tok) = token(col.get(r)) else {
                    continue;
                };
                let click = (y.is_valid(r) && y.value(r) != 0) as u64;
                let f = super::target::fold_of(t.seed, row + r as u64, t.folds) as usize;
                let e = folds[k][f].entry(tok.clone()).or_default();
                *e = (e.0 + click, e.1 + 1);
                let e = totals[k].entry(tok).or_default();
                *e = (e.0 + click, e.1 + 1);
            }
        }
        row += batch.num_rows() as u64;
    }
    Ok((totals, folds))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Target-encode rows of (token, label) out of fold, from scratch.
    fn encode(rows: &[(&str, u8)], spec_cfg: &TargetConfig) -> Vec<f32> {
        let mut total: HashMap<String, (u64, u64)> = HashMap::new();
        let mut folds: Vec<HashMap<String, (u64, u64)>> =
            vec![HashMap::new(); spec_cfg.folds as usize];
        for (i, (t, y)) in rows.iter().enumerate() {
            let f = fold_of(spec_cfg.seed, i as u64, spec_cfg.folds) as usize;
            for m in [&mut total, &mut folds[f]] {
                let e = m.entry(t.to_string()).or_default();
                e.0 += *y as u64;
                e.1 += 1;
            }
        }
        let tables = vec![total.into_iter().map(|(v, (c, n))| (v, c, n)).collect()];
        let spec = TargetSpec::new(spec_cfg, 0.1, tables);
        rows.iter()
            .enumerate()
            .map(|(i, (t, _))| {
                let f = fold_of(spec.seed, i as u64, spec.folds);
                spec.out_of_fold(0, Some(t), f, &folds)
            })
            .collect()
    }

    #[test]
    fn a_train_rows_own_label_never_reaches_its_encoding() {
        let cfg = TargetConfig {
            columns: vec!["c".into()],
            folds: 5,
            smoothing: 10.0,
            seed: 3,
        };
        let mut rows: Vec<(&str, u8)> = (0..500)
            .map(|i| (["a", "b", "c"][i % 3], (i % 7 == 0) as u8))
            .collect();
        let want = encode(&rows, &cfg);
        for i in [0, 17, 250, 499] {
            rows[i].1 ^= 1;
            let got = encode(&rows, &cfg);
            assert_eq!(got[i], want[i], "row {i} saw its own label");
            // Rows of the same fold do not see it either.
            let f = fold_of(cfg.seed, i as u64, cfg.folds);
            for j in 0..rows.len() {
                if fold_of(cfg.seed, j as u64, cfg.folds) == f {
                    assert_eq!(got[j], want[j], "row {j} (same fold) saw row {i}");
                }
            }
            rows[i].1 ^= 1;
        }
        // Folds are roughly even.
        let n0 = (0..5000u64).filter(|&r| fold_of(3, r, 5) == 0).count();
        assert!((900..1100).contains(&n0), "{n0}");
    }

    #[test]
    fn unseen_and_missing_values_get_the_prior() {
        let cfg = TargetConfig {
            columns: vec!["c".into()],
            folds: 5,
            smoothing: 10.0,
            seed: 3,
        };
        let spec = TargetSpec::new(&cfg, 0.1, vec![vec![("a".into(), 5, 10)]]);
        assert_eq!(spec.full(0, None), 0.0);
        assert_eq!(spec.full(0, Some("zzz")), 0.0);
        let a = (5.0 + 10.0 * 0.1) / (10.0 + 10.0);
        assert!((spec.full(0, Some("a")) as f64 - (logit(a) - logit(0.1))).abs() < 1e-6);
    }
}
