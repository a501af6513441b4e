//! The `ctr-dl` binary end to end: exit codes and what a user reads.
use crate::common;

use std::process::Command;

fn ctr_dl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ctr-dl"))
}

#[test]
fn convert_then_stats() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("avazu");
    let o = ctr_dl()
        .args(["convert", "--format", "avazu", "--input"])
        .arg(common::shared("avazu/sample_100.csv"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        stdout.contains("rows 100") && stdout.contains("site_id"),
        "{stdout}"
    );
    let o = ctr_dl().arg("stats").arg(&out).output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        stdout.contains("CTR by hour") && stdout.contains("train:"),
        "{stdout}"
    );
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("_stats.json")).unwrap()).unwrap();
    let total: u64 = stats["splits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["rows"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 100);
}

#[test]
fn bad_input_exits_non_zero_with_the_location() {
    let d = tempfile::tempdir().unwrap();
    let input = d.path().join("broken.txt");
    std::fs::write(&input, "1\t2\n7\tx\n").unwrap();
    let o = ctr_dl()
        .args(["convert", "--format", "criteo", "--input"])
        .arg(&input)
        .arg("--out")
        .arg(d.path().join("o"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("broken.txt:1") && stderr.contains("field `I1`")
            || stderr.contains("broken.txt:2"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let o = ctr_dl()
        .args(["convert", "--format", "csv", "--input"])
        .arg(&input)
        .arg("--out")
        .arg(d.path().join("o"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("needs --schema"));
    let o = ctr_dl().args(["stats"]).arg(d.path()).output().unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no _dataset.json"));
}

#[test]
fn simulate_prints_the_best_possible_metrics() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("sim.toml");
    std::fs::write(
        &cfg,
        "users = 5000\nads = 500\ncampaigns = 100\nadvertisers = 20\nsites = 100\n",
    )
    .unwrap();
    let o = ctr_dl()
        .args(["simulate", "--rows", "20000", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(d.path().join("sim"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        stdout.contains("true-p logloss") && stdout.contains("test"),
        "{stdout}"
    );
    let o = ctr_dl().arg("env").output().unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("\"smoke_sum\": 10.0"));
}

/// The experiment workflow from the shell: train from a TOML with `--set`,
/// interrupt and resume, evaluate, compare; and a config mistake is named.
#[test]
fn train_resume_eval_compare() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("sim");
    common::simulate_small(&data, 20_000, 21);
    let exp = d.path().join("fm.toml");
    std::fs::write(
        &exp,
        format!(
            "name = 'fm'\n[data]\npath = '{}'\n[model]\nkind = 'fm'\nembedding_dim = 4\n\
             [train]\nbatch_size = 512\nepochs = 1\ndevice = 'cpu'\neval_every = 10\nlr = 0.003\n\
             [output]\nruns = '{}'\ncheckpoints = '{}'\n",
            data.display(),
            d.path().join("runs").display(),
            d.path().join("ckpt").display()
        ),
    )
    .unwrap();
    let run_dir = d.path().join("runs/fm-cli");
    let o = ctr_dl()
        .args(["train", "--config"])
        .arg(&exp)
        .args([
            "--set",
            "train.patience=5",
            "--run",
            "fm-cli",
            "--quiet",
            "--stop-after-steps",
            "20",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("--resume"), "{stdout}");
    let o = ctr_dl()
        .arg("train")
        .arg("--resume")
        .arg(&run_dir)
        .arg("--quiet")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        stdout.contains("test  AUC") && stdout.contains("gap"),
        "{stdout}"
    );
    let o = ctr_dl()
        .args(["eval", "--run"])
        .arg(&run_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        stdout.contains("ROC-AUC") && stdout.contains("ECE"),
        "{stdout}"
    );
    assert!(run_dir.join("eval-test.json").exists());
    let o = ctr_dl()
        .arg("compare")
        .arg(d.path().join("runs"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        stdout.contains("fm-cli") && stdout.contains("test auc"),
        "{stdout}"
    );

    let o = ctr_dl()
        .args(["train", "--config"])
        .arg(&exp)
        .args(["--set", "model.embeding_dim=8"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        stderr.contains("fm.toml") && stderr.contains("embeding_dim"),
        "{stderr}"
    );
}

/// A failure prints what, where and why once: the cause's text is not
/// repeated on a "caused by" line of its own.
#[test]
fn an_error_prints_its_cause_once() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("run.json"), "{\n  \"run\": ").unwrap();
    let o = ctr_dl()
        .args(["eval", "--run"])
        .arg(d.path())
        .output()
        .unwrap();
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("run.json") && stderr.contains("EOF while parsing"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("EOF while parsing").count(), 1, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    let missing = d.path().join("missing.toml");
    let o = ctr_dl()
        .args(["train", "--config"])
        .arg(&missing)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("missing.toml"), "{stderr}");
    assert_eq!(stderr.matches("os error 2").count(), 1, "{stderr}");
}

/// The output folders promised beside `src/` are in a fresh clone, each with
/// a README that says what goes there, and whatever else lands in them is
/// ignored by git.
#[test]
fn output_folders_are_in_the_tree() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(root)
            .status()
            .unwrap()
            .success()
    };
    for dir in ["runs", "checkpoints", "models"] {
        let readme = format!("{dir}/README.md");
        assert!(root.join(&readme).is_file(), "{readme}");
        assert!(
            git(&["ls-files", "--error-unmatch", &readme]),
            "{readme} is not tracked"
        );
        assert!(
            !git(&["check-ignore", "-q", &readme]),
            "{readme} is ignored"
        );
        let output = format!("{dir}/some-run/file");
        assert!(
            git(&["check-ignore", "-q", &output]),
            "{output} is not ignored"
        );
    }
}

/// The mistakes a new user makes first get errors that say what to do.
#[test]
fn first_mistakes_say_what_to_do() {
    let d = tempfile::tempdir().unwrap();
    let stderr = |o: std::process::Output| {
        assert!(!o.status.success());
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    // A missing experiment file says it is the experiment config.
    let e = stderr(
        ctr_dl()
            .args(["train", "--config"])
            .arg(d.path().join("nope.toml"))
            .output()
            .unwrap(),
    );
    assert!(
        e.contains("experiment config") && e.contains("nope.toml"),
        "{e}"
    );
    // A data path that is not a dataset names data.path and how to make one.
    let e = stderr(
        ctr_dl()
            .args(["train", "--config"])
            .arg(common::repo("experiments/lr.toml"))
            .arg("--set")
            .arg(format!("data.path=\"{}\"", d.path().join("none").display()))
            .output()
            .unwrap(),
    );
    assert!(
        e.contains("data.path") && e.contains("ctr-dl convert") && e.contains("no such folder"),
        "{e}"
    );
    // A Criteo file given as Avazu: the field count, and the formats that fit;
    // the line is not printed, and the output folder it made is gone.
    let out = d.path().join("out");
    let e = stderr(
        ctr_dl()
            .args(["convert", "--format", "avazu", "--input"])
            .arg(common::shared("criteo/train_1k.txt"))
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap(),
    );
    assert!(
        e.contains("schema `avazu` has 24 columns") && e.contains("it fits --format criteo"),
        "{e}"
    );
    assert!(!e.contains("68fd1e64"), "the line is printed: {e}");
    assert!(!out.exists(), "a failed convert left {}", out.display());
}

/// LightGBM on rows too few to split says it grew no tree, not "0 boosting
/// rounds ... best at round 1".
#[test]
fn lightgbm_without_a_tree_says_so() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("tiny");
    let o = ctr_dl()
        .args(["simulate", "--rows", "300", "--quiet", "--out"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = ctr_dl()
        .args(["baseline", "--quiet", "--config"])
        .arg(common::repo("experiments/lightgbm.toml"))
        .arg("--set")
        .arg(format!("data.path=\"{}\"", data.display()))
        .arg("--set")
        .arg(format!(
            "output.runs=\"{}\"",
            d.path().join("runs").display()
        ))
        .arg("--set")
        .arg(format!(
            "output.checkpoints=\"{}\"",
            d.path().join("ck").display()
        ))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("LightGBM grew no tree"), "{out}");
    assert!(
        !out.contains("0 boosting rounds") && !out.contains("best at round"),
        "{out}"
    );
}

/// `schema infer` proposes a schema that converts as it is: Avazu's header,
/// label, YYMMDDHH hour and row id; Criteo's headerless, ragged tab layout
/// with its label first.
#[test]
fn an_inferred_schema_converts_as_it_is() {
    let d = tempfile::tempdir().unwrap();
    for (file, want) in [
        (
            "avazu/sample_100.csv",
            &[
                "delimiter = \",\"",
                "header = true",
                "name = \"click\"\ntype = \"label\"",
                "name = \"hour\"\ntype = \"timestamp\"\nformat = \"yymmddhh\"",
                "name = \"id\"\ntype = \"skip\"",
                "name = \"site_id\"\ntype = \"categorical\"",
            ][..],
        ),
        (
            "criteo/train_1k.txt",
            &[
                "delimiter = \"\\t\"",
                "header = false",
                "ragged = true",
                "name = \"c1\"\ntype = \"label\"",
                "name = \"c40\"\ntype = \"categorical\"",
            ][..],
        ),
    ] {
        let o = ctr_dl()
            .args(["schema", "infer"])
            .arg(common::shared(file))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let toml = String::from_utf8_lossy(&o.stdout).into_owned();
        for w in want {
            assert!(toml.contains(w), "{file}: no {w:?} in\n{toml}");
        }
        assert!(toml.contains("# "), "the reasons are comments: {toml}");
        let schema = d.path().join("schema.toml");
        std::fs::write(&schema, &toml).unwrap();
        let out = d.path().join(file.replace('/', "_"));
        let o = ctr_dl()
            .args(["convert", "--format", "csv", "--quiet", "--schema"])
            .arg(&schema)
            .arg("--input")
            .arg(common::shared(file))
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(out.join("_dataset.json").exists());
    }
}

/// The README's "Train on your own data" block, exactly as written, from a
/// copy of the repository's tree (so nothing lands in the checkout): every
/// command succeeds and the served prediction comes back.
#[test]
fn the_readme_walkthrough_runs() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let block = readme
        .split_once("<!-- walkthrough -->\n```bash\n")
        .and_then(|(_, rest)| rest.split_once("```\n<!-- /walkthrough -->"))
        .map(|(block, _)| block.to_string())
        .expect("the walkthrough block in README.md");
    // The repository's layout beside the shared data: the folders the block
    // reads and writes, and the binary it calls.
    let d = tempfile::tempdir().unwrap();
    let repo = d.path().join("repo");
    for dir in ["configs/datasets", "experiments", "target/release"] {
        std::fs::create_dir_all(repo.join(dir)).unwrap();
    }
    std::os::unix::fs::symlink(root.join("../shared"), d.path().join("shared")).unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_ctr-dl"),
        repo.join("target/release/ctr-dl"),
    )
    .unwrap();
    let o = Command::new("timeout")
        .args(["300", "bash", "-euo", "pipefail", "-c", &block])
        .current_dir(&repo)
        .output()
        .unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "the walkthrough failed:\n{out}\n{err}");
    assert!(out.contains("\"predicted_ctr\""), "{out}\n{err}");
    assert!(
        out.contains("mine-deepfm") && out.contains("mine-lightgbm"),
        "{out}"
    );
    assert!(repo.join("out/mine-report/report.html").exists());
}

