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
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{
    ArrayRef, Float64Builder, Int8Builder, StringBuilder, TimestampMillisecondBuilder,
};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use super::interrupt;
use super::manifest::{now_rfc3339, ratio, split_info, BadLines, DatasetManifest, FORMAT_VERSION};
use super::parse::{hour_weekday, parse_rfc3339};
use super::schema::{Column, ColumnKind, DatasetSchema};
use super::sketch::{hash_bytes, hash_i64, ColumnSketch};
use super::split::{check_ratios, SplitMode, SplitRule};
use super::writer::{commit, DatasetWriter, Split, WriterOptions};
use crate::error::{DataError, Result};
use crate::metrics::ProbSummary;
use crate::progress::Progress;
use crate::rng::{AliasTable, Rng};

/// Simulator settings (`configs/datasets/synthetic.toml`); every field has the
/// default documented there.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    pub seed: u64,
    /// A fixed span in days; when absent the span follows the traffic rate.
    pub days: Option<u32>,
    /// Impressions per day when `days` is absent: more rows cover more days at
    /// the same density, so a larger sample comes from the same world.
    pub rows_per_day: u64,
    pub start: String,
    pub base_ctr: f64,
    pub users: usize,
    pub ads: usize,
    pub advertisers: usize,
    pub campaigns: usize,
    pub sites: usize,
    pub ad_categories: usize,
    pub site_categories: usize,
    pub user_zipf: f64,
    pub ad_zipf: f64,
    pub site_zipf: f64,
    pub user_sd: f64,
    pub ad_sd: f64,
    pub campaign_sd: f64,
    pub advertiser_sd: f64,
    pub site_sd: f64,
    pub latent_dim: usize,
    pub affinity_scale: f64,
    pub affinity_individual: f64,
    pub context_scale: f64,
    pub device_placement_scale: f64,
    pub hour_amplitude: f64,
    pub weekend_effect: f64,
    pub fatigue: f64,
    pub fatigue_half_life_hours: f64,
    pub memory: usize,
    pub retarget_prob: f64,
    pub home_device_prob: f64,
    pub intent_rate_per_day: f64,
    pub intent_hours: f64,
    pub intent_effect: f64,
    pub intent_targeting: f64,
    pub ad_drift_sd: f64,
    pub ad_drift_hours: f64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 2018,
            days: None,
            rows_per_day: 71_429,
            start: "2026-01-05T00:00:00Z".into(),
            base_ctr: 0.03,
            users: 1_000_000,
            ads: 40_000,
            advertisers: 2_000,
            campaigns: 8_000,
            sites: 4_000,
            ad_categories: 30,
            site_categories: 20,
            user_zipf: 0.6,
            ad_zipf: 0.9,
            site_zipf: 1.0,
            user_sd: 0.25,
            ad_sd: 0.4,
            campaign_sd: 0.2,
            advertiser_sd: 0.2,
            site_sd: 0.3,
            latent_dim: 8,
            affinity_scale: 1.0,
            affinity_individual: 0.2,
            context_scale: 0.6,
            device_placement_scale: 0.6,
            hour_amplitude: 0.3,
            weekend_effect: 0.15,
            fatigue: 1.0,
            fatigue_half_life_hours: 72.0,
            memory: 8,
            retarget_prob: 0.5,
            home_device_prob: 0.85,
            intent_rate_per_day: 0.0,
            intent_hours: 48.0,
            intent_effect: 1.0,
            intent_targeting: 0.3,
            ad_drift_sd: 0.0,
            ad_drift_hours: 72.0,
        }
    }
}

