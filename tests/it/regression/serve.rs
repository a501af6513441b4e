//! Regressions of the prediction service: the prediction log, `/feedback`,
//! the history counters and bundle loading.
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::common::{experiment, lock, quiet, simulate_small};
use ctr_dl::serve::history::{Feedback, HistoryOptions, OnlineHistory};
use ctr_dl::serve::predlog::{PredLog, PredLogOptions, Record, Target};
use ctr_dl::serve::{export, rocket, Bundle, ExportOptions, ServeConfig, Server};
use ctr_dl::train::train;
use rocket::http::{ContentType, Header};
use rocket::local::blocking::Client;
use serde_json::{json, Value};

/// One LR bundle with history counters (`hist/1`), trained once for every
/// test of this binary; tests copy it into models folders of their own.
fn trained() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let _turn = lock();
        let d = tempfile::tempdir().unwrap();
        let data = d.path().join("sim");
        simulate_small(&data, 4_000, 61);
        let cfg = experiment(
            d.path(),
            &data,
            "lr",
            &[
                "train.epochs=1",
                "features.min_count=5",
                r#"features.history.keys=["user_id","ad_id"]"#,
            ],
        );
        let report = train(&cfg, &quiet("hist")).unwrap();
        export(&ExportOptions {
            models_root: d.path().join("models"),
            out: Some(d.path().join("models/hist/1")),
            ..ExportOptions::new(&report.run_dir)
        })
        .unwrap();
        d
    })
    .path()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// A copy of the trained bundle as `models/NAME/VERSION` (its metadata
/// naming it so).
fn bundle_as(models: &Path, name: &str, version: &str) -> PathBuf {
    let dir = models.join(name).join(version);
    copy_dir(&trained().join("models/hist/1"), &dir);
    set_meta(&dir, |m| {
        m["name"] = json!(name);
        m["version"] = json!(version);
    });
    dir
}

fn set_meta(dir: &Path, f: impl FnOnce(&mut Value)) {
    let path = dir.join("metadata.json");
    let mut m: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    f(&mut m);
    std::fs::write(&path, m.to_string()).unwrap();
}

fn config(root: &Path) -> ServeConfig {
    ServeConfig {
        models: root.join("models"),
        history_dir: root.join("history"),
        workers: 1,
        predlog: "off".into(),
        ..ServeConfig::default()
    }
}

fn client(config: ServeConfig) -> (Arc<Server>, Client) {
    let server = Arc::new(Server::load(config).unwrap());
    let c = Client::tracked(rocket(server.clone())).unwrap();
    (server, c)
}

/// POST a JSON body with extra headers; (status, JSON answer).
fn post(c: &Client, path: &str, body: &Value, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut req = c
        .post(path)
        .header(ContentType::JSON)
        .body(body.to_string());
    for (k, v) in headers {
        req = req.header(Header::new(k.to_string(), v.to_string()));
    }
    let r = req.dispatch();
    let status = r.status().code;
    let text = r.into_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339()
}

fn record(i: usize, fields: &Value) -> Record {
    Record {
        request_id: format!("r{i}"),
        time_ms: 1_700_000_000_000 + i as i64,
        model: "m".into(),
        version: "1".into(),
        fields: fields.to_string(),
        probability: 0.5,
        latency_ms: 1.0,
    }
}

fn postgres_url() -> String {
    std::env::var("CTR_DL_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Run `f` on a thread and fail (rather than hang) if it takes over `limit`.
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("did not finish within {limit:?}"))
}

