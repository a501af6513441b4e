//! LightGBM experiments: the same `[data]`, `[features]` and `[output]` as a
//! deep experiment, with a `[lightgbm]` section instead of `[model]` and
//! `[train]` (`experiments/lightgbm.toml`).
use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::features::FeatureConfig;
use crate::train::config::{parse_experiment, DataConfig, Monitor, OutputConfig};

/// The `[lightgbm]` section: LightGBM's own parameter names, with the
/// defaults below; `params` passes any other LightGBM parameter through.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LightGbmConfig {
    /// Shrinkage of every tree (default 0.05).
    pub learning_rate: f64,
    /// Leaves per tree (default 63).
    pub num_leaves: u32,
    /// Depth limit (default -1: none).
    pub max_depth: i32,
    /// Rows a leaf needs (default 100).
    pub min_data_in_leaf: u32,
    /// Share of columns each tree sees (default 0.8).
    pub feature_fraction: f64,
    /// Share of rows each bagging round sees (default 0.8) ...
    pub bagging_fraction: f64,
    /// ... redrawn every this many rounds (default 1; 0 turns bagging off).
    pub bagging_freq: u32,
    /// L1 and L2 on leaf values (default 0 and 1).
    pub lambda_l1: f64,
    pub lambda_l2: f64,
    /// Categorical fields as LightGBM categoricals (default true); false
    /// feeds their indices as numbers.
    pub categorical: bool,
    /// Smoothing of categorical splits: the prior weight of a category's
    /// statistics (default 10), their L2 (default 10), rows a category needs
    /// (default 100), most categories on one side of a split (default 32),
    /// and up to how many categories one-vs-rest splits are used (default 4).
    pub cat_smooth: f64,
    pub cat_l2: f64,
    pub min_data_per_group: u32,
    pub max_cat_threshold: u32,
    pub max_cat_to_onehot: u32,
    /// Histogram bins of numeric columns (default 255).
    pub max_bin: u32,
    /// Boosting rounds at most (default 1000) ...
    pub num_rounds: u32,
    /// ... stopping after this many without improvement on valid (default 50;
    /// 0 turns early stopping off).
    pub early_stopping_rounds: u32,
    /// The metric that picks the best round (default `logloss`).
    pub monitor: Monitor,
    /// Rounds between the records of metrics.json (default 10; TensorBoard
    /// gets every round).
    pub eval_every: u32,
    /// OpenMP threads (default 0: LightGBM's default, the cores).
    pub threads: u32,
    /// Any other LightGBM parameter, passed through as `key=value`.
    pub params: BTreeMap<String, toml::Value>,
}

impl Default for LightGbmConfig {
    fn default() -> Self {
        LightGbmConfig {
            learning_rate: 0.05,
            num_leaves: 63,
            max_depth: -1,
            min_data_in_leaf: 100,
            feature_fraction: 0.8,
            bagging_fraction: 0.8,
            bagging_freq: 1,
            lambda_l1: 0.0,
            lambda_l2: 1.0,
            categorical: true,
            cat_smooth: 10.0,
            cat_l2: 10.0,
            min_data_per_group: 100,
            max_cat_threshold: 32,
            max_cat_to_onehot: 4,
            max_bin: 255,
            num_rounds: 1000,
            early_stopping_rounds: 50,
            monitor: Monitor::Logloss,
            eval_every: 10,
            threads: 0,
            params: BTreeMap::new(),
        }
    }
}

impl LightGbmConfig {
    pub fn validate(&self) -> std::result::Result<(), String> {
        let fraction = |name: &str, x: f64| {
            if x > 0.0 && x <= 1.0 {
                Ok(())
            } else {
                Err(format!("lightgbm.{name} must be in (0, 1], got {x}"))
            }
        };
        fraction("feature_fraction", self.feature_fraction)?;
        fraction("bagging_fraction", self.bagging_fraction)?;
        if self.learning_rate.is_nan() || self.learning_rate <= 0.0 {
            return Err("lightgbm.learning_rate must be positive".into());
        }
        if self.num_leaves < 2 || self.num_rounds == 0 || self.max_bin < 2 {
            return Err(
                "lightgbm.num_leaves and max_bin must be at least 2, num_rounds positive".into(),
            );
        }
        if self.lambda_l1 < 0.0
            || self.lambda_l2 < 0.0
            || self.cat_smooth < 0.0
            || self.cat_l2 < 0.0
        {
            return Err("lightgbm.lambda_l1, lambda_l2, cat_smooth and cat_l2 must be >= 0".into());
        }
        for key in self.params.keys() {
            if key.is_empty() || key.contains(|c: char| c.is_whitespace() || c == '=') {
                return Err(format!("lightgbm.params: `{key}` is not a parameter name"));
            }
        }
        Ok(())
    }

