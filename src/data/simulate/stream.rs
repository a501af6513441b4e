//! The time-ordered impression stream (traffic by hour, exposure memory,
//! intent episodes, ad drift) and the intercept solved so the mean click
//! probability is the configured base rate.

use super::world::World;
use crate::data::parse::hour_weekday;
use crate::rng::Rng;

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
pub(super) struct Stream<'w> {
    pub(super) w: &'w World,
    pub(super) rng: Rng,
    pub(super) rows: u64,
    pub(super) emitted: u64,
    /// Rows per hour over the whole span and the hour being emitted.
    pub(super) hour_rows: Vec<u64>,
    pub(super) hour: usize,
    pub(super) hour_times: Vec<u32>,
    /// Per user: `memory` slots of (ad + 1, decayed count, last time offset).
    pub(super) mem_ad: Vec<u32>,
    pub(super) mem_n: Vec<f32>,
    pub(super) mem_t: Vec<u32>,
    pub(super) start: i64,
    pub(super) decay_per_sec: f64,
    /// Per user: the ad category they are in the market for
    /// ([`NOT_IN_MARKET`], or [`UNSET`] before their first impression), and
    /// when (time offset, s) that next changes. Drawn from a stream of their
    /// own, so `intent_rate_per_day = 0` leaves every other draw as it was.
    pub(super) intent_cat: Vec<u16>,
    pub(super) intent_change: Vec<u32>,
    pub(super) intent_rng: Rng,
    /// Per ad: its drift (logit) and when (time offset, s) it was last
    /// advanced, `u32::MAX` before the ad's first impression.
    pub(super) drift: Vec<f32>,
    pub(super) drift_t: Vec<u32>,
    pub(super) drift_rng: Rng,
}

pub(super) const NOT_IN_MARKET: u16 = u16::MAX;
pub(super) const UNSET: u16 = u16::MAX - 1;

pub(super) fn traffic_weight(hour_of_day: u32, weekday: u32) -> f64 {
    let daily = 1.0 + 0.6 * (2.0 * std::f64::consts::PI * (hour_of_day as f64 - 20.0) / 24.0).cos();
    let weekly = if weekday >= 5 { 1.1 } else { 1.0 };
    daily * weekly
}

impl<'w> Stream<'w> {
    pub(super) fn new(w: &'w World, rows: u64, seed: u64) -> Self {
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
    pub(super) fn ad_drift(&mut self, ad: usize, rel: u32) -> f64 {
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
    pub(super) fn intent(&mut self, user: usize, rel: u32) -> Option<u16> {
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

    pub(super) fn next_time(&mut self) -> i64 {
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

    pub(super) fn next(&mut self) -> Option<Impression> {
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

pub(super) fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Solve `alpha` so that the mean of sigmoid(alpha + z) is `target`, from a
/// histogram of z (bins of 1/256 in [-32, 32]: the error in the mean is far
/// below the Bernoulli noise of any realistic row count).
pub(super) fn solve_alpha(hist: &[u64], lo: f64, width: f64, target: f64) -> f64 {
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
