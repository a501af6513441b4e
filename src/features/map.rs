//! The feature map: everything needed to turn raw column values into model
//! input, fitted on the train split only and saved as `features.json`. It is the
//! contract between training and serving: the trainer's encoded shards and the
//! server's requests go through the same [`FeatureMap::encode_batch`] /
//! [`FeatureMap::encode_row`] code.
//!
//! Model input per row: `F` categorical ids in one shared embedding table
//! (field `f` owns rows `offset[f] .. offset[f] + size[f]`; index 0 of each
//! field is its missing value, index 1 of a vocabulary field its
//! out-of-vocabulary bucket) and `D` dense floats.
use std::collections::HashMap;
use std::path::Path;

use arrow::array::{
    Array, Float64Array, Int64Array, Int8Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use serde::{Deserialize, Serialize};

use super::config::{Encoding, FeatureConfig, MissingPolicy, TimePart};
use super::hashing::{hash_value, HASH_VERSION};
use super::history::HistorySpec;
use super::target::TargetSpec;
use crate::data::manifest::DatasetManifest;
use crate::data::reader::{ReaderOptions, ShardReader};
use crate::data::schema::{ColumnKind, DatasetSchema};
use crate::data::simulate::hour_weekday;
use crate::data::writer::Split;
use crate::error::{DataError, Result};

/// Version of the features.json layout.
pub const FEATURE_MAP_VERSION: u32 = 1;
/// Index of the missing value in every categorical field.
pub const MISSING: u32 = 0;
/// Index of the out-of-vocabulary bucket in vocabulary fields.
pub const OOV: u32 = 1;

/// How a categorical field maps a value to an index within the field.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CatTransform {
    /// `values[i]` has index `2 + i`; values are ordered by train count, descending.
    Vocab { min_count: u64, values: Vec<String> },
    /// Index `1 + xxh3(column, 0x1F, value) mod buckets`.
    Hash { buckets: u32 },
    /// The Criteo x4 transform of a number to a token, then a vocabulary.
    LogBucket {
        min_count: u64,
        missing_as_zero: bool,
        values: Vec<String>,
    },
    /// Index `1 + part of the time`.
    Time { part: TimePart },
    /// Frequency encoding: the value's train count, bucketised:
    /// `2 + min(floor(log2(count)), 31)` for values seen at least
    /// `min_count` times, the out-of-vocabulary index for rarer and unseen
    /// ones. `counts` holds those values with their counts.
    Frequency {
        min_count: u64,
        counts: Vec<(String, u64)>,
    },
}

/// The frequency bucket of a train count.
pub fn frequency_bucket(count: u64) -> u32 {
    2 + (63 - count.max(1).leading_zeros()).min(31)
}

/// One categorical field.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CatField {
    /// Feature name (the column, or `<column>_<part>` for time parts).
    pub name: String,
    /// The raw column it reads (for a cross, the columns joined with `+`).
    pub column: String,
    /// A cross: the columns whose values, joined, are this field's value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cross: Vec<String>,
    #[serde(flatten)]
    pub transform: CatTransform,
    /// First row of the field in the shared embedding table.
    pub offset: u32,
    /// Rows of the field, missing and OOV slots included.
    pub size: u32,
    #[serde(skip)]
    lookup: HashMap<Box<str>, u32>,
}

/// How a dense input is computed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DenseTransform {
    Standardize {
        mean: f64,
        std: f64,
        log: bool,
    },
    /// 1 when the column is missing, else 0.
    MissingIndicator,
}

/// One dense input.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DenseField {
    pub name: String,
    pub column: String,
    #[serde(flatten)]
    pub transform: DenseTransform,
}

/// Hashing parameters, stored so any client can reproduce the buckets.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HashInfo {
    pub algorithm: String,
    pub seed: u64,
    pub version: u32,
}

/// The fitted feature map (`features.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FeatureMap {
    pub version: u32,
    pub dataset: String,
    pub label: String,
    pub hash: HashInfo,
    pub categorical: Vec<CatField>,
    pub dense: Vec<DenseField>,
    /// Rows of the shared embedding table: the sum of the field sizes.
    pub vocab_size: u64,
    /// Raw columns read, with their kinds: what a request may carry.
    pub columns: Vec<(String, ColumnKind)>,
    /// Train rows the map was fitted on.
    pub fitted_rows: u64,
    /// Whether a missing number reads as 0.
    pub numeric_missing: MissingPolicy,
    /// Target-encoded inputs, after the dense fields: from all of train here,
    /// out of fold for train rows in the encoded cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetSpec>,
    /// Historical inputs, after the target inputs: filled by the offline
    /// replay ([`super::history::compute`]), not by the row encoders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<HistorySpec>,
}

