//! The simulator: bit-for-bit determinism, the realised CTR against the
//! configured one, time order, and its Criteo-shaped output.
use crate::common;

use std::path::Path;

use arrow::array::{Float64Array, Int8Array, StringArray, TimestampMillisecondArray};
use common::{read_split, shard_bytes};
use ctr_dl::data::convert::{convert, ConvertOptions};
use ctr_dl::data::manifest::DatasetManifest;
use ctr_dl::data::schema::DatasetSchema;
use ctr_dl::data::simulate::{simulate, SimConfig, SimFormat, SimulateOptions};
use ctr_dl::data::split::SplitMode;
use ctr_dl::data::writer::{Split, WriterOptions};
use ctr_dl::metrics::{log_loss, roc_auc};

/// A smaller world than the default so tests stay quick.
fn small() -> SimConfig {
    SimConfig {
        users: 20_000,
        ads: 2_000,
        campaigns: 400,
        advertisers: 100,
        sites: 300,
        ..SimConfig::default()
    }
}

fn run(out: &Path, rows: u64, seed: u64, config: SimConfig, split: SplitMode) -> DatasetManifest {
    common::simulate_into(out, rows, seed, config, split)
}

#[test]
fn same_seed_same_bytes_other_seed_other_data() {
    let d = tempfile::tempdir().unwrap();
    run(&d.path().join("a"), 30_000, 11, small(), SplitMode::Random);
    run(&d.path().join("b"), 30_000, 11, small(), SplitMode::Random);
    run(&d.path().join("c"), 30_000, 12, small(), SplitMode::Random);
    let bytes = |p: &str| {
        shard_bytes(&d.path().join(p))
            .into_iter()
            .map(|x| x.1)
            .collect::<Vec<_>>()
    };
    assert_eq!(bytes("a"), bytes("b"));
    assert_ne!(bytes("a"), bytes("c"));
}

#[test]
fn realised_ctr_matches_the_configured_base_rate() {
    let d = tempfile::tempdir().unwrap();
    for (i, base) in [0.03, 0.10].into_iter().enumerate() {
        let out = d.path().join(format!("s{i}"));
        let m = run(
            &out,
            200_000,
            3,
            SimConfig {
                base_ctr: base,
                ..small()
            },
            SplitMode::Random,
        );
        let sd = (base * (1.0 - base) / 200_000f64).sqrt();
        assert!(
            (m.positive_rate - base).abs() < 4.0 * sd,
            "base {base}: realised {}",
            m.positive_rate
        );
        let sim = m.simulation.as_ref().unwrap();
        let mean_p = sim["true_metrics"]["all"]["mean_p_click"].as_f64().unwrap();
        assert!((mean_p - base).abs() < 1e-4, "mean p {mean_p}");
    }
}

#[test]
fn reported_truth_metrics_match_the_rows() {
    let d = tempfile::tempdir().unwrap();
    let m = run(d.path(), 50_000, 5, small(), SplitMode::Random);
    let test = read_split(d.path(), Split::Test);
    let p: Vec<f64> = common::col::<Float64Array>(&test, "p_click")
        .values()
        .to_vec();
    let y: Vec<u8> = common::col::<Int8Array>(&test, "clicked")
        .values()
        .iter()
        .map(|&v| v as u8)
        .collect();
    assert!(p.iter().all(|&x| x > 0.0 && x < 1.0));
    let truth = &m.simulation.as_ref().unwrap()["true_metrics"]["splits"]["test"];
    assert!((truth["logloss"].as_f64().unwrap() - log_loss(&p, &y)).abs() < 1e-9);
    assert!((truth["auc"].as_f64().unwrap() - roc_auc(&p, &y).unwrap()).abs() < 1e-4);
    // The true probability must be informative: well above chance.
    assert!(roc_auc(&p, &y).unwrap() > 0.7);
    assert_eq!(test.num_rows() as u64, m.test.rows);
    let devices: std::collections::BTreeSet<String> = common::col::<StringArray>(&test, "device")
        .iter()
        .flatten()
        .map(str::to_string)
        .collect();
    assert_eq!(
        devices.into_iter().collect::<Vec<_>>(),
        ["desktop", "mobile", "tablet"]
    );
}

