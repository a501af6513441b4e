//! Command-line interface: raw arguments are parsed by clap, turned into the
//! library's option structs here, and the results printed. Nothing else lives
//! here: every command is a library call.
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::data::convert::{convert, ConvertOptions};
use crate::data::manifest::DatasetManifest;
use crate::data::schema::DatasetSchema;
use crate::data::simulate::{simulate, SimConfig, SimFormat, SimulateOptions};
use crate::data::sketch::ColumnSummary;
use crate::data::split::SplitMode;
use crate::data::stats::{dataset_stats, group, render};
use crate::data::writer::{Split, WriterOptions};
use crate::eval::metrics::Metrics;
use crate::progress::human_bytes;
use crate::train::compare::{compare, eval_run, render as render_runs};
use crate::train::{resume, train, ExperimentConfig, TrainOptions};

#[derive(Parser, Debug)]
#[command(
    name = "ctr-dl",
    version,
    about = "Click-through-rate prediction: data, models, evaluation, serving"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Convert click logs (Criteo, Criteo 1TB, Avazu, any CSV/TSV) to Parquet shards.
    Convert(ConvertArgs),
    /// Generate ad impressions with a known click probability.
    Simulate(SimulateArgs),
    /// Per-split statistics of a dataset: rows, CTR, per-field distinct, missing, top values.
    Stats(StatsArgs),
    /// An HTML report of a dataset: class balance, fields, long tails, top values, numeric distributions, CTR over time, drift.
    Eda(EdaArgs),
    /// Fit the feature map of an experiment on train and encode all splits (cached).
    Preprocess(PreprocessArgs),
    /// Train a model: `ctr-dl train --config experiments/deepfm.toml`.
    Train(TrainArgs),
    /// Train a baseline on the same splits: LightGBM (experiments/lightgbm.toml) or LR (experiments/lr.toml).
    Baseline(BaselineArgs),
    /// Metrics of a run's best weights on a split (AUC, logloss, PR-AUC, NE, calibration).
    Eval(EvalArgs),
    /// Rank a run's inputs by permutation importance, find redundant ones, name candidates to drop.
    Features(FeaturesArgs),
    /// A table of runs: model, settings, valid and test AUC and logloss, time.
    Compare(CompareArgs),
    /// An HTML report of runs on one split: metrics, ROC/PR, calibration, importance, confusion, scores.
    Report(ReportArgs),
    /// Export a run's best weights as a TorchScript bundle (model.pt, features.json, metadata.json).
    Export(ExportArgs),
    /// Serve model bundles over HTTP: /predict_ctr, /batch_predict, /health, /model_info, /metrics.
    Serve(ServeArgs),
    /// Show the libtorch this binary runs on, its threads and CUDA devices.
    Env,
}

#[derive(Args, Debug)]
pub struct ExperimentArgs {
    /// Experiment TOML (experiments/*.toml).
    #[arg(long)]
    pub config: PathBuf,
    /// Override a config value: --set train.lr=1e-4 --set model.mlp=[200,200].
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    pub set: Vec<String>,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct PreprocessArgs {
    #[command(flatten)]
    pub experiment: ExperimentArgs,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Experiment TOML; not needed with --resume.
    #[arg(long, required_unless_present = "resume")]
    pub config: Option<PathBuf>,
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    pub set: Vec<String>,
    /// Run name (default: the experiment name and the UTC time).
    #[arg(long)]
    pub run: Option<String>,
    /// Continue an interrupted run from its last checkpoint: runs/<run>.
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["config", "run"])]
    pub resume: Option<PathBuf>,
    /// Print only the final summary.
    #[arg(long)]
    pub quiet: bool,
    /// Stop after this many steps, as if interrupted (for trying --resume).
    #[arg(long, hide = true)]
    pub stop_after_steps: Option<u64>,
}

