//! Training a LightGBM run: the encoded splits as matrices, one boosting
//! round at a time with early stopping on valid, then the run directory.
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::config::GbdtExperiment;
use super::lgbm::{Booster, Dataset};
use super::{matrix, LIGHTGBM, MODEL_FILE};
use crate::data::io::{atomic_write, read_json, write_json};
use crate::data::writer::Split;
use crate::error::{Error, LightgbmError, Result};
use crate::features::map::binary_labels;
use crate::features::{prepare, EncodedDataset};
use crate::metrics::{evaluate, log_loss};
use crate::run::{
    git_commit, new_run_name, run_dirs, simulated_truth, tensorboard_finish, tensorboard_start,
    EvalRecord, RunInfo, RunMetrics, TrainOptions, TrainReport, TrainSummary, Truth,
};
use crate::tensorboard::{EventWriter, HParamValue};

fn lgbm_err(what: &str) -> impl Fn(LightgbmError) -> Error + '_ {
    move |e| Error::lightgbm(what, e)
}

/// A split as LightGBM's matrix and its labels.
struct SplitMatrix {
    x: Vec<f32>,
    y: Vec<f32>,
}

fn split_matrix(ds: &EncodedDataset, s: Split) -> Result<SplitMatrix> {
    let e = ds.read_all(s)?;
    Ok(SplitMatrix {
        x: matrix(e.view(), &ds.meta.field_offsets, ds.meta.num_dense),
        y: e.labels,
    })
}

/// `importance.json`: LightGBM's gain and split count per column.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Importance {
    pub columns: Vec<String>,
    pub gain: Vec<f64>,
    pub split: Vec<f64>,
}

