//! Regressions of training, checkpoints and resume.
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use crate::common::{experiment, lock, quiet, simulate_small};
use ctr_dl::serve::{export, ExportOptions};
use ctr_dl::train::{resume, train, TrainOptions};

/// Overwrite the middle 64 KiB of `path` (past its safetensors header,
/// which stays readable) with a pattern.
fn damage(path: &Path) {
    let len = std::fs::metadata(path).unwrap().len();
    assert!(len > 140_000, "{} is only {len} bytes", path.display());
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(len / 2 - (32 << 10))).unwrap();
    f.write_all(&vec![0x3f; 64 << 10]).unwrap();
}

/// Finding 9: 64 KiB of a checkpoint's weights overwritten (its header
/// intact) resumed silently, with worse metrics; export took such a
/// `best.safetensors` too.
#[test]
fn a_damaged_checkpoint_is_refused_by_resume_and_export() {
    let _turn = lock();
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("sim");
    simulate_small(&data, 8_000, 71);
    // Embeddings large enough that the middle of the file is weights.
    let cfg = experiment(d.path(), &data, "deepfm", &["model.embedding_dim=16"]);
    let first = train(
        &cfg,
        &TrainOptions {
            stop_after_steps: Some(20),
            ..quiet("dmg")
        },
    )
    .unwrap();
    let ckpt = first.checkpoint_dir.clone();
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ckpt.join("state.json")).unwrap()).unwrap();
    for f in [
        "best.safetensors",
        "last.safetensors",
        "optimizer.safetensors",
    ] {
        assert!(
            state["checksums"][f]
                .as_str()
                .is_some_and(|s| s.starts_with("xxh3-128:")),
            "{f}: {state}"
        );
    }

    let kept = std::fs::read(ckpt.join("last.safetensors")).unwrap();
    damage(&ckpt.join("last.safetensors"));
    let e = resume(&first.run_dir, &quiet("dmg"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("last.safetensors") && e.contains("checksum"),
        "{e}"
    );
    std::fs::write(ckpt.join("last.safetensors"), &kept).unwrap();
    let done = resume(&first.run_dir, &quiet("dmg")).unwrap();
    assert!(done.metrics.train.finished);

    damage(&ckpt.join("best.safetensors"));
    let e = export(&ExportOptions {
        models_root: d.path().join("models"),
        ..ExportOptions::new(&done.run_dir)
    })
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("best.safetensors") && e.contains("checksum"),
        "{e}"
    );
    assert!(!d.path().join("models").join(&cfg.name).exists());
}