#[derive(Args, Debug)]
pub struct BaselineArgs {
    /// Experiment TOML with a `[lightgbm]` section, or `[model] kind = "lr"`.
    #[arg(long)]
    pub config: PathBuf,
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    pub set: Vec<String>,
    /// Run name (default: the experiment name and the UTC time).
    #[arg(long)]
    pub run: Option<String>,
    /// Print only the final summary.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// A run directory; repeat for several runs (all on the same split).
    #[arg(long = "run", required = true)]
    pub runs: Vec<PathBuf>,
    /// The report directory (report.html, report.json, PNG figures); replaced if it exists.
    #[arg(long)]
    pub out: PathBuf,
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
pub struct ExportArgs {
    /// A run directory (runs/<run>).
    #[arg(long)]
    pub run: PathBuf,
    /// The bundle directory [default: <models>/<experiment name>/<next version>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Where bundles live when --out is not given.
    #[arg(long, default_value = "models")]
    pub models: PathBuf,
    /// Test rows the exported module is checked on (batch N; batch 1 too).
    #[arg(long, default_value_t = 1000)]
    pub check_rows: usize,
    /// Replace an existing bundle directory.
    #[arg(long)]
    pub overwrite: bool,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// A serve TOML (configs/serve.toml); flags override its values.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The folder of bundles [default: models].
    #[arg(long)]
    pub models: Option<PathBuf>,
    /// [default: 127.0.0.1]
    #[arg(long)]
    pub address: Option<String>,
    /// [default: 8000]
    #[arg(long)]
    pub port: Option<u16>,
    /// cpu, cuda, cuda:N or auto [default: cpu].
    #[arg(long)]
    pub device: Option<String>,
    /// Inference threads [default: one per core].
    #[arg(long)]
    pub workers: Option<usize>,
    /// Load every version of each model, not only the latest.
    #[arg(long)]
    pub all_versions: bool,
    /// Prediction log: a SQLite file, postgres://user@host:port/db, or off
    /// [default: logs/predictions.sqlite].
    #[arg(long)]
    pub predlog: Option<String>,
    /// Where models with history inputs keep their counters [default: history].
    #[arg(long)]
    pub history_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Run directories, or folders of runs (default: runs).
    #[arg(default_values_os_t = [PathBuf::from("runs")])]
    pub runs: Vec<PathBuf>,
    /// Sort by: test_auc (default), test_logloss, valid_auc, run.
    #[arg(long, default_value = "test_auc")]
    pub sort: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum InputFormat {
    /// Criteo Kaggle train.txt: TSV `label I1..I13 C1..C26`.
    Criteo,
    /// Criteo 1TB day files (same layout, often .gz).
    #[value(name = "criteo-1tb")]
    Criteo1tb,
    /// Avazu train.csv (header; `hour` is YYMMDDHH).
    Avazu,
    /// Any CSV/TSV described by --schema.
    Csv,
}

#[derive(Args, Debug, Clone)]
pub struct SplitArgs {
    /// How rows go to train/valid/test.
    #[arg(long, value_enum, default_value = "random")]
    pub split: SplitMode,
    /// Seed of the random split (and of the simulator).
    #[arg(long, default_value_t = 2018)]
    pub seed: u64,
    /// Train, valid, test fractions.
    #[arg(long, value_delimiter = ',', num_args = 3, default_values_t = [0.8, 0.1, 0.1])]
    pub ratios: Vec<f64>,
    /// Rows per Parquet shard.
    #[arg(long, default_value_t = 1_000_000)]
    pub shard_rows: usize,
    /// Rows per Parquet row group (the unit the shard reader shuffles).
    #[arg(long, default_value_t = 65_536)]
    pub row_group_rows: usize,
    /// Replace a dataset already in --out.
    #[arg(long)]
    pub overwrite: bool,
    /// No progress bar even on a terminal.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct ConvertArgs {
    #[arg(long, value_enum)]
    pub format: InputFormat,
    /// Input files, plain or gzip; read in the order given.
    #[arg(long, num_args = 1.., required = true)]
    pub input: Vec<PathBuf>,
    /// Output dataset directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Dataset schema TOML (required for --format csv; overrides the built-in one otherwise).
    #[arg(long)]
    pub schema: Option<PathBuf>,
    /// Skip malformed lines (counted in the summary) instead of stopping at the first.
    #[arg(long)]
    pub skip_bad_lines: bool,
    /// With --skip-bad-lines: fail if more than this fraction of lines is bad.
    #[arg(long, default_value_t = 0.001)]
    pub max_bad_ratio: f64,
    /// Parser threads (default: the number of cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// The longest input line accepted, in bytes: a longer one is an error
    /// naming its line (the default, 1 MiB, is thousands of Criteo or Avazu lines).
    #[arg(long, default_value_t = crate::data::convert::DEFAULT_MAX_LINE_BYTES)]
    pub max_line_bytes: usize,
    /// Accept an input without rows (an empty file, a header alone) and a
    /// dataset of 0 rows, instead of failing.
    #[arg(long)]
    pub allow_empty: bool,
    #[command(flatten)]
    pub split: SplitArgs,
}

#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// Impressions to generate.
    #[arg(long)]
    pub rows: u64,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Simulator config (default: the built-in configs/datasets/synthetic.toml values).
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "parquet")]
    pub format: SimFormat,
    #[command(flatten)]
    pub split: SplitArgs,
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
    #[arg(long, default_value_t = 2018)]
    pub seed: u64,
    /// Print field_importance.json to stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct EdaArgs {
    /// A dataset directory (with dataset.json).
    pub data: PathBuf,
    /// The report directory (eda.html, eda.json, the figures); replaced as a whole.
    #[arg(long)]
    pub out: PathBuf,
    /// Top values listed per field.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// A dataset directory (with dataset.json).
    pub dir: PathBuf,
    /// Top values shown per field.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    /// Print stats.json to stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    #[arg(long)]
    pub quiet: bool,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Convert(a) => run_convert(a),
        Command::Simulate(a) => run_simulate(a),
        Command::Stats(a) => run_stats(a),
        Command::Eda(a) => run_eda(a),
        Command::Preprocess(a) => run_preprocess(a),
        Command::Train(a) => run_train(a),
        Command::Baseline(a) => run_baseline(a),
        Command::Eval(a) => run_eval(a),
        Command::Features(a) => run_features(a),
        Command::Compare(a) => run_compare(a),
        Command::Report(a) => run_report(a),
        Command::Export(a) => run_export(a),
        Command::Serve(a) => run_serve(a),
        Command::Env => run_env(),
    }
}

