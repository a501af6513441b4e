//! Every metric of `eval::metrics` against scikit-learn's numbers for the same
//! inputs (`tests/fixtures/metrics/cases.json`, written by `generate.py`
//! beside it): ROC-AUC, log loss, average precision, normalized entropy and
//! the calibration bins, each to 1e-9.
use std::path::Path;

use ctr_dl::metrics::{
    average_precision, calibration, evaluate, log_loss, normalized_entropy, roc_auc, Metrics,
};
use serde::Deserialize;

/// Absolute tolerance against scikit-learn.
const TOL: f64 = 1e-9;

#[derive(Deserialize)]
struct Fixtures {
    sklearn: String,
    calibration_bins: usize,
    cases: Vec<Case>,
}

/// One input and scikit-learn's answers (field names as in `generate.py`).
#[derive(Deserialize)]
struct Case {
    name: String,
    probs: Vec<f64>,
    labels: Vec<u8>,
    roc_auc_score: f64,
    log_loss: f64,
    average_precision_score: f64,
    normalized_entropy: f64,
    mean_prob: f64,
    mean_label: f64,
    ece: f64,
    calibration_count: Vec<u64>,
    calibration_prob_true: Vec<f64>,
    calibration_prob_pred: Vec<f64>,
}

fn fixtures() -> Fixtures {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/metrics/cases.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run generate.py beside it)", path.display()));
    let f: Fixtures = serde_json::from_str(&text).expect("cases.json parses");
    assert!(f.cases.len() >= 6, "expected the full set of cases");
    f
}

fn close(case: &str, what: &str, got: f64, want: f64, sklearn: &str) {
    assert!(
        (got - want).abs() <= TOL,
        "{case}: {what} = {got}, scikit-learn {sklearn} says {want} (diff {:e})",
        (got - want).abs()
    );
}

#[test]
fn roc_auc_matches_sklearn() {
    let f = fixtures();
    for c in &f.cases {
        let got = roc_auc(&c.probs, &c.labels).expect("both classes present");
        close(&c.name, "roc_auc", got, c.roc_auc_score, &f.sklearn);
    }
}

#[test]
fn log_loss_matches_sklearn() {
    let f = fixtures();
    for c in &f.cases {
        let got = log_loss(&c.probs, &c.labels);
        close(&c.name, "log_loss", got, c.log_loss, &f.sklearn);
    }
}

#[test]
fn average_precision_matches_sklearn() {
    let f = fixtures();
    for c in &f.cases {
        let got = average_precision(&c.probs, &c.labels).expect("positives present");
        close(
            &c.name,
            "average_precision",
            got,
            c.average_precision_score,
            &f.sklearn,
        );
    }
}

#[test]
fn normalized_entropy_matches_sklearn() {
    let f = fixtures();
    for c in &f.cases {
        let got = normalized_entropy(&c.probs, &c.labels).expect("both classes present");
        close(
            &c.name,
            "normalized_entropy",
            got,
            c.normalized_entropy,
            &f.sklearn,
        );
    }
}

#[test]
fn calibration_bins_match_sklearn_calibration_curve() {
    let f = fixtures();
    for c in &f.cases {
        let cal = calibration(&c.probs, &c.labels, f.calibration_bins);
        let counts: Vec<u64> = cal.bins.iter().map(|b| b.count).collect();
        assert_eq!(
            counts, c.calibration_count,
            "{}: rows per non-empty bin",
            c.name
        );
        for (i, b) in cal.bins.iter().enumerate() {
            let what = format!("bin {i} ({}, {}]", b.lower, b.upper);
            close(
                &c.name,
                &format!("{what} mean_pred"),
                b.mean_pred,
                c.calibration_prob_pred[i],
                &f.sklearn,
            );
            close(
                &c.name,
                &format!("{what} obs_rate"),
                b.obs_rate,
                c.calibration_prob_true[i],
                &f.sklearn,
            );
            // A mean of values on an edge may round one ulp past it.
            assert!(b.lower < b.upper, "{}: {what}", c.name);
            assert!(b.mean_pred >= b.lower - TOL && b.mean_pred <= b.upper + TOL);
        }
        close(&c.name, "ece", cal.ece, c.ece, &f.sklearn);
        close(&c.name, "pred_ctr", cal.pred_ctr, c.mean_prob, &f.sklearn);
        close(&c.name, "obs_ctr", cal.obs_ctr, c.mean_label, &f.sklearn);
        close(
            &c.name,
            "ratio",
            cal.ratio,
            c.mean_prob / c.mean_label,
            &f.sklearn,
        );
    }
}

#[test]
fn evaluate_reports_every_metric() {
    let f = fixtures();
    for c in &f.cases {
        let m = evaluate(&c.probs, &c.labels);
        assert_eq!(m.count, c.probs.len() as u64, "{}", c.name);
        let positives = c.labels.iter().filter(|&&y| y != 0).count() as u64;
        assert_eq!(m.positives, positives, "{}", c.name);
        close(&c.name, "auc", m.auc.unwrap(), c.roc_auc_score, &f.sklearn);
        close(&c.name, "logloss", m.logloss, c.log_loss, &f.sklearn);
        close(
            &c.name,
            "pr_auc",
            m.pr_auc.unwrap(),
            c.average_precision_score,
            &f.sklearn,
        );
        close(
            &c.name,
            "ne",
            m.ne.unwrap(),
            c.normalized_entropy,
            &f.sklearn,
        );
        close(&c.name, "pred_ctr", m.pred_ctr, c.mean_prob, &f.sklearn);
        close(&c.name, "obs_ctr", m.obs_ctr, c.mean_label, &f.sklearn);
        let ratio = c.mean_prob / c.mean_label;
        close(
            &c.name,
            "calibration_ratio",
            m.calibration_ratio.unwrap(),
            ratio,
            &f.sklearn,
        );
        close(&c.name, "ece", m.ece, c.ece, &f.sklearn);
    }
}

#[test]
fn one_class_gives_none_and_json_null() {
    let m = evaluate(&[0.1, 0.4, 0.2], &[0, 0, 0]);
    assert_eq!(
        (m.auc, m.pr_auc, m.ne, m.calibration_ratio),
        (None, None, None, None)
    );
    assert_eq!(m.positives, 0);
    let v = m.to_json();
    for key in ["auc", "pr_auc", "ne", "calibration_ratio"] {
        assert!(v[key].is_null(), "{key} should be null in {v}");
    }
    assert_eq!(v["count"], 3);
    let back: Metrics = serde_json::from_value(v).expect("round-trips");
    assert_eq!(back, m);

    let m = evaluate(&[0.9, 0.8], &[1, 1]);
    assert_eq!((m.auc, m.ne), (None, None));
    assert_eq!(m.pr_auc, Some(1.0));
}
