//! Historical features through the real pipeline: the encoded history inputs
//! equal an independent replay of the raw shards merged in time order, and
//! they never depend on a row's own label.
use crate::common;

use std::path::Path;

use arrow::array::{Int8Array, StringArray, TimestampMillisecondArray};
use std::sync::Arc;

use common::{experiment, lock, quiet, read_split, request_rows, simulate_small};
use ctr_dl::data::writer::Split;
use ctr_dl::features::history::{replay, Event, STATE_FILE};
use ctr_dl::features::{prepare, FeatureConfig, RawValue};
use ctr_dl::serve::history::{OnlineHistory, LOG_FILE};
use ctr_dl::serve::{export, rocket, Bundle, EventWindow, ExportOptions, ServeConfig, Server};
use ctr_dl::train::train;
use rocket::http::ContentType;
use rocket::local::blocking::Client;
use serde_json::{json, Value};

fn config() -> FeatureConfig {
    toml::from_str(
        r#"
min_count = 5
[history]
keys = ["user_id", "ad_id", "user_id+ad_id", "device"]
smoothing = 20.0
half_life_hours = 24.0
"#,
    )
    .unwrap()
}

/// Every row of every split as (split, row, event), in time order (ties in
/// split order, then row order).
fn events(
    data: &Path,
    spec: &ctr_dl::features::history::HistorySpec,
) -> Vec<(usize, usize, Event)> {
    let mut all = Vec::new();
    for (s, split) in Split::ALL.into_iter().enumerate() {
        let b = read_split(data, split);
        let t = common::col::<TimestampMillisecondArray>(&b, "time");
        let y = common::col::<Int8Array>(&b, "clicked");
        let cols: Vec<(&str, &StringArray)> = ["user_id", "ad_id", "device"]
            .into_iter()
            .map(|c| (c, common::col::<StringArray>(&b, c)))
            .collect();
        let mut hashes = Vec::new();
        for r in 0..b.num_rows() {
            spec.key_hashes(
                |c| {
                    cols.iter()
                        .find(|(n, _)| *n == c)
                        .map_or(RawValue::Missing, |(_, a)| RawValue::Str(a.value(r)))
                },
                &mut hashes,
            );
            all.push((
                s,
                r,
                Event {
                    time: t.value(r),
                    hashes: hashes.clone(),
                    clicked: y.value(r) != 0,
                },
            ));
        }
    }
    all.sort_by_key(|(s, r, e)| (e.time, *s, *r));
    all
}

#[test]
fn encoded_history_equals_a_replay_of_the_raw_rows_in_time_order() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("sim");
    simulate_small(&data, 20_000, 51);
    let ds = prepare(&data, None, &config(), false).unwrap();
    let map = &ds.features;
    let spec = map.history.as_ref().unwrap();
    assert_eq!(spec.width(), 24);
    let names = ds.meta.dense_names.clone();
    assert!(
        names.contains(&"hist_user_id_x_ad_id_recent".to_string()),
        "{names:?}"
    );
    let first = map.dense.len();
    let nd = map.num_dense();

    let all = events(&data, spec);
    let evs: Vec<Event> = all.iter().map(|x| x.2.clone()).collect();
    let want = replay(spec, &evs);
    let mut by_row: Vec<Vec<Vec<f32>>> = Split::ALL
        .iter()
        .map(|&s| vec![Vec::new(); ds.split(s).rows as usize])
        .collect();
    for ((s, r, _), mut w) in all.iter().zip(want) {
        spec.standardize(&mut w);
        by_row[*s][*r] = w;
    }
    // Standardised with train moments: the train inputs average zero.
    assert_eq!(spec.mean.len(), spec.width());
    assert!(spec.std.iter().all(|&s| s > 0.0));
    // What a row with no past of its own reads.
    let mut none = vec![0f32; spec.width()];
    spec.standardize(&mut none);
    let mut repeats = 0;
    for (s, split) in Split::ALL.into_iter().enumerate() {
        let e = ds.read_all(split).unwrap();
        for (r, want) in by_row[s].iter().enumerate() {
            let got = &e.dense[r * nd + first..r * nd + first + spec.width()];
            assert_eq!(got, &want[..], "{} row {r}", split.name());
            // The user-ad pair seen before: above the standardised zero.
            repeats += (got[12] > none[12]) as usize;
        }
    }
    assert!(
        repeats > 1000,
        "repeat impressions carry history ({repeats})"
    );
}

