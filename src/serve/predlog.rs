//! The prediction log: every prediction (request id, time, model, version,
//! the raw fields as JSON, probability, latency) goes through a bounded queue
//! to a writer thread that inserts in batches, off the request path, into an
//! embedded SQLite file or PostgreSQL.
//!
//! When the queue is full (the database is slow or down) a record is dropped
//! and counted, and serving goes on. The writer keeps a batch that failed to
//! write and retries it after reconnecting. [`PredLog::close`] stops taking
//! records and writes everything still queued before it returns.
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};

use crate::error::{DataError, Result};

/// One logged prediction.
#[derive(Debug, Clone)]
pub struct Record {
    pub request_id: String,
    /// Unix milliseconds.
    pub time_ms: i64,
    pub model: String,
    pub version: String,
    /// The instance's raw fields, as JSON text.
    pub fields: String,
    pub probability: f64,
    pub latency_ms: f64,
}

/// Where records go.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Target {
    /// `postgres://...` or `postgresql://...`, `sqlite:PATH`, or a file path
    /// (SQLite).
    pub fn parse(s: &str) -> Target {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Target::Postgres(s.to_string())
        } else {
            Target::Sqlite(PathBuf::from(s.strip_prefix("sqlite:").unwrap_or(s)))
        }
    }

    /// The target without a password, for logs and `/model_info`.
    pub fn describe(&self) -> String {
        match self {
            Target::Sqlite(p) => format!("sqlite:{}", p.display()),
            Target::Postgres(url) => match (url.find("://"), url.rfind('@')) {
                (Some(s), Some(at)) if at > s => {
                    let user = url[s + 3..at].split(':').next().unwrap_or("");
                    format!("{}{user}@{}", &url[..s + 3], &url[at + 1..])
                }
                _ => url.clone(),
            },
        }
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct PredLogStats {
    pub written: AtomicU64,
    pub dropped: AtomicU64,
    pub write_errors: AtomicU64,
}

/// The queue and its writer thread.
pub struct PredLog {
    tx: Mutex<Option<Sender<Record>>>,
    rx_len: Receiver<Record>,
    handle: Mutex<Option<JoinHandle<()>>>,
    pub stats: Arc<PredLogStats>,
    pub target: Target,
    pub table: String,
    pub capacity: usize,
    /// How long `close` waits for a database that is down, in milliseconds;
    /// `u64::MAX` until `close` is called.
    grace_ms: Arc<AtomicU64>,
}

/// Records written per transaction at most.
const BATCH: usize = 512;
/// How long the writer waits to fill a batch.
const LINGER: Duration = Duration::from_millis(50);
/// Pause between reconnection attempts while the database is down.
const RETRY: Duration = Duration::from_millis(500);

impl PredLog {
    /// Start the writer. The table name must be a plain identifier. A
    /// database that cannot be reached now is retried in the background.
    pub fn start(target: Target, table: &str, capacity: usize) -> Result<PredLog> {
        if table.is_empty()
            || !table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || table.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(DataError::Invalid(format!(
                "predlog table {table:?}: use letters, digits and _"
            )));
        }
        if let Target::Sqlite(p) = &target {
            if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
            }
        }
        let capacity = capacity.max(1);
        let (tx, rx) = bounded::<Record>(capacity);
        let stats = Arc::new(PredLogStats::default());
        let grace_ms = Arc::new(AtomicU64::new(u64::MAX));
        let handle = {
            let w = Writer {
                rx: rx.clone(),
                stats: stats.clone(),
                target: target.clone(),
                table: table.to_string(),
                // The writer holds at most one batch besides the queue.
                batch: BATCH.min(capacity),
                grace_ms: grace_ms.clone(),
            };
            std::thread::Builder::new()
                .name("predlog".into())
                .spawn(move || w.run())
                .map_err(|e| DataError::Invalid(format!("cannot start the predlog writer: {e}")))?
        };
        Ok(PredLog {
            tx: Mutex::new(Some(tx)),
            rx_len: rx,
            handle: Mutex::new(Some(handle)),
            stats,
            target,
            table: table.to_string(),
            capacity,
            grace_ms,
        })
    }

    /// Queue a record; never blocks. Returns false when it was dropped.
    pub fn log(&self, r: Record) -> bool {
        let sent = match self.tx.lock().ok().and_then(|g| g.clone()) {
            Some(tx) => match tx.try_send(r) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
            },
            None => false,
        };
        if !sent {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
        sent
    }

    /// Records waiting in the queue.
    pub fn queued(&self) -> usize {
        self.rx_len.len()
    }

    /// Stop taking records and wait until everything queued is written (or
    /// the writer gives up on a database that stays down for 10 s).
    pub fn close(&self) {
        self.close_within(Duration::from_secs(10));
    }

    /// [`close`](Self::close), giving a database that is down `grace`.
    pub fn close_within(&self, grace: Duration) {
        self.grace_ms
            .store(grace.as_millis() as u64, Ordering::Relaxed);
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        if let Some(h) = self.handle.lock().ok().and_then(|mut h| h.take()) {
            let _ = h.join();
        }
    }
}

impl Drop for PredLog {
    fn drop(&mut self) {
        self.close();
    }
}

enum Conn {
    Sqlite(rusqlite::Connection),
    Postgres(Box<postgres::Client>),
}

