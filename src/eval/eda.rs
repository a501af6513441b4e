//! `ctr-dl eda DATA --out DIR`: an exploratory report of a converted dataset,
//! before any model. One pass over every split (the statistics of
//! `ctr-dl stats`, plus the value counts and numeric samples behind them)
//! gives: the class balance per split; per field the distinct count, missing
//! rate, the long tail of value frequencies (rank against count, log-log), the
//! top values with their CTR and 95% Wilson intervals; numeric distributions;
//! CTR by hour and weekday; and the drift of each field from train to valid
//! and test as a population stability index. Written as `eda.html` (figures
//! inlined), the figures as PNG files and `eda.json` with every number.
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::html;
use super::plots::{self, LineChart, Series};
use crate::data::io::{build_dir_atomically, write_json};
use crate::data::manifest::now_rfc3339;
use crate::data::schema::ColumnKind;
use crate::data::stats::{collect_stats, group, Bucket, FieldDetail, FieldStats, TopValue};
use crate::error::Result;

/// What `eda` reads and writes.
#[derive(Debug, Clone)]
pub struct EdaOptions {
    /// A converted dataset directory (with dataset.json).
    pub data: PathBuf,
    /// The report directory (replaced as a whole).
    pub out: PathBuf,
    /// Top values listed per field.
    pub top_k: usize,
    pub progress: bool,
}

/// PSI above this is usually read as a moderate shift, above
/// [`PSI_MAJOR`] as a major one.
pub const PSI_MODERATE: f64 = 0.1;
pub const PSI_MAJOR: f64 = 0.25;
/// Categorical PSI bins: train's most frequent values, then the rest.
const PSI_TOP_VALUES: usize = 20;
/// Numeric PSI bins: train's quantiles.
const PSI_QUANTILES: usize = 10;
/// Long-tail charts hold this many fields each.
const TAIL_FIELDS_PER_CHART: usize = 6;

/// One split's rows and clicks.
#[derive(Debug, Clone, Serialize)]
pub struct Balance {
    pub split: String,
    pub rows: u64,
    pub clicks: u64,
    pub ctr: f64,
}