impl SimConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
        let cfg: SimConfig = toml::from_str(&text).map_err(|e| DataError::Config {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        cfg.validate().map_err(|message| DataError::Config {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(cfg)
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        let positive = [
            ("users", self.users),
            ("ads", self.ads),
            ("advertisers", self.advertisers),
            ("campaigns", self.campaigns),
            ("sites", self.sites),
            ("ad_categories", self.ad_categories),
            ("site_categories", self.site_categories),
            ("latent_dim", self.latent_dim),
            ("memory", self.memory),
            ("days", self.days.map_or(1, |d| d as usize)),
            ("rows_per_day", self.rows_per_day as usize),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(format!("`{name}` must be positive"));
            }
        }
        if self.users > u32::MAX as usize || self.ads > u32::MAX as usize {
            return Err("`users` and `ads` must be below 2^32".into());
        }
        if !(self.base_ctr > 0.0 && self.base_ctr < 1.0) {
            return Err(format!(
                "`base_ctr` must be in (0, 1), got {}",
                self.base_ctr
            ));
        }
        for (name, p) in [
            ("affinity_individual", self.affinity_individual),
            ("retarget_prob", self.retarget_prob),
            ("home_device_prob", self.home_device_prob),
            ("intent_targeting", self.intent_targeting),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("`{name}` must be in [0, 1], got {p}"));
            }
        }
        if self.fatigue_half_life_hours <= 0.0 {
            return Err("`fatigue_half_life_hours` must be positive".into());
        }
        if !(self.intent_rate_per_day >= 0.0 && self.intent_rate_per_day.is_finite()) {
            return Err(format!(
                "`intent_rate_per_day` must be zero or positive, got {}",
                self.intent_rate_per_day
            ));
        }
        if !(self.ad_drift_sd >= 0.0 && self.ad_drift_sd.is_finite()) {
            return Err(format!(
                "`ad_drift_sd` must be zero or positive, got {}",
                self.ad_drift_sd
            ));
        }
        if !(self.ad_drift_hours > 0.0 && self.ad_drift_hours.is_finite()) {
            return Err(format!(
                "`ad_drift_hours` must be positive, got {}",
                self.ad_drift_hours
            ));
        }
        if !(self.intent_hours > 0.0 && self.intent_hours.is_finite()) {
            return Err(format!(
                "`intent_hours` must be positive, got {}",
                self.intent_hours
            ));
        }
        if parse_rfc3339(&self.start).is_none() {
            return Err(format!("`start` is not an RFC 3339 time: {:?}", self.start));
        }
        Ok(())
    }

    /// Hours the time column spans for `rows` impressions: `days` when set,
    /// else `rows / rows_per_day` days rounded to the hour and at least one
    /// week, so every weekday occurs (1M rows span 14 days by default).
    pub fn span_hours(&self, rows: u64) -> usize {
        match self.days {
            Some(d) => d as usize * 24,
            None => {
                let hours = (rows as f64 * 24.0 / self.rows_per_day as f64).round() as usize;
                hours.max(7 * 24)
            }
        }
    }

    fn start_unix(&self) -> i64 {
        parse_rfc3339(&self.start).unwrap_or(0)
    }
}

pub const DEVICES: [&str; 3] = ["mobile", "desktop", "tablet"];
const DEVICE_WEIGHTS: [f64; 3] = [0.6, 0.3, 0.1];
const OSES: [[(&str, f64); 3]; 3] = [
    [("android", 0.6), ("ios", 0.4), ("ios", 0.0)],
    [("windows", 0.7), ("macos", 0.25), ("linux", 0.05)],
    [("ios", 0.55), ("android", 0.45), ("android", 0.0)],
];
pub const PLACEMENTS: [&str; 6] = [
    "top_banner",
    "sidebar",
    "in_feed",
    "interstitial",
    "footer",
    "video_preroll",
];
const PLACEMENT_WEIGHTS: [f64; 6] = [0.25, 0.2, 0.3, 0.08, 0.1, 0.07];
pub const AGES: [&str; 6] = ["18-24", "25-34", "35-44", "45-54", "55-64", "65+"];
const AGE_WEIGHTS: [f64; 6] = [0.18, 0.26, 0.2, 0.16, 0.12, 0.08];
pub const GENDERS: [&str; 3] = ["female", "male", "unknown"];
const GENDER_WEIGHTS: [f64; 3] = [0.47, 0.46, 0.07];

/// Everything drawn once from the seed.
struct World {
    cfg: SimConfig,
    user_bias: Vec<f32>,
    user_vec: Vec<f32>,
    user_age: Vec<u8>,
    user_gender: Vec<u8>,
    user_device: Vec<u8>,
    user_os: Vec<u8>,
    ad_bias: Vec<f32>,
    ad_campaign: Vec<u32>,
    ad_category: Vec<u16>,
    campaign_bias: Vec<f32>,
    campaign_advertiser: Vec<u32>,
    advertiser_bias: Vec<f32>,
    site_bias: Vec<f32>,
    site_category: Vec<u16>,
    adcat_vec: Vec<f32>,
    adcat_ctx: Vec<f32>,
    sitecat_ctx: Vec<f32>,
    device_placement: [[f32; 6]; 3],
    users: AliasTable,
    user_ids: Vec<u32>,
    ads: AliasTable,
    ad_ids: Vec<u32>,
    /// Per ad category: its ads (ids) and a table drawing them by popularity,
    /// `None` for a category without ads.
    ads_by_category: Vec<Option<(Vec<u32>, AliasTable)>>,
    sites: AliasTable,
    site_ids: Vec<u32>,
    devices: AliasTable,
    placements: AliasTable,
    os_tables: Vec<AliasTable>,
}

fn normals(rng: &mut Rng, n: usize, sd: f64) -> Vec<f32> {
    (0..n).map(|_| (rng.normal() * sd) as f32).collect()
}

