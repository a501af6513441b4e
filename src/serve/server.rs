//! `ctr-dl serve`: the prediction service on Rocket.
//!
//! Every bundle under `models/` (the latest version of each name, or all of
//! them) is loaded and warmed up before the server binds, so `/health` answers
//! ready from the first request. A request is validated and encoded on the
//! async worker (the same [`FeatureMap::encode_row`] as training uses); the
//! TorchScript forward runs on [`Pool`], a fixed set of OS threads, never on the
//! async workers. libtorch's intra-op threads are set so that workers times
//! threads does not exceed the cores.
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rocket::data::{Data, ToByteUnit};
use rocket::fairing::{Fairing, Info, Kind as FairingKind};
use rocket::http::{ContentType, Status};
use rocket::serde::json::Json;
use rocket::{Request, Response, State};
use serde_json::{json, Map, Value};
use tch::{CModule, Device, Kind, Tensor};
use xxhash_rust::xxh3::xxh3_64;

use super::export::{BundleMetadata, FORMAT_LIGHTGBM, FORMAT_TORCHSCRIPT};
use super::history::{Feedback, HistoryOptions, OnlineHistory};
use super::predlog::{PredLog, PredLogOptions, Record, Target};
use crate::data::io::read_json;
use crate::data::parse::parse_rfc3339;
use crate::data::schema::ColumnKind;
use crate::error::{DataError, Result};
use crate::eval::calibrate::Calibrator;
use crate::features::map::{FeatureMap, RawValue};

/// Settings of the service (`ctr-dl serve` flags or `configs/serve.toml`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// The folder of bundles: `<models>/<name>/<version>/model.pt` (or `model.lgb`).
    pub models: PathBuf,
    pub address: String,
    pub port: u16,
    /// `cpu`, `cuda`, `cuda:N` or `auto`.
    pub device: String,
    /// Load every version of each model, not only the latest.
    pub all_versions: bool,
    /// Inference threads (0: one per core).
    pub workers: usize,
    /// The most instances one `/batch_predict` may carry.
    pub max_batch: usize,
    /// The largest request body, in bytes (larger: 413).
    pub max_body_bytes: u64,
    /// The prediction log: a SQLite file path (or `sqlite:PATH`), a
    /// `postgres://` URL, or `off`.
    pub predlog: String,
    /// Its table.
    pub predlog_table: String,
    /// Records the log's queue holds before new ones are dropped (and counted).
    pub predlog_queue: usize,
    /// Bytes the queued records may hold before new ones are dropped (and
    /// counted), so a database that is down cannot exhaust memory.
    pub predlog_queue_bytes: usize,
    /// Where records the database refuses are appended (JSON lines); empty:
    /// beside a SQLite file, `logs/predlog.rejected.jsonl` for PostgreSQL;
    /// `off`: dropped and counted only.
    pub predlog_dead_letter: String,
    /// Where models with history inputs keep their counters:
    /// `<history_dir>/<name>/<version>/{history.state,feedback.log}`.
    pub history_dir: PathBuf,
    /// Feedback events between snapshots of the counters.
    pub history_snapshot_every: u64,
    /// When set (here or in `CTR_DL_FEEDBACK_TOKEN`), `/feedback` requires
    /// `Authorization: Bearer <token>` and answers 401 without it.
    pub feedback_token: String,
    /// Feedback events older than this many seconds (by their time column)
    /// are refused.
    pub feedback_max_age_s: u64,
    /// Feedback events more than this many seconds ahead of the server's
    /// clock are refused.
    pub feedback_max_ahead_s: u64,
    /// A feedback event whose `event_id` was seen less than this many
    /// seconds ago is a duplicate (a retried batch) and is skipped.
    pub feedback_dedupe_s: u64,
    /// The most event ids remembered per model for that.
    pub feedback_dedupe_max: usize,
    /// Seconds a client has to send a request's head (line and headers);
    /// past it the connection is closed. An idle keep-alive connection
    /// waits at most this long for its next request, too.
    pub header_read_timeout_s: f64,
    /// Seconds a client has to send a request's body (408 past it).
    pub body_read_timeout_s: f64,
    /// Connections served at once; one more is answered 503 and closed.
    /// 0: the process's open-file limit less 64 (for the models, the logs and
    /// the database).
    pub max_connections: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            models: PathBuf::from("models"),
            address: "127.0.0.1".into(),
            port: 8000,
            device: "cpu".into(),
            all_versions: false,
            workers: 0,
            max_batch: 1000,
            max_body_bytes: 1 << 20,
            predlog: "logs/predictions.sqlite".into(),
            predlog_table: "predictions".into(),
            predlog_queue: 100_000,
            predlog_queue_bytes: 256 << 20,
            predlog_dead_letter: String::new(),
            history_dir: PathBuf::from("history"),
            history_snapshot_every: 100_000,
            feedback_token: String::new(),
            feedback_max_age_s: 7 * 24 * 3600,
            feedback_max_ahead_s: 300,
            feedback_dedupe_s: 3600,
            feedback_dedupe_max: 1_000_000,
            header_read_timeout_s: 10.0,
            body_read_timeout_s: 30.0,
            max_connections: 0,
        }
    }
}

impl ServeConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
        toml::from_str(&text).map_err(|e| DataError::Config {
            path: path.into(),
            message: e.to_string(),
        })
    }

    /// [`max_connections`](Self::max_connections), with 0 resolved from the
    /// open-file limit.
    pub fn connection_limit(&self) -> usize {
        if self.max_connections > 0 {
            return self.max_connections;
        }
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes the struct it is given.
        let files = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
            lim.rlim_cur
        } else {
            1024
        };
        (files.min(1 << 20) as usize).saturating_sub(64).max(16)
    }

    /// How served models keep their history counters.
    pub fn history_options(&self) -> HistoryOptions {
        HistoryOptions {
            snapshot_every: self.history_snapshot_every,
            dedupe_s: self.feedback_dedupe_s,
            dedupe_max: self.feedback_dedupe_max,
        }
    }

    /// The feedback token: the config's, else `CTR_DL_FEEDBACK_TOKEN`'s.
    pub fn feedback_token(&self) -> Option<String> {
        Some(self.feedback_token.clone())
            .filter(|t| !t.is_empty())
            .or_else(|| std::env::var("CTR_DL_FEEDBACK_TOKEN").ok())
            .filter(|t| !t.is_empty())
    }
}

