//! Metrics of predicted click probabilities, each matching a scikit-learn
//! function (golden numbers from scikit-learn in
//! `tests/fixtures/metrics/cases.json`): exact ROC-AUC and average precision
//! from one sort with tied scores grouped, log loss with probabilities clipped
//! to [EPS, 1 - EPS], normalized entropy (He et al. 2014), calibration on
//! equal-width bins, [`evaluate`] for all of them at once, and streaming
//! accumulators for data too large to keep (the simulator's 100M rows).
//!
//! Labels are clicks: any non-zero label is a positive. Scores and
//! probabilities must not be NaN.

use serde::{Deserialize, Serialize};

/// Clip used by log loss, as scikit-learn (since 1.5: the machine epsilon of
/// the dtype, 2^-52, where older versions used 1e-15).
pub const EPS: f64 = f64::EPSILON;

/// Bins of the expected calibration error that [`evaluate`] reports.
pub const ECE_BINS: usize = 10;

/// Mean binary cross-entropy, as `sklearn.metrics.log_loss(y, p,
/// labels=[0, 1])`. 0 for no rows.
pub fn log_loss(probs: &[f64], labels: &[u8]) -> f64 {
    assert_eq!(probs.len(), labels.len(), "one label per probability");
    let mut acc = LogLoss::default();
    for (&p, &y) in probs.iter().zip(labels) {
        acc.add(p, y != 0);
    }
    acc.value()
}

/// Exact ROC-AUC, as `sklearn.metrics.roc_auc_score`: tied scores count one
/// half (Mann-Whitney U). `None` when only one class is present.
pub fn roc_auc(scores: &[f64], labels: &[u8]) -> Option<f64> {
    auc_from_ties(tied_counts(scores, labels))
}

/// Area under the precision-recall curve, as
/// `sklearn.metrics.average_precision_score`: the step-wise sum
/// `sum_k (R_k - R_{k-1}) * P_k` over distinct score thresholds, highest
/// first, tied scores forming one threshold (no interpolation). `None` when
/// there is no positive.
pub fn average_precision(scores: &[f64], labels: &[u8]) -> Option<f64> {
    ap_from_ties(&tied_counts(scores, labels))
}

/// Normalized entropy (He et al. 2014, "Practical Lessons from Predicting
/// Clicks on Ads at Facebook"): [`log_loss`] divided by the entropy of the
/// observed click rate, i.e. by the log loss of always predicting that rate;
/// below 1 means better than the base rate. The same as
/// `sklearn.metrics.log_loss(y, p) / sklearn.metrics.log_loss(y, [y.mean()] *
/// len(y))`. `None` when the rate is 0 or 1 (or there are no rows).
pub fn normalized_entropy(probs: &[f64], labels: &[u8]) -> Option<f64> {
    let positives = labels.iter().filter(|&&y| y != 0).count();
    ne_from(
        log_loss(probs, labels),
        positives as u64,
        labels.len() as u64,
    )
}

/// Positives and negatives sharing one distinct score.
#[derive(Debug, Clone, Copy, Default)]
struct Tie {
    pos: f64,
    neg: f64,
}

/// The one sort behind [`roc_auc`] and [`average_precision`]: label counts per
/// distinct score, in ascending score order.
fn tied_counts(scores: &[f64], labels: &[u8]) -> Vec<Tie> {
    assert_eq!(scores.len(), labels.len(), "one label per score");
    let mut pairs: Vec<(f64, bool)> = scores
        .iter()
        .zip(labels)
        .map(|(&s, &y)| (s, y != 0))
        .collect();
    pairs.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    let mut ties: Vec<Tie> = Vec::new();
    let mut last = None;
    for (s, y) in pairs {
        if last != Some(s) {
            ties.push(Tie::default());
            last = Some(s);
        }
        let t = ties.last_mut().expect("pushed above");
        if y {
            t.pos += 1.0;
        } else {
            t.neg += 1.0;
        }
    }
    ties
}

/// ROC-AUC from label counts per score in ascending order: each positive
/// beats the negatives below it and half of those tied with it.
fn auc_from_ties(ties: impl IntoIterator<Item = Tie>) -> Option<f64> {
    let (mut neg_below, mut num, mut pos) = (0f64, 0f64, 0f64);
    for t in ties {
        num += t.pos * (neg_below + t.neg / 2.0);
        neg_below += t.neg;
        pos += t.pos;
    }
    (pos > 0.0 && neg_below > 0.0).then(|| num / (pos * neg_below))
}