fn permutation(rng: &mut Rng, n: usize) -> Vec<u32> {
    let mut p: Vec<u32> = (0..n as u32).collect();
    rng.shuffle(&mut p);
    p
}

impl World {
    fn new(cfg: &SimConfig, seed: u64) -> Self {
        let k = cfg.latent_dim;
        let vec_sd = (k as f64).powf(-0.25);
        let r = |name: &str| Rng::derive(seed, name);
        let devices = AliasTable::new(&DEVICE_WEIGHTS);
        let os_tables: Vec<AliasTable> = OSES
            .iter()
            .map(|os| AliasTable::new(&os.iter().map(|x| x.1).collect::<Vec<_>>()))
            .collect();
        let mut rd = r("user-device");
        let user_device: Vec<u8> = (0..cfg.users)
            .map(|_| devices.sample(&mut rd) as u8)
            .collect();
        let user_os: Vec<u8> = user_device
            .iter()
            .map(|&d| os_tables[d as usize].sample(&mut rd) as u8)
            .collect();
        // Taste: an age part and a gender part (observable, so the user x
        // ad-category affinity is learnable from them) plus an individual part
        // holding `affinity_individual` of its variance.
        let mut rdemo = r("user-demographics");
        let ages = AliasTable::new(&AGE_WEIGHTS);
        let genders = AliasTable::new(&GENDER_WEIGHTS);
        let user_age: Vec<u8> = (0..cfg.users)
            .map(|_| ages.sample(&mut rdemo) as u8)
            .collect();
        let user_gender: Vec<u8> = (0..cfg.users)
            .map(|_| genders.sample(&mut rdemo) as u8)
            .collect();
        let age_vec = normals(&mut r("age-vec"), AGES.len() * k, vec_sd);
        let gender_vec = normals(&mut r("gender-vec"), GENDERS.len() * k, vec_sd);
        let shared = ((1.0 - cfg.affinity_individual) / 2.0).sqrt() as f32;
        let own = cfg.affinity_individual.sqrt() as f32;
        let mut user_vec = normals(&mut r("user-vec"), cfg.users * k, vec_sd);
        for (u, taste) in user_vec.chunks_exact_mut(k).enumerate() {
            let a = &age_vec[user_age[u] as usize * k..][..k];
            let g = &gender_vec[user_gender[u] as usize * k..][..k];
            for j in 0..k {
                taste[j] = own * taste[j] + shared * (a[j] + g[j]);
            }
        }
        let mut ra = r("advertisers");
        let advertiser_cat: Vec<u16> = (0..cfg.advertisers)
            .map(|_| ra.below(cfg.ad_categories as u64) as u16)
            .collect();
        let mut rc = r("campaigns");
        let campaign_advertiser: Vec<u32> = (0..cfg.campaigns)
            .map(|_| rc.below(cfg.advertisers as u64) as u32)
            .collect();
        let mut rads = r("ads");
        let ad_campaign: Vec<u32> = (0..cfg.ads)
            .map(|_| rads.below(cfg.campaigns as u64) as u32)
            .collect();
        let ad_category: Vec<u16> = ad_campaign
            .iter()
            .map(|&c| {
                if rads.bernoulli(0.8) {
                    advertiser_cat[campaign_advertiser[c as usize] as usize]
                } else {
                    rads.below(cfg.ad_categories as u64) as u16
                }
            })
            .collect();
        let mut rs = r("sites");
        let site_category: Vec<u16> = (0..cfg.sites)
            .map(|_| rs.below(cfg.site_categories as u64) as u16)
            .collect();
        let mut rdp = r("device-placement");
        let mut device_placement = [[0f32; 6]; 3];
        for row in device_placement.iter_mut() {
            for v in row.iter_mut() {
                *v = (rdp.normal() * cfg.device_placement_scale) as f32;
            }
        }
        let ads = AliasTable::zipf(cfg.ads, cfg.ad_zipf);
        let ad_ids = permutation(&mut r("ad-perm"), cfg.ads);
        let mut by_cat: Vec<(Vec<u32>, Vec<f64>)> = vec![Default::default(); cfg.ad_categories];
        for (rank, &ad) in ad_ids.iter().enumerate() {
            let (ids, weights) = &mut by_cat[ad_category[ad as usize] as usize];
            ids.push(ad);
            weights.push(1.0 / ((rank + 1) as f64).powf(cfg.ad_zipf));
        }
        let ads_by_category = by_cat
            .into_iter()
            .map(|(ids, w)| (!ids.is_empty()).then(|| (ids, AliasTable::new(&w))))
            .collect();
        World {
            user_bias: normals(&mut r("user-bias"), cfg.users, cfg.user_sd),
            user_vec,
            user_age,
            user_gender,
            user_device,
            user_os,
            ad_bias: normals(&mut r("ad-bias"), cfg.ads, cfg.ad_sd),
            ad_campaign,
            ad_category,
            campaign_bias: normals(&mut r("campaign-bias"), cfg.campaigns, cfg.campaign_sd),
            campaign_advertiser,
            advertiser_bias: normals(
                &mut r("advertiser-bias"),
                cfg.advertisers,
                cfg.advertiser_sd,
            ),
            site_bias: normals(&mut r("site-bias"), cfg.sites, cfg.site_sd),
            site_category,
            adcat_vec: normals(&mut r("adcat-vec"), cfg.ad_categories * k, vec_sd),
            adcat_ctx: normals(&mut r("adcat-ctx"), cfg.ad_categories * k, vec_sd),
            sitecat_ctx: normals(&mut r("sitecat-ctx"), cfg.site_categories * k, vec_sd),
            device_placement,
            users: AliasTable::zipf(cfg.users, cfg.user_zipf),
            user_ids: permutation(&mut r("user-perm"), cfg.users),
            ads,
            ad_ids,
            ads_by_category,
            sites: AliasTable::zipf(cfg.sites, cfg.site_zipf),
            site_ids: permutation(&mut r("site-perm"), cfg.sites),
            devices,
            placements: AliasTable::new(&PLACEMENT_WEIGHTS),
            os_tables,
            cfg: cfg.clone(),
        }
    }
}

