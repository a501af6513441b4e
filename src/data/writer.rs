//! Writing a dataset: three splits, each a directory of Parquet shards written
//! by its own thread. A shard is written under a hidden temporary name and
//! renamed when complete, so an interrupted run never leaves a shard that looks
//! complete; `dataset.json` is written last and marks the dataset as whole.
//! From the start of a write until then, [`IN_PROGRESS_FILE`] marks the
//! directory, so a run killed outright (SIGKILL, a crash, a power cut) is
//! recognised by the next one, which refuses the directory until `--overwrite`.
use std::fs::File;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use crossbeam_channel::{bounded, Sender};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use serde::{Deserialize, Serialize};

use super::interrupt;
use super::io::temp_path;
use super::manifest::{now_rfc3339, DatasetManifest, MANIFEST_FILE};
use super::stats::{LEGACY_STATS_FILE, STATS_FILE};
use crate::error::{Error, Result};

/// The three splits, in this order everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    Train,
    Valid,
    Test,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Valid, Split::Test];
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Valid => "valid",
            Split::Test => "test",
        }
    }
    /// The split's folder in a dataset: `split=train`, which Arrow-family
    /// readers turn into a `split` column.
    pub fn dir_name(self) -> String {
        format!("split={}", self.name())
    }
    pub fn index(self) -> usize {
        self as usize
    }
    pub fn parse(s: &str) -> Result<Split> {
        Split::ALL
            .into_iter()
            .find(|x| x.name() == s)
            .ok_or_else(|| Error::Invalid(format!("unknown split `{s}` (train, valid, test)")))
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Shard layout settings.
#[derive(Debug, Clone, Copy)]
pub struct WriterOptions {
    /// Rows per shard file (the last shard of a split holds the rest).
    pub shard_rows: usize,
    /// Rows per Parquet row group: the unit the shard reader shuffles.
    pub row_group_rows: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            shard_rows: 1_000_000,
            row_group_rows: 65_536,
        }
    }
}

/// A finished shard, its path relative to the dataset directory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ShardInfo {
    pub path: String,
    pub rows: u64,
}

/// Writes one split's shards in sequence.
struct ShardWriter {
    dir: PathBuf,
    split: Split,
    schema: SchemaRef,
    props: WriterProperties,
    opts: WriterOptions,
    current: Option<(ArrowWriter<File>, PathBuf, PathBuf, usize)>,
    done: Vec<ShardInfo>,
}

impl ShardWriter {
    fn write(&mut self, mut batch: RecordBatch) -> Result<()> {
        while batch.num_rows() > 0 {
            if self.current.is_none() {
                let name = format!("part-{:05}.parquet", self.done.len());
                let path = self.dir.join(&name);
                let tmp = temp_path(&path);
                let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
                let writer =
                    ArrowWriter::try_new(file, self.schema.clone(), Some(self.props.clone()))
                        .map_err(|e| Error::parquet(&tmp, e))?;
                self.current = Some((writer, tmp, path, 0));
            }
            let (writer, tmp, _, rows) = self.current.as_mut().expect("opened above");
            let room = self.opts.shard_rows - *rows;
            let take = room.min(batch.num_rows());
            writer
                .write(&batch.slice(0, take))
                .map_err(|e| Error::parquet(&*tmp, e))?;
            *rows += take;
            batch = batch.slice(take, batch.num_rows() - take);
            if *rows == self.opts.shard_rows {
                self.close_current()?;
            }
        }
        Ok(())
    }

