//! Bounded-memory column summaries: missing counts and distinct counts that are
//! exact up to [`EXACT_LIMIT`] values (small enough for the set to stay in cache) and a HyperLogLog estimate (about 0.8%
//! standard error) past it, so summarising 45M rows costs kilobytes per column.
use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

use serde::{Deserialize, Serialize};

/// Distinct values counted exactly before switching to HyperLogLog.
pub const EXACT_LIMIT: usize = 2_048;
const HLL_BITS: u32 = 14;
const HLL_REGISTERS: usize = 1 << HLL_BITS;

/// The values are already xxh3 hashes: hash them again by identity.
#[derive(Default)]
pub struct IdentityHasher(u64);
impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {
        unreachable!("IdentityHasher only hashes u64")
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}
type HashSet64 = HashSet<u64, BuildHasherDefault<IdentityHasher>>;

/// Counts distinct 64-bit hashes: exact while small, HyperLogLog after.
#[derive(Clone)]
pub enum DistinctCounter {
    Exact(HashSet64),
    Hll(Box<[u8]>),
}

impl Default for DistinctCounter {
    fn default() -> Self {
        DistinctCounter::Exact(HashSet64::default())
    }
}

impl DistinctCounter {
    #[inline]
    pub fn insert(&mut self, hash: u64) {
        match self {
            DistinctCounter::Exact(set) => {
                set.insert(hash);
                if set.len() > EXACT_LIMIT {
                    let mut regs = vec![0u8; HLL_REGISTERS].into_boxed_slice();
                    for &h in set.iter() {
                        hll_add(&mut regs, h);
                    }
                    *self = DistinctCounter::Hll(regs);
                }
            }
            DistinctCounter::Hll(regs) => hll_add(regs, hash),
        }
    }

    pub fn merge(&mut self, other: &DistinctCounter) {
        match other {
            DistinctCounter::Exact(set) => {
                for &h in set {
                    self.insert(h);
                }
            }
            DistinctCounter::Hll(theirs) => {
                if let DistinctCounter::Exact(set) = self {
                    let mut regs = vec![0u8; HLL_REGISTERS].into_boxed_slice();
                    for &h in set.iter() {
                        hll_add(&mut regs, h);
                    }
                    *self = DistinctCounter::Hll(regs);
                }
                if let DistinctCounter::Hll(mine) = self {
                    for (a, b) in mine.iter_mut().zip(theirs.iter()) {
                        *a = (*a).max(*b);
                    }
                }
            }
        }
    }

    /// The count, and whether it is exact.
    pub fn estimate(&self) -> (u64, bool) {
        match self {
            DistinctCounter::Exact(set) => (set.len() as u64, true),
            DistinctCounter::Hll(regs) => (hll_estimate(regs), false),
        }
    }
}

#[inline]
fn hll_add(regs: &mut [u8], hash: u64) {
    let idx = (hash >> (64 - HLL_BITS)) as usize;
    let rest = (hash << HLL_BITS) | (1 << (HLL_BITS - 1));
    let rank = rest.leading_zeros() as u8 + 1;
    if regs[idx] < rank {
        regs[idx] = rank;
    }
}

fn hll_estimate(regs: &[u8]) -> u64 {
    let m = regs.len() as f64;
    let alpha = 0.7213 / (1.0 + 1.079 / m);
    let sum: f64 = regs.iter().map(|&r| 2f64.powi(-(r as i32))).sum();
    let raw = alpha * m * m / sum;
    let zeros = regs.iter().filter(|&&r| r == 0).count();
    if raw <= 2.5 * m && zeros > 0 {
        (m * (m / zeros as f64).ln()).round() as u64
    } else {
        raw.round() as u64
    }
}

/// Missing and distinct counts of one column.
#[derive(Clone, Default)]
pub struct ColumnSketch {
    pub missing: u64,
    pub distinct: DistinctCounter,
}

impl ColumnSketch {
    pub fn merge(&mut self, other: &ColumnSketch) {
        self.missing += other.missing;
        self.distinct.merge(&other.distinct);
    }
}

/// The summary of one column as reported and stored in `dataset.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ColumnSummary {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: super::schema::ColumnKind,
    pub missing: u64,
    pub missing_rate: f64,
    pub distinct: u64,
    /// False when `distinct` is a HyperLogLog estimate.
    pub distinct_exact: bool,
}

#[inline]
pub fn hash_bytes(b: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(b)
}

#[inline]
pub fn hash_i64(v: i64) -> u64 {
    xxhash_rust::xxh3::xxh3_64(&v.to_le_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_then_estimate_within_two_percent() {
        let mut c = DistinctCounter::default();
        for i in 0..1000i64 {
            c.insert(hash_i64(i % 500));
        }
        assert_eq!(c.estimate(), (500, true));
        for i in 0..200_000i64 {
            c.insert(hash_i64(i));
        }
        let (n, exact) = c.estimate();
        assert!(!exact);
        assert!((n as f64 - 200_000.0).abs() / 200_000.0 < 0.02, "{n}");
    }

    #[test]
    fn merge_is_union() {
        let (mut a, mut b) = (DistinctCounter::default(), DistinctCounter::default());
        for i in 0..100_000i64 {
            a.insert(hash_i64(i));
        }
        for i in 50_000..150_000i64 {
            b.insert(hash_i64(i));
        }
        let mut small = DistinctCounter::default();
        for i in 0..10i64 {
            small.insert(hash_i64(i));
        }
        a.merge(&b);
        a.merge(&small);
        let (n, _) = a.estimate();
        assert!((n as f64 - 150_000.0).abs() / 150_000.0 < 0.02, "{n}");
        small.merge(&b);
        let (n, _) = small.estimate();
        assert!((n as f64 - 100_010.0).abs() / 100_010.0 < 0.02, "{n}");
    }
}
