//! The feature map: fitted on train only, the same encoding for shard batches
//! and single requests (no train/serve skew), unseen and missing values in
//! their slots, the Criteo x4 numeric protocol, and the encoded cache.
use crate::common;

use std::collections::HashMap;

use common::{read_split, shared, simulate_small};
use ctr_dl::data::convert::{convert, ConvertOptions};
use ctr_dl::data::schema::DatasetSchema;
use ctr_dl::data::writer::Split;
use ctr_dl::features::config::{Encoding, FieldOverride};
use ctr_dl::features::map::{CatTransform, MISSING, OOV};
use ctr_dl::features::RawValue;
use ctr_dl::features::{prepare, FeatureConfig, FeatureMap};

#[test]
fn batch_and_row_encodings_agree_and_unseen_values_go_to_oov() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("sim");
    simulate_small(&data, 20_000, 3);
    let mut cfg = FeatureConfig::default();
    cfg.fields.insert(
        "site_id".into(),
        FieldOverride {
            encoding: Some(Encoding::Hash),
            buckets: Some(1000),
            ..Default::default()
        },
    );
    let map = FeatureMap::fit(&data, &cfg, false).unwrap();
    // 12 categorical columns + 3 time parts; p_click (the truth) is never a feature.
    assert_eq!(map.num_fields(), 15);
    assert!(map.categorical.iter().all(|f| f.column != "p_click"));
    assert_eq!(map.num_dense(), 0);
    let test = read_split(&data, Split::Test);
    let enc = map.encode_batch(&test).unwrap();
    assert_eq!(enc.rows, test.num_rows());
    // Row by row, from raw strings as a request carries them.
    let cols: HashMap<String, _> = test
        .schema()
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| (f.name().clone(), test.column(i).clone()))
        .collect();
    let nf = map.num_fields();
    for r in (0..test.num_rows()).step_by(97) {
        let (ids, _) = map.encode_row(|name| {
            let col = &cols[name];
            if let Some(s) = col.as_any().downcast_ref::<arrow::array::StringArray>() {
                RawValue::Str(s.value(r))
            } else if let Some(t) = col
                .as_any()
                .downcast_ref::<arrow::array::TimestampMillisecondArray>()
            {
                RawValue::TimeMs(t.value(r))
            } else {
                RawValue::Missing
            }
        });
        assert_eq!(ids, enc.ids[r * nf..(r + 1) * nf], "row {r}");
    }
    // Ids stay inside their field's rows of the shared table.
    for (r, chunk) in enc.ids.chunks(nf).enumerate() {
        for (f, &id) in chunk.iter().enumerate() {
            let field = &map.categorical[f];
            assert!(
                (id as u32) >= field.offset && (id as u32) < field.offset + field.size,
                "row {r} field {} id {id}",
                field.name
            );
        }
    }
    // Unseen and missing values.
    let (ids, _) = map.encode_row(|name| match name {
        "user_id" => RawValue::Str("never-seen-user"),
        _ => RawValue::Missing,
    });
    let user = &map.categorical[0];
    assert_eq!(user.name, "user_id");
    assert_eq!(ids[0] as u32, user.offset + OOV);
    for (f, &id) in ids.iter().enumerate().skip(1) {
        assert_eq!(id as u32, map.categorical[f].offset + MISSING);
    }
    // The hashed field: the documented contract, reproducible by any client.
    let site = map
        .categorical
        .iter()
        .find(|f| f.name == "site_id")
        .unwrap();
    assert!(matches!(
        site.transform,
        CatTransform::Hash { buckets: 1000 }
    ));
    let mut bytes = b"site_id".to_vec();
    bytes.push(0x1F);
    bytes.extend_from_slice(b"s42");
    let want = 1 + (xxhash_rust::xxh3::xxh3_64_with_seed(&bytes, 42) % 1000) as u32;
    assert_eq!(site.index(RawValue::Str("s42"), 42, &mut Vec::new()), want);

    // features.json round-trips to the same encoding.
    let path = d.path().join("features.json");
    map.save(&path).unwrap();
    let back = FeatureMap::load(&path).unwrap();
    assert_eq!(back.encode_batch(&test).unwrap(), enc);
}

