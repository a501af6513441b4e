//! `ctr-dl report --run RUN [--run RUN ...] --out DIR`: a self-contained
//! `report.html` (figures inlined as PNG data, no network fetches) with PNG
//! copies of each figure and `report.json` with every number.
//!
//! For every run, on one split (test by default): the metrics table, ROC and
//! precision-recall curves of all runs on one plot each, a reliability
//! diagram with its bins' rows (before and after post-hoc calibration when the
//! run has one, or `--calibrate` fits one on valid and saves it with the
//! run), feature importance (LightGBM's gain, and for every model the drop in
//! AUC when one field is shuffled), confusion matrices at a chosen threshold
//! and at the F1-best one, score distributions by label, and predicted
//! against observed CTR by hour where the data have time.
//!
//! Everything is written into a temporary directory beside `DIR` and renamed
//! into place at the end, so a failure leaves no half-written report.
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::calibrate::{Calibrator, Method};
use super::html;
use super::plots::{self, LineChart, ReliabilityBin, Series};
use super::runs::{open_run, run_metrics, OpenRun};
use crate::data::io::{build_dir_atomically, write_json};
use crate::data::writer::Split;
use crate::error::{Error, Result};
use crate::features::config::TimePart;
use crate::features::map::{CatTransform, Encoded};
use crate::metrics::{evaluate, Metrics};

/// Whether the report knows a model kind (`run.json`'s `model`): the deep
/// models and LightGBM.
fn known_model(kind: &str) -> bool {
    kind == "lightgbm"
        || crate::models::ModelKind::ALL
            .iter()
            .any(|k| k.name() == kind)
}

#[derive(Debug, Clone)]
pub struct ReportOptions {
    pub runs: Vec<PathBuf>,
    pub out: PathBuf,
    pub split: Split,
    /// The confusion matrix threshold (default: the split's observed CTR).
    pub threshold: Option<f64>,
    /// Fit this calibrator on valid and save it with each run first.
    pub calibrate: Option<Method>,
    /// Rows of the split used for permutation importance.
    pub permutation_rows: usize,
    pub seed: u64,
}

impl ReportOptions {
    pub fn new(runs: Vec<PathBuf>, out: impl Into<PathBuf>) -> Self {
        ReportOptions {
            runs,
            out: out.into(),
            split: Split::Test,
            threshold: None,
            calibrate: None,
            permutation_rows: 50_000,
            seed: 2018,
        }
    }
}

/// A confusion matrix at one threshold.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Confusion {
    pub threshold: f64,
    pub tp: u64,
    pub fp: u64,
    pub fn_: u64,
    pub tn: u64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

fn confusion(p: &[f64], y: &[u8], t: f64) -> Confusion {
    let (mut tp, mut fp, mut fn_, mut tn) = (0u64, 0u64, 0u64, 0u64);
    for (&p, &y) in p.iter().zip(y) {
        match (p >= t, y != 0) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => fn_ += 1,
            (false, false) => tn += 1,
        }
    }
    let precision = if tp + fp > 0 {
        tp as f64 / (tp + fp) as f64
    } else {
        0.0
    };
    let recall = if tp + fn_ > 0 {
        tp as f64 / (tp + fn_) as f64
    } else {
        0.0
    };
    let f1 = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    Confusion {
        threshold: t,
        tp,
        fp,
        fn_,
        tn,
        precision,
        recall,
        f1,
    }
}

/// The threshold of the highest F1, over every distinct score.
fn f1_best(p: &[f64], y: &[u8]) -> f64 {
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
    let pos = y.iter().filter(|&&y| y != 0).count() as f64;
    let (mut tp, mut k, mut best, mut best_t) = (0.0, 0.0, -1.0, 0.5);
    let mut i = 0;
    while i < order.len() {
        let t = p[order[i]];
        while i < order.len() && p[order[i]] == t {
            tp += y[order[i]] as f64;
            k += 1.0;
            i += 1;
        }
        let f1 = 2.0 * tp / (k + pos);
        if f1 > best {
            (best, best_t) = (f1, t);
        }
    }
    best_t
}

type Points = Vec<(f64, f64)>;

