//! Regressions of the data stage (convert, simulate).
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::temp_files;
use ctr_dl::data::convert::{convert, ConvertOptions};
use ctr_dl::data::schema::DatasetSchema;
use ctr_dl::Error;

const GOOD: &str = "0\t1\t2\t3\t4\t5\t6\t7\t8\t9\t10\t11\t12\t13\ta\tb\tc\td\te\tf\tg\th\ti\tj\tk\tl\tm\tn\to\tp\tq\tr\ts\tt\tu\tv\tw\tx\ty\tz\n";

/// A Criteo line up to its first categorical value.
const PREFIX: &str = "1\t2\t3\t4\t5\t6\t7\t8\t9\t10\t11\t12\t13\t14\t";

fn ctr_dl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ctr-dl"))
}

fn criteo(inputs: Vec<PathBuf>, out: &Path) -> ConvertOptions {
    ConvertOptions::new(
        inputs,
        out.to_path_buf(),
        DatasetSchema::builtin("criteo").unwrap(),
    )
}

/// `rows` Criteo lines that differ from one another (so gzip cannot shrink
/// them to nothing).
fn criteo_lines(rows: u64) -> Vec<u8> {
    let mut text = Vec::with_capacity(rows as usize * 100);
    for i in 0..rows {
        writeln!(
            text,
            "{}\t{i}\t2\t3\t4\t5\t6\t7\t8\t9\t10\t11\t12\t13\t{:x}\tb\tc\td\te\tf\tg\th\ti\tj\tk\tl\tm\tn\to\tp\tq\tr\ts\tt\tu\tv\tw\tx\ty\tz",
            i % 2,
            i.wrapping_mul(7919) % 100_003
        )
        .unwrap();
    }
    text
}

/// Start `ctr-dl convert` on a million lines (seconds of work on one parser
/// thread, with a shard every 20k rows), SIGINT at its default action as a
/// terminal would give it.
fn spawn_long_convert(dir: &Path, out: &Path) -> Child {
    let input = dir.join("big.txt");
    std::fs::write(&input, criteo_lines(1_000_000)).unwrap();
    let mut cmd = ctr_dl();
    cmd.args(["convert", "--format", "criteo", "--input"])
        .arg(&input)
        .arg("--out")
        .arg(out)
        .args([
            "--threads",
            "1",
            "--shard-rows",
            "20000",
            "--row-group-rows",
            "5000",
            "--quiet",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: only resets a signal disposition between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGTERM, libc::SIG_DFL);
            Ok(())
        });
    }
    cmd.spawn().unwrap()
}