#[test]
fn history_needs_a_clock_and_real_columns() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("sim");
    simulate_small(&data, 2_000, 52);
    let mut c = config();
    c.history.as_mut().unwrap().keys = vec!["user_id+nope".into()];
    let e = prepare(&data, None, &c, false).unwrap_err().to_string();
    assert!(e.contains("`nope` is not a column"), "{e}");
    let mut c = config();
    c.history.as_mut().unwrap().time_column = Some("user_id".into());
    let e = prepare(&data, None, &c, false).unwrap_err().to_string();
    assert!(e.contains("not a timestamp column"), "{e}");
}

#[test]
fn history_of_no_keys_is_no_history() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("sim");
    simulate_small(&data, 2_000, 53);
    let mut off = config();
    off.history.as_mut().unwrap().keys.clear();
    let ds = prepare(&data, None, &off, false).unwrap();
    assert!(ds.features.history.is_none());
    assert!(ds.meta.dense_names.iter().all(|n| !n.starts_with("hist_")));
    // The same encoding as a config without the section, so the same cache.
    let plain = FeatureConfig {
        history: None,
        ..config()
    };
    assert_eq!(prepare(&data, None, &plain, false).unwrap().dir, ds.dir);
}

/// Train a small LR with the four history keys and export it.
fn history_bundle(dir: &Path, data: &Path) -> std::path::PathBuf {
    let cfg = experiment(
        dir,
        data,
        "lr",
        &[
            "train.epochs=1",
            "features.min_count=5",
            r#"features.history.keys=["user_id","ad_id","user_id+ad_id","device"]"#,
        ],
    );
    let report = train(&cfg, &quiet("hist")).unwrap();
    export(&ExportOptions {
        models_root: dir.join("models"),
        ..ExportOptions::new(&report.run_dir)
    })
    .unwrap()
    .out
}

/// The raw rows of every split as request objects, with `clicked`.
fn raw_rows(data: &Path) -> Vec<Vec<serde_json::Map<String, Value>>> {
    Split::ALL
        .iter()
        .map(|&split| {
            let b = read_split(data, split);
            let y = common::col::<Int8Array>(&b, "clicked");
            request_rows(&b)
                .into_iter()
                .enumerate()
                .map(|(r, v)| {
                    let mut o = v.as_object().unwrap().clone();
                    o.insert("clicked".into(), json!(y.value(r)));
                    o
                })
                .collect()
        })
        .collect()
}

