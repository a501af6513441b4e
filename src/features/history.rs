//! Leakage-free historical features: for each configured key (a column such
//! as `user_id`, or columns joined with `+` such as `user_id+ad_id`), what the
//! rows strictly before this one in time say about it: past impressions and
//! clicks and the smoothed past CTR (over a window: decayed with a long
//! half-life, a week by default), recent impressions (decayed with a short
//! half-life), and how recently the key was last shown and last clicked.
//!
//! One state machine, [`HistoryState`], computes them: [`HistoryState::read`]
//! gives a row's features from the state, [`HistoryState::update`] adds the row
//! once its outcome is known. Offline, [`compute`] replays every split merged
//! in time order; rows with the same timestamp are all read before any of them
//! is added, so a row never sees itself or a row of its own instant.
use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use arrow::array::{Array, Int8Array, TimestampMillisecondArray};
use serde::{Deserialize, Serialize};

use super::hashing::xxh3;
use super::raw::{view, RawValue};
use crate::data::manifest::DatasetManifest;
use crate::data::reader::{ReaderOptions, ShardReader};
use crate::data::schema::{ColumnKind, DatasetSchema};
use crate::data::writer::Split;
use crate::error::{Error, Result};

/// The `[features.history]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryConfig {
    /// Keys: a column, or columns joined with `+` (`"user_id+ad_id"`).
    pub keys: Vec<String>,
    /// Prior weight of the smoothed CTR: `(clicks + m * prior) / (imps + m)`
    /// (default 20).
    #[serde(default = "d_smoothing")]
    pub smoothing: f64,
    /// Half-life of the recent-impressions count and of the recency inputs
    /// (default 24 hours).
    #[serde(default = "d_half_life")]
    pub half_life_hours: f64,
    /// Half-life of the impressions and clicks counts and of the smoothed CTR
    /// made from them (default 168 hours, a week): decayed counts have the
    /// same scale at the end of a log as at its start, where counts since the
    /// start of the log grow with time, so that a model fitted on the early
    /// days meets larger counts than it has seen on the later days it is
    /// tested and served on. `inf` keeps every past row at full weight.
    #[serde(default = "d_window")]
    pub window_hours: f64,
    /// Bound of the standardised inputs: each becomes `clip * tanh(z / clip)`
    /// (default 4). Standardising puts the rare events 10 to 20 sd out (one
    /// past click on a user-ad pair, whose click count is 0 on 99.5% of
    /// rows); the squash bounds them and keeps their order, so trees lose
    /// nothing (bench/sweeps/history_clip_1m.txt: DeepFM's best valid log
    /// loss 0.11833 -> 0.11800, DCN's gap 0.01191 -> 0.01171). 0 turns it
    /// off.
    #[serde(default = "d_clip")]
    pub clip: f64,
    /// The time column (default: the dataset's first timestamp column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_column: Option<String>,
}

fn d_smoothing() -> f64 {
    20.0
}
fn d_half_life() -> f64 {
    24.0
}
fn d_window() -> f64 {
    168.0
}
fn d_clip() -> f64 {
    4.0
}

impl HistoryConfig {
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self
            .keys
            .iter()
            .any(|k| k.split('+').any(|c| c.trim().is_empty()))
        {
            return Err("features.history.keys: every key names one or more columns".into());
        }
        if !(self.smoothing > 0.0 && self.half_life_hours > 0.0 && self.window_hours > 0.0) {
            return Err(
                "features.history.smoothing, half_life_hours and window_hours must be positive"
                    .into(),
            );
        }
        if !(self.clip >= 0.0 && self.clip.is_finite()) {
            return Err(format!(
                "features.history.clip must be 0 (off) or a positive bound, not {}",
                self.clip
            ));
        }
        Ok(())
    }
}

/// Version of the history inputs (their definition and scaling), part of the
/// encoded cache's key when history is configured.
pub const HISTORY_VERSION: u32 = 5;

