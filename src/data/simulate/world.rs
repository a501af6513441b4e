//! The world: users, ads, sites and their latent vectors, everything drawn
//! once from the seed.

use super::config::SimConfig;
use crate::rng::{AliasTable, Rng};

pub const DEVICES: [&str; 3] = ["mobile", "desktop", "tablet"];
pub(super) const DEVICE_WEIGHTS: [f64; 3] = [0.6, 0.3, 0.1];
pub(super) const OSES: [[(&str, f64); 3]; 3] = [
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
pub(super) const PLACEMENT_WEIGHTS: [f64; 6] = [0.25, 0.2, 0.3, 0.08, 0.1, 0.07];
pub const AGES: [&str; 6] = ["18-24", "25-34", "35-44", "45-54", "55-64", "65+"];
pub(super) const AGE_WEIGHTS: [f64; 6] = [0.18, 0.26, 0.2, 0.16, 0.12, 0.08];
pub const GENDERS: [&str; 3] = ["female", "male", "unknown"];
pub(super) const GENDER_WEIGHTS: [f64; 3] = [0.47, 0.46, 0.07];

/// Everything drawn once from the seed.
pub(super) struct World {
    pub(super) cfg: SimConfig,
    pub(super) user_bias: Vec<f32>,
    pub(super) user_vec: Vec<f32>,
    pub(super) user_age: Vec<u8>,
    pub(super) user_gender: Vec<u8>,
    pub(super) user_device: Vec<u8>,
    pub(super) user_os: Vec<u8>,
    pub(super) ad_bias: Vec<f32>,
    pub(super) ad_campaign: Vec<u32>,
    pub(super) ad_category: Vec<u16>,
    pub(super) campaign_bias: Vec<f32>,
    pub(super) campaign_advertiser: Vec<u32>,
    pub(super) advertiser_bias: Vec<f32>,
    pub(super) site_bias: Vec<f32>,
    pub(super) site_category: Vec<u16>,
    pub(super) adcat_vec: Vec<f32>,
    pub(super) adcat_ctx: Vec<f32>,
    pub(super) sitecat_ctx: Vec<f32>,
    pub(super) device_placement: [[f32; 6]; 3],
    pub(super) users: AliasTable,
    pub(super) user_ids: Vec<u32>,
    pub(super) ads: AliasTable,
    pub(super) ad_ids: Vec<u32>,
    /// Per ad category: its ads (ids) and a table drawing them by popularity,
    /// `None` for a category without ads.
    pub(super) ads_by_category: Vec<Option<(Vec<u32>, AliasTable)>>,
    pub(super) sites: AliasTable,
    pub(super) site_ids: Vec<u32>,
    pub(super) devices: AliasTable,
    pub(super) placements: AliasTable,
    pub(super) os_tables: Vec<AliasTable>,
}

pub(super) fn normals(rng: &mut Rng, n: usize, sd: f64) -> Vec<f32> {
    (0..n).map(|_| (rng.normal() * sd) as f32).collect()
}

pub(super) fn permutation(rng: &mut Rng, n: usize) -> Vec<u32> {
    let mut p: Vec<u32> = (0..n as u32).collect();
    rng.shuffle(&mut p);
    p
}

impl World {
    pub(super) fn new(cfg: &SimConfig, seed: u64) -> Self {
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
