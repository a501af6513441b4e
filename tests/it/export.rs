//! `ctr-dl export`: a trained run becomes a TorchScript bundle whose module,
//! loaded back in Rust and in Python's `torch.jit.load`, gives the trained
//! model's probabilities; versions number themselves; bad runs and existing
//! bundles are refused without leaving anything behind.
use crate::common;

use std::process::Command;

use common::{experiment, lock, quiet, simulate_small, venv_python};
use ctr_dl::data::writer::Split;
use ctr_dl::features::cache::{Loader, LoaderOptions};
use ctr_dl::models::ModelKind;
use ctr_dl::serve::export::{BundleMetadata, TOLERANCE};
use ctr_dl::serve::{export, ExportOptions};
use ctr_dl::train::{load_run, train};
use tch::{Device, Kind};

const TORCH_JIT: &str = r#"
import json, sys, torch
m = torch.jit.load(sys.argv[1])
x = json.load(open(sys.argv[2]))
n = len(x["ids"])
ids = torch.tensor(x["ids"], dtype=torch.int64)
dense = torch.tensor(x["dense"], dtype=torch.float32).reshape(n, x["num_dense"])
with torch.no_grad():
    print(json.dumps(m(ids, dense).double().tolist()))
"#;

#[test]
fn exported_module_matches_the_trained_model_in_rust_and_python() {
    let _turn = lock();
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("sim");
    simulate_small(&data, 20_000, 31);
    // Batch norm and dropout: the export must trace the evaluation mode.
    let cfg = experiment(
        d.path(),
        &data,
        "deepfm",
        &[
            "model.batch_norm=true",
            "model.dropout=0.2",
            "train.epochs=1",
        ],
    );
    let report = train(&cfg, &quiet("deepfm-export")).unwrap();
    let models = d.path().join("models");
    let opts = ExportOptions {
        models_root: models.clone(),
        ..ExportOptions::new(&report.run_dir)
    };
    let first = export(&opts).unwrap();
    assert_eq!(first.out, models.join("deepfm/1"));
    let second = export(&opts).unwrap();
    assert_eq!(second.out, models.join("deepfm/2"), "versions count up");
    for f in ["model.pt", "features.json", "metadata.json"] {
        assert!(first.out.join(f).is_file(), "{f}");
    }
    let meta: BundleMetadata =
        serde_json::from_str(&std::fs::read_to_string(first.out.join("metadata.json")).unwrap())
            .unwrap();
    assert_eq!(
        (meta.model.as_str(), meta.version.as_str()),
        ("deepfm", "1")
    );
    assert_eq!(meta.check.rows, 1000);
    assert!(meta.check.max_abs_diff_batch1 <= TOLERANCE);
    assert!(meta.check.max_abs_diff_batch_n <= TOLERANCE);
    assert_eq!(
        std::fs::read(first.out.join("features.json")).unwrap(),
        std::fs::read(report.run_dir.join("features.json")).unwrap()
    );

    // The trained model's probabilities on 300 test rows.
    let (_, _, ds, net) = load_run(&report.run_dir, Device::Cpu).unwrap();
    let batch = Loader::new(
        &ds,
        Split::Test,
        LoaderOptions {
            batch_size: 300,
            ..Default::default()
        },
    )
    .unwrap()
    .next()
    .unwrap()
    .unwrap();
    let want: Vec<f64> = {
        let _g = tch::no_grad_guard();
        let p = net
            .model
            .forward_t(&batch.ids, &batch.dense, false)
            .sigmoid()
            .to_kind(Kind::Double);
        Vec::try_from(&p).unwrap()
    };
    let spread = want.iter().cloned().fold(f64::NAN, f64::max)
        - want.iter().cloned().fold(f64::NAN, f64::min);
    assert!(spread > 1e-3, "the model predicts more than a constant");

    // Rust: the bundle's module loaded back.
    let module = tch::CModule::load(first.out.join("model.pt")).unwrap();
    let got = module.forward_ts(&[&batch.ids, &batch.dense]).unwrap();
    let got: Vec<f64> = Vec::try_from(&got.to_kind(Kind::Double)).unwrap();
    let worst = |got: &[f64]| {
        got.iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max)
    };
    assert!(worst(&got) <= TOLERANCE, "Rust reload: {}", worst(&got));

    // Python: torch.jit.load from the project venv.
    let ids: Vec<i64> = Vec::try_from(&batch.ids.view([-1])).unwrap();
    let dense: Vec<f32> = Vec::try_from(&batch.dense.view([-1])).unwrap();
    let nf = ds.meta.num_fields;
    let input = d.path().join("input.json");
    std::fs::write(
        &input,
        serde_json::json!({
            "ids": ids.chunks(nf).collect::<Vec<_>>(),
            "dense": dense,
            "num_dense": ds.meta.num_dense,
        })
        .to_string(),
    )
    .unwrap();
    let out = Command::new(venv_python())
        .arg("-c")
        .arg(TORCH_JIT)
        .arg(first.out.join("model.pt"))
        .arg(&input)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let py: Vec<f64> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(py.len(), want.len());
    assert!(worst(&py) <= TOLERANCE, "torch.jit.load: {}", worst(&py));
}

