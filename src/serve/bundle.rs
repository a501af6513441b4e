//! A loaded model bundle: its feature map, its model (TorchScript or
//! LightGBM, through [`crate::scoring::Scorer`]), its calibrator and live history counters; and where the
//! bundles of a models folder are.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rocket::http::Status;
use serde_json::{Map, Value};
use tch::Device;
use xxhash_rust::xxh3::xxh3_64;

use super::config::EventWindow;
use super::export::BundleMetadata;
use super::history::{Feedback, HistoryOptions, OnlineHistory};
use super::request::{raw_value, type_name, ApiError, ApiResult};
use crate::data::io::read_json;
use crate::data::schema::ColumnKind;
use crate::error::{Error, Result};
use crate::eval::calibrate::Calibrator;
use crate::features::map::Rows;
use crate::features::{FeatureMap, RawValue};
use crate::scoring::Scorer;

/// One loaded bundle.
pub struct Bundle {
    pub name: String,
    pub version: String,
    pub dir: PathBuf,
    pub meta: BundleMetadata,
    pub map: FeatureMap,
    kinds: HashMap<String, ColumnKind>,
    scorer: Box<dyn Scorer + Send + Sync>,
    /// Applied to every probability when the bundle has `calibration.json`.
    calibrator: Option<Calibrator>,
    /// The live counters of a model with history inputs.
    pub history: Option<OnlineHistory>,
}

impl Bundle {
    /// Load a bundle; history counters, if the model has them, start from
    /// the bundle's own state and are kept in memory only.
    pub fn load(dir: &Path, device: Device) -> Result<Bundle> {
        Bundle::load_with_history(dir, device, None, &HistoryOptions::default())
    }

    /// Load a bundle whose history counters (if any) are snapshotted and
    /// logged under `history_root/<name>/<version>/`.
    pub fn load_with_history(
        dir: &Path,
        device: Device,
        history_root: Option<&Path>,
        history: &HistoryOptions,
    ) -> Result<Bundle> {
        let meta: BundleMetadata = read_json(&dir.join("metadata.json"))?;
        for (what, v) in [("name", &meta.name), ("version", &meta.version)] {
            if !plain_component(v) {
                return Err(Error::Invalid(format!(
                    "{}: {what} {v:?} is not a plain folder name (letters, digits, `.`, `_`, `-`; \
                     not `.` or `..`)",
                    dir.join("metadata.json").display()
                )));
            }
        }
        let map = FeatureMap::load(&dir.join("features.json"))?;
        let history = match &map.history {
            Some(spec) => Some(OnlineHistory::open(
                spec.clone(),
                dir,
                history_root
                    .map(|r| r.join(&meta.name).join(&meta.version))
                    .as_deref(),
                history,
            )?),
            None => None,
        };
        let scorer = crate::family::load_bundle(&meta.format, dir, &map, device)?;
        if map.num_fields() != meta.num_fields || map.num_dense() != meta.num_dense {
            return Err(Error::Invalid(format!(
                "{}: features.json has {} fields and {} dense inputs, metadata.json {} and {}",
                dir.display(),
                map.num_fields(),
                map.num_dense(),
                meta.num_fields,
                meta.num_dense
            )));
        }
        let kinds = map.columns.iter().cloned().collect();
        let b = Bundle {
            name: meta.name.clone(),
            version: meta.version.clone(),
            dir: dir.to_path_buf(),
            meta,
            map,
            kinds,
            scorer,
            calibrator: Calibrator::load_from(dir)?,
            history,
        };
        // Warm up: the first forwards of a TorchScript module are slow.
        let (ids, dense) = b.map.encode_row(|_| RawValue::Missing);
        for _ in 0..3 {
            b.forward(&ids, &dense, 1)?;
        }
        Ok(b)
    }

    /// The device the bundle predicts on (LightGBM: always the CPU).
    pub fn device(&self) -> Device {
        self.scorer.device()
    }