/// Wait until `out/train` holds a file that `pick` accepts.
fn wait_for_shard(child: &mut Child, out: &Path, pick: impl Fn(&str) -> bool) {
    let start = Instant::now();
    loop {
        let found = std::fs::read_dir(out.join("split=train"))
            .ok()
            .is_some_and(|rd| rd.flatten().any(|e| pick(&e.file_name().to_string_lossy())));
        if found {
            return;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the conversion ended before a shard appeared"
        );
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no shard appeared in a minute"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A small conversion into `out` through the binary: (success, stderr).
fn convert_small(dir: &Path, out: &Path, extra: &[&str]) -> (bool, String) {
    let input = dir.join("small.txt");
    std::fs::write(&input, GOOD.repeat(10)).unwrap();
    convert_cli(&input, out, extra)
}

/// `ctr-dl convert --format criteo` of `input` into `out`: (success, stderr).
fn convert_cli(input: &Path, out: &Path, extra: &[&str]) -> (bool, String) {
    let o = ctr_dl()
        .args(["convert", "--format", "criteo", "--quiet", "--input"])
        .arg(input)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn split_dirs(out: &Path) -> Vec<String> {
    ["split=train", "split=valid", "split=test"]
        .into_iter()
        .filter(|s| out.join(s).exists())
        .map(String::from)
        .collect()
}

/// Finding 8: a conversion killed outright left complete-looking shards and
/// `.tmp` files, and the next run said "already holds a dataset".
#[test]
fn a_convert_killed_midway_is_recognised_and_overwrite_recovers() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out");
    let mut child = spawn_long_convert(d.path(), &out);
    let pid = child.id();
    wait_for_shard(&mut child, &out, |n| {
        n.starts_with("part-") && n.ends_with(".parquet")
    });
    child.kill().unwrap(); // SIGKILL: no clean-up can run
    child.wait().unwrap();
    assert!(
        !out.join("_dataset.json").exists(),
        "the conversion finished before it was killed"
    );

    let (ok, err) = convert_small(d.path(), &out, &[]);
    assert!(
        !ok,
        "a rerun without --overwrite must refuse the partial folder"
    );
    assert!(
        err.contains(&format!("an interrupted conversion (pid {pid}"))
            && err.contains("partial shards")
            && err.contains("--overwrite"),
        "{err}"
    );
    assert!(!err.contains("already holds a dataset"), "{err}");
    // Simulate into the same folder refuses it too.
    let o = ctr_dl()
        .args(["simulate", "--rows", "1000", "--quiet", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let serr = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && serr.contains("an interrupted conversion"),
        "{serr}"
    );
    // Shards without _dataset.json are recognised even without the marker
    // (a folder left by an older version, or a marker removed by hand).
    std::fs::remove_file(out.join("_in-progress.json")).unwrap();
    let (ok, err) = convert_small(d.path(), &out, &[]);
    assert!(
        !ok && err.contains("an interrupted conversion left partial shards"),
        "{err}"
    );

    let (ok, err) = convert_small(d.path(), &out, &["--overwrite"]);
    assert!(ok, "{err}");
    let m = ctr_dl::data::manifest::DatasetManifest::load(&out).unwrap();
    assert_eq!(m.rows, 10);
    assert!(temp_files(&out).is_empty(), "{:?}", temp_files(&out));
    assert!(!out.join("_in-progress.json").exists());
    let shards: u64 = [&m.train, &m.valid, &m.test]
        .iter()
        .map(|s| s.shards.len() as u64)
        .sum();
    let on_disk: u64 = ["split=train", "split=valid", "split=test"]
        .iter()
        .map(|s| std::fs::read_dir(out.join(s)).unwrap().count() as u64)
        .sum();
    assert_eq!(on_disk, shards, "only the new dataset's shards remain");
}

/// Finding 8: SIGINT or SIGTERM during a conversion left partial shards and
/// `.tmp` files behind.
#[test]
fn sigint_during_convert_leaves_no_partial_shards() {
    for (sig, name) in [(libc::SIGINT, "SIGINT"), (libc::SIGTERM, "SIGTERM")] {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("out");
        let mut child = spawn_long_convert(d.path(), &out);
        wait_for_shard(&mut child, &out, |_| true);
        // SAFETY: signals our own child.
        assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, sig) }, 0);
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        let status = child.wait().unwrap();
        assert!(
            !out.join("_dataset.json").exists(),
            "the conversion finished before the {name}"
        );
        assert_eq!(
            status.code(),
            Some(1),
            "{name}: an error exit after cleaning up, not death by the signal: {status:?}; {stderr}"
        );
        assert!(
            stderr.contains(&format!("interrupted by {name}")),
            "{stderr}"
        );
        assert!(
            split_dirs(&out).is_empty(),
            "{name}: {:?}",
            split_dirs(&out)
        );
        assert!(temp_files(&out).is_empty(), "{:?}", temp_files(&out));
        assert!(!out.join("_in-progress.json").exists());
        // Nothing is left to refuse: a new conversion goes ahead.
        let (ok, err) = convert_small(d.path(), &out, &[]);
        assert!(ok, "{err}");
    }
}

/// Finding 12: a 50 MB line was buffered whole (1.68 GB peak) and accepted.
#[test]
fn a_huge_line_is_refused_with_its_line_number() {
    let d = tempfile::tempdir().unwrap();
    let input = d.path().join("huge.txt");
    // Line 3 is 16 MiB, a valid line: C1 is long.
    let huge = format!("{PREFIX}{}\n", "x".repeat(16 << 20));
    std::fs::write(&input, format!("{GOOD}{GOOD}{huge}{GOOD}")).unwrap();
    let out = d.path().join("out");
    let err = convert(&criteo(vec![input.clone()], &out)).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::BadLine(..)), "{msg}");
    assert!(
        msg.contains("huge.txt:3")
            && msg.contains("a line of over 1048576 bytes (--max-line-bytes)"),
        "{msg}"
    );
    assert!(!out.join("_dataset.json").exists());
    assert!(split_dirs(&out).is_empty() && temp_files(&out).is_empty());

    // The limit is --max-line-bytes, found both inside a chunk and across
    // chunks (a line longer than the read buffer); a line at it is accepted.
    let input = d.path().join("long.txt");
    let long = |n: usize| format!("{PREFIX}{}\n", "y".repeat(n - PREFIX.len()));
    std::fs::write(&input, format!("{GOOD}{}{}{GOOD}", long(4096), long(4097))).unwrap();
    for chunk_bytes in [1024, 4 << 20] {
        let mut o = criteo(
            vec![input.clone()],
            &d.path().join(format!("o{chunk_bytes}")),
        );
        o.max_line_bytes = 4096;
        o.chunk_bytes = chunk_bytes;
        let msg = convert(&o).unwrap_err().to_string();
        assert!(
            msg.contains("long.txt:3: a line of over 4096 bytes"),
            "chunk {chunk_bytes}: {msg}"
        );
    }
    let (ok, stderr) = convert_cli(&input, &d.path().join("cli"), &["--max-line-bytes", "4097"]);
    assert!(ok, "{stderr}");
    let (ok, stderr) = convert_cli(&input, &d.path().join("cli2"), &["--max-line-bytes", "100"]);
    assert!(
        !ok && stderr.contains("long.txt:2: a line of over 100 bytes"),
        "{stderr}"
    );
}

