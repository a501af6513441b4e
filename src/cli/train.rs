//! The training commands: `preprocess`, `train` and `baseline` (one
//! experiment file, deep or LightGBM), and the summary printed after a run.
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::data::stats::group;
use crate::data::writer::Split;
use crate::metrics::Metrics;
use crate::train::{resume, train, ExperimentConfig, TrainOptions};

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
    /// Override a config value: --set train.lr=1e-4 --set model.mlp=[200,200].
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
    /// Override a config value: --set train.lr=1e-4 --set model.mlp=[200,200].
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    pub set: Vec<String>,
    /// Run name (default: the experiment name and the UTC time).
    #[arg(long)]
    pub run: Option<String>,
    /// Print only the final summary.
    #[arg(long)]
    pub quiet: bool,
}

pub(super) fn run_preprocess(a: PreprocessArgs) -> Result<()> {
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

pub(super) fn run_train(a: TrainArgs) -> Result<()> {
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

pub(super) fn run_baseline(a: BaselineArgs) -> Result<()> {
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
) -> Result<crate::run::TrainReport> {
    let what = || format!("training {}", path.display());
    if crate::gbdt::is_gbdt_experiment(path)? {
        let cfg = crate::gbdt::GbdtExperiment::load(path, set)?;
        return crate::gbdt::train(&cfg, opts).with_context(what);
    }
    let cfg = ExperimentConfig::load(path, set)?;
    if let Some(kind) = only {
        if cfg.model.kind() != kind {
            bail!(
                "{}: `ctr-dl baseline` trains LightGBM (a [lightgbm] section) or logistic regression \
                 (model.kind = \"lr\"), not {}; train it with `ctr-dl train`",
                path.display(),
                cfg.model.kind().name()
            );
        }
    }
    train(&cfg, opts).with_context(what)
}

fn print_summary(report: &crate::run::TrainReport) {
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
    if m.model == crate::gbdt::LIGHTGBM && t.steps == 0 {
        println!(
            "run {}: LightGBM grew no tree: no split of the train rows meets \
             min_data_in_leaf and min_sum_hessian_in_leaf, so the model predicts the train \
             click rate ({:.1}s)",
            report.run, t.seconds
        );
    } else if m.model == crate::gbdt::LIGHTGBM {
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
    if m.model == crate::gbdt::LIGHTGBM && m.best_step == 0 {
        println!("the model:");
    } else if m.model == crate::gbdt::LIGHTGBM {
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

#[derive(Args, Debug)]
pub struct InitArgs {
    /// A dataset folder written by `ctr-dl convert` or `ctr-dl simulate`.
    #[arg(long)]
    pub data: PathBuf,
    /// The model: lightgbm, or a deep model's kind (lr, fm, wide_deep,
    /// deepfm, dcn, dcnv2, xdeepfm, autoint, finalmlp).
    #[arg(long, default_value = "deepfm")]
    pub model: String,
    /// The experiment's name (the prefix of its runs) [default: the model].
    #[arg(long)]
    pub name: Option<String>,
}

pub(super) fn run_init(a: InitArgs) -> Result<()> {
    let name = a.name.clone().unwrap_or_else(|| a.model.clone());
    let text = crate::train::init::init_experiment(&a.data, &a.model, &name)
        .with_context(|| format!("writing an experiment for {}", a.data.display()))?;
    print!("{text}");
    Ok(())
}
