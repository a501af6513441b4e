//! `export` (a run into a model bundle), `predict` (a bundle or run over a
//! dataset, offline) and `serve` (bundles over HTTP).
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

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
#[command(group(clap::ArgGroup::new("model").required(true).args(["bundle", "run"])))]
pub struct PredictArgs {
    /// A bundle directory (models/<name>/<version>), scored as `serve` would.
    #[arg(long)]
    pub bundle: Option<PathBuf>,
    /// A run directory (runs/<run>), exported to a temporary bundle first.
    #[arg(long)]
    pub run: Option<PathBuf>,
    /// A dataset folder (dataset.json), a Parquet shard, a folder of shards,
    /// or a raw CSV/TSV file read by --format or --schema.
    #[arg(long)]
    pub input: PathBuf,
    /// A raw input's built-in format (criteo, criteo-1tb, criteo-csv, avazu).
    #[arg(long, conflicts_with = "schema")]
    pub format: Option<String>,
    /// A raw input's schema file (configs/datasets/NAME.toml).
    #[arg(long)]
    pub schema: Option<PathBuf>,
    /// Of a dataset folder, score only this split (train, valid or test;
    /// repeatable) [default: all].
    #[arg(long)]
    pub split: Vec<String>,
    /// The Parquet file written: the kept columns, then `probability`.
    #[arg(long)]
    pub out: PathBuf,
    /// An input column copied into the output (an id, the label; repeatable).
    #[arg(long)]
    pub keep: Vec<String>,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Rows read, encoded and scored at a time.
    #[arg(long, default_value_t = 16_384)]
    pub batch_size: usize,
    /// Replace an existing output file.
    #[arg(long)]
    pub overwrite: bool,
    /// No progress bar even on a terminal.
    #[arg(long)]
    pub quiet: bool,
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
    /// No access-log line per request.
    #[arg(long)]
    pub quiet: bool,
}

pub(super) fn run_serve(a: ServeArgs) -> Result<()> {
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
    c.access_log &= !a.quiet;
    crate::serve::serve(c)?;
    Ok(())
}

pub(super) fn run_predict(a: PredictArgs) -> Result<()> {
    use std::io::IsTerminal;
    let opts = crate::serve::PredictOptions {
        bundle: a.bundle,
        run: a.run,
        input: a.input.clone(),
        schema: match (&a.format, &a.schema) {
            (Some(f), _) => Some(crate::data::schema::DatasetSchema::builtin(f)?),
            (None, Some(p)) => Some(crate::data::schema::DatasetSchema::load(p)?),
            (None, None) => None,
        },
        splits: a
            .split
            .iter()
            .map(|s| crate::data::writer::Split::parse(s))
            .collect::<crate::error::Result<_>>()?,
        out: a.out,
        keep: a.keep,
        device: crate::device::resolve_device(&a.device).map_err(anyhow::Error::msg)?,
        batch_size: a.batch_size,
        overwrite: a.overwrite,
        progress: !a.quiet && std::io::stderr().is_terminal(),
    };
    let r =
        crate::serve::predict(&opts).with_context(|| format!("scoring {}", a.input.display()))?;
    println!(
        "scored {} rows with {} in {:.1}s ({:.0} rows/s) into {}",
        r.rows,
        r.model,
        r.seconds,
        r.rows as f64 / r.seconds.max(1e-9),
        r.out.display()
    );
    Ok(())
}

pub(super) fn run_export(a: ExportArgs) -> Result<()> {
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