/// Finding 1: PostgreSQL's `jsonb` refuses `\u0000`; the writer retried that
/// batch forever, wrote nothing after it, and shutdown never ended.
#[test]
fn a_record_postgres_refuses_is_set_aside_and_the_rest_are_written() {
    let d = tempfile::tempdir().unwrap();
    let table = format!("regress_nul_{}", std::process::id());
    let dead = d.path().join("rejected.jsonl");
    let log = PredLog::start_with(
        Target::Postgres(postgres_url()),
        &table,
        PredLogOptions {
            capacity: 1000,
            max_bytes: usize::MAX,
            dead_letter: Some(dead.clone()),
        },
    )
    .unwrap();
    for i in 0..20 {
        let fields = if i == 7 {
            json!({"user_id": "a\u{0}b"})
        } else {
            json!({"user_id": format!("u{i}")})
        };
        assert!(log.log(record(i, &fields)));
    }
    let log = Arc::new(log);
    let closing = log.clone();
    let started = Instant::now();
    within(Duration::from_secs(30), move || {
        closing.close_within(Duration::from_secs(5))
    });
    let took = started.elapsed();
    assert!(took < Duration::from_secs(6), "shutdown took {took:?}");
    assert_eq!(log.stats.written.load(Ordering::Relaxed), 19);
    assert_eq!(log.stats.rejected.load(Ordering::Relaxed), 1);
    assert_eq!(log.stats.dropped.load(Ordering::Relaxed), 0);
    let mut pg = postgres::Client::connect(&postgres_url(), postgres::NoTls).unwrap();
    let n: i64 = pg
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .unwrap()
        .get(0);
    pg.batch_execute(&format!("DROP TABLE {table}")).unwrap();
    assert_eq!(n, 19, "every record but the refused one is in the table");
    let lines: Vec<Value> = std::fs::read_to_string(&dead)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["request_id"], "r7");
    assert!(
        lines[0]["reason"]
            .as_str()
            .unwrap()
            .contains("Unicode escape"),
        "{lines:?}"
    );
    assert_eq!(
        lines[0]["fields"]["user_id"], "a\u{0}b",
        "the record is kept whole"
    );
}

/// Finding 1: the grace timer restarted on every reconnection, so a
/// database that keeps failing held shutdown for ever.
#[test]
fn shutdown_ends_within_its_grace_whatever_the_database_does() {
    // Nothing listens on port 1: every connection attempt fails at once.
    let log = Arc::new(
        PredLog::start(
            Target::Postgres("postgres://postgres@127.0.0.1:1/test".into()),
            "t",
            1000,
        )
        .unwrap(),
    );
    for i in 0..50 {
        log.log(record(i, &json!({})));
    }
    std::thread::sleep(Duration::from_millis(300));
    let closing = log.clone();
    let started = Instant::now();
    within(Duration::from_secs(30), move || {
        closing.close_within(Duration::from_secs(2))
    });
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(4),
        "shutdown took {took:?}, the grace is 2 s"
    );
    assert_eq!(log.stats.dropped.load(Ordering::Relaxed), 50);
}

/// Finding 2: `/feedback` took anyone's clicks, as `text/plain` too, and an
/// event time of 9999-12-31 froze a pair's counters.
#[test]
fn feedback_needs_its_token_a_json_body_and_a_believable_time() {
    let d = tempfile::tempdir().unwrap();
    bundle_as(&d.path().join("models"), "hist", "1");
    let (_, c) = client(ServeConfig {
        feedback_token: "s3cret-token".into(),
        ..config(d.path())
    });
    let event = |time: &str| json!({"events": [{"user_id": "u1", "ad_id": "a1", "time": time, "clicked": 1}]});
    let now = event(&now_rfc3339());
    let auth = [("Authorization", "Bearer s3cret-token")];
    assert_eq!(post(&c, "/feedback", &now, &[]).0, 401);
    assert_eq!(
        post(
            &c,
            "/feedback",
            &now,
            &[("Authorization", "Bearer s3cret-tokex")]
        )
        .0,
        401
    );
    assert_eq!(
        post(&c, "/feedback", &now, &[("Authorization", "s3cret-token")]).0,
        401
    );
    // A body any web page can post cross-origin without a preflight.
    let r = c
        .post("/feedback")
        .header(ContentType::Plain)
        .header(Header::new("Authorization", "Bearer s3cret-token"))
        .body(now.to_string())
        .dispatch();
    assert_eq!(r.status().code, 415);
    let r = c
        .post("/predict_ctr")
        .header(ContentType::Form)
        .body(json!({"user_id": "u1"}).to_string())
        .dispatch();
    assert_eq!(r.status().code, 415);
    let (status, body) = post(&c, "/feedback", &now, &auth);
    assert_eq!(status, 200, "{body}");
    // Event times outside the window name the event.
    for time in [
        "9999-12-31T23:59:59Z",
        &(chrono::Utc::now() - chrono::Duration::days(8)).to_rfc3339(),
        &(chrono::Utc::now() + chrono::Duration::minutes(10)).to_rfc3339(),
    ] {
        let (status, body) = post(&c, "/feedback", &event(time), &auth);
        assert_eq!(status, 400, "{time}: {body}");
        assert_eq!(body["field"], "events[0].time", "{body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("outside the window"),
            "{body}"
        );
    }
    // The token may come from the environment; without any, no 401.
    let (_, open) = client(config(d.path()));
    assert_eq!(post(&open, "/feedback", &now, &[]).0, 200);
}

