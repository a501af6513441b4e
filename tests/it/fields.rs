//! `ctr-dl features`: on a dataset with a known structure (a strong input,
//! an exact copy of it, a weak one and pure noise), the ranking, the
//! redundancy and the drop candidates are the ones the structure implies.
use crate::common;

use std::fmt::Write as _;

use common::{experiment, lock, quiet};
use ctr_dl::data::convert::{convert, ConvertOptions};
use ctr_dl::data::schema::DatasetSchema;
use ctr_dl::data::writer::Split;
use ctr_dl::eval::fields::{field_report, FieldOptions};
use ctr_dl::rng::Rng;
use ctr_dl::train::train;

const SCHEMA: &str = r#"
name = "known"
delimiter = ","
header = true
[[columns]]
name = "strong"
type = "categorical"
[[columns]]
name = "copy"
type = "categorical"
[[columns]]
name = "weak"
type = "categorical"
[[columns]]
name = "noise"
type = "categorical"
[[columns]]
name = "clicked"
type = "label"
"#;

#[test]
fn noise_is_a_candidate_the_copy_is_redundant_and_the_signal_ranks_first() {
    let _turn = lock();
    let d = tempfile::tempdir().unwrap();
    // The click logit: strong in {-2.5, 0, +1.5} by value, weak +-0.3; copy is
    // strong's value renamed; noise is independent of everything.
    let mut rng = Rng::new(11);
    let mut csv = String::from("strong,copy,weak,noise,clicked\n");
    for _ in 0..30_000 {
        let s = rng.below(3);
        let w = rng.below(2);
        let noise = rng.below(8);
        let z: f64 = [-2.5, 0.0, 1.5][s as usize] + if w == 1 { 0.3 } else { -0.3 } - 1.0;
        let click = rng.bernoulli(1.0 / (1.0 + (-z).exp()));
        let _ = writeln!(csv, "s{s},c{},w{w},n{noise},{}", 2 - s, click as u8);
    }
    std::fs::write(d.path().join("known.csv"), csv).unwrap();
    std::fs::write(d.path().join("known.toml"), SCHEMA).unwrap();
    let data = d.path().join("data");
    let mut o = ConvertOptions::new(
        vec![d.path().join("known.csv")],
        data.clone(),
        DatasetSchema::load(&d.path().join("known.toml")).unwrap(),
    );
    o.progress = false;
    convert(&o).unwrap();
    let run = train(
        &experiment(d.path(), &data, "lr", &["train.lr=0.05", "train.epochs=3"]),
        &quiet("lr-known"),
    )
    .unwrap();

    let r = field_report(&FieldOptions {
        run: run.run_dir.clone(),
        split: Split::Valid,
        rows: 3_000,
        repeats: 3,
        seed: 5,
    })
    .unwrap();
    let row = |n: &str| r.fields.iter().find(|f| f.importance.name == n).unwrap();
    let names: Vec<&str> = r
        .fields
        .iter()
        .map(|f| f.importance.name.as_str())
        .collect();

    // strong and copy carry the signal between them; either ranks above weak,
    // which ranks above noise.
    assert!(
        names[..2].contains(&"strong") && names[..2].contains(&"copy"),
        "{names:?}"
    );
    assert_eq!(&names[2..], ["weak", "noise"], "{names:?}");
    assert!(
        row("weak").drop_reason.is_none(),
        "{:?}",
        row("weak").drop_reason
    );

    // noise has no measurable contribution.
    let noise = row("noise");
    assert!(
        noise
            .drop_reason
            .as_deref()
            .unwrap_or("")
            .contains("no measurable"),
        "{:?}",
        noise.drop_reason
    );
    // copy and strong determine each other: the less important one of the
    // two repeats the other; the more important one is kept.
    let (first, second) = (row(names[0]), row(names[1]));
    assert_eq!(
        first.most_associated.as_ref().unwrap().0,
        second.importance.name
    );
    assert!(first.most_associated.as_ref().unwrap().1 > 0.99);
    assert!(first.drop_reason.is_none());
    assert!(
        second
            .drop_reason
            .as_deref()
            .unwrap_or("")
            .contains(&format!("repeats {}", names[0])),
        "{:?}",
        second.drop_reason
    );
    assert_eq!(r.associated_pairs.len(), 1, "{:?}", r.associated_pairs);
    // Every input is a dataset column here, so features.exclude can take it.
    assert!(r.fields.iter().all(|f| f.column.is_some()));
    assert!(run.run_dir.join("field_importance.json").exists());
}
