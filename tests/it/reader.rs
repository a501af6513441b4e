//! The shard reader: projection, batch sizes, and shuffling that covers every
//! row once and is deterministic for a (seed, epoch).
use crate::common;

use std::path::Path;

use arrow::array::{StringArray, TimestampMillisecondArray};
use ctr_dl::data::reader::{ReaderOptions, ShardReader};
use ctr_dl::data::simulate::{simulate, SimConfig, SimFormat, SimulateOptions};
use ctr_dl::data::split::SplitMode;
use ctr_dl::data::writer::{Split, WriterOptions};

fn dataset(dir: &Path) {
    simulate(&SimulateOptions {
        rows: 40_000,
        out: dir.to_path_buf(),
        seed: 3,
        config: SimConfig {
            users: 5_000,
            ads: 1_000,
            campaigns: 200,
            advertisers: 50,
            sites: 200,
            ..SimConfig::default()
        },
        format: SimFormat::Parquet,
        split: SplitMode::Time,
        ratios: [0.8, 0.1, 0.1],
        writer: WriterOptions {
            shard_rows: 10_000,
            row_group_rows: 1_000,
        },
        overwrite: false,
        progress: false,
    })
    .unwrap();
}

/// The `time` values in reading order (unique enough to identify rows with user_id).
fn read_keys(dir: &Path, opts: ReaderOptions) -> (Vec<usize>, Vec<(i64, String)>) {
    let reader = ShardReader::open_split(dir, Split::Train, opts).unwrap();
    let mut sizes = Vec::new();
    let mut keys = Vec::new();
    for b in reader {
        let b = b.unwrap();
        sizes.push(b.num_rows());
        let t = common::col::<TimestampMillisecondArray>(&b, "time");
        let u = common::col::<StringArray>(&b, "user_id");
        for i in 0..b.num_rows() {
            keys.push((t.value(i), u.value(i).to_string()));
        }
    }
    (sizes, keys)
}

#[test]
fn projection_and_batch_sizes() {
    let d = tempfile::tempdir().unwrap();
    dataset(d.path());
    let opts = ReaderOptions {
        batch_size: 3_000,
        columns: Some(vec!["time".into(), "user_id".into()]),
        ..Default::default()
    };
    let reader = ShardReader::open_split(d.path(), Split::Train, opts.clone()).unwrap();
    assert_eq!(reader.total_rows(), 32_000);
    assert_eq!(reader.schema().fields().len(), 2);
    let (sizes, keys) = read_keys(d.path(), opts.clone());
    assert_eq!(sizes.iter().sum::<usize>(), 32_000);
    assert!(sizes[..sizes.len() - 1].iter().all(|&s| s == 3_000));
    assert_eq!(*sizes.last().unwrap(), 32_000 % 3_000);
    assert!(
        keys.windows(2).all(|w| w[0].0 <= w[1].0),
        "unshuffled reading keeps the stored order"
    );
    let (sizes, _) = read_keys(
        d.path(),
        ReaderOptions {
            drop_last: true,
            ..opts
        },
    );
    assert!(sizes.iter().all(|&s| s == 3_000));
    let err = ShardReader::open_split(
        d.path(),
        Split::Train,
        ReaderOptions {
            columns: Some(vec!["nope".into()]),
            ..Default::default()
        },
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("no column `nope`"), "{err}");
}

#[test]
fn shuffling_is_complete_and_deterministic() {
    let d = tempfile::tempdir().unwrap();
    dataset(d.path());
    let base = ReaderOptions {
        batch_size: 512,
        shuffle: true,
        shuffle_buffer: 4_000,
        seed: 9,
        ..Default::default()
    };
    let (_, a) = read_keys(d.path(), base.clone());
    let (_, b) = read_keys(d.path(), base.clone());
    let (_, c) = read_keys(
        d.path(),
        ReaderOptions {
            epoch: 1,
            ..base.clone()
        },
    );
    let (_, e) = read_keys(
        d.path(),
        ReaderOptions {
            seed: 10,
            ..base.clone()
        },
    );
    let (_, plain) = read_keys(
        d.path(),
        ReaderOptions {
            batch_size: 512,
            ..Default::default()
        },
    );
    assert_eq!(a, b, "same seed and epoch, same order");
    assert_ne!(a, c, "another epoch, another order");
    assert_ne!(a, e, "another seed, another order");
    assert_ne!(a, plain);
    let mut sorted_a = a.clone();
    sorted_a.sort();
    let mut sorted_plain = plain.clone();
    sorted_plain.sort();
    assert_eq!(sorted_a, sorted_plain, "every row exactly once");
    // Rows from the end of the split show up early: the shuffle crosses shards.
    let late = plain[30_000].0;
    assert!(a[..4_000].iter().any(|k| k.0 >= late));
}

