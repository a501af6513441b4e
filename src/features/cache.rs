//! The encoded dataset: each split of a converted dataset run through a fitted
//! [`FeatureMap`] into fixed-width binary chunks, so training reads plain
//! arrays instead of decoding Parquet and strings every epoch. Cached under
//! `<dataset>/encoded/<key>/`, where the key hashes the dataset manifest and the
//! feature settings: a change to either encodes again, anything else reuses it.
//!
//! Layout (documented for other readers, e.g. `bench/encoded.py`):
//! `encoded.json` (an [`EncodedMeta`], written last, so a directory without it
//! is incomplete), `features.json`, and per split `<split>-NNNNN.bin` chunks,
//! each headerless little-endian: ids `i32 [rows, F]` row-major (global rows of
//! the shared embedding table), dense `f32 [rows, D]`, labels `f32 [rows]`.
use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver};
use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::config::FeatureConfig;
use super::hashing::xxh3;
use super::history::HistoryRows;
use super::map::{Encoded, FeatureMap, FEATURE_MAP_VERSION};
use crate::data::io::{read_json, write_json};
use crate::data::reader::{ReaderOptions, ShardReader};
use crate::data::writer::Split;
use crate::error::{Error, Result};
use crate::rng::Rng;

/// Version of the chunk layout.
pub const ENCODED_VERSION: u32 = 1;
/// Rows per chunk file.
pub const CHUNK_ROWS: usize = 262_144;

/// One chunk file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChunkInfo {
    pub file: String,
    pub rows: u64,
}

/// One encoded split.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EncodedSplit {
    pub rows: u64,
    pub positives: u64,
    pub chunks: Vec<ChunkInfo>,
}

/// `encoded.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EncodedMeta {
    pub version: u32,
    pub key: String,
    pub source: PathBuf,
    pub num_fields: usize,
    pub num_dense: usize,
    pub field_names: Vec<String>,
    pub dense_names: Vec<String>,
    pub field_offsets: Vec<u32>,
    pub field_sizes: Vec<u32>,
    pub vocab_size: u64,
    pub splits: BTreeMap<String, EncodedSplit>,
    pub seconds: f64,
}

impl EncodedMeta {
    /// The model inputs in order: the categorical fields, then the dense inputs.
    pub fn column_names(&self) -> Vec<String> {
        self.field_names
            .iter()
            .chain(&self.dense_names)
            .cloned()
            .collect()
    }
}

/// An encoded dataset on disk.
#[derive(Debug, Clone)]
pub struct EncodedDataset {
    pub dir: PathBuf,
    pub meta: EncodedMeta,
    pub features: FeatureMap,
    /// Whether an existing cache was reused.
    pub reused: bool,
}

impl EncodedDataset {
    /// The split's metadata.
    pub fn split(&self, s: Split) -> &EncodedSplit {
        static EMPTY: EncodedSplit = EncodedSplit {
            rows: 0,
            positives: 0,
            chunks: Vec::new(),
        };
        self.meta.splits.get(s.name()).unwrap_or(&EMPTY)
    }

    /// Open an encoded directory.
    pub fn open(dir: &Path) -> Result<Self> {
        let meta: EncodedMeta = read_json(&dir.join("encoded.json"))?;
        if meta.version != ENCODED_VERSION {
            return Err(Error::Invalid(format!(
                "{}: encoded version {} is not {ENCODED_VERSION}",
                dir.display(),
                meta.version
            )));
        }
        let features = FeatureMap::load(&dir.join("features.json"))?;
        Ok(EncodedDataset {
            dir: dir.to_path_buf(),
            meta,
            features,
            reused: true,
        })
    }

    /// Read all rows of a split into memory (evaluation sets).
    pub fn read_all(&self, s: Split) -> Result<Encoded> {
        let mut all = Encoded::default();
        for c in &self.split(s).chunks {
            let e = read_chunk(&self.dir.join(&c.file), c.rows as usize, &self.meta)?;
            all.rows += e.rows;
            all.ids.extend(e.ids);
            all.dense.extend(e.dense);
            all.labels.extend(e.labels);
        }
        Ok(all)
    }
}

/// The cache key of a dataset and feature settings.
pub fn cache_key(data_dir: &Path, config: &FeatureConfig) -> Result<String> {
    let manifest_path = crate::data::manifest::manifest_path(data_dir);
    let manifest = std::fs::read(&manifest_path).map_err(|e| Error::io(&manifest_path, e))?;
    // History with no keys is no history: the same encoding, the same key.
    let mut config = config.clone();
    if config.history().is_none() {
        config.history = None;
    }
    let settings = serde_json::to_vec(&config).map_err(|source| Error::Json {
        what: "the feature settings".into(),
        source,
    })?;
    let mut bytes = manifest;
    bytes.extend_from_slice(&settings);
    bytes.extend_from_slice(&FEATURE_MAP_VERSION.to_le_bytes());
    bytes.extend_from_slice(&ENCODED_VERSION.to_le_bytes());
    if config.history().is_some() {
        // How history inputs are computed and scaled is part of the encoding.
        bytes.extend_from_slice(&super::history::HISTORY_VERSION.to_le_bytes());
    }
    Ok(format!("{:016x}", xxh3(&bytes, 0)))
}

