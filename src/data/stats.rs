//! `ctr-dl stats DIR`: per split, rows and CTR; per field the distinct count,
//! missing rate and most frequent values with their CTR (and a 95% Wilson
//! interval); for numeric fields min, mean and max; CTR by hour of day and
//! weekday where there is a time column. Memory is bounded: distinct counts
//! turn into HyperLogLog estimates and the value counters keep the heavy
//! hitters only (see [`TopCounter`]).
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

/// The statistics file `ctr-dl stats` writes in a dataset folder (the `_`
/// keeps it out of the table Arrow-family readers see) ...
pub const STATS_FILE: &str = "_stats.json";
/// ... and its name in datasets written before.
pub const LEGACY_STATS_FILE: &str = "stats.json";

use arrow::array::{
    Array, Float64Array, Int64Array, Int8Array, StringArray, TimestampMillisecondArray,
};
use serde::{Deserialize, Serialize};

use super::io::write_json;
use super::manifest::{ratio, DatasetManifest};
use super::parse::hour_weekday;
use super::reader::{ReaderOptions, ShardReader};
use super::schema::ColumnKind;
use super::sketch::{hash_bytes, hash_i64, DistinctCounter};
use super::writer::Split;
use crate::error::{Error, Result};
use crate::progress::Progress;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TopValue {
    pub value: String,
    pub count: u64,
    pub clicks: u64,
    pub ctr: f64,
    /// 95% Wilson score interval of the CTR.
    pub ctr_low: f64,
    pub ctr_high: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NumericStats {
    pub min: f64,
    pub mean: f64,
    pub max: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FieldStats {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ColumnKind,
    pub distinct: u64,
    pub distinct_exact: bool,
    pub missing: u64,
    pub missing_rate: f64,
    pub top: Vec<TopValue>,
    /// False when rare values were pruned: counts of the top values are then
    /// lower bounds, short by at most `top_error`.
    pub top_exact: bool,
    pub top_error: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numeric: Option<NumericStats>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Bucket {
    pub key: u32,
    pub rows: u64,
    pub clicks: u64,
    pub ctr: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SplitStats {
    pub split: Split,
    pub rows: u64,
    pub clicks: u64,
    pub ctr: f64,
    pub fields: Vec<FieldStats>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctr_by_hour: Option<Vec<Bucket>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctr_by_weekday: Option<Vec<Bucket>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DatasetStats {
    pub dataset: String,
    pub label: String,
    pub splits: Vec<SplitStats>,
}

/// Counts of values and their clicks, keeping the heavy hitters in bounded
/// memory: past `cap` entries, every entry at or below the median count is
/// dropped (lossy counting), and the largest dropped count is the error bound.
pub struct TopCounter {
    map: HashMap<u64, (u64, u64, String)>,
    cap: usize,
    error: u64,
    pruned: bool,
}

impl TopCounter {
    pub fn new(cap: usize) -> Self {
        TopCounter {
            map: HashMap::new(),
            cap,
            error: 0,
            pruned: false,
        }
    }

    #[inline]
    pub fn add(&mut self, hash: u64, click: bool, display: impl FnOnce() -> String) {
        let e = self.map.entry(hash).or_insert_with(|| (0, 0, display()));
        e.0 += 1;
        e.1 += click as u64;
        if self.map.len() > self.cap {
            let mut counts: Vec<u64> = self.map.values().map(|v| v.0).collect();
            let mid = counts.len() / 2;
            let (_, &mut median, _) = counts.select_nth_unstable(mid);
            self.map.retain(|_, v| v.0 > median);
            self.error = self.error.max(median);
            self.pruned = true;
        }
    }

    pub fn top(&self, k: usize) -> Vec<TopValue> {
        let mut v: Vec<&(u64, u64, String)> = self.map.values().collect();
        v.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.2.cmp(&b.2)));
        v.into_iter()
            .take(k)
            .map(|(count, clicks, value)| {
                let (lo, hi) = wilson(*clicks, *count);
                TopValue {
                    value: value.clone(),
                    count: *count,
                    clicks: *clicks,
                    ctr: ratio(*clicks, *count),
                    ctr_low: lo,
                    ctr_high: hi,
                }
            })
            .collect()
    }
}

/// 95% Wilson score interval for `k` successes in `n` trials.
pub fn wilson(k: u64, n: u64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let z = 1.959_963_984_540_054;
    let (n, p) = (n as f64, k as f64 / n as f64);
    let denom = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / denom;
    let half = z * ((p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt()) / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// What `ctr-dl eda` needs beyond stats.json, for one field of one split.
#[derive(Debug, Clone, Default)]
pub struct FieldDetail {
    /// (value hash, count) of every value the counter kept, largest count
    /// first: all values when the field's `top_exact` holds. Hashes are
    /// [`hash_bytes`] of the text, [`hash_i64`] of an integer.
    pub counts: Vec<(u64, u64)>,
    /// An evenly spaced sample of the numeric values, in row order.
    pub sample: Vec<f64>,
}

/// Keeps every `stride`-th value, halving itself and doubling the stride when
/// full, so the sample stays evenly spaced over however many rows come.
struct Sampler {
    keep: Vec<f64>,
    stride: u64,
    seen: u64,
}

const SAMPLE_CAP: usize = 20_000;

impl Sampler {
    fn new() -> Self {
        Sampler {
            keep: Vec::new(),
            stride: 1,
            seen: 0,
        }
    }

    #[inline]
    fn add(&mut self, v: f64) {
        if self.seen % self.stride == 0 {
            self.keep.push(v);
            if self.keep.len() >= SAMPLE_CAP {
                let mut i = 0;
                self.keep.retain(|_| {
                    i += 1;
                    i % 2 == 1
                });
                self.stride *= 2;
            }
        }
        self.seen += 1;
    }
}

struct FieldAcc {
    name: String,
    kind: ColumnKind,
    missing: u64,
    distinct: DistinctCounter,
    top: Option<TopCounter>,
    sample: Sampler,
    min: f64,
    max: f64,
    sum: f64,
    n: u64,
}

/// Compute the statistics of every split of the dataset in `dir` and write
/// them to its `_stats.json`.
pub fn dataset_stats(dir: &Path, top_k: usize, progress: bool) -> Result<DatasetStats> {
    let (stats, _) = collect_stats(dir, top_k, progress)?;
    write_json(&dir.join(STATS_FILE), &stats)?;
    Ok(stats)
}

/// The statistics of every split, and per split and field (in the order of
/// `fields`) the counts and samples behind them.
pub fn collect_stats(
    dir: &Path,
    top_k: usize,
    progress: bool,
) -> Result<(DatasetStats, Vec<Vec<FieldDetail>>)> {
    let manifest = DatasetManifest::load(dir)?;
    let mut details = Vec::new();
    let label = manifest.label.clone();
    let mut splits = Vec::new();
    for split in Split::ALL {
        let info = manifest.split(split);
        let bar = Progress::rows(progress, info.rows, &format!("stats {split}"));
        let reader = ShardReader::open(
            manifest.shard_paths(dir, split),
            ReaderOptions {
                batch_size: 65_536,
                ..Default::default()
            },
        )?;
        let schema = reader.schema();
        let mut fields: Vec<FieldAcc> = manifest
            .schema
            .kept()
            .filter(|c| c.kind != ColumnKind::Label)
            .map(|c| FieldAcc {
                name: c.name.clone(),
                kind: c.kind,
                missing: 0,
                distinct: DistinctCounter::default(),
                top: matches!(c.kind, ColumnKind::Categorical | ColumnKind::Integer)
                    .then(|| TopCounter::new(100_000)),
                sample: Sampler::new(),
                min: f64::INFINITY,
                max: f64::NEG_INFINITY,
                sum: 0.0,
                n: 0,
            })
            .collect();
        let time_field = manifest.schema.time_column().map(|c| c.name.clone());
        let mut by_hour = [(0u64, 0u64); 24];
        let mut by_weekday = [(0u64, 0u64); 7];
        let (mut rows, mut clicks) = (0u64, 0u64);
        for batch in reader {
            let batch = batch?;
            let bad = |what: &str| {
                Error::Invalid(format!(
                    "{}: column `{what}` has an unexpected type",
                    dir.display()
                ))
            };
            let labels = batch
                .column_by_name(&label)
                .and_then(|a| a.as_any().downcast_ref::<Int8Array>())
                .ok_or_else(|| bad(&label))?;
            let y: Vec<bool> = labels.values().iter().map(|&v| v == 1).collect();
            rows += y.len() as u64;
            clicks += y.iter().filter(|&&v| v).count() as u64;
            for f in fields.iter_mut() {
                let col = batch.column(schema.index_of(&f.name).map_err(|_| bad(&f.name))?);
                f.missing += col.null_count() as u64;
                match f.kind {
                    ColumnKind::Categorical => {
                        let a = col
                            .as_any()
                            .downcast_ref::<StringArray>()
                            .ok_or_else(|| bad(&f.name))?;
                        for (i, v) in a.iter().enumerate() {
                            if let Some(v) = v {
                                let h = hash_bytes(v.as_bytes());
                                f.distinct.insert(h);
                                if let Some(t) = f.top.as_mut() {
                                    t.add(h, y[i], || v.to_string());
                                }
                            }
                        }
                    }
                    ColumnKind::Integer => {
                        let a = col
                            .as_any()
                            .downcast_ref::<Int64Array>()
                            .ok_or_else(|| bad(&f.name))?;
                        for (i, v) in a.iter().enumerate() {
                            if let Some(v) = v {
                                let h = hash_i64(v);
                                f.distinct.insert(h);
                                f.observe(v as f64);
                                if let Some(t) = f.top.as_mut() {
                                    t.add(h, y[i], || v.to_string());
                                }
                            }
                        }
                    }
                    ColumnKind::Float | ColumnKind::Truth => {
                        let a = col
                            .as_any()
                            .downcast_ref::<Float64Array>()
                            .ok_or_else(|| bad(&f.name))?;
                        for v in a.iter().flatten() {
                            f.distinct.insert(hash_i64(v.to_bits() as i64));
                            f.observe(v);
                        }
                    }
                    ColumnKind::Timestamp => {
                        let a = col
                            .as_any()
                            .downcast_ref::<TimestampMillisecondArray>()
                            .ok_or_else(|| bad(&f.name))?;
                        let is_time = time_field.as_deref() == Some(f.name.as_str());
                        for (i, v) in a.iter().enumerate() {
                            if let Some(ms) = v {
                                let t = ms.div_euclid(1000);
                                f.distinct.insert(hash_i64(t));
                                if is_time {
                                    let (h, wd) = hour_weekday(t);
                                    by_hour[h as usize].0 += 1;
                                    by_hour[h as usize].1 += y[i] as u64;
                                    by_weekday[wd as usize].0 += 1;
                                    by_weekday[wd as usize].1 += y[i] as u64;
                                }
                            }
                        }
                    }
                    ColumnKind::Label | ColumnKind::Skip => {}
                }
            }
            bar.set(rows, rows);
        }
        bar.finish_and_clear();
        let buckets = |b: &[(u64, u64)]| -> Vec<Bucket> {
            b.iter()
                .enumerate()
                .map(|(k, &(n, c))| Bucket {
                    key: k as u32,
                    rows: n,
                    clicks: c,
                    ctr: ratio(c, n),
                })
                .collect()
        };
        details.push(
            fields
                .iter()
                .map(|f| {
                    let mut counts: Vec<(u64, u64)> = f.top.as_ref().map_or(Vec::new(), |t| {
                        t.map.iter().map(|(&h, v)| (h, v.0)).collect()
                    });
                    counts.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                    FieldDetail {
                        counts,
                        sample: f.sample.keep.clone(),
                    }
                })
                .collect(),
        );
        splits.push(SplitStats {
            split,
            rows,
            clicks,
            ctr: ratio(clicks, rows),
            fields: fields
                .into_iter()
                .map(|f| {
                    let (distinct, exact) = f.distinct.estimate();
                    FieldStats {
                        top: f.top.as_ref().map(|t| t.top(top_k)).unwrap_or_default(),
                        top_exact: f.top.as_ref().is_none_or(|t| !t.pruned),
                        top_error: f.top.as_ref().map_or(0, |t| t.error),
                        numeric: (f.n > 0).then(|| NumericStats {
                            min: f.min,
                            mean: f.sum / f.n as f64,
                            max: f.max,
                        }),
                        name: f.name,
                        kind: f.kind,
                        distinct,
                        distinct_exact: exact,
                        missing: f.missing,
                        missing_rate: ratio(f.missing, rows),
                    }
                })
                .collect(),
            ctr_by_hour: time_field.as_ref().map(|_| buckets(&by_hour)),
            ctr_by_weekday: time_field.as_ref().map(|_| buckets(&by_weekday)),
        });
    }
    let stats = DatasetStats {
        dataset: manifest.name.clone(),
        label,
        splits,
    };
    Ok((stats, details))
}

impl FieldAcc {
    #[inline]
    fn observe(&mut self, v: f64) {
        self.sample.add(v);
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.sum += v;
        self.n += 1;
    }
}

fn kind_name(k: ColumnKind) -> &'static str {
    match k {
        ColumnKind::Label => "label",
        ColumnKind::Categorical => "categorical",
        ColumnKind::Integer => "integer",
        ColumnKind::Float => "float",
        ColumnKind::Timestamp => "timestamp",
        ColumnKind::Skip => "skip",
        ColumnKind::Truth => "truth",
    }
}

/// Thousands separators: 1234567 -> "1,234,567".
pub fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The terminal table of `ctr-dl stats`.
pub fn render(stats: &DatasetStats) -> String {
    let mut out = String::new();
    let width = stats
        .splits
        .iter()
        .flat_map(|s| s.fields.iter().map(|f| f.name.len()))
        .max()
        .unwrap_or(5)
        .max(5);
    for s in &stats.splits {
        let _ = writeln!(
            out,
            "{}: {} rows, {} clicks, CTR {:.4}",
            s.split,
            group(s.rows),
            group(s.clicks),
            s.ctr
        );
        let _ = writeln!(
            out,
            "  {:<width$}  {:<11}  {:>11}  {:>8}  top values (rows, CTR)",
            "field", "type", "distinct", "missing"
        );
        for f in &s.fields {
            let distinct = format!(
                "{}{}",
                if f.distinct_exact { "" } else { "~" },
                group(f.distinct)
            );
            let mut top = String::new();
            for t in f.top.iter().take(3) {
                let v: String = t.value.chars().take(16).collect();
                let _ = write!(top, "{v} ({}, {:.3})  ", group(t.count), t.ctr);
            }
            if let Some(n) = &f.numeric {
                let _ = write!(top, "min {:.4} mean {:.4} max {:.4}", n.min, n.mean, n.max);
            }
            let _ = writeln!(
                out,
                "  {:<width$}  {:<11}  {:>11}  {:>7.2}%  {}",
                f.name,
                kind_name(f.kind),
                distinct,
                100.0 * f.missing_rate,
                top.trim_end()
            );
        }
        if let Some(h) = &s.ctr_by_hour {
            let line: Vec<String> = h
                .iter()
                .map(|b| format!("{:02}:{:.3}", b.key, b.ctr))
                .collect();
            let _ = writeln!(out, "  CTR by hour (UTC): {}", line.join(" "));
        }
        if let Some(w) = &s.ctr_by_weekday {
            const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
            let line: Vec<String> = w
                .iter()
                .map(|b| format!("{} {:.4} ({})", DAYS[b.key as usize], b.ctr, group(b.rows)))
                .collect();
            let _ = writeln!(out, "  CTR by weekday: {}", line.join("  "));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_interval_brackets_the_rate() {
        let (lo, hi) = wilson(30, 1000);
        assert!(lo < 0.03 && hi > 0.03);
        assert!(
            (lo - 0.02108).abs() < 1e-4 && (hi - 0.04253).abs() < 1e-4,
            "{lo} {hi}"
        );
    }

    #[test]
    fn top_counter_keeps_heavy_hitters() {
        let mut t = TopCounter::new(100);
        for i in 0..10_000u64 {
            let v = if i % 2 == 0 { 7 } else { 1000 + i };
            t.add(v, i % 4 == 0, || v.to_string());
        }
        let top = t.top(1);
        assert_eq!(top[0].value, "7");
        assert!(top[0].count >= 5000 - t.error && top[0].count <= 5000);
        assert!(t.pruned);
        assert_eq!(group(1234567), "1,234,567");
    }
}