/// The window of event times `/feedback` takes, in ms around now.
#[derive(Debug, Clone, Copy)]
pub struct EventWindow {
    pub max_age_ms: i64,
    pub max_ahead_ms: i64,
}

impl EventWindow {
    /// Every event time: for replaying logged events, whatever their age.
    pub const ANY: EventWindow = EventWindow {
        max_age_ms: i64::MAX,
        max_ahead_ms: i64::MAX,
    };

    fn check(&self, column: &str, t: i64) -> ApiResult<()> {
        let now = now_ms();
        let show = |t: i64| {
            chrono::DateTime::from_timestamp_millis(t).map_or(t.to_string(), |d| d.to_rfc3339())
        };
        if t < now.saturating_sub(self.max_age_ms) || t > now.saturating_add(self.max_ahead_ms) {
            return Err(ApiError::bad(
                column,
                format!(
                    "field `{column}`: the event time {} is outside the window the server takes \
                     ({} s back to {} s ahead of its clock, {})",
                    show(t),
                    self.max_age_ms / 1000,
                    self.max_ahead_ms / 1000,
                    show(now)
                ),
            ));
        }
        Ok(())
    }
}

/// One loaded bundle.
pub struct Bundle {
    pub name: String,
    pub version: String,
    pub dir: PathBuf,
    pub meta: BundleMetadata,
    pub map: FeatureMap,
    kinds: HashMap<String, ColumnKind>,
    scorer: Scorer,
    /// Applied to every probability when the bundle has `calibration.json`.
    calibrator: Option<Calibrator>,
    device: Device,
    /// The live counters of a model with history inputs.
    pub history: Option<OnlineHistory>,
}