/// ROC and precision-recall points (at most about 1000 of each).
fn curves(p: &[f64], y: &[u8]) -> (Points, Points) {
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
    let pos = y.iter().filter(|&&y| y != 0).count().max(1) as f64;
    let neg = (y.len() as f64 - pos).max(1.0);
    let step = (order.len() / 1000).max(1);
    let (mut roc, mut pr) = (vec![(0.0, 0.0)], Vec::new());
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut i = 0;
    let mut since = 0;
    while i < order.len() {
        let t = p[order[i]];
        while i < order.len() && p[order[i]] == t {
            if y[order[i]] != 0 {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
            i += 1;
            since += 1;
        }
        if since >= step || i == order.len() {
            since = 0;
            roc.push((fp / neg, tp / pos));
            pr.push((tp / pos, tp / (tp + fp)));
        }
    }
    (roc, pr)
}

/// Equal-count bins of the scores of `order_by` (15), with `p`'s mean and the
/// labels' rate in each.
fn reliability_bins(order_by: &[f64], p: &[f64], y: &[u8]) -> Vec<ReliabilityBin> {
    const BINS: usize = 15;
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|&a, &b| order_by[a].total_cmp(&order_by[b]));
    let n = order.len();
    (0..BINS)
        .filter_map(|b| {
            let rows = &order[b * n / BINS..(b + 1) * n / BINS];
            if rows.is_empty() {
                return None;
            }
            let k = rows.len() as f64;
            Some(ReliabilityBin {
                lower: order_by[rows[0]],
                upper: order_by[rows[rows.len() - 1]],
                predicted: rows.iter().map(|&i| p[i]).sum::<f64>() / k,
                observed: rows.iter().map(|&i| y[i] as f64).sum::<f64>() / k,
                count: rows.len() as u64,
            })
        })
        .collect()
}

