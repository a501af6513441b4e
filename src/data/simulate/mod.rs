//! `ctr-dl simulate`: ad impressions whose true click probability is known, so
//! a model's distance from the best possible log loss can be measured.
//!
//! # The generative model
//!
//! Entities are drawn once from the seed: users (an age band and a gender,
//! a home device and its OS, a logit offset, a latent taste vector), advertisers
//! (a category, an offset), campaigns (an advertiser, an offset), ads (a
//! campaign, a category: the advertiser's in 80% of ads, an offset), sites (a
//! category, an offset), and latent vectors per age band, gender, ad category
//! and site category. A user's taste is the sum of their age band's and
//! gender's vectors plus an individual part that holds `affinity_individual` of
//! its variance, so most of the user x ad-category affinity is learnable from
//! the observed demographics and the rest needs many impressions of the user.
//! Popularity is Zipf-like: the k-th most popular user, ad and site has weight
//! `1 / k^exponent`, and popularity ranks are shuffled against ids.
//!
//! Impressions come in time order with daily and weekly traffic cycles, at
//! `rows_per_day` impressions a day (at least one week; `days` fixes the span
//! instead), so a larger sample has the same density of repeat impressions
//! and comes from the same world. Each draws a user, then a device (the user's home device
//! with probability `home_device_prob`), a site and placement, and an ad: with
//! probability `retarget_prob` one the user has seen recently, else by
//! popularity. Its click probability is `p = sigmoid(alpha + z)` with
//!
//! ```text
//! z = b_user + b_ad + b_campaign + b_advertiser + b_site
//!   + affinity_scale * <u_user, v_ad_category>        (user x ad category)
//!   + context_scale  * <w_site_category, c_ad_category> (site x ad category)
//!   + T[device, placement]                             (device x placement)
//!   + hour_amplitude * cos(2 pi (hour - 20) / 24) + weekend_effect * [Sat/Sun]
//!   - fatigue * ln(1 + n)
//!   + drift_ad(t) + intent_effect * [user in the market for the ad's category at t]
//! ```
//!
//! where `n` is the user's decayed count of earlier impressions of this ad
//! (half-life `fatigue_half_life_hours`; a user remembers `memory` ads). The
//! last two terms make the world non-stationary and are off by default:
//! `drift_ad` is an Ornstein-Uhlenbeck process per ad (sd `ad_drift_sd`,
//! correlation time `ad_drift_hours`); with `intent_rate_per_day > 0` each user
//! alternates between time out of the market and in-market episodes (mean
//! `intent_hours`) for one ad category, whose ads they then click more and are
//! shown more (`intent_targeting` of their impressions not retargeted). The
//! latent terms are dot products of vectors with unit-variance products, so
//! they are pairwise interactions a linear model cannot represent and a
//! factorization machine can. `alpha` is solved so that the mean of `p` over
//! the generated rows equals `base_ctr` (a first pass over the same impression
//! stream builds a histogram of `z`). `clicked ~ Bernoulli(p)` from a stream of
//! its own. Nothing depends on wall time or thread timing: the same seed and
//! config give the same bytes.
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use arrow::datatypes::SchemaRef;

use crate::data::interrupt;
use crate::data::manifest::{
    now_rfc3339, ratio, split_info, BadLines, DatasetManifest, FORMAT_VERSION,
};
use crate::data::sketch::ColumnSketch;
use crate::data::split::{check_ratios, SplitMode, SplitRule};
use crate::data::writer::{commit, DatasetWriter, Split, WriterOptions};
use crate::error::{Error, Result};
use crate::metrics::ProbSummary;
use crate::progress::Progress;
use crate::rng::Rng;

mod config;
mod output;
mod stream;
mod world;

use output::{write_criteo_tsv, SimBatch};
use stream::{sigmoid, solve_alpha, Stream};
use world::World;

pub use config::SimConfig;
pub use output::{sim_schema, SIM_CATEGORICAL};
pub use stream::Impression;
pub use world::{AGES, DEVICES, GENDERS, PLACEMENTS};

/// Output of `ctr-dl simulate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SimFormat {
    /// A dataset: train/valid/test Parquet shards and dataset.json.
    Parquet,
    /// One Criteo-shaped TSV file (`label I1..I13 C1..C26`) for scale tests.
    CriteoTsv,
}