/// One generated impression, before its click is drawn.
#[derive(Debug, Clone, Copy)]
pub struct Impression {
    pub time: i64,
    pub user: u32,
    pub ad: u32,
    pub site: u32,
    pub device: u8,
    pub os: u8,
    pub placement: u8,
    /// The logit without the intercept.
    pub z: f64,
}

/// The time-ordered impression stream. Running it twice from the same seed
/// gives the same impressions, which is how `alpha` is solved exactly.
struct Stream<'w> {
    w: &'w World,
    rng: Rng,
    rows: u64,
    emitted: u64,
    /// Rows per hour over the whole span and the hour being emitted.
    hour_rows: Vec<u64>,
    hour: usize,
    hour_times: Vec<u32>,
    /// Per user: `memory` slots of (ad + 1, decayed count, last time offset).
    mem_ad: Vec<u32>,
    mem_n: Vec<f32>,
    mem_t: Vec<u32>,
    start: i64,
    decay_per_sec: f64,
    /// Per user: the ad category they are in the market for
    /// ([`NOT_IN_MARKET`], or [`UNSET`] before their first impression), and
    /// when (time offset, s) that next changes. Drawn from a stream of their
    /// own, so `intent_rate_per_day = 0` leaves every other draw as it was.
    intent_cat: Vec<u16>,
    intent_change: Vec<u32>,
    intent_rng: Rng,
    /// Per ad: its drift (logit) and when (time offset, s) it was last
    /// advanced, `u32::MAX` before the ad's first impression.
    drift: Vec<f32>,
    drift_t: Vec<u32>,
    drift_rng: Rng,
}

const NOT_IN_MARKET: u16 = u16::MAX;
const UNSET: u16 = u16::MAX - 1;

fn traffic_weight(hour_of_day: u32, weekday: u32) -> f64 {
    let daily = 1.0 + 0.6 * (2.0 * std::f64::consts::PI * (hour_of_day as f64 - 20.0) / 24.0).cos();
    let weekly = if weekday >= 5 { 1.1 } else { 1.0 };
    daily * weekly
}

