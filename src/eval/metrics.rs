//! Metrics of predicted click probabilities: exact ROC-AUC (ties count one
//! half, as scikit-learn's `roc_auc_score`), log loss with probabilities
//! clipped to [1e-15, 1 - 1e-15] as scikit-learn does, and streaming
//! accumulators for data too large to keep (the simulator's 100M rows).

/// Clip used by log loss, as scikit-learn.
pub const EPS: f64 = 1e-15;

/// Mean binary cross-entropy.
pub fn log_loss(probs: &[f64], labels: &[u8]) -> f64 {
    assert_eq!(probs.len(), labels.len(), "one label per probability");
    let mut acc = LogLoss::default();
    for (&p, &y) in probs.iter().zip(labels) {
        acc.add(p, y != 0);
    }
    acc.value()
}

/// Exact ROC-AUC by sorting; tied scores share their rank (Mann-Whitney U).
/// `None` when only one class is present.
pub fn roc_auc(scores: &[f64], labels: &[u8]) -> Option<f64> {
    assert_eq!(scores.len(), labels.len(), "one label per score");
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_unstable_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let (mut pos, mut neg) = (0f64, 0f64);
    let mut rank_sum = 0f64; // sum of (average) ranks of positives, 1-based
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            if labels[k] != 0 {
                pos += 1.0;
                rank_sum += avg_rank;
            } else {
                neg += 1.0;
            }
        }
        i = j + 1;
    }
    if pos == 0.0 || neg == 0.0 {
        return None;
    }
    Some((rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg))
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
        let (mut neg_below, mut num) = (0f64, 0f64);
        let (mut tp, mut tn) = (0f64, 0f64);
        for (&p, &n) in self.pos.iter().zip(&self.neg) {
            let (p, n) = (p as f64, n as f64);
            num += p * (neg_below + n / 2.0);
            neg_below += n;
            tp += p;
            tn += n;
        }
        (tp > 0.0 && tn > 0.0).then(|| num / (tp * tn))
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
}