/// What each key contributes, in order.
pub const PARTS: [&str; 6] = [
    "imps",
    "clicks",
    "ctr",
    "recent",
    "since_imp",
    "since_click",
];

/// The fitted history settings, saved in `features.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistorySpec {
    /// The columns of each key.
    pub keys: Vec<Vec<String>>,
    pub smoothing: f64,
    pub half_life_hours: f64,
    /// Half-life of the impressions and clicks counts; `None` (and
    /// feature maps written before it existed) counts every past row fully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_hours: Option<f64>,
    /// The train click rate: the CTR a key without history is smoothed toward.
    pub prior: f64,
    pub time_column: String,
    /// Each input's mean and standard deviation over the train rows: the
    /// encoded inputs are `(raw - mean) / std`, so a network sees them on
    /// the scale of its other inputs. Empty before the replay has run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mean: Vec<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub std: Vec<f64>,
    /// The bound of the standardised inputs (`clip * tanh(z / clip)`);
    /// `None` (and feature maps written before it existed) leaves them as
    /// they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip: Option<f64>,
}

impl HistorySpec {
    /// Inputs per row.
    pub fn width(&self) -> usize {
        self.keys.len() * PARTS.len()
    }

    /// Input names: `hist_<key>_<part>`, key columns joined with `_x_`.
    pub fn names(&self) -> Vec<String> {
        self.keys
            .iter()
            .flat_map(|k| {
                let key = k.join("_x_");
                PARTS.iter().map(move |p| format!("hist_{key}_{p}"))
            })
            .collect()
    }

    /// The weight, after `dt` ms, of a row in the recent-impressions count and
    /// the recency inputs.
    fn decay(&self) -> impl Fn(i64) -> f64 {
        half_life_decay(Some(self.half_life_hours))
    }

    /// The weight, after `dt` ms, of a row in the impressions and clicks
    /// counts (1 when they are not windowed).
    fn window_decay(&self) -> impl Fn(i64) -> f64 {
        half_life_decay(self.window_hours)
    }

    /// Standardise raw inputs in place with the train moments (if fitted),
    /// then bound them (if `clip`).
    pub fn standardize(&self, row: &mut [f32]) {
        for ((v, m), s) in row.iter_mut().zip(&self.mean).zip(&self.std) {
            let z = (*v as f64 - m) / s;
            *v = match self.clip {
                Some(c) => c * (z / c).tanh(),
                None => z,
            } as f32;
        }
    }

    /// Every column the keys and the clock read.
    pub fn columns(&self) -> Vec<String> {
        let mut cols = vec![self.time_column.clone()];
        for c in self.keys.iter().flatten() {
            if !cols.contains(c) {
                cols.push(c.clone());
            }
        }
        cols
    }

    /// The hash of each key of a row, from its raw values.
    pub fn key_hashes<'a>(&self, get: impl Fn(&str) -> RawValue<'a>, out: &mut Vec<u64>) {
        let mut buf = Vec::with_capacity(64);
        out.clear();
        for key in &self.keys {
            buf.clear();
            for c in key {
                buf.extend_from_slice(c.as_bytes());
                buf.push(0x1F);
                match get(c) {
                    RawValue::Missing => buf.push(0),
                    RawValue::Str(s) => buf.extend_from_slice(s.as_bytes()),
                    RawValue::Int(i) => buf.extend_from_slice(i.to_string().as_bytes()),
                    RawValue::Float(f) => buf.extend_from_slice(f.to_string().as_bytes()),
                    RawValue::TimeMs(t) => buf.extend_from_slice(t.to_string().as_bytes()),
                }
                buf.push(0x1E);
            }
            out.push(xxh3(&buf, 0));
        }
    }
}

