//! `ctr-dl eda`: the report of a dataset whose distributions are known, its
//! numbers against an independent count, drift where it was planted, and the
//! errors.
use crate::common;

use std::fmt::Write as _;
use std::path::Path;

use common::temp_files;
use ctr_dl::data::convert::{convert, ConvertOptions};
use ctr_dl::data::schema::DatasetSchema;
use ctr_dl::data::split::SplitMode;
use ctr_dl::eval::eda::{eda, EdaOptions, PSI_MAJOR};

const SCHEMA: &str = r#"
name = "shop"
delimiter = ","
header = true

[[columns]]
name = "ts"
type = "timestamp"
format = "unix"

[[columns]]
name = "color"
type = "categorical"

[[columns]]
name = "size"
type = "categorical"

[[columns]]
name = "price"
type = "float"

[[columns]]
name = "clicked"
type = "label"
"#;

/// 2,000 rows an hour apart. `color` is red/blue in the first 80% and mostly
/// green after (a planted drift under a time split); `size` is S/M/L in the
/// same proportions throughout, missing every 10th row; `price` is i mod 100;
/// red rows click every 4th time, others every 20th.
fn dataset(dir: &Path) -> (std::path::PathBuf, u64, u64) {
    let mut csv = String::from("ts,color,size,price,clicked\n");
    let (mut red, mut red_clicks) = (0u64, 0u64);
    for i in 0..2000u64 {
        let color = if i < 1600 {
            if i % 2 == 0 {
                "red"
            } else {
                "blue"
            }
        } else if i % 5 == 0 {
            "red"
        } else {
            "green"
        };
        let size = if i % 10 == 9 {
            ""
        } else {
            ["S", "M", "L"][(i % 3) as usize]
        };
        let click = if color == "red" {
            i % 8 == 0
        } else {
            i % 20 == 0
        };
        if color == "red" && i < 1600 {
            red += 1;
            red_clicks += click as u64;
        }
        let _ = writeln!(
            csv,
            "{},{color},{size},{},{}",
            1_767_225_600 + 3600 * i,
            i % 100,
            click as u8
        );
    }
    let input = dir.join("shop.csv");
    std::fs::write(&input, csv).unwrap();
    let schema_path = dir.join("shop.toml");
    std::fs::write(&schema_path, SCHEMA).unwrap();
    let out = dir.join("data");
    let mut o = ConvertOptions::new(
        vec![input],
        out.clone(),
        DatasetSchema::load(&schema_path).unwrap(),
    );
    o.split = SplitMode::Time;
    o.progress = false;
    convert(&o).unwrap();
    (out, red, red_clicks)
}

#[test]
fn report_counts_values_and_finds_the_planted_drift() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, red, red_clicks) = dataset(tmp.path());
    let out = tmp.path().join("eda");
    let s = eda(&EdaOptions {
        data: data.clone(),
        out: out.clone(),
        top_k: 5,
        progress: false,
    })
    .unwrap();

    // Class balance: the splits' rows add up, train is the first 80%.
    let rows: Vec<u64> = s.balance.iter().map(|b| b.rows).collect();
    assert_eq!(rows, vec![1600, 200, 200]);
    let field = |name: &str| s.fields.iter().find(|f| f.name == name).unwrap();

    // Top values of train with their CTR and a Wilson interval around it.
    let color = field("color");
    assert_eq!(color.distinct, 2);
    let r = color.top.iter().find(|t| t.value == "red").unwrap();
    assert_eq!((r.count, r.clicks), (red, red_clicks));
    assert!(r.ctr_low < r.ctr && r.ctr < r.ctr_high);
    assert!((color.top1_share.unwrap() - 0.5).abs() < 1e-12);

    // Missing rate and a stable distribution: no drift in `size`.
    let size = field("size");
    assert!(
        (size.missing_rate - 0.1).abs() < 1e-12,
        "{}",
        size.missing_rate
    );
    assert!(size.psi_valid.unwrap() < 0.05 && size.psi_test.unwrap() < 0.05);
    // The planted drift in `color` is a major one in both later splits.
    assert!(
        color.psi_valid.unwrap() > PSI_MAJOR,
        "{:?}",
        color.psi_valid
    );
    assert!(color.psi_test.unwrap() > PSI_MAJOR, "{:?}", color.psi_test);
    assert!(color.drifted() && !size.drifted());
    // The time column is not scored for drift.
    assert!(field("ts").psi_valid.is_none());

    // Quantiles of price (0..99 repeated).
    let q = field("price").quantiles.clone().unwrap();
    assert_eq!((q.min, q.max), (0.0, 99.0));
    assert!((q.median - 49.5).abs() <= 1.0, "{}", q.median);

    // CTR by hour per split.
    assert_eq!(s.time.len(), 3);
    let hours: u64 = s.time[0].by_hour.iter().map(|b| b.rows).sum();
    assert_eq!(hours, 1600);

    // The page: every figure inlined, every field named, nothing fetched.
    let html = std::fs::read_to_string(out.join("eda.html")).unwrap();
    for f in &s.figures {
        assert!(out.join(f).exists(), "{f}");
        let png = std::fs::read(out.join(f)).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{f} is a PNG");
    }
    assert_eq!(
        html.matches("data:image/png;base64,").count(),
        s.figures.len()
    );
    for name in [
        "color",
        "size",
        "price",
        "drift.png",
        "ctr_by_hour.png",
        "numeric_price.png",
    ] {
        assert!(html.contains(name), "{name} missing from the page");
    }
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("<script"));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("eda.json")).unwrap()).unwrap();
    assert_eq!(json["balance"][0]["rows"], 1600);
    assert!(temp_files(tmp.path()).is_empty());
}

#[test]
fn a_missing_dataset_is_an_error_and_leaves_the_old_report() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("eda");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("eda.html"), "old").unwrap();
    let err = eda(&EdaOptions {
        data: tmp.path().join("nowhere"),
        out: out.clone(),
        top_k: 5,
        progress: false,
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("nowhere"), "{err}");
    assert_eq!(
        std::fs::read_to_string(out.join("eda.html")).unwrap(),
        "old"
    );
}