/// What turns encoded rows into probabilities.
enum Scorer {
    Torch(CModule),
    #[cfg(feature = "lightgbm")]
    Lightgbm(crate::gbdt::lgbm::Booster),
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
                return Err(DataError::Invalid(format!(
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
        let scorer = match meta.format.as_str() {
            FORMAT_TORCHSCRIPT => {
                let model_pt = dir.join("model.pt");
                if !model_pt.is_file() {
                    return Err(DataError::Invalid(format!(
                        "{}: {}",
                        model_pt.display(),
                        if model_pt.exists() {
                            "not a file"
                        } else {
                            "missing"
                        }
                    )));
                }
                Scorer::Torch(CModule::load_on_device(&model_pt, device).map_err(|e| {
                    DataError::Invalid(format!("{}: libtorch: {e}", model_pt.display()))
                })?)
            }
            #[cfg(feature = "lightgbm")]
            FORMAT_LIGHTGBM => {
                let path = dir.join(crate::gbdt::MODEL_FILE);
                let booster = crate::gbdt::lgbm::Booster::from_file(&path)
                    .map_err(|e| DataError::Invalid(format!("{}: {e}", path.display())))?;
                if booster.cols() != map.num_fields() + map.num_dense() {
                    return Err(DataError::Invalid(format!(
                        "{}: the model reads {} columns, features.json gives {}",
                        path.display(),
                        booster.cols(),
                        map.num_fields() + map.num_dense()
                    )));
                }
                Scorer::Lightgbm(booster)
            }
            #[cfg(not(feature = "lightgbm"))]
            FORMAT_LIGHTGBM => {
                return Err(DataError::Invalid(format!(
                    "{}: {}",
                    dir.display(),
                    crate::gbdt::not_built()
                )))
            }
            other => {
                return Err(DataError::Invalid(format!(
                    "{}: unknown bundle format `{other}` (torchscript or lightgbm)",
                    dir.join("metadata.json").display()
                )))
            }
        };
        if map.num_fields() != meta.num_fields || map.num_dense() != meta.num_dense {
            return Err(DataError::Invalid(format!(
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
            device,
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
        match self.scorer {
            Scorer::Torch(_) => self.device,
            #[cfg(feature = "lightgbm")]
            Scorer::Lightgbm(_) => Device::Cpu,
        }
    }

    /// Probabilities of `rows` encoded rows (calibrated, when the bundle has
    /// a calibrator).
    pub fn forward(&self, ids: &[i32], dense: &[f32], rows: usize) -> Result<Vec<f32>> {
        let p = self.score(ids, dense, rows)?;
        Ok(match &self.calibrator {
            Some(c) => p.into_iter().map(|p| c.apply(p as f64) as f32).collect(),
            None => p,
        })
    }

    /// The model's own probabilities.
    fn score(&self, ids: &[i32], dense: &[f32], rows: usize) -> Result<Vec<f32>> {
        match &self.scorer {
            Scorer::Torch(module) => {
                let _guard = tch::no_grad_guard();
                let (nf, nd) = (self.map.num_fields() as i64, self.map.num_dense() as i64);
                let ids = Tensor::from_slice(ids)
                    .view([rows as i64, nf])
                    .to_kind(Kind::Int64)
                    .to(self.device);
                let dense = Tensor::from_slice(dense)
                    .view([rows as i64, nd])
                    .to(self.device);
                let p = module.forward_ts(&[ids, dense]).map_err(|e| {
                    DataError::Invalid(format!("{}: libtorch: {e}", self.dir.display()))
                })?;
                Vec::<f32>::try_from(p.to(Device::Cpu)).map_err(|e| {
                    DataError::Invalid(format!("{}: libtorch: {e}", self.dir.display()))
                })
            }
            #[cfg(feature = "lightgbm")]
            Scorer::Lightgbm(booster) => {
                let e = crate::features::map::Encoded {
                    rows,
                    ids: ids.to_vec(),
                    dense: dense.to_vec(),
                    labels: Vec::new(),
                };
                let x = crate::gbdt::matrix(&e, &self.map.offsets(), self.map.num_dense());
                let p = booster
                    .predict(&x, 0, "num_threads=1")
                    .map_err(|e| DataError::Invalid(format!("{}: {e}", self.dir.display())))?;
                Ok(p.into_iter().map(|p| p as f32).collect())
            }
        }
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
            let at = self.map.history_offset();
            let hashes = h.hashes(get);
            h.read(
                &hashes,
                event_time(&h.spec.time_column, &vals),
                &mut dense[at..at + h.spec.width()],
            )
            .map_err(|e| ApiError::new(Status::InternalServerError, e.to_string()))?;
        }
        Ok((ids, dense))
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
fn event_time(column: &str, vals: &HashMap<&str, RawValue>) -> i64 {
    match vals.get(column) {
        Some(RawValue::TimeMs(t)) => *t,
        _ => now_ms(),
    }
}

/// The server's clock, in ms since the epoch.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn raw_value<'a>(field: &str, kind: ColumnKind, v: &'a Value) -> ApiResult<RawValue<'a>> {
    let wrong = |want: &str| {
        ApiError::bad(
            field,
            format!("field `{field}`: expected {want}, got {}", type_name(v)),
        )
    };
    Ok(match (kind, v) {
        (_, Value::Null) => RawValue::Missing,
        (ColumnKind::Categorical, Value::String(s)) if s.is_empty() => RawValue::Missing,
        (ColumnKind::Categorical, Value::String(s)) => RawValue::Str(s),
        (ColumnKind::Categorical, Value::Number(n)) => match n.as_i64() {
            Some(i) => RawValue::Int(i),
            None => RawValue::Float(n.as_f64().ok_or_else(|| wrong("a string or number"))?),
        },
        (ColumnKind::Categorical, _) => return Err(wrong("a string or number")),
        (ColumnKind::Integer, Value::Number(n)) => match n.as_i64() {
            Some(i) => RawValue::Int(i),
            None => match n.as_f64() {
                Some(x) if x.fract() == 0.0 && x.abs() < 9.0e15 => RawValue::Int(x as i64),
                _ => return Err(wrong("an integer")),
            },
        },
        (ColumnKind::Integer, _) => return Err(wrong("an integer")),
        (ColumnKind::Float, Value::Number(n)) => match n.as_f64() {
            Some(x) if x.is_finite() => RawValue::Float(x),
            _ => return Err(wrong("a finite number")),
        },
        (ColumnKind::Float, _) => return Err(wrong("a number")),
        (ColumnKind::Timestamp, Value::String(s)) => match parse_rfc3339(s) {
            Some(secs) => RawValue::TimeMs(secs * 1000),
            None => {
                return Err(ApiError::bad(
                    field,
                    format!("field `{field}`: {s:?} is not an RFC 3339 time"),
                ))
            }
        },
        (ColumnKind::Timestamp, Value::Number(n)) => match n.as_i64() {
            Some(secs) if secs.abs() < 1 << 40 => RawValue::TimeMs(secs * 1000),
            _ => return Err(wrong("RFC 3339 text or unix seconds")),
        },
        (ColumnKind::Timestamp, _) => return Err(wrong("RFC 3339 text or unix seconds")),
        (_, _) => return Err(wrong("nothing (the model does not read this column)")),
    })
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// An error answer: a status and a JSON body naming the field at fault.
#[derive(Debug)]
pub struct ApiError {
    pub status: Status,
    pub field: Option<String>,
    pub message: String,
}

pub type ApiResult<T> = std::result::Result<T, ApiError>;

impl ApiError {
    fn bad(field: &str, message: String) -> Self {
        ApiError {
            status: Status::BadRequest,
            field: Some(field.to_string()),
            message,
        }
    }
    fn new(status: Status, message: impl Into<String>) -> Self {
        ApiError {
            status,
            field: None,
            message: message.into(),
        }
    }
    fn answer(&self) -> (Status, Json<Value>) {
        (
            self.status,
            Json(json!({"error": self.message, "field": self.field, "status": self.status.code})),
        )
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of inference threads fed through a channel.
pub struct Pool {
    tx: crossbeam_channel::Sender<Job>,
    pub workers: usize,
}

impl Pool {
    pub fn new(workers: usize) -> Pool {
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        for i in 0..workers.max(1) {
            let rx = rx.clone();
            let _ = std::thread::Builder::new()
                .name(format!("inference-{i}"))
                .spawn(move || {
                    while let Ok(job) = rx.recv() {
                        job();
                    }
                });
        }
        Pool {
            tx,
            workers: workers.max(1),
        }
    }

    /// Run `f` on an inference thread and wait for it without blocking the
    /// async worker.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> ApiResult<T> {
        let (tx, rx) = rocket::tokio::sync::oneshot::channel();
        self.tx
            .send(Box::new(move || {
                let _ = tx.send(f());
            }))
            .map_err(|_| ApiError::new(Status::ServiceUnavailable, "the inference pool is gone"))?;
        rx.await
            .map_err(|_| ApiError::new(Status::InternalServerError, "an inference thread failed"))
    }
}

/// Upper bounds of the latency histogram, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0,
];
/// Upper bounds of the batch-size histogram.
const BATCH_BUCKETS: [f64; 8] = [1.0, 2.0, 8.0, 32.0, 100.0, 250.0, 500.0, 1000.0];

#[derive(Default, Clone)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    n: u64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[f64], x: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; bounds.len()];
        }
        for (c, b) in self.counts.iter_mut().zip(bounds) {
            if x <= *b {
                *c += 1;
            }
        }
        self.sum += x;
        self.n += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str, bounds: &[f64]) {
        use std::fmt::Write;
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, b) in bounds.iter().enumerate() {
            let c = self.counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", self.n);
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.n);
    }
}

/// A counter family: one count per label set (`route="/health",status="200"`).
#[derive(Default)]
struct Counters(Mutex<BTreeMap<String, u64>>);

impl Counters {
    fn add(&self, labels: String, n: u64) {
        if let Ok(mut c) = self.0.lock() {
            *c.entry(labels).or_default() += n;
        }
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        use std::fmt::Write;
        family(out, name, "counter", help);
        if let Ok(c) = self.0.lock() {
            for (labels, n) in c.iter() {
                let _ = writeln!(out, "{name}{{{labels}}} {n}");
            }
        }
    }
}

/// Counters behind `/metrics`.
#[derive(Default)]
pub struct Metrics {
    requests: Counters,
    latency: Mutex<BTreeMap<String, Histogram>>,
    batch: Mutex<Histogram>,
    predictions: Counters,
    feedback: Counters,
}

impl Metrics {
    fn record(&self, route: &str, status: u16, seconds: f64) {
        self.requests
            .add(format!("route=\"{route}\",status=\"{status}\""), 1);
        if let Ok(mut l) = self.latency.lock() {
            l.entry(route.to_string())
                .or_default()
                .observe(&LATENCY_BUCKETS, seconds);
        }
    }

    fn predicted(&self, b: &Bundle, rows: usize) {
        if let Ok(mut h) = self.batch.lock() {
            h.observe(&BATCH_BUCKETS, rows as f64);
        }
        self.predictions.add(
            format!("model=\"{}\",version=\"{}\"", b.name, b.version),
            rows as u64,
        );
    }

    fn render(&self, bundles: &[Arc<Bundle>], predlog: Option<&PredLog>) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        self.requests.render(
            &mut out,
            "ctr_requests_total",
            "HTTP requests by route and status.",
        );
        family(
            &mut out,
            "ctr_request_seconds",
            "histogram",
            "Request latency by route.",
        );
        if let Ok(l) = self.latency.lock() {
            for (route, h) in l.iter() {
                h.render(
                    &mut out,
                    "ctr_request_seconds",
                    &format!("route=\"{route}\""),
                    &LATENCY_BUCKETS,
                );
            }
        }
        family(
            &mut out,
            "ctr_batch_rows",
            "histogram",
            "Rows per model forward.",
        );
        if let Ok(h) = self.batch.lock() {
            h.render(&mut out, "ctr_batch_rows", "", &BATCH_BUCKETS);
        }
        self.predictions.render(
            &mut out,
            "ctr_predictions_total",
            "Rows predicted by model and version.",
        );
        self.feedback.render(
            &mut out,
            "ctr_feedback_events_total",
            "Feedback events applied by /feedback, by model and version.",
        );
        family(
            &mut out,
            "ctr_history_key_values",
            "gauge",
            "Key values held by a model's history counters.",
        );
        for b in bundles {
            if let Some(h) = &b.history {
                let _ = writeln!(
                    out,
                    "ctr_history_key_values{{model=\"{}\",version=\"{}\"}} {}",
                    b.name,
                    b.version,
                    h.stats().1
                );
            }
        }
        family(
            &mut out,
            "ctr_model_loaded",
            "gauge",
            "Loaded model versions (1 each).",
        );
        for b in bundles {
            let _ = writeln!(
                out,
                "ctr_model_loaded{{model=\"{}\",version=\"{}\",kind=\"{}\"}} 1",
                b.name, b.version, b.meta.model
            );
        }
        if let Some(log) = predlog {
            let st = &log.stats;
            let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
            for (name, kind, help, value) in [
                (
                    "ctr_predlog_queued",
                    "gauge",
                    "Prediction-log records waiting to be written.",
                    log.queued() as u64,
                ),
                (
                    "ctr_predlog_capacity",
                    "gauge",
                    "Size of the prediction-log queue.",
                    log.capacity as u64,
                ),
                (
                    "ctr_predlog_written_total",
                    "counter",
                    "Prediction-log records written.",
                    load(&st.written),
                ),
                (
                    "ctr_predlog_dropped_total",
                    "counter",
                    "Prediction-log records dropped (queue full or database down).",
                    load(&st.dropped),
                ),
                (
                    "ctr_predlog_queued_bytes",
                    "gauge",
                    "Bytes of the prediction-log records waiting to be written.",
                    log.queued_bytes() as u64,
                ),
                (
                    "ctr_predlog_rejected_total",
                    "counter",
                    "Prediction-log records the database refused (set aside in the dead-letter file).",
                    load(&st.rejected),
                ),
                (
                    "ctr_predlog_write_errors_total",
                    "counter",
                    "Failed connections and writes of the prediction log.",
                    load(&st.write_errors),
                ),
            ] {
                family(&mut out, name, kind, help);
                let _ = writeln!(out, "{name} {value}");
            }
        }
        out
    }
}

/// The `# HELP` and `# TYPE` lines of a metric family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    use std::fmt::Write;
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// The service's shared state.
pub struct Server {
    pub bundles: Vec<Arc<Bundle>>,
    pub pool: Pool,
    pub metrics: Metrics,
    pub config: ServeConfig,
    pub predlog: Option<PredLog>,
    /// Bundles that did not load: their folder (relative to the models
    /// folder) and why.
    pub skipped: Vec<(String, String)>,
    /// `/feedback`'s bearer token, when one is set.
    feedback_token: Option<String>,
    next_id: AtomicU64,
    started: u64,
}

impl Server {
    /// Load the bundles of `config.models` (a bundle that fails is reported
    /// on stderr and skipped) and start the inference threads.
    pub fn load(config: ServeConfig) -> Result<Server> {
        let device = crate::device::resolve_device(&config.device).map_err(DataError::Invalid)?;
        let names = bundle_versions(&config.models)?;
        let found: usize = names.iter().map(Vec::len).sum();
        let mut bundles: Vec<Arc<Bundle>> = Vec::new();
        let mut skipped = Vec::new();
        for versions in &names {
            // Newest first; without `all_versions`, the newest that loads.
            for dir in versions.iter().rev() {
                let shown = shown_path(&config.models, dir);
                let loaded = Bundle::load_with_history(
                    dir,
                    device,
                    Some(&config.history_dir),
                    &config.history_options(),
                )
                .and_then(|b| {
                    match bundles
                        .iter()
                        .find(|o| o.name == b.name && o.version == b.version)
                    {
                        Some(o) => Err(DataError::Invalid(format!(
                            "its metadata names {}/{}, which {} already serves",
                            b.name,
                            b.version,
                            shown_path(&config.models, &o.dir)
                        ))),
                        None => Ok(b),
                    }
                });
                match loaded {
                    Ok(b) => {
                        if let Some(newer) = skipped
                            .last()
                            .filter(|_: &&(String, String)| !config.all_versions)
                        {
                            if newer.0.starts_with(&format!("{}/", b.name)) {
                                eprintln!(
                                    "serve: serving {}/{} instead, the newest version that loads",
                                    b.name, b.version
                                );
                            }
                        }
                        bundles.push(Arc::new(b));
                        if !config.all_versions {
                            break;
                        }
                    }
                    Err(e) => {
                        eprintln!("serve: skipping {shown}: {e}");
                        skipped.push((shown, e.to_string()));
                    }
                }
            }
        }
        if bundles.is_empty() {
            return Err(DataError::Invalid(format!(
                "{}: no model bundle could be loaded ({found} found); `ctr-dl export` writes them",
                config.models.display(),
            )));
        }
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let workers = if config.workers == 0 {
            cores
        } else {
            config.workers
        };
        // Workers times intra-op threads stays within the cores.
        tch::set_num_threads((cores / workers).max(1) as i32);
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let predlog = match config.predlog.as_str() {
            "" | "off" | "none" => None,
            t => {
                let target = Target::parse(t);
                let dead_letter = match config.predlog_dead_letter.as_str() {
                    "off" | "none" => None,
                    "" => Some(target.default_dead_letter()),
                    p => Some(PathBuf::from(p)),
                };
                Some(PredLog::start_with(
                    target,
                    &config.predlog_table,
                    PredLogOptions {
                        capacity: config.predlog_queue,
                        max_bytes: config.predlog_queue_bytes,
                        dead_letter,
                    },
                )?)
            }
        };
        Ok(Server {
            bundles,
            pool: Pool::new(workers),
            metrics: Metrics::default(),
            predlog,
            skipped,
            feedback_token: config.feedback_token(),
            config,
            next_id: AtomicU64::new(0),
            started,
        })
    }

    /// The bundle a request names: by model name (default: the first loaded)
    /// and version (default: the latest loaded of that name).
    fn pick(&self, model: Option<&str>, version: Option<&str>) -> ApiResult<Arc<Bundle>> {
        let candidates: Vec<&Arc<Bundle>> = match model {
            Some(m) => self.bundles.iter().filter(|b| b.name == m).collect(),
            None => {
                let first = &self.bundles[0].name;
                self.bundles.iter().filter(|b| &b.name == first).collect()
            }
        };
        if candidates.is_empty() {
            let names: Vec<&str> = self.bundles.iter().map(|b| b.name.as_str()).collect();
            return Err(ApiError::bad(
                "model",
                format!(
                    "no model {:?} is loaded (loaded: {})",
                    model.unwrap_or(""),
                    names.join(", ")
                ),
            ));
        }
        match version {
            Some(v) => candidates
                .into_iter()
                .find(|b| b.version == v)
                .cloned()
                .ok_or_else(|| ApiError::bad("version", format!("version {v:?} is not loaded"))),
            None => Ok(candidates
                .into_iter()
                .max_by(|a, b| version_order(&a.version, &b.version))
                .cloned()
                .expect("non-empty")),
        }
    }

    fn request_id(&self) -> String {
        format!(
            "{:x}-{:06x}",
            self.started,
            self.next_id.fetch_add(1, Ordering::Relaxed)
        )
    }
}

impl Server {
    /// Queue predictions for the log (a no-op when it is off).
    fn log(
        &self,
        b: &Bundle,
        request_id: &str,
        rows: &[(&Map<String, Value>, f32)],
        started: Instant,
    ) {
        let Some(log) = &self.predlog else { return };
        let latency_ms = started.elapsed().as_secs_f64() * 1e3;
        let time_ms = now_ms();
        for (fields, p) in rows {
            let fields: Map<String, Value> = fields
                .iter()
                .filter(|(k, _)| k.as_str() != "model" && k.as_str() != "version")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            log.log(Record {
                request_id: request_id.to_string(),
                time_ms,
                model: b.name.clone(),
                version: b.version.clone(),
                fields: Value::Object(fields).to_string(),
                probability: *p as f64,
                latency_ms,
            });
        }
    }
}

fn version_order(a: &str, b: &str) -> std::cmp::Ordering {
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
    let names = std::fs::read_dir(root).map_err(|e| DataError::io(root, e))?;
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
            .map_err(|e| DataError::io(&name, e))?
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

/// A bundle folder as shown to clients and logs: relative to the models
/// folder (never an absolute path).
fn shown_path(models: &Path, dir: &Path) -> String {
    dir.strip_prefix(models)
        .unwrap_or(dir)
        .display()
        .to_string()
}

/// 200 with the value, or the error's status and JSON.
fn answer(r: ApiResult<Value>) -> (Status, Json<Value>) {
    match r {
        Ok(v) => (Status::Ok, Json(v)),
        Err(e) => e.answer(),
    }
}

/// JSON routes take JSON bodies only (`application/json` or a `+json`
/// type): a `text/plain` or form body, which any web page may post
/// cross-origin without a preflight, is answered 415.
fn json_only(ct: Option<&ContentType>) -> ApiResult<()> {
    match ct {
        Some(ct) if ct.is_json() || ct.sub().as_str().ends_with("+json") => Ok(()),
        Some(ct) => Err(ApiError::new(
            Status::UnsupportedMediaType,
            format!("Content-Type {ct}: this route takes application/json"),
        )),
        None => Err(ApiError::new(
            Status::UnsupportedMediaType,
            "no Content-Type: this route takes application/json",
        )),
    }
}

/// The request's `Authorization` header, for `/feedback`.
pub struct Authorization(Option<String>);

#[rocket::async_trait]
impl<'r> rocket::request::FromRequest<'r> for Authorization {
    type Error = std::convert::Infallible;
    async fn from_request(req: &'r Request<'_>) -> rocket::request::Outcome<Self, Self::Error> {
        rocket::request::Outcome::Success(Authorization(
            req.headers().get_one("Authorization").map(str::to_string),
        ))
    }
}

/// Check a bearer token against the configured one in constant time.
fn authorized(expected: Option<&str>, got: &Authorization) -> ApiResult<()> {
    let Some(want) = expected else { return Ok(()) };
    let given = got
        .0
        .as_deref()
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or("");
    let same = want.len() == given.len()
        && want
            .bytes()
            .zip(given.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        Err(ApiError::new(
            Status::Unauthorized,
            "/feedback needs `Authorization: Bearer <feedback_token>`",
        ))
    }
}

/// The body as a JSON object; `shape` says what it should have been.
async fn read_object(
    data: Data<'_>,
    config: &ServeConfig,
    shape: &str,
) -> ApiResult<Map<String, Value>> {
    let timeout = std::time::Duration::from_secs_f64(config.body_read_timeout_s.max(0.001));
    match read_body(data, config.max_body_bytes, timeout).await? {
        Value::Object(obj) => Ok(obj),
        _ => Err(ApiError::new(Status::BadRequest, shape)),
    }
}

/// The body as JSON: at most `limit` bytes (413 past it), arrived within
/// `timeout` (408 otherwise, so a client that sends its body slowly cannot
/// hold a connection).
async fn read_body(data: Data<'_>, limit: u64, timeout: std::time::Duration) -> ApiResult<Value> {
    let body = rocket::tokio::time::timeout(timeout, data.open(limit.bytes()).into_string())
        .await
        .map_err(|_| {
            ApiError::new(
                Status::RequestTimeout,
                format!(
                    "the body did not arrive within {} s (body_read_timeout_s)",
                    timeout.as_secs_f64()
                ),
            )
        })?
        .map_err(|e| ApiError::new(Status::BadRequest, format!("reading the body: {e}")))?;
    if !body.is_complete() {
        return Err(ApiError::new(
            Status::PayloadTooLarge,
            format!("the body is over {limit} bytes"),
        ));
    }
    serde_json::from_str(&body).map_err(|e| {
        ApiError::new(
            Status::BadRequest,
            format!(
                "malformed JSON at line {} column {}: {e}",
                e.line(),
                e.column()
            ),
        )
    })
}

/// A body of `{"<key>": [...], "model", "version"}` (what `what` holds):
/// its list, checked to be a non-empty array of at most `max` items, and no
/// other field.
fn list_body<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    what: &str,
    max: usize,
) -> ApiResult<&'a Vec<Value>> {
    for k in obj.keys() {
        if ![key, "model", "version"].contains(&k.as_str()) {
            return Err(ApiError::bad(
                k,
                format!("unknown field `{k}`; {what} holds `{key}`, `model`, `version`"),
            ));
        }
    }
    let list = match obj.get(key) {
        Some(Value::Array(a)) => a,
        Some(v) => {
            return Err(ApiError::bad(
                key,
                format!("field `{key}`: expected an array, got {}", type_name(v)),
            ))
        }
        None => return Err(ApiError::bad(key, format!("field `{key}` is missing"))),
    };
    if list.is_empty() {
        return Err(ApiError::bad(key, format!("`{key}` is empty")));
    }
    if list.len() > max {
        return Err(ApiError::new(
            Status::PayloadTooLarge,
            format!("{} {key}; at most {max} per request", list.len()),
        ));
    }
    Ok(list)
}

fn str_field<'a>(obj: &'a Map<String, Value>, key: &str) -> ApiResult<Option<&'a str>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Number(_)) if key == "version" => Err(ApiError::bad(
            key,
            format!("field `{key}`: give the version as a string, e.g. \"1\""),
        )),
        Some(v) => Err(ApiError::bad(
            key,
            format!("field `{key}`: expected a string, got {}", type_name(v)),
        )),
    }
}

