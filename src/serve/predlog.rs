//! The prediction log: every prediction (request id, time, model, version,
//! the raw fields as JSON, probability, latency) goes through a bounded queue
//! to a writer thread that inserts in batches, off the request path, into an
//! embedded SQLite file or PostgreSQL.
//!
//! When the queue is full (the database is slow or down), by records or by
//! bytes, a record is dropped and counted, and serving goes on.
//!
//! The writer tells a lost connection from a refused record. A batch that
//! failed because the connection was lost is kept and retried after
//! reconnecting. A batch the database refused (PostgreSQL's `jsonb` refuses
//! `\u0000`, a constraint, a value out of range) is written again one record
//! at a time: the records the database takes are written, each one it refuses
//! is set aside, appended to the dead-letter file (JSON lines, when one is
//! set) and counted as rejected, with the reason logged once per kind.
//!
//! [`PredLog::close`] stops taking records and writes everything still queued
//! before it returns; it returns within its grace period whatever the
//! database does (the deadline is fixed when `close` is called), counting
//! what it could not write as dropped.
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};

use crate::error::{Error, Result};

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

impl Record {
    /// Approximate bytes the record holds in the queue.
    fn bytes(&self) -> usize {
        std::mem::size_of::<Record>()
            + self.request_id.len()
            + self.model.len()
            + self.version.len()
            + self.fields.len()
    }
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

    /// The target without secrets, for logs and `/model_info`: no password
    /// in the URL's user part or its query (`?password=`, `sslpassword=`),
    /// and a SQLite file given by an absolute path shown by its file name.
    pub fn describe(&self) -> String {
        match self {
            Target::Sqlite(p) if p.is_absolute() => format!(
                "sqlite:{}",
                p.file_name().map_or("".into(), |n| n.to_string_lossy())
            ),
            Target::Sqlite(p) => format!("sqlite:{}", p.display()),
            Target::Postgres(url) => redact_url(url),
        }
    }
}

/// A PostgreSQL URL with its password (user part and query) replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match (base.find("://"), base.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &base[s + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***@{}", &base[..s + 3], &base[at + 1..]),
                None => base.to_string(),
            }
        }
        _ => base.to_string(),
    };
    if let Some(q) = query {
        let parts: Vec<String> = q
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.to_ascii_lowercase().contains("password") => format!("{k}=***"),
                _ => kv.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&parts.join("&"));
    }
    out
}

