//! Online history counters: the same [`HistoryState`] the offline replay
//! builds, kept by the server for a model with `[features.history]`.
//!
//! - They start from the bundle's `history.state` (the replay's state after
//!   the last row of the training data), or from the server's own snapshot
//!   when it has one.
//! - A prediction reads them at the request's time (its time column, else the
//!   server's clock) and never changes them.
//! - `/feedback` posts outcomes (an impression, clicked or not) and updates
//!   them. Each accepted batch is appended to `feedback.log` and synced to
//!   disk before the answer; every `snapshot_every` events, and when the
//!   server stops, the counters are written to `history.state` (through a
//!   temporary file) with the sequence number of the last event they hold.
//!   The snapshot is written from a copy made under a short lock, so
//!   predictions never wait for the disk: the log is closed under the
//!   copy's number (`feedback-<seq>.log`), a new one is started, and the
//!   closed one is removed once the snapshot is in place. A restart loads
//!   the snapshot and replays the logged events after it (closed logs
//!   first), so an acknowledged event is never lost; a torn last line (a
//!   crash in the middle of a write, never acknowledged) is skipped.
//! - An event may carry an id: a second event with an id seen within
//!   `dedupe_s` (a retried batch) is skipped and counted as a duplicate. The
//!   ids are logged with their events and saved with each snapshot
//!   (`event_ids.json`), so a retry after a restart is recognised too.
//!
//! - The folder belongs to one bundle: `bundle.id` holds a hash of the
//!   bundle's starting counters, and a server given a folder of another
//!   bundle's counters (a bundle exported again under the same version)
//!   skips that bundle with the reason rather than serve counters of other
//!   data, and leaves the folder as it is.
//!
//! The offline replay reads every row of one instant before adding any of
//! them; online, the same holds when the caller posts an instant's outcomes
//! after its predictions, which is the order they happen in.
use std::collections::{HashSet, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock, TryLockError};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::features::history::{HistorySpec, HistoryState, STATE_FILE};
use crate::features::RawValue;

/// The append-only log of feedback events since the last snapshot.
pub const LOG_FILE: &str = "feedback.log";

/// The event ids seen recently (see [`HistoryOptions::dedupe_s`]), saved
/// with each snapshot: `(arrival ms, id hash)` pairs as JSON.
pub const EVENT_IDS_FILE: &str = "event_ids.json";

/// A log closed by a snapshot: `feedback-<last seq>.log`, replayed after a
/// crash that came before the snapshot was written, removed after.
fn rotated_name(seq: u64) -> String {
    format!("feedback-{seq}.log")
}

fn rotated_seq(name: &str) -> Option<u64> {
    name.strip_prefix("feedback-")?
        .strip_suffix(".log")?
        .parse()
        .ok()
}

/// One logged event: its sequence number, time (ms), key hashes and outcome,
/// and, when the event had an id, its hash and the arrival time (ms).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Logged {
    seq: u64,
    t: i64,
    h: Vec<u64>,
    c: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    at: Option<i64>,
}

/// How the counters are kept.
#[derive(Debug, Clone, Copy)]
pub struct HistoryOptions {
    /// Feedback events between snapshots.
    pub snapshot_every: u64,
    /// An event id seen less than this many seconds ago makes an event with
    /// the same id a duplicate (a retried batch), which is skipped.
    pub dedupe_s: u64,
    /// The most event ids remembered per model (the oldest are forgotten
    /// first), so memory stays bounded whatever the traffic.
    pub dedupe_max: usize,
}

impl Default for HistoryOptions {
    fn default() -> Self {
        HistoryOptions {
            snapshot_every: 100_000,
            dedupe_s: 3600,
            dedupe_max: 1_000_000,
        }
    }
}

/// The ids of recent events, oldest first, and as a set.
#[derive(Debug, Clone, Default)]
struct SeenIds {
    order: VecDeque<(i64, u64)>,
    set: HashSet<u64>,
}

impl SeenIds {
    fn insert(&mut self, at: i64, id: u64) {
        if self.set.insert(id) {
            self.order.push_back((at, id));
        }
    }

    /// Forget ids older than `window_ms` before `now`, and the oldest past `max`.
    fn prune(&mut self, now: i64, window_ms: i64, max: usize) {
        while let Some(&(at, id)) = self.order.front() {
            if at >= now - window_ms && self.order.len() <= max {
                break;
            }
            self.order.pop_front();
            self.set.remove(&id);
        }
    }
}

/// What feedback changes besides the counters: the event numbers, the log
/// and the recent event ids. Held while an event batch is logged and applied,
/// never by a prediction.
struct Writer {
    /// The last event applied.
    seq: u64,
    /// Events applied since the last snapshot.
    since_snapshot: u64,
    log: Option<std::fs::File>,
    seen: SeenIds,
}