/// The default folder of the encoded cache, inside the dataset folder (the
/// `_` keeps it out of the table Arrow-family readers see).
pub const ENCODED_DIR: &str = "_encoded";

/// Fit and encode, or reuse the cached encoding of the same data and settings.
/// `root` defaults to `<data_dir>/_encoded`.
pub fn prepare(
    data_dir: &Path,
    root: Option<&Path>,
    config: &FeatureConfig,
    progress: bool,
) -> Result<EncodedDataset> {
    if !crate::data::manifest::is_dataset(data_dir) {
        return Err(Error::Invalid(format!(
            "data.path {}: {}; make one with `ctr-dl convert` or `ctr-dl simulate`, \
             or set data.path to one",
            data_dir.display(),
            if data_dir.is_dir() {
                "not a dataset folder (no dataset.json: not a ctr-dl dataset, or its conversion \
                 did not finish)"
            } else {
                "no such folder"
            }
        )));
    }
    let key = cache_key(data_dir, config)?;
    let root = root
        .map(Path::to_path_buf)
        .unwrap_or_else(|| data_dir.join(ENCODED_DIR));
    let dir = root.join(&key);
    if dir.join("encoded.json").exists() {
        return EncodedDataset::open(&dir);
    }
    let started = std::time::Instant::now();
    std::fs::create_dir_all(&root).map_err(|e| Error::io(&root, e))?;
    let tmp = root.join(format!(".{key}.{}.tmp", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let result = (|| {
        let mut features = FeatureMap::fit(data_dir, config, progress)?;
        // History inputs need every split at once, merged in time order; their
        // train moments complete the feature map before it is saved.
        let history = match features.history.as_mut() {
            Some(spec) => {
                let r = super::history::compute(data_dir, spec, &features.label, &tmp)?;
                spec.mean = r.mean;
                spec.std = r.std;
                // Where a server's counters start: after every row of the data.
                r.state.save(&tmp.join(super::history::STATE_FILE), 0)?;
                Some(r.paths)
            }
            None => None,
        };
        features.save(&tmp.join("features.json"))?;
        let mut meta = EncodedMeta {
            version: ENCODED_VERSION,
            key: key.clone(),
            source: data_dir.to_path_buf(),
            num_fields: features.num_fields(),
            num_dense: features.num_dense(),
            field_names: features
                .categorical
                .iter()
                .map(|f| f.name.clone())
                .collect(),
            dense_names: features.dense_names(),
            field_offsets: features.offsets(),
            field_sizes: features.categorical.iter().map(|f| f.size).collect(),
            vocab_size: features.vocab_size,
            splits: BTreeMap::new(),
            seconds: 0.0,
        };
        // Target encoding: train rows read their value out of fold.
        let folds = match &config.target_encoding {
            Some(t) => {
                let schema = crate::data::manifest::DatasetManifest::load(data_dir)?.schema;
                Some(super::target::target_stats(data_dir, t, &schema)?.1)
            }
            None => None,
        };
        for (i, s) in [Split::Train, Split::Valid, Split::Test]
            .into_iter()
            .enumerate()
        {
            let rows = match (&history, &features.history) {
                (Some(paths), Some(spec)) => Some(HistoryRows::open(&paths[i], spec)?),
                _ => None,
            };
            let oof = folds.as_ref().filter(|_| s == Split::Train);
            let info = encode_split(data_dir, s, &features, &tmp, rows, oof, progress)?;
            meta.splits.insert(s.name().to_string(), info);
        }
        for p in history.iter().flatten() {
            std::fs::remove_file(p).map_err(|e| Error::io(p, e))?;
        }
        meta.seconds = started.elapsed().as_secs_f64();
        write_json(&tmp.join("encoded.json"), &meta)?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    match std::fs::rename(&tmp, &dir) {
        Ok(()) => {}
        // Another process finished the same key first: use theirs.
        Err(_) if dir.join("encoded.json").exists() => {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        Err(e) => return Err(Error::io(&dir, e)),
    }
    let mut ds = EncodedDataset::open(&dir)?;
    ds.reused = false;
    Ok(ds)
}

fn encode_split(
    data_dir: &Path,
    split: Split,
    features: &FeatureMap,
    out: &Path,
    mut history: Option<HistoryRows>,
    oof: Option<&Vec<Vec<super::target::ValueCounts>>>,
    progress: bool,
) -> Result<EncodedSplit> {
    let mut columns: Vec<String> = features.columns.iter().map(|(c, _)| c.clone()).collect();
    columns.push(features.label.clone());
    let opts = ReaderOptions {
        batch_size: 65_536,
        columns: Some(columns),
        ..Default::default()
    };
    let reader = ShardReader::open_split(data_dir, split, opts)?;
    let bar = crate::progress::Progress::rows(
        progress,
        reader.total_rows(),
        &format!("encoding {}", split.name()),
    );
    let mut info = EncodedSplit::default();
    let mut pending = Encoded::default();
    let flush = |pending: &mut Encoded, info: &mut EncodedSplit| -> Result<()> {
        if pending.rows == 0 {
            return Ok(());
        }
        let file = format!("{}-{:05}.bin", split.name(), info.chunks.len());
        write_chunk(&out.join(&file), pending)?;
        info.chunks.push(ChunkInfo {
            file,
            rows: pending.rows as u64,
        });
        *pending = Encoded::default();
        Ok(())
    };
    let (nd, first) = (features.num_dense(), features.history_offset());
    let mut row = 0u64;
    for batch in reader {
        let batch = batch?;
        let mut e = features.encode_batch(&batch)?;
        if let (Some(t), Some(folds)) = (&features.target, oof) {
            let start = features.target_offset();
            for (k, c) in t.columns.iter().enumerate() {
                let col = super::raw::view(&batch, c)?;
                for r in 0..e.rows {
                    let fold = super::target::fold_of(t.seed, row + r as u64, t.folds);
                    let tok = super::raw::token(col.get(r));
                    e.dense[r * nd + start + k] = t.out_of_fold(k, tok.as_deref(), fold, &folds[k]);
                }
            }
        }
        row += e.rows as u64;
        if let Some(h) = history.as_mut() {
            h.fill(e.rows, &mut e.dense, nd, first)?;
        }
        info.rows += e.rows as u64;
        info.positives += e.labels.iter().filter(|&&y| y > 0.5).count() as u64;
        pending.rows += e.rows;
        pending.ids.extend(e.ids);
        pending.dense.extend(e.dense);
        pending.labels.extend(e.labels);
        if pending.rows >= CHUNK_ROWS {
            flush(&mut pending, &mut info)?;
        }
        bar.set(info.rows, info.rows);
    }
    flush(&mut pending, &mut info)?;
    bar.finish_and_clear();
    Ok(info)
}

fn write_chunk(path: &Path, e: &Encoded) -> Result<()> {
    let tmp = crate::data::io::temp_path(path);
    let write = || -> std::io::Result<()> {
        let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
        for v in &e.ids {
            w.write_all(&v.to_le_bytes())?;
        }
        for v in &e.dense {
            w.write_all(&v.to_le_bytes())?;
        }
        for v in &e.labels {
            w.write_all(&v.to_le_bytes())?;
        }
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|err| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, err)
    })
}

fn read_chunk(path: &Path, rows: usize, meta: &EncodedMeta) -> Result<Encoded> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let (nf, nd) = (meta.num_fields, meta.num_dense);
    let want = rows * (nf + nd + 1) * 4;
    if bytes.len() != want {
        return Err(Error::Invalid(format!(
            "{}: {} bytes, expected {want} for {rows} rows; the cache is damaged, delete it to encode again",
            path.display(),
            bytes.len()
        )));
    }
    let word = |c: &[u8]| [c[0], c[1], c[2], c[3]];
    let (ids, rest) = bytes.split_at(rows * nf * 4);
    let (dense, labels) = rest.split_at(rows * nd * 4);
    Ok(Encoded {
        rows,
        ids: ids
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(word(c)))
            .collect(),
        dense: dense
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(word(c)))
            .collect(),
        labels: labels
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(word(c)))
            .collect(),
    })
}