/// Every model traces into a module that works at any batch size: export's
/// own check compares it with the trained model at batch 1 and batch 1000.
/// A target-encoded input gives the models a dense input too.
#[test]
fn every_model_exports_a_module_for_any_batch_size() {
    let _turn = lock();
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("sim");
    simulate_small(&data, 12_000, 32);
    // DeepFM has the test above.
    for model in ModelKind::ALL
        .map(ModelKind::name)
        .into_iter()
        .filter(|&m| m != "deepfm")
    {
        let mut sets = vec![
            "train.max_steps=10",
            // A dense input, which CIN and attention see as a field.
            r#"features.target_encoding.columns=["ad_id"]"#,
        ];
        if model == "finalmlp" {
            sets.extend(["model.mlp2=[16]", "model.fusion_heads=4"]);
        }
        let cfg = experiment(d.path(), &data, model, &sets);
        let report = train(&cfg, &quiet(model)).unwrap();
        let bundle = export(&ExportOptions {
            models_root: d.path().join("models"),
            ..ExportOptions::new(&report.run_dir)
        })
        .unwrap_or_else(|e| panic!("{model}: {e}"));
        let meta: BundleMetadata = serde_json::from_str(
            &std::fs::read_to_string(bundle.out.join("metadata.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(meta.model, model);
        assert!(meta.check.max_abs_diff_batch1 <= TOLERANCE, "{model}");
        assert!(meta.check.max_abs_diff_batch_n <= TOLERANCE, "{model}");
    }
}

#[test]
fn bad_runs_and_existing_bundles_are_refused_and_nothing_is_left() {
    let d = tempfile::tempdir().unwrap();
    let not_a_run = d.path().join("empty");
    std::fs::create_dir_all(&not_a_run).unwrap();
    let models = d.path().join("models");
    let e = export(&ExportOptions {
        models_root: models.clone(),
        ..ExportOptions::new(&not_a_run)
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("empty") && e.contains("run.json"), "{e}");
    assert!(!models.exists(), "a failed export writes nothing");

    let existing = d.path().join("bundle");
    std::fs::create_dir_all(&existing).unwrap();
    let _turn = lock();
    let data = d.path().join("sim");
    simulate_small(&data, 8_000, 32);
    let cfg = experiment(d.path(), &data, "lr", &["train.epochs=1"]);
    let report = train(&cfg, &quiet("lr-export")).unwrap();
    let e = export(&ExportOptions {
        out: Some(existing.clone()),
        ..ExportOptions::new(&report.run_dir)
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("bundle") && e.contains("--overwrite"), "{e}");
    assert_eq!(std::fs::read_dir(&existing).unwrap().count(), 0);
    let r = export(&ExportOptions {
        out: Some(existing.clone()),
        overwrite: true,
        ..ExportOptions::new(&report.run_dir)
    })
    .unwrap();
    assert!(r.out.join("model.pt").is_file());
    let leftovers: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
