//! `dataset.json`: what a converted or simulated dataset holds (schema, splits,
//! shards, row and positive counts, column summaries, sources). It is written
//! last, atomically: a directory without it is not a finished dataset.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::io::{read_json, write_json};
use super::schema::DatasetSchema;
use super::sketch::ColumnSummary;
use super::writer::{ShardInfo, Split};
use crate::error::{Error, Result};

/// The dataset's description in its folder. The leading `_` (Spark's
/// convention, as in `_SUCCESS`) makes Arrow, pandas, DuckDB and Spark skip
/// it, so the folder reads as one table: `pd.read_parquet(DIR)`, with the
/// `split` column from the `split=<name>/` folders.
pub const MANIFEST_FILE: &str = "_dataset.json";
/// Its name in datasets written before: still read.
pub const LEGACY_MANIFEST_FILE: &str = "dataset.json";

/// The manifest of the dataset in `dir`: `_dataset.json`, or the
/// `dataset.json` of an older dataset.
pub fn manifest_path(dir: &Path) -> PathBuf {
    let path = dir.join(MANIFEST_FILE);
    let legacy = dir.join(LEGACY_MANIFEST_FILE);
    if !path.exists() && legacy.exists() {
        legacy
    } else {
        path
    }
}

/// Whether `dir` holds a finished dataset.
pub fn is_dataset(dir: &Path) -> bool {
    manifest_path(dir).exists()
}
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SourceInfo {
    pub path: String,
    pub bytes: u64,
}

/// How rows were assigned to splits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum SplitInfoRule {
    /// Each row independently, by a hash of (seed, row index).
    Random { seed: u64, ratios: [f64; 3] },
    /// By the time column: rows before `valid_from` train, before `test_from`
    /// valid, the rest test (unix seconds).
    Time {
        column: String,
        ratios: [f64; 3],
        valid_from: i64,
        test_from: i64,
    },
    /// By position in the input, for data in time order without a time column.
    Order {
        ratios: [f64; 3],
        valid_from_row: u64,
        test_from_row: u64,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct SplitInfo {
    pub rows: u64,
    pub positives: u64,
    pub positive_rate: f64,
    pub shards: Vec<ShardInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct BadLines {
    pub count: u64,
    /// The first few, each with file, line and field.
    pub examples: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DatasetManifest {
    pub format_version: u32,
    pub name: String,
    pub created: String,
    pub ctr_dl_version: String,
    pub label: String,
    pub schema: DatasetSchema,
    pub sources: Vec<SourceInfo>,
    pub split: SplitInfoRule,
    pub train: SplitInfo,
    pub valid: SplitInfo,
    pub test: SplitInfo,
    pub rows: u64,
    pub positives: u64,
    pub positive_rate: f64,
    pub columns: Vec<ColumnSummary>,
    pub bad_lines: BadLines,
    /// Set by the simulator: its configuration and the metrics of the true
    /// click probability per split (the best any model can do).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulation: Option<serde_json::Value>,
}

impl DatasetManifest {
    pub fn split(&self, s: Split) -> &SplitInfo {
        match s {
            Split::Train => &self.train,
            Split::Valid => &self.valid,
            Split::Test => &self.test,
        }
    }

    /// Load `dir/_dataset.json` (or an older dataset's `dataset.json`), with
    /// an error that says what a missing one means.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = manifest_path(dir);
        if !path.exists() {
            return Err(Error::Invalid(format!(
                "{} has no {MANIFEST_FILE}: not a ctr-dl dataset, or its conversion did not finish",
                dir.display()
            )));
        }
        let m: DatasetManifest = read_json(&path)?;
        if m.format_version != FORMAT_VERSION {
            return Err(Error::Invalid(format!(
                "{}: format_version {} is not supported (expected {FORMAT_VERSION})",
                path.display(),
                m.format_version
            )));
        }
        Ok(m)
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        write_json(&dir.join(MANIFEST_FILE), self)
    }

    /// Absolute paths of a split's shards.
    pub fn shard_paths(&self, dir: &Path, s: Split) -> Vec<PathBuf> {
        self.split(s)
            .shards
            .iter()
            .map(|sh| dir.join(&sh.path))
            .collect()
    }
}

/// `SplitInfo` from counts and shards.
pub fn split_info(rows: u64, positives: u64, shards: Vec<ShardInfo>) -> SplitInfo {
    SplitInfo {
        rows,
        positives,
        positive_rate: ratio(positives, rows),
        shards,
    }
}

pub fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Now, as RFC 3339 UTC.
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}