/// Finding 2: with no event ids, a retried feedback batch counted twice.
#[test]
fn a_retried_feedback_batch_is_applied_once() {
    let d = tempfile::tempdir().unwrap();
    bundle_as(&d.path().join("models"), "hist", "1");
    let t = now_rfc3339();
    let batch = |ids: &[&str]| {
        json!({"events": ids.iter().map(|id| json!({
            "user_id": "u-retry", "ad_id": "a-retry", "time": t, "clicked": 1, "event_id": id,
        })).collect::<Vec<_>>()})
    };
    let row = json!({"user_id": "u-retry", "ad_id": "a-retry", "time": t});
    let predict = |c: &Client| post(c, "/predict_ctr", &row, &[]).1["probability"].clone();
    let applied = |body: &Value| {
        (
            body["models"][0]["applied"].as_u64().unwrap(),
            body["models"][0]["duplicates"].as_u64().unwrap(),
        )
    };
    let p_after_first;
    {
        let (server, c) = client(config(d.path()));
        let (status, body) = post(&c, "/feedback", &batch(&["e1", "e2", "e3"]), &[]);
        assert_eq!(status, 200, "{body}");
        assert_eq!(applied(&body), (3, 0));
        p_after_first = predict(&c);
        // The retry, and a batch with one new event and one repeated twice.
        let (_, body) = post(&c, "/feedback", &batch(&["e1", "e2", "e3"]), &[]);
        assert_eq!(applied(&body), (0, 3));
        assert_eq!(predict(&c), p_after_first);
        let (_, body) = post(&c, "/feedback", &batch(&["e4", "e4", "e2"]), &[]);
        assert_eq!(applied(&body), (1, 2));
        let h = server.bundles[0].history.as_ref().unwrap();
        assert_eq!(h.stats().0, 4);
        h.snapshot().unwrap();
        // Ids that are not strings or integers are refused, naming the event.
        let mut bad = batch(&["x"]);
        bad["events"][0]["event_id"] = json!({"a": 1});
        let (status, body) = post(&c, "/feedback", &bad, &[]);
        assert_eq!(
            (status, body["field"].as_str()),
            (400, Some("events[0].event_id"))
        );
    }
    // After a restart (from the snapshot), a retry is still recognised.
    let (server, c) = client(config(d.path()));
    let (_, body) = post(&c, "/feedback", &batch(&["e1", "e4"]), &[]);
    assert_eq!(applied(&body), (0, 2));
    assert_eq!(server.bundles[0].history.as_ref().unwrap().stats().0, 4);
}