/// Train a LightGBM experiment in a new run directory.
pub fn train_gbdt(cfg: &GbdtExperiment, opts: &TrainOptions) -> Result<TrainReport> {
    let run = new_run_name(&cfg.output.runs, &cfg.name, opts)?;
    let say = |s: String| {
        if !opts.quiet {
            eprintln!("{s}");
        }
    };
    let ds = prepare(
        &cfg.data.path,
        cfg.data.cache.as_deref(),
        &cfg.features,
        opts.progress,
    )?;
    let (run_dir, ckpt_dir) = run_dirs(&ds, &cfg.data.path, &cfg.output, &run)?;
    let lg = &cfg.lightgbm;
    let nf = ds.meta.num_fields;
    let params = lg.params(cfg.seed, nf);
    say(format!(
        "features: {nf} categorical fields, {} dense inputs; encoded {} ({})",
        ds.meta.num_dense,
        ds.dir.display(),
        if ds.reused { "cached" } else { "new" }
    ));
    std::fs::write(run_dir.join("config.toml"), cfg.to_toml())
        .map_err(|e| Error::io(run_dir.join("config.toml"), e))?;
    ds.features.save(&run_dir.join("features.json"))?;

    std::fs::write(run_dir.join("lightgbm_params.txt"), format!("{params}\n"))
        .map_err(|e| Error::io(run_dir.join("lightgbm_params.txt"), e))?;
    let train = split_matrix(&ds, Split::Train)?;
    let valid = split_matrix(&ds, Split::Valid)?;
    // Timed from here: binning and boosting, as Python's lgb.Dataset + lgb.train.
    let started = Instant::now();
    let cols = nf + ds.meta.num_dense;
    let names = ds.meta.column_names();
    let mut dtrain = Dataset::from_rows(&train.x, cols, &train.y, &params, None)
        .map_err(lgbm_err("building the train dataset"))?;
    dtrain
        .set_feature_names(&names)
        .map_err(lgbm_err("naming columns"))?;
    let dvalid = Dataset::from_rows(&valid.x, cols, &valid.y, &params, Some(&dtrain))
        .map_err(lgbm_err("building the valid dataset"))?;
    let train_labels = binary_labels(&train.y);
    drop(train);
    let mut booster =
        Booster::new(&dtrain, &[&dvalid], &params).map_err(lgbm_err("creating the booster"))?;
    say(format!(
        "binned {} train and {} valid rows in {:.1}s",
        dtrain.rows(),
        valid.y.len(),
        started.elapsed().as_secs_f64()
    ));
    let metric_names = booster.eval_names().map_err(lgbm_err("metric names"))?;
    let metric = |vals: &[f64], name: &str| {
        metric_names
            .iter()
            .position(|n| n == name)
            .and_then(|i| vals.get(i).copied())
    };
    let valid_labels = binary_labels(&valid.y);

    let mut tb = EventWriter::create(&run_dir).map_err(|e| Error::io(&run_dir, e))?;
    let tb_err = |e| Error::io(run_dir.clone(), e);
    tensorboard_start(
        &mut tb,
        LIGHTGBM,
        &cfg.data.path,
        cfg.seed,
        hparams(cfg),
        &cfg.to_toml(),
    )
    .map_err(tb_err)?;
    let info = RunInfo {
        run: run.clone(),
        name: cfg.name.clone(),
        model: LIGHTGBM.into(),
        created: crate::data::manifest::now_rfc3339(),
        commit: git_commit(),
        seed: cfg.seed,
        data: cfg.data.path.clone(),
        encoded: ds.dir.clone(),
        device: "cpu (LightGBM)".into(),
        checkpoints: ckpt_dir.clone(),
        parameters: 0,
        ctr_dl_version: env!("CARGO_PKG_VERSION").into(),
    };
    write_json(&run_dir.join("run.json"), &info)?;
    say(format!(
        "model: lightgbm ({}) on {} train rows; run {}",
        lg.describe(),
        dtrain.rows(),
        run_dir.display()
    ));

    let bar = (opts.progress && std::io::stderr().is_terminal() && !opts.quiet).then(|| {
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(lg.num_rounds as u64),
            indicatif::ProgressDrawTarget::stderr_with_hz(4),
        );
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "boosting [{bar:30}] {pos}/{len} {msg} eta {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    });
    let mut evals: Vec<EvalRecord> = Vec::new();
    let (mut best_score, mut best_round) = (f64::NEG_INFINITY, 0usize);
    let mut stopped_early = false;
    let mut rounds = 0usize;
    let mut last_record = Instant::now();
    for round in 1..=lg.num_rounds as usize {
        let finished = booster.update().map_err(lgbm_err("boosting"))?;
        if finished {
            break;
        }
        rounds = round;
        let vals = booster
            .eval(1, metric_names.len())
            .map_err(lgbm_err("evaluating valid"))?;
        let (ll, auc) = (metric(&vals, "binary_logloss"), metric(&vals, "auc"));
        let score = lg.monitor.score(auc, ll.unwrap_or(0.0));
        let improved = score > best_score + 1e-9;
        if improved {
            (best_score, best_round) = (score, round);
        }
        if let Some(ll) = ll {
            tb.add_scalar("round/valid_logloss", ll, round as i64)
                .map_err(tb_err)?;
        }
        if let Some(auc) = auc {
            tb.add_scalar("round/valid_auc", auc, round as i64)
                .map_err(tb_err)?;
        }
        let stop =
            lg.early_stopping_rounds > 0 && round - best_round >= lg.early_stopping_rounds as usize;
        if round % lg.eval_every.max(1) as usize == 0 || stop || round == lg.num_rounds as usize {
            // The booster keeps valid's scores current: no pass over the trees.
            let p = booster
                .current_predictions(1, valid_labels.len())
                .map_err(lgbm_err("valid predictions"))?;
            let m = evaluate(&p, &valid_labels);
            let train_p = booster
                .current_predictions(0, train_labels.len())
                .map_err(lgbm_err("train predictions"))?;
            let train_loss = log_loss(&train_p, &train_labels);
            tb.add_scalar("round/train_loss", train_loss, round as i64)
                .map_err(tb_err)?;
            let record = EvalRecord {
                epoch: 0,
                step: round as u64,
                lr: lg.learning_rate,
                train_loss,
                valid: m.clone(),
                improved: best_round == round,
                seconds: last_record.elapsed().as_secs_f64(),
            };
            last_record = Instant::now();
            if !opts.quiet {
                if bar.is_some() {
                    eprint!("\r\x1b[2K");
                }
                eprintln!(
                    "  round {round:>5}  valid auc {}  logloss {:.5}  (best round {best_round})",
                    m.auc.map_or("-".into(), |a| format!("{a:.5}")),
                    m.logloss
                );
            }
            evals.push(record);
        }
        if let Some(bar) = &bar {
            bar.set_position(round as u64);
        }
        if stop {
            stopped_early = true;
            break;
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let seconds = started.elapsed().as_secs_f64();
    let best = best_round.max(1);
    let model_text = booster
        .to_model_string(best)
        .map_err(lgbm_err("saving the model"))?;
    let model_path = ckpt_dir.join(MODEL_FILE);
    atomic_write(&model_path, model_text.as_bytes())?;
    let leaves: i64 = model_text
        .lines()
        .filter_map(|l| l.strip_prefix("num_leaves="))
        .filter_map(|n| n.trim().parse::<i64>().ok())
        .sum();
    write_json(
        &run_dir.join("run.json"),
        &RunInfo {
            parameters: leaves,
            ..info
        },
    )?;
    let importance = Importance {
        columns: names,
        gain: booster
            .importance(best, true)
            .map_err(lgbm_err("importance"))?,
        split: booster
            .importance(best, false)
            .map_err(lgbm_err("importance"))?,
    };
    write_json(&run_dir.join("importance.json"), &importance)?;

    // Final metrics from the saved model, as eval and serving will see it.
    let model = GbdtRun {
        booster: Booster::from_file(&model_path).map_err(lgbm_err("reloading the model"))?,
        offsets: ds.meta.field_offsets.clone(),
        num_dense: ds.meta.num_dense,
    };
    let valid_m = Some(evaluate(&model.predict(&valid.x)?, &valid_labels));
    let test_m = match ds.split(Split::Test).rows {
        0 => None,
        _ => {
            let t = split_matrix(&ds, Split::Test)?;
            let y = binary_labels(&t.y);
            Some(evaluate(&model.predict(&t.x)?, &y))
        }
    };
    let samples = dtrain.rows() as u64 * rounds as u64;
    let metrics = RunMetrics {
        run: run.clone(),
        model: LIGHTGBM.into(),
        evals,
        // 0 when LightGBM grew no tree at all.
        best_step: best_round as u64,
        best_epoch: 0,
        truth: Truth::of(test_m.as_ref(), simulated_truth(&cfg.data.path)),
        valid: valid_m,
        test: test_m,
        train: TrainSummary {
            steps: rounds as u64,
            epochs: 0,
            samples,
            seconds,
            samples_per_sec: samples as f64 / seconds.max(1e-9),
            data_wait_fraction: 0.0,
            stopped_early,
            finished: true,
        },
    };
    // The kept model's valid metrics under the deep runs' tags too (one
    // point, at the best round; the per-round curves are `round/*`).
    if let Some(v) = &metrics.valid {
        tb.add_scalar("valid/auc", v.auc.unwrap_or(f64::NAN), best as i64)
            .map_err(tb_err)?;
        tb.add_scalar("valid/logloss", v.logloss, best as i64)
            .map_err(tb_err)?;
    }
    tensorboard_finish(&mut tb, &metrics, best as i64).map_err(tb_err)?;
    write_json(&run_dir.join("metrics.json"), &metrics)?;
    Ok(TrainReport {
        run,
        run_dir,
        checkpoint_dir: ckpt_dir,
        metrics,
        encoded_reused: ds.reused,
    })
}

/// The hyperparameters shown in TensorBoard's HPARAMS tab.
fn hparams(cfg: &GbdtExperiment) -> Vec<(String, HParamValue)> {
    let l = &cfg.lightgbm;
    let n = HParamValue::Number;
    vec![
        ("learning_rate".into(), n(l.learning_rate)),
        ("num_leaves".into(), n(l.num_leaves as f64)),
        ("min_data_in_leaf".into(), n(l.min_data_in_leaf as f64)),
        ("feature_fraction".into(), n(l.feature_fraction)),
        ("bagging_fraction".into(), n(l.bagging_fraction)),
        ("lambda_l2".into(), n(l.lambda_l2)),
        ("cat_smooth".into(), n(l.cat_smooth)),
    ]
}

/// A trained LightGBM model with what it needs to read encoded rows.
pub struct GbdtRun {
    pub booster: Booster,
    pub offsets: Vec<u32>,
    pub num_dense: usize,
}

impl GbdtRun {
    /// Probabilities of a LightGBM matrix (see [`matrix`]).
    pub fn predict(&self, x: &[f32]) -> Result<Vec<f64>> {
        self.booster
            .predict(x, 0, "")
            .map_err(lgbm_err("predicting"))
    }
}

/// Load a LightGBM run: its experiment, run info, encoded data and model.
pub fn load_gbdt_run(run_dir: &Path) -> Result<(GbdtExperiment, RunInfo, EncodedDataset, GbdtRun)> {
    let cfg = GbdtExperiment::load(&run_dir.join("config.toml"), &[])?;
    let info: RunInfo = read_json(&run_dir.join("run.json"))?;
    let ds = prepare(
        &cfg.data.path,
        cfg.data.cache.as_deref(),
        &cfg.features,
        false,
    )?;
    let path: PathBuf = info.checkpoints.join(MODEL_FILE);
    if !path.exists() {
        return Err(Error::Invalid(format!(
            "{}: no {MODEL_FILE}: the run did not finish",
            info.checkpoints.display()
        )));
    }
    let booster = Booster::from_file(&path).map_err(|e| Error::lightgbm(path.display(), e))?;
    let run = GbdtRun {
        booster,
        offsets: ds.meta.field_offsets.clone(),
        num_dense: ds.meta.num_dense,
    };
    Ok((cfg, info, ds, run))
}
