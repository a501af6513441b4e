//! The trainer end to end on a small simulated dataset: every model trains and
//! beats the base rate, the same seed gives the same metrics, an interrupted
//! run resumed gives the metrics of the uninterrupted one, and the run
//! directory holds what it promises (config, features, metrics, checkpoints,
//! TensorBoard events).
use crate::common;

use std::path::Path;

use common::{experiment as config, lock, quiet, simulate_small};
use ctr_dl::models::ModelKind;
use ctr_dl::run::RunMetrics;
use ctr_dl::train::{resume, train, ExperimentConfig, TrainOptions};

fn base_rate_logloss(m: &ctr_dl::metrics::Metrics) -> f64 {
    let r = m.obs_ctr;
    -(r * r.ln() + (1.0 - r) * (1.0 - r).ln())
}

#[test]
fn every_model_learns_and_writes_its_run() {
    let _turn = lock();
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("sim");
    simulate_small(&data, 40_000, 11);
    for model in ModelKind::ALL.map(ModelKind::name) {
        // FinalMLP's fusion heads divide both streams (16 and 32 wide here).
        let extra: &[&str] = match model {
            "finalmlp" => &["model.mlp2=[32]", "model.fusion_heads=4"],
            _ => &[],
        };
        let cfg = config(d.path(), &data, model, extra);
        let r = train(&cfg, &quiet(model)).unwrap();
        let test = r.metrics.test.clone().unwrap();
        let auc = test.auc.unwrap();
        assert!(auc > 0.6, "{model}: test AUC {auc}");
        assert!(
            test.logloss < base_rate_logloss(&test),
            "{model}: test logloss {} not below the base rate's {}",
            test.logloss,
            base_rate_logloss(&test)
        );
        for f in ["config.toml", "features.json", "run.json", "metrics.json"] {
            assert!(r.run_dir.join(f).exists(), "{model}: no {f}");
        }
        for f in [
            "best.safetensors",
            "last.safetensors",
            "optimizer.safetensors",
            "state.json",
        ] {
            assert!(r.checkpoint_dir.join(f).exists(), "{model}: no {f}");
        }
        let events = std::fs::read_dir(&r.run_dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("events.out.tfevents.")
            })
            .count();
        assert_eq!(events, 1, "{model}: one event file");
        let m: RunMetrics =
            serde_json::from_str(&std::fs::read_to_string(r.run_dir.join("metrics.json")).unwrap())
                .unwrap();
        assert!(m.train.finished);
        assert!(!m.evals.is_empty());
        assert!(
            m.truth.is_some(),
            "simulated data report the gap to the truth"
        );
        // The saved config reproduces the run's settings.
        let saved = ExperimentConfig::load(&r.run_dir.join("config.toml"), &[]).unwrap();
        assert_eq!(saved, cfg);
    }
}

/// DCNv2's low-rank mixture and stacked structure, batch norm and dropout,
/// xDeepFM and AutoInt without their MLPs, FinalMLP's uneven streams: each
/// builds and trains.
#[test]
fn model_options_train() {
    let _turn = lock();
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("sim");
    simulate_small(&data, 20_000, 12);
    for (name, sets) in [
        (
            "mix",
            vec![
                "model.low_rank=4",
                "model.experts=2",
                "model.structure=stacked",
            ],
        ),
        ("bn", vec!["model.batch_norm=true", "model.dropout=0.2"]),
        ("crossonly", vec!["model.mlp=[]"]),
        // LR plus CIN alone; AutoInt without the MLP (not AutoInt+).
        ("cinonly", vec!["model.mlp=[]", "model.cin=[8,8,8]"]),
        ("attonly", vec!["model.mlp=[]", "model.attention_layers=1"]),
        (
            "finalmlp",
            vec![
                "model.mlp=[64,32]",
                "model.mlp2=[48]",
                "model.fusion_heads=8",
            ],
        ),
    ] {
        let mut sets = sets.clone();
        sets.push("train.epochs=1");
        let kind = match name {
            "bn" => "deepfm",
            "cinonly" => "xdeepfm",
            "attonly" => "autoint",
            "finalmlp" => "finalmlp",
            _ => "dcnv2",
        };
        let cfg = config(d.path(), &data, kind, &sets);
        let r = train(&cfg, &quiet(name)).unwrap();
        assert!(r.metrics.test.unwrap().auc.unwrap() > 0.55, "{name}");
    }
}