/// Finding 2: nothing said that `/feedback` was open to the network.
#[test]
fn serving_beyond_loopback_without_a_feedback_token_is_warned_about() {
    let d = tempfile::tempdir().unwrap();
    bundle_as(&d.path().join("models"), "hist", "1");
    let (mut child, port) = spawn_serve(d.path(), &["--address", "0.0.0.0"]);
    let out = stop(&mut child, port);
    assert!(
        out.contains("warning") && out.contains("no feedback_token"),
        "{out}"
    );
    let (mut child, port) = spawn_serve_env(
        d.path(),
        &["--address", "0.0.0.0"],
        &[("CTR_DL_FEEDBACK_TOKEN", "t0ken")],
    );
    // The token from the environment is required.
    let body = json!({"events": [{"user_id": "u1", "clicked": 0}]}).to_string();
    let answer = |auth: &str| {
        http(
            port,
            &format!(
                "POST /feedback HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
                 Content-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        )
        .unwrap()
    };
    assert!(answer("").starts_with("HTTP/1.1 401"));
    let ok = answer("Authorization: Bearer t0ken\r\n");
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    let out = stop(&mut child, port);
    assert!(!out.contains("no feedback_token"), "{out}");
}

/// Finding 3: connections that sent half a request were held for ever, and
/// with the file limit reached `/health` stopped answering.
#[test]
fn slow_clients_cannot_starve_health() {
    let d = tempfile::tempdir().unwrap();
    bundle_as(&d.path().join("models"), "hist", "1");
    let cfg = d.path().join("serve.toml");
    std::fs::write(
        &cfg,
        "header_read_timeout_s = 1.5\nbody_read_timeout_s = 1.5\nmax_connections = 40\n",
    )
    .unwrap();
    let (mut child, port) = spawn_serve(d.path(), &["--config", cfg.to_str().unwrap()]);
    let half = |head: &str| {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(head.as_bytes()).unwrap();
        s
    };
    let mut held: Vec<TcpStream> = (0..60)
        .map(|_| half("GET /health HTTP/1.1\r\nHost: x\r\n"))
        .collect();
    // Over the limit: a 503 at once, and closed.
    let mut refused = 0;
    for s in &mut held {
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 64];
        if let Ok(n) = s.read(&mut buf) {
            if buf[..n].starts_with(b"HTTP/1.1 503") {
                refused += 1;
            }
        }
    }
    assert_eq!(refused, 20, "connections over max_connections get a 503");
    // Past the header timeout, the server has closed every held connection.
    std::thread::sleep(Duration::from_millis(2500));
    for (i, s) in held.iter_mut().enumerate() {
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 64];
        match s.read(&mut buf) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("connection {i} still held after the header timeout: {e}"),
        }
    }
    let health = http(
        port,
        "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    // A body that never comes: 408 once the body timeout is over.
    let mut slow = half(
        "POST /predict_ctr HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: 100\r\n\r\n{\"user_id\"",
    );
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    let mut answer = [0u8; 64];
    let n = slow.read(&mut answer).unwrap();
    assert!(
        answer[..n].starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&answer[..n])
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(held);
    stop(&mut child, port);
}