#[test]
fn online_counters_fed_the_same_events_give_the_offline_inputs() {
    let _turn = lock();
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("sim");
    simulate_small(&data, 6_000, 53);
    let bundle_dir = history_bundle(d.path(), &data);
    // The bundle's counters start where the data ends; these start empty, to
    // be fed the data's own events.
    assert!(bundle_dir.join(STATE_FILE).exists());
    std::fs::remove_file(bundle_dir.join(STATE_FILE)).unwrap();
    let b = Bundle::load(&bundle_dir, tch::Device::Cpu).unwrap();
    let h = b.history.as_ref().unwrap();
    let spec = &b.map.history.clone().unwrap();
    let (first, nd, w) = (b.map.history_offset(), b.map.num_dense(), spec.width());

    // Offline: the encoded splits of the run's own cache.
    let cfg: FeatureConfig = toml::from_str(
        "min_count = 5\n[history]\nkeys = [\"user_id\", \"ad_id\", \"user_id+ad_id\", \"device\"]\n",
    )
    .unwrap();
    let ds = prepare(&data, None, &cfg, false).unwrap();
    assert!(ds.reused, "the run's cache");
    let offline: Vec<Vec<f32>> = Split::ALL
        .iter()
        .map(|&s| ds.read_all(s).unwrap().dense)
        .collect();
    let rows = raw_rows(&data);

    // Online: each instant's rows are predicted, then their outcomes posted.
    let all = events(&data, spec);
    let (mut compared, mut nonzero) = (0, 0);
    let mut i = 0;
    while i < all.len() {
        let t = all[i].2.time;
        let mut j = i;
        while j < all.len() && all[j].2.time == t {
            let (s, r, _) = &all[j];
            let (_, dense) = b.encode(&rows[*s][*r], &["clicked"]).unwrap();
            let want = &offline[*s][r * nd + first..r * nd + first + w];
            assert_eq!(&dense[first..first + w], want, "split {s} row {r}");
            compared += 1;
            nonzero += want.iter().any(|v| *v != 0.0) as usize;
            j += 1;
        }
        let group: Vec<_> = all[i..j]
            .iter()
            .map(|(s, r, _)| b.feedback_event(&rows[*s][*r], EventWindow::ANY).unwrap())
            .collect();
        h.feedback(&group).unwrap();
        i = j;
    }
    assert_eq!(compared, 6_000);
    assert!(nonzero > 5_000, "{nonzero}");
    assert_eq!(h.stats().0, 6_000);
}

/// A one-worker server of `models` keeping its counters under `history`,
/// snapshotting only when told to.
fn serve_config(models: &Path, history: &Path) -> ServeConfig {
    ServeConfig {
        models: models.to_path_buf(),
        workers: 1,
        predlog: "off".into(),
        history_dir: history.to_path_buf(),
        history_snapshot_every: 1_000_000,
        // The events are in 2027: the window of event times is
        // tests/it/regression's subject.
        feedback_max_ahead_s: u64::MAX,
        ..ServeConfig::default()
    }
}

fn client(models: &Path, history: &Path) -> (Arc<Server>, Client) {
    let server = Arc::new(Server::load(serve_config(models, history)).unwrap());
    let c = Client::tracked(rocket(server.clone())).unwrap();
    (server, c)
}

fn post(c: &Client, path: &str, body: &Value) -> (u16, Value) {
    let r = c
        .post(path)
        .header(ContentType::JSON)
        .body(body.to_string())
        .dispatch();
    let status = r.status().code;
    (
        status,
        serde_json::from_str(&r.into_string().unwrap()).unwrap(),
    )
}