/// One raw value, as a request or a shard holds it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RawValue<'a> {
    Missing,
    Str(&'a str),
    Int(i64),
    Float(f64),
    /// Milliseconds since the epoch.
    TimeMs(i64),
}

/// Encoded rows: `ids` is `[rows, F]` global embedding rows, `dense` `[rows, D]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Encoded {
    pub rows: usize,
    pub ids: Vec<i32>,
    pub dense: Vec<f32>,
    pub labels: Vec<f32>,
}

/// Encoded labels (0.0 / 1.0) as the 0/1 bytes the metrics take.
pub fn binary_labels(labels: &[f32]) -> Vec<u8> {
    labels.iter().map(|&y| (y > 0.5) as u8).collect()
}

/// The Criteo x4 bucket of a number, as a token.
pub fn log_bucket_token(x: f64) -> String {
    if x > 2.0 {
        format!("{}", (x.ln() * x.ln()).floor() as i64)
    } else if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

fn signed_log(x: f64) -> f64 {
    x.signum() * x.abs().ln_1p()
}

/// One plan entry while fitting.
enum Plan {
    Cat {
        column: String,
        enc: Encoding,
        min_count: u64,
        buckets: u32,
    },
    Time {
        column: String,
        part: TimePart,
    },
    /// A cross of columns, encoded as one categorical field.
    Cross {
        columns: Vec<String>,
        enc: Encoding,
        min_count: u64,
        buckets: u32,
    },
    Dense {
        column: String,
        log: bool,
    },
}

#[derive(Default)]
struct Welford {
    n: u64,
    mean: f64,
    m2: f64,
    missing: u64,
}

impl Welford {
    fn add(&mut self, x: f64) {
        self.n += 1;
        let d = x - self.mean;
        self.mean += d / self.n as f64;
        self.m2 += d * (x - self.mean);
    }
}

impl FeatureMap {
    /// Fit on the train split of the dataset at `dir`.
    pub fn fit(dir: &Path, config: &FeatureConfig, progress: bool) -> Result<FeatureMap> {
        config.validate().map_err(DataError::Invalid)?;
        let manifest = DatasetManifest::load(dir)?;
        let schema = &manifest.schema;
        let plan = make_plan(schema, config)?;
        let columns: Vec<String> = used_columns(&plan);
        let mut counts: Vec<HashMap<String, u64>> = plan.iter().map(|_| HashMap::new()).collect();
        let mut moments: Vec<Welford> = plan.iter().map(|_| Welford::default()).collect();
        let missing_zero = config.numeric_missing == MissingPolicy::Zero;

        let opts = ReaderOptions {
            batch_size: 65_536,
            columns: Some(columns.clone()),
            ..Default::default()
        };
        let reader = ShardReader::open_split(dir, Split::Train, opts)?;
        let bar =
            crate::progress::Progress::rows(progress, reader.total_rows(), "fitting features");
        let mut rows = 0u64;
        for batch in reader {
            let batch = batch?;
            for (i, p) in plan.iter().enumerate() {
                match p {
                    Plan::Cat { column, enc, .. } if *enc != Encoding::Hash => {
                        let col = view(&batch, column)?;
                        let c = &mut counts[i];
                        for r in 0..batch.num_rows() {
                            let tok = match (col.get(r), enc) {
                                (RawValue::Missing, Encoding::LogBucket) if missing_zero => {
                                    Some("0".to_string())
                                }
                                (v, Encoding::LogBucket) => numeric(v).map(log_bucket_token),
                                (v, _) => token(v),
                            };
                            if let Some(t) = tok {
                                if let Some(n) = c.get_mut(&t) {
                                    *n += 1;
                                } else {
                                    c.insert(t, 1);
                                }
                            }
                        }
                    }
                    Plan::Cross { columns, enc, .. } if *enc != Encoding::Hash => {
                        let cols = columns
                            .iter()
                            .map(|c| view(&batch, c))
                            .collect::<Result<Vec<_>>>()?;
                        let c = &mut counts[i];
                        for r in 0..batch.num_rows() {
                            if let Some(t) = cross_token(cols.iter().map(|v| v.get(r))) {
                                *c.entry(t).or_insert(0) += 1;
                            }
                        }
                    }
                    Plan::Dense { column, log } => {
                        let col = view(&batch, column)?;
                        let w = &mut moments[i];
                        for r in 0..batch.num_rows() {
                            match numeric(col.get(r)) {
                                Some(x) => w.add(if *log { signed_log(x) } else { x }),
                                None if missing_zero => w.add(0.0),
                                None => w.missing += 1,
                            }
                        }
                    }
                    _ => {}
                }
            }
            rows += batch.num_rows() as u64;
            bar.set(rows, rows);
        }
        bar.finish_and_clear();
        if rows == 0 {
            return Err(DataError::Invalid(format!(
                "{}: the train split is empty; nothing to fit features on",
                dir.display()
            )));
        }

        let mut categorical = Vec::new();
        let mut dense = Vec::new();
        for (i, p) in plan.into_iter().enumerate() {
            match p {
                Plan::Cat {
                    column,
                    enc,
                    min_count,
                    buckets,
                } => {
                    let values = std::mem::take(&mut counts[i]);
                    let transform = cat_transform(enc, min_count, buckets, values, missing_zero);
                    let name = match enc {
                        Encoding::Frequency => format!("{column}_freq"),
                        _ => column.clone(),
                    };
                    categorical.push(CatField::new(name, column, transform));
                }
                Plan::Cross {
                    columns,
                    enc,
                    min_count,
                    buckets,
                } => {
                    let values = std::mem::take(&mut counts[i]);
                    let transform = cat_transform(enc, min_count, buckets, values, missing_zero);
                    let mut f = CatField::new(columns.join("_x_"), columns.join("+"), transform);
                    f.cross = columns;
                    categorical.push(f);
                }
                Plan::Time { column, part } => {
                    let name = format!("{column}_{}", part.name());
                    categorical.push(CatField::new(name, column, CatTransform::Time { part }));
                }
                Plan::Dense { column, log } => {
                    let w = &moments[i];
                    let var = if w.n > 1 { w.m2 / w.n as f64 } else { 0.0 };
                    let std = if var > 1e-24 { var.sqrt() } else { 1.0 };
                    dense.push(DenseField {
                        name: column.clone(),
                        column: column.clone(),
                        transform: DenseTransform::Standardize {
                            mean: w.mean,
                            std,
                            log,
                        },
                    });
                    if w.missing > 0 {
                        dense.push(DenseField {
                            name: format!("{column}_missing"),
                            column,
                            transform: DenseTransform::MissingIndicator,
                        });
                    }
                }
            }
        }
        let kinds: HashMap<&str, ColumnKind> =
            schema.kept().map(|c| (c.name.as_str(), c.kind)).collect();
        let mut map = FeatureMap {
            version: FEATURE_MAP_VERSION,
            dataset: schema.name.clone(),
            label: schema.label().to_string(),
            hash: HashInfo {
                algorithm: "xxh3-64(column, 0x1F, value) mod buckets".into(),
                seed: config.hash_seed,
                version: HASH_VERSION,
            },
            categorical,
            dense,
            vocab_size: 0,
            columns: columns
                .iter()
                .chain(
                    config
                        .target_encoding
                        .iter()
                        .flat_map(|t| t.columns.iter())
                        .filter(|c| !columns.contains(c)),
                )
                .map(|c| (c.clone(), kinds[c.as_str()]))
                .collect(),
            fitted_rows: rows,
            numeric_missing: config.numeric_missing,
            target: match &config.target_encoding {
                Some(t) => {
                    let (totals, _) = target_stats(dir, t, schema)?;
                    let tr = &manifest.train;
                    let prior = ((tr.positives as f64 + 0.5) / (tr.rows as f64 + 1.0))
                        .clamp(1e-6, 1.0 - 1e-6);
                    let tables = totals
                        .into_iter()
                        .map(|m| {
                            let mut v: Vec<(String, u64, u64)> =
                                m.into_iter().map(|(k, (c, n))| (k, c, n)).collect();
                            v.sort_unstable_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
                            v
                        })
                        .collect();
                    Some(TargetSpec::new(t, prior, tables))
                }
                None => None,
            },
            history: match config.history() {
                Some(h) => Some(history_spec(h, schema, &manifest)?),
                None => None,
            },
        };
        map.finish();
        Ok(map)
    }

    /// Offsets, sizes and lookup tables from the transforms.
    fn finish(&mut self) {
        if let Some(t) = &mut self.target {
            t.finish();
        }
        let mut offset = 0u64;
        for f in &mut self.categorical {
            f.size = f.transform.size();
            f.offset = offset as u32;
            offset += f.size as u64;
            f.lookup = match &f.transform {
                CatTransform::Vocab { values, .. } | CatTransform::LogBucket { values, .. } => {
                    values
                        .iter()
                        .enumerate()
                        .map(|(i, v)| (v.as_str().into(), 2 + i as u32))
                        .collect()
                }
                CatTransform::Frequency { counts, .. } => counts
                    .iter()
                    .map(|(v, n)| (v.as_str().into(), frequency_bucket(*n)))
                    .collect(),
                _ => HashMap::new(),
            };
        }
        self.vocab_size = offset;
    }

    /// Number of categorical fields.
    pub fn num_fields(&self) -> usize {
        self.categorical.len()
    }

    /// Number of dense inputs, the history inputs included.
    pub fn num_dense(&self) -> usize {
        self.history_offset() + self.history.as_ref().map_or(0, |h| h.width())
    }

    /// Where the target inputs start in a row's dense inputs.
    pub fn target_offset(&self) -> usize {
        self.dense.len()
    }

    /// Where the history inputs start in a row's dense inputs.
    pub fn history_offset(&self) -> usize {
        self.dense.len() + self.target.as_ref().map_or(0, |t| t.width())
    }

    /// Names of the dense inputs, in order.
    pub fn dense_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.dense.iter().map(|f| f.name.clone()).collect();
        if let Some(t) = &self.target {
            names.extend(t.names());
        }
        if let Some(h) = &self.history {
            names.extend(h.names());
        }
        names
    }

    /// Field offsets in the shared table.
    pub fn offsets(&self) -> Vec<u32> {
        self.categorical.iter().map(|f| f.offset).collect()
    }

    /// Write `features.json` atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string(self).map_err(|e| DataError::Invalid(e.to_string()))?;
        crate::data::io::atomic_write(path, text.as_bytes())
    }

    /// Read a `features.json`.
    pub fn load(path: &Path) -> Result<FeatureMap> {
        let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
        let mut map: FeatureMap = serde_json::from_str(&text).map_err(|e| DataError::Config {
            path: path.into(),
            message: e.to_string(),
        })?;
        if map.version != FEATURE_MAP_VERSION || map.hash.version != HASH_VERSION {
            return Err(DataError::Config {
                path: path.into(),
                message: format!(
                    "feature map version {} / hash version {} is not the {} / {} this build reads",
                    map.version, map.hash.version, FEATURE_MAP_VERSION, HASH_VERSION
                ),
            });
        }
        map.finish();
        Ok(map)
    }

    /// Encode a record batch of raw columns (a shard batch). The label column
    /// must be present; labels are 0 or 1.
    pub fn encode_batch(&self, batch: &RecordBatch) -> Result<Encoded> {
        let n = batch.num_rows();
        let (nf, nd) = (self.num_fields(), self.num_dense());
        let mut out = Encoded {
            rows: n,
            ids: vec![0; n * nf],
            dense: vec![0.0; n * nd],
            labels: Vec::with_capacity(n),
        };
        let mut buf = Vec::new();
        for (f, field) in self.categorical.iter().enumerate() {
            if !field.cross.is_empty() {
                let cols = field
                    .cross
                    .iter()
                    .map(|c| view(batch, c))
                    .collect::<Result<Vec<_>>>()?;
                for r in 0..n {
                    let t = cross_token(cols.iter().map(|v| v.get(r)));
                    let v = t.as_deref().map_or(RawValue::Missing, RawValue::Str);
                    out.ids[r * nf + f] =
                        (field.offset + field.index(v, self.hash.seed, &mut buf)) as i32;
                }
                continue;
            }
            let col = view(batch, &field.column)?;
            for r in 0..n {
                out.ids[r * nf + f] =
                    (field.offset + field.index(col.get(r), self.hash.seed, &mut buf)) as i32;
            }
        }
        for (d, field) in self.dense.iter().enumerate() {
            let col = view(batch, &field.column)?;
            for r in 0..n {
                out.dense[r * nd + d] = field.value(col.get(r), self.missing_zero()) as f32;
            }
        }
        if let Some(t) = &self.target {
            let first = self.target_offset();
            for (k, c) in t.columns.iter().enumerate() {
                let col = view(batch, c)?;
                for r in 0..n {
                    out.dense[r * nd + first + k] = t.full(k, token(col.get(r)).as_deref());
                }
            }
        }
        let label = batch
            .column_by_name(&self.label)
            .and_then(|c| c.as_any().downcast_ref::<Int8Array>())
            .ok_or_else(|| {
                DataError::Invalid(format!(
                    "the batch has no Int8 label column `{}`",
                    self.label
                ))
            })?;
        out.labels.extend((0..n).map(|r| {
            if label.is_valid(r) && label.value(r) != 0 {
                1.0
            } else {
                0.0
            }
        }));
        Ok(out)
    }

    /// Encode one row given by a lookup of raw values by column name (a
    /// request). Absent columns are missing values; history inputs are zero.
    pub fn encode_row<'a>(&self, get: impl Fn(&str) -> RawValue<'a>) -> (Vec<i32>, Vec<f32>) {
        let mut buf = Vec::new();
        let ids = self
            .categorical
            .iter()
            .map(|f| {
                let index = if f.cross.is_empty() {
                    f.index(get(&f.column), self.hash.seed, &mut buf)
                } else {
                    let t = cross_token(f.cross.iter().map(|c| get(c)));
                    let v = t.as_deref().map_or(RawValue::Missing, RawValue::Str);
                    f.index(v, self.hash.seed, &mut buf)
                };
                (f.offset + index) as i32
            })
            .collect();
        let mut dense: Vec<f32> = self
            .dense
            .iter()
            .map(|f| f.value(get(&f.column), self.missing_zero()) as f32)
            .collect();
        if let Some(t) = &self.target {
            for (k, c) in t.columns.iter().enumerate() {
                dense.push(t.full(k, token(get(c)).as_deref()));
            }
        }
        // History inputs come from counters, not from the row: their slots
        // are left at zero for the caller (the server's live counters).
        dense.resize(self.num_dense(), 0.0);
        (ids, dense)
    }

    fn missing_zero(&self) -> bool {
        self.numeric_missing == MissingPolicy::Zero
    }

    /// A short human summary: one line per field.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for f in &self.categorical {
            let what = match &f.transform {
                CatTransform::Vocab { min_count, values } => {
                    format!("vocab {} values (min count {min_count})", values.len())
                }
                CatTransform::LogBucket {
                    min_count, values, ..
                } => {
                    format!(
                        "log-bucket vocab {} tokens (min count {min_count})",
                        values.len()
                    )
                }
                CatTransform::Hash { buckets } => format!("hash {buckets} buckets"),
                CatTransform::Time { part } => format!("time {}", part.name()),
                CatTransform::Frequency { min_count, counts } => format!(
                    "frequency of {} in train, log2 buckets ({} values counted, min count {min_count})",
                    f.column,
                    counts.len()
                ),
            };
            s.push_str(&format!("  {:<24} {:>10} rows  {what}\n", f.name, f.size));
        }
        for f in &self.dense {
            let what = match &f.transform {
                DenseTransform::Standardize { mean, std, log } => format!(
                    "{}standardised (mean {mean:.4}, std {std:.4})",
                    if *log { "log, " } else { "" }
                ),
                DenseTransform::MissingIndicator => "missing indicator".into(),
            };
            s.push_str(&format!("  {:<24} {:>10}       {what}\n", f.name, "dense"));
        }
        if let Some(h) = &self.history {
            for key in &h.keys {
                s.push_str(&format!(
                    "  hist_{:<19} {:>10}       history of {} before each row ({}: impressions \
                     and clicks {}, CTR smoothed toward {:.4} with weight {}, recent impressions \
                     and recency with half-life {} h)\n",
                    key.join("_x_"),
                    format!("{} dense", super::history::PARTS.len()),
                    key.join(" + "),
                    h.time_column,
                    h.window_hours
                        .map_or("since the start".to_string(), |w| format!(
                            "with half-life {w} h"
                        )),
                    h.prior,
                    h.smoothing,
                    h.half_life_hours
                ));
            }
        }
        s
    }
}