impl<'w> Stream<'w> {
    fn new(w: &'w World, rows: u64, seed: u64) -> Self {
        let hours = w.cfg.span_hours(rows);
        let start = w.cfg.start_unix();
        let weights: Vec<f64> = (0..hours)
            .map(|h| {
                let t = start + h as i64 * 3600;
                let (hod, wd) = hour_weekday(t);
                traffic_weight(hod, wd)
            })
            .collect();
        // Largest-remainder allocation of rows to hours.
        let total: f64 = weights.iter().sum();
        let exact: Vec<f64> = weights.iter().map(|x| x / total * rows as f64).collect();
        let mut hour_rows: Vec<u64> = exact.iter().map(|x| x.floor() as u64).collect();
        let mut left = rows - hour_rows.iter().sum::<u64>();
        let mut order: Vec<usize> = (0..hours).collect();
        order.sort_by(|&a, &b| {
            (exact[b] - exact[b].floor())
                .total_cmp(&(exact[a] - exact[a].floor()))
                .then(a.cmp(&b))
        });
        for &h in order.iter().cycle() {
            if left == 0 {
                break;
            }
            hour_rows[h] += 1;
            left -= 1;
        }
        let m = w.cfg.memory;
        // Per-user intent and per-ad drift state only when they are on.
        let intent_users = if w.cfg.intent_rate_per_day > 0.0 {
            w.cfg.users
        } else {
            0
        };
        let drift_ads = if w.cfg.ad_drift_sd > 0.0 {
            w.cfg.ads
        } else {
            0
        };
        Stream {
            w,
            rng: Rng::derive(seed, "impressions"),
            rows,
            emitted: 0,
            hour_rows,
            hour: 0,
            hour_times: Vec::new(),
            mem_ad: vec![0; w.cfg.users * m],
            mem_n: vec![0.0; w.cfg.users * m],
            mem_t: vec![0; w.cfg.users * m],
            start,
            decay_per_sec: std::f64::consts::LN_2 / (w.cfg.fatigue_half_life_hours * 3600.0),
            intent_cat: vec![UNSET; intent_users],
            intent_change: vec![0; intent_users],
            intent_rng: Rng::derive(seed, "intent"),
            drift: vec![0.0; drift_ads],
            drift_t: vec![u32::MAX; drift_ads],
            drift_rng: Rng::derive(seed, "ad-drift"),
        }
    }

    /// The drift of `ad`'s logit at time offset `rel` (s): an
    /// Ornstein-Uhlenbeck process per ad with stationary sd `ad_drift_sd` and
    /// correlation time `ad_drift_hours` (an ad's appeal wanders over days:
    /// creatives wear out, competitors come and go), advanced exactly from
    /// the ad's previous impression and started in its stationary law.
    fn ad_drift(&mut self, ad: usize, rel: u32) -> f64 {
        let cfg = &self.w.cfg;
        if cfg.ad_drift_sd <= 0.0 {
            return 0.0;
        }
        let x = if self.drift_t[ad] == u32::MAX {
            cfg.ad_drift_sd * self.drift_rng.normal()
        } else {
            let dt = rel.saturating_sub(self.drift_t[ad]) as f64;
            let keep = (-dt / (cfg.ad_drift_hours * 3600.0)).exp();
            let x = self.drift[ad] as f64;
            x * keep + cfg.ad_drift_sd * (1.0 - keep * keep).sqrt() * self.drift_rng.normal()
        };
        self.drift[ad] = x as f32;
        self.drift_t[ad] = rel;
        self.drift[ad] as f64
    }

    /// The ad category `user` is in the market for at time offset `rel` (s).
    /// Each user alternates between episodes out of the market (exponential,
    /// mean `1 / intent_rate_per_day` days) and in the market for a category
    /// drawn uniformly (exponential, mean `intent_hours`); a user's first
    /// impression finds them in the stationary mix of the two.
    fn intent(&mut self, user: usize, rel: u32) -> Option<u16> {
        let cfg = &self.w.cfg;
        if cfg.intent_rate_per_day <= 0.0 {
            return None;
        }
        let on = cfg.intent_hours * 3600.0;
        let off = 86_400.0 / cfg.intent_rate_per_day;
        let cats = cfg.ad_categories as u64;
        let rng = &mut self.intent_rng;
        // The next episode after one of `cat` (or a first one, in the
        // stationary mix): its category and its length (s, at least 1).
        let next = |rng: &mut Rng, cat: u16| {
            let enter = match cat {
                UNSET => rng.bernoulli(on / (on + off)),
                c => c == NOT_IN_MARKET,
            };
            let (cat, mean) = if enter {
                (rng.below(cats) as u16, on)
            } else {
                (NOT_IN_MARKET, off)
            };
            let len = (-(1.0 - rng.uniform()).ln() * mean).ceil();
            (cat, len.clamp(1.0, u32::MAX as f64) as u32)
        };
        if self.intent_cat[user] == UNSET {
            let (cat, len) = next(rng, UNSET);
            self.intent_cat[user] = cat;
            self.intent_change[user] = rel.saturating_add(len);
        }
        while self.intent_change[user] <= rel {
            let (cat, len) = next(rng, self.intent_cat[user]);
            self.intent_cat[user] = cat;
            self.intent_change[user] = self.intent_change[user].saturating_add(len);
        }
        (self.intent_cat[user] != NOT_IN_MARKET).then_some(self.intent_cat[user])
    }

    fn next_time(&mut self) -> i64 {
        while self.hour_times.is_empty() {
            let n = self.hour_rows[self.hour] as usize;
            let mut times: Vec<u32> = (0..n).map(|_| self.rng.below(3600) as u32).collect();
            times.sort_unstable_by(|a, b| b.cmp(a)); // popped from the back
            self.hour_times = times;
            self.hour += 1;
        }
        let within = self.hour_times.pop().expect("non-empty") as i64;
        self.start + (self.hour as i64 - 1) * 3600 + within
    }

