//! `ctr-dl features --run RUN`: which inputs a trained model uses, which
//! repeat each other, and which are candidates to drop.
//!
//! - Importance: each input is shuffled across the rows of a split (valid by
//!   default: choosing inputs on test would leak), everything else kept, and
//!   the fall in AUC and rise in log loss are measured, `repeats` times with
//!   different shuffles for their spread.
//! - Redundancy: bias-corrected Cramér's V (Bergsma 2013) between every pair of
//!   inputs on the same rows; dense inputs enter as their decile.
//! - Candidates: an input whose importance is within noise (AUC drop below
//!   [`MIN_AUC_DROP`] or below twice its spread, and no log-loss rise beyond
//!   twice its spread), or one that repeats a more important input (V at least
//!   [`REDUNDANT_V`]). `scripts/ablate_fields.sh` retrains without them.
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::runs::{open_run, OpenRun};
use crate::data::io::write_json;
use crate::data::manifest::DatasetManifest;
use crate::data::writer::Split;
use crate::error::Result;
use crate::features::map::{binary_labels, Encoded};
use crate::metrics::{log_loss, roc_auc};
use crate::rng::Rng;

/// An AUC drop below this is no contribution, however steady.
pub const MIN_AUC_DROP: f64 = 2e-4;
/// Cramér's V at or above this: the two inputs say the same thing.
pub const REDUNDANT_V: f64 = 0.9;

/// One input's permutation importance.
#[derive(Debug, Clone, Serialize)]
pub struct Importance {
    pub name: String,
    /// Mean fall in AUC over the repeats, and its standard deviation.
    pub auc_drop: f64,
    pub auc_drop_sd: f64,
    /// Mean rise in log loss, and its standard deviation.
    pub logloss_rise: f64,
    pub logloss_rise_sd: f64,
}

/// The first `rows` rows of `e`.
fn head(e: &Encoded, rows: usize, nf: usize, nd: usize) -> Encoded {
    let n = rows.min(e.rows);
    Encoded {
        rows: n,
        ids: e.ids[..n * nf].to_vec(),
        dense: e.dense[..n * nd].to_vec(),
        labels: e.labels[..n].to_vec(),
    }
}