impl CatTransform {
    fn size(&self) -> u32 {
        match self {
            CatTransform::Vocab { values, .. } | CatTransform::LogBucket { values, .. } => {
                2 + values.len() as u32
            }
            CatTransform::Hash { buckets } => 1 + buckets,
            CatTransform::Time { part } => 1 + part.cardinality(),
            CatTransform::Frequency { .. } => 2 + 32,
        }
    }
}

impl CatField {
    fn new(name: String, column: String, transform: CatTransform) -> Self {
        CatField {
            name,
            column,
            cross: Vec::new(),
            transform,
            offset: 0,
            size: 0,
            lookup: HashMap::new(),
        }
    }

    /// The index of a raw value within this field.
    pub fn index(&self, v: RawValue<'_>, seed: u64, buf: &mut Vec<u8>) -> u32 {
        match &self.transform {
            CatTransform::Vocab { .. } | CatTransform::Frequency { .. } => match v {
                RawValue::Missing => MISSING,
                RawValue::Str(s) => self.lookup.get(s).copied().unwrap_or(OOV),
                other => match token(other) {
                    Some(t) => self.lookup.get(t.as_str()).copied().unwrap_or(OOV),
                    None => MISSING,
                },
            },
            CatTransform::Hash { buckets } => {
                let h = match v {
                    RawValue::Missing => return MISSING,
                    RawValue::Str(s) => hash_value(&self.column, s, seed, buf),
                    other => match token(other) {
                        Some(t) => hash_value(&self.column, &t, seed, buf),
                        None => return MISSING,
                    },
                };
                1 + (h % *buckets as u64) as u32
            }
            CatTransform::LogBucket {
                missing_as_zero, ..
            } => {
                let x = match numeric(v) {
                    Some(x) => x,
                    None if *missing_as_zero && v == RawValue::Missing => 0.0,
                    None => return MISSING,
                };
                self.lookup
                    .get(log_bucket_token(x).as_str())
                    .copied()
                    .unwrap_or(OOV)
            }
            CatTransform::Time { part } => {
                let secs = match v {
                    RawValue::TimeMs(ms) => ms.div_euclid(1000),
                    RawValue::Int(s) => s,
                    _ => return MISSING,
                };
                let (hour, weekday) = hour_weekday(secs);
                1 + match part {
                    TimePart::Hour => hour,
                    TimePart::Weekday => weekday,
                    TimePart::Weekend => (weekday >= 5) as u32,
                    TimePart::DayPart => hour / 6,
                }
            }
        }
    }
}