fn connect(target: &Target, table: &str) -> std::result::Result<Conn, String> {
    match target {
        Target::Sqlite(path) => {
            let c = rusqlite::Connection::open(path).map_err(|e| e.to_string())?;
            c.execute_batch(&format!(
                "PRAGMA journal_mode=WAL;
                 CREATE TABLE IF NOT EXISTS {table} (
                   request_id TEXT NOT NULL, time_ms INTEGER NOT NULL, model TEXT NOT NULL,
                   version TEXT NOT NULL, fields TEXT NOT NULL, probability REAL NOT NULL,
                   latency_ms REAL NOT NULL)"
            ))
            .map_err(|e| e.to_string())?;
            Ok(Conn::Sqlite(c))
        }
        Target::Postgres(url) => {
            let mut c =
                postgres::Client::connect(url, postgres::NoTls).map_err(|e| e.to_string())?;
            c.batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {table} (
                   request_id TEXT NOT NULL, time TIMESTAMPTZ NOT NULL, model TEXT NOT NULL,
                   version TEXT NOT NULL, fields JSONB NOT NULL,
                   probability DOUBLE PRECISION NOT NULL, latency_ms DOUBLE PRECISION NOT NULL)"
            ))
            .map_err(|e| e.to_string())?;
            Ok(Conn::Postgres(Box::new(c)))
        }
    }
}

fn write(conn: &mut Conn, table: &str, batch: &[Record]) -> std::result::Result<(), String> {
    match conn {
        Conn::Sqlite(c) => {
            let tx = c.transaction().map_err(|e| e.to_string())?;
            {
                let mut st = tx
                    .prepare_cached(&format!(
                        "INSERT INTO {table} (request_id, time_ms, model, version, fields, probability, latency_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                    ))
                    .map_err(|e| e.to_string())?;
                for r in batch {
                    st.execute(rusqlite::params![
                        r.request_id,
                        r.time_ms,
                        r.model,
                        r.version,
                        r.fields,
                        r.probability,
                        r.latency_ms
                    ])
                    .map_err(|e| e.to_string())?;
                }
            }
            tx.commit().map_err(|e| e.to_string())
        }
        Conn::Postgres(c) => {
            let mut tx = c.transaction().map_err(|e| e.to_string())?;
            let st = tx
                .prepare(&format!(
                    "INSERT INTO {table} (request_id, time, model, version, fields, probability, latency_ms)
                     VALUES ($1, to_timestamp($2::float8 / 1000.0), $3, $4, CAST($5::text AS jsonb), $6, $7)"
                ))
                .map_err(|e| e.to_string())?;
            for r in batch {
                tx.execute(
                    &st,
                    &[
                        &r.request_id,
                        &(r.time_ms as f64),
                        &r.model,
                        &r.version,
                        &r.fields,
                        &r.probability,
                        &r.latency_ms,
                    ],
                )
                .map_err(|e| e.to_string())?;
            }
            tx.commit().map_err(|e| e.to_string())
        }
    }
}

struct Writer {
    rx: Receiver<Record>,
    stats: Arc<PredLogStats>,
    target: Target,
    table: String,
    batch: usize,
    grace_ms: Arc<AtomicU64>,
}

impl Writer {
    fn run(self) {
        let Writer {
            rx,
            stats,
            target,
            table,
            ..
        } = &self;
        let mut conn: Option<Conn> = None;
        let mut batch: Vec<Record> = Vec::with_capacity(self.batch);
        let mut closed = false;
        let mut down_since: Option<Instant> = None;
        let mut reported = false;
        loop {
            // Fill the batch: wait for the first record, then take what
            // comes within LINGER.
            if batch.is_empty() && !closed {
                match rx.recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => closed = true,
                }
            }
            let deadline = Instant::now() + LINGER;
            while batch.len() < self.batch && !closed {
                match rx.recv_deadline(deadline) {
                    Ok(r) => batch.push(r),
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => closed = true,
                }
            }
            if batch.is_empty() {
                if closed {
                    return;
                }
                continue;
            }
            if conn.is_none() {
                match connect(target, table) {
                    Ok(c) => {
                        conn = Some(c);
                        down_since = None;
                        reported = false;
                    }
                    Err(e) => {
                        stats.write_errors.fetch_add(1, Ordering::Relaxed);
                        if !reported {
                            eprintln!("predlog: {}: {e}; retrying", target.describe());
                            reported = true;
                        }
                    }
                }
            }
            let result = match conn.as_mut() {
                Some(c) => write(c, table, &batch),
                None => Err("not connected".into()),
            };
            match result {
                Ok(()) => {
                    stats
                        .written
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    batch.clear();
                }
                Err(e) => {
                    if conn.is_some() {
                        stats.write_errors.fetch_add(1, Ordering::Relaxed);
                        eprintln!("predlog: {}: {e}; reconnecting", target.describe());
                        conn = None;
                    }
                    let since = *down_since.get_or_insert_with(Instant::now);
                    // Closing: `close` has set a grace period (the queue may still
                    // hold records, so `closed` alone cannot tell).
                    let grace_ms = self.grace_ms.load(Ordering::Relaxed);
                    let grace = Duration::from_millis(grace_ms.min(3_600_000));
                    if grace_ms != u64::MAX && since.elapsed() >= grace {
                        let lost = batch.len() + rx.len();
                        stats.dropped.fetch_add(lost as u64, Ordering::Relaxed);
                        eprintln!(
                            "predlog: {} stayed down at shutdown; {lost} records not written",
                            target.describe()
                        );
                        return;
                    }
                    std::thread::sleep(RETRY.min(grace.max(Duration::from_millis(10))));
                }
            }
        }
    }
}