impl Target {
    /// The dead-letter file of records the database refused, beside a SQLite
    /// file; for PostgreSQL, `logs/predlog.rejected.jsonl`.
    pub fn default_dead_letter(&self) -> PathBuf {
        match self {
            Target::Sqlite(p) => {
                let name = p
                    .file_name()
                    .map_or("predictions".into(), |n| n.to_string_lossy());
                p.with_file_name(format!("{name}.rejected.jsonl"))
            }
            Target::Postgres(_) => PathBuf::from("logs/predlog.rejected.jsonl"),
        }
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct PredLogStats {
    pub written: AtomicU64,
    pub dropped: AtomicU64,
    pub write_errors: AtomicU64,
    /// Records the database refused (set aside in the dead-letter file).
    pub rejected: AtomicU64,
}

/// How the log is bounded and where refused records go.
#[derive(Debug, Clone)]
pub struct PredLogOptions {
    /// Records the queue holds at most.
    pub capacity: usize,
    /// Bytes the queued records hold at most.
    pub max_bytes: usize,
    /// Where refused records are appended (JSON lines); `None`: dropped
    /// and counted only.
    pub dead_letter: Option<PathBuf>,
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
    pub max_bytes: usize,
    /// Bytes of the records in the queue.
    queued_bytes: Arc<AtomicUsize>,
    /// When `close` gives up, as ms after `epoch`; `u64::MAX` until `close`
    /// is called.
    deadline_ms: Arc<AtomicU64>,
    epoch: Instant,
    done: Receiver<()>,
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
        PredLog::start_with(
            target,
            table,
            PredLogOptions {
                capacity,
                max_bytes: usize::MAX,
                dead_letter: None,
            },
        )
    }

    /// [`start`](Self::start) with a byte bound and a dead-letter file.
    pub fn start_with(target: Target, table: &str, opts: PredLogOptions) -> Result<PredLog> {
        let capacity = opts.capacity;
        if table.is_empty()
            || !table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || table.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(Error::Invalid(format!(
                "predlog table {table:?}: use letters, digits and _"
            )));
        }
        if let Target::Sqlite(p) = &target {
            if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            }
        }
        let capacity = capacity.max(1);
        let (tx, rx) = bounded::<Record>(capacity);
        let stats = Arc::new(PredLogStats::default());
        let deadline_ms = Arc::new(AtomicU64::new(u64::MAX));
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let epoch = Instant::now();
        let (done_tx, done) = bounded::<()>(1);
        let handle = {
            let w = Writer {
                rx: rx.clone(),
                stats: stats.clone(),
                target: target.clone(),
                table: table.to_string(),
                // The writer holds at most one batch besides the queue.
                batch: BATCH.min(capacity),
                deadline_ms: deadline_ms.clone(),
                epoch,
                queued_bytes: queued_bytes.clone(),
                dead_letter: opts.dead_letter.clone(),
                reasons: Vec::new(),
            };
            std::thread::Builder::new()
                .name("predlog".into())
                .spawn(move || {
                    w.run();
                    let _ = done_tx.send(());
                })
                .map_err(|source| Error::Thread {
                    what: "prediction log writer",
                    source,
                })?
        };
        Ok(PredLog {
            tx: Mutex::new(Some(tx)),
            rx_len: rx,
            handle: Mutex::new(Some(handle)),
            stats,
            target,
            table: table.to_string(),
            capacity,
            max_bytes: opts.max_bytes,
            queued_bytes,
            deadline_ms,
            epoch,
            done,
        })
    }

    /// Bytes the queued records hold.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes.load(Ordering::Relaxed)
    }

    /// Queue a record; never blocks. Returns false when it was dropped.
    pub fn log(&self, r: Record) -> bool {
        let size = r.bytes();
        let before = self.queued_bytes.fetch_add(size, Ordering::Relaxed);
        let sent = before.saturating_add(size) <= self.max_bytes
            && match self.tx.lock().ok().and_then(|g| g.clone()) {
                Some(tx) => match tx.try_send(r) {
                    Ok(()) => true,
                    Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
                },
                None => false,
            };
        if !sent {
            self.queued_bytes.fetch_sub(size, Ordering::Relaxed);
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
    /// The deadline is fixed now: a database that answers slowly, refuses,
    /// or comes and goes cannot move it. A writer stuck in a call past it is
    /// left behind (what it holds is counted as dropped).
    pub fn close_within(&self, grace: Duration) {
        let deadline = self.epoch.elapsed() + grace;
        self.deadline_ms
            .fetch_min(deadline.as_millis() as u64, Ordering::Relaxed);
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        let Some(h) = self.handle.lock().ok().and_then(|mut h| h.take()) else {
            return;
        };
        // A little beyond the grace for the writer to count and report.
        match self.done.recv_timeout(grace + Duration::from_secs(1)) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                let _ = h.join();
            }
            Err(RecvTimeoutError::Timeout) => {
                let lost = self.rx_len.len();
                self.stats.dropped.fetch_add(lost as u64, Ordering::Relaxed);
                eprintln!(
                    "predlog: {}: the writer is stuck in a database call at shutdown; \
                     {lost} queued records not written",
                    self.target.describe()
                );
            }
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

/// Why a write failed: the connection (retry after reconnecting) or the
/// records (the database refused them; retrying cannot help).
enum WriteError {
    Lost(String),
    Refused(String),
}

impl From<postgres::Error> for WriteError {
    fn from(e: postgres::Error) -> Self {
        // SQLSTATE classes of a connection, resource or server problem; any
        // other error the server reports is about what was sent.
        const TRANSIENT: [&str; 7] = ["08", "40", "53", "54", "57", "58", "XX"];
        match e.as_db_error() {
            Some(db) if !TRANSIENT.iter().any(|c| db.code().code().starts_with(c)) => {
                WriteError::Refused(format!("{} ({})", db.message(), db.code().code()))
            }
            _ => WriteError::Lost(e.to_string()),
        }
    }
}

impl From<rusqlite::Error> for WriteError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::*;
        match e.sqlite_error_code() {
            Some(ConstraintViolation | TooBig | TypeMismatch) => WriteError::Refused(e.to_string()),
            _ => WriteError::Lost(e.to_string()),
        }
    }
}