    /// LightGBM's parameter string for a matrix whose first `categorical`
    /// columns are categorical fields.
    pub fn params(&self, seed: u64, categorical: usize) -> String {
        let metric = match self.monitor {
            Monitor::Logloss => "binary_logloss",
            Monitor::Auc => "auc",
            Monitor::AucMinusLogloss => "binary_logloss,auc",
        };
        let mut p: Vec<(String, String)> = vec![
            ("objective".into(), "binary".into()),
            ("metric".into(), metric.into()),
            ("learning_rate".into(), self.learning_rate.to_string()),
            ("num_leaves".into(), self.num_leaves.to_string()),
            ("max_depth".into(), self.max_depth.to_string()),
            ("min_data_in_leaf".into(), self.min_data_in_leaf.to_string()),
            ("feature_fraction".into(), self.feature_fraction.to_string()),
            ("bagging_fraction".into(), self.bagging_fraction.to_string()),
            ("bagging_freq".into(), self.bagging_freq.to_string()),
            ("lambda_l1".into(), self.lambda_l1.to_string()),
            ("lambda_l2".into(), self.lambda_l2.to_string()),
            ("cat_smooth".into(), self.cat_smooth.to_string()),
            ("cat_l2".into(), self.cat_l2.to_string()),
            (
                "min_data_per_group".into(),
                self.min_data_per_group.to_string(),
            ),
            (
                "max_cat_threshold".into(),
                self.max_cat_threshold.to_string(),
            ),
            (
                "max_cat_to_onehot".into(),
                self.max_cat_to_onehot.to_string(),
            ),
            ("max_bin".into(), self.max_bin.to_string()),
            ("seed".into(), seed.to_string()),
            ("deterministic".into(), "true".into()),
            ("verbosity".into(), "-1".into()),
        ];
        if self.threads > 0 {
            p.push(("num_threads".into(), self.threads.to_string()));
        }
        if self.categorical && categorical > 0 {
            let cols: Vec<String> = (0..categorical).map(|i| i.to_string()).collect();
            p.push(("categorical_feature".into(), cols.join(",")));
        }
        for (k, v) in &self.params {
            let v = match v {
                toml::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            p.retain(|(key, _)| key != k);
            p.push((k.clone(), v));
        }
        p.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The key settings, for `ctr-dl compare`.
    pub fn describe(&self) -> String {
        format!(
            "leaves {} lr {:e} min leaf {}{}",
            self.num_leaves,
            self.learning_rate,
            self.min_data_in_leaf,
            if self.categorical { " cat" } else { "" }
        )
    }
}

/// A LightGBM experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GbdtExperiment {
    /// Name of the experiment: the prefix of its run names.
    pub name: String,
    /// Seed of bagging and column sampling (default 2018).
    #[serde(default = "d_seed")]
    pub seed: u64,
    pub data: DataConfig,
    #[serde(default)]
    pub features: FeatureConfig,
    #[serde(default)]
    pub lightgbm: LightGbmConfig,
    #[serde(default)]
    pub output: OutputConfig,
}

fn d_seed() -> u64 {
    2018
}

impl GbdtExperiment {
    /// Read a TOML file, apply `--set` overrides, validate.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        Self::parse(&crate::train::config::read_config(path)?, path, overrides)
    }

    pub fn parse(text: &str, path: &Path, overrides: &[String]) -> Result<Self> {
        parse_experiment(text, path, overrides, |c: &GbdtExperiment| {
            c.features.validate()?;
            c.lightgbm.validate()?;
            crate::train::config::check_name(&c.name)
        })
    }

    /// The configuration as TOML, as saved with a run.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

/// Whether an experiment file is a LightGBM one (it has `[lightgbm]`).
pub fn is_gbdt_experiment(path: &Path) -> Result<bool> {
    let text = crate::train::config::read_config(path)?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| crate::error::Error::Config {
        path: path.into(),
        message: e.to_string(),
    })?;
    Ok(table.contains_key("lightgbm"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_name_the_categorical_columns_and_pass_extras_through() {
        let mut c = LightGbmConfig::default();
        c.params
            .insert("min_sum_hessian_in_leaf".into(), toml::Value::Float(0.01));
        c.params
            .insert("num_leaves".into(), toml::Value::Integer(15));
        let p = c.params(7, 3);
        assert!(p.contains("categorical_feature=0,1,2"), "{p}");
        assert!(p.contains("min_sum_hessian_in_leaf=0.01"), "{p}");
        assert!(
            p.contains("num_leaves=15") && !p.contains("num_leaves=63"),
            "{p}"
        );
        assert!(
            p.contains("seed=7") && p.contains("metric=binary_logloss"),
            "{p}"
        );
        c.categorical = false;
        assert!(!c.params(7, 3).contains("categorical_feature"));
    }

    #[test]
    fn bad_values_are_named() {
        let c = LightGbmConfig {
            feature_fraction: 0.0,
            ..Default::default()
        };
        assert!(c.validate().unwrap_err().contains("feature_fraction"));
    }
}