/// Finding 4: with the database down, 1 MB records filled memory without
/// bound (the queue counted records, not bytes).
#[test]
fn the_prediction_log_queue_is_bounded_by_bytes() {
    let log = PredLog::start_with(
        Target::Postgres("postgres://postgres@127.0.0.1:1/test".into()),
        "t",
        PredLogOptions {
            capacity: 100_000,
            max_bytes: 8 << 20,
            dead_letter: None,
        },
    )
    .unwrap();
    let big = json!({"user_id": "x".repeat(1 << 20)});
    let mut taken = 0;
    for i in 0..400 {
        taken += log.log(record(i, &big)) as usize;
        assert!(log.queued_bytes() <= 8 << 20, "{}", log.queued_bytes());
        if i % 50 == 0 {
            // The writer retries every 0.5 s and takes what is queued into
            // its batch: the records it holds count against the bound too
            // (in a server, 400 such requests took RSS from 452 to 868 MB
            // with a 64 MiB bound, none dropped).
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    // About 8 MiB of 1 MiB records, queued or held by the writer.
    assert!((7..=8).contains(&taken), "{taken} records taken");
    assert_eq!(
        log.stats.dropped.load(Ordering::Relaxed),
        400 - taken as u64
    );
    log.close_within(Duration::from_millis(100));
}

/// Finding 5: an 83 MB snapshot was written while holding the lock that
/// predictions read the counters under (stalls of up to 1.59 s).
#[test]
fn a_snapshot_being_written_does_not_block_predictions() {
    let d = tempfile::tempdir().unwrap();
    let models = d.path().join("models");
    let bundle = bundle_as(&models, "hist", "1");
    let b = Bundle::load(&bundle, tch::Device::Cpu).unwrap();
    let spec = b.map.history.clone().unwrap();
    let dir = d.path().join("history");
    let h = Arc::new(
        OnlineHistory::open(
            spec.clone(),
            &bundle,
            Some(&dir),
            &HistoryOptions::default(),
        )
        .unwrap(),
    );
    let events: Vec<Feedback> = (0..100)
        .map(|i| Feedback {
            time: 1_800_000_000_000 + i,
            hashes: vec![i as u64, 1_000 + i as u64],
            clicked: i % 3 == 0,
            id: None,
        })
        .collect();
    h.feedback(&events).unwrap();
    // The snapshot's temporary file is a FIFO: writing it blocks until the
    // test reads it, which holds the snapshot in the middle of its write.
    let fifo = dir.join(format!(".history.state.{}.tmp", std::process::id()));
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let writer = {
        let h = h.clone();
        std::thread::spawn(move || h.snapshot())
    };
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !writer.is_finished(),
        "the snapshot should wait on the FIFO"
    );
    let reader = h.clone();
    let mut out = vec![0f32; spec.width()];
    within(Duration::from_secs(10), move || {
        reader
            .read(&[5, 1_005], 1_800_000_000_100, &mut out)
            .unwrap();
        // Feedback waits only for the short copy, not for the write either.
        reader
            .feedback(&[Feedback {
                time: 1_800_000_000_200,
                hashes: vec![5, 1_005],
                clicked: true,
                id: None,
            }])
            .unwrap();
    });
    // Let the snapshot finish (a FIFO cannot be synced: it fails, which the
    // next start must survive).
    let mut sink = Vec::new();
    std::fs::File::open(&fifo)
        .unwrap()
        .read_to_end(&mut sink)
        .unwrap();
    assert!(!sink.is_empty());
    let _ = writer.join().unwrap();
    let _ = std::fs::remove_file(&fifo);
    let _ = std::fs::remove_file(dir.join("history.state"));
    drop(h);
    // Every event is back after a restart: the closed log is replayed.
    let again = OnlineHistory::open(spec, &bundle, Some(&dir), &HistoryOptions::default()).unwrap();
    assert_eq!(again.stats().0, 101);
}

/// Finding 6: a password in the URL's query was printed, and `/model_info`
/// showed absolute bundle paths.
#[test]
fn no_secret_or_absolute_path_is_shown() {
    for url in [
        "postgres://app:hunter2@db:5432/ctr",
        "postgres://app@db/ctr?password=hunter2",
        "postgresql://app@db/ctr?sslmode=require&PassWord=hunter2&sslpassword=hunter2",
    ] {
        let shown = Target::parse(url).describe();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("db") && shown.contains("***"), "{shown}");
    }
    assert!(Target::parse("postgres://app@db/ctr?sslmode=require")
        .describe()
        .contains("sslmode=require"));
    let d = tempfile::tempdir().unwrap();
    bundle_as(&d.path().join("models"), "hist", "1");
    let (_, c) = client(ServeConfig {
        predlog: "postgres://app@127.0.0.1:1/ctr?password=hunter2".into(),
        ..config(d.path())
    });
    let info = c.get("/model_info").dispatch().into_string().unwrap();
    assert!(!info.contains("hunter2"), "{info}");
    let root = d.path().display().to_string();
    assert!(!info.contains(&root), "{info}");
    let v: Value = serde_json::from_str(&info).unwrap();
    assert_eq!(v["models"][0]["dir"], "hist/1");
    // Nor does the start-up log.
    let (mut child, port) = spawn_serve(
        d.path(),
        &[
            "--predlog",
            "postgres://app@127.0.0.1:1/ctr?password=hunter2",
        ],
    );
    let out = stop(&mut child, port);
    assert!(out.contains("***") && !out.contains("hunter2"), "{out}");
    assert!(!out.contains(&root), "{out}");
}