    fn next(&mut self) -> Option<Impression> {
        if self.emitted == self.rows {
            return None;
        }
        self.emitted += 1;
        let w = self.w;
        let cfg = &w.cfg;
        let k = cfg.latent_dim;
        let m = cfg.memory;
        let time = self.next_time();
        let rel = (time - self.start) as u32;
        let user = w.user_ids[w.users.sample(&mut self.rng)] as usize;
        let device = if self.rng.bernoulli(cfg.home_device_prob) {
            w.user_device[user]
        } else {
            w.devices.sample(&mut self.rng) as u8
        };
        let os = if device == w.user_device[user] {
            w.user_os[user]
        } else {
            w.os_tables[device as usize].sample(&mut self.rng) as u8
        };
        let site = w.site_ids[w.sites.sample(&mut self.rng)] as usize;
        let placement = w.placements.sample(&mut self.rng) as u8;
        let slots = user * m..(user + 1) * m;
        let remembered = self.mem_ad[slots.clone()]
            .iter()
            .filter(|&&a| a != 0)
            .count();
        let intent = self.intent(user, rel);
        let targeted = intent.and_then(|c| {
            let (ids, table) = w.ads_by_category[c as usize].as_ref()?;
            self.intent_rng
                .bernoulli(cfg.intent_targeting)
                .then(|| ids[table.sample(&mut self.intent_rng)] as usize)
        });
        let ad = if remembered > 0 && self.rng.bernoulli(cfg.retarget_prob) {
            let pick = self.rng.below(remembered as u64) as usize;
            let slot = self.mem_ad[slots.clone()]
                .iter()
                .filter(|&&a| a != 0)
                .nth(pick)
                .copied()
                .unwrap_or(1);
            (slot - 1) as usize
        } else if let Some(ad) = targeted {
            ad
        } else {
            w.ad_ids[w.ads.sample(&mut self.rng)] as usize
        };
        // Fatigue: decayed count of this ad's earlier impressions to this user.
        let mut n_prev = 0.0f64;
        let mut slot = None;
        for s in slots.clone() {
            if self.mem_ad[s] == ad as u32 + 1 {
                let age = (rel - self.mem_t[s]) as f64;
                n_prev = self.mem_n[s] as f64 * (-self.decay_per_sec * age).exp();
                slot = Some(s);
                break;
            }
        }
        let s = slot.unwrap_or_else(|| {
            // Forget the least recently seen ad (or fill an empty slot).
            slots
                .clone()
                .min_by_key(|&s| (self.mem_ad[s] != 0, self.mem_t[s]))
                .expect("memory > 0")
        });
        self.mem_ad[s] = ad as u32 + 1;
        self.mem_n[s] = (n_prev + 1.0) as f32;
        self.mem_t[s] = rel;

        let drift = self.ad_drift(ad, rel);
        let campaign = w.ad_campaign[ad] as usize;
        let advertiser = w.campaign_advertiser[campaign] as usize;
        let cat = w.ad_category[ad] as usize;
        let scat = w.site_category[site] as usize;
        let dot = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| (*x as f64) * (*y as f64))
                .sum::<f64>()
        };
        let affinity = dot(
            &w.user_vec[user * k..(user + 1) * k],
            &w.adcat_vec[cat * k..(cat + 1) * k],
        );
        let context = dot(
            &w.sitecat_ctx[scat * k..(scat + 1) * k],
            &w.adcat_ctx[cat * k..(cat + 1) * k],
        );
        let (hod, wd) = hour_weekday(time);
        let z = w.user_bias[user] as f64
            + w.ad_bias[ad] as f64
            + drift
            + w.campaign_bias[campaign] as f64
            + w.advertiser_bias[advertiser] as f64
            + w.site_bias[site] as f64
            + cfg.affinity_scale * affinity
            + cfg.context_scale * context
            + w.device_placement[device as usize][placement as usize] as f64
            + cfg.hour_amplitude * (2.0 * std::f64::consts::PI * (hod as f64 - 20.0) / 24.0).cos()
            + if wd >= 5 { cfg.weekend_effect } else { 0.0 }
            - cfg.fatigue * n_prev.ln_1p()
            + if intent == Some(cat as u16) {
                cfg.intent_effect
            } else {
                0.0
            };
        Some(Impression {
            time,
            user: user as u32,
            ad: ad as u32,
            site: site as u32,
            device,
            os,
            placement,
            z,
        })
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Solve `alpha` so that the mean of sigmoid(alpha + z) is `target`, from a
/// histogram of z (bins of 1/256 in [-32, 32]: the error in the mean is far
/// below the Bernoulli noise of any realistic row count).
fn solve_alpha(hist: &[u64], lo: f64, width: f64, target: f64) -> f64 {
    let n: u64 = hist.iter().sum();
    let mean = |a: f64| -> f64 {
        hist.iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(i, &c)| c as f64 * sigmoid(a + lo + (i as f64 + 0.5) * width))
            .sum::<f64>()
            / n.max(1) as f64
    };
    let (mut a, mut b) = (-40.0, 40.0);
    for _ in 0..100 {
        let mid = 0.5 * (a + b);
        if mean(mid) < target {
            a = mid;
        } else {
            b = mid;
        }
    }
    0.5 * (a + b)
}

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