/// Average precision from label counts per score in ascending order, walked
/// from the highest threshold down.
fn ap_from_ties(ties: &[Tie]) -> Option<f64> {
    let total: f64 = ties.iter().map(|t| t.pos).sum();
    if total == 0.0 {
        return None;
    }
    let (mut tp, mut fp, mut ap) = (0f64, 0f64, 0f64);
    for t in ties.iter().rev() {
        tp += t.pos;
        fp += t.neg;
        ap += t.pos / total * (tp / (tp + fp));
    }
    Some(ap)
}

/// Entropy in nats of a click with probability `positives / n`; the
/// denominator of normalized entropy.
fn binary_entropy(positives: u64, n: u64) -> f64 {
    let r = positives as f64 / n as f64;
    -(r * r.ln() + (1.0 - r) * (1.0 - r).ln())
}

/// Normalized entropy from a log loss and the observed click counts.
fn ne_from(logloss: f64, positives: u64, n: u64) -> Option<f64> {
    (positives > 0 && positives < n).then(|| logloss / binary_entropy(positives, n))
}

/// One equal-width bin of a reliability diagram.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationBin {
    /// Left edge; excluded, except 0 for the first bin.
    pub lower: f64,
    /// Right edge; included.
    pub upper: f64,
    /// Rows whose probability falls in the bin (never 0: empty bins are left
    /// out).
    pub count: u64,
    /// Mean predicted probability (sklearn's `prob_pred`).
    pub mean_pred: f64,
    /// Observed click rate (sklearn's `prob_true`).
    pub obs_rate: f64,
}

/// How well predicted probabilities match observed click rates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Mean predicted probability (0 for no rows).
    pub pred_ctr: f64,
    /// Observed click rate (0 for no rows).
    pub obs_ctr: f64,
    /// `pred_ctr / obs_ctr`: 1 is calibrated on average, above 1
    /// over-predicts. Infinite (or NaN) without positives.
    pub ratio: f64,
    /// Expected calibration error: over non-empty bins, the sum of
    /// `count / N * |mean_pred - obs_rate|` (0 for no rows).
    pub ece: f64,
    /// The non-empty bins in ascending order, as sklearn returns them.
    pub bins: Vec<CalibrationBin>,
}

/// Calibration on `n_bins` equal-width bins of [0, 1]. The bins match
/// `sklearn.calibration.calibration_curve(y, p, n_bins, strategy="uniform")`
/// exactly, edges included: the edges are numpy's `linspace(0, 1, n_bins +
/// 1)` (`i * (1 / n_bins)`, the last exactly 1), and a probability goes to
/// bin `searchsorted(edges[1:-1], p)` (side "left"), so a value on an inner
/// edge belongs to the bin below it: bins are (lower, upper], the first
/// [0, upper]. Probabilities outside [0, 1] (which sklearn rejects) go to the
/// first or last bin.
pub fn calibration(probs: &[f64], labels: &[u8], n_bins: usize) -> Calibration {
    assert_eq!(probs.len(), labels.len(), "one label per probability");
    assert!(n_bins > 0, "calibration needs at least one bin");
    let edges = uniform_edges(n_bins);
    let (mut count, mut sum_p, mut sum_y) =
        (vec![0u64; n_bins], vec![0f64; n_bins], vec![0f64; n_bins]);
    for (&p, &y) in probs.iter().zip(labels) {
        let b = edges[1..n_bins].partition_point(|&e| e < p);
        count[b] += 1;
        sum_p[b] += p;
        sum_y[b] += f64::from(u8::from(y != 0));
    }
    let n = probs.len() as f64;
    let bins: Vec<CalibrationBin> = (0..n_bins)
        .filter(|&b| count[b] > 0)
        .map(|b| CalibrationBin {
            lower: edges[b],
            upper: edges[b + 1],
            count: count[b],
            mean_pred: sum_p[b] / count[b] as f64,
            obs_rate: sum_y[b] / count[b] as f64,
        })
        .collect();
    let ece = bins
        .iter()
        .map(|b| b.count as f64 / n * (b.mean_pred - b.obs_rate).abs())
        .sum();
    let mean = |s: f64| if probs.is_empty() { 0.0 } else { s / n };
    let (pred_ctr, obs_ctr) = (mean(sum_p.iter().sum()), mean(sum_y.iter().sum()));
    Calibration {
        pred_ctr,
        obs_ctr,
        ratio: pred_ctr / obs_ctr,
        ece,
        bins,
    }
}

