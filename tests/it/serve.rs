//! The prediction service in process (Rocket's local client): no train/serve
//! skew on raw test rows, bad input answered with 4xx naming the field, a
//! broken bundle skipped while the others serve, and the info endpoints.
use crate::common;

use std::path::Path;
use std::sync::Arc;

use common::{experiment, lock, quiet, read_split, simulate_small};
use ctr_dl::data::writer::Split;
use ctr_dl::features::map::FeatureMap;
use ctr_dl::serve::{export, rocket, ExportOptions, ServeConfig, Server};
use ctr_dl::train::{load_run, train};
use rocket::http::{ContentType, Status};
use rocket::local::blocking::Client;
use serde_json::{json, Value};
use tch::{Device, Kind, Tensor};

/// Train a small DeepFM on simulated data and export it under `models`.
fn trained_bundle(dir: &Path, models: &Path) -> std::path::PathBuf {
    let data = dir.join("sim");
    simulate_small(&data, 20_000, 41);
    // With crosses: the request encoder must build them as training did.
    let cfg = experiment(
        dir,
        &data,
        "deepfm",
        &[
            "train.epochs=1",
            r#"features.crosses=["device+placement","user_age+ad_category"]"#,
        ],
    );
    let report = train(&cfg, &quiet("serve")).unwrap();
    export(&ExportOptions {
        models_root: models.to_path_buf(),
        ..ExportOptions::new(&report.run_dir)
    })
    .unwrap();
    report.run_dir
}

fn client(models: &Path, tweak: impl FnOnce(&mut ServeConfig)) -> Client {
    let mut config = ServeConfig {
        models: models.to_path_buf(),
        workers: 1,
        predlog: "off".into(),
        ..ServeConfig::default()
    };
    tweak(&mut config);
    let server = Arc::new(Server::load(config).unwrap());
    Client::tracked(rocket(server)).unwrap()
}

fn post(c: &Client, path: &str, body: &str) -> (Status, Value) {
    let r = c.post(path).header(ContentType::JSON).body(body).dispatch();
    let status = r.status();
    let text = r.into_string().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")),
    )
}

#[test]
fn served_probabilities_equal_the_offline_ones_on_raw_test_rows() {
    let _turn = lock();
    let d = tempfile::tempdir().unwrap();
    let models = d.path().join("models");
    let run_dir = trained_bundle(d.path(), &models);
    let c = client(&models, |_| {});

    // Offline: the training-side encoder on the raw test shard and the trained model.
    let test = read_split(&d.path().join("sim"), Split::Test);
    let n = 200.min(test.num_rows());
    let test = test.slice(0, n);
    let map = FeatureMap::load(&run_dir.join("features.json")).unwrap();
    let enc = map.encode_batch(&test).unwrap();
    let (_, _, _, net) = load_run(&run_dir, Device::Cpu).unwrap();
    let want: Vec<f64> = {
        let _g = tch::no_grad_guard();
        let ids = Tensor::from_slice(&enc.ids)
            .view([n as i64, map.num_fields() as i64])
            .to_kind(Kind::Int64);
        let dense = Tensor::from_slice(&enc.dense).view([n as i64, map.num_dense() as i64]);
        let p = net.model.forward_t(&ids, &dense, false).sigmoid();
        Vec::try_from(p.to_kind(Kind::Double)).unwrap()
    };

    let rows = common::request_rows(&test);

    let mut worst = 0f64;
    for (r, row) in rows.iter().enumerate().take(40) {
        let (s, v) = post(&c, "/predict_ctr", &row.to_string());
        assert_eq!(s, Status::Ok, "{v}");
        assert_eq!(v["predicted_ctr"], v["probability"]);
        assert_eq!(
            (v["model"].as_str(), v["version"].as_str()),
            (Some("deepfm"), Some("1"))
        );
        worst = worst.max((v["predicted_ctr"].as_f64().unwrap() - want[r]).abs());
    }
    let (s, v) = post(
        &c,
        "/batch_predict",
        &json!({ "instances": rows }).to_string(),
    );
    assert_eq!(s, Status::Ok, "{v}");
    let got = v["predictions"].as_array().unwrap();
    assert_eq!(got.len(), n);
    for (g, w) in got.iter().zip(&want) {
        worst = worst.max((g.as_f64().unwrap() - w).abs());
    }
    assert!(worst <= 1e-6, "served vs offline: {worst}");
    let spread =
        want.iter().cloned().fold(0.0, f64::max) - want.iter().cloned().fold(1.0, f64::min);
    assert!(spread > 1e-3, "the model predicts more than a constant");
}