fn write(conn: &mut Conn, table: &str, batch: &[Record]) -> std::result::Result<(), WriteError> {
    match conn {
        Conn::Sqlite(c) => {
            let tx = c.transaction()?;
            {
                let mut st = tx.prepare_cached(&format!(
                    "INSERT INTO {table} (request_id, time_ms, model, version, fields, probability, latency_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                ))?;
                for r in batch {
                    st.execute(rusqlite::params![
                        r.request_id,
                        r.time_ms,
                        r.model,
                        r.version,
                        r.fields,
                        r.probability,
                        r.latency_ms
                    ])?;
                }
            }
            Ok(tx.commit()?)
        }
        Conn::Postgres(c) => {
            let mut tx = c.transaction()?;
            let st = tx.prepare(&format!(
                "INSERT INTO {table} (request_id, time, model, version, fields, probability, latency_ms)
                 VALUES ($1, to_timestamp($2::float8 / 1000.0), $3, $4, CAST($5::text AS jsonb), $6, $7)"
            ))?;
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
                )?;
            }
            Ok(tx.commit()?)
        }
    }
}

struct Writer {
    rx: Receiver<Record>,
    stats: Arc<PredLogStats>,
    target: Target,
    table: String,
    batch: usize,
    deadline_ms: Arc<AtomicU64>,
    epoch: Instant,
    queued_bytes: Arc<AtomicUsize>,
    dead_letter: Option<PathBuf>,
    /// Kinds of refusal already reported (logged once each).
    reasons: Vec<String>,
}