/// What is known about one key value.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Counter {
    /// Impressions and clicks, decayed with the window's half-life to
    /// `recent_at` (ms).
    imps: f64,
    clicks: f64,
    /// Impressions decayed with the recency half-life to `recent_at`.
    recent: f64,
    recent_at: i64,
    last_imp: Option<i64>,
    last_click: Option<i64>,
}

/// The counters of every key value seen so far.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HistoryState {
    maps: Vec<HashMap<u64, Counter>>,
}

/// The replay's final state, saved with the encoded cache and copied into an
/// exported bundle: where a server's counters start.
pub const STATE_FILE: &str = "history.state";
const STATE_MAGIC: &[u8; 8] = b"CTRHIST1";
/// Bytes per counter in a state file: the key hash and six numbers.
const STATE_ENTRY: usize = 56;

/// `dt ↦ 2^(-dt / half-life)` for `dt` in ms (negative `dt` counts as 0);
/// no half-life is no decay.
fn half_life_decay(half_life_hours: Option<f64>) -> impl Fn(i64) -> f64 {
    let rate = half_life_hours.map_or(0.0, |h| std::f64::consts::LN_2 / (h * 3.6e6));
    move |dt| (-(dt.max(0) as f64) * rate).exp()
}

fn logit(p: f64) -> f64 {
    let p = p.clamp(1e-6, 1.0 - 1e-6);
    (p / (1.0 - p)).ln()
}

impl HistoryState {
    pub fn new(spec: &HistorySpec) -> Self {
        HistoryState {
            maps: vec![HashMap::new(); spec.keys.len()],
        }
    }