/// One run's part of `report.json`.
#[derive(Debug, Clone, Serialize)]
pub struct RunSection {
    pub run: String,
    pub dir: PathBuf,
    pub model: String,
    pub train_seconds: f64,
    pub metrics: Metrics,
    pub calibration: Option<CalibrationSection>,
    pub confusion_at_threshold: Confusion,
    pub confusion_f1_best: Confusion,
    /// (field, AUC drop when the field is shuffled), largest first.
    pub permutation_importance: Vec<(String, f64)>,
    /// LightGBM's total gain per column, largest first.
    pub gain_importance: Option<Vec<(String, f64)>>,
    pub reliability: Vec<ReliabilityBin>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CalibrationSection {
    pub method: String,
    pub metrics: Metrics,
    pub reliability: Vec<ReliabilityBin>,
}

/// One hour of day: its rows, observed CTR and each run's mean prediction.
#[derive(Debug, Clone, Serialize)]
pub struct HourRow {
    pub hour: u32,
    pub rows: u64,
    pub observed: f64,
    pub predicted: Vec<f64>,
}

/// `report.json`.
#[derive(Debug, Clone, Serialize)]
pub struct ReportSummary {
    pub split: String,
    pub rows: usize,
    pub positives: u64,
    pub data: PathBuf,
    pub created: String,
    pub runs: Vec<RunSection>,
    /// Observed CTR by hour of day and each run's mean prediction.
    pub ctr_by_hour: Option<Vec<HourRow>>,
    pub figures: Vec<String>,
}

/// What the report computed for one run before drawing.
struct Scored {
    open: OpenRun,
    p: Vec<f64>,
    section: RunSection,
}

/// Hour of day per row, from the feature map's hour field, if there is one.
fn hours(open: &OpenRun, e: &Encoded) -> Option<Vec<Option<u32>>> {
    let map = &open.ds.features;
    let (f, field) = map.categorical.iter().enumerate().find(|(_, c)| {
        matches!(
            c.transform,
            CatTransform::Time {
                part: TimePart::Hour
            }
        )
    })?;
    let nf = map.num_fields();
    Some(
        (0..e.rows)
            .map(|r| {
                let local = e.ids[r * nf + f] as u32 - field.offset;
                // Index 0 is the missing value, 1 + hour otherwise.
                local.checked_sub(1).filter(|&h| h < 24)
            })
            .collect(),
    )
}

/// The drop in AUC when each input is shuffled across the first `rows` rows.
fn permutation_importance(
    open: &OpenRun,
    e: &Encoded,
    rows: usize,
    seed: u64,
) -> Result<Vec<(String, f64)>> {
    Ok(
        super::fields::permutation_importance(open, e, rows, 1, seed)?
            .into_iter()
            .map(|i| (i.name, i.auc_drop))
            .collect(),
    )
}

/// The model's own importance of each input, where its family has one.
fn gain_importance(open: &OpenRun) -> Result<Option<Vec<(String, f64)>>> {
    let Some(gain) = open.model.gain_importance()? else {
        return Ok(None);
    };
    let mut out: Vec<(String, f64)> = open.ds.meta.column_names().into_iter().zip(gain).collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok(Some(out))
}

/// Check each run before any work: a run directory, finished, of a kind the
/// report knows.
fn check_run(dir: &Path) -> Result<String> {
    if !dir.join("run.json").exists() {
        return Err(Error::Invalid(format!(
            "{}: not a run directory (no run.json)",
            dir.display()
        )));
    }
    let info: crate::run::RunInfo = crate::data::io::read_json(&dir.join("run.json"))?;
    if !known_model(&info.model) {
        let known: Vec<&str> = crate::models::ModelKind::ALL
            .iter()
            .map(|k| k.name())
            .chain(["lightgbm"])
            .collect();
        return Err(Error::Invalid(format!(
            "{}: model kind `{}` is not one the report knows ({})",
            dir.display(),
            info.model,
            known.join(", ")
        )));
    }
    let m = run_metrics(dir).map_err(|e| {
        e.context(format!(
            "{}: metrics.json is missing or half written, so the run did not finish",
            dir.display()
        ))
    })?;
    if !m.train.finished {
        return Err(Error::Invalid(format!(
            "{}: the run has not finished (continue it with ctr-dl train --resume)",
            dir.display()
        )));
    }
    Ok(info.run)
}

/// Build the report.
pub fn report(opts: &ReportOptions) -> Result<ReportSummary> {
    if opts.runs.is_empty() {
        return Err(Error::Invalid("give at least one --run".into()));
    }
    let names = opts
        .runs
        .iter()
        .map(|d| check_run(d))
        .collect::<Result<Vec<_>>>()?;
    let split = opts.split;
    let mut scored: Vec<Scored> = Vec::new();
    let mut reference: Option<(PathBuf, Vec<u8>, Encoded)> = None;
    for (dir, name) in opts.runs.iter().zip(&names) {
        let open = open_run(dir, tch::Device::Cpu)?;
        let (p, y, e) = open.predict_split(split)?;
        // Every run must be judged on the same rows.
        match &reference {
            None => reference = Some((dir.clone(), y.clone(), e.clone())),
            Some((first, ry, _)) if *ry != y => {
                return Err(Error::Invalid(format!(
                    "{} and {} were trained on different splits: their {} splits differ \
                     ({} and {} rows; data {} and {})",
                    first.display(),
                    dir.display(),
                    split.name(),
                    ry.len(),
                    y.len(),
                    scored[0].open.ds.meta.source.display(),
                    open.ds.meta.source.display()
                )))
            }
            Some(_) => {}
        }
        let calibrator = match opts.calibrate {
            Some(method) => {
                let (vp, vy, _) = open.predict_split(Split::Valid)?;
                let c = Calibrator::fit(method, &vp, &vy);
                c.save_to(dir)?;
                Some(c)
            }
            None => Calibrator::load_from(dir)?,
        };
        let calibrated = calibrator.map(|c| {
            let q = c.apply_all(&p);
            (c, q)
        });
        let metrics = evaluate(&p, &y);
        let threshold = opts.threshold.unwrap_or(metrics.obs_ctr);
        let m = run_metrics(dir)?;
        let section = RunSection {
            run: name.clone(),
            dir: dir.clone(),
            model: open.info.model.clone(),
            train_seconds: m.train.seconds,
            confusion_at_threshold: confusion(&p, &y, threshold),
            confusion_f1_best: confusion(&p, &y, f1_best(&p, &y)),
            permutation_importance: permutation_importance(
                &open,
                &e,
                opts.permutation_rows,
                opts.seed,
            )?,
            gain_importance: gain_importance(&open)?,
            reliability: reliability_bins(&p, &p, &y),
            calibration: calibrated.as_ref().map(|(c, q)| CalibrationSection {
                method: c.method().into(),
                metrics: evaluate(q, &y),
                reliability: reliability_bins(&p, q, &y),
            }),
            metrics,
        };
        scored.push(Scored { open, p, section });
    }
    let (_, y, e) = reference.expect("at least one run");

    // Drawn into a temporary directory, renamed into place at the end.
    build_dir_atomically(&opts.out, |tmp| draw(tmp, opts, &scored, &y, &e))
}

/// The figures, `report.json` and `report.html` into `dir`.
fn draw(
    dir: &Path,
    opts: &ReportOptions,
    scored: &[Scored],
    y: &[u8],
    e: &Encoded,
) -> Result<ReportSummary> {
    let mut figures: Vec<(String, String, String)> = Vec::new(); // (file, title, caption)
    let mut add = |file: &str, title: &str, caption: String| {
        figures.push((file.to_string(), title.to_string(), caption));
    };

    // ROC and PR of all runs.
    let (mut roc, mut pr) = (Vec::new(), Vec::new());
    for s in scored {
        let (r, p) = curves(&s.p, y);
        let m = &s.section.metrics;
        roc.push(Series {
            name: format!("{} (AUC {:.4})", s.section.run, m.auc.unwrap_or(f64::NAN)),
            points: r,
        });
        pr.push(Series {
            name: format!(
                "{} (PR-AUC {:.4})",
                s.section.run,
                m.pr_auc.unwrap_or(f64::NAN)
            ),
            points: p,
        });
    }
    LineChart {
        title: "ROC",
        x_label: "false positive rate",
        y_label: "true positive rate",
        x: (0.0, 1.0),
        y: (0.0, 1.0),
        diagonal: Some("chance"),
        markers: false,
        integer_x: false,
    }
    .draw(&dir.join("roc.png"), &roc)?;
    add("roc.png", "ROC curves", "True against false positive rate as the threshold falls; the diagonal is a random ranking.".into());
    let base = y.iter().filter(|&&v| v != 0).count() as f64 / y.len().max(1) as f64;
    let pr_top = pr
        .iter()
        .flat_map(|s| {
            s.points
                .iter()
                .skip(pr_points_skip(s.points.len()))
                .map(|p| p.1)
        })
        .fold(base, f64::max)
        .min(1.0);
    LineChart {
        title: "Precision-recall",
        x_label: "recall",
        y_label: "precision",
        x: (0.0, 1.0),
        y: (0.0, (pr_top * 1.1).min(1.0)),
        diagonal: None,
        markers: false,
        integer_x: false,
    }
    .draw(&dir.join("pr.png"), &pr)?;
    add("pr.png", "Precision-recall curves", format!("Precision against recall; a random ranking has precision {base:.4}, the click rate. The first 1% of recall is cut from the axis range, where precision jumps on a handful of rows."));

    for (k, s) in scored.iter().enumerate() {
        let tag = format!("{}-{}", k + 1, html::file_safe(&s.section.run));
        let mut versions = vec![("as trained".to_string(), s.section.reliability.clone())];
        if let Some(c) = &s.section.calibration {
            versions.push((
                format!("{} calibration (fitted on valid)", c.method),
                c.reliability.clone(),
            ));
        }
        let file = format!("calibration-{tag}.png");
        plots::reliability(
            &dir.join(&file),
            &format!("Calibration: {}", s.section.run),
            &versions,
        )?;
        add(&file, &format!("Calibration of {}", s.section.run), "Observed against mean predicted CTR in 15 bins of equal rows (by predicted CTR, as trained); below, where the rows lie: each bin over its range of predicted CTR.".into());

        let file = format!("importance-{tag}.png");
        plots::bars(
            &dir.join(&file),
            &format!("Permutation importance: {}", s.section.run),
            "drop in AUC when the field is shuffled",
            &s.section.permutation_importance,
        )?;
        add(&file, &format!("Permutation importance of {}", s.section.run), format!("Each field shuffled across the first {} rows of the split, all else kept: how much the AUC falls.", opts.permutation_rows.min(e.rows)));
        if let Some(gain) = &s.section.gain_importance {
            let total: f64 = gain.iter().map(|g| g.1).sum::<f64>().max(1e-12);
            let share: Vec<(String, f64)> =
                gain.iter().map(|(n, g)| (n.clone(), g / total)).collect();
            let file = format!("gain-{tag}.png");
            plots::bars(
                &dir.join(&file),
                &format!("LightGBM gain: {}", s.section.run),
                "share of the total split gain",
                &share,
            )?;
            add(
                &file,
                &format!("Gain importance of {}", s.section.run),
                "LightGBM's total gain of the splits on each column, as a share of all.".into(),
            );
        }

        let (neg, pos): (Vec<f64>, Vec<f64>) = {
            let (mut n, mut p) = (Vec::new(), Vec::new());
            for (&v, &l) in s.p.iter().zip(y) {
                if l != 0 {
                    p.push(v)
                } else {
                    n.push(v)
                }
            }
            (n, p)
        };
        let mut sorted = s.p.clone();
        sorted.sort_by(f64::total_cmp);
        let hi = sorted
            .get(sorted.len() * 999 / 1000)
            .copied()
            .unwrap_or(1.0)
            .max(1e-6);
        let file = format!("scores-{tag}.png");
        plots::histograms(
            &dir.join(&file),
            &format!("Predicted CTR by label: {}", s.section.run),
            "predicted CTR (up to its 99.9th percentile)",
            (0.0, hi),
            &[("no click".into(), neg), ("click".into(), pos)],
        )?;
        add(&file, &format!("Score distributions of {}", s.section.run), "The share of non-clicked and clicked rows in each band of predicted CTR: the further apart, the better the ranking.".into());
    }

    // CTR by hour, where the feature map has an hour field.
    let by_hour = scored.first().and_then(|s| hours(&s.open, e)).map(|h| {
        let mut rows = [0u64; 24];
        let mut clicks = [0f64; 24];
        let mut pred = vec![vec![0f64; 24]; scored.len()];
        for (r, hour) in h.iter().enumerate() {
            if let Some(hr) = *hour {
                rows[hr as usize] += 1;
                clicks[hr as usize] += y[r] as f64;
                for (k, s) in scored.iter().enumerate() {
                    pred[k][hr as usize] += s.p[r];
                }
            }
        }
        (0..24u32)
            .filter(|&hr| rows[hr as usize] > 0)
            .map(|hr| {
                let n = rows[hr as usize] as f64;
                HourRow {
                    hour: hr,
                    rows: rows[hr as usize],
                    observed: clicks[hr as usize] / n,
                    predicted: pred.iter().map(|p| p[hr as usize] / n).collect(),
                }
            })
            .collect::<Vec<_>>()
    });
    if let Some(hours) = &by_hour {
        let mut series = vec![Series {
            name: "observed".into(),
            points: hours.iter().map(|h| (h.hour as f64, h.observed)).collect(),
        }];
        for (k, s) in scored.iter().enumerate() {
            series.push(Series {
                name: format!("predicted: {}", s.section.run),
                points: hours
                    .iter()
                    .map(|h| (h.hour as f64, h.predicted[k]))
                    .collect(),
            });
        }
        let top = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .fold(0.0f64, f64::max);
        LineChart {
            title: "CTR by hour of day (UTC)",
            x_label: "hour of day",
            y_label: "CTR",
            x: (0.0, 23.0),
            y: (0.0, top * 1.15),
            diagonal: None,
            markers: true,
            integer_x: true,
        }
        .draw(&dir.join("ctr_by_hour.png"), &series)?;
        add(
            "ctr_by_hour.png",
            "CTR by hour",
            "Observed click rate per hour of day beside each run's mean predicted CTR.".into(),
        );
    }

    let first = &scored[0];
    let summary = ReportSummary {
        split: opts.split.name().into(),
        rows: y.len(),
        positives: y.iter().filter(|&&v| v != 0).count() as u64,
        data: first.open.ds.meta.source.clone(),
        created: crate::data::manifest::now_rfc3339(),
        runs: scored.iter().map(|s| s.section.clone()).collect(),
        ctr_by_hour: by_hour,
        figures: figures.iter().map(|f| f.0.clone()).collect(),
    };
    write_json(&dir.join("report.json"), &summary)?;
    let html = render_html(dir, &summary, &figures)?;
    crate::data::io::atomic_write(&dir.join("report.html"), html.as_bytes())?;
    Ok(summary)
}

/// The first points of a PR curve (the top 1% of recall) are left out of
/// the axis range: precision there rests on a handful of rows.
fn pr_points_skip(n: usize) -> usize {
    n / 100
}

fn render_html(
    dir: &Path,
    s: &ReportSummary,
    figures: &[(String, String, String)],
) -> Result<String> {
    let f = |x: Option<f64>, d: usize| x.map_or("-".to_string(), |v| format!("{v:.d$}"));
    let mut h = String::new();
    h += &html::head(&format!(
        "ctr-dl report: {} split of {}",
        s.split,
        s.data.display()
    ));
    let _ = write!(
        h,
        r#"<h1>CTR model report</h1>
<p class="meta">{n} run(s) on the <b>{split}</b> split of <code>{data}</code>: {rows} rows, {pos} clicks (CTR {ctr:.5}). Generated {created} by ctr-dl {version}.</p>
"#,
        n = s.runs.len(),
        split = s.split,
        data = html::escape(&s.data.display().to_string()),
        rows = s.rows,
        pos = s.positives,
        ctr = s.positives as f64 / s.rows.max(1) as f64,
        created = s.created,
        version = env!("CARGO_PKG_VERSION"),
    );
    h += "<h2>Metrics</h2>\n<table><tr><th>run</th><th>model</th><th>AUC</th><th>log loss</th><th>PR-AUC</th><th>NE</th><th>ECE</th><th>pred CTR</th><th>obs CTR</th><th>pred / obs</th><th>train s</th></tr>\n";
    let best = s
        .runs
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.metrics.logloss.total_cmp(&b.1.metrics.logloss))
        .map(|b| b.0);
    // The metric cells of one row.
    let cells = |m: &Metrics| {
        format!(
            "<td>{}</td><td>{:.5}</td><td>{}</td><td>{}</td><td>{:.5}</td><td>{:.5}</td><td>{:.5}</td><td>{}</td>",
            f(m.auc, 5),
            m.logloss,
            f(m.pr_auc, 5),
            f(m.ne, 4),
            m.ece,
            m.pred_ctr,
            m.obs_ctr,
            f(m.calibration_ratio, 4)
        )
    };
    for (i, r) in s.runs.iter().enumerate() {
        let _ = writeln!(
            h,
            "<tr{}><td>{}</td><td>{}</td>{}<td>{:.1}</td></tr>",
            if Some(i) == best && s.runs.len() > 1 {
                " class=\"best\""
            } else {
                ""
            },
            html::escape(&r.run),
            html::escape(&r.model),
            cells(&r.metrics),
            r.train_seconds
        );
        if let Some(c) = &r.calibration {
            let _ = writeln!(
                h,
                "<tr><td>&nbsp;&nbsp;{} + {} calibration</td><td>{}</td>{}<td></td></tr>",
                html::escape(&r.run),
                c.method,
                html::escape(&r.model),
                cells(&c.metrics)
            );
        }
    }
    h += "</table>\n<p class=\"meta\">Bold: the lowest log loss. NE is the log loss over that of always predicting the click rate (lower is better); ECE the mean |predicted - observed| CTR over 10 equal-width bins, weighted by rows.</p>\n";

