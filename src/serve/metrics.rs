//! The counters and histograms behind `/metrics`, in Prometheus' text
//! format.
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::bundle::Bundle;
use super::predlog::PredLog;

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

    pub(super) fn render(&self, out: &mut String, name: &str, labels: &str, bounds: &[f64]) {
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
pub(super) struct Counters(Mutex<BTreeMap<String, u64>>);

impl Counters {
    pub(super) fn add(&self, labels: String, n: u64) {
        if let Ok(mut c) = self.0.lock() {
            *c.entry(labels).or_default() += n;
        }
    }

    pub(super) fn render(&self, out: &mut String, name: &str, help: &str) {
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
    pub(super) feedback: Counters,
}

impl Metrics {
    pub(super) fn record(&self, route: &str, status: u16, seconds: f64) {
        self.requests
            .add(format!("route=\"{route}\",status=\"{status}\""), 1);
        if let Ok(mut l) = self.latency.lock() {
            l.entry(route.to_string())
                .or_default()
                .observe(&LATENCY_BUCKETS, seconds);
        }
    }

    pub(super) fn predicted(&self, b: &Bundle, rows: usize) {
        if let Ok(mut h) = self.batch.lock() {
            h.observe(&BATCH_BUCKETS, rows as f64);
        }
        self.predictions.add(
            format!("model=\"{}\",version=\"{}\"", b.name, b.version),
            rows as u64,
        );
    }

    pub(super) fn render(&self, bundles: &[Arc<Bundle>], predlog: Option<&PredLog>) -> String {
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