#[test]
fn same_seed_same_metrics_and_resume_continues_exactly() {
    let _turn = lock();
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("sim");
    simulate_small(&data, 30_000, 13);
    let cfg = config(d.path(), &data, "deepfm", &["model.dropout=0.1"]);
    let a = train(&cfg, &quiet("a")).unwrap().metrics;
    let b = train(&cfg, &quiet("b")).unwrap().metrics;
    assert_eq!(a.test, b.test, "same seed, same test metrics");
    assert_eq!(a.best_step, b.best_step);

    // Interrupted after 40 steps (a checkpoint at step 40), then resumed.
    let first = train(
        &cfg,
        &TrainOptions {
            stop_after_steps: Some(40),
            ..quiet("c")
        },
    )
    .unwrap();
    assert!(!first.metrics.train.finished);
    assert!(first.metrics.test.is_none());
    let resumed = resume(&first.run_dir, &quiet("c")).unwrap().metrics;
    assert_eq!(
        resumed.test, a.test,
        "the resumed run ends where the uninterrupted one does"
    );
    assert_eq!(resumed.train.steps, a.train.steps);
    // A finished run cannot be resumed, and its name cannot be reused.
    let e = resume(&first.run_dir, &quiet("c")).unwrap_err().to_string();
    assert!(e.contains("finished"), "{e}");
    let e = train(&cfg, &quiet("c")).unwrap_err().to_string();
    assert!(e.contains("--resume"), "{e}");
}

#[test]
fn early_stopping_and_learning_rate_decay() {
    let _turn = lock();
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("sim");
    simulate_small(&data, 20_000, 14);
    // A learning rate far too high overfits fast: valid AUC stops improving.
    let cfg = config(
        d.path(),
        &data,
        "fm",
        &[
            "train.lr=0.2",
            "train.epochs=20",
            "train.eval_every=10",
            "train.patience=2",
        ],
    );
    let m = train(&cfg, &quiet("es")).unwrap().metrics;
    assert!(m.train.stopped_early, "{:?}", m.train);
    assert!(m.train.epochs < 20);
    let last = m.evals.last().unwrap();
    assert!(!last.improved);
    assert!(
        last.lr < 0.2,
        "the learning rate was cut on the plateau: {}",
        last.lr
    );
    // The test metrics are those of the best evaluation's weights.
    let best = m.evals.iter().find(|e| e.step == m.best_step).unwrap();
    assert!((m.valid.as_ref().unwrap().logloss - best.valid.logloss).abs() < 1e-9);
}

#[test]
fn cosine_schedule_warms_up_and_anneals_to_zero() {
    let _turn = lock();
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("sim");
    simulate_small(&data, 20_000, 15);
    let cfg = config(
        d.path(),
        &data,
        "deepfm",
        &[
            "train.lr=0.01",
            "train.lr_schedule=cosine",
            "train.warmup_steps=10",
            "train.eval_every=5",
            "train.lr_decay=1.0",
            "train.patience=1000",
        ],
    );
    let m = train(&cfg, &quiet("cos")).unwrap().metrics;
    assert!(
        !m.train.stopped_early && m.train.epochs == 2,
        "{:?}",
        m.train
    );
    let lrs: Vec<(u64, f64)> = m.evals.iter().map(|e| (e.step, e.lr)).collect();
    // Each evaluation records the rate of the step after it.
    let planned = m.train.steps as f64;
    for &(step, lr) in &lrs {
        let want = if step < 10 {
            0.01 * (step + 1) as f64 / 10.0
        } else {
            let progress = (step - 10) as f64 / (planned - 10.0);
            0.01 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
        };
        assert!(
            (lr - want).abs() < 1e-12,
            "step {step}: lr {lr}, want {want}"
        );
    }
    assert!(lrs.windows(2).skip(1).all(|w| w[1].1 < w[0].1), "{lrs:?}");
    assert_eq!(lrs.last().unwrap().0, m.train.steps);
    assert!(lrs.last().unwrap().1 < 1e-12, "{lrs:?}");
}

/// Every experiment shipped in experiments/ parses and validates: the nine
/// models and LightGBM for the simulator, Criteo and Avazu.
#[test]
fn shipped_experiments_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments");
    let (mut deep, mut gbdt) = (0, 0);
    for dir in [root.clone(), root.join("criteo"), root.join("avazu")] {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_none_or(|x| x != "toml") {
                continue;
            }
            if ctr_dl::gbdt::is_gbdt_experiment(&p).unwrap() {
                ctr_dl::gbdt::GbdtExperiment::load(&p, &[]).unwrap_or_else(|e| panic!("{e}"));
                assert!(p.ends_with("lightgbm.toml"), "{}", p.display());
                gbdt += 1;
                continue;
            }
            let cfg = ExperimentConfig::load(&p, &[]).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                p.to_string_lossy().contains(cfg.model.kind().name()),
                "{}",
                p.display()
            );
            deep += 1;
        }
    }
    assert_eq!((deep, gbdt), (27, 3));
}

/// Reaching `train.max_steps` ends a run, but is not an early stop.
#[test]
fn max_steps_is_not_an_early_stop() {
    let _turn = lock();
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("sim");
    simulate_small(&data, 12_000, 3);
    let cfg = config(d.path(), &data, "lr", &["train.max_steps=7"]);
    let m = train(&cfg, &quiet("max")).unwrap().metrics;
    assert_eq!(m.train.steps, 7);
    assert!(m.train.finished && !m.train.stopped_early, "{:?}", m.train);
}