#[test]
fn vocabulary_is_fitted_on_train_only_with_min_count() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("sim");
    simulate_small(&data, 20_000, 4);
    let cfg = FeatureConfig {
        min_count: 5,
        ..Default::default()
    };
    let map = FeatureMap::fit(&data, &cfg, false).unwrap();
    let train = read_split(&data, Split::Train);
    let ads = train
        .column_by_name("ad_id")
        .unwrap()
        .as_any()
        .downcast_ref::<arrow::array::StringArray>()
        .unwrap();
    let mut counts: HashMap<&str, u64> = HashMap::new();
    for i in 0..arrow::array::Array::len(ads) {
        *counts.entry(ads.value(i)).or_default() += 1;
    }
    let field = map.categorical.iter().find(|f| f.name == "ad_id").unwrap();
    let CatTransform::Vocab { values, .. } = &field.transform else {
        panic!("ad_id is a vocabulary field")
    };
    let want = counts.values().filter(|&&n| n >= 5).count();
    assert_eq!(values.len(), want);
    assert!(values.iter().all(|v| counts[v.as_str()] >= 5));
    // Most frequent first.
    assert!(counts[values[0].as_str()] >= counts[values[values.len() - 1].as_str()]);
}

#[test]
fn criteo_x4_protocol_on_the_real_sample() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("criteo");
    let opts = ConvertOptions::new(
        vec![shared("criteo/train_1k.txt")],
        data.clone(),
        DatasetSchema::builtin("criteo").unwrap(),
    );
    convert(&opts).unwrap();
    let cfg: FeatureConfig =
        toml::from_str("numeric = 'log_bucket'\nnumeric_missing = 'zero'\nmin_count = 2\n")
            .unwrap();
    let map = FeatureMap::fit(&data, &cfg, false).unwrap();
    assert_eq!(map.num_fields(), 39);
    assert_eq!(map.num_dense(), 0);
    let i5 = map.categorical.iter().find(|f| f.name == "I5").unwrap();
    // 1000 -> floor(ln(1000)^2) = 47; a missing value reads as 0.
    let idx = |v| i5.index(v, 42, &mut Vec::new());
    // floor(ln(x)^2): 1000 -> 47, 1010 -> 47, 1100 -> 49; the same bucket, the same index.
    assert_eq!(idx(RawValue::Int(1000)), idx(RawValue::Int(1010)));
    assert_eq!(ctr_dl::features::map::log_bucket_token(1100.0), "49");
    assert_eq!(idx(RawValue::Missing), idx(RawValue::Int(0)));
    let CatTransform::LogBucket { values, .. } = &i5.transform else {
        panic!("I5 is log-bucketed")
    };
    assert!(
        values.iter().all(|v| v.parse::<i64>().is_ok()),
        "{values:?}"
    );
}

#[test]
fn the_encoded_cache_is_reused_until_settings_change() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("sim");
    simulate_small(&data, 10_000, 5);
    let cfg = FeatureConfig::default();
    let a = prepare(&data, None, &cfg, false).unwrap();
    assert!(!a.reused);
    assert_eq!(
        a.split(Split::Train).rows + a.split(Split::Valid).rows + a.split(Split::Test).rows,
        10_000
    );
    let b = prepare(&data, None, &cfg, false).unwrap();
    assert!(b.reused);
    assert_eq!(a.dir, b.dir);
    let other = FeatureConfig {
        min_count: 3,
        ..Default::default()
    };
    let c = prepare(&data, None, &other, false).unwrap();
    assert!(!c.reused);
    assert_ne!(c.dir, a.dir);
    // What is read back is what the feature map encodes.
    let all = a.read_all(Split::Valid).unwrap();
    let direct = a
        .features
        .encode_batch(&read_split(&data, Split::Valid))
        .unwrap();
    assert_eq!(all, direct);
    // No temporary directories are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(data.join("_encoded"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn unknown_columns_in_the_config_are_named() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("sim");
    simulate_small(&data, 2_000, 6);
    let cfg = FeatureConfig {
        exclude: vec!["usr_id".into()],
        ..Default::default()
    };
    let e = FeatureMap::fit(&data, &cfg, false).unwrap_err().to_string();
    assert!(e.contains("usr_id") && e.contains("user_id"), "{e}");
}

