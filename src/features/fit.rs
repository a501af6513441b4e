//! Fitting the feature map on the train split: the plan of fields from the
//! schema and the configuration, one pass over train for vocabularies, dense
//! statistics, target statistics and the history settings, then the map.
use std::collections::HashMap;
use std::path::Path;

use super::config::{Encoding, FeatureConfig, MissingPolicy, TimePart};
use super::hashing::HASH_VERSION;
use super::history::history_spec;
use super::map::{
    frequency_bucket, log_bucket_token, signed_log, CatField, CatTransform, DenseField,
    DenseTransform, FeatureMap, HashInfo, FEATURE_MAP_VERSION,
};
use super::raw::{check_value_column, cross_token, numeric, token, view, RawValue};
use super::target::target_stats;
use super::target::TargetSpec;
use crate::data::manifest::DatasetManifest;
use crate::data::reader::{ReaderOptions, ShardReader};
use crate::data::schema::{ColumnKind, DatasetSchema};
use crate::data::writer::Split;
use crate::error::{Error, Result};

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
        config.validate().map_err(Error::Invalid)?;
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
            return Err(Error::Invalid(format!(
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
    pub(super) fn finish(&mut self) {
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
            return Err(Error::Invalid(format!(
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
                    return Err(Error::Invalid(format!(
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
                    return Err(Error::Invalid(format!(
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
                return Err(Error::Invalid(format!(
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
        return Err(Error::Invalid(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frequent_orders_by_count_then_value() {
        let counts: HashMap<String, u64> = [("b", 3), ("a", 3), ("c", 5), ("d", 1)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert_eq!(frequent(counts, 2), vec!["c", "a", "b"]);
    }
}
