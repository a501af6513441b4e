//! Command-line interface: raw arguments are parsed by clap, turned into the
//! library's option structs here, and the results printed. Nothing else lives
//! here: every command is a library call.
//!
//! One file a stage, each command's arguments beside its handler:
//! [`data`], [`train`], [`eval`] and [`serve`]; this file holds the command
//! list, the entry point and `env`.
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

mod data;
mod eval;
mod serve;
mod train;

pub use data::*;
pub use eval::*;
pub use serve::*;
pub use train::*;

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
    /// Dataset schemas: `schema infer FILE` proposes one for a CSV/TSV file.
    Schema(SchemaArgs),
    /// Generate ad impressions with a known click probability.
    Simulate(SimulateArgs),
    /// Per-split statistics of a dataset: rows, CTR, per-field distinct, missing, top values.
    Stats(StatsArgs),
    /// An HTML report of a dataset: class balance, fields, long tails, top values, numeric distributions, CTR over time, drift.
    Eda(EdaArgs),
    /// Print a starting experiment for a converted dataset (keys that apply only).
    Init(InitArgs),
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
    /// Score a dataset offline with a bundle or run: one Parquet file of probabilities.
    Predict(PredictArgs),
    /// Serve model bundles over HTTP: /predict_ctr, /batch_predict, /health, /model_info, /metrics.
    Serve(ServeArgs),
    /// Show the libtorch this binary runs on, its threads and CUDA devices.
    Env,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            // Each cause on its own line, unless the lines above already
            // say it (the crate's errors include their cause's text).
            let mut shown = e.to_string();
            for cause in e.chain().skip(1) {
                let text = cause.to_string();
                if !shown.contains(&text) {
                    eprintln!("  caused by: {text}");
                    shown.push('\n');
                    shown.push_str(&text);
                }
            }
            ExitCode::FAILURE
        }
    }
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Convert(a) => data::run_convert(a),
        Command::Simulate(a) => data::run_simulate(a),
        Command::Stats(a) => data::run_stats(a),
        Command::Init(a) => train::run_init(a),
        Command::Schema(a) => data::run_schema(a),
        Command::Eda(a) => data::run_eda(a),
        Command::Preprocess(a) => train::run_preprocess(a),
        Command::Train(a) => train::run_train(a),
        Command::Baseline(a) => train::run_baseline(a),
        Command::Eval(a) => eval::run_eval(a),
        Command::Features(a) => eval::run_features(a),
        Command::Compare(a) => eval::run_compare(a),
        Command::Report(a) => eval::run_report(a),
        Command::Export(a) => serve::run_export(a),
        Command::Predict(a) => serve::run_predict(a),
        Command::Serve(a) => serve::run_serve(a),
        Command::Env => run_env(),
    }
}

fn run_env() -> Result<()> {
    let info = crate::device::torch_info();
    println!("ctr-dl {}", env!("CARGO_PKG_VERSION"));
    println!("{}", serde_json::to_string_pretty(&info)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every argument of every command says what it is, once: a help text,
    /// and its default only in clap's `[default: ..]`.
    #[test]
    fn every_argument_has_help() {
        let mut missing = Vec::new();
        let mut doubled = Vec::new();
        let mut stack = vec![(String::from("ctr-dl"), super::Cli::command())];
        while let Some((path, cmd)) = stack.pop() {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                if help.trim().is_empty() {
                    missing.push(format!("{path} {id}"));
                }
                if !arg.get_default_values().is_empty() && help.contains("default") {
                    doubled.push(format!("{path} {id}: {help}"));
                }
            }
            for sub in cmd.get_subcommands() {
                stack.push((format!("{path} {}", sub.get_name()), sub.clone()));
            }
        }
        assert!(missing.is_empty(), "no help text: {missing:#?}");
        assert!(doubled.is_empty(), "default said twice: {doubled:#?}");
    }
}
