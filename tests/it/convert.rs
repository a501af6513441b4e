//! The converters on every shared real-data sample, on malformed input, on
//! gzip input and on schema-driven CSV.
use crate::common;

use std::io::Write;
use std::path::{Path, PathBuf};

use arrow::array::{
    Array, Float64Array, Int64Array, Int8Array, StringArray, TimestampMillisecondArray,
};
use common::{read_split, shard_bytes, shared, temp_files};
use ctr_dl::data::convert::{convert, ConvertOptions};
use ctr_dl::data::manifest::DatasetManifest;
use ctr_dl::data::schema::DatasetSchema;
use ctr_dl::data::split::SplitMode;
use ctr_dl::data::writer::Split;
use ctr_dl::Error;

fn opts(inputs: Vec<PathBuf>, out: &Path, format: &str) -> ConvertOptions {
    ConvertOptions::new(
        inputs,
        out.to_path_buf(),
        DatasetSchema::builtin(format).unwrap(),
    )
}

/// All rows in input order: everything to train.
fn in_order(mut o: ConvertOptions) -> ConvertOptions {
    o.ratios = [1.0, 0.0, 0.0];
    o
}

/// An independent reading of a Criteo TSV: fields padded to 40.
fn criteo_cells(path: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut f: Vec<String> = l.split('\t').map(str::to_string).collect();
            f.resize(40, String::new());
            f
        })
        .collect()
}

#[allow(clippy::needless_range_loop)] // column numbers are the Criteo names
fn check_criteo_values(out: &Path, cells: &[Vec<String>]) {
    let b = read_split(out, Split::Train);
    assert_eq!(b.num_rows(), cells.len());
    let label = common::col::<Int8Array>(&b, "label");
    for (r, row) in cells.iter().enumerate() {
        assert_eq!(label.value(r).to_string(), row[0], "row {r} label");
        for i in 1..=13 {
            let col = common::col::<Int64Array>(&b, &format!("I{i}"));
            let want = &row[i];
            if want.is_empty() {
                assert!(col.is_null(r), "row {r} I{i} should be missing");
            } else {
                assert_eq!(
                    col.value(r) as f64,
                    want.parse::<f64>().unwrap(),
                    "row {r} I{i}"
                );
            }
        }
        for i in 1..=26 {
            let col = common::col::<StringArray>(&b, &format!("C{i}"));
            let want = &row[13 + i];
            if want.is_empty() {
                assert!(col.is_null(r), "row {r} C{i} should be missing");
            } else {
                assert_eq!(col.value(r), want, "row {r} C{i}");
            }
        }
    }
}

#[test]
fn criteo_kaggle_sample_with_ragged_lines() {
    let dir = tempfile::tempdir().unwrap();
    let input = shared("criteo/train_1k.txt");
    let cells = criteo_cells(&input);
    let short = std::fs::read_to_string(&input)
        .unwrap()
        .lines()
        .filter(|l| l.split('\t').count() < 40)
        .count();
    assert!(short > 400, "the sample has ragged lines to test ({short})");
    let report = convert(&in_order(opts(vec![input.clone()], dir.path(), "criteo"))).unwrap();
    let m = &report.manifest;
    assert_eq!(m.rows, cells.len() as u64);
    assert_eq!(m.bad_lines.count, 0);
    let positives = cells.iter().filter(|r| r[0] == "1").count() as u64;
    assert_eq!(m.positives, positives);
    check_criteo_values(dir.path(), &cells);
    // Missing rates: C26 is absent on every stripped line and empty elsewhere.
    let c26 = m.columns.iter().find(|c| c.name == "C26").unwrap();
    let missing = cells.iter().filter(|r| r[39].is_empty()).count() as u64;
    assert_eq!(c26.missing, missing);
    assert!(c26.missing >= short as u64);
    let c9 = m.columns.iter().find(|c| c.name == "C9").unwrap();
    let distinct: std::collections::HashSet<&str> = cells
        .iter()
        .map(|r| r[22].as_str())
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(c9.distinct, distinct.len() as u64);
    assert!(c9.distinct_exact);
}

#[test]
fn criteo_terabyte_sample() {
    let dir = tempfile::tempdir().unwrap();
    let input = shared("criteo/terabyte_1k.tsv");
    let cells = criteo_cells(&input);
    let m = convert(&in_order(opts(vec![input], dir.path(), "criteo-1tb")))
        .unwrap()
        .manifest;
    assert_eq!(m.rows, 1000);
    check_criteo_values(dir.path(), &cells);
}

