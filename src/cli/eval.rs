//! The evaluation commands: `eval`, `compare`, `report` and `features` (the
//! field importance of a run).
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::data::stats::group;
use crate::data::writer::Split;
use crate::eval::compare::{compare, eval_run, render as render_runs};

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// A run directory; repeat for several runs (all on the same split).
    #[arg(long = "run", required = true)]
    pub runs: Vec<PathBuf>,
    /// The report directory (report.html, report.json, PNG figures); replaced if it exists.
    #[arg(long)]
    pub out: PathBuf,
    /// The split scored: train, valid or test.
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Confusion-matrix threshold [default: the split's observed CTR].
    #[arg(long)]
    pub threshold: Option<f64>,
    /// Fit a post-hoc calibrator on valid, save it with each run (calibration.json, used by export) and show both.
    #[arg(long, value_enum)]
    pub calibrate: Option<crate::eval::calibrate::Method>,
    /// Rows of the split that permutation importance shuffles.
    #[arg(long, default_value_t = 50_000)]
    pub permutation_rows: usize,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A run directory (runs/<run>).
    #[arg(long)]
    pub run: PathBuf,
    /// The split scored: train, valid or test.
    #[arg(long, default_value = "test")]
    pub split: String,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Print the JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Run directories, or folders of runs.
    #[arg(default_values_os_t = [PathBuf::from("runs")])]
    pub runs: Vec<PathBuf>,
    /// Sort by: test_auc, test_logloss, valid_auc or run.
    #[arg(long, default_value = "test_auc")]
    pub sort: String,
    /// Print the table as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct FeaturesArgs {
    /// A finished run (runs/<run>); writes runs/<run>/field_importance.json.
    #[arg(long)]
    pub run: PathBuf,
    /// The split scored (valid: choosing inputs on test would leak).
    #[arg(long, default_value = "valid")]
    pub split: String,
    /// Rows of the split used.
    #[arg(long, default_value_t = 50_000)]
    pub rows: usize,
    /// Shuffles per input, for the spread of its importance.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Seed of the shuffles.
    #[arg(long, default_value_t = 2018)]
    pub seed: u64,
    /// Print field_importance.json to stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

pub(super) fn run_report(a: ReportArgs) -> Result<()> {
    let opts = crate::eval::report::ReportOptions {
        split: Split::parse(&a.split)?,
        threshold: a.threshold,
        calibrate: a.calibrate,
        permutation_rows: a.permutation_rows,
        ..crate::eval::report::ReportOptions::new(a.runs.clone(), &a.out)
    };
    let r = crate::eval::report::report(&opts).context("building the report")?;
    println!(
        "{} split: {} rows, CTR {:.5}",
        r.split,
        r.rows,
        r.positives as f64 / r.rows.max(1) as f64
    );
    for run in &r.runs {
        let m = &run.metrics;
        println!(
            "  {:<40} {:<10} AUC {}  logloss {:.5}  ECE {:.5}  top field {}",
            run.run,
            run.model,
            m.auc.map_or("-".into(), |v| format!("{v:.5}")),
            m.logloss,
            m.ece,
            run.permutation_importance
                .first()
                .map_or("-".into(), |(f, d)| format!("{f} (AUC -{d:.4})"))
        );
        if let Some(c) = &run.calibration {
            println!(
                "  {:<40} {:<10} logloss {:.5}  ECE {:.5} after {} calibration",
                "", "", c.metrics.logloss, c.metrics.ece, c.method
            );
        }
    }
    println!(
        "wrote {} ({} figures)",
        a.out.join("report.html").display(),
        r.figures.len()
    );
    Ok(())
}

pub(super) fn run_eval(a: EvalArgs) -> Result<()> {
    let split = Split::parse(&a.split)?;
    let device = crate::device::resolve_device(&a.device).map_err(anyhow::Error::msg)?;
    let r = eval_run(&a.run, split, device)
        .with_context(|| format!("evaluating {}", a.run.display()))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    let m = &r.metrics;
    let f = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.6}"));
    println!(
        "run {} on {} ({} rows, {} positives)",
        r.run,
        r.split,
        group(m.count),
        group(m.positives)
    );
    println!("  ROC-AUC            {}", f(m.auc));
    println!("  logloss            {:.6}", m.logloss);
    println!("  PR-AUC             {}", f(m.pr_auc));
    println!("  normalized entropy {}", f(m.ne));
    println!("  predicted CTR      {:.6}", m.pred_ctr);
    println!("  observed CTR       {:.6}", m.obs_ctr);
    println!("  predicted/observed {}", f(m.calibration_ratio));
    println!("  ECE (10 bins)      {:.6}", m.ece);
    println!(
        "  calibration bins:  {:>11} {:>10} {:>10}",
        "rows", "predicted", "observed"
    );
    for b in &r.calibration.bins {
        println!(
            "    ({:.1}, {:.1}]    {:>11} {:>10.5} {:>10.5}",
            b.lower,
            b.upper,
            group(b.count),
            b.mean_pred,
            b.obs_rate
        );
    }
    println!(
        "wrote {}",
        a.run.join(format!("eval-{}.json", r.split)).display()
    );
    Ok(())
}

pub(super) fn run_compare(a: CompareArgs) -> Result<()> {
    let mut rows = compare(&a.runs)?;
    let key = |x: Option<f64>| x.unwrap_or(f64::NEG_INFINITY);
    match a.sort.as_str() {
        "test_auc" => rows.sort_by(|a, b| key(b.test_auc).total_cmp(&key(a.test_auc))),
        "valid_auc" => rows.sort_by(|a, b| key(b.valid_auc).total_cmp(&key(a.valid_auc))),
        "test_logloss" => rows.sort_by(|a, b| {
            a.test_logloss
                .unwrap_or(f64::INFINITY)
                .total_cmp(&b.test_logloss.unwrap_or(f64::INFINITY))
        }),
        "run" => rows.sort_by(|a, b| a.run.cmp(&b.run)),
        other => bail!("--sort {other}: expected test_auc, test_logloss, valid_auc or run"),
    }
    crate::eval::compare::group_by_data(&mut rows);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", render_runs(&rows));
    }
    Ok(())
}

pub(super) fn run_features(a: FeaturesArgs) -> Result<()> {
    use crate::eval::fields::{field_report, render, FieldOptions};
    let r = field_report(&FieldOptions {
        run: a.run.clone(),
        split: Split::parse(&a.split)?,
        rows: a.rows,
        repeats: a.repeats,
        seed: a.seed,
    })?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print!("{}", render(&r, &a.run));
    }
    Ok(())
}
