//! The shard reader: record batches of a chosen size from a split's Parquet
//! shards, with column projection and, for training, a two-level shuffle that
//! is deterministic for a (seed, epoch): the order of row groups across all
//! shards is shuffled, then rows are shuffled within a buffer of
//! `shuffle_buffer` rows. Reading and decoding run on a background thread that
//! stays `prefetch` batches ahead, so a consumer never waits on disk.
use std::fs::File;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use arrow::array::{RecordBatch, UInt32Array};
use arrow::compute::{concat_batches, take_record_batch};
use arrow::datatypes::SchemaRef;
use crossbeam_channel::{bounded, Receiver, Sender};
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::ProjectionMask;

use super::manifest::DatasetManifest;
use super::writer::Split;
use crate::error::{Error, Result};
use crate::rng::Rng;

/// How to read.
#[derive(Debug, Clone)]
pub struct ReaderOptions {
    /// Rows per batch; the last batch may be smaller unless `drop_last`.
    pub batch_size: usize,
    /// Columns to read, by name; `None` reads all.
    pub columns: Option<Vec<String>>,
    pub shuffle: bool,
    /// Rows gathered before shuffling them (memory: this many rows).
    pub shuffle_buffer: usize,
    pub seed: u64,
    /// Mixed into the seed, so each epoch has its own order.
    pub epoch: u64,
    /// Batches decoded ahead of the consumer.
    pub prefetch: usize,
    pub drop_last: bool,
}

impl Default for ReaderOptions {
    fn default() -> Self {
        ReaderOptions {
            batch_size: 4096,
            columns: None,
            shuffle: false,
            shuffle_buffer: 262_144,
            seed: 2018,
            epoch: 0,
            prefetch: 4,
            drop_last: false,
        }
    }
}

/// Iterator over record batches, decoded on a background thread.
pub struct ShardReader {
    schema: SchemaRef,
    rx: Option<Receiver<Result<RecordBatch>>>,
    handle: Option<JoinHandle<()>>,
    rows: u64,
}

struct Unit {
    file: usize,
    row_group: usize,
}

impl ShardReader {
    /// Read one split of a dataset directory (described by its `dataset.json`).
    pub fn open_split(dir: &Path, split: Split, opts: ReaderOptions) -> Result<Self> {
        let manifest = DatasetManifest::load(dir)?;
        // An empty split has no shards: its schema comes from the manifest.
        let schema = std::sync::Arc::new(manifest.schema.arrow_schema());
        Self::open_inner(manifest.shard_paths(dir, split), Some(schema), opts)
    }

    /// Read the given Parquet files, which must share one schema.
    pub fn open(files: Vec<PathBuf>, opts: ReaderOptions) -> Result<Self> {
        Self::open_inner(files, None, opts)
    }

    fn open_inner(
        files: Vec<PathBuf>,
        fallback: Option<SchemaRef>,
        opts: ReaderOptions,
    ) -> Result<Self> {
        if opts.batch_size == 0 {
            return Err(Error::Invalid("batch size must be positive".into()));
        }
        let mut metas = Vec::with_capacity(files.len());
        let mut units = Vec::new();
        let mut rows = 0u64;
        for (i, path) in files.iter().enumerate() {
            let file = File::open(path).map_err(|e| Error::io(path, e))?;
            let meta = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new())
                .map_err(|e| Error::parquet(path, e))?;
            for rg in 0..meta.metadata().num_row_groups() {
                rows += meta.metadata().row_group(rg).num_rows() as u64;
                units.push(Unit {
                    file: i,
                    row_group: rg,
                });
            }
            metas.push(meta);
        }
        let full_schema = match metas.first() {
            Some(m) => m.schema().clone(),
            None => {
                fallback.unwrap_or_else(|| std::sync::Arc::new(arrow::datatypes::Schema::empty()))
            }
        };
        for (m, p) in metas.iter().zip(&files) {
            if m.schema().fields() != full_schema.fields() {
                return Err(Error::Invalid(format!(
                    "{}: schema differs from {}",
                    p.display(),
                    files[0].display()
                )));
            }
        }
        let indices: Vec<usize> = match &opts.columns {
            None => (0..full_schema.fields().len()).collect(),
            Some(names) => names
                .iter()
                .map(|n| {
                    full_schema.index_of(n).map_err(|_| {
                        let have: Vec<&str> = full_schema
                            .fields()
                            .iter()
                            .map(|f| f.name().as_str())
                            .collect();
                        Error::Invalid(format!(
                            "no column `{n}` in the shards (have: {})",
                            have.join(", ")
                        ))
                    })
                })
                .collect::<Result<_>>()?,
        };
        let schema = std::sync::Arc::new(
            full_schema
                .project(&indices)
                .map_err(|e| Error::arrow(files.first().cloned().unwrap_or_default(), e))?,
        );
        let (tx, rx) = bounded(opts.prefetch.max(1));
        let out_schema = schema.clone();
        let handle = std::thread::Builder::new()
            .name("shard-reader".into())
            .spawn(move || {
                let mut job = ReadJob {
                    files,
                    metas,
                    indices,
                    opts,
                    schema: out_schema,
                    tx,
                };
                if let Err(e) = job.run(units) {
                    let _ = job.tx.send(Err(e));
                }
            })
            .map_err(|source| Error::Thread {
                what: "reader",
                source,
            })?;
        Ok(ShardReader {
            schema,
            rx: Some(rx),
            handle: Some(handle),
            rows,
        })
    }

    /// The schema of the batches (after projection).
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Rows in the files read.
    pub fn total_rows(&self) -> u64 {
        self.rows
    }
}

