//! Historical features through the real pipeline: the encoded history inputs
//! equal an independent replay of the raw shards merged in time order, and
//! they never depend on a row's own label.
mod common;

use std::path::Path;

use arrow::array::{Int8Array, StringArray, TimestampMillisecondArray};
use common::{read_split, simulate_small};
use ctr_dl::data::writer::Split;
use ctr_dl::features::history::{replay, Event};
use ctr_dl::features::{prepare, FeatureConfig, RawValue};

fn config() -> FeatureConfig {
    toml::from_str(
        r#"
min_count = 5
[history]
keys = ["user_id", "ad_id", "user_id+ad_id", "device"]
smoothing = 20.0
half_life_hours = 24.0
"#,
    )
    .unwrap()
}

/// Every row of every split as (split, row, event), in time order (ties in
/// split order, then row order).
fn events(
    data: &Path,
    spec: &ctr_dl::features::history::HistorySpec,
) -> Vec<(usize, usize, Event)> {
    let mut all = Vec::new();
    for (s, split) in Split::ALL.into_iter().enumerate() {
        let b = read_split(data, split);
        let t = common::col::<TimestampMillisecondArray>(&b, "time");
        let y = common::col::<Int8Array>(&b, "clicked");
        let cols: Vec<(&str, &StringArray)> = ["user_id", "ad_id", "device"]
            .into_iter()
            .map(|c| (c, common::col::<StringArray>(&b, c)))
            .collect();
        let mut hashes = Vec::new();
        for r in 0..b.num_rows() {
            spec.key_hashes(
                |c| {
                    cols.iter()
                        .find(|(n, _)| *n == c)
                        .map_or(RawValue::Missing, |(_, a)| RawValue::Str(a.value(r)))
                },
                &mut hashes,
            );
            all.push((
                s,
                r,
                Event {
                    time: t.value(r),
                    hashes: hashes.clone(),
                    clicked: y.value(r) != 0,
                },
            ));
        }
    }
    all.sort_by_key(|(s, r, e)| (e.time, *s, *r));
    all
}

#[test]
fn encoded_history_equals_a_replay_of_the_raw_rows_in_time_order() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("sim");
    simulate_small(&data, 20_000, 51);
    let ds = prepare(&data, None, &config(), false).unwrap();
    let map = &ds.features;
    let spec = map.history.as_ref().unwrap();
    assert_eq!(spec.width(), 24);
    let names = ds.meta.dense_names.clone();
    assert!(
        names.contains(&"hist_user_id_x_ad_id_recent".to_string()),
        "{names:?}"
    );
    let first = map.dense.len();
    let nd = map.num_dense();

    let all = events(&data, spec);
    let evs: Vec<Event> = all.iter().map(|x| x.2.clone()).collect();
    let want = replay(spec, &evs);
    let mut by_row: Vec<Vec<Vec<f32>>> = Split::ALL
        .iter()
        .map(|&s| vec![Vec::new(); ds.split(s).rows as usize])
        .collect();
    for ((s, r, _), mut w) in all.iter().zip(want) {
        spec.standardize(&mut w);
        by_row[*s][*r] = w;
    }
    // Standardised with train moments: the train inputs average zero.
    assert_eq!(spec.mean.len(), spec.width());
    assert!(spec.std.iter().all(|&s| s > 0.0));
    let mut repeats = 0;
    for (s, split) in Split::ALL.into_iter().enumerate() {
        let e = ds.read_all(split).unwrap();
        for (r, want) in by_row[s].iter().enumerate() {
            let got = &e.dense[r * nd + first..r * nd + first + spec.width()];
            assert_eq!(got, &want[..], "{} row {r}", split.name());
            // The user-ad pair seen before: above the standardised zero.
            repeats += (got[12] as f64 > -spec.mean[12] / spec.std[12]) as usize;
        }
    }
    assert!(
        repeats > 1000,
        "repeat impressions carry history ({repeats})"
    );
}

#[test]
fn history_needs_a_clock_and_real_columns() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("sim");
    simulate_small(&data, 2_000, 52);
    let mut c = config();
    c.history.as_mut().unwrap().keys = vec!["user_id+nope".into()];
    let e = prepare(&data, None, &c, false).unwrap_err().to_string();
    assert!(e.contains("`nope` is not a column"), "{e}");
    let mut c = config();
    c.history.as_mut().unwrap().time_column = Some("user_id".into());
    let e = prepare(&data, None, &c, false).unwrap_err().to_string();
    assert!(e.contains("not a timestamp column"), "{e}");
}
