//! The event-file writer against TensorBoard's own Python reader (the
//! `tensorboard` package in the project venv): every record's CRCs check out,
//! and scalars, histograms, text and the hparams plugin data read back as
//! written.
use crate::common;

use std::path::Path;
use std::process::Command;

use ctr_dl::tensorboard::{EventWriter, HParamValue};
use serde_json::Value;

/// Reads one event file with TensorBoard and prints what it found as JSON.
const READER: &str = r#"
import bisect, json, struct, sys
from tensorboard.backend.event_processing import event_accumulator, event_file_loader
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.tensorflow_stub import errors, pywrap_tensorflow
from tensorboard.plugins.hparams import metadata as hp_metadata
from tensorboard.plugins.hparams import api_pb2

path = sys.argv[1]
out = {}

# 1. Every record by hand: the framing and both masked CRCs.
raw = open(path, "rb").read()
pos, n = 0, 0
while pos < len(raw):
    (length,) = struct.unpack("<Q", raw[pos:pos + 8])
    (len_crc,) = struct.unpack("<I", raw[pos + 8:pos + 12])
    assert len_crc == pywrap_tensorflow.masked_crc32c(raw[pos:pos + 8]), f"length crc of record {n}"
    data = raw[pos + 12:pos + 12 + length]
    (data_crc,) = struct.unpack("<I", raw[pos + 12 + length:pos + 16 + length])
    assert data_crc == pywrap_tensorflow.masked_crc32c(data), f"data crc of record {n}"
    event_pb2.Event.FromString(data)
    pos += 16 + length
    n += 1
assert pos == len(raw), "trailing bytes"
out["records"] = n

# 2. TensorBoard's record reader, which raises DataLossError on a bad CRC.
reader = pywrap_tensorflow.PyRecordReader_New(path)
m = 0
while True:
    try:
        reader.GetNext()
    except errors.OutOfRangeError:
        break
    event = event_pb2.Event.FromString(reader.record())
    if m == 0:
        out["file_version"] = event.file_version
    m += 1
out["reader_records"] = m

# 3. The loader TensorBoard's server uses (with its read-time migrations):
#    which plugin each tag lands in.
plugins = {}
for event in event_file_loader.EventFileLoader(path).Load():
    for v in event.summary.value:
        if v.HasField("metadata") and v.tag not in plugins:
            plugins[v.tag] = v.metadata.plugin_data.plugin_name
out["plugins"] = plugins

# 4. The event accumulator.
ea = event_accumulator.EventAccumulator(path, size_guidance=event_accumulator.STORE_EVERYTHING_SIZE_GUIDANCE)
ea.Reload()
tags = ea.Tags()
out["scalars"] = {t: [[e.step, e.value] for e in ea.Scalars(t)] for t in tags["scalars"]}

# TensorFlow's default bucket limits, to check the writer's against.
v, pos_limits = 1e-12, []
while v < 1e20:
    pos_limits.append(v)
    v *= 1.1
tf_limits = set([-x for x in pos_limits] + [0.0] + pos_limits + [sys.float_info.max])
hists = {}
for t in tags["histograms"]:
    hists[t] = []
    for e in ea.Histograms(t):
        h = e.histogram_value
        limits, counts = list(h.bucket_limit), list(h.bucket)
        hists[t].append({
            "step": e.step, "min": h.min, "max": h.max, "num": h.num, "sum": h.sum,
            "sum_squares": h.sum_squares, "limits": limits, "counts": counts,
            "limits_are_tf_defaults": all(l in tf_limits for l in limits),
        })
out["histograms"] = hists

out["text"] = {}
for t in tags["tensors"]:
    out["text"][t] = [[e.step, [s.decode("utf-8") for s in e.tensor_proto.string_val],
                       [d.size for d in e.tensor_proto.tensor_shape.dim]] for e in ea.Tensors(t)]
try:
    out["text_tags"] = sorted(ea.PluginTagToContent("text"))
except KeyError:
    out["text_tags"] = []

content = ea.PluginTagToContent("hparams")
out["hparams_tags"] = sorted(content)
start = hp_metadata.parse_session_start_info_plugin_data(content["_hparams_/session_start_info"])
vals = {}
for k, val in start.hparams.items():
    kind = val.WhichOneof("kind")
    vals[k] = [kind, getattr(val, kind)]
out["session_start"] = {"hparams": vals, "start_time_secs": start.start_time_secs}
end = hp_metadata.parse_session_end_info_plugin_data(content["_hparams_/session_end_info"])
out["session_end"] = {"status": api_pb2.Status.Name(end.status),
                      "end_time_secs": end.end_time_secs}