/// A model's live counters.
///
/// Predictions take the counters' read lock only. Feedback takes the writer
/// lock, logs, then takes the counters' write lock for the updates alone. A
/// snapshot copies the counters under the writer lock (predictions go on
/// reading meanwhile), starts a new log, lets go, and writes the copy
/// without holding anything a request needs.
pub struct OnlineHistory {
    pub spec: HistorySpec,
    /// Where the snapshot and the log live; `None`: in memory only.
    dir: Option<PathBuf>,
    opts: HistoryOptions,
    counters: RwLock<HistoryState>,
    writer: Mutex<Writer>,
    /// Held while a snapshot is written: one at a time.
    snapshotting: Mutex<()>,
}

/// An event to add: time (ms), key hashes, outcome, and an id hash that
/// makes a second event with the same id a duplicate.
pub struct Feedback {
    pub time: i64,
    pub hashes: Vec<u64>,
    pub clicked: bool,
    pub id: Option<u64>,
}

/// What a feedback batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Events applied (the batch less its duplicates).
    pub applied: u64,
    /// Events skipped because their id was seen before.
    pub duplicates: u64,
    /// The last sequence number.
    pub seq: u64,
}

fn lock_err() -> Error {
    Error::Invalid("the history counters' lock was poisoned by a panic".into())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The rotated logs in `dir`, by their last sequence number.
fn rotated_logs(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut logs: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    rotated_seq(&e.file_name().to_string_lossy()).map(|s| (s, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    logs.sort();
    logs
}

impl OnlineHistory {
    /// Counters for the bundle in `bundle_dir`: from `dir`'s snapshot and log
    /// when `dir` has them, else from the bundle's `history.state` (an empty
    /// state when the bundle has none). With `dir`, feedback is logged and
    /// snapshotted there.
    pub fn open(
        spec: HistorySpec,
        bundle_dir: &Path,
        dir: Option<&Path>,
        opts: &HistoryOptions,
    ) -> Result<OnlineHistory> {
        // The bundle's own counters must load before the folder is claimed
        // for it: a corrupt `history.state` leaves no `bundle.id` behind that
        // would refuse the repaired bundle later.
        let own = dir.map(|d| d.join(STATE_FILE)).filter(|p| p.exists());
        let bundled = bundle_dir.join(STATE_FILE);
        let from_bundle = match (&own, bundled.exists()) {
            (None, true) => Some(HistoryState::load(&bundled, &spec)?),
            // Checked even when the server's snapshot is what starts them.
            (Some(_), true) => HistoryState::load(&bundled, &spec).map(|_| None)?,
            (_, false) => None,
        };
        if let Some(d) = dir {
            claim(d, bundle_dir, &spec)?;
            remove_stale_temps(d);
        }
        let (mut state, mut seq) = match (&own, from_bundle) {
            (Some(p), _) => HistoryState::load(p, &spec)?,
            (None, Some(s)) => s,
            (None, None) => (HistoryState::new(&spec), 0),
        };
        let mut since_snapshot = 0;
        let mut seen = SeenIds::default();
        let mut log = None;
        if let Some(d) = dir {
            std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
            let ids = d.join(EVENT_IDS_FILE);
            if ids.exists() {
                let text = std::fs::read_to_string(&ids).map_err(|e| Error::io(&ids, e))?;
                let pairs: Vec<(i64, u64)> =
                    serde_json::from_str(&text).map_err(|e| Error::json(&ids, e))?;
                for (at, id) in pairs {
                    seen.insert(at, id);
                }
            }
            let path = d.join(LOG_FILE);
            // Logs a snapshot closed but did not get to remove (a crash
            // while it was written), then the live one.
            let mut logs: Vec<PathBuf> = rotated_logs(d).into_iter().map(|(_, p)| p).collect();
            logs.push(path.clone());
            for p in logs.iter().filter(|p| p.exists()) {
                let live = *p == path;
                replay_log(
                    p,
                    live,
                    &spec,
                    &mut state,
                    &mut seq,
                    &mut seen,
                    &mut since_snapshot,
                )?;
            }
            log = Some(open_log(&path)?);
        }
        seen.prune(now_ms(), opts.dedupe_s as i64 * 1000, opts.dedupe_max);
        Ok(OnlineHistory {
            spec,
            dir: dir.map(Path::to_path_buf),
            opts: HistoryOptions {
                snapshot_every: opts.snapshot_every.max(1),
                ..*opts
            },
            counters: RwLock::new(state),
            writer: Mutex::new(Writer {
                seq,
                since_snapshot,
                log,
                seen,
            }),
            snapshotting: Mutex::new(()),
        })
    }

    /// The time (ms) of the latest impression the counters hold, if any.
    pub fn latest(&self) -> Result<Option<i64>> {
        Ok(self.counters.read().map_err(|_| lock_err())?.latest())
    }

    /// A request's key hashes from its raw values.
    pub fn hashes<'a>(&self, get: impl Fn(&str) -> RawValue<'a>) -> Vec<u64> {
        let mut h = Vec::with_capacity(self.spec.keys.len());
        self.spec.key_hashes(get, &mut h);
        h
    }

    /// The standardised inputs of a row with `hashes` at `t` (ms), into `out`
    /// (`spec.width()` values).
    pub fn read(&self, hashes: &[u64], t: i64, out: &mut [f32]) -> Result<()> {
        let state = self.counters.read().map_err(|_| lock_err())?;
        state.read(&self.spec, hashes, t, out);
        drop(state);
        self.spec.standardize(out);
        Ok(())
    }

    /// Add outcomes: duplicates (an id seen before, in this batch or within
    /// `dedupe_s`) are skipped; the rest are logged and synced first, then
    /// applied; then a snapshot when `snapshot_every` events have gathered
    /// (one that fails is reported on stderr: the events are safe in the
    /// log).
    pub fn feedback(&self, events: &[Feedback]) -> Result<Applied> {
        let mut w = self.writer.lock().map_err(|_| lock_err())?;
        let now = now_ms();
        w.seen
            .prune(now, self.opts.dedupe_s as i64 * 1000, self.opts.dedupe_max);
        let mut fresh = Vec::with_capacity(events.len());
        let mut batch_ids = HashSet::new();
        for e in events {
            let dup =
                e.id.is_some_and(|id| w.seen.set.contains(&id) || !batch_ids.insert(id));
            if !dup {
                fresh.push(e);
            }
        }
        let first = w.seq + 1;
        if let (Some(dir), Some(log)) = (&self.dir, w.log.as_mut()) {
            let mut buf = String::new();
            for (i, e) in fresh.iter().enumerate() {
                let line = serde_json::to_string(&Logged {
                    seq: first + i as u64,
                    t: e.time,
                    h: e.hashes.clone(),
                    c: e.clicked,
                    id: e.id,
                    at: e.id.map(|_| now),
                })
                .expect("an event serialises");
                buf.push_str(&line);
                buf.push('\n');
            }
            let path = dir.join(LOG_FILE);
            log.write_all(buf.as_bytes())
                .and_then(|_| log.sync_data())
                .map_err(|e| Error::io(&path, e))?;
        }
        {
            let mut state = self.counters.write().map_err(|_| lock_err())?;
            for e in &fresh {
                state.update(&self.spec, &e.hashes, e.time, e.clicked);
            }
        }
        for e in &fresh {
            if let Some(id) = e.id {
                w.seen.insert(now, id);
            }
        }
        w.seq += fresh.len() as u64;
        w.since_snapshot += fresh.len() as u64;
        let done = Applied {
            applied: fresh.len() as u64,
            duplicates: (events.len() - fresh.len()) as u64,
            seq: w.seq,
        };
        let due = w.since_snapshot >= self.opts.snapshot_every;
        drop(w);
        if due {
            if let Err(e) = self.snapshot_now(false) {
                eprintln!("serve: history snapshot failed (the events are in the log): {e}");
            }
        }
        Ok(done)
    }

    /// Write the counters to the snapshot and start the log again (a no-op
    /// in memory); waits for a snapshot in progress.
    pub fn snapshot(&self) -> Result<()> {
        self.snapshot_now(true)
    }

    /// A snapshot; with `wait` false, none when one is being written already.
    fn snapshot_now(&self, wait: bool) -> Result<()> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        let _one = if wait {
            self.snapshotting.lock().map_err(|_| lock_err())?
        } else {
            match self.snapshotting.try_lock() {
                Ok(g) => g,
                Err(TryLockError::WouldBlock) => return Ok(()),
                Err(TryLockError::Poisoned(_)) => return Err(lock_err()),
            }
        };
        let path = dir.join(LOG_FILE);
        let (copy, seq, ids) = {
            let mut w = self.writer.lock().map_err(|_| lock_err())?;
            // Readers go on while the copy is made; writers wait on `w`.
            let copy = self.counters.read().map_err(|_| lock_err())?.clone();
            let seq = w.seq;
            // The log's events are all in the copy: close it under the
            // copy's number and start a new one.
            let rotated = dir.join(rotated_name(seq));
            if path.exists() {
                std::fs::rename(&path, &rotated).map_err(|e| Error::io(&rotated, e))?;
            }
            w.log = Some(open_log(&path)?);
            w.since_snapshot = 0;
            let ids: Vec<(i64, u64)> = w.seen.order.iter().copied().collect();
            (copy, seq, ids)
        };
        // Nothing a request needs is held from here on.
        let ids_path = dir.join(EVENT_IDS_FILE);
        let ids_json = serde_json::to_vec(&ids).expect("ids serialise");
        crate::data::io::atomic_write(&ids_path, &ids_json)?;
        copy.save(&dir.join(STATE_FILE), seq)?;
        // The snapshot holds every event of the closed logs now.
        for (s, p) in rotated_logs(dir) {
            if s <= seq {
                let _ = std::fs::remove_file(p);
            }
        }
        Ok(())
    }

    /// Events applied so far (over the server's life and its snapshots) and
    /// key values held.
    pub fn stats(&self) -> (u64, usize) {
        let seq = self.writer.lock().map(|w| w.seq).unwrap_or(0);
        let held = self.counters.read().map(|s| s.len()).unwrap_or(0);
        (seq, held)
    }
}

/// Replay one feedback log into `state`: events after `seq` are applied, and
/// every event's id is remembered. A torn last line of the live log (a crash
/// in the middle of a write, never acknowledged) is skipped.
fn replay_log(
    path: &Path,
    live: bool,
    spec: &HistorySpec,
    state: &mut HistoryState,
    seq: &mut u64,
    seen: &mut SeenIds,
    since_snapshot: &mut u64,
) -> Result<()> {
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let lines: Vec<String> = BufReader::new(f)
        .lines()
        .collect::<std::io::Result<_>>()
        .map_err(|e| Error::io(path, e))?;
    let n = lines.len();
    for (i, line) in lines.iter().enumerate() {
        match serde_json::from_str::<Logged>(line) {
            Ok(e) => {
                if let (Some(id), Some(at)) = (e.id, e.at) {
                    seen.insert(at, id);
                }
                if e.seq <= *seq {
                    continue;
                }
                if e.h.len() != spec.keys.len() {
                    return Err(Error::Invalid(format!(
                        "{}:{}: an event of {} keys, the model has {}",
                        path.display(),
                        i + 1,
                        e.h.len(),
                        spec.keys.len()
                    )));
                }
                state.update(spec, &e.h, e.t, e.c);
                *seq = e.seq;
                *since_snapshot += 1;
            }
            Err(_) if live && i + 1 == n => eprintln!(
                "serve: {}:{}: skipping a torn last line",
                path.display(),
                i + 1
            ),
            Err(source) => {
                return Err(Error::Json {
                    what: format!("{}:{}", path.display(), i + 1),
                    source,
                })
            }
        }
    }
    Ok(())
}

/// The file naming the bundle whose counters a history folder holds.
pub const BUNDLE_ID_FILE: &str = "bundle.id";

/// A bundle's identity: a hash of its starting counters (or, without them,
/// of its history settings).
fn bundle_id(bundle_dir: &Path, spec: &HistorySpec) -> Result<String> {
    let state = bundle_dir.join(STATE_FILE);
    let bytes = if state.exists() {
        std::fs::read(&state).map_err(|e| Error::io(&state, e))?
    } else {
        serde_json::to_vec(spec).map_err(|source| Error::Json {
            what: "the history settings".into(),
            source,
        })?
    };
    Ok(format!(
        "{:016x}",
        crate::features::hashing::xxh3(&bytes, 0)
    ))
}

/// Check that `dir` holds `bundle_dir`'s counters, or none yet, and mark it
/// as that bundle's. A folder written before `bundle.id` existed is taken
/// as the bundle's.
fn claim(dir: &Path, bundle_dir: &Path, spec: &HistorySpec) -> Result<()> {
    let id = bundle_id(bundle_dir, spec)?;
    let path = dir.join(BUNDLE_ID_FILE);
    if path.exists() {
        let had = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        if had.trim() != id {
            return Err(Error::Invalid(format!(
                "{}: these history counters belong to another bundle (id {}) than {} \
                 (id {id}), one exported again under the same version; move {} away to \
                 start from the bundle's own counters",
                path.display(),
                had.trim(),
                bundle_dir.display(),
                dir.display()
            )));
        }
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    crate::data::io::atomic_write(&path, format!("{id}\n").as_bytes())
}

/// Remove temporary files a crashed server left in `dir` (`.NAME.PID.tmp`
/// whose process is gone).
fn remove_stale_temps(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) else {
            continue;
        };
        let Some(pid) = stem.rsplit('.').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let alive = pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists();
        if !alive {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn open_log(path: &Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path, e))
}