#[test]
fn time_split_is_in_time_order() {
    let d = tempfile::tempdir().unwrap();
    let m = run(d.path(), 20_000, 9, small(), SplitMode::Time);
    assert_eq!(
        (m.train.rows, m.valid.rows, m.test.rows),
        (16_000, 2_000, 2_000)
    );
    let times = |s| -> Vec<i64> {
        let b = read_split(d.path(), s);
        common::col::<TimestampMillisecondArray>(&b, "time")
            .values()
            .to_vec()
    };
    let (tr, va, te) = (times(Split::Train), times(Split::Valid), times(Split::Test));
    assert!(
        tr.windows(2).all(|w| w[0] <= w[1]),
        "rows are written in time order"
    );
    assert!(tr.last() <= va.first() && va.last() <= te.first());
    // 14 days from the configured Monday.
    let start = 1_767_571_200_000;
    assert!(tr[0] >= start && *te.last().unwrap() < start + 14 * 86_400_000);
}

#[test]
fn fatigue_lowers_the_ctr_of_repeat_impressions() {
    let d = tempfile::tempdir().unwrap();
    let cfg = SimConfig {
        users: 2_000,
        ads: 500,
        campaigns: 100,
        advertisers: 50,
        sites: 100,
        fatigue: 1.0,
        ..SimConfig::default()
    };
    run(d.path(), 100_000, 4, cfg, SplitMode::Time);
    let b = read_split(d.path(), Split::Train);
    let users = common::col::<StringArray>(&b, "user_id");
    let ads = common::col::<StringArray>(&b, "ad_id");
    let p = common::col::<Float64Array>(&b, "p_click");
    let mut seen = std::collections::HashMap::new();
    let (mut first, mut repeat) = ((0.0, 0u64), (0.0, 0u64));
    for i in 0..b.num_rows() {
        let n = seen.entry((users.value(i), ads.value(i))).or_insert(0u32);
        if *n == 0 {
            first.0 += p.value(i);
            first.1 += 1;
        } else if *n >= 3 {
            repeat.0 += p.value(i);
            repeat.1 += 1;
        }
        *n += 1;
    }
    assert!(
        repeat.1 > 1000,
        "retargeting makes repeats common ({})",
        repeat.1
    );
    assert!(
        repeat.0 / (repeat.1 as f64) < first.0 / first.1 as f64,
        "repeat impressions have a lower mean p_click"
    );
}

/// Spread of the mean logit of `p_click` over (age band, gender, ad category)
/// cells with at least 200 rows, around each ad category's own mean.
fn demographic_spread(cfg: SimConfig) -> f64 {
    let d = tempfile::tempdir().unwrap();
    run(d.path(), 100_000, 6, cfg, SplitMode::Random);
    let b = read_split(d.path(), Split::Train);
    let age = common::col::<StringArray>(&b, "user_age");
    let gender = common::col::<StringArray>(&b, "user_gender");
    let cat = common::col::<StringArray>(&b, "ad_category");
    let p = common::col::<Float64Array>(&b, "p_click");
    let mut cells: std::collections::HashMap<(&str, &str, &str), (f64, u64)> = Default::default();
    let mut cats: std::collections::HashMap<&str, (f64, u64)> = Default::default();
    for i in 0..b.num_rows() {
        let z = (p.value(i) / (1.0 - p.value(i))).ln();
        let c = cells
            .entry((age.value(i), gender.value(i), cat.value(i)))
            .or_default();
        *c = (c.0 + z, c.1 + 1);
        let c = cats.entry(cat.value(i)).or_default();
        *c = (c.0 + z, c.1 + 1);
    }
    let dev: Vec<f64> = cells
        .iter()
        .filter(|(_, c)| c.1 >= 200)
        .map(|((_, _, k), c)| c.0 / c.1 as f64 - cats[k].0 / cats[k].1 as f64)
        .collect();
    assert!(dev.len() > 50, "{} cells", dev.len());
    dev.iter().map(|x| x * x).sum::<f64>() / dev.len() as f64
}

#[test]
fn demographics_carry_the_shared_part_of_taste() {
    let shared = demographic_spread(SimConfig {
        affinity_individual: 0.0,
        ..small()
    });
    let own = demographic_spread(SimConfig {
        affinity_individual: 1.0,
        ..small()
    });
    // Shared taste: cells differ by about the affinity's variance (1.0 at the
    // default scale); individual taste averages out within a cell.
    assert!(shared > 0.3, "{shared}");
    assert!(own < shared / 5.0, "{own} vs {shared}");
}