async fn predict(
    server: &Server,
    bundle: Arc<Bundle>,
    ids: Vec<i32>,
    dense: Vec<f32>,
    rows: usize,
) -> ApiResult<Vec<f32>> {
    let b = bundle.clone();
    let p = server
        .pool
        .run(move || b.forward(&ids, &dense, rows))
        .await?
        .map_err(|e| ApiError::new(Status::InternalServerError, e.to_string()))?;
    server.metrics.predicted(&bundle, rows);
    Ok(p)
}

#[rocket::post("/predict_ctr", data = "<data>")]
async fn predict_ctr(
    data: Data<'_>,
    ct: Option<&ContentType>,
    server: &State<Arc<Server>>,
) -> (Status, Json<Value>) {
    let started = Instant::now();
    let r: ApiResult<Value> = async {
        json_only(ct)?;
        let obj = read_object(
            data,
            &server.config,
            "the body must be a JSON object of raw fields",
        )
        .await?;
        let bundle = server.pick(str_field(&obj, "model")?, str_field(&obj, "version")?)?;
        let (ids, dense) = bundle.encode(&obj, &["model", "version"])?;
        let p = predict(server, bundle.clone(), ids, dense, 1).await?[0];
        let id = server.request_id();
        server.log(&bundle, &id, &[(&obj, p)], started);
        Ok(json!({
            "predicted_ctr": p,
            "probability": p,
            "model": bundle.name,
            "version": bundle.version,
            "request_id": id,
        }))
    }
    .await;
    answer(r)
}