/// numpy's `linspace(0, 1, n + 1)`, bit for bit: `i * (1 / n)`, then exactly 1.
fn uniform_edges(n: usize) -> Vec<f64> {
    let step = 1.0 / n as f64;
    let mut edges: Vec<f64> = (0..=n).map(|i| i as f64 * step).collect();
    edges[n] = 1.0;
    edges
}

/// Every metric of one set of predictions, as reported for a split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Rows.
    pub count: u64,
    /// Rows with a click.
    pub positives: u64,
    /// [`roc_auc`]; `None` with one class.
    pub auc: Option<f64>,
    /// [`log_loss`].
    pub logloss: f64,
    /// [`average_precision`]; `None` without positives.
    pub pr_auc: Option<f64>,
    /// [`normalized_entropy`]; `None` with one class.
    pub ne: Option<f64>,
    /// Mean predicted probability.
    pub pred_ctr: f64,
    /// Observed click rate.
    pub obs_ctr: f64,
    /// `pred_ctr / obs_ctr`; `None` without positives.
    pub calibration_ratio: Option<f64>,
    /// Expected calibration error on [`ECE_BINS`] equal-width bins.
    pub ece: f64,
}

impl Metrics {
    /// The metrics as a JSON object, field by field; `None` becomes `null`.
    pub fn to_json(&self) -> serde_json::Value {
        // Only non-finite floats could fail, and serde_json writes those as null.
        serde_json::to_value(self).expect("metrics serialise to JSON")
    }
}

/// All metrics of `probs` against `labels`, sorting once for both AUCs.
pub fn evaluate(probs: &[f64], labels: &[u8]) -> Metrics {
    let ties = tied_counts(probs, labels);
    let cal = calibration(probs, labels, ECE_BINS);
    let logloss = log_loss(probs, labels);
    let count = labels.len() as u64;
    let positives = labels.iter().filter(|&&y| y != 0).count() as u64;
    Metrics {
        count,
        positives,
        auc: auc_from_ties(ties.iter().copied()),
        logloss,
        pr_auc: ap_from_ties(&ties),
        ne: ne_from(logloss, positives, count),
        pred_ctr: cal.pred_ctr,
        obs_ctr: cal.obs_ctr,
        calibration_ratio: (positives > 0).then_some(cal.ratio),
        ece: cal.ece,
    }
}

/// Streaming log loss.
#[derive(Debug, Clone, Default)]
pub struct LogLoss {
    sum: f64,
    n: u64,
}

impl LogLoss {
    #[inline]
    pub fn add(&mut self, p: f64, y: bool) {
        let p = p.clamp(EPS, 1.0 - EPS);
        self.sum -= if y { p.ln() } else { (1.0 - p).ln() };
        self.n += 1;
    }
    pub fn value(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            self.sum / self.n as f64
        }
    }
}

/// Streaming ROC-AUC over a fixed grid of 2^20 score bins on [0, 1]: scores in
/// one bin count as tied, so the error is bounded by the share of
/// positive-negative pairs that fall in one bin (for spread-out
/// probabilities, below 1e-5).
#[derive(Debug, Clone)]
pub struct BinnedAuc {
    pos: Vec<u32>,
    neg: Vec<u32>,
}

const AUC_BINS: usize = 1 << 20;

impl Default for BinnedAuc {
    fn default() -> Self {
        BinnedAuc {
            pos: vec![0; AUC_BINS],
            neg: vec![0; AUC_BINS],
        }
    }
}

impl BinnedAuc {
    #[inline]
    pub fn add(&mut self, p: f64, y: bool) {
        let b = ((p.clamp(0.0, 1.0) * AUC_BINS as f64) as usize).min(AUC_BINS - 1);
        if y {
            self.pos[b] += 1;
        } else {
            self.neg[b] += 1;
        }
    }

    pub fn value(&self) -> Option<f64> {
        let ties = self.pos.iter().zip(&self.neg).map(|(&p, &n)| Tie {
            pos: p as f64,
            neg: n as f64,
        });
        auc_from_ties(ties)
    }
}

/// Everything the simulator reports about its true probabilities on a split.
#[derive(Debug, Clone, Default)]
pub struct ProbSummary {
    pub n: u64,
    pub positives: u64,
    pub sum_p: f64,
    pub logloss: LogLoss,
    pub auc: Option<Box<BinnedAuc>>,
}

impl ProbSummary {
    pub fn add(&mut self, p: f64, y: bool) {
        self.n += 1;
        self.positives += y as u64;
        self.sum_p += p;
        self.logloss.add(p, y);
        self.auc.get_or_insert_with(Default::default).add(p, y);
    }