impl Iterator for ShardReader {
    type Item = Result<RecordBatch>;
    fn next(&mut self) -> Option<Self::Item> {
        self.rx.as_ref()?.recv().ok()
    }
}

impl Drop for ShardReader {
    fn drop(&mut self) {
        self.rx.take(); // the thread's next send fails and it stops
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

struct ReadJob {
    files: Vec<PathBuf>,
    metas: Vec<ArrowReaderMetadata>,
    indices: Vec<usize>,
    opts: ReaderOptions,
    schema: SchemaRef,
    tx: Sender<Result<RecordBatch>>,
}

/// Stop reading: the consumer went away.
struct Stopped;

impl ReadJob {
    fn run(&mut self, mut units: Vec<Unit>) -> Result<()> {
        let mut rng = Rng::derive(
            self.opts.seed ^ self.opts.epoch.wrapping_mul(0xA24B_AED4_963E_E407),
            "shard-reader",
        );
        if self.opts.shuffle {
            rng.shuffle(&mut units);
        }
        let target = if self.opts.shuffle {
            self.opts.shuffle_buffer.max(self.opts.batch_size)
        } else {
            self.opts.batch_size
        };
        let mut buffer: Vec<RecordBatch> = Vec::new();
        let mut buffered = 0usize;
        for unit in &units {
            for batch in self.read_unit(unit)? {
                buffered += batch.num_rows();
                buffer.push(batch);
                if buffered >= target {
                    match self.emit(&mut buffer, &mut buffered, &mut rng, false) {
                        Ok(()) => {}
                        Err(Stopped) => return Ok(()),
                    }
                }
            }
        }
        let _ = self.emit(&mut buffer, &mut buffered, &mut rng, true);
        Ok(())
    }

    fn read_unit(&self, unit: &Unit) -> Result<Vec<RecordBatch>> {
        let path = &self.files[unit.file];
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let builder =
            ParquetRecordBatchReaderBuilder::new_with_metadata(file, self.metas[unit.file].clone());
        // Parquet returns projected columns in file order; restore the asked order.
        let mut sorted = self.indices.clone();
        sorted.sort_unstable();
        let reorder: Vec<usize> = self
            .indices
            .iter()
            .map(|i| sorted.binary_search(i).unwrap_or(0))
            .collect();
        let mask = ProjectionMask::roots(builder.parquet_schema(), sorted.iter().copied());
        let rows = self.metas[unit.file]
            .metadata()
            .row_group(unit.row_group)
            .num_rows() as usize;
        let reader = builder
            .with_projection(mask)
            .with_row_groups(vec![unit.row_group])
            .with_batch_size(rows.max(1))
            .build()
            .map_err(|e| Error::parquet(path, e))?;
        reader
            .map(|b| {
                b.and_then(|b| b.project(&reorder))
                    .map_err(|e| Error::arrow(path, e))
            })
            .collect()
    }

    /// Send full batches from the buffer (shuffled when asked); keep the rest
    /// unless `last`.
    fn emit(
        &self,
        buffer: &mut Vec<RecordBatch>,
        buffered: &mut usize,
        rng: &mut Rng,
        last: bool,
    ) -> std::result::Result<(), Stopped> {
        if *buffered == 0 {
            return Ok(());
        }
        let all = match concat_batches(&self.schema, buffer.iter()) {
            Ok(b) => b,
            Err(e) => {
                let _ = self.tx.send(Err(Error::arrow(&self.files[0], e)));
                return Err(Stopped);
            }
        };
        buffer.clear();
        let all = if self.opts.shuffle {
            let mut perm: Vec<u32> = (0..all.num_rows() as u32).collect();
            rng.shuffle(&mut perm);
            match take_record_batch(&all, &UInt32Array::from(perm)) {
                Ok(b) => b,
                Err(e) => {
                    let _ = self.tx.send(Err(Error::arrow(&self.files[0], e)));
                    return Err(Stopped);
                }
            }
        } else {
            all
        };
        let bs = self.opts.batch_size;
        let n = all.num_rows();
        let full = n / bs * bs;
        let mut start = 0;
        while start < full {
            self.tx
                .send(Ok(all.slice(start, bs)))
                .map_err(|_| Stopped)?;
            start += bs;
        }
        let rest = n - full;
        if rest > 0 {
            if last {
                if !self.opts.drop_last {
                    self.tx
                        .send(Ok(all.slice(full, rest)))
                        .map_err(|_| Stopped)?;
                }
            } else {
                buffer.push(all.slice(full, rest));
            }
        }
        *buffered = if last { 0 } else { rest };
        Ok(())
    }
}
