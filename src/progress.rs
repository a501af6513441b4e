//! Progress bars for long jobs: drawn on stderr only when it is a terminal and
//! the caller asked for them, so logs and tests stay clean.
use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{HumanBytes, HumanCount, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Progress {
    bar: Option<ProgressBar>,
    started: Instant,
    by_bytes: bool,
}

impl Progress {
    fn make(enabled: bool, total: u64, template: &str, by_bytes: bool) -> Self {
        let bar = (enabled && std::io::stderr().is_terminal()).then(|| {
            let bar =
                ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(4));
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        Progress {
            bar,
            started: Instant::now(),
            by_bytes,
        }
    }

    /// A bar over input bytes that also shows rows per second.
    pub fn bytes(enabled: bool, total: u64, what: &str) -> Self {
        let t = format!(
            "{what} [{{bar:30}}] {{bytes}}/{{total_bytes}} {{bytes_per_sec}} {{msg}} eta {{eta}}"
        );
        Self::make(enabled, total, &t, true)
    }

    /// A bar over rows.
    pub fn rows(enabled: bool, total: u64, what: &str) -> Self {
        let t = format!("{what} [{{bar:30}}] {{human_pos}}/{{human_len}} rows {{msg}} eta {{eta}}");
        Self::make(enabled, total, &t, false)
    }

    /// Update: position in bytes (or rows) and rows done.
    pub fn set(&self, pos: u64, rows: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(pos);
            let secs = self.started.elapsed().as_secs_f64().max(1e-9);
            let rate = (rows as f64 / secs) as u64;
            if self.by_bytes {
                bar.set_message(format!(
                    "{} rows, {} rows/s",
                    HumanCount(rows),
                    HumanCount(rate)
                ));
            } else {
                bar.set_message(format!("{} rows/s", HumanCount(rate)));
            }
        }
    }

    pub fn finish_and_clear(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// `1.2 GiB`-style sizes for summaries.
pub fn human_bytes(n: u64) -> String {
    HumanBytes(n).to_string()
}