    /// Log loss of always predicting the observed rate: the entropy that
    /// normalized entropy divides by.
    pub fn base_logloss(&self) -> f64 {
        if self.n == 0 {
            return 0.0;
        }
        let r = (self.positives as f64 / self.n as f64).clamp(EPS, 1.0 - EPS);
        -(r * r.ln() + (1.0 - r) * (1.0 - r).ln())
    }

    pub fn to_json(&self) -> serde_json::Value {
        let ll = self.logloss.value();
        let base = self.base_logloss();
        serde_json::json!({
            "rows": self.n,
            "ctr": if self.n > 0 { self.positives as f64 / self.n as f64 } else { 0.0 },
            "mean_p_click": if self.n > 0 { self.sum_p / self.n as f64 } else { 0.0 },
            "logloss": ll,
            "auc": self.auc.as_ref().and_then(|a| a.value()),
            "base_rate_logloss": base,
            "normalized_entropy": if base > 0.0 { ll / base } else { 0.0 },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference values from scikit-learn 1.9.1:
    // >>> roc_auc_score([0,0,1,1,0,1,0,1], [0.1,0.4,0.35,0.8,0.5,0.5,0.2,0.9])  -> 0.84375
    // >>> log_loss([0,0,1,1], [0.1,0.4,0.35,0.8])                              -> 0.47228795380917615
    // >>> average_precision_score([0,0,1,1,0,1,0,1], [0.1,0.4,0.35,0.8,0.5,0.5,0.2,0.9]) -> 0.8541666666666666
    // >>> calibration_curve([0,1,1,0], [0.0,0.1,0.5,1.0], n_bins=10)
    // (array([0.5, 1. , 0. ]), array([0.05, 0.5 , 1.  ]))
    #[test]
    fn auc_with_ties_matches_sklearn() {
        let y = [0u8, 0, 1, 1, 0, 1, 0, 1];
        let s = [0.1, 0.4, 0.35, 0.8, 0.5, 0.5, 0.2, 0.9];
        assert!((roc_auc(&s, &y).unwrap() - 0.84375).abs() < 1e-12);
        assert_eq!(roc_auc(&[0.1, 0.2], &[1, 1]), None);
        let mut b = BinnedAuc::default();
        for (&p, &l) in s.iter().zip(&y) {
            b.add(p, l == 1);
        }
        assert!((b.value().unwrap() - 0.84375).abs() < 1e-12);
    }

    #[test]
    fn logloss_matches_sklearn() {
        let ll = log_loss(&[0.1, 0.4, 0.35, 0.8], &[0, 0, 1, 1]);
        assert!((ll - 0.47228795380917615).abs() < 1e-12, "{ll}");
        assert!(log_loss(&[0.0], &[1]).is_finite());
    }

    #[test]
    fn average_precision_groups_ties_as_sklearn() {
        let y = [0u8, 0, 1, 1, 0, 1, 0, 1];
        let s = [0.1, 0.4, 0.35, 0.8, 0.5, 0.5, 0.2, 0.9];
        let ap = average_precision(&s, &y).unwrap();
        assert!((ap - 0.8541666666666666).abs() < 1e-12, "{ap}");
        assert_eq!(average_precision(&[0.3, 0.6], &[0, 0]), None);
    }

    #[test]
    fn calibration_puts_edge_values_in_the_bin_below() {
        let cal = calibration(&[0.0, 0.1, 0.5, 1.0], &[0, 1, 1, 0], 10);
        let got: Vec<(f64, f64, u64)> = cal
            .bins
            .iter()
            .map(|b| (b.mean_pred, b.obs_rate, b.count))
            .collect();
        assert_eq!(got, [(0.05, 0.5, 2), (0.5, 1.0, 1), (1.0, 0.0, 1)]);
        assert_eq!((cal.bins[1].lower, cal.bins[1].upper), (0.4, 0.5));
        assert!((cal.ece - (0.5 * 0.45 + 0.25 * 0.5 + 0.25 * 1.0)).abs() < 1e-12);
        assert_eq!((cal.pred_ctr, cal.obs_ctr, cal.ratio), (0.4, 0.5, 0.8));
    }

    #[test]
    fn normalized_entropy_of_the_base_rate_is_one() {
        let y = [1u8, 0, 0, 0];
        let ne = normalized_entropy(&[0.25; 4], &y).unwrap();
        assert!((ne - 1.0).abs() < 1e-12, "{ne}");
        assert_eq!(normalized_entropy(&[0.5, 0.5], &[1, 1]), None);
        assert_eq!(normalized_entropy(&[], &[]), None);
    }
}
