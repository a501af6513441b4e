//! The simulator's settings (`configs/datasets/synthetic.toml`) and their checks.
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::data::parse::parse_rfc3339;
use crate::error::{Error, Result};

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
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let cfg: SimConfig = toml::from_str(&text).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        cfg.validate().map_err(|message| Error::Config {
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

    pub(super) fn start_unix(&self) -> i64 {
        parse_rfc3339(&self.start).unwrap_or(0)
    }
}