    h += "<h2>Confusion matrices</h2>\n";
    for r in &s.runs {
        let _ = writeln!(h, "<h3>{}</h3>\n<div class=\"pair\">", html::escape(&r.run));
        for (what, c) in [
            ("chosen threshold", &r.confusion_at_threshold),
            ("F1-best threshold", &r.confusion_f1_best),
        ] {
            let _ = writeln!(
                h,
                "<table class=\"cm\"><caption>{what}: {:.5}</caption><tr><th></th><th>predicted click</th><th>predicted no click</th></tr>\
                 <tr><td>clicked</td><td>{}</td><td>{}</td></tr>\
                 <tr><td>not clicked</td><td>{}</td><td>{}</td></tr>\
                 <tr><td>precision, recall, F1</td><td colspan=\"2\">{:.4}, {:.4}, {:.4}</td></tr></table>",
                c.threshold, c.tp, c.fn_, c.fp, c.tn, c.precision, c.recall, c.f1
            );
        }
        h += "</div>\n";
    }

    h += "<h2>Figures</h2>\n";
    for (file, title, caption) in figures {
        h += &html::figure(dir, file, title, caption)?;
    }
    if s.runs.iter().any(|r| r.calibration.is_some()) {
        h += "<p class=\"meta\">Calibrators are fitted on the valid split and saved with their run as <code>calibration.json</code>; <code>ctr-dl export</code> copies one into the bundle and the server applies it to every prediction.</p>\n";
    }
    h += "</body></html>\n";
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confusion_and_f1_best() {
        let p = [0.9, 0.8, 0.3, 0.2, 0.1];
        let y = [1, 0, 1, 0, 0];
        let c = confusion(&p, &y, 0.5);
        assert_eq!((c.tp, c.fp, c.fn_, c.tn), (1, 1, 1, 2));
        // Taking the top 3 catches both clicks: F1 = 2*2/(3+2) = 0.8, the best.
        assert_eq!(f1_best(&p, &y), 0.3);
        let (roc, pr) = curves(&p, &y);
        assert_eq!(*roc.last().unwrap(), (1.0, 1.0));
        assert_eq!(pr[0], (0.5, 1.0));
    }
}