#[rocket::post("/batch_predict", data = "<data>")]
async fn batch_predict(
    data: Data<'_>,
    ct: Option<&ContentType>,
    server: &State<Arc<Server>>,
) -> (Status, Json<Value>) {
    let started = Instant::now();
    let r: ApiResult<Value> = async {
        json_only(ct)?;
        let obj = read_object(
            data,
            &server.config,
            "the body must be a JSON object {\"instances\": [...]}",
        )
        .await?;
        let instances = list_body(&obj, "instances", "a batch", server.config.max_batch)?;
        let bundle = server.pick(str_field(&obj, "model")?, str_field(&obj, "version")?)?;
        let (nf, nd) = (bundle.map.num_fields(), bundle.map.num_dense());
        let mut ids = Vec::with_capacity(instances.len() * nf);
        let mut dense = Vec::with_capacity(instances.len() * nd);
        for (i, inst) in instances.iter().enumerate() {
            let Value::Object(o) = inst else {
                return Err(ApiError::bad(
                    &format!("instances[{i}]"),
                    format!(
                        "instances[{i}]: expected an object, got {}",
                        type_name(inst)
                    ),
                ));
            };
            let (a, b) = bundle.encode(o, &[]).map_err(|mut e| {
                e.message = format!("instances[{i}]: {}", e.message);
                e.field = e.field.map(|f| format!("instances[{i}].{f}"));
                e
            })?;
            ids.extend(a);
            dense.extend(b);
        }
        let n = instances.len();
        let p = predict(server, bundle.clone(), ids, dense, n).await?;
        let id = server.request_id();
        let rows: Vec<(&Map<String, Value>, f32)> = instances
            .iter()
            .filter_map(|v| v.as_object())
            .zip(p.iter().copied())
            .collect();
        server.log(&bundle, &id, &rows, started);
        Ok(json!({
            "predictions": p,
            "model": bundle.name,
            "version": bundle.version,
            "request_id": id,
        }))
    }
    .await;
    answer(r)
}