#[derive(Debug, Clone)]
pub struct SimulateOptions {
    pub rows: u64,
    pub out: PathBuf,
    pub seed: u64,
    pub config: SimConfig,
    pub format: SimFormat,
    pub split: SplitMode,
    pub ratios: [f64; 3],
    pub writer: WriterOptions,
    pub overwrite: bool,
    pub progress: bool,
}

/// What the simulator reports: the metrics of the true probability.
#[derive(Debug, Clone)]
pub struct SimulateReport {
    pub rows: u64,
    pub alpha: f64,
    pub overall: serde_json::Value,
    pub splits: Vec<(Split, serde_json::Value)>,
    pub output: PathBuf,
    pub seconds: f64,
}

const BATCH_ROWS: usize = 16_384;

/// Run the simulator.
pub fn simulate(opts: &SimulateOptions) -> Result<SimulateReport> {
    let started = Instant::now();
    opts.config.validate().map_err(Error::Invalid)?;
    if opts.rows == 0 {
        return Err(Error::Invalid("--rows must be positive".into()));
    }
    let ratios = check_ratios(opts.ratios)?;
    // SIGINT/SIGTERM from here on: stop, remove what was written, fail.
    let _signals = interrupt::catch_signals();
    let world = World::new(&opts.config, opts.seed);

    // Pass 1: the z of every impression, to solve the intercept.
    let (lo, width, bins) = (-32.0, 1.0 / 256.0, 64 * 256);
    let mut hist = vec![0u64; bins];
    let mut stream = Stream::new(&world, opts.rows, opts.seed);
    let bar = Progress::rows(opts.progress, opts.rows, "simulate: solve base rate");
    let mut i = 0u64;
    while let Some(imp) = stream.next() {
        let b = (((imp.z - lo) / width) as isize).clamp(0, bins as isize - 1) as usize;
        hist[b] += 1;
        i += 1;
        if i % 65_536 == 0 {
            bar.set(i, i);
            interrupt::check()?;
        }
    }
    bar.finish_and_clear();
    let alpha = solve_alpha(&hist, lo, width, opts.config.base_ctr);

    let mut stream = Stream::new(&world, opts.rows, opts.seed);
    let mut clicks = Rng::derive(opts.seed, "clicks");
    let bar = Progress::rows(opts.progress, opts.rows, "simulate");
    let mut overall = ProbSummary::default();
    let mut per_split: [ProbSummary; 3] = Default::default();
    let output = match opts.format {
        SimFormat::CriteoTsv => {
            std::fs::create_dir_all(&opts.out).map_err(|e| Error::io(&opts.out, e))?;
            let path = opts.out.join("train.txt");
            if path.exists() && !opts.overwrite {
                return Err(Error::Invalid(format!(
                    "{} exists; pass --overwrite to replace it",
                    path.display()
                )));
            }
            let tmp = super::io::temp_path(&path);
            let result = write_criteo_tsv(
                &world,
                &mut stream,
                &mut clicks,
                alpha,
                &tmp,
                &bar,
                &mut overall,
                opts.seed,
            );
            if let Err(e) =
                result.and_then(|_| std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e)))
            {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
            path
        }
        SimFormat::Parquet => {
            let schema = sim_schema();
            let arrow_schema: SchemaRef = Arc::new(schema.arrow_schema());
            let mut writer = DatasetWriter::create(
                &opts.out,
                arrow_schema.clone(),
                opts.writer,
                opts.overwrite,
            )?;
            let rule = match opts.split {
                SplitMode::Random => SplitRule::random(opts.seed, ratios),
                // Rows are generated in time order.
                SplitMode::Time => SplitRule::by_row(opts.rows, ratios),
            };
            let mut sketches = vec![ColumnSketch::default(); schema.columns.len()];
            let mut batches: [SimBatch; 3] = Default::default();
            let mut row = 0u64;
            let mut text = String::new();
            while let Some(imp) = stream.next() {
                let p = sigmoid(alpha + imp.z);
                let y = clicks.uniform() < p;
                overall.add(p, y);
                let split = rule.assign(row, Some(imp.time));
                per_split[split.index()].add(p, y);
                let b = &mut batches[split.index()];
                b.push(&world, &imp, p, y, &mut text, &mut sketches);
                if b.rows == BATCH_ROWS {
                    let batch = b.finish(&arrow_schema)?;
                    writer.write(split, batch)?;
                }
                row += 1;
                if row % 65_536 == 0 {
                    bar.set(row, row);
                    interrupt::check()?;
                }
            }
            for split in Split::ALL {
                let b = &mut batches[split.index()];
                if b.rows > 0 {
                    let batch = b.finish(&arrow_schema)?;
                    writer.write(split, batch)?;
                }
            }
            let shards = writer.finish()?;
            let [train, valid, test] = shards;
            let count = |s: Split| (per_split[s.index()].n, per_split[s.index()].positives);
            let columns = super::convert::summarize_columns(&schema, &sketches, opts.rows);
            let split_json: serde_json::Map<String, serde_json::Value> = Split::ALL
                .iter()
                .map(|s| (s.name().to_string(), per_split[s.index()].to_json()))
                .collect();
            let manifest = DatasetManifest {
                format_version: FORMAT_VERSION,
                name: "synthetic".into(),
                created: now_rfc3339(),
                ctr_dl_version: env!("CARGO_PKG_VERSION").into(),
                label: "clicked".into(),
                schema,
                sources: Vec::new(),
                split: rule.describe(opts.seed, ratios, Some("time")),
                train: split_info(count(Split::Train).0, count(Split::Train).1, train),
                valid: split_info(count(Split::Valid).0, count(Split::Valid).1, valid),
                test: split_info(count(Split::Test).0, count(Split::Test).1, test),
                rows: overall.n,
                positives: overall.positives,
                positive_rate: ratio(overall.positives, overall.n),
                columns,
                bad_lines: BadLines::default(),
                simulation: Some(serde_json::json!({
                    "seed": opts.seed,
                    "alpha": alpha,
                    "span_hours": opts.config.span_hours(opts.rows),
                    "config": opts.config,
                    "truth_column": "p_click",
                    "true_metrics": {
                        "all": overall.to_json(),
                        "splits": split_json,
                    },
                })),
            };
            commit(&opts.out, &manifest)?;
            opts.out.clone()
        }
    };
    bar.finish_and_clear();
    Ok(SimulateReport {
        rows: overall.n,
        alpha,
        overall: overall.to_json(),
        splits: if opts.format == SimFormat::Parquet {
            Split::ALL
                .iter()
                .map(|s| (*s, per_split[s.index()].to_json()))
                .collect()
        } else {
            Vec::new()
        },
        output,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> SimConfig {
        SimConfig {
            users: 3_000,
            ads: 600,
            advertisers: 60,
            campaigns: 200,
            sites: 100,
            ..SimConfig::default()
        }
    }

    #[test]
    fn intent_episodes_alternate_at_their_rates() {
        let cfg = SimConfig {
            intent_rate_per_day: 1.0,
            intent_hours: 24.0,
            ..small()
        };
        let w = World::new(&cfg, 7);
        let mut s = Stream::new(&w, 10, 7);
        // Out of the market a day on average, in it a day: half the users at
        // any instant, and half of one user's hours.
        let at =
            |s: &mut Stream, t: u32| (0..cfg.users).filter(|&u| s.intent(u, t).is_some()).count();
        let share = at(&mut s, 1_000) as f64 / cfg.users as f64;
        assert!((share - 0.5).abs() < 0.04, "{share}");
        let share = at(&mut s, 40 * 86_400) as f64 / cfg.users as f64;
        assert!((share - 0.5).abs() < 0.04, "{share}");
        let (mut on, mut starts, mut prev) = (0usize, 0usize, None);
        let hours = 400 * 24;
        for h in 0..hours {
            let c = s.intent(0, 50 * 86_400 + h * 3600);
            on += c.is_some() as usize;
            starts += (c.is_some() && c != prev) as usize;
            prev = c;
        }
        assert!((on as f64 / hours as f64 - 0.5).abs() < 0.1, "{on}");
        // About 200 episodes of about 24 hours each (an hourly look merges a
        // few that touch).
        assert!((150..=230).contains(&starts), "{starts} episodes");
    }

    #[test]
    fn ad_drift_keeps_its_sd_and_forgets_over_its_time() {
        let cfg = SimConfig {
            ads: 20_000,
            ad_drift_sd: 0.3,
            ad_drift_hours: 10.0,
            ..small()
        };
        let w = World::new(&cfg, 3);
        let mut s = Stream::new(&w, 10, 3);
        let x0: Vec<f64> = (0..cfg.ads).map(|a| s.ad_drift(a, 0)).collect();
        // One correlation time later: the same spread, correlation 1/e.
        let x1: Vec<f64> = (0..cfg.ads).map(|a| s.ad_drift(a, 36_000)).collect();
        let n = cfg.ads as f64;
        let sd = |x: &[f64]| (x.iter().map(|v| v * v).sum::<f64>() / n).sqrt();
        let corr = x0.iter().zip(&x1).map(|(a, b)| a * b).sum::<f64>() / n / (sd(&x0) * sd(&x1));
        assert!((sd(&x0) - 0.3).abs() < 0.01 && (sd(&x1) - 0.3).abs() < 0.01);
        assert!((corr - (-1f64).exp()).abs() < 0.03, "{corr}");
        // At the same instant an ad keeps its value.
        assert_eq!(s.ad_drift(5, 36_000), x1[5]);
    }

    #[test]
    fn intent_and_drift_draw_from_streams_of_their_own() {
        let run = |cfg: &SimConfig| {
            let w = World::new(cfg, 11);
            let mut s = Stream::new(&w, 20_000, 11);
            std::iter::from_fn(|| s.next()).collect::<Vec<_>>()
        };
        let base = run(&small());
        // In the market but with no effect and no targeting: the same rows.
        let quiet = run(&SimConfig {
            intent_rate_per_day: 0.5,
            intent_effect: 0.0,
            intent_targeting: 0.0,
            ..small()
        });
        let same = |a: &Impression, b: &Impression| {
            (a.time, a.user, a.ad, a.site, a.device, a.placement)
                == (b.time, b.user, b.ad, b.site, b.device, b.placement)
        };
        assert!(base
            .iter()
            .zip(&quiet)
            .all(|(a, b)| same(a, b) && a.z == b.z));
        // Drift moves the logits only.
        let drift = run(&SimConfig {
            ad_drift_sd: 0.3,
            ..small()
        });
        assert!(base.iter().zip(&drift).all(|(a, b)| same(a, b)));
        let moved = base.iter().zip(&drift).filter(|(a, b)| a.z != b.z).count();
        assert_eq!(moved, base.len());
        // Targeting shows in-market users their category's ads (retargeting
        // off, so that every impression is open to it).
        let cfg = SimConfig {
            intent_rate_per_day: 0.5,
            intent_targeting: 0.5,
            retarget_prob: 0.0,
            ..small()
        };
        let w = World::new(&cfg, 11);
        let mut s = Stream::new(&w, 20_000, 11);
        let (mut hits, mut in_market) = (0, 0);
        while let Some(imp) = s.next() {
            if let Some(c) = s.intent(imp.user as usize, (imp.time - s.start) as u32) {
                in_market += 1;
                hits += (w.ad_category[imp.ad as usize] == c) as usize;
            }
        }
        let share = hits as f64 / in_market as f64;
        // Half targeted, plus the chance draws of the other half.
        assert!(share > 0.45, "{share} of {in_market}");
    }

    #[test]
    fn alpha_hits_the_target_rate() {
        let (lo, width) = (-32.0, 1.0 / 256.0);
        let mut hist = vec![0u64; 64 * 256];
        let mut r = Rng::new(5);
        let zs: Vec<f64> = (0..50_000).map(|_| r.normal()).collect();
        for z in &zs {
            hist[((z - lo) / width) as usize] += 1;
        }
        let a = solve_alpha(&hist, lo, width, 0.03);
        let mean = zs.iter().map(|z| sigmoid(a + z)).sum::<f64>() / zs.len() as f64;
        assert!((mean - 0.03).abs() < 2e-4, "{mean}");
    }
}