/// The categorical columns of simulated impressions, in schema order.
pub const SIM_CATEGORICAL: [&str; 12] = [
    "user_id",
    "user_age",
    "user_gender",
    "ad_id",
    "advertiser_id",
    "campaign_id",
    "ad_category",
    "device",
    "os",
    "placement",
    "site_id",
    "site_category",
];

/// The dataset schema of simulated impressions.
pub fn sim_schema() -> DatasetSchema {
    let cat = |n: &str| Column {
        name: n.into(),
        kind: ColumnKind::Categorical,
        format: None,
    };
    let mut columns: Vec<Column> = SIM_CATEGORICAL.iter().map(|n| cat(n)).collect();
    columns.push(Column {
        name: "time".into(),
        kind: ColumnKind::Timestamp,
        format: Some(super::schema::TimeFormat::Rfc3339),
    });
    columns.push(Column {
        name: "clicked".into(),
        kind: ColumnKind::Label,
        format: None,
    });
    columns.push(Column {
        name: "p_click".into(),
        kind: ColumnKind::Truth,
        format: None,
    });
    DatasetSchema {
        name: "synthetic".into(),
        delimiter: b',',
        header: true,
        ragged: false,
        columns,
    }
}

const BATCH_ROWS: usize = 16_384;

/// Run the simulator.
pub fn simulate(opts: &SimulateOptions) -> Result<SimulateReport> {
    let started = Instant::now();
    opts.config.validate().map_err(DataError::Invalid)?;
    if opts.rows == 0 {
        return Err(DataError::Invalid("--rows must be positive".into()));
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
            std::fs::create_dir_all(&opts.out).map_err(|e| DataError::io(&opts.out, e))?;
            let path = opts.out.join("train.txt");
            if path.exists() && !opts.overwrite {
                return Err(DataError::Invalid(format!(
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
            if let Err(e) = result
                .and_then(|_| std::fs::rename(&tmp, &path).map_err(|e| DataError::io(&path, e)))
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

/// Column builders of one split's pending batch.
#[derive(Default)]
struct SimBatch {
    rows: usize,
    strings: Vec<StringBuilder>,
    time: Option<TimestampMillisecondBuilder>,
    clicked: Int8Builder,
    p: Float64Builder,
}

impl SimBatch {
    fn push(
        &mut self,
        w: &World,
        imp: &Impression,
        p: f64,
        y: bool,
        text: &mut String,
        sk: &mut [ColumnSketch],
    ) {
        if self.strings.is_empty() {
            self.strings = (0..SIM_CATEGORICAL.len())
                .map(|_| StringBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS * 8))
                .collect();
        }
        let ad = imp.ad as usize;
        let campaign = w.ad_campaign[ad];
        let advertiser = w.campaign_advertiser[campaign as usize];
        let site = imp.site as usize;
        let mut put = |col: usize, args: std::fmt::Arguments| {
            text.clear();
            let _ = text.write_fmt(args);
            self.strings[col].append_value(&*text);
            sk[col].distinct.insert(hash_bytes(text.as_bytes()));
        };
        let user = imp.user as usize;
        put(0, format_args!("u{user}"));
        put(1, format_args!("{}", AGES[w.user_age[user] as usize]));
        put(2, format_args!("{}", GENDERS[w.user_gender[user] as usize]));
        put(3, format_args!("a{ad}"));
        put(4, format_args!("adv{advertiser}"));
        put(5, format_args!("c{campaign}"));
        put(6, format_args!("cat{}", w.ad_category[ad]));
        put(7, format_args!("{}", DEVICES[imp.device as usize]));
        put(
            8,
            format_args!("{}", OSES[imp.device as usize][imp.os as usize].0),
        );
        put(9, format_args!("{}", PLACEMENTS[imp.placement as usize]));
        put(10, format_args!("s{site}"));
        put(11, format_args!("scat{}", w.site_category[site]));
        self.time
            .get_or_insert_with(|| {
                TimestampMillisecondBuilder::with_capacity(BATCH_ROWS).with_timezone("UTC")
            })
            .append_value(imp.time * 1000);
        let n = SIM_CATEGORICAL.len();
        sk[n].distinct.insert(hash_i64(imp.time));
        self.clicked.append_value(y as i8);
        sk[n + 1].distinct.insert(hash_i64(y as i64));
        self.p.append_value(p);
        sk[n + 2].distinct.insert(hash_i64(p.to_bits() as i64));
        self.rows += 1;
    }

    fn finish(&mut self, schema: &SchemaRef) -> Result<RecordBatch> {
        let mut arrays: Vec<ArrayRef> = self
            .strings
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef)
            .collect();
        let time = self
            .time
            .as_mut()
            .map(|t| t.finish())
            .ok_or_else(|| DataError::Invalid("empty simulator batch".into()))?;
        arrays.push(Arc::new(time));
        arrays.push(Arc::new(self.clicked.finish()));
        arrays.push(Arc::new(self.p.finish()));
        self.rows = 0;
        RecordBatch::try_new(schema.clone(), arrays).map_err(|e| DataError::arrow("<simulator>", e))
    }
}

/// Criteo-shaped lines: I1 hour, I2 weekday, I3 day, I4..I13 noise counts
/// (30% missing), C1..C12 hex hashes of the twelve simulated categorical
/// columns, C13..C26 noise categories of growing cardinality (10% missing).
#[allow(clippy::too_many_arguments)]
fn write_criteo_tsv(
    w: &World,
    stream: &mut Stream,
    clicks: &mut Rng,
    alpha: f64,
    path: &Path,
    bar: &Progress,
    overall: &mut ProbSummary,
    seed: u64,
) -> Result<()> {
    let file = std::fs::File::create(path).map_err(|e| DataError::io(path, e))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut noise = Rng::derive(seed, "criteo-noise");
    let noise_tables: Vec<AliasTable> = (0..26 - SIM_CATEGORICAL.len())
        .map(|i| AliasTable::zipf(10usize << (i % 14), 1.1))
        .collect();
    let count_table = AliasTable::zipf(1000, 1.2);
    let start_day = w.cfg.start_unix().div_euclid(86_400);
    let mut line = String::with_capacity(512);
    let mut row = 0u64;
    while let Some(imp) = stream.next() {
        let p = sigmoid(alpha + imp.z);
        let y = clicks.uniform() < p;
        overall.add(p, y);
        line.clear();
        let (hod, wd) = hour_weekday(imp.time);
        let _ = write!(
            line,
            "{}\t{hod}\t{wd}\t{}",
            y as u8,
            imp.time.div_euclid(86_400) - start_day
        );
        for _ in 0..10 {
            if noise.bernoulli(0.3) {
                line.push('\t');
            } else {
                let _ = write!(line, "\t{}", count_table.sample(&mut noise));
            }
        }
        let ad = imp.ad as usize;
        let campaign = w.ad_campaign[ad];
        let user = imp.user as usize;
        let cats = [
            imp.user as u64,
            w.user_age[user] as u64,
            w.user_gender[user] as u64,
            imp.ad as u64,
            w.campaign_advertiser[campaign as usize] as u64,
            campaign as u64,
            w.ad_category[ad] as u64,
            imp.device as u64,
            imp.os as u64,
            imp.placement as u64,
            imp.site as u64,
            w.site_category[imp.site as usize] as u64,
        ];
        for (i, v) in cats.iter().enumerate() {
            let h = xxhash_rust::xxh3::xxh3_64_with_seed(&v.to_le_bytes(), i as u64) as u32;
            let _ = write!(line, "\t{h:08x}");
        }
        for (i, t) in noise_tables.iter().enumerate() {
            if noise.bernoulli(0.1) {
                line.push('\t');
            } else {
                let v = t.sample(&mut noise) as u64;
                let h =
                    xxhash_rust::xxh3::xxh3_64_with_seed(&v.to_le_bytes(), 100 + i as u64) as u32;
                let _ = write!(line, "\t{h:08x}");
            }
        }
        line.push('\n');
        out.write_all(line.as_bytes())
            .map_err(|e| DataError::io(path, e))?;
        row += 1;
        if row % 65_536 == 0 {
            bar.set(row, row);
            interrupt::check()?;
        }
    }
    interrupt::check()?;
    let file = out
        .into_inner()
        .map_err(|e| DataError::io(path, e.into_error()))?;
    file.sync_all().map_err(|e| DataError::io(path, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weekday_and_hour() {
        // 2026-01-05T00:00:00Z is a Monday.
        assert_eq!(hour_weekday(1_767_571_200), (0, 0));
        assert_eq!(
            hour_weekday(1_767_571_200 + 6 * 86_400 + 13 * 3600),
            (13, 6)
        );
    }

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