    /// Key values held, over all keys.
    pub fn len(&self) -> usize {
        self.maps.iter().map(|m| m.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Write the counters to `path` (through a temporary file): the magic,
    /// the number of keys, and per key its counters (hash, impressions,
    /// clicks, decayed impressions and their time, last impression and last
    /// click with `i64::MIN` for none), little-endian. `seq` is stored with
    /// them: the last feedback event they include.
    pub fn save(&self, path: &Path, seq: u64) -> Result<()> {
        let mut b = Vec::with_capacity(32 + self.len() * STATE_ENTRY);
        b.extend_from_slice(STATE_MAGIC);
        b.extend_from_slice(&seq.to_le_bytes());
        b.extend_from_slice(&(self.maps.len() as u64).to_le_bytes());
        for m in &self.maps {
            b.extend_from_slice(&(m.len() as u64).to_le_bytes());
            let mut keys: Vec<&u64> = m.keys().collect();
            keys.sort_unstable();
            for h in keys {
                let c = &m[h];
                b.extend_from_slice(&h.to_le_bytes());
                b.extend_from_slice(&c.imps.to_le_bytes());
                b.extend_from_slice(&c.clicks.to_le_bytes());
                b.extend_from_slice(&c.recent.to_le_bytes());
                b.extend_from_slice(&c.recent_at.to_le_bytes());
                b.extend_from_slice(&c.last_imp.unwrap_or(i64::MIN).to_le_bytes());
                b.extend_from_slice(&c.last_click.unwrap_or(i64::MIN).to_le_bytes());
            }
        }
        crate::data::io::atomic_write(path, &b)
    }

    /// Read a state written by [`HistoryState::save`] for `spec`'s keys, with
    /// the sequence number saved with it.
    pub fn load(path: &Path, spec: &HistorySpec) -> Result<(HistoryState, u64)> {
        let b = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let bad = |what: &str| {
            Error::Invalid(format!(
                "{}: not a history state file: {what}",
                path.display()
            ))
        };
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<&[u8]> {
            let s = b.get(at..at + n).ok_or_else(|| bad("it ends early"))?;
            at += n;
            Ok(s)
        };
        if take(8)? != STATE_MAGIC {
            return Err(bad("wrong magic"));
        }
        let u64_of = |s: &[u8]| u64::from_le_bytes(s.try_into().expect("8 bytes"));
        let seq = u64_of(take(8)?);
        let keys = u64_of(take(8)?) as usize;
        if keys != spec.keys.len() {
            return Err(Error::Invalid(format!(
                "{}: holds counters of {keys} keys, the model has {}",
                path.display(),
                spec.keys.len()
            )));
        }
        let mut maps = Vec::with_capacity(keys);
        for _ in 0..keys {
            let n = u64_of(take(8)?) as usize;
            let body = take(
                n.checked_mul(STATE_ENTRY)
                    .ok_or_else(|| bad("bad length"))?,
            )?;
            let mut m = HashMap::with_capacity(n);
            for e in body.chunks_exact(STATE_ENTRY) {
                let f = |i: usize| f64::from_le_bytes(e[i..i + 8].try_into().expect("8 bytes"));
                let t = |i: usize| i64::from_le_bytes(e[i..i + 8].try_into().expect("8 bytes"));
                let opt = |v: i64| (v != i64::MIN).then_some(v);
                m.insert(
                    u64_of(&e[0..8]),
                    Counter {
                        imps: f(8),
                        clicks: f(16),
                        recent: f(24),
                        recent_at: t(32),
                        last_imp: opt(t(40)),
                        last_click: opt(t(48)),
                    },
                );
            }
            maps.push(m);
        }
        if at != b.len() {
            return Err(bad("trailing bytes"));
        }
        Ok((HistoryState { maps }, seq))
    }

    /// The time (ms) of the latest impression counted, if any.
    pub fn latest(&self) -> Option<i64> {
        self.maps
            .iter()
            .flat_map(|m| m.values().filter_map(|c| c.last_imp))
            .max()
    }

    /// A row's inputs at time `t` (ms) from what came before: `spec.width()`
    /// values into `out`.
    pub fn read(&self, spec: &HistorySpec, hashes: &[u64], t: i64, out: &mut [f32]) {
        let (decay, window) = (spec.decay(), spec.window_decay());
        let prior_logit = logit(spec.prior);
        for (k, h) in hashes.iter().enumerate() {
            let c = self.maps[k].get(h).copied().unwrap_or_default();
            let w = window(t - c.recent_at);
            let (imps, clicks) = (c.imps * w, c.clicks * w);
            let ctr = (clicks + spec.smoothing * spec.prior) / (imps + spec.smoothing);
            let o = &mut out[k * PARTS.len()..(k + 1) * PARTS.len()];
            o[0] = imps.ln_1p() as f32;
            o[1] = clicks.ln_1p() as f32;
            o[2] = (logit(ctr) - prior_logit) as f32;
            o[3] = (c.recent * decay(t - c.recent_at)).ln_1p() as f32;
            o[4] = c.last_imp.map_or(0.0, |l| decay(t - l)) as f32;
            o[5] = c.last_click.map_or(0.0, |l| decay(t - l)) as f32;
        }
    }

    /// Add a row shown at `t` (ms), clicked or not.
    pub fn update(&mut self, spec: &HistorySpec, hashes: &[u64], t: i64, clicked: bool) {
        let (decay, window) = (spec.decay(), spec.window_decay());
        for (k, h) in hashes.iter().enumerate() {
            let c = self.maps[k].entry(*h).or_default();
            let (d, w) = (decay(t - c.recent_at), window(t - c.recent_at));
            c.recent = c.recent * d + 1.0;
            c.imps = c.imps * w + 1.0;
            c.clicks = c.clicks * w + f64::from(u8::from(clicked));
            c.recent_at = c.recent_at.max(t);
            c.last_imp = Some(c.last_imp.map_or(t, |l| l.max(t)));
            if clicked {
                c.last_click = Some(c.last_click.map_or(t, |l| l.max(t)));
            }
        }
    }
}

/// One event of a replay: time (ms), key hashes, outcome.
#[derive(Debug, Clone)]
pub struct Event {
    pub time: i64,
    pub hashes: Vec<u64>,
    pub clicked: bool,
}

/// Every event's inputs, events taken in time order (ties: all read before
/// any is added). The events must be sorted by time.
pub fn replay(spec: &HistorySpec, events: &[Event]) -> Vec<Vec<f32>> {
    let mut state = HistoryState::new(spec);
    let mut out = vec![vec![0f32; spec.width()]; events.len()];
    let mut i = 0;
    while i < events.len() {
        let t = events[i].time;
        let mut j = i;
        while j < events.len() && events[j].time == t {
            state.read(spec, &events[j].hashes, t, &mut out[j]);
            j += 1;
        }
        for e in &events[i..j] {
            state.update(spec, &e.hashes, t, e.clicked);
        }
        i = j;
    }
    out
}

/// The rows of one split as the replay needs them.
struct Cursor {
    split: Split,
    reader: ShardReader,
    times: Vec<i64>,
    hashes: Vec<u64>,
    clicked: Vec<bool>,
    pos: usize,
    /// Rows of the split before the current batch.
    base: u64,
    last_time: i64,
    out: BufWriter<std::fs::File>,
}

impl Cursor {
    /// The current row's time, loading the next batch when needed.
    fn peek(&mut self, spec: &HistorySpec, label: &str, data: &Path) -> Result<Option<i64>> {
        while self.pos >= self.times.len() {
            let Some(batch) = self.reader.next() else {
                return Ok(None);
            };
            let batch = batch?;
            self.base += self.times.len() as u64;
            let n = batch.num_rows();
            let time = batch
                .column_by_name(&spec.time_column)
                .and_then(|c| c.as_any().downcast_ref::<TimestampMillisecondArray>())
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "{}: no timestamp column `{}` for the history features",
                        data.display(),
                        spec.time_column
                    ))
                })?;
            let labels = batch
                .column_by_name(label)
                .and_then(|c| c.as_any().downcast_ref::<Int8Array>())
                .ok_or_else(|| Error::Invalid(format!("no Int8 label column `{label}`")))?;
            let views = spec
                .keys
                .iter()
                .flatten()
                .map(|c| Ok((c.as_str(), view(&batch, c)?)))
                .collect::<Result<Vec<_>>>()?;
            self.times.clear();
            self.hashes.clear();
            self.clicked.clear();
            let mut row_hashes = Vec::new();
            for r in 0..n {
                if !time.is_valid(r) {
                    return Err(Error::Invalid(format!(
                        "{}: {} row {} has no `{}`: history features need a time on every row",
                        data.display(),
                        self.split.name(),
                        self.base + r as u64 + 1,
                        spec.time_column
                    )));
                }
                let t = time.value(r);
                if t < self.last_time {
                    return Err(Error::Invalid(format!(
                        "{}: {} row {} goes back in time ({} ms before the row above): \
                         history features need each split in time order (simulate or convert \
                         with --split time, or a time-sorted input)",
                        data.display(),
                        self.split.name(),
                        self.base + r as u64 + 1,
                        self.last_time - t
                    )));
                }
                self.last_time = t;
                self.times.push(t);
                spec.key_hashes(
                    |c| {
                        views
                            .iter()
                            .find(|(name, _)| *name == c)
                            .map_or(RawValue::Missing, |(_, v)| v.get(r))
                    },
                    &mut row_hashes,
                );
                self.hashes.extend_from_slice(&row_hashes);
                self.clicked
                    .push(labels.is_valid(r) && labels.value(r) != 0);
            }
            self.pos = 0;
        }
        Ok(Some(self.times[self.pos]))
    }
}