impl DenseField {
    fn value(&self, v: RawValue<'_>, missing_zero: bool) -> f64 {
        let x = numeric(v).or(if missing_zero && v == RawValue::Missing {
            Some(0.0)
        } else {
            None
        });
        match &self.transform {
            DenseTransform::MissingIndicator => x.is_none() as u8 as f64,
            DenseTransform::Standardize { mean, std, log } => match x {
                Some(x) => ((if *log { signed_log(x) } else { x }) - mean) / std,
                None => 0.0,
            },
        }
    }
}

/// The token of a non-string value: integers in decimal, floats in Rust's
/// shortest round-trip form.
pub(crate) fn token(v: RawValue<'_>) -> Option<String> {
    match v {
        RawValue::Missing => None,
        RawValue::Str(s) => Some(s.to_string()),
        RawValue::Int(i) => Some(i.to_string()),
        RawValue::Float(x) => Some(format!("{x}")),
        RawValue::TimeMs(ms) => Some(ms.to_string()),
    }
}

/// The value of a cross: its columns' tokens joined with U+001F; missing
/// when any of them is.
fn cross_token<'a>(values: impl Iterator<Item = RawValue<'a>>) -> Option<String> {
    let mut out = String::new();
    for (i, v) in values.enumerate() {
        if i > 0 {
            out.push('\u{1F}');
        }
        out.push_str(&token(v)?);
    }
    Some(out)
}

