//! Writing a dataset: three splits, each a directory of Parquet shards written
//! by its own thread. A shard is written under a hidden temporary name and
//! renamed when complete, so an interrupted run never leaves a shard that looks
//! complete; `dataset.json` is written last and marks the dataset as whole.
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

use super::io::temp_path;
use crate::error::{DataError, Result};

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
    pub fn index(self) -> usize {
        self as usize
    }
    pub fn parse(s: &str) -> Result<Split> {
        Split::ALL
            .into_iter()
            .find(|x| x.name() == s)
            .ok_or_else(|| DataError::Invalid(format!("unknown split `{s}` (train, valid, test)")))
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
                let file = File::create(&tmp).map_err(|e| DataError::io(&tmp, e))?;
                let writer =
                    ArrowWriter::try_new(file, self.schema.clone(), Some(self.props.clone()))
                        .map_err(|e| DataError::parquet(&tmp, e))?;
                self.current = Some((writer, tmp, path, 0));
            }
            let (writer, tmp, _, rows) = self.current.as_mut().expect("opened above");
            let room = self.opts.shard_rows - *rows;
            let take = room.min(batch.num_rows());
            writer
                .write(&batch.slice(0, take))
                .map_err(|e| DataError::parquet(&*tmp, e))?;
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
            let file = writer
                .into_inner()
                .map_err(|e| DataError::parquet(&tmp, e))?;
            file.sync_all().map_err(|e| DataError::io(&tmp, e))?;
            std::fs::rename(&tmp, &path).map_err(|e| DataError::io(&path, e))?;
            self.done.push(ShardInfo {
                path: format!(
                    "{}/{}",
                    self.split.name(),
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
    senders: Vec<Sender<RecordBatch>>,
    handles: Vec<JoinHandle<Result<Vec<ShardInfo>>>>,
}

/// Refuse an output directory that already holds a dataset, or with
/// `overwrite` remove that dataset's manifest, stats and shards.
fn prepare_output(out: &Path, overwrite: bool) -> Result<()> {
    let manifest = out.join("dataset.json");
    let has_shards = Split::ALL.iter().any(|s| out.join(s.name()).exists());
    if manifest.exists() || has_shards {
        if !overwrite {
            return Err(DataError::Invalid(format!(
                "{} already holds a dataset; choose another --out or pass --overwrite",
                out.display()
            )));
        }
        let _ = std::fs::remove_file(&manifest);
        let _ = std::fs::remove_file(out.join("stats.json"));
        for s in Split::ALL {
            let dir = out.join(s.name());
            if dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(|e| DataError::io(&dir, e))?;
            }
        }
    }
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
            return Err(DataError::Invalid("--shard-rows must be positive".into()));
        }
        std::fs::create_dir_all(out).map_err(|e| DataError::io(out, e))?;
        prepare_output(out, overwrite)?;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(opts.row_group_rows))
            .set_statistics_enabled(EnabledStatistics::Chunk)
            .set_created_by(format!("ctr-dl {}", env!("CARGO_PKG_VERSION")))
            .build();
        let mut senders = Vec::new();
        let mut handles = Vec::new();
        for split in Split::ALL {
            let dir = out.join(split.name());
            std::fs::create_dir_all(&dir).map_err(|e| DataError::io(&dir, e))?;
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
                    .map_err(|e| DataError::io(out, e))?,
            );
            senders.push(tx);
        }
        Ok(DatasetWriter {
            out: out.to_path_buf(),
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
            return Err(join(handle).err().unwrap_or_else(|| {
                DataError::Invalid(format!("writer of split {split} stopped"))
            }));
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
            remove_shards(&self.out);
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
        remove_shards(&self.out);
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
            remove_shards(&self.out);
        }
    }
}

fn remove_shards(out: &Path) {
    for s in Split::ALL {
        let _ = std::fs::remove_dir_all(out.join(s.name()));
    }
}

fn join(h: JoinHandle<Result<Vec<ShardInfo>>>) -> Result<Vec<ShardInfo>> {
    h.join()
        .unwrap_or_else(|_| Err(DataError::Invalid("a shard writer thread panicked".into())))
}