/// The raw history inputs of every row of every split: all splits merged in
/// time order and replayed; each split's rows (`width` f32 each, in the
/// split's row order) go to `<out>/history-<split>.f32`. Also returns each
/// input's mean and standard deviation over the train rows, and the state
/// after the last row.
pub fn compute(data: &Path, spec: &HistorySpec, label: &str, out: &Path) -> Result<Replayed> {
    let mut columns = spec.columns();
    columns.push(label.to_string());
    let mut cursors = Vec::new();
    let mut paths = Vec::new();
    for split in Split::ALL {
        let reader = ShardReader::open_split(
            data,
            split,
            ReaderOptions {
                batch_size: 65_536,
                columns: Some(columns.clone()),
                ..Default::default()
            },
        )?;
        let path = out.join(format!("history-{}.f32", split.name()));
        let file = std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
        paths.push(path);
        cursors.push(Cursor {
            split,
            reader,
            times: Vec::new(),
            hashes: Vec::new(),
            clicked: Vec::new(),
            pos: 0,
            base: 0,
            last_time: i64::MIN,
            out: BufWriter::with_capacity(1 << 20, file),
        });
    }
    let nk = spec.keys.len();
    let width = spec.width();
    let mut state = HistoryState::new(spec);
    let mut row = vec![0f32; width];
    let mut group: Vec<(usize, Vec<u64>, bool)> = Vec::new();
    // Train moments: count, sums and sums of squares (inputs are small).
    let (mut n, mut sum, mut sq) = (0u64, vec![0f64; width], vec![0f64; width]);
    loop {
        // The earliest time among the splits' current rows.
        let mut t_min: Option<i64> = None;
        for c in cursors.iter_mut() {
            if let Some(t) = c.peek(spec, label, data)? {
                t_min = Some(t_min.map_or(t, |m| m.min(t)));
            }
        }
        let Some(t) = t_min else { break };
        // Every row at that instant, split by split in row order: read first.
        group.clear();
        for (i, c) in cursors.iter_mut().enumerate() {
            while c.peek(spec, label, data)? == Some(t) {
                let h = c.hashes[c.pos * nk..(c.pos + 1) * nk].to_vec();
                state.read(spec, &h, t, &mut row);
                if c.split == Split::Train {
                    n += 1;
                    for (k, &v) in row.iter().enumerate() {
                        sum[k] += v as f64;
                        sq[k] += (v as f64) * (v as f64);
                    }
                }
                for v in &row {
                    c.out
                        .write_all(&v.to_le_bytes())
                        .map_err(|e| Error::io(&paths[i], e))?;
                }
                group.push((i, h, c.clicked[c.pos]));
                c.pos += 1;
            }
        }
        for (_, h, clicked) in &group {
            state.update(spec, h, t, *clicked);
        }
    }
    for (c, p) in cursors.iter_mut().zip(&paths) {
        c.out.flush().map_err(|e| Error::io(p, e))?;
    }
    let n = n.max(1) as f64;
    let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
    let std = sq
        .iter()
        .zip(&mean)
        .map(|(q, m)| {
            let var = q / n - m * m;
            if var > 1e-12 {
                var.sqrt()
            } else {
                1.0
            }
        })
        .collect();
    Ok(Replayed {
        paths,
        mean,
        std,
        state,
    })
}