#[test]
fn feedback_moves_the_counters_and_a_restart_keeps_them() {
    let _turn = lock();
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("sim");
    simulate_small(&data, 6_000, 54);
    let bundle_dir = history_bundle(d.path(), &data);
    let models = bundle_dir.parent().unwrap().parent().unwrap().to_path_buf();
    let hist = d.path().join("history");
    let row = json!({"user_id": "u-new", "ad_id": "a-new", "device": "mobile", "time": "2027-01-01T12:00:00Z"});
    let predict = |c: &Client| {
        post(c, "/predict_ctr", &row).1["probability"]
            .as_f64()
            .unwrap()
    };

    let (_, c) = client(&models, &hist);
    let before = predict(&c);
    let mut events = Vec::new();
    for k in 0..6 {
        let mut e = row.clone();
        e["time"] = json!(format!("2027-01-01T11:0{k}:00Z"));
        e["clicked"] = json!(k % 2);
        events.push(e);
    }
    let (status, body) = post(&c, "/feedback", &json!({"events": events}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 6);
    let after = predict(&c);
    assert!((after - before).abs() > 1e-6, "{before} {after}");
    // Bad feedback names the field and changes nothing.
    let (status, body) = post(&c, "/feedback", &json!({"events": [{"user_id": "u-new"}]}));
    assert_eq!(status, 400);
    assert_eq!(body["field"], "events[0].clicked");
    let (status, body) = post(
        &c,
        "/feedback",
        &json!({"events": [{"clicked": 1, "nope": 2}]}),
    );
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("events[0].nope"))
    );
    assert_eq!(predict(&c), after);
    let info = c
        .get("/model_info")
        .dispatch()
        .into_json::<Value>()
        .unwrap();
    assert_eq!(info["models"][0]["history"]["events"], 6);
    drop(c);

    // A crash (no snapshot): the log replays; a torn last line is skipped.
    let log = hist.join("lr").join("1").join(LOG_FILE);
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 6);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"{\"seq\":7,\"t\":"))
        .unwrap();
    let (server, c) = client(&models, &hist);
    assert_eq!(predict(&c), after);
    // A snapshot empties the log; the next start reads the snapshot.
    server.bundles[0]
        .history
        .as_ref()
        .unwrap()
        .snapshot()
        .unwrap();
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "");
    drop(c);
    drop(server);
    let (_, c) = client(&models, &hist);
    assert_eq!(predict(&c), after);
    drop(c);

    // The bundle exported again under the same version, from other data:
    // the folder's counters are not its own, and the server says so rather
    // than serve them; the folder is left as it was.
    let spec = Bundle::load(&bundle_dir, tch::Device::Cpu)
        .unwrap()
        .map
        .history
        .unwrap();
    ctr_dl::features::history::HistoryState::new(&spec)
        .save(&bundle_dir.join(STATE_FILE), 0)
        .unwrap();
    let own = hist.join("lr").join("1");
    let kept = std::fs::read(own.join(STATE_FILE)).unwrap();
    let err = OnlineHistory::open(
        spec,
        &bundle_dir,
        Some(&own),
        &ctr_dl::serve::history::HistoryOptions::default(),
    )
    .err()
    .expect("another bundle's counters are refused")
    .to_string();
    assert!(
        err.contains("belong to another bundle") && err.contains("bundle.id"),
        "{err}"
    );
    // The server skips the bundle, with that reason on its log.
    let err = Server::load(serve_config(&models, &hist))
        .err()
        .expect("no other bundle to serve")
        .to_string();
    assert!(err.contains("no model bundle could be loaded"), "{err}");
    assert_eq!(std::fs::read(own.join(STATE_FILE)).unwrap(), kept);
}

