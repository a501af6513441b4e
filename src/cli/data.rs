//! The data commands: `convert`, `simulate`, `stats` and `eda`, each with
//! its arguments beside its handler.
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};

use crate::data::convert::{convert, ConvertOptions};
use crate::data::manifest::DatasetManifest;
use crate::data::schema::DatasetSchema;
use crate::data::simulate::{simulate, SimConfig, SimFormat, SimulateOptions};
use crate::data::sketch::ColumnSummary;
use crate::data::split::SplitMode;
use crate::data::stats::{dataset_stats, group, render};
use crate::data::writer::{Split, WriterOptions};
use crate::progress::human_bytes;

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
    /// The input's layout: a built-in schema, or `csv` with --schema.
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
    /// naming its line (1 MiB is thousands of Criteo or Avazu lines).
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
    /// What to write: Parquet shards, or a Criteo-layout TSV.
    #[arg(long, value_enum, default_value = "parquet")]
    pub format: SimFormat,
    #[command(flatten)]
    pub split: SplitArgs,
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
    /// No progress bar even on a terminal.
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
    /// No progress bar even on a terminal.
    #[arg(long)]
    pub quiet: bool,
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

pub(super) fn run_convert(a: ConvertArgs) -> Result<()> {
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

pub(super) fn run_simulate(a: SimulateArgs) -> Result<()> {
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

pub(super) fn run_stats(a: StatsArgs) -> Result<()> {
    let stats = dataset_stats(&a.dir, a.top, !a.quiet)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
    } else {
        print!("{}", render(&stats));
        println!(
            "wrote {}",
            a.dir.join(crate::data::stats::STATS_FILE).display()
        );
    }
    Ok(())
}

pub(super) fn run_eda(a: EdaArgs) -> Result<()> {
    let summary = crate::eval::eda::eda(&crate::eval::eda::EdaOptions {
        data: a.data,
        out: a.out.clone(),
        top_k: a.top,
        progress: !a.quiet,
    })?;
    print!("{}", crate::eval::eda::render_summary(&summary, &a.out));
    Ok(())
}

#[derive(Args, Debug)]
pub struct SchemaArgs {
    #[command(subcommand)]
    pub command: SchemaCommand,
}

#[derive(Subcommand, Debug)]
pub enum SchemaCommand {
    /// Propose a schema for a CSV/TSV file from its first lines: the TOML on
    /// stdout (with why each column got its type), ready for
    /// `convert --format csv --schema`.
    Infer(InferArgs),
}

#[derive(Args, Debug)]
pub struct InferArgs {
    /// The file (plain or gzip).
    pub file: PathBuf,
    /// The label column [default: a column named click, clicked, label,
    /// target or y with only 0 and 1, else the first such column].
    #[arg(long)]
    pub label: Option<String>,
    /// The schema's name [default: the file's name without extensions].
    #[arg(long)]
    pub name: Option<String>,
    /// Lines read to guess from.
    #[arg(long, default_value_t = 10_000)]
    pub rows: usize,
}

pub(super) fn run_schema(a: SchemaArgs) -> Result<()> {
    let SchemaCommand::Infer(a) = a.command;
    let name = a.name.unwrap_or_else(|| {
        a.file
            .file_name()
            .map(|n| {
                n.to_string_lossy()
                    .split('.')
                    .next()
                    .unwrap_or("data")
                    .to_string()
            })
            .unwrap_or_else(|| "data".into())
    });
    let inferred = crate::data::infer::infer(&a.file, &name, a.label.as_deref(), a.rows)
        .with_context(|| format!("inferring a schema for {}", a.file.display()))?;
    print!("{}", inferred.to_toml()?);
    Ok(())
}
