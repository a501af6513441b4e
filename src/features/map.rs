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

use arrow::array::{Array, Int8Array, RecordBatch};
use serde::{Deserialize, Serialize};

use super::config::{MissingPolicy, TimePart};
use super::hashing::{hash_value, HASH_VERSION};
use super::history::HistorySpec;
use super::raw::{cross_token, numeric, token, view, RawValue};
use super::target::TargetSpec;
use crate::data::parse::hour_weekday;
use crate::data::schema::ColumnKind;
use crate::error::{Error, Result};

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
    pub(super) lookup: HashMap<Box<str>, u32>,
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

/// Encoded rows: `ids` is `[rows, F]` global embedding rows, `dense` `[rows, D]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Encoded {
    pub rows: usize,
    pub ids: Vec<i32>,
    pub dense: Vec<f32>,
    pub labels: Vec<f32>,
}

impl Encoded {
    /// The rows, borrowed, as a scorer reads them.
    pub fn view(&self) -> Rows<'_> {
        Rows {
            rows: self.rows,
            ids: &self.ids,
            dense: &self.dense,
        }
    }
}

/// Encoded rows, borrowed: `ids` `[rows, F]`, `dense` `[rows, D]`, row-major;
/// what every model family scores ([`crate::scoring::Scorer`]).
#[derive(Debug, Clone, Copy)]
pub struct Rows<'a> {
    pub rows: usize,
    pub ids: &'a [i32],
    pub dense: &'a [f32],
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

pub(super) fn signed_log(x: f64) -> f64 {
    x.signum() * x.abs().ln_1p()
}

impl FeatureMap {
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

    /// Write `features.json` atomically: the map, and under `inputs` what a
    /// client needs to build the model's inputs without ctr-dl
    /// ([`FeatureMap::layout`]; reading the map ignores it).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut value = serde_json::to_value(self).map_err(|e| Error::json(path, e))?;
        if let serde_json::Value::Object(m) = &mut value {
            m.insert("inputs".into(), self.layout());
        }
        let text = serde_json::to_string(&value).map_err(|e| Error::json(path, e))?;
        crate::data::io::atomic_write(path, text.as_bytes())
    }

    /// The model's inputs, described for a reader of `features.json`: the
    /// rule of the `ids` slots, each categorical field's columns, rows and
    /// encoding, and each dense input in order with its formula (the
    /// target-encoded and history inputs included).
    pub fn layout(&self) -> serde_json::Value {
        use serde_json::json;
        let ids: Vec<serde_json::Value> = self
            .categorical
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let columns = if f.cross.is_empty() {
                    vec![f.column.clone()]
                } else {
                    f.cross.clone()
                };
                let encoding = match &f.transform {
                    CatTransform::Vocab { .. } => "vocab: slot 2 + the value's place in `values`",
                    CatTransform::LogBucket { .. } => {
                        "log bucket: the token floor(ln(x)^2) for x > 2 (else x), then as vocab"
                    }
                    CatTransform::Hash { .. } => {
                        "hash: slot 1 + xxh3(column, token, hash.seed) mod buckets (no out of vocabulary)"
                    }
                    CatTransform::Time { .. } => "time part: slot 1 + the part of the UTC time",
                    CatTransform::Frequency { .. } => {
                        "frequency: slot 2 + floor(log2(the value's train count)), at most 33"
                    }
                };
                json!({
                    "index": i,
                    "field": f.name,
                    "columns": columns,
                    "offset": f.offset,
                    "size": f.size,
                    "encoding": encoding,
                })
            })
            .collect();
        let mut dense: Vec<serde_json::Value> = self
            .dense
            .iter()
            .map(|f| {
                let formula = match &f.transform {
                    DenseTransform::Standardize { mean, std, log } => format!(
                        "({} - {mean}) / {std}; 0 when missing",
                        if *log {
                            format!("sign(x) * ln(1 + |{}|)", f.column)
                        } else {
                            f.column.clone()
                        }
                    ),
                    DenseTransform::MissingIndicator => {
                        format!("1 if {} is missing, else 0", f.column)
                    }
                };
                json!({ "name": f.name, "formula": formula })
            })
            .collect();
        if let Some(t) = &self.target {
            dense.extend(t.names().into_iter().zip(&t.columns).map(|(name, c)| {
                json!({
                    "name": name,
                    "formula": format!(
                        "logit((clicks + {s} * {p}) / (rows + {s})) - logit({p}), clicks and \
                         rows of the value of {c} in train (target.tables)",
                        s = t.smoothing,
                        p = t.prior
                    ),
                })
            }));
        }
        if let Some(h) = &self.history {
            dense.extend(h.names().into_iter().map(|name| {
                json!({
                    "name": name,
                    "formula": "history of the key before the row's time (history.time_column), \
                                from live counters (history.state, /feedback): imps ln(1 + \
                                impressions), clicks ln(1 + clicks), ctr the smoothed rate's \
                                logit offset, recent ln(1 + decayed impressions), since_imp and \
                                since_click the decay since the last one; then (x - mean) / std \
                                and clip * tanh(z / clip) with history.mean, std, clip",
                })
            }));
        }
        for (i, d) in dense.iter_mut().enumerate() {
            d["index"] = json!(i);
        }
        json!({
            "ids": {
                "shape": "[rows, fields] int64: ids[r][f] = offset[f] + slot",
                "slots": "0: missing value; 1: out of vocabulary (vocab, log-bucket and \
                          frequency fields); values from 2 (hash and time-part fields: from 1)",
                "fields": ids,
            },
            "dense": {
                "shape": "[rows, dense] float32, in this order",
                "inputs": dense,
            },
            "vocab_size": self.vocab_size,
        })
    }

    /// Read a `features.json`.
    pub fn load(path: &Path) -> Result<FeatureMap> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut map: FeatureMap = serde_json::from_str(&text).map_err(|e| Error::Config {
            path: path.into(),
            message: e.to_string(),
        })?;
        if map.version != FEATURE_MAP_VERSION || map.hash.version != HASH_VERSION {
            return Err(Error::Config {
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
        let mut out = self.encode_inputs(batch)?;
        let n = out.rows;
        let label = batch
            .column_by_name(&self.label)
            .and_then(|c| c.as_any().downcast_ref::<Int8Array>())
            .ok_or_else(|| {
                Error::Invalid(format!(
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

    /// Encode the inputs of a record batch of raw columns, labels or not
    /// (`labels` stays empty). History inputs are zero: they come from
    /// counters, not from the row.
    pub fn encode_inputs(&self, batch: &RecordBatch) -> Result<Encoded> {
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
    pub(super) fn size(&self) -> u32 {
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
    pub(super) fn new(name: String, column: String, transform: CatTransform) -> Self {
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
}
