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
//!   temporary file) with the sequence number of the last event they hold,
//!   and the log starts again. A restart loads the snapshot and replays the
//!   logged events after it, so an acknowledged event is never lost; a torn
//!   last line (a crash in the middle of a write, never acknowledged) is
//!   skipped.
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
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::features::history::{HistorySpec, HistoryState, STATE_FILE};
use crate::features::map::RawValue;

/// The append-only log of feedback events since the last snapshot.
pub const LOG_FILE: &str = "feedback.log";

/// One logged event: its sequence number, time (ms), key hashes and outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Logged {
    seq: u64,
    t: i64,
    h: Vec<u64>,
    c: bool,
}

struct Inner {
    state: HistoryState,
    /// The last event applied.
    seq: u64,
    /// Events applied since the last snapshot.
    since_snapshot: u64,
    log: Option<std::fs::File>,
}

/// A model's live counters.
pub struct OnlineHistory {
    pub spec: HistorySpec,
    /// Where the snapshot and the log live; `None`: in memory only.
    dir: Option<PathBuf>,
    snapshot_every: u64,
    inner: Mutex<Inner>,
}

/// An event to add: time (ms), key hashes, outcome.
pub struct Feedback {
    pub time: i64,
    pub hashes: Vec<u64>,
    pub clicked: bool,
}

fn lock_err() -> DataError {
    DataError::Invalid("the history counters' lock was poisoned by a panic".into())
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
        snapshot_every: u64,
    ) -> Result<OnlineHistory> {
        if let Some(d) = dir {
            claim(d, bundle_dir, &spec)?;
        }
        let own = dir.map(|d| d.join(STATE_FILE)).filter(|p| p.exists());
        let start = own.unwrap_or_else(|| bundle_dir.join(STATE_FILE));
        let (mut state, mut seq) = if start.exists() {
            HistoryState::load(&start, &spec)?
        } else {
            (HistoryState::new(&spec), 0)
        };
        let mut since_snapshot = 0;
        let mut log = None;
        if let Some(d) = dir {
            std::fs::create_dir_all(d).map_err(|e| DataError::io(d, e))?;
            let path = d.join(LOG_FILE);
            if path.exists() {
                let f = std::fs::File::open(&path).map_err(|e| DataError::io(&path, e))?;
                let lines: Vec<String> = BufReader::new(f)
                    .lines()
                    .collect::<std::io::Result<_>>()
                    .map_err(|e| DataError::io(&path, e))?;
                let n = lines.len();
                for (i, line) in lines.iter().enumerate() {
                    match serde_json::from_str::<Logged>(line) {
                        Ok(e) if e.seq > seq => {
                            if e.h.len() != spec.keys.len() {
                                return Err(DataError::Invalid(format!(
                                    "{}:{}: an event of {} keys, the model has {}",
                                    path.display(),
                                    i + 1,
                                    e.h.len(),
                                    spec.keys.len()
                                )));
                            }
                            state.update(&spec, &e.h, e.t, e.c);
                            seq = e.seq;
                            since_snapshot += 1;
                        }
                        Ok(_) => {}
                        // A write cut short by a crash: never acknowledged.
                        Err(_) if i + 1 == n => eprintln!(
                            "serve: {}:{}: skipping a torn last line",
                            path.display(),
                            i + 1
                        ),
                        Err(e) => {
                            return Err(DataError::Invalid(format!(
                                "{}:{}: {e}",
                                path.display(),
                                i + 1
                            )))
                        }
                    }
                }
            }
            log = Some(open_log(&path)?);
        }
        Ok(OnlineHistory {
            spec,
            dir: dir.map(Path::to_path_buf),
            snapshot_every: snapshot_every.max(1),
            inner: Mutex::new(Inner {
                state,
                seq,
                since_snapshot,
                log,
            }),
        })
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
        let inner = self.inner.lock().map_err(|_| lock_err())?;
        inner.state.read(&self.spec, hashes, t, out);
        drop(inner);
        self.spec.standardize(out);
        Ok(())
    }

    /// Add outcomes: logged and synced first, then applied, then a snapshot
    /// when `snapshot_every` events have gathered. Returns the last sequence
    /// number.
    pub fn feedback(&self, events: &[Feedback]) -> Result<u64> {
        let mut inner = self.inner.lock().map_err(|_| lock_err())?;
        let first = inner.seq + 1;
        if let (Some(dir), Some(log)) = (&self.dir, inner.log.as_mut()) {
            let mut buf = String::new();
            for (i, e) in events.iter().enumerate() {
                let line = serde_json::to_string(&Logged {
                    seq: first + i as u64,
                    t: e.time,
                    h: e.hashes.clone(),
                    c: e.clicked,
                })
                .expect("an event serialises");
                buf.push_str(&line);
                buf.push('\n');
            }
            let path = dir.join(LOG_FILE);
            log.write_all(buf.as_bytes())
                .and_then(|_| log.sync_data())
                .map_err(|e| DataError::io(&path, e))?;
        }
        for e in events {
            inner.state.update(&self.spec, &e.hashes, e.time, e.clicked);
        }
        inner.seq += events.len() as u64;
        inner.since_snapshot += events.len() as u64;
        if inner.since_snapshot >= self.snapshot_every {
            self.snapshot_locked(&mut inner)?;
        }
        Ok(inner.seq)
    }

    /// Write the counters to the snapshot and start the log again (a no-op
    /// in memory).
    pub fn snapshot(&self) -> Result<()> {
        let mut inner = self.inner.lock().map_err(|_| lock_err())?;
        self.snapshot_locked(&mut inner)
    }

    fn snapshot_locked(&self, inner: &mut Inner) -> Result<()> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        inner.state.save(&dir.join(STATE_FILE), inner.seq)?;
        // The snapshot holds every logged event now; a crash before the log
        // is replaced only leaves events the next start skips by number.
        let path = dir.join(LOG_FILE);
        crate::data::io::atomic_write(&path, b"")?;
        inner.log = Some(open_log(&path)?);
        inner.since_snapshot = 0;
        Ok(())
    }

    /// Events applied so far (over the server's life and its snapshots) and
    /// key values held.
    pub fn stats(&self) -> (u64, usize) {
        self.inner
            .lock()
            .map(|i| (i.seq, i.state.len()))
            .unwrap_or((0, 0))
    }
}

/// The file naming the bundle whose counters a history folder holds.
pub const BUNDLE_ID_FILE: &str = "bundle.id";

/// A bundle's identity: a hash of its starting counters (or, without them,
/// of its history settings).
fn bundle_id(bundle_dir: &Path, spec: &HistorySpec) -> Result<String> {
    let state = bundle_dir.join(STATE_FILE);
    let bytes = if state.exists() {
        std::fs::read(&state).map_err(|e| DataError::io(&state, e))?
    } else {
        serde_json::to_vec(spec).map_err(|e| DataError::Invalid(e.to_string()))?
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
        let had = std::fs::read_to_string(&path).map_err(|e| DataError::io(&path, e))?;
        if had.trim() != id {
            return Err(DataError::Invalid(format!(
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
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    crate::data::io::atomic_write(&path, format!("{id}\n").as_bytes())
}

fn open_log(path: &Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| DataError::io(path, e))
}