/// Shuffle each input across the first `rows` rows of `e`, `repeats` times,
/// and measure the model's loss of AUC and log loss; sorted by AUC drop.
pub fn permutation_importance(
    open: &OpenRun,
    e: &Encoded,
    rows: usize,
    repeats: usize,
    seed: u64,
) -> Result<Vec<Importance>> {
    let (nf, nd) = (open.ds.meta.num_fields, open.ds.meta.num_dense);
    let sub = head(e, rows, nf, nd);
    let n = sub.rows;
    let y = binary_labels(&sub.labels);
    let p0 = open.predict(&sub)?;
    let (auc0, ll0) = (roc_auc(&p0, &y).unwrap_or(0.5), log_loss(&p0, &y));
    let mut out = Vec::with_capacity(nf + nd);
    for (c, name) in open.ds.meta.column_names().into_iter().enumerate() {
        let (mut drops, mut rises) = (Vec::new(), Vec::new());
        for k in 0..repeats.max(1) {
            let mut perm: Vec<usize> = (0..n).collect();
            // The first repeat's shuffle is the one the report has always used.
            let stream = if k == 0 {
                format!("permute-{name}")
            } else {
                format!("permute-{name}-{k}")
            };
            Rng::derive(seed, &stream).shuffle(&mut perm);
            let mut x = sub.clone();
            if c < nf {
                for (r, &src) in perm.iter().enumerate() {
                    x.ids[r * nf + c] = sub.ids[src * nf + c];
                }
            } else {
                let d = c - nf;
                for (r, &src) in perm.iter().enumerate() {
                    x.dense[r * nd + d] = sub.dense[src * nd + d];
                }
            }
            let p = open.predict(&x)?;
            drops.push(auc0 - roc_auc(&p, &y).unwrap_or(0.5));
            rises.push(log_loss(&p, &y) - ll0);
        }
        let (auc_drop, auc_drop_sd) = mean_sd(&drops);
        let (logloss_rise, logloss_rise_sd) = mean_sd(&rises);
        out.push(Importance {
            name,
            auc_drop,
            auc_drop_sd,
            logloss_rise,
            logloss_rise_sd,
        });
    }
    out.sort_by(|a, b| b.auc_drop.total_cmp(&a.auc_drop));
    Ok(out)
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// Bias-corrected Cramér's V of two categorical codes on the same rows, in
/// [0, 1]: 0 for independent inputs (up to sampling), 1 when each determines
/// the other. The correction (Bergsma 2013) keeps inputs with many rare
/// values from looking associated by chance.
pub fn cramers_v(a: &[u32], b: &[u32]) -> f64 {
    let n = a.len().min(b.len());
    if n < 2 {
        return 0.0;
    }
    let mut joint: HashMap<(u32, u32), u64> = HashMap::new();
    let mut ra: HashMap<u32, u64> = HashMap::new();
    let mut rb: HashMap<u32, u64> = HashMap::new();
    for i in 0..n {
        *joint.entry((a[i], b[i])).or_default() += 1;
        *ra.entry(a[i]).or_default() += 1;
        *rb.entry(b[i]).or_default() += 1;
    }
    let (r, k, nf) = (ra.len() as f64, rb.len() as f64, n as f64);
    if r < 2.0 || k < 2.0 {
        return 0.0;
    }
    // chi2 / n = sum n_ij^2 / (n_i. n_.j) - 1
    let phi2: f64 = joint
        .iter()
        .map(|(&(x, y), &c)| (c * c) as f64 / (ra[&x] * rb[&y]) as f64)
        .sum::<f64>()
        - 1.0;
    let phi2c = (phi2 - (k - 1.0) * (r - 1.0) / (nf - 1.0)).max(0.0);
    let rc = r - (r - 1.0).powi(2) / (nf - 1.0);
    let kc = k - (k - 1.0).powi(2) / (nf - 1.0);
    let d = (rc - 1.0).min(kc - 1.0);
    if d <= 0.0 {
        return 0.0;
    }
    (phi2c / d).sqrt().min(1.0)
}

/// Each input of the first `n` rows as categorical codes: a field's id, a
/// dense input's decile (over these rows).
fn codes(e: &Encoded, nf: usize, nd: usize) -> Vec<Vec<u32>> {
    let n = e.rows;
    let mut out: Vec<Vec<u32>> = (0..nf)
        .map(|f| (0..n).map(|r| e.ids[r * nf + f] as u32).collect())
        .collect();
    for d in 0..nd {
        let v: Vec<f32> = (0..n).map(|r| e.dense[r * nd + d]).collect();
        let mut s = v.clone();
        s.sort_by(f32::total_cmp);
        let edges: Vec<f32> = (1..10).map(|q| s[(s.len() - 1) * q / 10]).collect();
        out.push(
            v.iter()
                .map(|x| edges.partition_point(|e| e < x) as u32)
                .collect(),
        );
    }
    out
}

/// One input in the report.
#[derive(Debug, Clone, Serialize)]
pub struct FieldRow {
    #[serde(flatten)]
    pub importance: Importance,
    /// The dataset column of that name, when the input is one (derived
    /// inputs, such as time parts and crosses, have none): what
    /// `features.exclude` takes.
    pub column: Option<String>,
    /// The input it is most associated with, and Cramér's V.
    pub most_associated: Option<(String, f64)>,
    /// Why it is a candidate to drop, if it is one.
    pub drop_reason: Option<String>,
}

/// `field_importance.json`.
#[derive(Debug, Clone, Serialize)]
pub struct FieldReport {
    pub run: String,
    pub split: String,
    pub rows: usize,
    pub repeats: usize,
    pub auc: f64,
    pub logloss: f64,
    /// Most important first.
    pub fields: Vec<FieldRow>,
    /// Pairs with Cramér's V of at least 0.5, most associated first.
    pub associated_pairs: Vec<(String, String, f64)>,
}

/// What `features` reads.
#[derive(Debug, Clone)]
pub struct FieldOptions {
    pub run: PathBuf,
    pub split: Split,
    pub rows: usize,
    pub repeats: usize,
    pub seed: u64,
}

/// Rank the inputs of a run; writes `runs/<run>/field_importance.json`.
pub fn field_report(o: &FieldOptions) -> Result<FieldReport> {
    let open = open_run(&o.run, tch::Device::Cpu)?;
    let (p, y, e) = open.predict_split(o.split)?;
    let (nf, nd) = (open.ds.meta.num_fields, open.ds.meta.num_dense);
    let imp = permutation_importance(&open, &e, o.rows, o.repeats, o.seed)?;
    let sub = head(&e, o.rows, nf, nd);
    let names = open.ds.meta.column_names();
    let cols = codes(&sub, nf, nd);
    let index: HashMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let m = names.len();
    let mut v = vec![vec![0.0; m]; m];
    let mut pairs = Vec::new();
    for i in 0..m {
        for j in i + 1..m {
            let x = cramers_v(&cols[i], &cols[j]);
            v[i][j] = x;
            v[j][i] = x;
            if x >= 0.5 {
                pairs.push((names[i].clone(), names[j].clone(), x));
            }
        }
    }
    pairs.sort_by(|a, b| b.2.total_cmp(&a.2));
    let dataset_columns: Vec<String> = DatasetManifest::load(&open.ds.meta.source)
        .map(|mf| mf.schema.kept().map(|c| c.name.clone()).collect())
        .unwrap_or_default();
    // Rank of each input by importance (imp is sorted).
    let rank: HashMap<&str, usize> = imp
        .iter()
        .enumerate()
        .map(|(r, i)| (i.name.as_str(), r))
        .collect();
    let fields = imp
        .iter()
        .map(|i| {
            let c = index[i.name.as_str()];
            let most_associated = (0..m)
                .filter(|&j| j != c)
                .max_by(|&a, &b| v[c][a].total_cmp(&v[c][b]))
                .map(|j| (names[j].clone(), v[c][j]));
            let noise = i.auc_drop < MIN_AUC_DROP.max(2.0 * i.auc_drop_sd)
                && i.logloss_rise <= 2.0 * i.logloss_rise_sd;
            let redundant = (0..m)
                .filter(|&j| {
                    j != c
                        && v[c][j] >= REDUNDANT_V
                        && rank[names[j].as_str()] < rank[i.name.as_str()]
                })
                .max_by(|&a, &b| v[c][a].total_cmp(&v[c][b]));
            let drop_reason = if noise {
                Some(format!(
                    "no measurable contribution (AUC drop {:.5} ± {:.5})",
                    i.auc_drop, i.auc_drop_sd
                ))
            } else {
                redundant.map(|j| format!("repeats {} (Cramér's V {:.3})", names[j], v[c][j]))
            };
            FieldRow {
                importance: i.clone(),
                column: dataset_columns.iter().find(|c| **c == i.name).cloned(),
                most_associated,
                drop_reason,
            }
        })
        .collect();
    let report = FieldReport {
        run: open.info.run.clone(),
        split: o.split.name().into(),
        rows: sub.rows,
        repeats: o.repeats.max(1),
        auc: roc_auc(&p, &y).unwrap_or(0.5),
        logloss: log_loss(&p, &y),
        fields,
        associated_pairs: pairs,
    };
    write_json(&o.run.join("field_importance.json"), &report)?;
    Ok(report)
}

/// The report as a table for the terminal.
pub fn render(r: &FieldReport, run_dir: &Path) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{}: {} rows of {} (AUC {:.5}, log loss {:.5}), each input shuffled {} time(s)",
        r.run, r.rows, r.split, r.auc, r.logloss, r.repeats
    );
    let w = r
        .fields
        .iter()
        .map(|f| f.importance.name.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let _ = writeln!(
        t,
        "{:>4} {:<w$} {:>10} {:>9} {:>11} {:>9}  {:<24} drop?",
        "rank", "input", "AUC drop", "±", "LL rise", "±", "most associated (V)"
    );
    for (k, f) in r.fields.iter().enumerate() {
        let i = &f.importance;
        let _ = writeln!(
            t,
            "{:>4} {:<w$} {:>10.5} {:>9.5} {:>11.6} {:>9.6}  {:<24} {}",
            k + 1,
            i.name,
            i.auc_drop,
            i.auc_drop_sd,
            i.logloss_rise,
            i.logloss_rise_sd,
            f.most_associated
                .as_ref()
                .map_or("-".into(), |(n, v)| format!("{n} ({v:.2})")),
            f.drop_reason.as_deref().unwrap_or("")
        );
    }
    let cands: Vec<&str> = r
        .fields
        .iter()
        .filter(|f| f.drop_reason.is_some())
        .map(|f| f.importance.name.as_str())
        .collect();
    let _ = writeln!(t, "candidates to drop: {}", super::list_or_none(&cands));
    let _ = writeln!(
        t,
        "wrote {}",
        run_dir.join("field_importance.json").display()
    );
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cramers_v_is_one_for_a_relabelling_and_near_zero_for_independent_codes() {
        let mut rng = Rng::new(3);
        let a: Vec<u32> = (0..5000).map(|_| rng.below(20) as u32).collect();
        let relabelled: Vec<u32> = a.iter().map(|x| (x * 7 + 3) % 20).collect();
        assert!((cramers_v(&a, &relabelled) - 1.0).abs() < 1e-9);
        let b: Vec<u32> = (0..5000).map(|_| rng.below(20) as u32).collect();
        assert!(cramers_v(&a, &b) < 0.03, "{}", cramers_v(&a, &b));
        // Many rare values: the uncorrected V of two independent id columns
        // would be large; the corrected one stays small.
        let ids: Vec<u32> = (0..5000).map(|_| rng.below(2000) as u32).collect();
        assert!(cramers_v(&ids, &b) < 0.1, "{}", cramers_v(&ids, &b));
        // A constant says nothing.
        assert_eq!(cramers_v(&vec![1; 100], &b[..100]), 0.0);
    }

    #[test]
    fn mean_and_sample_sd() {
        let (m, s) = mean_sd(&[1.0, 2.0, 3.0]);
        assert!((m - 2.0).abs() < 1e-12 && (s - 1.0).abs() < 1e-12);
        assert_eq!(mean_sd(&[0.5]), (0.5, 0.0));
    }
}