fn run_preprocess(a: PreprocessArgs) -> Result<()> {
    let e = &a.experiment;
    let (data, features) = if crate::gbdt::is_gbdt_experiment(&e.config)? {
        let c = crate::gbdt::GbdtExperiment::load(&e.config, &e.set)?;
        (c.data, c.features)
    } else {
        let c = ExperimentConfig::load(&e.config, &e.set)?;
        (c.data, c.features)
    };
    let ds = crate::features::prepare(&data.path, data.cache.as_deref(), &features, !e.quiet)
        .with_context(|| format!("preprocessing {}", data.path.display()))?;
    println!(
        "{} {} ({} categorical fields, {} embedding rows, {} dense inputs){}",
        if ds.reused { "reused" } else { "encoded" },
        ds.dir.display(),
        ds.meta.num_fields,
        group(ds.meta.vocab_size),
        ds.meta.num_dense,
        if ds.reused {
            String::new()
        } else {
            format!(" in {:.1}s", ds.meta.seconds)
        }
    );
    for s in Split::ALL {
        let i = ds.split(s);
        println!(
            "  {:<5} {:>12} rows  {} chunk(s)",
            s.name(),
            group(i.rows),
            i.chunks.len()
        );
    }
    print!("{}", ds.features.describe());
    Ok(())
}

fn run_train(a: TrainArgs) -> Result<()> {
    let opts = TrainOptions {
        run: a.run.clone(),
        progress: !a.quiet,
        quiet: a.quiet,
        stop_after_steps: a.stop_after_steps,
    };
    let report = match (&a.resume, &a.config) {
        (Some(dir), _) => {
            if !a.set.is_empty() {
                bail!("--set cannot change a run being resumed; its config.toml is what it was started with");
            }
            resume(dir, &opts).with_context(|| format!("resuming {}", dir.display()))?
        }
        (None, Some(path)) => train_experiment(path, &a.set, &opts, None)?,
        (None, None) => bail!("give --config EXPERIMENT.toml or --resume runs/RUN"),
    };
    print_summary(&report);
    Ok(())
}

