//! The counters and histograms behind `/metrics`, on the `prometheus` crate
//! (TiKV's client, without its protobuf feature), rendered in Prometheus'
//! text format 0.0.4.
//!
//! Request, prediction and feedback counts and the latency and batch-size
//! histograms are recorded as they happen. What other parts own (history
//! key values, loaded models, the prediction log's queue and counters) is
//! read when `/metrics` is scraped.
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use super::bundle::Bundle;
use super::predlog::PredLog;

/// Upper bounds of the latency histogram, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0,
];
/// Upper bounds of the batch-size histogram.
const BATCH_BUCKETS: [f64; 8] = [1.0, 2.0, 8.0, 32.0, 100.0, 250.0, 500.0, 1000.0];

/// The prediction log's numbers, copied from its atomics at each scrape;
/// in a registry of their own, rendered only when the log is on.
struct PredLogMetrics {
    registry: Registry,
    queued: IntGauge,
    capacity: IntGauge,
    queued_bytes: IntGauge,
    written: IntCounter,
    dropped: IntCounter,
    rejected: IntCounter,
    write_errors: IntCounter,
}

/// The service's metrics and the registry that renders them.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    batch: Histogram,
    predictions: IntCounterVec,
    feedback: IntCounterVec,
    history_key_values: IntGaugeVec,
    model_loaded: IntGaugeVec,
    predlog: PredLogMetrics,
    /// Scrapes copy gauges and counters in: one at a time.
    scrape: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new().expect("the metric definitions are valid and registered once")
    }
}

impl Metrics {
    fn new() -> prometheus::Result<Metrics> {
        let registry = Registry::new();
        let counters = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok::<_, prometheus::Error>(c)
        };
        let gauges = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(g.clone()))?;
            Ok::<_, prometheus::Error>(g)
        };
        let log_registry = Registry::new();
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help)?;
            log_registry.register(Box::new(c.clone()))?;
            Ok::<_, prometheus::Error>(c)
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help)?;
            log_registry.register(Box::new(g.clone()))?;
            Ok::<_, prometheus::Error>(g)
        };
        let latency = HistogramVec::new(
            HistogramOpts::new("ctr_request_seconds", "Request latency by route.")
                .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        )?;
        registry.register(Box::new(latency.clone()))?;
        let batch = Histogram::with_opts(
            HistogramOpts::new("ctr_batch_rows", "Rows per model forward.")
                .buckets(BATCH_BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(batch.clone()))?;
        Ok(Metrics {
            requests: counters(
                "ctr_requests_total",
                "HTTP requests by route and status.",
                &["route", "status"],
            )?,
            latency,
            batch,
            predictions: counters(
                "ctr_predictions_total",
                "Rows predicted by model and version.",
                &["model", "version"],
            )?,
            feedback: counters(
                "ctr_feedback_events_total",
                "Feedback events applied by /feedback, by model and version.",
                &["model", "version"],
            )?,
            history_key_values: gauges(
                "ctr_history_key_values",
                "Key values held by a model's history counters.",
                &["model", "version"],
            )?,
            model_loaded: gauges(
                "ctr_model_loaded",
                "Loaded model versions (1 each).",
                &["model", "version", "kind"],
            )?,
            predlog: PredLogMetrics {
                queued: gauge(
                    "ctr_predlog_queued",
                    "Prediction-log records waiting to be written.",
                )?,
                capacity: gauge("ctr_predlog_capacity", "Size of the prediction-log queue.")?,
                queued_bytes: gauge(
                    "ctr_predlog_queued_bytes",
                    "Bytes of the prediction-log records waiting to be written.",
                )?,
                written: counter(
                    "ctr_predlog_written_total",
                    "Prediction-log records written.",
                )?,
                dropped: counter(
                    "ctr_predlog_dropped_total",
                    "Prediction-log records dropped (queue full or database down).",
                )?,
                rejected: counter(
                    "ctr_predlog_rejected_total",
                    "Prediction-log records the database refused (set aside in the dead-letter file).",
                )?,
                write_errors: counter(
                    "ctr_predlog_write_errors_total",
                    "Failed connections and writes of the prediction log.",
                )?,
                registry: log_registry,
            },
            registry,
            scrape: Mutex::new(()),
        })
    }

    /// One answered request.
    pub(super) fn record(&self, route: &str, status: u16, seconds: f64) {
        self.requests
            .with_label_values(&[route, &status.to_string()])
            .inc();
        self.latency.with_label_values(&[route]).observe(seconds);
    }

    /// One forward of `rows` rows.
    pub(super) fn predicted(&self, b: &Bundle, rows: usize) {
        self.batch.observe(rows as f64);
        self.predictions
            .with_label_values(&[&b.name, &b.version])
            .inc_by(rows as u64);
    }

    /// Feedback events applied to a model's counters.
    pub(super) fn feedback_applied(&self, b: &Bundle, events: u64) {
        self.feedback
            .with_label_values(&[&b.name, &b.version])
            .inc_by(events);
    }

    /// The text of `/metrics`.
    pub(super) fn render(&self, bundles: &[Arc<Bundle>], predlog: Option<&PredLog>) -> String {
        let _one = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        for b in bundles {
            if let Some(h) = &b.history {
                self.history_key_values
                    .with_label_values(&[&b.name, &b.version])
                    .set(h.stats().1 as i64);
            }
            self.model_loaded
                .with_label_values(&[&b.name, &b.version, &b.meta.model])
                .set(1);
        }
        if let Some(log) = predlog {
            let m = &self.predlog;
            let st = &log.stats;
            m.queued.set(log.queued() as i64);
            m.capacity.set(log.capacity as i64);
            m.queued_bytes.set(log.queued_bytes() as i64);
            // Counters kept by the log itself: take its totals.
            for (c, total) in [
                (&m.written, &st.written),
                (&m.dropped, &st.dropped),
                (&m.rejected, &st.rejected),
                (&m.write_errors, &st.write_errors),
            ] {
                c.reset();
                c.inc_by(total.load(Ordering::Relaxed));
            }
        }
        let mut families = self.registry.gather();
        if predlog.is_some() {
            families.extend(self.predlog.registry.gather());
            families.sort_by(|a, b| a.name().cmp(b.name()));
        }
        let mut out = Vec::new();
        // Writing text into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&families, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}