/// Quantiles of a numeric field's train values (from an evenly spaced sample).
#[derive(Debug, Clone, Serialize)]
pub struct Quantiles {
    pub min: f64,
    pub p01: f64,
    pub p25: f64,
    pub median: f64,
    pub p75: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

/// One field, as seen in train, and its drift.
#[derive(Debug, Clone, Serialize)]
pub struct FieldSection {
    pub name: String,
    pub kind: String,
    pub distinct: u64,
    pub distinct_exact: bool,
    pub missing_rate: f64,
    /// Share of the non-missing rows taken by the most frequent value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top1_share: Option<f64>,
    /// Values seen once in train, where the counts are exact.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub singletons: Option<u64>,
    pub top: Vec<TopValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantiles: Option<Quantiles>,
    /// PSI of valid and of test against train (none for time columns).
    pub psi_valid: Option<f64>,
    pub psi_test: Option<f64>,
    /// The PSI two samples of these sizes from one distribution would show
    /// on average ([`psi_noise`]): a PSI near it is sampling noise.
    pub psi_valid_noise: Option<f64>,
    pub psi_test_noise: Option<f64>,
}

impl FieldSection {
    /// Drifted: a PSI above [`PSI_MODERATE`] that is also well above its
    /// sampling noise, in valid or test.
    pub fn drifted(&self) -> bool {
        let over = |p: Option<f64>, n: Option<f64>| match (p, n) {
            (Some(p), Some(n)) => p > PSI_MODERATE && p > 3.0 * n,
            _ => false,
        };
        over(self.psi_valid, self.psi_valid_noise) || over(self.psi_test, self.psi_test_noise)
    }
}

/// CTR by hour or weekday in one split.
#[derive(Debug, Clone, Serialize)]
pub struct TimeProfile {
    pub split: String,
    pub by_hour: Vec<Bucket>,
    pub by_weekday: Vec<Bucket>,
}

/// `eda.json`.
#[derive(Debug, Clone, Serialize)]
pub struct EdaSummary {
    pub dataset: String,
    pub data: PathBuf,
    pub label: String,
    pub created: String,
    pub balance: Vec<Balance>,
    pub fields: Vec<FieldSection>,
    pub time: Vec<TimeProfile>,
    pub figures: Vec<String>,
}

/// Population stability index of `actual` against `expected`, both counts
/// over the same bins: `sum (a - e) ln(a / e)` over the bins' shares, with
/// empty bins floored at 1e-4 so one unseen bin does not make it infinite.
pub fn psi(expected: &[f64], actual: &[f64]) -> f64 {
    let (te, ta) = (expected.iter().sum::<f64>(), actual.iter().sum::<f64>());
    if te <= 0.0 || ta <= 0.0 {
        return 0.0;
    }
    expected
        .iter()
        .zip(actual)
        .map(|(&e, &a)| {
            let (e, a) = ((e / te).max(1e-4), (a / ta).max(1e-4));
            (a - e) * (a / e).ln()
        })
        .sum()
}

/// The expected PSI between two samples of `n_expected` and `n_actual`
/// rows drawn from one distribution over `bins` bins: PSI is close to a
/// chi-square statistic over the harmonic sample size, so its mean is about
/// `(bins - 1) (1 / n_expected + 1 / n_actual)`.
pub fn psi_noise(bins: usize, n_expected: f64, n_actual: f64) -> f64 {
    if n_expected <= 0.0 || n_actual <= 0.0 {
        return f64::INFINITY;
    }
    bins.saturating_sub(1) as f64 * (1.0 / n_expected + 1.0 / n_actual)
}

/// Bin counts of a categorical field in one split: train's top values by
/// hash, the other values, and the missing rows.
fn categorical_bins(top: &[u64], d: &FieldDetail, f: &FieldStats, rows: u64) -> Vec<f64> {
    let counts: HashMap<u64, u64> = d.counts.iter().copied().collect();
    let mut bins: Vec<f64> = top
        .iter()
        .map(|h| counts.get(h).copied().unwrap_or(0) as f64)
        .collect();
    let present = rows.saturating_sub(f.missing) as f64;
    bins.push((present - bins.iter().sum::<f64>()).max(0.0));
    bins.push(f.missing as f64);
    bins
}

/// Bin counts of a numeric sample over `edges` (inner quantile edges), plus
/// the missing rows scaled to the sample's size.
fn numeric_bins(edges: &[f64], sample: &[f64], missing_rate: f64) -> Vec<f64> {
    let mut bins = vec![0.0; edges.len() + 2];
    for &v in sample {
        let b = edges.partition_point(|&e| e < v);
        bins[b] += 1.0;
    }
    let n = sample.len() as f64;
    bins[edges.len() + 1] = if missing_rate < 1.0 {
        n * missing_rate / (1.0 - missing_rate)
    } else {
        1.0
    };
    bins
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

fn sorted(v: &[f64]) -> Vec<f64> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s
}

/// Build the report of `opts.data` into `opts.out`.
pub fn eda(opts: &EdaOptions) -> Result<EdaSummary> {
    let (stats, details) = collect_stats(&opts.data, opts.top_k, opts.progress)?;
    let manifest = crate::data::manifest::DatasetManifest::load(&opts.data)?;
    let time_column = manifest.schema.time_column().map(|c| c.name.clone());
    let train = &stats.splits[0];
    let balance = stats
        .splits
        .iter()
        .map(|s| Balance {
            split: s.split.to_string(),
            rows: s.rows,
            clicks: s.clicks,
            ctr: s.ctr,
        })
        .collect();

    let mut fields = Vec::new();
    for (i, f) in train.fields.iter().enumerate() {
        if f.kind == ColumnKind::Truth {
            continue;
        }
        let d = &details[0][i];
        let present = train.rows.saturating_sub(f.missing);
        let numeric = matches!(f.kind, ColumnKind::Integer | ColumnKind::Float);
        let s = sorted(&d.sample);
        let quantiles = (numeric && !s.is_empty()).then(|| Quantiles {
            min: f.numeric.as_ref().map_or(s[0], |n| n.min),
            p01: quantile(&s, 0.01),
            p25: quantile(&s, 0.25),
            median: quantile(&s, 0.5),
            p75: quantile(&s, 0.75),
            p99: quantile(&s, 0.99),
            max: f.numeric.as_ref().map_or(s[s.len() - 1], |n| n.max),
            mean: f.numeric.as_ref().map_or(f64::NAN, |n| n.mean),
        });
        // Drift: categorical fields over train's top values, numeric ones
        // over train's quantiles; the time column drifts by construction.
        let is_time = f.kind == ColumnKind::Timestamp || Some(&f.name) == time_column.as_ref();
        let bins_of = |split: usize| -> Option<Vec<f64>> {
            let (st, dt) = (&stats.splits[split], &details[split][i]);
            let fs = &st.fields[i];
            if is_time {
                None
            } else if f.kind == ColumnKind::Categorical {
                let top: Vec<u64> = d.counts.iter().take(PSI_TOP_VALUES).map(|c| c.0).collect();
                Some(categorical_bins(&top, dt, fs, st.rows))
            } else if numeric {
                let mut edges: Vec<f64> = (1..PSI_QUANTILES)
                    .map(|k| quantile(&s, k as f64 / PSI_QUANTILES as f64))
                    .collect();
                edges.dedup();
                Some(numeric_bins(&edges, &dt.sample, fs.missing_rate))
            } else {
                None
            }
        };
        let base = bins_of(0);
        // (PSI, its noise level) of one split against train.
        let drift = |split: usize| match (&base, bins_of(split)) {
            (Some(e), Some(a)) if stats.splits[split].rows > 0 => {
                let used = e
                    .iter()
                    .zip(&a)
                    .filter(|(x, y)| **x > 0.0 || **y > 0.0)
                    .count();
                let noise = psi_noise(used, e.iter().sum(), a.iter().sum());
                (Some(psi(e, &a)), Some(noise))
            }
            _ => (None, None),
        };
        let ((psi_valid, psi_valid_noise), (psi_test, psi_test_noise)) = (drift(1), drift(2));
        let exact = f.top_exact;
        fields.push(FieldSection {
            name: f.name.clone(),
            kind: format!("{:?}", f.kind).to_lowercase(),
            distinct: f.distinct,
            distinct_exact: f.distinct_exact,
            missing_rate: f.missing_rate,
            top1_share: d
                .counts
                .first()
                .filter(|_| present > 0)
                .map(|c| c.1 as f64 / present as f64),
            singletons: (exact && !d.counts.is_empty())
                .then(|| d.counts.iter().filter(|c| c.1 == 1).count() as u64),
            top: f.top.clone(),
            quantiles,
            psi_valid,
            psi_test,
            psi_valid_noise,
            psi_test_noise,
        });
    }
    let time = stats
        .splits
        .iter()
        .filter_map(|s| {
            Some(TimeProfile {
                split: s.split.to_string(),
                by_hour: s.ctr_by_hour.clone()?,
                by_weekday: s.ctr_by_weekday.clone()?,
            })
        })
        .collect();
    let summary = EdaSummary {
        dataset: stats.dataset.clone(),
        data: opts.data.clone(),
        label: stats.label.clone(),
        created: now_rfc3339(),
        balance,
        fields,
        time,
        figures: Vec::new(),
    };
    build_dir_atomically(&opts.out, |dir| draw(dir, summary, &stats, &details))
}

/// Figures, `eda.json` and `eda.html` into `dir`.
fn draw(
    dir: &Path,
    mut s: EdaSummary,
    stats: &crate::data::stats::DatasetStats,
    details: &[Vec<FieldDetail>],
) -> Result<EdaSummary> {
    let mut figures: Vec<(String, String, String)> = Vec::new();
    let train = &stats.splits[0];

    // Class balance.
    let items: Vec<(String, f64)> = s
        .balance
        .iter()
        .map(|b| (format!("{} ({} rows)", b.split, group(b.rows)), b.ctr))
        .collect();
    plots::bars(
        &dir.join("balance.png"),
        "Click rate by split",
        "CTR",
        &items,
    )?;
    figures.push((
        "balance.png".into(),
        "Class balance".into(),
        "The share of clicked rows in each split.".into(),
    ));

    // Long tails: rank against count, log-log, train split.
    let tails: Vec<(usize, &FieldStats)> = train
        .fields
        .iter()
        .enumerate()
        .filter(|(i, f)| {
            matches!(f.kind, ColumnKind::Categorical | ColumnKind::Integer)
                && details[0][*i].counts.len() > 1
        })
        .collect();
    for (c, chunk) in tails.chunks(TAIL_FIELDS_PER_CHART).enumerate() {
        let series: Vec<Series> = chunk
            .iter()
            .map(|(i, f)| {
                let counts = &details[0][*i].counts;
                // Every rank up to 100, then about 200 points per decade.
                let mut points = Vec::new();
                let mut r = 1usize;
                while r <= counts.len() {
                    points.push(((r as f64).log10(), (counts[r - 1].1 as f64).log10()));
                    r = if r < 100 {
                        r + 1
                    } else {
                        (r as f64 * 1.0116).ceil() as usize
                    };
                }
                Series {
                    name: format!("{} ({} values)", f.name, group(f.distinct)),
                    points,
                }
            })
            .collect();
        let x_max = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .fold(1.0f64, f64::max);
        let y_max = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .fold(1.0f64, f64::max);
        let file = format!("long_tail_{}.png", c + 1);
        LineChart {
            title: "Value frequencies in train: rank against count (log-log)",
            x_label: "log10 rank of the value",
            y_label: "log10 rows with the value",
            // Room on the right for the legend, where the lines end.
            x: (0.0, x_max * 1.4),
            y: (0.0, y_max * 1.05),
            diagonal: None,
            markers: false,
            integer_x: false,
        }
        .draw(&dir.join(&file), &series)?;
        let names: Vec<&str> = chunk.iter().map(|(_, f)| f.name.as_str()).collect();
        let pruned: Vec<&str> = chunk
            .iter()
            .filter(|(_, f)| !f.top_exact)
            .map(|(_, f)| f.name.as_str())
            .collect();
        let mut caption =
            "A straight line is a power law (Zipf); a steep drop at the right means most \
                           values are rare, which the vocabulary's min_count sends to the \
                           out-of-vocabulary row."
                .to_string();
        if !pruned.is_empty() {
            caption += &format!(
                " The counter keeps the heavy hitters in bounded memory, so the rarest values of {} \
                 are not drawn.",
                pruned.join(", ")
            );
        }
        figures.push((file, format!("Long tail: {}", names.join(", ")), caption));
    }

    // Numeric distributions: train, valid and test samples on shared bins.
    for (i, f) in train.fields.iter().enumerate() {
        if !matches!(f.kind, ColumnKind::Integer | ColumnKind::Float)
            || details[0][i].sample.is_empty()
        {
            continue;
        }
        let t = sorted(&details[0][i].sample);
        let (lo, hi, med) = (quantile(&t, 0.005), quantile(&t, 0.995), quantile(&t, 0.5));
        // Heavy right tails of counts (Criteo's integers) read better on a log scale.
        let log = lo >= 0.0 && hi > 20.0 * (med.abs() + 1.0);
        let tf = |v: f64| if log { (1.0 + v.max(0.0)).log10() } else { v };
        let (a, b) = (tf(lo), tf(hi));
        let series: Vec<(String, Vec<f64>)> = stats
            .splits
            .iter()
            .zip(details)
            .filter(|(_, d)| !d[i].sample.is_empty())
            .map(|(sp, d)| {
                (
                    sp.split.to_string(),
                    d[i].sample.iter().map(|&v| tf(v)).collect(),
                )
            })
            .collect();
        let file = format!("numeric_{}.png", html::file_safe(&f.name));
        let label = if log {
            format!("log10(1 + {})", f.name)
        } else {
            f.name.clone()
        };
        plots::histograms(
            &dir.join(&file),
            &format!("Distribution of {}", f.name),
            &label,
            (a, if b > a { b } else { a + 1.0 }),
            &series,
        )?;
        figures.push((
            file,
            format!("Distribution of {}", f.name),
            format!(
                "Share of each split's non-missing values per bin, between train's 0.5% and 99.5% quantiles{}.",
                if log { ", on a log scale" } else { "" }
            ),
        ));
    }

    // CTR by hour and weekday, per split.
    if !s.time.is_empty() {
        for (what, file, n, names) in [
            ("hour of day (UTC)", "ctr_by_hour.png", 24usize, None),
            (
                "weekday (UTC)",
                "ctr_by_weekday.png",
                7,
                Some(["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]),
            ),
        ] {
            let series: Vec<Series> = s
                .time
                .iter()
                .map(|t| {
                    let b = if n == 24 { &t.by_hour } else { &t.by_weekday };
                    Series {
                        name: t.split.clone(),
                        points: b
                            .iter()
                            .filter(|b| b.rows > 0)
                            .map(|b| (b.key as f64, b.ctr))
                            .collect(),
                    }
                })
                .collect();
            let top = series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.1))
                .fold(0.0f64, f64::max);
            LineChart {
                title: &format!("CTR by {what}"),
                x_label: if names.is_some() {
                    "weekday (0 = Monday)"
                } else {
                    "hour of day"
                },
                y_label: "CTR",
                x: (0.0, (n - 1) as f64),
                y: (0.0, top * 1.15 + 1e-6),
                diagonal: None,
                markers: true,
                integer_x: true,
            }
            .draw(&dir.join(file), &series)?;
            figures.push((
                file.into(),
                format!("CTR by {what}"),
                "Observed click rate per split; a split with no rows at some hour or day has no point there."
                    .into(),
            ));
        }
    }

    // Drift.
    let mut drift: Vec<(String, f64)> = s
        .fields
        .iter()
        .filter_map(|f| {
            let worst = f
                .psi_valid
                .into_iter()
                .chain(f.psi_test)
                .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))?;
            Some((f.name.clone(), worst))
        })
        .collect();
    if !drift.is_empty() {
        drift.sort_by(|a, b| b.1.total_cmp(&a.1));
        plots::bars(
            &dir.join("drift.png"),
            "Drift from train: the larger PSI of valid and test",
            "population stability index",
            &drift,
        )?;
        figures.push((
            "drift.png".into(),
            "Drift per field".into(),
            format!(
                "PSI of valid and of test against train over train's {PSI_TOP_VALUES} most frequent values \
                 (categorical) or deciles (numeric), plus the rest and the missing rows. Above {PSI_MODERATE} \
                 is usually read as a moderate shift, above {PSI_MAJOR} as a major one."
            ),
        ));
    }

    s.figures = figures.iter().map(|f| f.0.clone()).collect();
    write_json(&dir.join("eda.json"), &s)?;
    let page = render_html(dir, &s, &figures)?;
    crate::data::io::atomic_write(&dir.join("eda.html"), page.as_bytes())?;
    Ok(s)
}