fn run_baseline(a: BaselineArgs) -> Result<()> {
    let opts = TrainOptions {
        run: a.run.clone(),
        progress: !a.quiet,
        quiet: a.quiet,
        stop_after_steps: None,
    };
    let report = train_experiment(&a.config, &a.set, &opts, Some(crate::models::ModelKind::Lr))?;
    print_summary(&report);
    Ok(())
}

/// Train an experiment file: LightGBM when it has `[lightgbm]`, else a deep
/// model (of kind `only`, when given).
fn train_experiment(
    path: &Path,
    set: &[String],
    opts: &TrainOptions,
    only: Option<crate::models::ModelKind>,
) -> Result<crate::train::trainer::TrainReport> {
    let what = || format!("training {}", path.display());
    if crate::gbdt::is_gbdt_experiment(path)? {
        let cfg = crate::gbdt::GbdtExperiment::load(path, set)?;
        #[cfg(feature = "lightgbm")]
        return crate::gbdt::train_gbdt(&cfg, opts).with_context(what);
        #[cfg(not(feature = "lightgbm"))]
        return Err(
            anyhow::Error::new(crate::gbdt::not_built()).context(format!(
                "training {} ({})",
                path.display(),
                cfg.name
            )),
        );
    }
    let cfg = ExperimentConfig::load(path, set)?;
    if let Some(kind) = only {
        if cfg.model.kind != kind {
            bail!(
                "{}: `ctr-dl baseline` trains LightGBM (a [lightgbm] section) or logistic regression \
                 (model.kind = \"lr\"), not {}; train it with `ctr-dl train`",
                path.display(),
                cfg.model.kind.name()
            );
        }
    }
    train(&cfg, opts).with_context(what)
}

fn print_summary(report: &crate::train::trainer::TrainReport) {
    let m = &report.metrics;
    let t = &m.train;
    if !t.finished {
        println!(
            "stopped at step {} (as asked); continue with: ctr-dl train --resume {}",
            t.steps,
            report.run_dir.display()
        );
        return;
    }
    if m.model == crate::gbdt::LIGHTGBM {
        println!(
            "run {}: {} boosting rounds, {:.1}s{}",
            report.run,
            t.steps,
            t.seconds,
            if t.stopped_early {
                ", stopped early"
            } else {
                ""
            }
        );
    } else {
        println!(
        "run {}: {} steps ({} full epoch(s)), {:.1}s, {:.0} samples/s (waiting on data {:.1}%){}",
        report.run,
        t.steps,
        t.epochs,
        t.seconds,
        t.samples_per_sec,
        100.0 * t.data_wait_fraction,
        if t.stopped_early {
            ", stopped early"
        } else {
            ""
        }
    );
    }
    let line = |name: &str, x: &Option<Metrics>| {
        if let Some(x) = x {
            println!(
                "  {name:<5} AUC {}  logloss {:.5}  PR-AUC {}  NE {}  pred/obs CTR {}",
                x.auc.map_or("-".into(), |v| format!("{v:.5}")),
                x.logloss,
                x.pr_auc.map_or("-".into(), |v| format!("{v:.5}")),
                x.ne.map_or("-".into(), |v| format!("{v:.4}")),
                x.calibration_ratio
                    .map_or("-".into(), |v| format!("{v:.4}")),
            );
        }
    };
    if m.model == crate::gbdt::LIGHTGBM {
        println!("best at round {}:", m.best_step);
    } else {
        println!("best at step {} (epoch {}):", m.best_step, m.best_epoch);
    }
    line("valid", &m.valid);
    line("test", &m.test);
    if let Some(truth) = &m.truth {
        println!(
            "  truth: the true click probability has test logloss {:.5}; gap {:.5}",
            truth.test_logloss, truth.gap
        );
    }
    println!(
        "wrote {} and {}",
        report.run_dir.display(),
        report.checkpoint_dir.display()
    );
}

