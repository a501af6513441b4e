//! Assigning rows to train, valid and test. Every rule decides a row from the
//! row alone (its index, or its time), so converting with any number of
//! threads, or simulating, gives the same split for the same seed.
use crate::error::{Error, Result};
use crate::rng::splitmix64;

use super::manifest::SplitInfoRule;
use super::writer::Split;

/// How rows are assigned to train, valid and test.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum SplitMode {
    /// Each row independently at random (seeded): the x4 benchmark protocol.
    Random,
    /// The latest rows go to valid and test: by the time column when there is
    /// one, else by position in the input.
    Time,
}

/// The split of one row.
#[derive(Debug, Clone, Copy)]
pub enum SplitRule {
    /// Uniform draw from a hash of (seed, row index).
    Random { key: u64, train: f64, valid: f64 },
    /// Row index below `valid_from` is train, below `test_from` valid.
    ByRow { valid_from: u64, test_from: u64 },
    /// Time (unix seconds) of schema column `column`; rows without one are train.
    ByTime {
        column: usize,
        valid_from: i64,
        test_from: i64,
    },
}

impl SplitRule {
    pub fn random(seed: u64, ratios: [f64; 3]) -> Self {
        SplitRule::Random {
            key: xxhash_rust::xxh3::xxh3_64_with_seed(b"ctr-dl split", seed),
            train: ratios[0],
            valid: ratios[1],
        }
    }

    /// Rows `0..rows` in time order: the last ones to valid and test.
    pub fn by_row(rows: u64, ratios: [f64; 3]) -> Self {
        SplitRule::ByRow {
            valid_from: (rows as f64 * ratios[0]).round() as u64,
            test_from: (rows as f64 * (ratios[0] + ratios[1])).round() as u64,
        }
    }

    /// How the rule is recorded in `dataset.json`; `time_column` names the
    /// column of a `ByTime` rule.
    pub fn describe(
        &self,
        seed: u64,
        ratios: [f64; 3],
        time_column: Option<&str>,
    ) -> SplitInfoRule {
        match *self {
            SplitRule::Random { .. } => SplitInfoRule::Random { seed, ratios },
            SplitRule::ByRow {
                valid_from,
                test_from,
            } => SplitInfoRule::Order {
                ratios,
                valid_from_row: valid_from,
                test_from_row: test_from,
            },
            SplitRule::ByTime {
                valid_from,
                test_from,
                ..
            } => SplitInfoRule::Time {
                column: time_column.unwrap_or_default().to_string(),
                ratios,
                valid_from,
                test_from,
            },
        }
    }

    /// The split of row `row` whose time (for `ByTime`) is `time`.
    #[inline]
    pub fn assign(&self, row: u64, time: Option<i64>) -> Split {
        match *self {
            SplitRule::Random { key, train, valid } => {
                let mut s = key ^ row.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                let u = (splitmix64(&mut s) >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
                if u < train {
                    Split::Train
                } else if u < train + valid {
                    Split::Valid
                } else {
                    Split::Test
                }
            }
            SplitRule::ByRow {
                valid_from,
                test_from,
            } => {
                if row < valid_from {
                    Split::Train
                } else if row < test_from {
                    Split::Valid
                } else {
                    Split::Test
                }
            }
            SplitRule::ByTime {
                valid_from,
                test_from,
                ..
            } => match time {
                Some(t) if t >= test_from => Split::Test,
                Some(t) if t >= valid_from => Split::Valid,
                _ => Split::Train,
            },
        }
    }
}

/// Ratios must be three non-negative fractions summing to 1, train positive.
pub fn check_ratios(r: [f64; 3]) -> Result<[f64; 3]> {
    let sum: f64 = r.iter().sum();
    if r.iter().any(|x| !(0.0..=1.0).contains(x)) || (sum - 1.0).abs() > 1e-9 || r[0] <= 0.0 {
        return Err(Error::Invalid(format!(
            "split ratios must be three non-negative numbers summing to 1 with train > 0, got {r:?}"
        )));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_split_follows_ratios_and_seed() {
        let r = SplitRule::random(2018, [0.8, 0.1, 0.1]);
        let mut counts = [0u64; 3];
        for row in 0..100_000 {
            counts[r.assign(row, None).index()] += 1;
        }
        assert!((counts[0] as f64 / 1e5 - 0.8).abs() < 0.01, "{counts:?}");
        assert!((counts[1] as f64 / 1e5 - 0.1).abs() < 0.01, "{counts:?}");
        let other = SplitRule::random(7, [0.8, 0.1, 0.1]);
        let differ = (0..1000)
            .filter(|&i| r.assign(i, None) != other.assign(i, None))
            .count();
        assert!(differ > 100);
    }

    #[test]
    fn ordered_splits() {
        let r = SplitRule::by_row(10, [0.8, 0.1, 0.1]);
        let s: Vec<Split> = (0..10).map(|i| r.assign(i, None)).collect();
        assert_eq!(s[7], Split::Train);
        assert_eq!(s[8], Split::Valid);
        assert_eq!(s[9], Split::Test);
        let t = SplitRule::ByTime {
            column: 0,
            valid_from: 100,
            test_from: 200,
        };
        assert_eq!(t.assign(0, Some(99)), Split::Train);
        assert_eq!(t.assign(0, Some(100)), Split::Valid);
        assert_eq!(t.assign(0, Some(250)), Split::Test);
        assert_eq!(t.assign(0, None), Split::Train);
        assert!(check_ratios([0.5, 0.6, -0.1]).is_err());
    }
}