/// The README's example schema is a schema.
#[test]
fn the_readme_schema_example_parses() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let block = readme
        .split_once("Dataset schemas (")
        .and_then(|(_, rest)| rest.split_once("```toml\n"))
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(block, _)| block)
        .expect("the schema example in README.md");
    let s = ctr_dl::data::schema::DatasetSchema::parse(block, std::path::Path::new("README.md"))
        .unwrap();
    assert_eq!((s.delimiter, s.header, s.ragged), (b'\t', false, true));
    assert_eq!(s.columns.len(), 16);
}

/// `predict` on a raw CSV file (by its format) scores every row in file
/// order, with the probabilities it gives the same rows as shards.
#[test]
fn predict_reads_a_raw_csv_by_its_format() {
    let d = tempfile::tempdir().unwrap();
    let p = |rel: &str| d.path().join(rel);
    let csv = common::shared("avazu/sample_100.csv");
    let run = |args: &[&str]| {
        let o = ctr_dl().args(args).current_dir(d.path()).output().unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let csv = csv.to_str().unwrap();
    run(&[
        "convert", "--format", "avazu", "--input", csv, "--out", "data", "--quiet",
    ]);
    let exp = run(&["init", "--data", "data", "--model", "lr", "--name", "lr"]);
    std::fs::write(p("lr.toml"), exp).unwrap();
    run(&[
        "baseline", "--config", "lr.toml", "--run", "lr-1", "--quiet",
    ]);
    run(&["export", "--run", "runs/lr-1", "--out", "models/lr/1"]);
    let predict = |input: &[&str], out: &str| {
        let args = [
            &[
                "predict",
                "--bundle",
                "models/lr/1",
                "--quiet",
                "--out",
                out,
            ],
            input,
        ]
        .concat();
        run(&args)
    };
    predict(&["--input", "data"], "shards.parquet");
    predict(&["--input", csv, "--format", "avazu"], "raw.parquet");
    let read = |path: std::path::PathBuf| -> Vec<f64> {
        let f = std::fs::File::open(path).unwrap();
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
            .unwrap()
            .build()
            .unwrap()
            .flat_map(|b| {
                let b = b.unwrap();
                let c = b
                    .column(0)
                    .as_any()
                    .downcast_ref::<arrow::array::Float64Array>()
                    .unwrap()
                    .clone();
                c.values().to_vec()
            })
            .collect()
    };
    let (mut shards, raw) = (read(p("shards.parquet")), read(p("raw.parquet")));
    assert_eq!(raw.len(), 100, "every row of the file");
    let mut sorted = raw.clone();
    sorted.sort_by(f64::total_cmp);
    shards.sort_by(f64::total_cmp);
    assert_eq!(sorted, shards);
    // The converted copy is gone.
    let left: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