/// What [`compute`] leaves.
pub struct Replayed {
    /// `history-<split>.f32` per split, in [`Split::ALL`] order.
    pub paths: Vec<PathBuf>,
    /// Train mean and standard deviation of each raw input.
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
    /// The counters after the last row.
    pub state: HistoryState,
}

/// Reads a split's history rows back in order.
pub struct HistoryRows {
    input: BufReader<std::fs::File>,
    spec: HistorySpec,
    path: PathBuf,
}

impl HistoryRows {
    pub fn open(path: &Path, spec: &HistorySpec) -> Result<Self> {
        let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        Ok(HistoryRows {
            input: BufReader::with_capacity(1 << 20, f),
            spec: spec.clone(),
            path: path.to_path_buf(),
        })
    }

    /// The next `rows` rows, standardised, into the history slots of `dense`
    /// (row stride `nd`, slots starting at `first`).
    pub fn fill(&mut self, rows: usize, dense: &mut [f32], nd: usize, first: usize) -> Result<()> {
        let width = self.spec.width();
        let mut buf = vec![0u8; width * 4];
        for r in 0..rows {
            self.input
                .read_exact(&mut buf)
                .map_err(|e| Error::io(&self.path, e))?;
            let slots = &mut dense[r * nd + first..r * nd + first + width];
            for (k, v) in buf.chunks_exact(4).enumerate() {
                slots[k] = f32::from_le_bytes([v[0], v[1], v[2], v[3]]);
            }
            self.spec.standardize(slots);
        }
        Ok(())
    }
}