#[test]
fn criteo_csv_with_header_and_float_integers() {
    let dir = tempfile::tempdir().unwrap();
    let input = shared("criteo/sample_200_header.csv");
    let m = convert(&in_order(opts(vec![input], dir.path(), "criteo-csv")))
        .unwrap()
        .manifest;
    assert_eq!(m.rows, 200);
    let b = read_split(dir.path(), Split::Train);
    // First data row: 0,,3,260.0,,17668.0,...
    let i2 = common::col::<Int64Array>(&b, "I2");
    let i3 = common::col::<Int64Array>(&b, "I3");
    let i1 = common::col::<Int64Array>(&b, "I1");
    assert_eq!((i2.value(0), i3.value(0)), (3, 260));
    assert!(i1.is_null(0));
    let i2_second = i2.value(1);
    assert_eq!(i2_second, -1, "negative integers are kept");
}

#[test]
fn avazu_sample_with_hour_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let input = shared("avazu/sample_100.csv");
    let m = convert(&in_order(opts(vec![input.clone()], dir.path(), "avazu")))
        .unwrap()
        .manifest;
    assert_eq!(m.rows, 100);
    assert_eq!(m.label, "click");
    let text = std::fs::read_to_string(&input).unwrap();
    let first: Vec<&str> = text.lines().nth(1).unwrap().split(',').collect();
    let b = read_split(dir.path(), Split::Train);
    assert!(b.column_by_name("id").is_none(), "the row id is not kept");
    let hour = common::col::<TimestampMillisecondArray>(&b, "hour");
    assert_eq!(first[2], "14102100");
    assert_eq!(hour.value(0), 1_413_849_600_000); // 2014-10-21T00:00:00Z
    let site = common::col::<StringArray>(&b, "site_id");
    assert_eq!(site.value(0), first[5]);
    let c21 = common::col::<StringArray>(&b, "C21");
    assert_eq!(c21.value(0), first[23]);
    let clicks = text
        .lines()
        .skip(1)
        .filter(|l| l.split(',').nth(1) == Some("1"))
        .count();
    assert_eq!(m.positives, clicks as u64);
}

#[test]
fn random_split_is_seeded_and_independent_of_threads() {
    let input = shared("criteo/train_1k.txt");
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let c = tempfile::tempdir().unwrap();
    let mut oa = opts(vec![input.clone()], a.path(), "criteo");
    oa.threads = 1;
    oa.chunk_bytes = 4096; // many chunks, so threads interleave
    let mut ob = opts(vec![input.clone()], b.path(), "criteo");
    ob.threads = 3;
    ob.chunk_bytes = 4096;
    let ma = convert(&oa).unwrap().manifest;
    let mb = convert(&ob).unwrap().manifest;
    assert_eq!(
        shard_bytes(a.path())
            .into_iter()
            .map(|x| x.1)
            .collect::<Vec<_>>(),
        shard_bytes(b.path())
            .into_iter()
            .map(|x| x.1)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        (ma.train.rows, ma.valid.rows, ma.test.rows),
        (mb.train.rows, mb.valid.rows, mb.test.rows)
    );
    assert!(ma.train.rows > 700 && ma.valid.rows > 50 && ma.test.rows > 50);
    let mut oc = opts(vec![input], c.path(), "criteo");
    oc.seed = 7;
    let mc = convert(&oc).unwrap().manifest;
    assert_ne!(
        read_split(a.path(), Split::Test),
        read_split(c.path(), Split::Test)
    );
    assert_eq!(mc.rows, ma.rows);
}