print(json.dumps(out))
"#;

fn read_with_tensorboard(event_file: &Path) -> Value {
    let out = Command::new(common::venv_python())
        .arg("-c")
        .arg(READER)
        .arg(event_file)
        .output()
        .expect("run python");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the TensorBoard reader failed (is the `tensorboard` package installed? run scripts/setup.sh):\n{stderr}"
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "reader output is not JSON ({e}):\n{}\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Values spread over many orders of magnitude, both signs, an exact zero,
/// and a NaN (left out).
fn weights() -> Vec<f32> {
    let mut v: Vec<f32> = (0..1000)
        .map(|i| {
            let x = i as f32;
            (x * 0.37).sin() * 10f32.powf((x * 0.011).rem_euclid(6.0) - 4.0)
        })
        .collect();
    v.extend([0.0, 1e6, -3e-9, f32::NAN]);
    v
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn tensorboard_reads_what_the_writer_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("runs/exp1");
    let mut w = EventWriter::create(&run).unwrap();
    let path = w.path().to_path_buf();
    assert_eq!(path.parent().unwrap(), run);

    let mut events = 1; // file_version
    let train_loss: Vec<(i64, f64)> = (0..6).map(|s| (s * 100, 0.7 / (s + 1) as f64)).collect();
    let valid_auc = [(0i64, 0.5f64), (300, 0.731_234_567_8), (500, 0.802)];
    for &(step, loss) in &train_loss {
        w.add_scalar("loss/train", loss, step).unwrap();
        events += 1;
    }
    for &(step, auc) in &valid_auc {
        w.add_scalar("auc/valid", auc, step).unwrap();
        events += 1;
    }
    let weights = weights();
    w.add_histogram("weights/embedding", &weights, 100).unwrap();
    w.add_histogram("weights/embedding", &[1.0, 2.0, 2.5], 200)
        .unwrap();
    events += 2;
    let config = "# Run\n`lr = 0.001`, embeddings: **16** dims — ok";
    w.add_text("config", config, 0).unwrap();
    events += 1;
    let hparams = vec![
        ("lr".to_string(), HParamValue::Number(0.001)),
        ("optimizer".to_string(), HParamValue::from("adam")),
        ("batch_norm".to_string(), HParamValue::Bool(true)),
        ("embedding_dim".to_string(), HParamValue::from(16.0)),
    ];
    w.add_hparams(&hparams).unwrap();
    events += 1;
    let dup = vec![
        ("lr".to_string(), HParamValue::Number(0.1)),
        ("lr".to_string(), HParamValue::Number(0.2)),
    ];
    assert!(w.add_hparams(&dup).is_err(), "duplicate names rejected");
    w.end_hparams(true).unwrap();
    events += 1;
    drop(w);

    let got = read_with_tensorboard(&path);

    // Framing and CRCs: every record checks out, by hand and by TensorBoard's
    // reader, and nothing is missing.
    assert_eq!(got["records"], events, "{got}");
    assert_eq!(got["reader_records"], events, "{got}");
    assert_eq!(got["file_version"], "brain.Event:2");

    // Scalars: steps and values (stored as f32).
    let scalars = &got["scalars"];
    for (tag, want) in [
        ("loss/train", train_loss.as_slice()),
        ("auc/valid", valid_auc.as_slice()),
    ] {
        let rows = scalars[tag]
            .as_array()
            .unwrap_or_else(|| panic!("{tag}: {got}"));
        assert_eq!(rows.len(), want.len(), "{tag}");
        for (row, &(step, value)) in rows.iter().zip(want) {
            assert_eq!(row[0], step, "{tag}");
            assert_eq!(f(&row[1]), value as f32 as f64, "{tag} at {step}");
        }
    }

    // Histograms: the summary numbers, TensorFlow's bucket limits, and the
    // counts match a recount of the values into the written buckets.
    let hists = got["histograms"]["weights/embedding"].as_array().unwrap();
    assert_eq!(hists.len(), 2);
    let finite: Vec<f64> = weights
        .iter()
        .filter(|v| v.is_finite())
        .map(|&v| v as f64)
        .collect();
    for (h, (step, values)) in hists
        .iter()
        .zip([(100, finite), (200, vec![1.0, 2.0, 2.5])])
    {
        assert_eq!(h["step"], step);
        assert_eq!(f(&h["num"]), values.len() as f64);
        let min = values.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        assert_eq!((f(&h["min"]), f(&h["max"])), (min, max));
        let sum: f64 = values.iter().sum();
        let sum_squares: f64 = values.iter().map(|v| v * v).sum();
        assert!((f(&h["sum"]) - sum).abs() <= 1e-9 * sum.abs().max(1.0));
        assert!((f(&h["sum_squares"]) - sum_squares).abs() <= 1e-9 * sum_squares);
        assert_eq!(h["limits_are_tf_defaults"], true, "{h}");
        let limits: Vec<f64> = h["limits"].as_array().unwrap().iter().map(f).collect();
        let counts: Vec<f64> = h["counts"].as_array().unwrap().iter().map(f).collect();
        assert_eq!(limits.len(), counts.len());
        assert!(limits.windows(2).all(|w| w[0] < w[1]), "{limits:?}");
        let mut recount = vec![0.0; limits.len()];
        for &v in &values {
            let i = limits.partition_point(|&l| l <= v);
            assert!(i < limits.len(), "{v} above the last limit");
            recount[i] += 1.0;
        }
        assert_eq!(counts, recount, "step {step}");
        // The smallest value lies in the first bucket written.
        assert!(limits[0] > min && (limits.len() == 1 || limits[0] <= max));
    }
    // Many orders of magnitude: more than a handful of buckets.
    assert!(hists[0]["limits"].as_array().unwrap().len() > 30);

    // Text: a one-element string tensor for the text plugin.
    assert_eq!(
        got["text"]["config"],
        serde_json::json!([[0, [config], [1]]])
    );
    assert_eq!(got["text_tags"], serde_json::json!(["config"]));

    // Plugins as TensorBoard's server sees them after its migrations.
    let plugins = &got["plugins"];
    assert_eq!(plugins["loss/train"], "scalars", "{plugins}");
    assert_eq!(plugins["weights/embedding"], "histograms", "{plugins}");
    assert_eq!(plugins["config"], "text", "{plugins}");
    assert_eq!(
        plugins["_hparams_/session_start_info"], "hparams",
        "{plugins}"
    );

    // Hparams: the session start with the values and the session end; no
    // experiment summary (TensorBoard builds it from every run's sessions).
    assert_eq!(
        got["hparams_tags"],
        serde_json::json!(["_hparams_/session_end_info", "_hparams_/session_start_info"])
    );
    assert_eq!(
        got["session_start"]["hparams"],
        serde_json::json!({
            "lr": ["number_value", 0.001],
            "optimizer": ["string_value", "adam"],
            "batch_norm": ["bool_value", true],
            "embedding_dim": ["number_value", 16.0]
        })
    );
    assert!(f(&got["session_start"]["start_time_secs"]) > 1.6e9);
    assert_eq!(got["session_end"]["status"], "STATUS_SUCCESS");
    assert!(f(&got["session_end"]["end_time_secs"]) >= f(&got["session_start"]["start_time_secs"]));
}

#[test]
fn a_failed_run_ends_its_session_as_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = EventWriter::create(dir.path()).unwrap();
    w.add_hparams(&[("seed".to_string(), HParamValue::Number(7.0))])
        .unwrap();
    w.end_hparams(false).unwrap();
    let path = w.path().to_path_buf();
    // Read while the writer is still open: add_hparams and end_hparams flush.
    let got = read_with_tensorboard(&path);
    assert_eq!(got["records"], 3, "{got}");
    assert_eq!(got["session_end"]["status"], "STATUS_FAILURE");
    assert_eq!(
        got["session_start"]["hparams"],
        serde_json::json!({"seed": ["number_value", 7.0]})
    );
    drop(w);
}