#[test]
fn bad_input_gets_4xx_naming_the_field_and_broken_bundles_are_skipped() {
    let _turn = lock();
    let d = tempfile::tempdir().unwrap();
    let models = d.path().join("models");
    trained_bundle(d.path(), &models);
    // A bundle that cannot load sits beside the good one.
    let broken = models.join("broken/1");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("model.pt"), b"not a model").unwrap();
    let c = client(&models, |c| {
        c.max_batch = 3;
        c.max_body_bytes = 4096;
    });

    let cases: [(&str, &str, Status, Option<&str>); 11] = [
        (
            "/predict_ctr",
            r#"{"user_id": "u1", "colour": "red"}"#,
            Status::BadRequest,
            Some("colour"),
        ),
        (
            "/predict_ctr",
            r#"{"user_id": true}"#,
            Status::BadRequest,
            Some("user_id"),
        ),
        (
            "/predict_ctr",
            r#"{"user_id": [1]}"#,
            Status::BadRequest,
            Some("user_id"),
        ),
        (
            "/predict_ctr",
            r#"{"time": "yesterday"}"#,
            Status::BadRequest,
            Some("time"),
        ),
        (
            "/predict_ctr",
            r#"{"user_id": NaN}"#,
            Status::BadRequest,
            None,
        ),
        (
            "/predict_ctr",
            r#"{"user_id": "u1""#,
            Status::BadRequest,
            None,
        ),
        ("/predict_ctr", r#"["u1"]"#, Status::BadRequest, None),
        (
            "/predict_ctr",
            r#"{"model": "nope"}"#,
            Status::BadRequest,
            Some("model"),
        ),
        (
            "/batch_predict",
            r#"{"instances": []}"#,
            Status::BadRequest,
            Some("instances"),
        ),
        (
            "/batch_predict",
            r#"{"instances": [{}, {}, {}, {}]}"#,
            Status::PayloadTooLarge,
            None,
        ),
        (
            "/batch_predict",
            r#"{"instances": [{"user_id": "u1"}, {"ad_id": 3.5, "site_id": {}}]}"#,
            Status::BadRequest,
            Some("instances[1].site_id"),
        ),
    ];
    for (path, body, status, field) in cases {
        let (s, v) = post(&c, path, body);
        assert_eq!(s, status, "{path} {body}: {v}");
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
        if let Some(f) = field {
            assert_eq!(v["field"].as_str(), Some(f), "{body}: {v}");
        }
    }
    let big = format!(r#"{{"user_id": "{}"}}"#, "x".repeat(5000));
    assert_eq!(post(&c, "/predict_ctr", &big).0, Status::PayloadTooLarge);

    // Unseen values and absent fields are not errors; the server still serves.
    let (s, v) = post(
        &c,
        "/predict_ctr",
        r#"{"user_id": "never-seen", "ad_id": 12345}"#,
    );
    assert_eq!(s, Status::Ok, "{v}");
    let (s, v) = post(&c, "/predict_ctr", "{}");
    assert_eq!(s, Status::Ok, "{v}");
    assert_eq!(
        post(&c, "/predict_ctr", r#"{"version": "1"}"#).0,
        Status::Ok
    );
    assert_eq!(
        post(&c, "/predict_ctr", r#"{"version": "7"}"#).0,
        Status::BadRequest
    );

    let health: Value =
        serde_json::from_str(&c.get("/health").dispatch().into_string().unwrap()).unwrap();
    assert_eq!(health["status"], "ready");
    assert_eq!(
        health["models"],
        json!(["deepfm/1"]),
        "the broken bundle is skipped"
    );
    let info: Value =
        serde_json::from_str(&c.get("/model_info").dispatch().into_string().unwrap()).unwrap();
    let m = &info["models"][0];
    assert_eq!(m["kind"], "deepfm");
    assert!(m["fields"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["name"] == "user_id"));
    assert!(m["metrics"]["test"]["auc"].as_f64().is_some());
    let metrics = c.get("/metrics").dispatch().into_string().unwrap();
    assert!(
        metrics.contains(r#"ctr_requests_total{route="/predict_ctr",status="400"} 9"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"ctr_requests_total{route="/predict_ctr",status="413"} 1"#),
        "{metrics}"
    );
    // Labels in name order, as the Prometheus client writes them.
    assert!(metrics.contains(r#"ctr_model_loaded{kind="deepfm",model="deepfm",version="1"} 1"#));
    assert!(metrics.contains("# TYPE ctr_request_seconds histogram"));
    assert!(metrics.contains(r#"ctr_request_seconds_bucket{route="/predict_ctr",le="0.0005"}"#));
    assert!(metrics.contains("ctr_request_seconds_bucket{route=\"/predict_ctr\",le=\"+Inf\"}"));
    assert!(metrics.contains("ctr_batch_rows_count"));
}

/// Send 5 single requests and one batch of 3; the answers as (request id, probability).
fn send_eight(c: &Client) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for i in 0..5 {
        let (s, v) = post(
            c,
            "/predict_ctr",
            &format!(r#"{{"user_id": "u{i}", "ad_id": "a7", "model": "deepfm"}}"#),
        );
        assert_eq!(s, Status::Ok, "{v}");
        out.push((
            v["request_id"].as_str().unwrap().to_string(),
            v["probability"].as_f64().unwrap(),
        ));
    }
    let (s, v) = post(
        c,
        "/batch_predict",
        r#"{"instances": [{"user_id": "u1"}, {"ad_id": "a2"}, {}]}"#,
    );
    assert_eq!(s, Status::Ok, "{v}");
    for p in v["predictions"].as_array().unwrap() {
        out.push((
            v["request_id"].as_str().unwrap().to_string(),
            p.as_f64().unwrap(),
        ));
    }
    out
}

/// The PostgreSQL of the prediction-log test (scripts/postgres.sh starts it).
fn postgres_url() -> String {
    std::env::var("CTR_DL_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

#[test]
fn every_prediction_is_logged_to_sqlite_and_to_postgres() {
    let _turn = lock();
    let d = tempfile::tempdir().unwrap();
    let models = d.path().join("models");
    trained_bundle(d.path(), &models);
    let table = format!("predlog_test_{}", std::process::id());
    let sqlite = d.path().join("logs/predictions.sqlite");
    for target in [sqlite.display().to_string(), postgres_url()] {
        let config = ServeConfig {
            models: models.clone(),
            workers: 1,
            predlog: target.clone(),
            predlog_table: table.clone(),
            ..ServeConfig::default()
        };
        let server = Arc::new(Server::load(config).unwrap());
        let c = Client::tracked(rocket(server.clone())).unwrap();
        let sent = send_eight(&c);
        // Shutdown writes everything queued.
        let log = server.predlog.as_ref().unwrap();
        log.close();
        assert_eq!(
            log.stats.written.load(std::sync::atomic::Ordering::Relaxed),
            8,
            "{target}"
        );
        let rows: Vec<(String, f64, String, String)> = if target.starts_with("postgres") {
            let mut pg = postgres::Client::connect(&postgres_url(), postgres::NoTls).unwrap();
            let rows = pg
                .query(
                    &format!("SELECT request_id, probability, fields::text, model FROM {table}"),
                    &[],
                )
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
                .collect();
            pg.batch_execute(&format!("DROP TABLE {table}")).unwrap();
            rows
        } else {
            let db = rusqlite::Connection::open(&sqlite).unwrap();
            let mut st = db
                .prepare(&format!(
                    "SELECT request_id, probability, fields, model FROM {table}"
                ))
                .unwrap();
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .unwrap()
                .map(|r| r.unwrap())
                .collect()
        };
        assert_eq!(rows.len(), 8, "{target}");
        for (id, p) in &sent {
            assert!(
                rows.iter()
                    .any(|r| &r.0 == id && (r.1 - p).abs() < 1e-7 && r.3 == "deepfm"),
                "{target}: {id} {p} not in {rows:?}"
            );
        }
        let first: Value =
            serde_json::from_str(&rows.iter().find(|r| r.0 == sent[0].0).unwrap().2).unwrap();
        assert_eq!(
            first,
            json!({"user_id": "u0", "ad_id": "a7"}),
            "{target}: fields without model/version"
        );
    }
}

#[test]
fn a_database_that_is_down_never_stops_serving() {
    let _turn = lock();
    let d = tempfile::tempdir().unwrap();
    let models = d.path().join("models");
    trained_bundle(d.path(), &models);
    let config = ServeConfig {
        models: models.clone(),
        workers: 1,
        // Nothing listens on port 1.
        predlog: "postgres://postgres@127.0.0.1:1/test".into(),
        predlog_queue: 2,
        ..ServeConfig::default()
    };
    let server = Arc::new(Server::load(config).unwrap());
    let c = Client::tracked(rocket(server.clone())).unwrap();
    for _ in 0..3 {
        send_eight(&c);
    }
    let metrics = c.get("/metrics").dispatch().into_string().unwrap();
    let dropped: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ctr_predlog_dropped_total "))
        .unwrap()
        .parse()
        .unwrap();
    // 24 predictions; the queue and the writer's batch hold 2 each.
    assert!(dropped >= 20, "{metrics}");
    assert!(metrics.contains("ctr_predlog_written_total 0"));
    let log = server.predlog.as_ref().unwrap();
    log.close_within(std::time::Duration::from_millis(100));
    assert_eq!(
        log.stats.dropped.load(std::sync::atomic::Ordering::Relaxed),
        24
    );
}