fn render_html(dir: &Path, s: &EdaSummary, figures: &[(String, String, String)]) -> Result<String> {
    let opt = |x: Option<f64>, d: usize| x.map_or("-".to_string(), |v| format!("{v:.d$}"));
    let figure = |file: &str| -> Result<String> {
        match figures.iter().find(|f| f.0 == file) {
            Some((f, t, c)) => html::figure(dir, f, t, c),
            None => Ok(String::new()),
        }
    };
    let mut h = html::head(&format!("ctr-dl eda: {}", s.dataset));
    let _ = writeln!(
        h,
        "<h1>Exploratory data report</h1>\n<p class=\"meta\">Dataset <b>{}</b> at <code>{}</code>, label <code>{}</code>. Generated {} by ctr-dl {}.</p>",
        html::escape(&s.dataset),
        html::escape(&s.data.display().to_string()),
        html::escape(&s.label),
        s.created,
        env!("CARGO_PKG_VERSION")
    );

    h += "<h2>Class balance</h2>\n<table><tr><th>split</th><th>rows</th><th>clicks</th><th>CTR</th><th>rows per click</th></tr>\n";
    for b in &s.balance {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.5}</td><td>{}</td></tr>",
            b.split,
            group(b.rows),
            group(b.clicks),
            b.ctr,
            if b.clicks > 0 {
                format!("{:.1}", b.rows as f64 / b.clicks as f64)
            } else {
                "-".into()
            }
        );
    }
    h += "</table>\n";
    h += &figure("balance.png")?;

    h += "<h2>Fields</h2>\n<table><tr><th>field</th><th>type</th><th>distinct</th><th>missing</th><th>top value share</th><th>seen once</th><th>PSI valid</th><th>PSI test</th><th>PSI noise</th></tr>\n";
    for f in &s.fields {
        let _ = writeln!(
            h,
            "<tr{}><td>{}</td><td>{}</td><td>{}{}</td><td>{:.2}%</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if f.drifted() { " class=\"warn\"" } else { "" },
            html::escape(&f.name),
            f.kind,
            if f.distinct_exact { "" } else { "~" },
            group(f.distinct),
            100.0 * f.missing_rate,
            f.top1_share.map_or("-".into(), |v| format!("{:.2}%", 100.0 * v)),
            f.singletons.map_or("-".into(), group),
            opt(f.psi_valid, 4),
            opt(f.psi_test, 4),
            opt(
                f.psi_valid_noise
                    .into_iter()
                    .chain(f.psi_test_noise)
                    .reduce(f64::max),
                4
            ),
        );
    }
    h += "</table>\n<p class=\"meta\">Train split. ~: a HyperLogLog estimate. Seen once: values with a single train row (shown where the counts are exact). PSI noise: the larger PSI that valid or test would show by sampling alone. Shaded: drifted, a PSI above 0.1 and above three times its noise.</p>\n";

    h += "<h2>Long tails</h2>\n";
    for (file, _, _) in figures.iter().filter(|f| f.0.starts_with("long_tail_")) {
        h += &figure(file)?;
    }

    h += "<h2>Top values and their click rates</h2>\n<p class=\"meta\">Train split; the interval is the 95% Wilson score interval of the CTR.</p>\n<div class=\"pair\">\n";
    for f in s.fields.iter().filter(|f| !f.top.is_empty()) {
        let _ = writeln!(
            h,
            "<table><caption>{}</caption><tr><th>value</th><th>rows</th><th>CTR</th><th>95% interval</th></tr>",
            html::escape(&f.name)
        );
        for t in &f.top {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{:.4}</td><td>{:.4} - {:.4}</td></tr>",
                html::escape(&t.value),
                group(t.count),
                t.ctr,
                t.ctr_low,
                t.ctr_high
            );
        }
        h += "</table>\n";
    }
    h += "</div>\n";

    if s.fields.iter().any(|f| f.quantiles.is_some()) {
        h += "<h2>Numeric fields</h2>\n<table><tr><th>field</th><th>type</th><th>min</th><th>1%</th><th>25%</th><th>median</th><th>75%</th><th>99%</th><th>max</th><th>mean</th></tr>\n";
        for f in &s.fields {
            if let Some(q) = &f.quantiles {
                let _ = writeln!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.4}</td></tr>",
                    html::escape(&f.name),
                    f.kind,
                    q.min,
                    q.p01,
                    q.p25,
                    q.median,
                    q.p75,
                    q.p99,
                    q.max,
                    q.mean
                );
            }
        }
        h += "</table>\n<p class=\"meta\">Quantiles from an evenly spaced sample of at most 20,000 train values; min, max and mean from all of them.</p>\n";
        for (file, _, _) in figures.iter().filter(|f| f.0.starts_with("numeric_")) {
            h += &figure(file)?;
        }
    }

    if !s.time.is_empty() {
        h += "<h2>Click rate over time</h2>\n";
        h += &figure("ctr_by_hour.png")?;
        h += &figure("ctr_by_weekday.png")?;
    }
    h += "<h2>Drift between splits</h2>\n";
    h += &figure("drift.png")?;
    h += "</body></html>\n";
    Ok(h)
}