fn numeric(v: RawValue<'_>) -> Option<f64> {
    match v {
        RawValue::Int(i) => Some(i as f64),
        RawValue::Float(x) if x.is_finite() => Some(x),
        RawValue::Str(s) => s.trim().parse::<f64>().ok().filter(|x| x.is_finite()),
        _ => None,
    }
}

/// A categorical field's transform from its encoding and train counts.
fn cat_transform(
    enc: Encoding,
    min_count: u64,
    buckets: u32,
    counts: HashMap<String, u64>,
    missing_as_zero: bool,
) -> CatTransform {
    match enc {
        Encoding::Hash => CatTransform::Hash { buckets },
        Encoding::LogBucket => CatTransform::LogBucket {
            min_count,
            missing_as_zero,
            values: frequent(counts, min_count),
        },
        Encoding::Frequency => {
            let mut kept: Vec<(String, u64)> = counts
                .into_iter()
                .filter(|(_, n)| *n >= min_count)
                .collect();
            kept.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            CatTransform::Frequency {
                min_count,
                counts: kept,
            }
        }
        _ => CatTransform::Vocab {
            min_count,
            values: frequent(counts, min_count),
        },
    }
}

/// Values with at least `min_count` occurrences, most frequent first (ties by value).
fn frequent(counts: HashMap<String, u64>, min_count: u64) -> Vec<String> {
    let mut kept: Vec<(String, u64)> = counts
        .into_iter()
        .filter(|(_, n)| *n >= min_count)
        .collect();
    kept.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    kept.into_iter().map(|(v, _)| v).collect()
}