    fn close_current(&mut self) -> Result<()> {
        if let Some((writer, tmp, path, rows)) = self.current.take() {
            let file = writer.into_inner().map_err(|e| Error::parquet(&tmp, e))?;
            file.sync_all().map_err(|e| Error::io(&tmp, e))?;
            std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
            self.done.push(ShardInfo {
                path: format!(
                    "{}/{}",
                    self.split.dir_name(),
                    path.file_name().unwrap_or_default().to_string_lossy()
                ),
                rows: rows as u64,
            });
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Vec<ShardInfo>> {
        self.close_current()?;
        Ok(std::mem::take(&mut self.done))
    }
}

impl Drop for ShardWriter {
    fn drop(&mut self) {
        // Reached with an open shard only on failure: remove the partial file.
        if let Some((_, tmp, _, _)) = self.current.take() {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

/// Writes the train, valid and test splits of a dataset concurrently.
pub struct DatasetWriter {
    out: PathBuf,
    /// `out` did not exist before: a failed write removes it too.
    created: bool,
    senders: Vec<Sender<RecordBatch>>,
    handles: Vec<JoinHandle<Result<Vec<ShardInfo>>>>,
}

/// Written into the output directory when a dataset write starts (the pid,
/// the command line and the start time, as JSON) and removed only once
/// `dataset.json` is in place. A directory holding it, or holding split
/// directories without `dataset.json`, is what an interrupted run left.
pub const IN_PROGRESS_FILE: &str = "_in-progress.json";

/// The folders a split's shards may be in: `split=<name>`, or `<name>` in a
/// dataset written before.
fn split_dirs(out: &Path, s: Split) -> [PathBuf; 2] {
    [out.join(s.dir_name()), out.join(s.name())]
}

/// Refuse an output directory that already holds a dataset or the remains of
/// an interrupted run, or with `overwrite` remove them: the manifest, stats,
/// shards, the encoded cache, temporary files and the in-progress marker.
fn prepare_output(out: &Path, overwrite: bool) -> Result<()> {
    let manifest = super::manifest::manifest_path(out);
    let marker = out.join(IN_PROGRESS_FILE);
    let has_splits = Split::ALL
        .iter()
        .any(|&s| split_dirs(out, s).iter().any(|d| d.exists()));
    let complete = manifest.exists();
    let unfinished = !complete && (marker.exists() || has_splits);
    if !overwrite {
        if complete {
            return Err(Error::Invalid(format!(
                "{} already holds a dataset; choose another --out or pass --overwrite",
                out.display()
            )));
        }
        if unfinished {
            return Err(Error::Invalid(unfinished_message(out)));
        }
    }
    if complete || unfinished {
        let _ = std::fs::remove_file(&manifest);
        for f in [STATS_FILE, LEGACY_STATS_FILE, "in-progress.json"] {
            let _ = std::fs::remove_file(out.join(f));
        }
        // The encoded cache of the data replaced (its keys name that data).
        for cache in [crate::features::cache::ENCODED_DIR, "encoded"] {
            let dir = out.join(cache);
            if dir.is_dir() {
                std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
            }
        }
        for s in Split::ALL {
            for dir in split_dirs(out, s) {
                if dir.exists() {
                    std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
                }
            }
        }
        remove_temp_files(out);
        let _ = std::fs::remove_file(&marker);
    }
    Ok(())
}

/// Why `out` is refused when it holds an unfinished dataset.
fn unfinished_message(out: &Path) -> String {
    let info: Option<serde_json::Value> = std::fs::read_to_string(out.join(IN_PROGRESS_FILE))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let pid = info.as_ref().and_then(|v| v["pid"].as_u64());
    let started = info
        .as_ref()
        .and_then(|v| v["started"].as_str().map(str::to_string));
    let when = started
        .map(|t| format!(", started {t}"))
        .unwrap_or_default();
    match pid {
        Some(pid) if pid != u64::from(std::process::id()) && process_alive(pid) => format!(
            "{}: a conversion (pid {pid}{when}) is still writing here, or was interrupted \
             and its pid is in use again; wait for it, or pass --overwrite to replace its \
             partial shards",
            out.display()
        ),
        Some(pid) => format!(
            "{}: an interrupted conversion (pid {pid}{when}) left partial shards and no \
             {MANIFEST_FILE}; use --overwrite to remove them and convert again",
            out.display()
        ),
        None => format!(
            "{}: an interrupted conversion left partial shards and no {MANIFEST_FILE}; \
             use --overwrite to remove them and convert again",
            out.display()
        ),
    }
}

/// Whether a process of that id exists (Linux: under /proc; elsewhere: unknown,
/// taken as not).
fn process_alive(pid: u64) -> bool {
    let proc = Path::new("/proc");
    proc.join("self").exists() && proc.join(pid.to_string()).exists()
}

/// Mark `out` as being written (see [`IN_PROGRESS_FILE`]).
fn write_marker(out: &Path) -> Result<()> {
    let info = serde_json::json!({
        "pid": std::process::id(),
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "started": now_rfc3339(),
    });
    let path = out.join(IN_PROGRESS_FILE);
    std::fs::write(&path, format!("{info:#}\n")).map_err(|e| Error::io(&path, e))
}

/// Write `dataset.json`, which marks the dataset in `out` as whole, then
/// remove the in-progress marker. Ends with an "interrupted" error instead if
/// SIGINT or SIGTERM came (see [`interrupt`](super::interrupt)); on any error
/// the shards are removed.
pub fn commit(out: &Path, manifest: &DatasetManifest) -> Result<()> {
    if let Err(e) = interrupt::check().and_then(|()| manifest.save(out)) {
        remove_shards(out, false);
        return Err(e);
    }
    let _ = std::fs::remove_file(out.join(IN_PROGRESS_FILE));
    Ok(())
}

impl DatasetWriter {
    /// Create `out/{train,valid,test}`. Refuses a directory that already holds
    /// a dataset unless `overwrite`.
    pub fn create(
        out: &Path,
        schema: SchemaRef,
        opts: WriterOptions,
        overwrite: bool,
    ) -> Result<Self> {
        if opts.shard_rows == 0 || opts.row_group_rows == 0 {
            return Err(Error::Invalid("--shard-rows must be positive".into()));
        }
        let created = !out.exists();
        std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
        prepare_output(out, overwrite)?;
        write_marker(out)?;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(opts.row_group_rows))
            .set_statistics_enabled(EnabledStatistics::Chunk)
            .set_created_by(format!("ctr-dl {}", env!("CARGO_PKG_VERSION")))
            .build();
        let mut senders = Vec::new();
        let mut handles = Vec::new();
        for split in Split::ALL {
            let dir = out.join(split.dir_name());
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
            let (tx, rx) = bounded::<RecordBatch>(4);
            let mut writer = ShardWriter {
                dir,
                split,
                schema: schema.clone(),
                props: props.clone(),
                opts,
                current: None,
                done: Vec::new(),
            };
            handles.push(
                std::thread::Builder::new()
                    .name(format!("write-{}", split.name()))
                    .spawn(move || {
                        for batch in rx {
                            writer.write(batch)?;
                        }
                        writer.finish()
                    })
                    .map_err(|e| Error::io(out, e))?,
            );
            senders.push(tx);
        }
        Ok(DatasetWriter {
            out: out.to_path_buf(),
            created,
            senders,
            handles,
        })
    }

    /// Queue a batch for a split. If that split's writer failed, its error.
    pub fn write(&mut self, split: Split, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if self.senders[split.index()].send(batch).is_err() {
            // The writer thread ended early: it failed. Collect its error.
            self.senders.clear();
            let handle = self.handles.remove(split.index());
            return Err(join(handle)
                .err()
                .unwrap_or_else(|| Error::Invalid(format!("writer of split {split} stopped"))));
        }
        Ok(())
    }

    /// Close every shard and return the shards of each split.
    pub fn finish(mut self) -> Result<[Vec<ShardInfo>; 3]> {
        self.senders.clear();
        let mut results = Vec::new();
        let mut first_err = None;
        for h in self.handles.drain(..) {
            match join(h) {
                Ok(r) => results.push(r),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_err {
            remove_shards(&self.out, self.created);
            return Err(e);
        }
        let mut it = results.into_iter();
        Ok([
            it.next().unwrap_or_default(),
            it.next().unwrap_or_default(),
            it.next().unwrap_or_default(),
        ])
    }

    /// Stop and remove what this run wrote (used when the input turns out bad).
    pub fn abort(mut self) {
        self.senders.clear();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
        remove_shards(&self.out, self.created);
    }
}

impl Drop for DatasetWriter {
    fn drop(&mut self) {
        // An early return with writers still running: stop them, then remove
        // this run's shards, which no manifest will ever describe.
        if !self.handles.is_empty() {
            self.senders.clear();
            for h in self.handles.drain(..) {
                let _ = h.join();
            }
            remove_shards(&self.out, self.created);
        }
    }
}

/// Remove what an unfinished write left in `out`: the split directories (with
/// their temporary shards), temporary files and the in-progress marker.
fn remove_shards(out: &Path, created: bool) {
    for s in Split::ALL {
        let _ = std::fs::remove_dir_all(out.join(s.dir_name()));
    }
    remove_temp_files(out);
    let _ = std::fs::remove_file(out.join(IN_PROGRESS_FILE));
    if created {
        // Only if empty: nothing but what this write made goes.
        let _ = std::fs::remove_dir(out);
    }
}

/// Temporary files of this layout's files ([`temp_path`] names), by any pid.
fn remove_temp_files(out: &Path) {
    let Ok(entries) = std::fs::read_dir(out) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let ours = [MANIFEST_FILE, STATS_FILE, IN_PROGRESS_FILE]
            .iter()
            .any(|f| name.starts_with(&format!(".{f}.")));
        if ours && name.ends_with(".tmp") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn join(h: JoinHandle<Result<Vec<ShardInfo>>>) -> Result<Vec<ShardInfo>> {
    h.join()
        .unwrap_or_else(|_| Err(Error::Invalid("a shard writer thread panicked".into())))
}
