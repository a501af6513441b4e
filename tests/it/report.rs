//! `ctr-dl report`: two tiny runs rendered into a self-contained HTML report
//! with PNG figures, calibration saved with the runs and used by export, and
//! clear errors (leaving no report behind) for runs it cannot compare.
use crate::common;

use std::path::Path;

use common::{experiment, lock, quiet, simulate_small};
use ctr_dl::eval::calibrate::{Calibrator, Method};
use ctr_dl::eval::report::{report, ReportOptions};
use ctr_dl::eval::runs::open_run;
use ctr_dl::features::map::FeatureMap;
use ctr_dl::serve::Bundle;
use ctr_dl::serve::{export, ExportOptions};
use ctr_dl::train::train;

fn is_png(path: &Path) -> bool {
    let bytes = std::fs::read(path).unwrap();
    bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 5_000
}

#[test]
fn two_runs_make_a_self_contained_report_with_figures() {
    let _turn = lock();
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("sim");
    simulate_small(&data, 20_000, 31);
    let lr = train(&experiment(d.path(), &data, "lr", &[]), &quiet("lr-run")).unwrap();
    let fm = train(&experiment(d.path(), &data, "fm", &[]), &quiet("fm-run")).unwrap();
    let out = d.path().join("report");
    let mut opts = ReportOptions::new(vec![lr.run_dir.clone(), fm.run_dir.clone()], &out);
    opts.calibrate = Some(Method::Isotonic);
    opts.permutation_rows = 2_000;
    let r = report(&opts).unwrap();

    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    for needle in [
        "lr-run",
        "fm-run",
        "<table",
        "PR-AUC",
        "isotonic calibration",
        "F1-best",
    ] {
        assert!(html.contains(needle), "report.html lacks {needle}");
    }
    // Self-contained: every figure inlined, nothing fetched.
    assert!(!html.contains("http://") && !html.contains("https://"));
    assert!(!html.contains("<script") && !html.contains("<link"));
    let inlined = html.matches("src=\"data:image/png;base64,").count();
    assert_eq!(inlined, r.figures.len());
    // ROC, PR, CTR by hour, and per run calibration, importance and scores.
    assert_eq!(r.figures.len(), 3 + 2 * 3, "{:?}", r.figures);
    for f in &r.figures {
        assert!(is_png(&out.join(f)), "{f} is not a PNG figure");
    }
    assert!(out.join("report.json").exists());

    // The numbers behind it.
    assert_eq!(r.runs.len(), 2);
    let fm_section = &r.runs[1];
    assert!(fm_section.metrics.auc.unwrap() > 0.6);
    let cal = fm_section.calibration.as_ref().unwrap();
    assert!(cal.metrics.ece <= fm_section.metrics.ece + 0.01);
    let map = FeatureMap::load(&fm.run_dir.join("features.json")).unwrap();
    assert_eq!(
        fm_section.permutation_importance.len(),
        map.num_fields() + map.num_dense()
    );
    // Shuffling the ad or the user's demographics costs AUC; the top field matters.
    assert!(fm_section.permutation_importance[0].1 > 0.005);
    let c = &fm_section.confusion_f1_best;
    assert_eq!(c.tp + c.fp + c.fn_ + c.tn, r.rows as u64);
    assert!(r.ctr_by_hour.as_ref().unwrap().len() > 12);

    // The calibrator is saved with the run and travels into the bundle.
    assert!(fm.run_dir.join("calibration.json").exists());
    let b = export(&ExportOptions {
        models_root: d.path().join("models"),
        ..ExportOptions::new(&fm.run_dir)
    })
    .unwrap();
    assert_eq!(b.metadata.calibration.as_deref(), Some("isotonic"));
    assert!(b.out.join("calibration.json").exists());
    // ... and serving applies it to the model's probabilities.
    let bundle = Bundle::load(&b.out, tch::Device::Cpu).unwrap();
    let run = open_run(&fm.run_dir, tch::Device::Cpu).unwrap();
    let (raw, _, enc) = run
        .predict_split(ctr_dl::data::writer::Split::Test)
        .unwrap();
    let calibrator = Calibrator::load_from(&fm.run_dir).unwrap().unwrap();
    let n = 50;
    let nf = map.num_fields();
    let served = bundle
        .forward(&enc.ids[..n * nf], &enc.dense[..n * map.num_dense()], n)
        .unwrap();
    let mut moved = 0.0f64;
    for r in 0..n {
        let want = calibrator.apply(raw[r]);
        assert!(
            (served[r] as f64 - want).abs() < 1e-6,
            "row {r}: {} vs {want}",
            served[r]
        );
        moved = moved.max((want - raw[r]).abs());
    }
    assert!(moved > 1e-4, "the calibrator changes the probabilities");

    // A second report replaces the first.
    opts.calibrate = None;
    opts.runs = vec![lr.run_dir.clone()];
    let again = report(&opts).unwrap();
    assert_eq!(again.runs.len(), 1);
    assert!(!std::fs::read_to_string(out.join("report.html"))
        .unwrap()
        .contains("fm-run"));
}

#[test]
fn runs_it_cannot_compare_are_clear_errors_and_leave_nothing() {
    let _turn = lock();
    let d = tempfile::tempdir().unwrap();
    let (a, b) = (d.path().join("a"), d.path().join("b"));
    simulate_small(&a, 8_000, 1);
    simulate_small(&b, 9_000, 2);
    let ra = train(
        &experiment(d.path(), &a, "lr", &["train.epochs=1"]),
        &quiet("on-a"),
    )
    .unwrap();
    let rb = train(
        &experiment(d.path(), &b, "lr", &["train.epochs=1"]),
        &quiet("on-b"),
    )
    .unwrap();
    let out = d.path().join("report");
    let fail = |runs: Vec<std::path::PathBuf>| {
        let mut o = ReportOptions::new(runs, &out);
        o.permutation_rows = 500;
        let e = report(&o).unwrap_err().to_string();
        assert!(!out.exists(), "no report after: {e}");
        assert!(common::temp_files(d.path()).is_empty());
        e
    };
    let e = fail(vec![ra.run_dir.clone(), rb.run_dir.clone()]);
    assert!(e.contains("different splits"), "{e}");
    let e = fail(vec![d.path().join("runs/nope")]);
    assert!(e.contains("not a run directory"), "{e}");

    // Half written: metrics.json cut short.
    let half = d.path().join("runs/half");
    std::fs::create_dir_all(&half).unwrap();
    for f in ["run.json", "config.toml", "features.json"] {
        std::fs::copy(ra.run_dir.join(f), half.join(f)).unwrap();
    }
    let m = std::fs::read(ra.run_dir.join("metrics.json")).unwrap();
    std::fs::write(half.join("metrics.json"), &m[..m.len() / 2]).unwrap();
    let e = fail(vec![ra.run_dir.clone(), half.clone()]);
    assert!(e.contains("half written"), "{e}");

    // A model kind it does not know.
    let text = std::fs::read_to_string(ra.run_dir.join("run.json"))
        .unwrap()
        .replace("\"model\": \"lr\"", "\"model\": \"xgboost\"");
    assert!(text.contains("xgboost"));
    std::fs::write(half.join("run.json"), text).unwrap();
    std::fs::copy(ra.run_dir.join("metrics.json"), half.join("metrics.json")).unwrap();
    let e = fail(vec![half]);
    assert!(e.contains("`xgboost`"), "{e}");
}