fn make_plan(schema: &DatasetSchema, config: &FeatureConfig) -> Result<Vec<Plan>> {
    for name in config.exclude.iter().chain(config.fields.keys()) {
        if !schema.kept().any(|c| &c.name == name) {
            let have: Vec<&str> = schema.kept().map(|c| c.name.as_str()).collect();
            return Err(DataError::Invalid(format!(
                "features: no column `{name}` in dataset `{}` (have: {})",
                schema.name,
                have.join(", ")
            )));
        }
    }
    let mut plan = Vec::new();
    for c in schema.kept() {
        if config.exclude.contains(&c.name) {
            continue;
        }
        let o = config.fields.get(&c.name).cloned().unwrap_or_default();
        let min_count = o.min_count.unwrap_or(config.min_count);
        let buckets = o.buckets.unwrap_or(config.buckets);
        let enc = match c.kind {
            ColumnKind::Label | ColumnKind::Truth | ColumnKind::Skip => continue,
            ColumnKind::Timestamp => {
                if o.encoding.is_some_and(|e| e != Encoding::Drop) {
                    return Err(DataError::Invalid(format!(
                        "features.fields.{}: a timestamp is encoded by features.time_parts",
                        c.name
                    )));
                }
                if o.encoding != Some(Encoding::Drop) {
                    for &part in &config.time_parts {
                        plan.push(Plan::Time {
                            column: c.name.clone(),
                            part,
                        });
                    }
                }
                continue;
            }
            ColumnKind::Categorical => {
                let e = o.encoding.unwrap_or(config.categorical);
                if !matches!(
                    e,
                    Encoding::Vocab | Encoding::Hash | Encoding::Frequency | Encoding::Drop
                ) {
                    return Err(DataError::Invalid(format!(
                        "features.fields.{}: a categorical column takes vocab, hash, frequency or drop, not {e:?}",
                        c.name
                    )));
                }
                e
            }
            ColumnKind::Integer | ColumnKind::Float => o.encoding.unwrap_or(config.numeric),
        };
        match enc {
            Encoding::Drop => {}
            Encoding::Vocab | Encoding::Hash | Encoding::LogBucket | Encoding::Frequency => plan
                .push(Plan::Cat {
                    column: c.name.clone(),
                    enc,
                    min_count,
                    buckets,
                }),
            Encoding::Standardize | Encoding::LogStandardize => plan.push(Plan::Dense {
                column: c.name.clone(),
                log: enc == Encoding::LogStandardize,
            }),
        }
    }
    for column in &config.frequency {
        check_value_column(schema, column, "features.frequency")?;
        plan.push(Plan::Cat {
            column: column.clone(),
            enc: Encoding::Frequency,
            min_count: config.min_count,
            buckets: config.buckets,
        });
    }
    for cross in &config.crosses {
        let columns: Vec<String> = cross.split('+').map(|c| c.trim().to_string()).collect();
        for c in &columns {
            let ok = schema.kept().any(|k| {
                &k.name == c
                    && !matches!(
                        k.kind,
                        ColumnKind::Label | ColumnKind::Truth | ColumnKind::Skip
                    )
            });
            if !ok {
                return Err(DataError::Invalid(format!(
                    "features.crosses: `{c}` (in `{cross}`) is not a feature column of dataset `{}`",
                    schema.name
                )));
            }
        }
        plan.push(Plan::Cross {
            columns,
            enc: config.categorical,
            min_count: config.min_count,
            buckets: config.buckets,
        });
    }
    if plan.is_empty() {
        return Err(DataError::Invalid(
            "features: every column is excluded or dropped".into(),
        ));
    }
    Ok(plan)
}