/// The fitted history settings: key columns checked against the schema, the
/// clock (the configured or first timestamp column), the train click rate.
pub(super) fn history_spec(
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
                return Err(Error::Invalid(format!(
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
            return Err(Error::Invalid(format!(
                "features.history.time_column: `{t}` is not a timestamp column of dataset {}",
                schema.name
            )))
        }
        None => schema
            .kept()
            .find(|c| c.kind == ColumnKind::Timestamp)
            .map(|c| c.name.clone())
            .ok_or_else(|| {
                Error::Invalid(format!(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> HistorySpec {
        HistorySpec {
            keys: vec![vec!["user".into()], vec!["user".into(), "ad".into()]],
            smoothing: 10.0,
            half_life_hours: 24.0,
            window_hours: Some(72.0),
            prior: 0.05,
            time_column: "time".into(),
            mean: Vec::new(),
            std: Vec::new(),
            clip: None,
        }
    }

    fn events(n: usize, seed: u64) -> Vec<Event> {
        let s = spec();
        let mut r = crate::rng::Rng::new(seed);
        let mut hashes = Vec::new();
        (0..n)
            .map(|i| {
                let (u, a) = (format!("u{}", r.below(5)), format!("a{}", r.below(3)));
                s.key_hashes(
                    |c| match c {
                        "user" => RawValue::Str(&u),
                        _ => RawValue::Str(&a),
                    },
                    &mut hashes,
                );
                Event {
                    // Two rows per minute: ties are common.
                    time: (i as i64 / 2) * 60_000,
                    hashes: hashes.clone(),
                    clicked: r.bernoulli(0.3),
                }
            })
            .collect()
    }

    #[test]
    fn a_saved_state_reads_back_the_same_inputs() {
        let s = spec();
        let ev = events(300, 4);
        let mut state = HistoryState::new(&s);
        for e in &ev {
            state.update(&s, &e.hashes, e.time, e.clicked);
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_FILE);
        state.save(&path, 42).unwrap();
        let (back, seq) = HistoryState::load(&path, &s).unwrap();
        assert_eq!(seq, 42);
        assert_eq!(back.len(), state.len());
        let (mut a, mut b) = (vec![0f32; s.width()], vec![0f32; s.width()]);
        for e in &ev {
            state.read(&s, &e.hashes, 20_000_000, &mut a);
            back.read(&s, &e.hashes, 20_000_000, &mut b);
            assert_eq!(a, b);
        }
        // A state of other keys, and a cut file, are errors naming the file.
        let mut one = s.clone();
        one.keys.pop();
        assert!(HistoryState::load(&path, &one)
            .unwrap_err()
            .to_string()
            .contains("2 keys"));
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        let err = HistoryState::load(&path, &s).unwrap_err().to_string();
        assert!(
            err.contains("history.state") && err.contains("ends early"),
            "{err}"
        );
    }

    #[test]
    fn a_rows_own_label_never_reaches_its_features() {
        let s = spec();
        let base = events(400, 1);
        let want = replay(&s, &base);
        for i in [0, 7, 123, 398, 399] {
            let mut flipped = base.clone();
            flipped[i].clicked = !flipped[i].clicked;
            let got = replay(&s, &flipped);
            assert_eq!(got[i], want[i], "row {i} saw its own label");
            // Nor does its instant's other row, or anything before.
            for j in 0..i {
                if base[j].time <= base[i].time {
                    assert_eq!(got[j], want[j], "row {j} saw row {i}");
                }
            }
            let twin = if i % 2 == 0 { i + 1 } else { i - 1 };
            assert_eq!(
                got[twin], want[twin],
                "row {twin} saw its same-instant row {i}"
            );
        }
    }

    #[test]
    fn later_rows_never_change_earlier_features() {
        let s = spec();
        let base = events(300, 2);
        let want = replay(&s, &base);
        let mut changed = base.clone();
        for e in changed.iter_mut().skip(150) {
            e.clicked = !e.clicked;
            e.hashes.reverse();
        }
        let got = replay(&s, &changed);
        // Rows 150 and 151 share an instant: everything before it is untouched.
        assert_eq!(&got[..150], &want[..150]);
        assert_ne!(&got[152..], &want[152..]);
    }

    #[test]
    fn the_counters_count() {
        let s = spec();
        let h = vec![1u64, 2];
        let mut st = HistoryState::new(&s);
        let mut out = vec![0f32; s.width()];
        st.read(&s, &h, 0, &mut out);
        // Nothing seen: zero counts, the prior's CTR, no recency.
        assert_eq!(&out[..6], &[0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        st.update(&s, &h, 0, true);
        st.update(&s, &h, 0, false);
        // 72 hours later: one half-life of the counts' window, three of the
        // recency half-life.
        st.read(&s, &h, 72 * 3_600_000, &mut out);
        assert!((out[0] - 2f32.ln()).abs() < 1e-6, "2 impressions halved");
        assert!((out[1] - 1.5f32.ln()).abs() < 1e-6, "1 click halved");
        let ctr = (0.5 + 10.0 * 0.05) / (1.0 + 10.0);
        assert!((out[2] as f64 - (logit(ctr) - logit(0.05))).abs() < 1e-5);
        assert!(
            (out[3] - 1.25f32.ln()).abs() < 1e-5,
            "2 impressions decayed to an eighth"
        );
        assert!((out[4] - 0.125).abs() < 1e-6 && (out[5] - 0.125).abs() < 1e-6);
        // Without a window the counts keep every row at full weight.
        let all = HistorySpec {
            window_hours: None,
            ..s.clone()
        };
        let mut st = HistoryState::new(&all);
        st.update(&all, &h, 0, true);
        st.update(&all, &h, 0, false);
        st.read(&all, &h, 72 * 3_600_000, &mut out);
        assert!((out[0] - 3f32.ln()).abs() < 1e-6, "2 impressions");
        assert!((out[1] - 2f32.ln()).abs() < 1e-6, "1 click");
        let ctr = (1.0 + 10.0 * 0.05) / (2.0 + 10.0);
        assert!((out[2] as f64 - (logit(ctr) - logit(0.05))).abs() < 1e-5);
    }

    #[test]
    fn standardised_inputs_are_bounded_in_order() {
        let s = HistorySpec {
            mean: vec![0.005; 4],
            std: vec![0.05; 4],
            clip: Some(4.0),
            ..spec()
        };
        // ln 2, ln 3, ln 4: one, two and three past clicks, 14 to 28 sd out.
        let raw = [0.0f32, 2f32.ln(), 3f32.ln(), 4f32.ln()];
        let mut row = raw;
        s.standardize(&mut row);
        assert!(row.iter().all(|v| v.abs() < 4.0), "{row:?}");
        assert!(row.windows(2).all(|w| w[0] < w[1]), "order kept: {row:?}");
        // Near the mean the squash is close to the identity.
        assert!((row[0] - (-0.1)).abs() < 1e-3, "{}", row[0]);
        let mut plain = raw;
        HistorySpec { clip: None, ..s }.standardize(&mut plain);
        assert!((plain[3] - (4f32.ln() - 0.005) / 0.05).abs() < 1e-4);
    }
}