/// Finding 7: with `shadow/2` truncated, `shadow/1` was not served either.
#[test]
fn a_broken_newest_version_falls_back_to_the_newest_that_loads() {
    let d = tempfile::tempdir().unwrap();
    let models = d.path().join("models");
    bundle_as(&models, "shadow", "1");
    let v2 = bundle_as(&models, "shadow", "2");
    let pt = std::fs::read(v2.join("model.pt")).unwrap();
    std::fs::write(v2.join("model.pt"), &pt[..pt.len() / 2]).unwrap();
    let (server, c) = client(config(d.path()));
    assert_eq!(server.bundles.len(), 1);
    assert_eq!(server.bundles[0].version, "1");
    let info: Value =
        serde_json::from_str(&c.get("/model_info").dispatch().into_string().unwrap()).unwrap();
    assert_eq!(info["skipped"][0]["dir"], "shadow/2", "{info}");
    assert!(info["skipped"][0]["error"]
        .as_str()
        .unwrap()
        .contains("model.pt"));
    let (status, body) = post(
        &c,
        "/predict_ctr",
        &json!({"model": "shadow", "user_id": "u1"}),
        &[],
    );
    assert_eq!(
        (status, body["version"].as_str()),
        (200, Some("1")),
        "{body}"
    );
}