/// Finding 12: an empty input "succeeded" with a dataset of 0 rows.
#[test]
fn an_empty_input_is_an_error_unless_allowed() {
    let d = tempfile::tempdir().unwrap();
    let empty = d.path().join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    let out = d.path().join("out");
    let msg = convert(&criteo(vec![empty.clone()], &out))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("no rows in") && msg.contains("empty.txt") && msg.contains("--allow-empty"),
        "{msg}"
    );
    assert!(!out.join("_dataset.json").exists());
    assert!(split_dirs(&out).is_empty());

    // Blank lines only, and one empty file among good ones, are refused too.
    let blank = d.path().join("blank.txt");
    std::fs::write(&blank, "\n\n\r\n").unwrap();
    let msg = convert(&criteo(vec![blank], &d.path().join("b")))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("no rows in") && msg.contains("blank lines"),
        "{msg}"
    );
    let good = d.path().join("good.txt");
    std::fs::write(&good, GOOD.repeat(5)).unwrap();
    let msg = convert(&criteo(
        vec![good.clone(), empty.clone()],
        &d.path().join("g"),
    ))
    .unwrap_err()
    .to_string();
    assert!(
        msg.contains("no rows in") && msg.contains("empty.txt"),
        "{msg}"
    );

    // A header alone (Avazu has one).
    let header = d.path().join("header.csv");
    let sample = std::fs::read_to_string(crate::common::shared("avazu/sample_100.csv")).unwrap();
    std::fs::write(&header, format!("{}\n", sample.lines().next().unwrap())).unwrap();
    let avazu = |out: &str| {
        ConvertOptions::new(
            vec![header.clone()],
            d.path().join(out),
            DatasetSchema::builtin("avazu").unwrap(),
        )
    };
    let msg = convert(&avazu("h")).unwrap_err().to_string();
    assert!(
        msg.contains("no rows in") && msg.contains("only its header"),
        "{msg}"
    );

    // Asked for, an empty input is a dataset of 0 rows.
    let mut o = criteo(vec![empty.clone()], &out);
    o.allow_empty = true;
    assert_eq!(convert(&o).unwrap().manifest.rows, 0);
    let mut o = avazu("h2");
    o.allow_empty = true;
    assert_eq!(convert(&o).unwrap().manifest.rows, 0);
    let mut o = criteo(vec![good, empty.clone()], &d.path().join("g2"));
    o.allow_empty = true;
    assert_eq!(convert(&o).unwrap().manifest.rows, 5);
    let (ok, stderr) = convert_cli(&empty, &d.path().join("cli"), &[]);
    assert!(!ok && stderr.contains("no rows in"), "{stderr}");
    let (ok, stderr) = convert_cli(&empty, &d.path().join("cli"), &["--allow-empty"]);
    assert!(ok, "{stderr}");
}

/// Finding 12: a truncated `.gz` said only "incomplete deflate stream".
#[test]
fn a_truncated_gzip_names_where_it_ended() {
    let d = tempfile::tempdir().unwrap();
    let rows = 200_000;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&criteo_lines(rows)).unwrap();
    let full = enc.finish().unwrap();
    let gz = d.path().join("data.gz");
    std::fs::write(&gz, &full[..full.len() / 2]).unwrap();
    // What a decoder gets out of the truncated file before it fails.
    let mut decoded = Vec::new();
    let mut dec = flate2::read::MultiGzDecoder::new(&full[..full.len() / 2]);
    let mut buf = [0u8; 1 << 16];
    loop {
        match dec.read(&mut buf) {
            Ok(0) => panic!("the truncated stream should fail"),
            Ok(n) => decoded.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    let lines = memchr::memchr_iter(b'\n', &decoded).count();
    assert!(lines > 0 && (lines as u64) < rows);

    let want = format!(
        "data.gz: the gzip stream ends early (corrupt or truncated) after line {lines} \
         (decompressed byte {})",
        decoded.len()
    );
    let out = d.path().join("out");
    let msg = convert(&criteo(vec![gz.clone()], &out))
        .unwrap_err()
        .to_string();
    assert!(msg.contains(&want), "{msg}\nwanted: {want}");
    assert!(split_dirs(&out).is_empty() && temp_files(&out).is_empty());
    // The first pass of --split time (row count) says the same.
    let mut o = criteo(vec![gz.clone()], &d.path().join("time"));
    o.split = ctr_dl::data::split::SplitMode::Time;
    let msg = convert(&o).unwrap_err().to_string();
    assert!(msg.contains(&want), "{msg}\nwanted: {want}");
    // And the binary prints it once.
    let (ok, stderr) = convert_cli(&gz, &d.path().join("cli"), &[]);
    assert!(!ok, "{stderr}");
    assert_eq!(
        stderr.matches("gzip stream ends early").count(),
        1,
        "{stderr}"
    );
}