/// `/feedback`: outcomes of shown impressions for the history counters.
/// `{"events": [{...fields, "clicked": 0|1}, ...]}`, with `model` (and
/// `version`) to feed one model; without, every loaded model that keeps
/// counters gets them (each reads its own key columns; a field no target
/// model reads is an error, as in a prediction).
#[rocket::post("/feedback", data = "<data>")]
async fn feedback(
    data: Data<'_>,
    ct: Option<&ContentType>,
    auth: Authorization,
    server: &State<Arc<Server>>,
) -> (Status, Json<Value>) {
    let r: ApiResult<Value> = async {
        authorized(server.feedback_token.as_deref(), &auth)?;
        json_only(ct)?;
        let obj = read_object(
            data,
            &server.config,
            "the body must be a JSON object {\"events\": [...]}",
        )
        .await?;
        let events = list_body(&obj, "events", "feedback", server.config.max_batch)?;
        let ms = |s: u64| i64::try_from(s).unwrap_or(i64::MAX).saturating_mul(1000);
        let window = EventWindow {
            max_age_ms: ms(server.config.feedback_max_age_s),
            max_ahead_ms: ms(server.config.feedback_max_ahead_s),
        };
        let targets: Vec<Arc<Bundle>> = match str_field(&obj, "model")? {
            Some(m) => vec![server.pick(Some(m), str_field(&obj, "version")?)?],
            None if str_field(&obj, "version")?.is_some() => {
                return Err(ApiError::bad(
                    "version",
                    "`version` names a version of one model: give `model` too (without \
                     both, every model that keeps counters gets the events)"
                        .into(),
                ))
            }
            None => server
                .bundles
                .iter()
                .filter(|b| b.history.is_some())
                .cloned()
                .collect(),
        };
        if targets.is_empty() {
            return Err(ApiError::new(
                Status::BadRequest,
                "no loaded model keeps history counters ([features.history])",
            ));
        }
        // Every event is checked for every target before any is applied.
        let mut per_model = Vec::with_capacity(targets.len());
        for b in &targets {
            let mut list = Vec::with_capacity(events.len());
            for (i, e) in events.iter().enumerate() {
                let Value::Object(o) = e else {
                    return Err(ApiError::bad(
                        &format!("events[{i}]"),
                        format!("events[{i}]: expected an object, got {}", type_name(e)),
                    ));
                };
                list.push(b.feedback_event(o, window).map_err(|mut err| {
                    err.message = format!("events[{i}]: {}", err.message);
                    err.field = err.field.map(|f| format!("events[{i}].{f}"));
                    err
                })?);
            }
            per_model.push(list);
        }
        let mut models = Vec::new();
        for (b, list) in targets.iter().zip(per_model) {
            let h = b.history.as_ref().expect("checked by feedback_event");
            let done = h
                .feedback(&list)
                .map_err(|e| ApiError::new(Status::InternalServerError, e.to_string()))?;
            models.push(json!({
                "model": b.name,
                "version": b.version,
                "events": done.seq,
                "applied": done.applied,
                "duplicates": done.duplicates,
            }));
            server.metrics.feedback.add(
                format!("model=\"{}\",version=\"{}\"", b.name, b.version),
                done.applied,
            );
        }
        Ok(json!({"accepted": events.len(), "models": models}))
    }
    .await;
    answer(r)
}