    /// Probabilities of `rows` encoded rows (calibrated, when the bundle has
    /// a calibrator).
    pub fn forward(&self, ids: &[i32], dense: &[f32], rows: usize) -> Result<Vec<f32>> {
        let p = self.scorer.score(Rows { rows, ids, dense })?;
        Ok(match &self.calibrator {
            Some(c) => p.into_iter().map(|p| c.apply(p) as f32).collect(),
            None => p.into_iter().map(|p| p as f32).collect(),
        })
    }

    /// Validate and encode one instance. Unknown fields and wrong types are
    /// errors naming the field; absent fields and `null` are missing values.
    /// History inputs are read from the live counters at the instance's time
    /// (its time column, else now).
    pub fn encode(
        &self,
        obj: &Map<String, Value>,
        skip: &[&str],
    ) -> ApiResult<(Vec<i32>, Vec<f32>)> {
        let vals = self.raw_values(obj, skip)?;
        let get = |c: &str| vals.get(c).copied().unwrap_or(RawValue::Missing);
        let (ids, mut dense) = self.map.encode_row(get);
        if let Some(h) = &self.history {
            self.read_history(h, get, &mut dense)
                .map_err(|e| ApiError::new(Status::InternalServerError, e.to_string()))?;
        }
        Ok((ids, dense))
    }

    /// A row's history inputs from the live counters at its time (its time
    /// column, else now), into the history part of `dense`, the row's dense
    /// inputs. Requests and `predict` read them alike.
    fn read_history<'a>(
        &self,
        h: &OnlineHistory,
        get: impl Fn(&str) -> RawValue<'a>,
        dense: &mut [f32],
    ) -> Result<()> {
        let t = match get(&h.spec.time_column) {
            RawValue::TimeMs(t) => t,
            _ => now_ms(),
        };
        let at = self.map.history_offset();
        h.read(&h.hashes(&get), t, &mut dense[at..at + h.spec.width()])
    }

    /// Validate and encode a batch of raw rows (Parquet columns named as the
    /// model's): what `predict` scores. History inputs are read from the live
    /// counters at each row's time (its time column, else now), as a request
    /// would read them; nothing is added to them.
    pub fn encode_batch(&self, batch: &arrow::array::RecordBatch) -> Result<(Vec<i32>, Vec<f32>)> {
        let mut e = self.map.encode_inputs(batch)?;
        if let Some(h) = &self.history {
            let nd = self.map.num_dense();
            let cols = h
                .spec
                .columns()
                .into_iter()
                .map(|c| Ok((c.clone(), crate::features::raw::view(batch, &c)?)))
                .collect::<Result<Vec<_>>>()?;
            for r in 0..e.rows {
                let get = |c: &str| {
                    cols.iter()
                        .find(|(n, _)| n == c)
                        .map_or(RawValue::Missing, |(_, v)| v.get(r))
                };
                self.read_history(h, get, &mut e.dense[r * nd..(r + 1) * nd])?;
            }
        }
        Ok((e.ids, e.dense))
    }

    /// One `/feedback` event for this model's counters: its key hashes, time
    /// (the time column, else now) and `clicked` (0/1 or a boolean).
    pub fn feedback_event(
        &self,
        obj: &Map<String, Value>,
        window: EventWindow,
    ) -> ApiResult<Feedback> {
        let h = self.history.as_ref().ok_or_else(|| {
            ApiError::bad(
                "model",
                format!(
                    "model {}/{} keeps no history counters",
                    self.name, self.version
                ),
            )
        })?;
        let clicked = match obj.get("clicked") {
            Some(Value::Bool(b)) => *b,
            Some(Value::Number(n)) if n.as_u64() == Some(0) || n.as_u64() == Some(1) => {
                n.as_u64() == Some(1)
            }
            Some(v) => {
                return Err(ApiError::bad(
                    "clicked",
                    format!(
                        "field `clicked`: expected 0, 1 or a boolean, got {}",
                        type_name(v)
                    ),
                ))
            }
            None => {
                return Err(ApiError::bad(
                    "clicked",
                    "field `clicked` is missing: feedback is an impression's outcome".into(),
                ))
            }
        };
        let id = match obj.get("event_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if !s.is_empty() => Some(xxh3_64(s.as_bytes())),
            Some(Value::Number(n)) if n.is_u64() || n.is_i64() => {
                Some(xxh3_64(n.to_string().as_bytes()))
            }
            Some(v) => {
                return Err(ApiError::bad(
                    "event_id",
                    format!(
                        "field `event_id`: expected a non-empty string or an integer, got {}",
                        type_name(v)
                    ),
                ))
            }
        };
        let vals = self.raw_values(obj, &["clicked", "event_id", "model", "version"])?;
        if let Some(RawValue::TimeMs(t)) = vals.get(h.spec.time_column.as_str()) {
            window.check(&h.spec.time_column, *t)?;
        }
        let get = |c: &str| vals.get(c).copied().unwrap_or(RawValue::Missing);
        Ok(Feedback {
            time: event_time(&h.spec.time_column, &vals),
            hashes: h.hashes(get),
            clicked,
            id,
        })
    }

    /// An instance's fields as raw values, checked against the model's columns.
    fn raw_values<'a>(
        &self,
        obj: &'a Map<String, Value>,
        skip: &[&str],
    ) -> ApiResult<HashMap<&'a str, RawValue<'a>>> {
        let mut vals: HashMap<&str, RawValue> = HashMap::with_capacity(obj.len());
        for (k, v) in obj {
            if skip.contains(&k.as_str()) {
                continue;
            }
            let Some(kind) = self.kinds.get(k) else {
                let mut known: Vec<&str> = self.kinds.keys().map(|s| s.as_str()).collect();
                known.sort_unstable();
                return Err(ApiError::bad(
                    k,
                    format!(
                        "unknown field `{k}`; model {} reads: {}",
                        self.name,
                        known.join(", ")
                    ),
                ));
            };
            vals.insert(k.as_str(), raw_value(k, *kind, v)?);
        }
        Ok(vals)
    }
}

