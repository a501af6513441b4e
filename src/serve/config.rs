//! The service's settings (`ctr-dl serve` flags or `configs/serve.toml`) and
//! the window of event times `/feedback` believes.
use std::path::{Path, PathBuf};

use super::bundle::now_ms;
use super::history::HistoryOptions;
use super::request::{ApiError, ApiResult};
use crate::error::{Error, Result};

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
    /// One line per request on stdout: method, route, status, latency and
    /// request id (`--quiet` turns it off).
    pub access_log: bool,
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
            access_log: true,
        }
    }
}

impl ServeConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        toml::from_str(&text).map_err(|e| Error::Config {
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

    pub(super) fn check(&self, column: &str, t: i64) -> ApiResult<()> {
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