/// Starts the real TensorBoard server on a runs folder, waits until it has
/// loaded both runs, and prints what its HTTP API answers as JSON.
const SERVER_PROBE: &str = r#"
import json, socket, subprocess, sys, time, urllib.request

logdir, runs = sys.argv[1], int(sys.argv[2])
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
tb = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", logdir,
                       "--host", "127.0.0.1", "--port", str(port), "--load_fast=false",
                       "--reload_interval=1"],
                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
base = f"http://127.0.0.1:{port}"

def get(path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data,
                                 headers={"content-type": "application/json"})
    return json.load(urllib.request.urlopen(req, timeout=10))

try:
    deadline, tags = time.time() + 90, {}
    while time.time() < deadline:
        try:
            tags = get("/data/plugin/scalars/tags")
            if len(tags) >= runs:
                break
        except OSError:
            pass
        time.sleep(0.5)
    exp = get("/data/plugin/hparams/experiment", {"experimentName": ""})
    groups = get("/data/plugin/hparams/session_groups", {
        "experimentName": "",
        "allowedStatuses": ["STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING", "STATUS_UNKNOWN"],
        "colParams": [], "startIndex": 0, "sliceSize": 100})
    print(json.dumps({
        "tags": {run: sorted(t) for run, t in tags.items()},
        "hparams": {h["name"]: h.get("differs", False) for h in exp["hparamInfos"]},
        "metrics": sorted(m["name"]["tag"] for m in exp.get("metricInfos", [])),
        "sessions": {g["name"]: {"hparams": g["hparams"],
                                 "metrics": {m["name"]["tag"]: m["value"] for m in g["metricValues"]}}
                     for g in groups["sessionGroups"]},
    }))