#[test]
fn crosses_are_fields_of_their_own_encoded_alike_for_batches_and_requests() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("sim");
    simulate_small(&data, 20_000, 4);
    let cfg: FeatureConfig =
        toml::from_str(r#"crosses = ["device+placement", "user_age+ad_category"]"#).unwrap();
    let map = FeatureMap::fit(&data, &cfg, false).unwrap();
    assert_eq!(map.num_fields(), 17);
    let f = map
        .categorical
        .iter()
        .position(|f| f.name == "device_x_placement")
        .unwrap();
    let cross = &map.categorical[f];
    assert_eq!(cross.cross, ["device", "placement"]);
    // 3 devices x 6 placements, all common: every pair has its own row.
    let CatTransform::Vocab { values, .. } = &cross.transform else {
        panic!("a vocabulary")
    };
    assert_eq!(values.len(), 18);
    let id = |device: &'static str, placement: &'static str| {
        let (ids, _) = map.encode_row(|c| match c {
            "device" => RawValue::Str(device),
            "placement" => RawValue::Str(placement),
            _ => RawValue::Missing,
        });
        ids[f] as u32 - cross.offset
    };
    assert!(id("mobile", "in_feed") >= 2);
    assert_ne!(id("mobile", "in_feed"), id("mobile", "sidebar"));
    assert_eq!(id("mobile", "nowhere"), OOV);
    // A missing component makes the cross missing.
    let (ids, _) = map.encode_row(|c| match c {
        "device" => RawValue::Str("mobile"),
        _ => RawValue::Missing,
    });
    assert_eq!(ids[f] as u32 - cross.offset, MISSING);
    // The batch encoder agrees with the request encoder on every test row.
    let test = read_split(&data, Split::Test);
    let enc = map.encode_batch(&test).unwrap();
    let dev = common::col::<arrow::array::StringArray>(&test, "device");
    let pl = common::col::<arrow::array::StringArray>(&test, "placement");
    let nf = map.num_fields();
    for r in (0..test.num_rows()).step_by(53) {
        let (ids, _) = map.encode_row(|c| match c {
            "device" => RawValue::Str(dev.value(r)),
            "placement" => RawValue::Str(pl.value(r)),
            _ => RawValue::Missing,
        });
        assert_eq!(ids[f], enc.ids[r * nf + f], "row {r}");
    }
    // A cross of a column that is not there is named.
    let bad: FeatureConfig = toml::from_str(r#"crosses = ["device+nope"]"#).unwrap();
    let e = FeatureMap::fit(&data, &bad, false).unwrap_err().to_string();
    assert!(e.contains("`nope`"), "{e}");
}

#[test]
fn frequency_fields_hold_the_bucketised_train_count() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("sim");
    simulate_small(&data, 20_000, 5);
    let cfg: FeatureConfig = toml::from_str(
        r#"
min_count = 3
frequency = ["user_id"]
[fields.site_id]
encoding = "frequency"
"#,
    )
    .unwrap();
    let map = FeatureMap::fit(&data, &cfg, false).unwrap();
    let names: Vec<&str> = map.categorical.iter().map(|f| f.name.as_str()).collect();
    // user_id keeps its own field and gains user_id_freq; site_id is replaced.
    assert!(
        names.contains(&"user_id") && names.contains(&"user_id_freq"),
        "{names:?}"
    );
    assert!(
        names.contains(&"site_id_freq") && !names.contains(&"site_id"),
        "{names:?}"
    );

    // The train counts, independently.
    let train = read_split(&data, Split::Train);
    let users = common::col::<arrow::array::StringArray>(&train, "user_id");
    let mut counts: HashMap<&str, u64> = HashMap::new();
    for r in 0..train.num_rows() {
        *counts.entry(users.value(r)).or_default() += 1;
    }
    let f = names.iter().position(|n| *n == "user_id_freq").unwrap();
    let field = &map.categorical[f];
    let index = |v: &str| {
        let (ids, _) = map.encode_row(|c| match c {
            "user_id" => RawValue::Str(v),
            _ => RawValue::Missing,
        });
        ids[f] as u32 - field.offset
    };
    let (mut common_seen, mut rare_seen) = (0, 0);
    for (v, &n) in &counts {
        let want = if n >= 3 {
            common_seen += 1;
            ctr_dl::features::map::frequency_bucket(n)
        } else {
            rare_seen += 1;
            OOV
        };
        assert_eq!(index(v), want, "{v} seen {n} times");
    }
    assert!(
        common_seen > 50 && rare_seen > 5,
        "{common_seen} {rare_seen}"
    );
    assert_eq!(index("never-seen-user"), OOV);
    assert_eq!(ctr_dl::features::map::frequency_bucket(1), 2);
    assert_eq!(ctr_dl::features::map::frequency_bucket(8), 5);
    // Shards and requests agree.
    let enc = map.encode_batch(&train).unwrap();
    let nf = map.num_fields();
    for r in (0..train.num_rows()).step_by(101) {
        assert_eq!(
            enc.ids[r * nf + f] as u32 - field.offset,
            index(users.value(r))
        );
    }
}

