//! Post-hoc calibration of click probabilities, fitted on the valid split:
//! Platt scaling (a logistic regression on the model's logit) or isotonic
//! regression (pool-adjacent-violators, interpolated linearly between knots).
//! Saved with a run as `calibration.json`; export copies it into the bundle
//! and serving applies it to every probability.
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::data::io::{read_json, write_json};
use crate::error::Result;

/// The file a run or bundle keeps its calibrator in.
pub const CALIBRATION_FILE: &str = "calibration.json";

/// Probabilities are kept this far from 0 and 1, so log loss stays finite.
const EDGE: f64 = 1e-7;

/// Which calibrator to fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Platt,
    Isotonic,
}

/// A fitted calibrator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Calibrator {
    /// `sigmoid(a * logit(p) + b)`.
    Platt { a: f64, b: f64 },
    /// Knots of a non-decreasing map: `x` increasing, linear in between,
    /// constant beyond the ends.
    Isotonic { x: Vec<f64>, y: Vec<f64> },
}

fn logit(p: f64) -> f64 {
    let p = p.clamp(EDGE, 1.0 - EDGE);
    (p / (1.0 - p)).ln()
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

impl Calibrator {
    /// Fit on predicted probabilities and labels (the valid split).
    pub fn fit(method: Method, p: &[f64], y: &[u8]) -> Calibrator {
        match method {
            Method::Platt => platt(p, y),
            Method::Isotonic => isotonic(p, y),
        }
    }

    /// The calibrated probability.
    pub fn apply(&self, p: f64) -> f64 {
        let q = match self {
            Calibrator::Platt { a, b } => sigmoid(a * logit(p) + b),
            Calibrator::Isotonic { x, y } => {
                if x.is_empty() {
                    return p;
                }
                let i = x.partition_point(|&k| k < p);
                if i == 0 {
                    y[0]
                } else if i == x.len() {
                    y[x.len() - 1]
                } else {
                    let (x0, x1, y0, y1) = (x[i - 1], x[i], y[i - 1], y[i]);
                    if x1 > x0 {
                        y0 + (y1 - y0) * (p - x0) / (x1 - x0)
                    } else {
                        y1
                    }
                }
            }
        };
        q.clamp(EDGE, 1.0 - EDGE)
    }

    pub fn apply_all(&self, p: &[f64]) -> Vec<f64> {
        p.iter().map(|&p| self.apply(p)).collect()
    }

    pub fn method(&self) -> &'static str {
        match self {
            Calibrator::Platt { .. } => "platt",
            Calibrator::Isotonic { .. } => "isotonic",
        }
    }

    /// The calibrator saved in a run or bundle directory, if any.
    pub fn load_from(dir: &Path) -> Result<Option<Calibrator>> {
        let path = dir.join(CALIBRATION_FILE);
        if !path.exists() {
            return Ok(None);
        }
        read_json(&path).map(Some)
    }

    pub fn save_to(&self, dir: &Path) -> Result<()> {
        write_json(&dir.join(CALIBRATION_FILE), self)
    }
}

/// Newton's method on the log loss of `sigmoid(a z + b)`, z the logit.
fn platt(p: &[f64], y: &[u8]) -> Calibrator {
    let z: Vec<f64> = p.iter().map(|&p| logit(p)).collect();
    let (mut a, mut b) = (1.0f64, 0.0f64);
    for _ in 0..50 {
        let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for (&z, &y) in z.iter().zip(y) {
            let q = sigmoid(a * z + b);
            let r = q - y as f64;
            let w = (q * (1.0 - q)).max(1e-12);
            ga += r * z;
            gb += r;
            haa += w * z * z;
            hab += w * z;
            hbb += w;
        }
        // A tiny ridge keeps the 2x2 system solvable on degenerate inputs.
        let (haa, hbb) = (haa + 1e-9, hbb + 1e-9);
        let det = haa * hbb - hab * hab;
        if det.abs() < 1e-18 {
            break;
        }
        let da = (hbb * ga - hab * gb) / det;
        let db = (haa * gb - hab * ga) / det;
        a -= da;
        b -= db;
        if da.abs() < 1e-10 && db.abs() < 1e-10 {
            break;
        }
    }
    Calibrator::Platt { a, b }
}

/// Pool adjacent violators over the distinct predicted values.
fn isotonic(p: &[f64], y: &[u8]) -> Calibrator {
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|&i, &j| p[i].total_cmp(&p[j]));
    // Blocks: (first x, last x, sum y, weight).
    let mut blocks: Vec<(f64, f64, f64, f64)> = Vec::new();
    for &i in &order {
        let (x, t) = (p[i], y[i] as f64);
        match blocks.last_mut() {
            Some(last) if last.1 == x => {
                last.2 += t;
                last.3 += 1.0;
            }
            _ => blocks.push((x, x, t, 1.0)),
        }
        while blocks.len() >= 2 {
            let n = blocks.len();
            let (a, b) = (blocks[n - 2], blocks[n - 1]);
            if a.2 / a.3 < b.2 / b.3 {
                break;
            }
            blocks[n - 2] = (a.0, b.1, a.2 + b.2, a.3 + b.3);
            blocks.pop();
        }
    }
    let (mut x, mut v) = (Vec::new(), Vec::new());
    for (lo, hi, s, w) in blocks {
        let m = s / w;
        x.push(lo);
        v.push(m);
        if hi > lo {
            x.push(hi);
            v.push(m);
        }
    }
    Calibrator::Isotonic { x, y: v }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::log_loss;
    use crate::rng::Rng;

    /// Labels drawn from `truth(p)` for scores p: a miscalibrated model.
    fn data(n: usize, truth: impl Fn(f64) -> f64) -> (Vec<f64>, Vec<u8>) {
        let mut r = Rng::new(5);
        let p: Vec<f64> = (0..n).map(|_| 0.01 + 0.3 * r.uniform()).collect();
        let y = p.iter().map(|&p| r.bernoulli(truth(p)) as u8).collect();
        (p, y)
    }

    #[test]
    fn platt_recovers_a_logit_scaling() {
        // True probability sigmoid(0.5 logit(p) - 1).
        let (p, y) = data(200_000, |p| sigmoid(0.5 * logit(p) - 1.0));
        let Calibrator::Platt { a, b } = Calibrator::fit(Method::Platt, &p, &y) else {
            unreachable!()
        };
        assert!(
            (a - 0.5).abs() < 0.05 && (b + 1.0).abs() < 0.1,
            "a {a} b {b}"
        );
    }

    #[test]
    fn isotonic_is_monotone_and_lowers_the_log_loss_of_a_miscalibrated_model() {
        let (p, y) = data(100_000, |p| (p * p * 3.0).min(0.9));
        let c = Calibrator::fit(Method::Isotonic, &p, &y);
        let q = c.apply_all(&p);
        let mut sorted: Vec<(f64, f64)> = p.iter().copied().zip(q.iter().copied()).collect();
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert!(sorted.windows(2).all(|w| w[0].1 <= w[1].1 + 1e-12));
        assert!(log_loss(&q, &y) < log_loss(&p, &y) - 0.005);
        // Interpolation between knots and constants beyond the ends.
        assert_eq!(c.apply(-1.0), c.apply(0.0));
        let saved: Calibrator = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(saved, c);
    }
}