/// Finding 10: a corrupt `history.state` still claimed the history folder,
/// a name like `../../../x` wrote outside it, two bundles of one name and
/// version both loaded, and a `model.pt` folder vanished without a word.
#[test]
fn bundles_with_unsafe_names_duplicates_or_broken_files_are_skipped_with_the_reason() {
    let d = tempfile::tempdir().unwrap();
    let models = d.path().join("models");
    // A corrupt history.state: skipped, and the folder is not claimed.
    let corrupt = bundle_as(&models, "corrupt", "1");
    let state = std::fs::read(corrupt.join("history.state")).unwrap();
    std::fs::write(corrupt.join("history.state"), &state[..state.len() / 3]).unwrap();
    // Names that are not plain folder names.
    let escape = bundle_as(&models, "escape", "1");
    set_meta(&escape, |m| m["name"] = json!("../../../x"));
    let dotted = bundle_as(&models, "dotted", "1");
    set_meta(&dotted, |m| m["version"] = json!(".."));
    // Two folders whose metadata name the same model and version.
    bundle_as(&models, "twin", "1");
    let twin = bundle_as(&models, "twin2", "1");
    set_meta(&twin, |m| m["name"] = json!("twin"));
    // model.pt as a folder.
    let folder = bundle_as(&models, "folder", "1");
    std::fs::remove_file(folder.join("model.pt")).unwrap();
    std::fs::create_dir(folder.join("model.pt")).unwrap();

    let (server, c) = client(config(d.path()));
    let served: Vec<String> = server
        .bundles
        .iter()
        .map(|b| format!("{}/{}", b.name, b.version))
        .collect();
    assert_eq!(served, ["twin/1"], "{served:?}");
    let info: Value =
        serde_json::from_str(&c.get("/model_info").dispatch().into_string().unwrap()).unwrap();
    let why = |dir: &str| {
        info["skipped"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["dir"] == dir)
            .unwrap_or_else(|| panic!("{dir} not in {info}"))["error"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(why("corrupt/1").contains("history.state"));
    assert!(why("escape/1").contains("not a plain folder name"));
    assert!(why("dotted/1").contains("not a plain folder name"));
    assert!(why("twin2/1").contains("already serves"));
    assert!(why("folder/1").contains("model.pt: not a file"));
    // Nothing was written outside the history folder, and the corrupt
    // bundle's folder holds no claim.
    assert!(!d.path().join("x").exists() && !d.path().parent().unwrap().join("x").exists());
    assert!(!d.path().join("history/corrupt/1/bundle.id").exists());
    drop((server, c));
    // Repaired, it loads.
    std::fs::write(corrupt.join("history.state"), &state).unwrap();
    let (server, _) = client(config(d.path()));
    assert!(server.bundles.iter().any(|b| b.name == "corrupt"));
}

/// Finding 11: `/feedback` with `version` and no `model` ignored the version.
#[test]
fn feedback_naming_a_version_without_a_model_is_refused() {
    let d = tempfile::tempdir().unwrap();
    bundle_as(&d.path().join("models"), "hist", "1");
    let (server, c) = client(config(d.path()));
    let body =
        json!({"version": "1", "events": [{"user_id": "u1", "clicked": 0, "time": now_rfc3339()}]});
    let (status, answer) = post(&c, "/feedback", &body, &[]);
    assert_eq!(
        (status, answer["field"].as_str()),
        (400, Some("version")),
        "{answer}"
    );
    assert_eq!(server.bundles[0].history.as_ref().unwrap().stats().0, 0);
}

/// Finding 11: a crash's `.history.state.<pid>.tmp` was never removed.
#[test]
fn a_crashed_servers_temporary_files_are_removed_at_start() {
    let d = tempfile::tempdir().unwrap();
    bundle_as(&d.path().join("models"), "hist", "1");
    let hist = d.path().join("history/hist/1");
    std::fs::create_dir_all(&hist).unwrap();
    // A pid that is not running (above the kernel's largest).
    let stale = hist.join(".history.state.4194305.tmp");
    std::fs::write(&stale, b"half a snapshot").unwrap();
    let ours = hist.join(format!(".history.state.{}.tmp", std::process::id()));
    std::fs::write(&ours, b"in use").unwrap();
    let _served = client(config(d.path()));
    assert!(!stale.exists());
    assert!(ours.exists(), "a live process's file is left alone");
}

/// Finding 13: unmatched URLs were logged in full, with colour codes.
#[test]
fn unmatched_urls_are_not_logged_with_colour_codes() {
    let d = tempfile::tempdir().unwrap();
    bundle_as(&d.path().join("models"), "hist", "1");
    let (mut child, port) = spawn_serve(d.path(), &[]);
    let long = format!("/nope/{}?q=%1b[31m", "a".repeat(5000));
    for path in [long.as_str(), "/%ff%fe", "/x?y=\u{1b}"] {
        let _ = http(
            port,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        );
    }
    let out = stop(&mut child, port);
    assert!(!out.contains('\u{1b}'), "{out:?}");
    assert!(!out.contains(&"a".repeat(5000)), "{out}");
}

/// Finding 13: the image's history counters were not on a volume.
#[test]
fn the_images_keep_history_counters_on_a_volume() {
    for file in ["Dockerfile", "Dockerfile.gpu"] {
        let text =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap();
        let volume = text
            .lines()
            .find(|l| l.starts_with("VOLUME"))
            .unwrap_or_else(|| panic!("{file}: no VOLUME"));
        assert!(volume.contains("\"/history\""), "{file}: {volume}");
        assert!(
            text.contains("HISTORY_DIR=/history")
                && text.contains("--history-dir \\\"$HISTORY_DIR\\\""),
            "{file}: the server must be told to keep its counters there"
        );
    }
}

// --- the binary -----------------------------------------------------------

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One raw HTTP exchange; the answer as text.
fn http(port: u16, request: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(request.as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// `ctr-dl serve` on the models and history folders under `root`, ready.
fn spawn_serve(root: &Path, extra: &[&str]) -> (Child, u16) {
    spawn_serve_env(root, extra, &[])
}

fn spawn_serve_env(root: &Path, extra: &[&str], env: &[(&str, &str)]) -> (Child, u16) {
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ctr-dl"));
    cmd.env_remove("CTR_DL_FEEDBACK_TOKEN")
        .envs(env.iter().copied());
    cmd.arg("serve")
        .arg("--models")
        .arg(root.join("models"))
        .arg("--history-dir")
        .arg(root.join("history"))
        .args(["--port", &port.to_string(), "--workers", "1"]);
    if !extra.contains(&"--predlog") {
        cmd.args(["--predlog", "off"]);
    }
    let mut child = cmd
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if let Ok(a) = http(
            port,
            "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        ) {
            if a.starts_with("HTTP/1.1 200") {
                return (child, port);
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("ctr-dl serve exited with {status}: {err}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "not ready in 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGTERM the server and return what it printed (stdout, then stderr).
fn stop(child: &mut Child, _port: u16) -> String {
    // SAFETY: signals our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let mut text = String::new();
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn Read>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        for line in BufReader::new(stream).lines() {
            text.push_str(&line.unwrap_or_default());
            text.push('\n');
        }
    }
    child.wait().unwrap();
    text
}

/// Issue 20, part 4: a wrong method is a 405 that names the allowed one; every
/// request has one access-log line (method, path, status, latency, request
/// id, the id also in `X-Request-Id`) and Rocket's own lines about unmatched
/// requests are gone; a taken port is said, with its address, before any
/// line claims to serve.
#[test]
fn wrong_methods_the_access_log_and_a_taken_port() {
    let d = tempfile::tempdir().unwrap();
    bundle_as(&d.path().join("models"), "hist", "1");
    let (mut child, port) = spawn_serve(d.path(), &[]);
    let get = |path: &str| {
        http(
            port,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        )
        .unwrap()
    };
    let a = get("/predict_ctr");
    assert!(a.starts_with("HTTP/1.1 405"), "{a}");
    assert!(a.to_lowercase().contains("\r\nallow: post\r\n"), "{a}");
    assert!(a.contains("method not allowed (use POST)"), "{a}");
    let id = a
        .lines()
        .find_map(|l| {
            l.to_lowercase()
                .strip_prefix("x-request-id: ")
                .map(str::to_string)
        })
        .expect("an X-Request-Id header");
    assert!(get("/nothing").starts_with("HTTP/1.1 404"));

    let o = Command::new(env!("CARGO_BIN_EXE_ctr-dl"))
        .args([
            "serve",
            "--predlog",
            "off",
            "--port",
            &port.to_string(),
            "--models",
        ])
        .arg(d.path().join("models"))
        .output()
        .unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(!o.status.success());
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{err}"
    );
    assert!(!out.contains("serve: http://"), "{out}");

    let log = stop(&mut child, port);
    assert!(
        log.lines()
            .any(|l| l.starts_with("GET /predict_ctr 405 ") && l.ends_with(&id)),
        "{log}"
    );
    assert!(
        log.lines().any(|l| l.starts_with("GET /nothing 404 ")),
        "{log}"
    );
    for noise in [
        "Responding with registered",
        "No matching routes",
        "Rocket has launched",
    ] {
        assert!(!log.contains(noise), "{noise}: {log}");
    }
}

/// Issue 20, part 4: `/openapi.json` describes every route with the loaded
/// model's fields, and schemathesis (from the project venv) fuzzing the live
/// server against it finds no 5xx, no undocumented status or content type
/// and no answer off its schema; `/docs` and `/` lead to it.
#[test]
fn the_openapi_contract_holds_under_schemathesis() {
    let d = tempfile::tempdir().unwrap();
    bundle_as(&d.path().join("models"), "hist", "1");
    let (mut child, port) = spawn_serve(d.path(), &["--quiet"]);
    let get = |path: &str| {
        http(
            port,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        )
        .unwrap()
    };
    let spec = get("/openapi.json");
    assert!(spec.starts_with("HTTP/1.1 200"), "{spec}");
    let body: Value = serde_json::from_str(spec.split_once("\r\n\r\n").unwrap().1).unwrap();
    for path in [
        "/predict_ctr",
        "/batch_predict",
        "/feedback",
        "/health",
        "/model_info",
        "/metrics",
    ] {
        assert!(
            body["paths"].get(path).is_some(),
            "{path} is not in the spec"
        );
    }
    let fields = &body["components"]["schemas"]["Fields_hist_1"]["properties"];
    assert!(fields.get("user_id").is_some(), "{fields}");
    assert!(get("/docs").contains("/openapi.json"));
    assert!(get("/").starts_with("HTTP/1.1 303"));

    let python = crate::common::venv_python();
    let st = python.with_file_name("schemathesis");
    let o = Command::new("timeout")
        .current_dir(d.path())
        .arg("240")
        .arg(&st)
        .args(["run", &format!("http://127.0.0.1:{port}/openapi.json")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            "--max-examples",
            "25",
            "--request-timeout",
            "10",
            "--seed",
            "2018",
        ])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    stop(&mut child, port);
    assert!(
        o.status.success(),
        "schemathesis found failures (is it installed? scripts/test.sh installs it):\n{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