#[test]
fn time_split_puts_latest_rows_last() {
    // Avazu by its hour column.
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(vec![shared("avazu/sample_100.csv")], dir.path(), "avazu");
    o.split = SplitMode::Time;
    let m = convert(&o).unwrap().manifest;
    assert_eq!(m.train.rows + m.valid.rows + m.test.rows, 100);
    let train = read_split(dir.path(), Split::Train);
    let max_train = common::col::<TimestampMillisecondArray>(&train, "hour")
        .iter()
        .flatten()
        .max();
    if m.test.rows > 0 {
        let test = read_split(dir.path(), Split::Test);
        let min_test = common::col::<TimestampMillisecondArray>(&test, "hour")
            .iter()
            .flatten()
            .min();
        assert!(max_train < min_test);
    }
    // Criteo by line order: the last 10% of lines are the test split.
    let dir = tempfile::tempdir().unwrap();
    let input = shared("criteo/terabyte_1k.tsv");
    let cells = criteo_cells(&input);
    let mut o = opts(vec![input], dir.path(), "criteo-1tb");
    o.split = SplitMode::Time;
    let m = convert(&o).unwrap().manifest;
    assert_eq!((m.train.rows, m.valid.rows, m.test.rows), (800, 100, 100));
    let test = read_split(dir.path(), Split::Test);
    let c1 = common::col::<StringArray>(&test, "C1");
    assert_eq!(c1.value(99), cells[999][14]);
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

const GOOD: &str = "0\t1\t2\t3\t4\t5\t6\t7\t8\t9\t10\t11\t12\t13\ta\tb\tc\td\te\tf\tg\th\ti\tj\tk\tl\tm\tn\to\tp\tq\tr\ts\tt\tu\tv\tw\tx\ty\tz\n";

fn bad_case(line: &str) -> (String, Error) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bad.txt");
    write(&input, &format!("{GOOD}{GOOD}{line}\n{GOOD}"));
    let out = dir.path().join("out");
    let err = convert(&opts(vec![input], &out, "criteo")).unwrap_err();
    assert!(!out.join("_dataset.json").exists());
    assert!(temp_files(&out).is_empty());
    let shards = out.join("split=train").exists()
        && std::fs::read_dir(out.join("split=train")).unwrap().count() > 0;
    assert!(!shards, "a failed conversion leaves no shards");
    (err.to_string(), err)
}

#[test]
fn malformed_lines_name_file_line_and_field() {
    let too_many = format!("{}\textra", GOOD.trim_end());
    let (msg, err) = bad_case(&too_many);
    assert!(matches!(err, Error::BadLine(..)));
    assert!(
        msg.contains("bad.txt:3") && msg.contains("41 fields"),
        "{msg}"
    );

    let not_int = GOOD.trim_end().replacen("\t5\t", "\tfive\t", 1);
    let (msg, _) = bad_case(&not_int);
    assert!(
        msg.contains("bad.txt:3")
            && msg.contains("field `I5`")
            && msg.contains("`five` is not an integer"),
        "{msg}"
    );

    let bad_label = GOOD.trim_end().replacen('0', "2", 1);
    let (msg, _) = bad_case(&bad_label);
    assert!(
        msg.contains("bad.txt:3") && msg.contains("field `label`") && msg.contains("0 or 1"),
        "{msg}"
    );
}

#[test]
fn skip_bad_lines_counts_them_and_fails_past_the_ratio() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("mixed.txt");
    let mut text = String::new();
    for i in 0..2000 {
        if i == 500 {
            text.push_str("x\tnot a row\n");
        } else {
            text.push_str(GOOD);
        }
    }
    write(&input, &text);
    let out = dir.path().join("ok");
    let mut o = opts(vec![input.clone()], &out, "criteo");
    o.skip_bad_lines = true;
    let m = convert(&o).unwrap().manifest;
    assert_eq!(m.rows, 1999);
    assert_eq!(m.bad_lines.count, 1);
    assert!(
        m.bad_lines.examples[0].contains("mixed.txt:501"),
        "{:?}",
        m.bad_lines.examples
    );
    // 1 of 2000 is 0.05%: above a 0.01% limit.
    let out = dir.path().join("strict");
    let mut o = opts(vec![input], &out, "criteo");
    o.skip_bad_lines = true;
    o.max_bad_ratio = 0.0001;
    let err = convert(&o).unwrap_err();
    assert!(
        matches!(
            err,
            Error::TooManyBadLines {
                bad: 1,
                total: 2000,
                ..
            }
        ),
        "{err}"
    );
    assert!(!out.join("_dataset.json").exists());
}