/// A batch of model input.
#[derive(Debug)]
pub struct Batch {
    /// `i64 [B, F]` global embedding rows.
    pub ids: Tensor,
    /// `f32 [B, D]`.
    pub dense: Tensor,
    /// `f32 [B]`.
    pub labels: Tensor,
    pub rows: usize,
}

impl Batch {
    /// Tensors from encoded rows `[start, end)`.
    pub fn from_encoded(e: &Encoded, nf: usize, nd: usize, rows: &[usize]) -> Batch {
        let b = rows.len();
        let mut ids = Vec::with_capacity(b * nf);
        let mut dense = Vec::with_capacity(b * nd);
        let mut labels = Vec::with_capacity(b);
        for &r in rows {
            ids.extend(e.ids[r * nf..(r + 1) * nf].iter().map(|&i| i as i64));
            dense.extend_from_slice(&e.dense[r * nd..(r + 1) * nd]);
            labels.push(e.labels[r]);
        }
        Batch {
            ids: Tensor::from_slice(&ids).view([b as i64, nf as i64]),
            dense: Tensor::from_slice(&dense).view([b as i64, nd as i64]),
            labels: Tensor::from_slice(&labels),
            rows: b,
        }
    }
}

/// How to iterate a split.
#[derive(Debug, Clone)]
pub struct LoaderOptions {
    pub batch_size: usize,
    pub shuffle: bool,
    /// Chunks held and shuffled together (memory: this many chunks of rows).
    pub shuffle_chunks: usize,
    pub seed: u64,
    pub epoch: u64,
    pub drop_last: bool,
    /// Batches to pass over without building them (resuming mid-epoch).
    pub skip_batches: u64,
    pub prefetch: usize,
}