/// A name or version that is safe as one path component.
pub fn plain_component(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// An event's time in ms: its time column, else the server's clock.
pub(super) fn event_time(column: &str, vals: &HashMap<&str, RawValue>) -> i64 {
    match vals.get(column) {
        Some(RawValue::TimeMs(t)) => *t,
        _ => now_ms(),
    }
}

/// The server's clock, in ms since the epoch.
pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(super) fn version_order(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}

/// The version folders of each model name under `root`, oldest first: every
/// `<root>/<name>/<version>/` (not hidden) that holds `metadata.json`, a
/// `model.pt` or a `model.lgb` of any kind, so a broken bundle is reported
/// when it fails to load rather than passed over in silence.
pub fn bundle_versions(root: &Path) -> Result<Vec<Vec<PathBuf>>> {
    let mut out = Vec::new();
    let names = std::fs::read_dir(root).map_err(|e| Error::io(root, e))?;
    let mut names: Vec<PathBuf> = names
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    names.sort();
    for name in names {
        let mut versions: Vec<(String, PathBuf)> = std::fs::read_dir(&name)
            .map_err(|e| Error::io(&name, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                ["metadata.json", "model.pt", crate::gbdt::MODEL_FILE]
                    .iter()
                    .any(|f| p.join(f).exists())
            })
            .filter_map(|p| Some((p.file_name()?.to_str()?.to_string(), p.clone())))
            .filter(|(v, _)| !v.starts_with('.'))
            .collect();
        versions.sort_by(|a, b| version_order(&a.0, &b.0));
        if !versions.is_empty() {
            out.push(versions.into_iter().map(|v| v.1).collect());
        }
    }
    Ok(out)
}