#[test]
fn gzip_input_converts_like_plain() {
    let dir = tempfile::tempdir().unwrap();
    let plain = shared("criteo/train_1k.txt");
    let gz = dir.path().join("train_1k.txt.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::fast(),
    );
    enc.write_all(&std::fs::read(&plain).unwrap()).unwrap();
    enc.finish().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    convert(&opts(vec![plain], &a, "criteo")).unwrap();
    convert(&opts(vec![gz], &b, "criteo")).unwrap();
    for s in Split::ALL {
        assert_eq!(read_split(&a, s), read_split(&b, s));
    }
}

#[test]
fn several_inputs_and_an_existing_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let files = vec![
        shared("criteo/train_1k.txt"),
        shared("criteo/terabyte_1k.tsv"),
    ];
    let m = convert(&opts(files.clone(), &out, "criteo"))
        .unwrap()
        .manifest;
    assert_eq!(m.rows, 2000);
    assert_eq!(m.sources.len(), 2);
    let before = std::fs::read(out.join("_dataset.json")).unwrap();
    let err = convert(&opts(files.clone(), &out, "criteo"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("already holds a dataset"), "{err}");
    assert_eq!(
        std::fs::read(out.join("_dataset.json")).unwrap(),
        before,
        "nothing already written is lost"
    );
    let mut o = opts(files, &out, "criteo");
    o.overwrite = true;
    o.writer.shard_rows = 300;
    let m = convert(&o).unwrap().manifest;
    assert!(m.train.shards.len() >= 5);
    assert!(m.train.shards.iter().all(|s| s.rows <= 300));
    assert_eq!(
        m.train.shards.iter().map(|s| s.rows).sum::<u64>(),
        m.train.rows
    );
    let loaded = DatasetManifest::load(&out).unwrap();
    assert_eq!(loaded, m);
}

#[test]
fn schema_driven_csv_with_quotes_floats_and_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let schema_path = dir.path().join("events.toml");
    write(
        &schema_path,
        r#"
name = "events"
delimiter = ","
header = true

[[columns]]
name = "ts"
type = "timestamp"
format = "rfc3339"

[[columns]]
name = "page"
type = "categorical"

[[columns]]
name = "price"
type = "float"

[[columns]]
name = "clicked"
type = "label"

[[columns]]
name = "session"
type = "skip"
"#,
    );
    let input = dir.path().join("events.csv");
    // Columns in another order than the schema: matched by header name.
    write(
        &input,
        "clicked,page,session,price,ts\r\n1,\"home, top\",s1,2.5,2026-11-29T10:00:00Z\r\n0,\"say \"\"hi\"\"\",s2,,2026-11-29 11:30:00\r\n0,,s3,1e2,2026-11-30T00:00:00+01:00\r\n",
    );
    let out = dir.path().join("out");
    let schema = DatasetSchema::load(&schema_path).unwrap();
    let mut o = ConvertOptions::new(vec![input.clone()], out.clone(), schema);
    o.ratios = [1.0, 0.0, 0.0];
    let m = convert(&o).unwrap().manifest;
    assert_eq!((m.rows, m.positives), (3, 1));
    let b = read_split(&out, Split::Train);
    assert_eq!(
        b.schema()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect::<Vec<_>>(),
        ["ts", "page", "price", "clicked"]
    );
    let page = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
    assert_eq!(page.value(0), "home, top");
    assert_eq!(page.value(1), "say \"hi\"");
    assert!(page.is_null(2));
    let price = b.column(2).as_any().downcast_ref::<Float64Array>().unwrap();
    assert_eq!(price.value(0), 2.5);
    assert!(price.is_null(1));
    assert_eq!(price.value(2), 100.0);
    let ts = b
        .column(0)
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .unwrap();
    assert_eq!(ts.value(0), 1_795_946_400_000);
    assert_eq!(ts.value(1), (1_795_946_400 + 5400) * 1000);
    assert_eq!(ts.value(2), 1_795_993_200_000); // 2026-11-29T23:00:00Z

    // A header that does not fit the schema is an error at line 1.
    write(
        &input,
        "clicked,page,price,ts,extra\n1,a,1,2026-11-29T10:00:00Z,x\n",
    );
    let mut o = ConvertOptions::new(
        vec![input],
        dir.path().join("out2"),
        DatasetSchema::load(&schema_path).unwrap(),
    );
    o.ratios = [1.0, 0.0, 0.0];
    let err = convert(&o).unwrap_err().to_string();
    assert!(
        err.contains("events.csv:1") && err.contains("`extra`"),
        "{err}"
    );
}