fn used_columns(plan: &[Plan]) -> Vec<String> {
    let mut cols: Vec<String> = Vec::new();
    for p in plan {
        let names: &[String] = match p {
            Plan::Cat { column, .. } | Plan::Time { column, .. } | Plan::Dense { column, .. } => {
                std::slice::from_ref(column)
            }
            Plan::Cross { columns, .. } => columns,
        };
        for c in names {
            if !cols.contains(c) {
                cols.push(c.clone());
            }
        }
    }
    cols
}

/// A column whose values can be counted: kept, and not the label, the truth
/// or a timestamp; `setting` names the config key in the error.
fn check_value_column(schema: &DatasetSchema, column: &str, setting: &str) -> Result<()> {
    let ok = schema.kept().any(|k| {
        k.name == column
            && !matches!(
                k.kind,
                ColumnKind::Label | ColumnKind::Truth | ColumnKind::Skip | ColumnKind::Timestamp
            )
    });
    if ok {
        return Ok(());
    }
    Err(DataError::Invalid(format!(
        "{setting}: `{column}` is not a feature column of dataset `{}`",
        schema.name
    )))
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
            .ok_or_else(|| DataError::Invalid(format!("no Int8 label column `{label}`")))?;
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

/// The fitted history settings: key columns checked against the schema, the
/// clock (the configured or first timestamp column), the train click rate.
fn history_spec(
    h: &super::history::HistoryConfig,
    schema: &DatasetSchema,
    manifest: &DatasetManifest,
) -> Result<HistorySpec> {
    let kind = |c: &str| schema.kept().find(|k| k.name == c).map(|k| k.kind);
    let mut keys = Vec::new();
    for key in &h.keys {
        let cols: Vec<String> = key.split('+').map(|c| c.trim().to_string()).collect();
        for c in &cols {
            if kind(c).is_none_or(|k| k == ColumnKind::Truth) {
                return Err(DataError::Invalid(format!(
                    "features.history.keys: `{c}` is not a column of dataset {}",
                    schema.name
                )));
            }
        }
        keys.push(cols);
    }
    let time_column = match &h.time_column {
        Some(t) if kind(t) == Some(ColumnKind::Timestamp) => t.clone(),
        Some(t) => {
            return Err(DataError::Invalid(format!(
                "features.history.time_column: `{t}` is not a timestamp column of dataset {}",
                schema.name
            )))
        }
        None => schema
            .kept()
            .find(|c| c.kind == ColumnKind::Timestamp)
            .map(|c| c.name.clone())
            .ok_or_else(|| {
                DataError::Invalid(format!(
                    "features.history needs a timestamp column; dataset {} has none",
                    schema.name
                ))
            })?,
    };
    let t = &manifest.train;
    Ok(HistorySpec {
        keys,
        smoothing: h.smoothing,
        half_life_hours: h.half_life_hours,
        window_hours: h.window_hours.is_finite().then_some(h.window_hours),
        prior: ((t.positives as f64 + 0.5) / (t.rows as f64 + 1.0)).clamp(1e-6, 1.0 - 1e-6),
        time_column,
        mean: Vec::new(),
        std: Vec::new(),
        clip: (h.clip > 0.0).then_some(h.clip),
    })
}

/// A typed view of one column of a batch.
pub(crate) enum ColumnView<'a> {
    Str(&'a StringArray),
    Int(&'a Int64Array),
    Float(&'a Float64Array),
    Time(&'a TimestampMillisecondArray),
}

impl ColumnView<'_> {
    #[inline]
    pub(crate) fn get(&self, r: usize) -> RawValue<'_> {
        match self {
            ColumnView::Str(a) if a.is_valid(r) => RawValue::Str(a.value(r)),
            ColumnView::Int(a) if a.is_valid(r) => RawValue::Int(a.value(r)),
            ColumnView::Float(a) if a.is_valid(r) => RawValue::Float(a.value(r)),
            ColumnView::Time(a) if a.is_valid(r) => RawValue::TimeMs(a.value(r)),
            _ => RawValue::Missing,
        }
    }
}

pub(crate) fn view<'a>(batch: &'a RecordBatch, name: &str) -> Result<ColumnView<'a>> {
    let col = batch
        .column_by_name(name)
        .ok_or_else(|| DataError::Invalid(format!("the shards have no column `{name}`")))?;
    let any = col.as_any();
    if let Some(a) = any.downcast_ref::<StringArray>() {
        Ok(ColumnView::Str(a))
    } else if let Some(a) = any.downcast_ref::<Int64Array>() {
        Ok(ColumnView::Int(a))
    } else if let Some(a) = any.downcast_ref::<Float64Array>() {
        Ok(ColumnView::Float(a))
    } else if let Some(a) = any.downcast_ref::<TimestampMillisecondArray>() {
        Ok(ColumnView::Time(a))
    } else {
        Err(DataError::Invalid(format!(
            "column `{name}` has type {}, which the feature map cannot read",
            col.data_type()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criteo_x4_buckets() {
        // floor(ln(x)^2) for x > 2, the value otherwise.
        assert_eq!(log_bucket_token(3.0), "1");
        assert_eq!(log_bucket_token(100.0), "21");
        assert_eq!(log_bucket_token(2.0), "2");
        assert_eq!(log_bucket_token(-1.0), "-1");
        assert_eq!(log_bucket_token(0.5), "0.5");
    }

    #[test]
    fn time_parts_of_a_known_instant() {
        // 2026-01-10 is a Saturday; 19:30 UTC is evening.
        let t = RawValue::TimeMs(1_768_073_400_000);
        let index = |part| {
            CatField::new("t".into(), "t".into(), CatTransform::Time { part }).index(
                t,
                0,
                &mut Vec::new(),
            )
        };
        assert_eq!(index(TimePart::Hour), 1 + 19);
        assert_eq!(index(TimePart::Weekday), 1 + 5);
        assert_eq!(index(TimePart::Weekend), 1 + 1);
        assert_eq!(index(TimePart::DayPart), 1 + 3);
        let night = CatField::new(
            "t".into(),
            "t".into(),
            CatTransform::Time {
                part: TimePart::DayPart,
            },
        )
        .index(RawValue::TimeMs(1_768_014_000_000), 0, &mut Vec::new());
        assert_eq!(night, 1, "03:00 UTC is night");
    }

    #[test]
    fn frequent_orders_by_count_then_value() {
        let counts: HashMap<String, u64> = [("b", 3), ("a", 3), ("c", 5), ("d", 1)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert_eq!(frequent(counts, 2), vec!["c", "a", "b"]);
    }
}