#[test]
fn target_encoding_is_out_of_fold_on_train_and_from_all_of_train_elsewhere() {
    use ctr_dl::features::target::fold_of;
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("sim");
    simulate_small(&data, 20_000, 6);
    let cfg: FeatureConfig = toml::from_str(
        r#"
[target_encoding]
columns = ["ad_id"]
folds = 4
smoothing = 10.0
seed = 9
"#,
    )
    .unwrap();
    let ds = prepare(&data, None, &cfg, false).unwrap();
    let map = &ds.features;
    let t = map.target.as_ref().unwrap();
    let (nd, k) = (map.num_dense(), map.target_offset());
    assert_eq!(ds.meta.dense_names[k], "te_ad_id");

    // Independent counts: over all of train and per fold.
    let train = read_split(&data, Split::Train);
    let ads = common::col::<arrow::array::StringArray>(&train, "ad_id");
    let y = common::col::<arrow::array::Int8Array>(&train, "clicked");
    let mut all: HashMap<&str, (f64, f64)> = HashMap::new();
    let mut fold: HashMap<(u32, &str), (f64, f64)> = HashMap::new();
    for r in 0..train.num_rows() {
        let c = y.value(r) as f64;
        let f = fold_of(9, r as u64, 4);
        for e in [
            all.entry(ads.value(r)).or_default(),
            fold.entry((f, ads.value(r))).or_default(),
        ] {
            *e = (e.0 + c, e.1 + 1.0);
        }
    }
    let enc = ds.read_all(Split::Train).unwrap();
    for r in (0..train.num_rows()).step_by(37) {
        let a = ads.value(r);
        let (c, n) = all[a];
        let (fc, fnn) = fold[&(fold_of(9, r as u64, 4), a)];
        let want = t.value(c - fc, n - fnn);
        assert_eq!(enc.dense[r * nd + k], want, "train row {r}");
    }
    // Valid rows and requests: all of train.
    let valid = read_split(&data, Split::Valid);
    let vads = common::col::<arrow::array::StringArray>(&valid, "ad_id");
    let venc = ds.read_all(Split::Valid).unwrap();
    for r in (0..valid.num_rows()).step_by(13) {
        let a = vads.value(r);
        let (c, n) = all.get(a).copied().unwrap_or((0.0, 0.0));
        assert_eq!(venc.dense[r * nd + k], t.value(c, n), "valid row {r}");
        let (_, dense) = map.encode_row(|col| match col {
            "ad_id" => RawValue::Str(a),
            _ => RawValue::Missing,
        });
        assert_eq!(dense[k], t.value(c, n));
    }
}