finally:
    tb.terminate()
    try:
        tb.wait(timeout=10)
    except subprocess.TimeoutExpired:
        tb.kill()
"#;

/// A deep run and a LightGBM run side by side in the real TensorBoard: the
/// HPARAMS experiment has both families' settings, the model kind (varying,
/// so shown first) and the data set, and each run's session has its own
/// settings and the metrics every family writes, the gap to the truth
/// included; LightGBM's boosting rounds have their own tags, apart from the
/// deep runs' optimizer steps.
#[test]
fn tensorboard_compares_runs_of_every_family() {
    let _turn = common::lock();
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("sim");
    common::simulate_small(&data, 12_000, 5);
    let lr = common::experiment(d.path(), &data, "lr", &["train.max_steps=30"]);
    ctr_dl::train::train(&lr, &common::quiet("lr")).unwrap();
    let text = format!(
        "name = 'lightgbm'\n[data]\npath = '{}'\n[lightgbm]\nnum_leaves = 7\n\
         num_rounds = 20\nthreads = 1\n{}",
        data.display(),
        common::output_section(d.path())
    );
    let gbdt = ctr_dl::gbdt::GbdtExperiment::parse(&text, Path::new("lightgbm.toml"), &[]).unwrap();
    ctr_dl::gbdt::train(&gbdt, &common::quiet("lightgbm")).unwrap();

    let runs = lr.output.runs.clone();
    let out = Command::new(common::venv_python())
        .args(["-c", SERVER_PROBE])
        .arg(&runs)
        .arg("2")
        .output()
        .expect("run python");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "TensorBoard probe failed:\n{stderr}");
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();

    let sessions = got["sessions"].as_object().unwrap();
    assert_eq!(sessions.len(), 2, "{got}");
    let hparams = &got["hparams"];
    // Both families' own settings, and what every run has.
    for name in [
        "model",
        "data",
        "seed",
        "embedding_init_std",
        "optimizer",
        "num_leaves",
        "learning_rate",
    ] {
        assert!(hparams.get(name).is_some(), "no `{name}` column: {got}");
    }
    assert_eq!(hparams["model"], true, "the model kind differs: {got}");
    // LR has no MLP, cross layers or embedding size.
    for name in ["mlp", "cross_layers", "embedding_dim"] {
        assert!(hparams.get(name).is_none(), "`{name}` column: {got}");
    }
    let metrics: Vec<&str> = got["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m.as_str())
        .collect();
    for m in [
        "valid/auc",
        "valid/logloss",
        "best/valid_auc",
        "best/valid_logloss",
        "test/auc",
        "test/logloss",
        "test/gap_to_truth",
    ] {
        assert!(metrics.contains(&m), "no metric `{m}`: {got}");
    }
    for (name, s) in sessions {
        let model = s["hparams"]["model"].as_str().unwrap();
        assert!(name.starts_with(model), "{name}: {s}");
        assert_eq!(
            s["hparams"]["data"].as_str(),
            Some(&*data.to_string_lossy()),
            "{s}"
        );
        let own = if model == "lr" {
            "embedding_init_std"
        } else {
            "num_leaves"
        };
        assert!(s["hparams"].get(own).is_some(), "{name}: {s}");
        for m in [
            "best/valid_auc",
            "test/auc",
            "test/gap_to_truth",
            "valid/auc",
        ] {
            let v = s["metrics"][m].as_f64();
            assert!(v.is_some_and(f64::is_finite), "{name}: no {m}: {s}");
        }
    }
    // Boosting rounds are not plotted on the optimizer-step axis.
    for (run, tags) in got["tags"].as_object().unwrap() {
        let tags: Vec<&str> = tags
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t.as_str())
            .collect();
        let rounds = tags.iter().any(|t| t.starts_with("round/"));
        assert_eq!(rounds, run.starts_with("lightgbm"), "{run}: {tags:?}");
    }
}