#[test]
fn criteo_tsv_output_feeds_the_converter() {
    let d = tempfile::tempdir().unwrap();
    let opts = SimulateOptions {
        rows: 5_000,
        out: d.path().join("tsv"),
        seed: 1,
        config: small(),
        format: SimFormat::CriteoTsv,
        split: SplitMode::Random,
        ratios: [0.8, 0.1, 0.1],
        writer: WriterOptions::default(),
        overwrite: false,
        progress: false,
    };
    let r = simulate(&opts).unwrap();
    let text = std::fs::read_to_string(&r.output).unwrap();
    assert_eq!(text.lines().count(), 5_000);
    assert!(text.lines().all(|l| l.split('\t').count() == 40));
    let out = d.path().join("ds");
    let m = convert(&ConvertOptions::new(
        vec![r.output.clone()],
        out,
        DatasetSchema::builtin("criteo").unwrap(),
    ))
    .unwrap()
    .manifest;
    assert_eq!(m.rows, 5_000);
    assert_eq!(m.bad_lines.count, 0);
    let again = simulate(&SimulateOptions {
        overwrite: true,
        ..opts
    })
    .unwrap();
    assert_eq!(std::fs::read_to_string(&again.output).unwrap(), text);
}

#[test]
fn bad_simulator_config_is_reported_with_its_path() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("sim.toml");
    std::fs::write(&p, "users = 10\nbase_ctr = 1.5\n").unwrap();
    let e = SimConfig::load(&p).unwrap_err().to_string();
    assert!(e.contains("sim.toml") && e.contains("base_ctr"), "{e}");
    std::fs::write(&p, "userz = 10\n").unwrap();
    let e = SimConfig::load(&p).unwrap_err().to_string();
    assert!(e.contains("userz"), "{e}");
    for bad in [
        "ad_drift_sd = -0.1",
        "ad_drift_hours = 0.0",
        "intent_hours = -1.0",
    ] {
        std::fs::write(&p, format!("{bad}\n")).unwrap();
        let e = SimConfig::load(&p).unwrap_err().to_string();
        let key = bad.split(' ').next().unwrap();
        assert!(e.contains("sim.toml") && e.contains(key), "{bad}: {e}");
    }
    let shipped = SimConfig::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/datasets/synthetic.toml"),
    )
    .unwrap();
    assert_eq!(
        shipped,
        SimConfig::default(),
        "the shipped config documents the defaults"
    );
}

/// The hours the time column spans, and the share of impressions whose user
/// saw the same ad in the 24 hours before: the density that drives fatigue.
fn span_and_repeats(out: &Path, rows: u64, cfg: SimConfig) -> (f64, f64) {
    run(out, rows, 8, cfg, SplitMode::Time);
    let mut events: Vec<(i64, String, String)> = Vec::new();
    for s in Split::ALL {
        let b = read_split(out, s);
        let t = common::col::<TimestampMillisecondArray>(&b, "time");
        let u = common::col::<StringArray>(&b, "user_id");
        let a = common::col::<StringArray>(&b, "ad_id");
        for i in 0..b.num_rows() {
            events.push((t.value(i), u.value(i).into(), a.value(i).into()));
        }
    }
    events.sort();
    let span = (events.last().unwrap().0 - events[0].0) as f64 / 3.6e6;
    let mut last: std::collections::HashMap<(&str, &str), i64> = Default::default();
    let mut repeats = 0u64;
    for (t, u, a) in &events {
        if let Some(prev) = last.insert((u.as_str(), a.as_str()), *t) {
            repeats += (t - prev < 86_400_000) as u64;
        }
    }
    (span, repeats as f64 / events.len() as f64)
}

#[test]
fn more_rows_cover_more_days_of_the_same_world() {
    let d = tempfile::tempdir().unwrap();
    let rate = SimConfig {
        rows_per_day: 5_000,
        ..small()
    };
    let (h1, r1) = span_and_repeats(&d.path().join("a"), 40_000, rate.clone());
    let (h4, r4) = span_and_repeats(&d.path().join("b"), 160_000, rate);
    // 8 and 32 days of traffic.
    assert!((191.0..192.0).contains(&h1), "span {h1} h");
    assert!((767.0..768.0).contains(&h4), "span {h4} h");
    // Four times the rows in a fixed span are four times as dense: many more
    // repeat impressions within a day, so more fatigue.
    let fixed = SimConfig {
        days: Some(8),
        ..small()
    };
    let (_, f4) = span_and_repeats(&d.path().join("c"), 160_000, fixed);
    eprintln!("repeats within 24 h: {r1} (8 days), {r4} (32 days), {f4} (4x rows in 8 days)");
    assert!(
        f4 > 1.5 * r1.max(r4),
        "repeats {f4} in a fixed span vs {r1}, {r4}"
    );
    // At a fixed rate the share stays near the shorter sample's (users'
    // memories fill up over the first weeks, and retargeting then draws on
    // older ads, so it drifts down a little, never up).
    assert!(r4 <= r1 && r4 > 0.6 * r1, "repeats {r1} vs {r4}");
}