impl Writer {
    /// Records leave the writer's hands (written, set aside or dropped): their
    /// bytes leave the bound. A batch held while the database is down counts
    /// against it, so the bound holds whatever the database does.
    fn release(&self, records: &[Record]) {
        let bytes: usize = records.iter().map(Record::bytes).sum();
        self.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Past the deadline `close` set.
    fn past_deadline(&self) -> bool {
        let d = self.deadline_ms.load(Ordering::Relaxed);
        d != u64::MAX && self.epoch.elapsed().as_millis() as u64 >= d
    }

    /// Set aside a record the database refused.
    fn reject(&mut self, r: &Record, reason: &str) {
        self.stats.rejected.fetch_add(1, Ordering::Relaxed);
        // The reason without the record's own values: one line per kind.
        let kind: String = reason.chars().take(80).collect();
        if !self.reasons.contains(&kind) {
            eprintln!(
                "predlog: {} refused a record ({reason}); such records go to {}",
                self.target.describe(),
                self.dead_letter
                    .as_ref()
                    .map_or("nowhere (dropped and counted)".into(), |p| p
                        .display()
                        .to_string())
            );
            if self.reasons.len() < 64 {
                self.reasons.push(kind);
            }
        }
        let Some(path) = &self.dead_letter else {
            return;
        };
        // The fields as the JSON they are (text only if they are not).
        let fields = serde_json::from_str::<serde_json::Value>(&r.fields)
            .unwrap_or_else(|_| serde_json::Value::String(r.fields.clone()));
        let line = serde_json::json!({
            "request_id": r.request_id, "time_ms": r.time_ms, "model": r.model,
            "version": r.version, "fields": fields, "probability": r.probability,
            "latency_ms": r.latency_ms, "reason": reason,
        });
        let appended = (|| -> std::io::Result<()> {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            writeln!(f, "{line}")
        })();
        if let Err(e) = appended {
            eprintln!(
                "predlog: {}: {e}; the refused record is dropped",
                path.display()
            );
        }
    }

    /// Write a batch the database refused one record at a time; returns the
    /// records not yet tried when the connection was lost.
    fn write_each(
        &mut self,
        conn: &mut Conn,
        batch: Vec<Record>,
    ) -> std::result::Result<(), (Vec<Record>, String)> {
        let mut rest = batch.into_iter();
        while let Some(r) = rest.next() {
            match write(conn, &self.table, std::slice::from_ref(&r)) {
                Ok(()) => {
                    self.stats.written.fetch_add(1, Ordering::Relaxed);
                    self.release(std::slice::from_ref(&r));
                }
                Err(WriteError::Refused(why)) => {
                    self.reject(&r, &why);
                    self.release(std::slice::from_ref(&r));
                }
                Err(WriteError::Lost(e)) => {
                    let mut left = vec![r];
                    left.extend(rest);
                    return Err((left, e));
                }
            }
        }
        Ok(())
    }

    fn run(mut self) {
        let mut conn: Option<Conn> = None;
        let mut batch: Vec<Record> = Vec::with_capacity(self.batch);
        let mut closed = false;
        let mut reported = false;
        loop {
            if self.past_deadline() {
                let rest: Vec<Record> = self.rx.try_iter().collect();
                let lost = batch.len() + rest.len();
                self.release(&batch);
                self.release(&rest);
                if lost > 0 {
                    self.stats.dropped.fetch_add(lost as u64, Ordering::Relaxed);
                    eprintln!(
                        "predlog: {}: the grace period ended at shutdown; {lost} records not written",
                        self.target.describe()
                    );
                }
                return;
            }
            // Fill the batch: wait for the first record, then take what
            // comes within LINGER.
            if batch.is_empty() && !closed {
                match self.rx.recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => closed = true,
                }
            }
            let deadline = Instant::now() + LINGER;
            while batch.len() < self.batch && !closed {
                match self.rx.recv_deadline(deadline) {
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
                match connect(&self.target, &self.table) {
                    Ok(c) => {
                        conn = Some(c);
                        reported = false;
                    }
                    Err(e) => {
                        self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                        if !reported {
                            eprintln!("predlog: {}: {e}; retrying", self.target.describe());
                            reported = true;
                        }
                    }
                }
            }
            let result = match conn.as_mut() {
                Some(c) => match write(c, &self.table, &batch) {
                    Ok(()) => {
                        self.stats
                            .written
                            .fetch_add(batch.len() as u64, Ordering::Relaxed);
                        self.release(&batch);
                        batch.clear();
                        Ok(())
                    }
                    Err(WriteError::Refused(_)) => {
                        let all = std::mem::take(&mut batch);
                        self.write_each(c, all).map_err(|(left, e)| {
                            batch = left;
                            e
                        })
                    }
                    Err(WriteError::Lost(e)) => Err(e),
                },
                None => Err("not connected".into()),
            };
            if let Err(e) = result {
                if conn.is_some() {
                    self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                    eprintln!("predlog: {}: {e}; reconnecting", self.target.describe());
                    conn = None;
                }
                if self.past_deadline() {
                    let rest: Vec<Record> = self.rx.try_iter().collect();
                    let lost = batch.len() + rest.len();
                    self.release(&batch);
                    self.release(&rest);
                    self.stats.dropped.fetch_add(lost as u64, Ordering::Relaxed);
                    eprintln!(
                        "predlog: {} stayed down at shutdown; {lost} records not written",
                        self.target.describe()
                    );
                    return;
                }
                std::thread::sleep(RETRY);
            }
        }
    }
}