fn run_serve(a: ServeArgs) -> Result<()> {
    let mut c = match &a.config {
        Some(p) => crate::serve::ServeConfig::load(p)?,
        None => crate::serve::ServeConfig::default(),
    };
    if let Some(v) = a.models {
        c.models = v;
    }
    if let Some(v) = a.address {
        c.address = v;
    }
    if let Some(v) = a.port {
        c.port = v;
    }
    if let Some(v) = a.device {
        c.device = v;
    }
    if let Some(v) = a.workers {
        c.workers = v;
    }
    c.all_versions |= a.all_versions;
    if let Some(v) = a.predlog {
        c.predlog = v;
    }
    if let Some(v) = a.history_dir {
        c.history_dir = v;
    }
    crate::serve::serve(c)?;
    Ok(())
}

fn run_report(a: ReportArgs) -> Result<()> {
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

fn run_export(a: ExportArgs) -> Result<()> {
    let opts = crate::serve::ExportOptions {
        run: a.run.clone(),
        out: a.out,
        models_root: a.models,
        check_rows: a.check_rows,
        overwrite: a.overwrite,
    };
    let r =
        crate::serve::export(&opts).with_context(|| format!("exporting {}", a.run.display()))?;
    let m = &r.metadata;
    println!(
        "exported {} ({}, run {}) to {}",
        m.name,
        m.model,
        m.run,
        r.out.display()
    );
    println!(
        "  check: reloaded module vs trained model, max |diff| {:.1e} at batch 1, {:.1e} at batch {}",
        m.check.max_abs_diff_batch1, m.check.max_abs_diff_batch_n, m.check.rows
    );
    Ok(())
}

fn run_eval(a: EvalArgs) -> Result<()> {
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

fn run_compare(a: CompareArgs) -> Result<()> {
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
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", render_runs(&rows));
    }
    Ok(())
}

fn ratios(v: &[f64]) -> Result<[f64; 3]> {
    match v {
        [a, b, c] => Ok([*a, *b, *c]),
        _ => bail!("--ratios takes three numbers, e.g. 0.8,0.1,0.1"),
    }
}

fn writer_options(s: &SplitArgs) -> WriterOptions {
    WriterOptions {
        shard_rows: s.shard_rows,
        row_group_rows: s.row_group_rows,
    }
}

fn run_convert(a: ConvertArgs) -> Result<()> {
    let schema = match (&a.schema, a.format) {
        (Some(path), _) => DatasetSchema::load(path)?,
        (None, InputFormat::Csv) => bail!("--format csv needs --schema configs/datasets/NAME.toml"),
        (None, InputFormat::Criteo) => DatasetSchema::builtin("criteo")?,
        (None, InputFormat::Criteo1tb) => DatasetSchema::builtin("criteo-1tb")?,
        (None, InputFormat::Avazu) => DatasetSchema::builtin("avazu")?,
    };
    if !(0.0..=1.0).contains(&a.max_bad_ratio) {
        bail!("--max-bad-ratio must be in [0, 1], got {}", a.max_bad_ratio);
    }
    let mut opts = ConvertOptions::new(a.input.clone(), a.out.clone(), schema);
    opts.split = a.split.split;
    opts.seed = a.split.seed;
    opts.ratios = ratios(&a.split.ratios)?;
    opts.writer = writer_options(&a.split);
    opts.skip_bad_lines = a.skip_bad_lines;
    opts.max_bad_ratio = a.max_bad_ratio;
    opts.overwrite = a.split.overwrite;
    opts.progress = !a.split.quiet;
    opts.max_line_bytes = a.max_line_bytes;
    opts.allow_empty = a.allow_empty;
    if let Some(t) = a.threads {
        opts.threads = t.max(1);
    }
    let report = convert(&opts).with_context(|| format!("converting into {}", a.out.display()))?;
    let m = &report.manifest;
    println!(
        "converted {} lines ({}) into {} in {:.1}s: {:.0} rows/s, {}/s",
        group(m.rows + m.bad_lines.count),
        human_bytes(report.input_bytes),
        a.out.display(),
        report.seconds,
        m.rows as f64 / report.seconds.max(1e-9),
        human_bytes((report.input_bytes as f64 / report.seconds.max(1e-9)) as u64),
    );
    print_dataset_summary(m);
    Ok(())
}

/// Rows, CTR per split, bad lines, and the per-column table.
pub fn print_dataset_summary(m: &DatasetManifest) {
    println!(
        "rows {}  positives {}  positive rate {:.4}",
        group(m.rows),
        group(m.positives),
        m.positive_rate
    );
    for s in Split::ALL {
        let i = m.split(s);
        println!(
            "  {:<5} {:>12} rows  CTR {:.4}  {} shard(s)",
            s.name(),
            group(i.rows),
            i.positive_rate,
            i.shards.len()
        );
    }
    if m.bad_lines.count > 0 {
        println!("bad lines skipped: {}", group(m.bad_lines.count));
        for e in m.bad_lines.examples.iter().take(3) {
            println!("  {e}");
        }
    }
    print_columns(&m.columns);
}

fn print_columns(cols: &[ColumnSummary]) {
    let w = cols.iter().map(|c| c.name.len()).max().unwrap_or(6).max(6);
    println!("  {:<w$}  {:>8}  {:>12}", "column", "missing", "distinct");
    for c in cols {
        let d = format!(
            "{}{}",
            if c.distinct_exact { "" } else { "~" },
            group(c.distinct)
        );
        println!(
            "  {:<w$}  {:>7.2}%  {:>12}",
            c.name,
            100.0 * c.missing_rate,
            d
        );
    }
}

fn run_simulate(a: SimulateArgs) -> Result<()> {
    let config = match &a.config {
        Some(p) => SimConfig::load(p)?,
        None => SimConfig::default(),
    };
    let seed = a.split.seed;
    let opts = SimulateOptions {
        rows: a.rows,
        out: a.out.clone(),
        seed,
        config,
        format: a.format,
        split: a.split.split,
        ratios: ratios(&a.split.ratios)?,
        writer: writer_options(&a.split),
        overwrite: a.split.overwrite,
        progress: !a.split.quiet,
    };
    let r = simulate(&opts).with_context(|| format!("simulating into {}", a.out.display()))?;
    println!(
        "simulated {} impressions into {} in {:.1}s (seed {seed}, intercept {:.4})",
        group(r.rows),
        r.output.display(),
        r.seconds,
        r.alpha
    );
    let line = |name: &str, v: &serde_json::Value| {
        println!(
            "  {:<5} rows {:>12}  CTR {:.4}  true-p logloss {:.5}  AUC {:.4}  (base-rate logloss {:.5}, NE {:.4})",
            name,
            group(v["rows"].as_u64().unwrap_or(0)),
            v["ctr"].as_f64().unwrap_or(0.0),
            v["logloss"].as_f64().unwrap_or(0.0),
            v["auc"].as_f64().unwrap_or(f64::NAN),
            v["base_rate_logloss"].as_f64().unwrap_or(0.0),
            v["normalized_entropy"].as_f64().unwrap_or(0.0),
        )
    };
    println!("best possible (the true click probability p_click as the prediction):");
    line("all", &r.overall);
    for (s, v) in &r.splits {
        line(s.name(), v);
    }
    if a.format == SimFormat::Parquet {
        let m = DatasetManifest::load(&r.output)?;
        print_columns(&m.columns);
    }
    Ok(())
}

fn run_stats(a: StatsArgs) -> Result<()> {
    let stats = dataset_stats(&a.dir, a.top, !a.quiet)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
    } else {
        print!("{}", render(&stats));
        println!("wrote {}", a.dir.join("stats.json").display());
    }
    Ok(())
}

fn run_features(a: FeaturesArgs) -> Result<()> {
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

fn run_eda(a: EdaArgs) -> Result<()> {
    let summary = crate::eval::eda::eda(&crate::eval::eda::EdaOptions {
        data: a.data,
        out: a.out.clone(),
        top_k: a.top,
        progress: !a.quiet,
    })?;
    print!("{}", crate::eval::eda::render_summary(&summary, &a.out));
    Ok(())
}

fn run_env() -> Result<()> {
    let info = crate::device::torch_info();
    println!("ctr-dl {}", env!("CARGO_PKG_VERSION"));
    println!("{}", serde_json::to_string_pretty(&info)?);
    Ok(())
}