impl Default for LoaderOptions {
    fn default() -> Self {
        LoaderOptions {
            batch_size: 4096,
            shuffle: false,
            shuffle_chunks: 4,
            seed: 2018,
            epoch: 0,
            drop_last: false,
            skip_batches: 0,
            prefetch: 4,
        }
    }
}

/// Batches of one split, read and assembled on a background thread; the order
/// is a deterministic function of (seed, epoch): chunks are shuffled, then rows
/// within a window of `shuffle_chunks` chunks.
pub struct Loader {
    rx: Option<Receiver<Result<Batch>>>,
    handle: Option<JoinHandle<()>>,
}

impl Loader {
    pub fn new(ds: &EncodedDataset, split: Split, opts: LoaderOptions) -> Result<Loader> {
        if opts.batch_size == 0 {
            return Err(Error::Invalid("batch size must be positive".into()));
        }
        let mut chunks: Vec<(PathBuf, usize)> = ds
            .split(split)
            .chunks
            .iter()
            .map(|c| (ds.dir.join(&c.file), c.rows as usize))
            .collect();
        let meta = ds.meta.clone();
        let (tx, rx) = bounded(opts.prefetch.max(1));
        let handle = std::thread::Builder::new()
            .name("batch-loader".into())
            .spawn(move || {
                let mut rng = Rng::derive(opts.seed, &format!("loader-epoch-{}", opts.epoch));
                if opts.shuffle {
                    rng.shuffle(&mut chunks);
                }
                let (nf, nd) = (meta.num_fields, meta.num_dense);
                let window = if opts.shuffle {
                    opts.shuffle_chunks.max(1)
                } else {
                    1
                };
                let mut carry = Encoded::default();
                let mut emitted = 0u64;
                let mut groups = chunks.chunks(window).peekable();
                while let Some(group) = groups.next() {
                    let mut buf = std::mem::take(&mut carry);
                    for (path, rows) in group {
                        match read_chunk(path, *rows, &meta) {
                            Ok(e) => {
                                buf.rows += e.rows;
                                buf.ids.extend(e.ids);
                                buf.dense.extend(e.dense);
                                buf.labels.extend(e.labels);
                            }
                            Err(e) => {
                                let _ = tx.send(Err(e));
                                return;
                            }
                        }
                    }
                    let mut order: Vec<usize> = (0..buf.rows).collect();
                    if opts.shuffle {
                        rng.shuffle(&mut order);
                    }
                    let last = groups.peek().is_none();
                    let mut start = 0;
                    while start < order.len() {
                        let end = (start + opts.batch_size).min(order.len());
                        if end - start < opts.batch_size && !last {
                            // Carry the remainder into the next window.
                            let rest = &order[start..];
                            let mut c = Encoded::default();
                            for &r in rest {
                                c.ids.extend_from_slice(&buf.ids[r * nf..(r + 1) * nf]);
                                c.dense.extend_from_slice(&buf.dense[r * nd..(r + 1) * nd]);
                                c.labels.push(buf.labels[r]);
                            }
                            c.rows = rest.len();
                            carry = c;
                            break;
                        }
                        if end - start < opts.batch_size && opts.drop_last {
                            break;
                        }
                        emitted += 1;
                        if emitted > opts.skip_batches {
                            let b = Batch::from_encoded(&buf, nf, nd, &order[start..end]);
                            if tx.send(Ok(b)).is_err() {
                                return;
                            }
                        }
                        start = end;
                    }
                }
            })
            .map_err(|source| Error::Thread {
                what: "loader",
                source,
            })?;
        Ok(Loader {
            rx: Some(rx),
            handle: Some(handle),
        })
    }
}

impl Iterator for Loader {
    type Item = Result<Batch>;
    fn next(&mut self) -> Option<Self::Item> {
        self.rx.as_ref()?.recv().ok()
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.rx.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