#[test]
fn a_missing_dataset_says_so() {
    let d = tempfile::tempdir().unwrap();
    let err = ShardReader::open_split(d.path(), Split::Train, ReaderOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("no _dataset.json"), "{err}");
}

#[test]
fn an_empty_split_reads_as_no_batches_with_its_schema() {
    let d = tempfile::tempdir().unwrap();
    let mut o = ctr_dl::data::convert::ConvertOptions::new(
        vec![common::shared("avazu/sample_100.csv")],
        d.path().to_path_buf(),
        ctr_dl::data::schema::DatasetSchema::builtin("avazu").unwrap(),
    );
    o.ratios = [1.0, 0.0, 0.0];
    ctr_dl::data::convert::convert(&o).unwrap();
    let opts = ReaderOptions {
        columns: Some(vec!["hour".into(), "click".into()]),
        ..Default::default()
    };
    let mut reader = ShardReader::open_split(d.path(), Split::Test, opts).unwrap();
    assert_eq!(reader.schema().fields().len(), 2);
    assert!(reader.next().is_none());
    let stats = ctr_dl::data::stats::dataset_stats(d.path(), 3, false).unwrap();
    assert_eq!(stats.splits[2].rows, 0);
    assert_eq!(stats.splits[0].rows, 100);
}

/// A dataset folder is one table to Arrow-family readers: pyarrow (what
/// `pd.read_parquet(DIR)` calls) reads it with a `split` column from the `split=<name>`
/// folders, skipping `_dataset.json`, `_stats.json` and the `_encoded` cache.
#[test]
fn a_dataset_folder_reads_as_one_table_in_pandas() {
    let _turn = common::lock();
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("sim");
    common::simulate_small(&data, 3_000, 8);
    // A cache and statistics in the folder, as training and `stats` leave them.
    let cfg = common::experiment(d.path(), &data, "lr", &["train.max_steps=2"]);
    ctr_dl::features::prepare(&data, None, &cfg.features, false).unwrap();
    ctr_dl::data::stats::dataset_stats(&data, 3, false).unwrap();
    // What `pd.read_parquet(DIR)` runs (pandas is not in the venv).
    let script = r#"
import sys, pyarrow.compute as pc, pyarrow.parquet as pq
t = pq.read_table(sys.argv[1])
splits = sorted(str(s) for s in pc.unique(t.column("split")).to_pylist())
print(t.num_rows, splits, pc.sum(t.column("clicked")).as_py())
"#;
    let o = std::process::Command::new(common::venv_python())
        .args(["-c", script])
        .arg(&data)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m = ctr_dl::data::manifest::DatasetManifest::load(&data).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        format!("{} ['test', 'train', 'valid'] {}", m.rows, m.positives)
    );
}

/// A dataset written before the layout (`dataset.json`, `train/` folders)
/// still opens.
#[test]
fn a_dataset_of_the_older_layout_still_opens() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("sim");
    common::simulate_small(&data, 2_000, 9);
    let m = std::fs::read_to_string(data.join("_dataset.json")).unwrap();
    std::fs::write(data.join("dataset.json"), m.replace("split=", "")).unwrap();
    std::fs::remove_file(data.join("_dataset.json")).unwrap();
    for s in Split::ALL {
        std::fs::rename(data.join(s.dir_name()), data.join(s.name())).unwrap();
    }
    let want = ctr_dl::data::manifest::DatasetManifest::load(&data).unwrap();
    let rows: usize = ShardReader::open_split(&data, Split::Train, ReaderOptions::default())
        .unwrap()
        .map(|b| b.unwrap().num_rows())
        .sum();
    assert_eq!(rows as u64, want.train.rows);
}