/// A few lines for the terminal.
pub fn render_summary(s: &EdaSummary, out: &Path) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "eda of {}:", s.dataset);
    for b in &s.balance {
        let _ = writeln!(
            t,
            "  {:<5} {:>12} rows  {:>10} clicks  CTR {:.5}",
            b.split,
            group(b.rows),
            group(b.clicks),
            b.ctr
        );
    }
    let mut by_distinct: Vec<&FieldSection> =
        s.fields.iter().filter(|f| f.kind != "timestamp").collect();
    by_distinct.sort_by_key(|f| std::cmp::Reverse(f.distinct));
    let _ = writeln!(
        t,
        "  {} fields; most distinct values: {}",
        s.fields.len(),
        by_distinct
            .iter()
            .take(3)
            .map(|f| format!("{} {}", f.name, group(f.distinct)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let missing: Vec<String> = s
        .fields
        .iter()
        .filter(|f| f.missing_rate > 0.0)
        .map(|f| format!("{} {:.1}%", f.name, 100.0 * f.missing_rate))
        .collect();
    let _ = writeln!(t, "  missing values: {}", super::list_or_none(&missing));
    let drift: Vec<String> = s
        .fields
        .iter()
        .filter(|f| f.drifted())
        .map(|f| {
            format!(
                "{} (valid {}, test {})",
                f.name,
                f.psi_valid.map_or("-".into(), |v| format!("{v:.3}")),
                f.psi_test.map_or("-".into(), |v| format!("{v:.3}"))
            )
        })
        .collect();
    let _ = writeln!(
        t,
        "  drift from train (PSI > {PSI_MODERATE} and > 3x its sampling noise): {}",
        super::list_or_none(&drift)
    );
    let _ = writeln!(
        t,
        "wrote {} ({} figures)",
        out.join("eda.html").display(),
        s.figures.len()
    );
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psi_is_zero_for_equal_shares_and_matches_a_hand_computation() {
        assert!(psi(&[10.0, 30.0, 60.0], &[1.0, 3.0, 6.0]).abs() < 1e-12);
        // Shares (0.5, 0.5) against (0.25, 0.75).
        let want = (0.25f64 - 0.5) * (0.25f64 / 0.5).ln() + (0.75f64 - 0.5) * (0.75f64 / 0.5).ln();
        assert!((psi(&[5.0, 5.0], &[1.0, 3.0]) - want).abs() < 1e-12);
        // An empty bin is floored, not infinite.
        assert!(psi(&[1.0, 1.0], &[0.0, 2.0]).is_finite());
    }

    #[test]
    fn psi_noise_is_the_mean_psi_of_two_samples_of_one_distribution() {
        // Two samples of 2,000 rows from ten equally likely values, many times.
        let mut rng = crate::rng::Rng::new(7);
        let trials = 400;
        let mean: f64 = (0..trials)
            .map(|_| {
                let mut a = [0.0; 10];
                let mut b = [0.0; 10];
                for _ in 0..2000 {
                    a[rng.below(10) as usize] += 1.0;
                    b[rng.below(10) as usize] += 1.0;
                }
                psi(&a, &b)
            })
            .sum::<f64>()
            / trials as f64;
        let want = psi_noise(10, 2000.0, 2000.0);
        assert!((mean / want - 1.0).abs() < 0.1, "mean {mean}, noise {want}");
    }

    #[test]
    fn numeric_bins_put_values_between_edges_and_scale_the_missing() {
        let b = numeric_bins(&[1.0, 2.0], &[0.5, 1.0, 1.5, 2.5, 3.0], 0.5);
        // (-inf, 1], (1, 2], (2, inf), then missing: 5 present rows at a
        // missing rate of one half stand for 5 missing ones.
        assert_eq!(b, vec![2.0, 1.0, 2.0, 5.0]);
    }
}
