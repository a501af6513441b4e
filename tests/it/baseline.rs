//! LightGBM baselines (the `lightgbm` feature): a run directory like a deep
//! run's, categorical fields that take effect, eval and compare reading it,
//! and a bundle served with the same probabilities as offline.
#![cfg(feature = "lightgbm")]
use crate::common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{lock, read_split, simulate_small};
use ctr_dl::data::writer::Split;
use ctr_dl::eval::compare::{compare, eval_run};
use ctr_dl::eval::runs::open_run;
use ctr_dl::features::map::FeatureMap;
use ctr_dl::gbdt::{train_gbdt, GbdtExperiment};
use ctr_dl::serve::{export, rocket, ExportOptions, ServeConfig, Server};
use rocket::http::{ContentType, Status};
use rocket::local::blocking::Client;
use serde_json::{json, Value};

fn gbdt_experiment(dir: &Path, data: &Path, extra: &[&str]) -> GbdtExperiment {
    let text = format!(
        r#"
name = "lightgbm"
seed = 7
[data]
path = "{data}"
[features]
min_count = 5
[lightgbm]
num_leaves = 15
min_data_in_leaf = 50
num_rounds = 60
early_stopping_rounds = 10
eval_every = 20
threads = 1
{output}"#,
        data = data.display(),
        output = common::output_section(dir),
    );
    let sets: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    GbdtExperiment::parse(&text, Path::new("lightgbm.toml"), &sets).unwrap()
}

fn train(dir: &Path, data: &Path, run: &str, extra: &[&str]) -> PathBuf {
    let cfg = gbdt_experiment(dir, data, extra);
    train_gbdt(&cfg, &common::quiet(run)).unwrap().run_dir
}

#[test]
fn a_lightgbm_run_has_the_deep_runs_layout_and_learns() {
    let _turn = lock();
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("sim");
    simulate_small(&data, 30_000, 21);
    let run = train(d.path(), &data, "gbdt", &[]);
    for f in [
        "config.toml",
        "features.json",
        "run.json",
        "metrics.json",
        "importance.json",
        "lightgbm_params.txt",
    ] {
        assert!(run.join(f).exists(), "{f}");
    }
    let events = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("tfevents"))
        .expect("a TensorBoard event file");
    let bytes = std::fs::read(events).unwrap();
    for tag in [
        "round/valid_logloss",
        "round/train_loss",
        "valid/logloss",
        "test/auc",
        "num_leaves",
    ] {
        assert!(
            bytes.windows(tag.len()).any(|w| w == tag.as_bytes()),
            "no {tag} in the events"
        );
    }
    let model = d.path().join("checkpoints/gbdt/model.lgb");
    let text = std::fs::read_to_string(&model).unwrap();
    // Categorical fields take effect: the trees split on category sets.
    assert!(text.contains("cat_threshold="), "no categorical split");

    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("metrics.json")).unwrap()).unwrap();
    let test_auc = m["test"]["auc"].as_f64().unwrap();
    assert!(test_auc > 0.6, "test AUC {test_auc}");
    assert!(m["evals"].as_array().unwrap().len() >= 2);
    assert!(m["truth"]["gap"].as_f64().unwrap() > 0.0);

    // eval reads the saved model and agrees with the run's own test metrics.
    let e = eval_run(&run, Split::Test, tch::Device::Cpu).unwrap();
    assert!((e.metrics.auc.unwrap() - test_auc).abs() < 1e-12);

    // compare lists it beside deep runs.
    let rows = compare(std::slice::from_ref(&run)).unwrap();
    assert_eq!(rows[0].model, "lightgbm");
    assert!(
        rows[0].settings.contains("leaves 15"),
        "{}",
        rows[0].settings
    );

    // Without categoricals the same fields are split as numbers.
    let plain = train(d.path(), &data, "plain", &["lightgbm.categorical=false"]);
    assert!(plain.exists());
    let text = std::fs::read_to_string(d.path().join("checkpoints/plain/model.lgb")).unwrap();
    assert!(!text.contains("cat_threshold="));
}

#[test]
fn a_lightgbm_bundle_serves_the_offline_probabilities() {
    let _turn = lock();
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("sim");
    simulate_small(&data, 20_000, 22);
    let run = train(d.path(), &data, "gbdt", &[]);
    let models = d.path().join("models");
    let r = export(&ExportOptions {
        models_root: models.clone(),
        ..ExportOptions::new(&run)
    })
    .unwrap();
    assert!(r.out.join("model.lgb").exists());
    assert_eq!(r.metadata.format, "lightgbm");
    assert_eq!(r.metadata.check.max_abs_diff_batch_n, 0.0);

    // Offline: the run's model on the encoded raw test rows.
    let test = read_split(&data, Split::Test);
    let n = 100.min(test.num_rows());
    let test = test.slice(0, n);
    let map = FeatureMap::load(&run.join("features.json")).unwrap();
    let enc = map.encode_batch(&test).unwrap();
    let want = open_run(&run, tch::Device::Cpu)
        .unwrap()
        .predict(&enc)
        .unwrap();

    let server = Arc::new(
        Server::load(ServeConfig {
            models,
            workers: 1,
            predlog: "off".into(),
            ..ServeConfig::default()
        })
        .unwrap(),
    );
    let c = Client::tracked(rocket(server)).unwrap();
    let rows = common::request_rows(&test);
    let r = c
        .post("/batch_predict")
        .header(ContentType::JSON)
        .body(json!({ "instances": rows }).to_string())
        .dispatch();
    assert_eq!(r.status(), Status::Ok);
    let v: Value = serde_json::from_str(&r.into_string().unwrap()).unwrap();
    assert_eq!(v["model"], "lightgbm");
    let got = v["predictions"].as_array().unwrap();
    let worst = got
        .iter()
        .zip(&want)
        .map(|(g, w)| (g.as_f64().unwrap() - w).abs())
        .fold(0.0, f64::max);
    assert!(worst <= 1e-6, "served vs offline: {worst}");
    let info: Value =
        serde_json::from_str(&c.get("/model_info").dispatch().into_string().unwrap()).unwrap();
    assert!(
        info.to_string().contains("\"format\":\"lightgbm\""),
        "{info}"
    );
}
