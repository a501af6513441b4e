//! Helpers shared by the integration tests.
#![allow(dead_code)]
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use ctr_dl::data::reader::{ReaderOptions, ShardReader};
use ctr_dl::data::writer::Split;

/// A file of this repository (`experiments/lr.toml`).
pub fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A file of the shared real-data samples (`../shared/data` beside the repo).
pub fn shared(rel: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(rel);
    assert!(
        p.exists(),
        "test data {} is missing: the shared/ folder must sit beside the repository",
        p.display()
    );
    p
}

/// Every row of one split, in shard order.
pub fn read_split(dir: &Path, split: Split) -> RecordBatch {
    let reader = ShardReader::open_split(
        dir,
        split,
        ReaderOptions {
            batch_size: 1 << 20,
            ..Default::default()
        },
    )
    .unwrap();
    let schema = reader.schema();
    let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
    concat_batches(&schema, &batches).unwrap()
}

/// Raw file contents of every shard of a dataset, for bit-for-bit comparisons.
pub fn shard_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for s in Split::ALL {
        let d = dir.join(s.dir_name());
        let mut names: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for p in names {
            out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
        }
    }
    out
}

/// Files whose names mark them as temporary, anywhere below `dir`.
pub fn temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.to_string_lossy().ends_with(".tmp") {
                    out.push(p);
                }
            }
        }
    }
    out
}

/// A column of a batch by name, as its concrete Arrow array type.
pub fn col<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> &'a T {
    batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"))
        .as_any()
        .downcast_ref::<T>()
        .unwrap_or_else(|| panic!("column {name} has another type"))
}

/// Simulate `rows` impressions of `config` into `out` (Parquet, 8:1:1 split,
/// 20k-row shards) and return the manifest.
pub fn simulate_into(
    out: &Path,
    rows: u64,
    seed: u64,
    config: ctr_dl::data::simulate::SimConfig,
    split: ctr_dl::data::split::SplitMode,
) -> ctr_dl::data::manifest::DatasetManifest {
    use ctr_dl::data::simulate::{simulate, SimFormat, SimulateOptions};
    use ctr_dl::data::writer::WriterOptions;
    simulate(&SimulateOptions {
        rows,
        out: out.to_path_buf(),
        seed,
        config,
        format: SimFormat::Parquet,
        split,
        ratios: [0.8, 0.1, 0.1],
        writer: WriterOptions {
            shard_rows: 20_000,
            row_group_rows: 8192,
        },
        overwrite: false,
        progress: false,
    })
    .unwrap();
    ctr_dl::data::manifest::DatasetManifest::load(out).unwrap()
}

/// A small simulated dataset (a world small enough that 40k rows teach a model
/// something) written to `out`.
pub fn simulate_small(out: &Path, rows: u64, seed: u64) {
    simulate_into(
        out,
        rows,
        seed,
        small_world(),
        ctr_dl::data::split::SplitMode::Random,
    );
}

/// The simulator's world of [`simulate_small`]: few users, ads and sites.
pub fn small_world() -> ctr_dl::data::simulate::SimConfig {
    ctr_dl::data::simulate::SimConfig {
        users: 2_000,
        ads: 300,
        campaigns: 100,
        advertisers: 40,
        sites: 100,
        ..Default::default()
    }
}

/// libtorch's random generator is global to the process: tests that train
/// take turns, so one test's reseeding cannot change another's draws.
static TORCH: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn lock() -> std::sync::MutexGuard<'static, ()> {
    TORCH.lock().unwrap_or_else(|e| e.into_inner())
}

/// A small experiment on `data` (one CPU thread, evaluation every 20 steps),
/// with runs and checkpoints under `dir` and `--set` style overrides.
pub fn experiment(
    dir: &Path,
    data: &Path,
    model: &str,
    extra: &[&str],
) -> ctr_dl::train::ExperimentConfig {
    // Small settings, each where the model takes it.
    let kind: ctr_dl::models::ModelKind = toml::Value::String(model.into()).try_into().unwrap();
    let takes = ctr_dl::models::ModelConfig::keys_of(kind);
    let settings: String = [
        ("embedding_dim", "8"),
        ("mlp", "[32, 16]"),
        ("cross_layers", "2"),
    ]
    .iter()
    .filter(|(k, _)| takes.iter().any(|t| t == k))
    .map(|(k, v)| format!("{k} = {v}\n"))
    .collect();
    let text = format!(
        r#"
name = "{model}"
seed = 7
[data]
path = "{data}"
[model]
kind = "{model}"
{settings}
[train]
lr = 0.003
batch_size = 512
epochs = 2
device = "cpu"
threads = 1
eval_every = 20
patience = 3
{output}"#,
        data = data.display(),
        output = output_section(dir),
    );
    let sets: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    ctr_dl::train::ExperimentConfig::parse(&text, Path::new("test.toml"), &sets).unwrap()
}

/// An experiment's `[output]` section: runs and checkpoints under `dir`.
pub fn output_section(dir: &Path) -> String {
    format!(
        "[output]\nruns = \"{}\"\ncheckpoints = \"{}\"\n",
        dir.join("runs").display(),
        dir.join("checkpoints").display()
    )
}

/// The project venv's Python (scripts/setup.sh creates it).
pub fn venv_python() -> PathBuf {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup.sh",
        python.display()
    );
    python
}

/// Training options of a quiet run named `run`.
pub fn quiet(run: &str) -> ctr_dl::train::TrainOptions {
    ctr_dl::train::TrainOptions {
        run: Some(run.into()),
        quiet: true,
        ..Default::default()
    }
}

/// The rows of a raw batch as a client sends them: strings, time as RFC 3339
/// text on even rows and unix seconds on odd rows, nulls left out.
pub fn request_rows(batch: &RecordBatch) -> Vec<serde_json::Value> {
    use arrow::array::{Array, StringArray, TimestampMillisecondArray};
    use serde_json::{json, Value};
    (0..batch.num_rows())
        .map(|r| {
            let mut o = serde_json::Map::new();
            for (i, f) in batch.schema().fields().iter().enumerate() {
                let col = batch.column(i);
                if col.is_null(r) {
                    continue;
                }
                let name = f.name().as_str();
                if let Some(s) = col.as_any().downcast_ref::<StringArray>() {
                    o.insert(name.into(), json!(s.value(r)));
                } else if let Some(t) = col.as_any().downcast_ref::<TimestampMillisecondArray>() {
                    let secs = t.value(r) / 1000;
                    let v = if r % 2 == 0 {
                        json!(chrono::DateTime::from_timestamp(secs, 0)
                            .unwrap()
                            .to_rfc3339())
                    } else {
                        json!(secs)
                    };
                    o.insert(name.into(), v);
                }
            }
            Value::Object(o)
        })
        .collect()
}