#[rocket::get("/health")]
fn health(server: &State<Arc<Server>>) -> Json<Value> {
    Json(json!({
        "status": "ready",
        "models": server.bundles.iter().map(|b| format!("{}/{}", b.name, b.version)).collect::<Vec<_>>(),
    }))
}

#[rocket::get("/model_info")]
fn model_info(server: &State<Arc<Server>>) -> Json<Value> {
    let models: Vec<Value> = server
        .bundles
        .iter()
        .map(|b| {
            json!({
                "name": b.name,
                "version": b.version,
                "kind": b.meta.model,
                "dir": shown_path(&server.config.models, &b.dir),
                "device": format!("{:?}", b.device()),
                "format": b.meta.format,
                "run": b.meta.run,
                "created": b.meta.created,
                "train_commit": b.meta.train_commit,
                "parameters": b.meta.parameters,
                "fields": b.map.columns.iter().map(|(c, k)| json!({"name": c, "kind": format!("{k:?}").to_lowercase()})).collect::<Vec<_>>(),
                "num_fields": b.map.num_fields(),
                "num_dense": b.map.num_dense(),
                "metrics": b.meta.metrics,
                "history": b.history.as_ref().map(|h| {
                    let (events, key_values) = h.stats();
                    json!({"keys": h.spec.keys, "time_column": h.spec.time_column, "events": events, "key_values": key_values})
                }),
            })
        })
        .collect();
    Json(json!({
        "models": models,
        "skipped": server.skipped.iter().map(|(dir, why)| json!({"dir": dir, "error": why})).collect::<Vec<_>>(),
        "workers": server.pool.workers,
        "predlog": server.predlog.as_ref().map(|l| json!({"target": l.target.describe(), "table": l.table})),
    }))
}