/// `predict` scores data that comes after the model's with the counters a
/// server starts from: the probabilities the server answers (no feedback in
/// between), from a bundle or from its run; rows the counters already hold
/// (the model's own data) are refused, since their history would hold their
/// own clicks.
#[test]
fn predict_scores_later_traffic_as_the_server_does() {
    use ctr_dl::serve::{predict, PredictOptions};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    let _turn = lock();
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("sim");
    simulate_small(&data, 8_000, 61);
    let bundle = history_bundle(d.path(), &data);
    // The same world's traffic of a later week.
    let later = d.path().join("later");
    let config = ctr_dl::data::simulate::SimConfig {
        start: "2026-03-02T00:00:00Z".into(),
        ..common::small_world()
    };
    common::simulate_into(
        &later,
        2_000,
        61,
        config,
        ctr_dl::data::split::SplitMode::Random,
    );
    let opts = PredictOptions {
        bundle: Some(bundle.clone()),
        run: None,
        input: later.clone(),
        schema: None,
        splits: vec![Split::Test],
        out: d.path().join("p.parquet"),
        keep: vec!["user_id".into(), "clicked".into()],
        device: tch::Device::Cpu,
        batch_size: 64,
        overwrite: false,
        progress: false,
    };
    let read = |path: &Path| -> (Vec<f64>, Vec<String>) {
        let f = std::fs::File::open(path).unwrap();
        let mut p = Vec::new();
        let mut users = Vec::new();
        for b in ParquetRecordBatchReaderBuilder::try_new(f)
            .unwrap()
            .build()
            .unwrap()
        {
            let b = b.unwrap();
            assert_eq!(b.schema().field(2).name(), "probability");
            let prob = b
                .column(2)
                .as_any()
                .downcast_ref::<arrow::array::Float64Array>();
            p.extend(prob.unwrap().values().iter());
            let u = common::col::<StringArray>(&b, "user_id");
            users.extend((0..b.num_rows()).map(|r| u.value(r).to_string()));
        }
        (p, users)
    };
    let r = predict(&opts).unwrap();
    let (got, users) = read(&opts.out);
    let test = read_split(&later, Split::Test);
    assert_eq!(
        (r.rows as usize, got.len()),
        (test.num_rows(), test.num_rows())
    );
    let want_users = common::col::<StringArray>(&test, "user_id");
    assert!(users
        .iter()
        .enumerate()
        .all(|(i, u)| u == want_users.value(i)));

    // The server, fresh from the same bundle, on the same rows.
    let models = bundle.parent().unwrap().parent().unwrap();
    let (_server, c) = client(models, &d.path().join("history"));
    let (status, v) = post(
        &c,
        "/batch_predict",
        &json!({ "instances": request_rows(&test) }),
    );
    assert_eq!(status, 200, "{v}");
    let served: Vec<f64> = v["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_f64().unwrap())
        .collect();
    let worst = got
        .iter()
        .zip(&served)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(worst <= 1e-6, "predict vs served: {worst}");

    // From the run: exported on the way, the same probabilities.
    let run = PredictOptions {
        bundle: None,
        run: Some(
            d.path().join("runs").join(
                std::fs::read_dir(d.path().join("runs"))
                    .unwrap()
                    .next()
                    .unwrap()
                    .unwrap()
                    .file_name(),
            ),
        ),
        out: d.path().join("q.parquet"),
        ..opts.clone()
    };
    predict(&run).unwrap();
    assert_eq!(read(&run.out).0, got);

    // The model's own data: refused, and no output left.
    let own = PredictOptions {
        input: data.clone(),
        out: d.path().join("own.parquet"),
        ..opts.clone()
    };
    let e = predict(&own).unwrap_err().to_string();
    assert!(e.contains("would leak its click"), "{e}");
    assert!(!own.out.exists());
}

/// `features.json` tells a client what the model reads: the slot rule, each
/// field's columns and rows, and every dense input in order with a formula,
/// the history inputs included; the map still loads with it.
#[test]
fn features_json_describes_every_input() {
    let _turn = lock();
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("sim");
    simulate_small(&data, 6_000, 62);
    let bundle = history_bundle(d.path(), &data);
    let path = bundle.join("features.json");
    let map = ctr_dl::features::FeatureMap::load(&path).unwrap();
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let inputs = &v["inputs"];
    assert!(
        inputs["ids"]["slots"]
            .as_str()
            .unwrap()
            .contains("0: missing"),
        "{inputs}"
    );
    let fields = inputs["ids"]["fields"].as_array().unwrap();
    assert_eq!(fields.len(), map.num_fields());
    for (f, offset) in fields.iter().zip(map.offsets()) {
        assert_eq!(f["offset"], offset, "{f}");
        assert!(!f["columns"].as_array().unwrap().is_empty(), "{f}");
    }
    let dense = inputs["dense"]["inputs"].as_array().unwrap();
    assert_eq!(dense.len(), map.num_dense(), "{inputs}");
    assert!(map.num_dense() >= 24, "four history keys, six inputs each");
    for (i, (d, name)) in dense.iter().zip(map.dense_names()).enumerate() {
        assert_eq!(
            (d["index"].as_u64(), d["name"].as_str()),
            (Some(i as u64), Some(name.as_str()))
        );
        assert!(d["formula"].as_str().is_some_and(|f| f.len() > 10), "{d}");
    }
    assert!(
        dense.iter().any(|d| d["name"] == "hist_user_id_imps"),
        "{inputs}"
    );
}
