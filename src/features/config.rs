//! The `[features]` section of an experiment: how each raw column becomes
//! model input. Defaults suit the simulator; the Criteo and Avazu x4
//! experiments set the BARS protocol explicitly.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How one column is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// Vocabulary fitted on train: values seen at least `min_count` times get
    /// their own index; rarer and unseen values share one out-of-vocabulary index.
    Vocab,
    /// XXH3 hashing into `buckets` (see [`super::hashing`]); no fitting, no OOV.
    Hash,
    /// A dense input `(x - mean) / std`, mean and std from train.
    Standardize,
    /// A dense input `(sign(x) ln(1 + |x|) - mean) / std`, for heavy-tailed counts.
    LogStandardize,
    /// Categorical after the Criteo x4 transform: `floor(ln(x)^2)` for x > 2,
    /// the value itself otherwise; then a vocabulary with `min_count`.
    LogBucket,
    /// Frequency encoding: the value's train count, bucketised by powers of
    /// two (values seen fewer than `min_count` times share the rare bucket
    /// with unseen ones); a field named `<column>_freq`.
    Frequency,
    /// Not used.
    Drop,
}

impl Encoding {
    pub fn is_categorical(self) -> bool {
        matches!(
            self,
            Encoding::Vocab | Encoding::Hash | Encoding::LogBucket | Encoding::Frequency
        )
    }
}

/// Numeric missing values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MissingPolicy {
    /// Their own slot: index 0 of a categorical field, or 0 plus a missing
    /// indicator input for a standardised field.
    #[default]
    Slot,
    /// Read as the value 0 (the Criteo x4 protocol's `fillna(0)`).
    Zero,
}

/// A part of a timestamp, each its own categorical field `<column>_<part>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimePart {
    /// Hour of day, UTC (24 values).
    Hour,
    /// Day of week, Monday first (7 values).
    Weekday,
    /// Saturday or Sunday (2 values).
    Weekend,
    /// Part of the day, UTC: night 0-5 h, morning 6-11 h, afternoon 12-17 h,
    /// evening 18-23 h (4 values).
    DayPart,
}

impl TimePart {
    pub fn name(self) -> &'static str {
        match self {
            TimePart::Hour => "hour",
            TimePart::Weekday => "weekday",
            TimePart::Weekend => "weekend",
            TimePart::DayPart => "day_part",
        }
    }
    /// Number of values, without the missing slot.
    pub fn cardinality(self) -> u32 {
        match self {
            TimePart::Hour => 24,
            TimePart::Weekday => 7,
            TimePart::Weekend => 2,
            TimePart::DayPart => 4,
        }
    }
}

/// Per-column settings that differ from the section's defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldOverride {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<Encoding>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buckets: Option<u32>,
}

/// The `[features]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureConfig {
    /// Encoding of categorical columns: `vocab` (default) or `hash`.
    #[serde(default = "default_categorical")]
    pub categorical: Encoding,
    /// Encoding of integer and float columns: `standardize` (default),
    /// `log_standardize`, `log_bucket`, `drop`, or `vocab` / `hash` of the
    /// value as a category.
    #[serde(default = "default_numeric")]
    pub numeric: Encoding,
    /// Vocabulary minimum count (default 2).
    #[serde(default = "default_min_count")]
    pub min_count: u64,
    /// Buckets of hashed fields (default 1,000,000).
    #[serde(default = "default_buckets")]
    pub buckets: u32,
    /// Seed of the XXH3 hashing (default 42).
    #[serde(default = "default_hash_seed")]
    pub hash_seed: u64,
    /// Missing numeric values: `slot` (default) or `zero`.
    #[serde(default)]
    pub numeric_missing: MissingPolicy,
    /// Fields made from each timestamp column (default hour, weekday, weekend).
    #[serde(default = "default_time_parts")]
    pub time_parts: Vec<TimePart>,
    /// Columns not used at all.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Per-column overrides: `[features.fields.user_id] encoding = "hash"`.
    #[serde(default)]
    pub fields: BTreeMap<String, FieldOverride>,
    /// Columns that also get a frequency-encoded field (`<column>_freq`)
    /// beside their own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub frequency: Vec<String>,
    /// Crosses: columns joined with `+` (`"device+placement"`), each one more
    /// categorical field (`device_x_placement`) encoded like the others
    /// (`categorical`, `min_count`, `buckets`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub crosses: Vec<String>,
    /// Out-of-fold target encoding (`[features.target_encoding]`), off by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_encoding: Option<super::target::TargetConfig>,
    /// Leakage-free historical inputs (`[features.history]`), off by default
    /// and with `keys = []` (`--set features.history.keys=[]` ablates them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<super::history::HistoryConfig>,
}

fn default_categorical() -> Encoding {
    Encoding::Vocab
}
fn default_numeric() -> Encoding {
    Encoding::Standardize
}
fn default_min_count() -> u64 {
    2
}
fn default_buckets() -> u32 {
    1_000_000
}
fn default_hash_seed() -> u64 {
    42
}
fn default_time_parts() -> Vec<TimePart> {
    vec![TimePart::Hour, TimePart::Weekday, TimePart::Weekend]
}

impl Default for FeatureConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults parse")
    }
}

impl FeatureConfig {
    /// The history settings, if they name any key.
    pub fn history(&self) -> Option<&super::history::HistoryConfig> {
        self.history.as_ref().filter(|h| !h.keys.is_empty())
    }

    /// Checks that cannot be expressed in types.
    pub fn validate(&self) -> Result<(), String> {
        if !self.categorical.is_categorical() || self.categorical == Encoding::LogBucket {
            return Err(format!(
                "features.categorical must be `vocab` or `hash`, not `{:?}`",
                self.categorical
            ));
        }
        if self.buckets == 0 {
            return Err("features.buckets must be positive".into());
        }
        if self.min_count == 0 {
            return Err("features.min_count must be at least 1".into());
        }
        for (name, o) in &self.fields {
            if o.buckets == Some(0) {
                return Err(format!("features.fields.{name}.buckets must be positive"));
            }
        }
        for c in &self.crosses {
            if c.split('+').count() < 2 || c.split('+').any(|p| p.trim().is_empty()) {
                return Err(format!(
                    "features.crosses: `{c}` must name two or more columns joined with +"
                ));
            }
        }
        if let Some(h) = self.history() {
            h.validate()?;
        }
        if let Some(t) = &self.target_encoding {
            t.validate()?;
        }
        Ok(())
    }
}