#[rocket::get("/metrics")]
fn metrics(server: &State<Arc<Server>>) -> (ContentType, String) {
    (
        ContentType::new("text", "plain").with_params(("version", "0.0.4")),
        server
            .metrics
            .render(&server.bundles, server.predlog.as_ref()),
    )
}

#[rocket::catch(default)]
fn catch_all(status: Status, req: &Request<'_>) -> Json<Value> {
    Json(json!({
        "error": format!("{} {}: {}", req.method(), req.uri().path(), status.reason_lossy()),
        "field": null,
        "status": status.code,
    }))
}

/// Request counts and latency per route, for `/metrics`.
struct RequestMetrics(Arc<Server>);

#[rocket::async_trait]
impl Fairing for RequestMetrics {
    fn info(&self) -> Info {
        Info {
            name: "request metrics",
            kind: FairingKind::Request | FairingKind::Response,
        }
    }

    async fn on_request(&self, req: &mut Request<'_>, _: &mut Data<'_>) {
        req.local_cache(Instant::now);
    }

    async fn on_response<'r>(&self, req: &'r Request<'_>, res: &mut Response<'r>) {
        let start = req.local_cache(Instant::now);
        let route = req
            .route()
            .map(|r| r.uri.path().to_string())
            .unwrap_or_else(|| "unmatched".into());
        self.0
            .metrics
            .record(&route, res.status().code, start.elapsed().as_secs_f64());
    }
}

/// The Rocket instance serving `server` (bound to `config.address:port`).
pub fn rocket(server: Arc<Server>) -> rocket::Rocket<rocket::Build> {
    let figment = rocket::Config::figment()
        .merge(("address", server.config.address.clone()))
        .merge(("port", server.config.port))
        .merge(("log_level", rocket::config::LogLevel::Critical))
        .merge(("cli_colors", false))
        // Read by the patched Rocket (vendor/rocket/PATCHES.md).
        .merge(("header_read_timeout", server.config.header_read_timeout_s))
        .merge(("max_connections", server.config.connection_limit()));
    rocket::custom(figment)
        .manage(server.clone())
        .attach(RequestMetrics(server))
        .mount(
            "/",
            rocket::routes![
                predict_ctr,
                batch_predict,
                feedback,
                health,
                model_info,
                metrics
            ],
        )
        .register("/", rocket::catchers![catch_all])
}

/// Load the bundles and serve until SIGINT or SIGTERM (in-flight requests
/// finish first).
pub fn serve(config: ServeConfig) -> Result<()> {
    super::logging::init();
    let server = Arc::new(Server::load(config)?);
    for b in &server.bundles {
        println!(
            "serve: {}/{} ({}, {} fields) from {}",
            b.name,
            b.version,
            b.meta.model,
            b.map.num_fields(),
            shown_path(&server.config.models, &b.dir)
        );
    }
    let loopback = server
        .config
        .address
        .parse::<std::net::IpAddr>()
        .map_or(server.config.address == "localhost", |ip| ip.is_loopback());
    if !loopback
        && server.feedback_token.is_none()
        && server.bundles.iter().any(|b| b.history.is_some())
    {
        eprintln!(
            "serve: warning: binding {} with no feedback_token (or CTR_DL_FEEDBACK_TOKEN): \
             anyone who can reach the port can change the history counters through /feedback",
            server.config.address
        );
    }
    println!(
        "serve: http://{}:{} ({} inference workers), prediction log: {}",
        server.config.address,
        server.config.port,
        server.pool.workers,
        server
            .predlog
            .as_ref()
            .map_or("off".to_string(), |l| format!(
                "{} table {}",
                l.target.describe(),
                l.table
            ))
    );
    let result = rocket::execute(rocket(server.clone()).launch());
    // History counters: a last snapshot, so a restart starts where this ends.
    for b in &server.bundles {
        if let Some(h) = &b.history {
            match h.snapshot() {
                Ok(()) => println!(
                    "serve: history counters of {}/{} saved ({} events)",
                    b.name,
                    b.version,
                    h.stats().0
                ),
                Err(e) => eprintln!("serve: {}/{}: {e}", b.name, b.version),
            }
        }
    }
    // In-flight requests have finished: write what the log still holds.
    if let Some(log) = &server.predlog {
        log.close();
        println!(
            "serve: stopped; prediction log: {} written, {} dropped",
            log.stats.written.load(Ordering::Relaxed),
            log.stats.dropped.load(Ordering::Relaxed)
        );
    }
    result
        .map(|_| ())
        .map_err(|e| DataError::Invalid(format!("the server stopped: {e}")))
}
