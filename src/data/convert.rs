//! `ctr-dl convert`: delimited click logs (Criteo, Criteo 1TB, Avazu, or any
//! CSV/TSV a schema describes; plain or gzip) to Parquet shards split into
//! train, valid and test.
//!
//! Streaming pipeline, memory independent of input size:
//! one reader thread cuts the input into ~4 MiB chunks of whole lines;
//! `threads` parser threads turn chunks into Arrow record batches per split
//! (and keep per-column sketches); the calling thread puts parsed chunks back
//! in input order and hands them to one writer thread per split. Channels are
//! bounded, so at most a few chunks are in flight.
//!
//! Row `r` (0-based, counting every line after the header) goes to a split
//! decided only by (seed, r) for `--split random`, so the result does not
//! depend on the number of threads.
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{
    ArrayRef, Float64Builder, Int64Builder, Int8Builder, StringBuilder, TimestampMillisecondBuilder,
};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use crossbeam_channel::{bounded, Receiver, Sender};

use super::interrupt;
use super::io::{input_error, open_input_kind};
use super::manifest::{
    now_rfc3339, ratio, split_info, BadLines, DatasetManifest, SourceInfo, FORMAT_VERSION,
};
use super::parse::{parse_value, split_fields, Value};
use super::schema::{ColumnKind, DatasetSchema};
use super::sketch::{hash_bytes, hash_i64, ColumnSketch, ColumnSummary};
use super::split::{check_ratios, SplitMode, SplitRule};
use super::writer::{commit, DatasetWriter, Split, WriterOptions};
use crate::error::{Error, Location, Result};
use crate::progress::Progress;

#[derive(Debug, Clone)]
pub struct ConvertOptions {
    pub inputs: Vec<PathBuf>,
    pub out: PathBuf,
    pub schema: DatasetSchema,
    pub split: SplitMode,
    pub seed: u64,
    pub ratios: [f64; 3],
    pub writer: WriterOptions,
    pub skip_bad_lines: bool,
    pub max_bad_ratio: f64,
    pub overwrite: bool,
    pub progress: bool,
    pub threads: usize,
    pub chunk_bytes: usize,
    /// The longest line accepted, in bytes (without its newline): a longer one
    /// is an error naming its line, found while reading, so memory stays
    /// bounded whatever the input (`--max-line-bytes`).
    pub max_line_bytes: usize,
    /// Accept inputs without rows (an empty file, a header alone) and a
    /// dataset of 0 rows, which are errors otherwise (`--allow-empty`).
    pub allow_empty: bool,
}

/// The default `--max-line-bytes`: 1 MiB, thousands of times a Criteo or
/// Avazu line (a few hundred bytes).
pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;

impl ConvertOptions {
    pub fn new(inputs: Vec<PathBuf>, out: PathBuf, schema: DatasetSchema) -> Self {
        ConvertOptions {
            inputs,
            out,
            schema,
            split: SplitMode::Random,
            seed: 2018,
            ratios: [0.8, 0.1, 0.1],
            writer: WriterOptions::default(),
            skip_bad_lines: false,
            max_bad_ratio: 0.001,
            overwrite: false,
            progress: false,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            chunk_bytes: 4 << 20,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            allow_empty: false,
        }
    }
}

/// Which schema column each input field position holds, for one file.
struct FileCtx {
    path: PathBuf,
    positions: Vec<usize>,
}

struct Chunk {
    seq: u64,
    file: Arc<FileCtx>,
    first_line: u64,
    first_row: u64,
    data: Vec<u8>,
}

type ChunkItem = std::result::Result<Chunk, (u64, Error)>;
type ParsedItem = (u64, Result<Parsed>);

struct Parsed {
    batches: Vec<(Split, RecordBatch)>,
    rows: [u64; 3],
    positives: [u64; 3],
    bad: u64,
    bad_examples: Vec<String>,
}

/// The result of a conversion.
#[derive(Debug)]
pub struct ConvertReport {
    pub manifest: DatasetManifest,
    pub seconds: f64,
    pub input_bytes: u64,
}

/// Convert `opts.inputs` into a dataset at `opts.out`.
pub fn convert(opts: &ConvertOptions) -> Result<ConvertReport> {
    let started = Instant::now();
    if opts.inputs.is_empty() {
        return Err(Error::Invalid("no input files given".into()));
    }
    if opts.max_line_bytes == 0 {
        return Err(Error::Invalid("--max-line-bytes must be positive".into()));
    }
    // SIGINT/SIGTERM from here on: stop, remove what was written, fail.
    let _signals = interrupt::catch_signals();
    let ratios = check_ratios(opts.ratios)?;
    let mut sources = Vec::new();
    for p in &opts.inputs {
        let meta = std::fs::metadata(p).map_err(|e| Error::io(p, e))?;
        if !meta.is_file() {
            return Err(Error::Invalid(format!("{}: not a file", p.display())));
        }
        sources.push(SourceInfo {
            path: p.display().to_string(),
            bytes: meta.len(),
        });
    }
    let total_bytes: u64 = sources.iter().map(|s| s.bytes).sum();
    let schema = Arc::new(opts.schema.clone());
    let rule = resolve_split(opts, &schema, ratios)?;

    let arrow_schema: SchemaRef = Arc::new(schema.arrow_schema());
    let mut writer =
        DatasetWriter::create(&opts.out, arrow_schema.clone(), opts.writer, opts.overwrite)?;

    let read_bytes = Arc::new(AtomicU64::new(0));
    let progress = Progress::bytes(opts.progress, total_bytes, "convert");
    let threads = opts.threads.max(1);
    let (chunk_tx, chunk_rx) = bounded::<ChunkItem>(threads * 2);
    let (parsed_tx, parsed_rx) = bounded::<ParsedItem>(threads * 2);

    let reader = {
        let read = ReadOptions {
            inputs: opts.inputs.clone(),
            schema: schema.clone(),
            counter: read_bytes.clone(),
            chunk_bytes: opts.chunk_bytes.max(1024),
            max_line_bytes: opts.max_line_bytes,
            allow_empty: opts.allow_empty,
        };
        std::thread::Builder::new()
            .name("convert-read".into())
            .spawn(move || read_chunks(&read, &chunk_tx))
            .map_err(|e| Error::io(&opts.out, e))?
    };
    let mut workers = Vec::new();
    for i in 0..threads {
        let rx = chunk_rx.clone();
        let tx = parsed_tx.clone();
        let mut parser = ChunkParser::new(
            schema.clone(),
            arrow_schema.clone(),
            rule,
            opts.skip_bad_lines,
        );
        workers.push(
            std::thread::Builder::new()
                .name(format!("convert-parse-{i}"))
                .spawn(move || {
                    for chunk in rx {
                        let out = match chunk {
                            Ok(c) => (c.seq, parser.parse(c)),
                            Err((seq, e)) => (seq, Err(e)),
                        };
                        let failed = out.1.is_err();
                        if tx.send(out).is_err() || failed {
                            break;
                        }
                    }
                    parser.sketches
                })
                .map_err(|e| Error::io(&opts.out, e))?,
        );
    }
    drop(chunk_rx);
    drop(parsed_tx);

    let result = collect(&parsed_rx, &mut writer, &progress, &read_bytes);
    drop(parsed_rx); // unblocks workers and the reader if we stopped early
    let mut sketches: Vec<ColumnSketch> =
        vec![ColumnSketch::default(); arrow_schema.fields().len()];
    for w in workers {
        if let Ok(s) = w.join() {
            for (a, b) in sketches.iter_mut().zip(s.iter()) {
                a.merge(b);
            }
        }
    }
    let _ = reader.join();
    let totals = match result {
        Ok(t) => t,
        Err(e) => {
            writer.abort();
            progress.finish_and_clear();
            return Err(e);
        }
    };
    let rows: u64 = totals.rows.iter().sum();
    let lines = rows + totals.bad.count;
    if rows == 0 && !opts.allow_empty && totals.bad.count > 0 {
        writer.abort();
        progress.finish_and_clear();
        return Err(Error::Invalid(format!(
            "no rows in {}: all {} lines were bad; first: {} \
             (pass --allow-empty to accept a dataset of 0 rows)",
            input_list(&opts.inputs),
            totals.bad.count,
            totals.bad.examples.first().cloned().unwrap_or_default(),
        )));
    }
    if totals.bad.count > 0 && ratio(totals.bad.count, lines) > opts.max_bad_ratio {
        writer.abort();
        progress.finish_and_clear();
        return Err(Error::TooManyBadLines {
            bad: totals.bad.count,
            total: lines,
            ratio: 100.0 * ratio(totals.bad.count, lines),
            max: 100.0 * opts.max_bad_ratio,
            first: totals.bad.examples.first().cloned().unwrap_or_default(),
        });
    }
    let shards = writer.finish()?;
    progress.finish_and_clear();
    let [train, valid, test] = shards;
    let columns = summarize_columns(&schema, &sketches, rows);
    let positives: u64 = totals.positives.iter().sum();
    let manifest = DatasetManifest {
        format_version: FORMAT_VERSION,
        name: schema.name.clone(),
        created: now_rfc3339(),
        ctr_dl_version: env!("CARGO_PKG_VERSION").into(),
        label: schema.label().to_string(),
        schema: (*schema).clone(),
        sources,
        split: rule.describe(
            opts.seed,
            ratios,
            schema.time_column().map(|c| c.name.as_str()),
        ),
        train: split_info(totals.rows[0], totals.positives[0], train),
        valid: split_info(totals.rows[1], totals.positives[1], valid),
        test: split_info(totals.rows[2], totals.positives[2], test),
        rows,
        positives,
        positive_rate: ratio(positives, rows),
        columns,
        bad_lines: totals.bad,
        simulation: None,
    };
    commit(&opts.out, &manifest)?;
    Ok(ConvertReport {
        manifest,
        seconds: started.elapsed().as_secs_f64(),
        input_bytes: total_bytes,
    })
}

/// Column summaries (missing rate, distinct count) from merged sketches.
pub fn summarize_columns(
    schema: &DatasetSchema,
    sketches: &[ColumnSketch],
    rows: u64,
) -> Vec<ColumnSummary> {
    schema
        .kept()
        .zip(sketches)
        .map(|(c, s)| {
            let (distinct, exact) = s.distinct.estimate();
            ColumnSummary {
                name: c.name.clone(),
                kind: c.kind,
                missing: s.missing,
                missing_rate: ratio(s.missing, rows),
                distinct,
                distinct_exact: exact,
            }
        })
        .collect()
}

struct Totals {
    rows: [u64; 3],
    positives: [u64; 3],
    bad: BadLines,
}

/// Receive parsed chunks, restore input order, write them. An error is
/// reported once every chunk before it is written, so the error a user sees is
/// the first in the input whatever the number of threads.
fn collect(
    rx: &Receiver<ParsedItem>,
    writer: &mut DatasetWriter,
    progress: &Progress,
    read_bytes: &AtomicU64,
) -> Result<Totals> {
    let mut totals = Totals {
        rows: [0; 3],
        positives: [0; 3],
        bad: BadLines::default(),
    };
    let mut pending: BTreeMap<u64, Result<Parsed>> = BTreeMap::new();
    let mut next = 0u64;
    for (seq, item) in rx {
        interrupt::check()?;
        pending.insert(seq, item);
        while let Some(item) = pending.remove(&next) {
            let p = item?;
            for (i, r) in p.rows.iter().enumerate() {
                totals.rows[i] += r;
                totals.positives[i] += p.positives[i];
            }
            totals.bad.count += p.bad;
            for ex in p.bad_examples {
                if totals.bad.examples.len() < 10 {
                    totals.bad.examples.push(ex);
                }
            }
            for (split, batch) in p.batches {
                writer.write(split, batch)?;
            }
            progress.set(read_bytes.load(Ordering::Relaxed), totals.rows.iter().sum());
            next += 1;
        }
    }
    // Channel closed: anything left is an error that came after a gap.
    if let Some((_, item)) = pending.into_iter().next() {
        item?;
    }
    Ok(totals)
}

/// What the reader thread reads, and its limits.
struct ReadOptions {
    inputs: Vec<PathBuf>,
    schema: Arc<DatasetSchema>,
    counter: Arc<AtomicU64>,
    chunk_bytes: usize,
    max_line_bytes: usize,
    allow_empty: bool,
}

/// Read all inputs and cut them into chunks of whole lines.
fn read_chunks(opts: &ReadOptions, tx: &Sender<ChunkItem>) {
    let mut seq = 0u64;
    if let Err(e) = read_chunks_inner(opts, tx, &mut seq) {
        let _ = tx.send(Err((seq, e)));
    }
}

/// The error of a line longer than `--max-line-bytes`.
fn line_too_long(path: &Path, line: u64, max: usize) -> Error {
    Error::BadLine(
        Location {
            file: path.to_path_buf(),
            line,
            field: None,
        },
        format!("a line of over {max} bytes (--max-line-bytes)"),
    )
}

/// Inputs for a message: one path, or the first and how many more.
fn input_list(inputs: &[PathBuf]) -> String {
    match inputs {
        [one] => one.display().to_string(),
        [first, rest @ ..] => format!("{} (and {} more inputs)", first.display(), rest.len()),
        [] => "no input".into(),
    }
}

fn read_chunks_inner(opts: &ReadOptions, tx: &Sender<ChunkItem>, seq: &mut u64) -> Result<()> {
    let schema = &opts.schema;
    let (chunk_bytes, max_line) = (opts.chunk_bytes, opts.max_line_bytes);
    let mut row = 0u64;
    for path in &opts.inputs {
        let (mut input, gzip) = open_input_kind(path, opts.counter.clone())?;
        let mut buf: Vec<u8> = Vec::with_capacity(chunk_bytes + 4096);
        // `buf` always starts at the start of line `line`.
        let mut line = 1u64;
        // Bytes read (decompressed), and whether any line after the header
        // holds more than white space.
        let mut decoded = 0u64;
        let mut has_rows = false;
        let mut file: Option<Arc<FileCtx>> = None;
        if !schema.header {
            file = Some(Arc::new(FileCtx {
                path: path.clone(),
                positions: (0..schema.columns.len()).collect(),
            }));
        }
        loop {
            interrupt::check()?;
            let old = buf.len();
            buf.resize(old + chunk_bytes, 0);
            let (n, err) = super::io::fill(&mut input, &mut buf[old..]);
            buf.truncate(old + n);
            decoded += n as u64;
            if let Some(e) = err {
                let done = line - 1 + memchr::memchr_iter(b'\n', &buf).count() as u64;
                return Err(input_error(path, gzip, e, done, decoded));
            }
            let eof = n < chunk_bytes;
            if file.is_none() {
                let Some(nl) =
                    memchr::memchr(b'\n', &buf).or(if eof { Some(buf.len()) } else { None })
                else {
                    if buf.len() > max_line {
                        return Err(line_too_long(path, 1, max_line));
                    }
                    continue;
                };
                if nl > max_line {
                    return Err(line_too_long(path, 1, max_line));
                }
                if buf.is_empty() {
                    break; // an empty file: no header, no rows (checked below)
                }
                let header = &buf[..nl];
                if header.iter().all(|b| b.is_ascii_whitespace()) {
                    return Err(Error::BadLine(
                        Location { file: path.clone(), line: 1, field: None },
                        "the schema expects a header line, but the file starts with an empty line or is empty".into(),
                    ));
                }
                let positions = header_positions(header, schema, path)?;
                file = Some(Arc::new(FileCtx {
                    path: path.clone(),
                    positions,
                }));
                buf.drain(..(nl + 1).min(buf.len()));
                line += 1;
            }
            let cut = if eof {
                buf.len()
            } else {
                match memchr::memrchr(b'\n', &buf) {
                    Some(p) => p + 1,
                    None if buf.len() > max_line => {
                        return Err(line_too_long(path, line, max_line));
                    }
                    None => continue, // a line longer than a chunk: read more
                }
            };
            if cut > 0 {
                let rest = buf.split_off(cut);
                let mut data = std::mem::replace(&mut buf, rest);
                // Count the lines, and stop at the first one too long: the
                // lines before it still go (their errors come first).
                let mut lines = 0u64;
                let mut start = 0usize;
                let mut too_long = None;
                for p in memchr::memchr_iter(b'\n', &data) {
                    if p - start > max_line {
                        too_long = Some(start);
                        break;
                    }
                    lines += 1;
                    start = p + 1;
                }
                if too_long.is_none() && start < data.len() {
                    if data.len() - start > max_line {
                        too_long = Some(start);
                    } else {
                        lines += 1;
                    }
                }
                if let Some(at) = too_long {
                    data.truncate(at);
                }
                if !has_rows {
                    has_rows = data.iter().any(|b| !b.is_ascii_whitespace());
                }
                if !data.is_empty() {
                    let chunk = Chunk {
                        seq: *seq,
                        file: file.clone().expect("set above"),
                        first_line: line,
                        first_row: row,
                        data,
                    };
                    if tx.send(Ok(chunk)).is_err() {
                        return Ok(()); // the consumer stopped (an error downstream)
                    }
                    *seq += 1;
                }
                line += lines;
                row += lines;
                if too_long.is_some() {
                    return Err(line_too_long(path, line, max_line));
                }
            }
            if eof {
                break;
            }
        }
        if !has_rows && !opts.allow_empty {
            let what = if decoded == 0 {
                "the file is empty"
            } else if schema.header && line <= 2 {
                "the file holds only its header"
            } else {
                "the file holds only blank lines"
            };
            return Err(Error::Invalid(format!(
                "no rows in {}: {what} (pass --allow-empty to accept an input without rows)",
                path.display()
            )));
        }
    }
    Ok(())
}

/// The built-in formats whose delimiter splits `line` into as many fields as
/// they have columns, as advice for a file given the wrong `--format`.
fn fitting_formats(line: &[u8]) -> String {
    let mut fields = Vec::new();
    let fits: Vec<String> = crate::data::schema::BUILTIN
        .iter()
        .filter_map(|(name, _)| {
            let s = DatasetSchema::builtin(name).ok()?;
            split_fields(line, s.delimiter, &mut fields).ok()?;
            (fields.len() == s.columns.len()).then(|| format!("--format {name}"))
        })
        .collect();
    match fits.is_empty() {
        true => "no built-in format fits: describe it with --format csv --schema FILE".into(),
        false => format!("it fits {}", fits.join(" or ")),
    }
}

/// `s` cut to `max` characters, with `...` when cut.
fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

/// Match a header line's names to the schema's columns.
fn header_positions(header: &[u8], schema: &DatasetSchema, path: &Path) -> Result<Vec<usize>> {
    let header = header.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(header);
    let header = header.strip_suffix(b"\r").unwrap_or(header);
    let mut fields = Vec::new();
    let at = |field: Option<String>, msg: String| {
        Error::BadLine(
            Location {
                file: path.to_path_buf(),
                line: 1,
                field,
            },
            msg,
        )
    };
    split_fields(header, schema.delimiter, &mut fields)
        .map_err(|m| at(None, format!("header: {m}")))?;
    if fields.len() != schema.columns.len() {
        return Err(at(
            None,
            format!(
                "the header has {} field(s) split on {:?}, schema `{}` has {} columns: \
                 not this format's layout; {}",
                fields.len(),
                schema.delimiter as char,
                schema.name,
                schema.columns.len(),
                fitting_formats(header)
            ),
        ));
    }
    let mut positions = Vec::with_capacity(fields.len());
    let mut seen = vec![false; schema.columns.len()];
    for f in &fields {
        let name = String::from_utf8_lossy(f).trim().to_string();
        let idx = schema
            .columns
            .iter()
            .position(|c| c.name == name)
            .ok_or_else(|| {
                at(
                    Some(clip(&name, 40)),
                    format!(
                        "not a column of schema `{}` (declare it, with type = \"skip\" to drop it)",
                        schema.name
                    ),
                )
            })?;
        if seen[idx] {
            return Err(at(Some(name), "header names this column twice".into()));
        }
        seen[idx] = true;
        positions.push(idx);
    }
    if let Some(missing) = schema.columns.iter().zip(&seen).find(|(_, s)| !**s) {
        return Err(at(
            Some(missing.0.name.clone()),
            format!("schema column `{}` is not in the header", missing.0.name),
        ));
    }
    Ok(positions)
}

/// Appends typed values to Arrow builders.
enum ColBuilder {
    Label(Int8Builder),
    Int(Int64Builder),
    Float(Float64Builder),
    Time(TimestampMillisecondBuilder),
    Str(StringBuilder),
}

impl ColBuilder {
    fn new(kind: ColumnKind, cap: usize) -> Self {
        match kind {
            ColumnKind::Label => ColBuilder::Label(Int8Builder::with_capacity(cap)),
            ColumnKind::Integer => ColBuilder::Int(Int64Builder::with_capacity(cap)),
            ColumnKind::Float | ColumnKind::Truth => {
                ColBuilder::Float(Float64Builder::with_capacity(cap))
            }
            ColumnKind::Timestamp => ColBuilder::Time(
                TimestampMillisecondBuilder::with_capacity(cap).with_timezone("UTC"),
            ),
            ColumnKind::Categorical | ColumnKind::Skip => {
                ColBuilder::Str(StringBuilder::with_capacity(cap, cap * 8))
            }
        }
    }

    #[inline]
    fn append(&mut self, v: &Value) {
        match (self, v) {
            (ColBuilder::Label(b), Value::Label(x)) => b.append_value(*x),
            (ColBuilder::Int(b), Value::Int(x)) => b.append_value(*x),
            (ColBuilder::Float(b), Value::Float(x)) => b.append_value(*x),
            (ColBuilder::Time(b), Value::Time(x)) => b.append_value(x.saturating_mul(1000)),
            (ColBuilder::Str(b), Value::Str(x)) => b.append_value(x),
            (ColBuilder::Label(b), _) => b.append_value(0),
            (ColBuilder::Int(b), _) => b.append_null(),
            (ColBuilder::Float(b), _) => b.append_null(),
            (ColBuilder::Time(b), _) => b.append_null(),
            (ColBuilder::Str(b), _) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            ColBuilder::Label(b) => Arc::new(b.finish()),
            ColBuilder::Int(b) => Arc::new(b.finish()),
            ColBuilder::Float(b) => Arc::new(b.finish()),
            ColBuilder::Time(b) => Arc::new(b.finish()),
            ColBuilder::Str(b) => Arc::new(b.finish()),
        }
    }
}

/// Parses chunks on one thread; owns the column sketches of what it parsed.
struct ChunkParser {
    schema: Arc<DatasetSchema>,
    arrow_schema: SchemaRef,
    rule: SplitRule,
    skip_bad: bool,
    /// Schema column index to kept (output) column index.
    kept_index: Vec<Option<usize>>,
    label_col: usize,
    sketches: Vec<ColumnSketch>,
}

impl ChunkParser {
    fn new(
        schema: Arc<DatasetSchema>,
        arrow_schema: SchemaRef,
        rule: SplitRule,
        skip_bad: bool,
    ) -> Self {
        let mut k = 0;
        let kept_index = schema
            .columns
            .iter()
            .map(|c| {
                (c.kind != ColumnKind::Skip).then(|| {
                    k += 1;
                    k - 1
                })
            })
            .collect();
        let label_col = schema
            .columns
            .iter()
            .position(|c| c.kind == ColumnKind::Label)
            .unwrap_or(0);
        let n = arrow_schema.fields().len();
        ChunkParser {
            schema,
            arrow_schema,
            rule,
            skip_bad,
            kept_index,
            label_col,
            sketches: vec![ColumnSketch::default(); n],
        }
    }

    fn parse(&mut self, chunk: Chunk) -> Result<Parsed> {
        let schema = self.schema.clone();
        let cols = &schema.columns;
        let est = chunk.data.len() / 200 + 16;
        let mut builders: Vec<Vec<ColBuilder>> = [0.8, 0.1, 0.1]
            .iter()
            .map(|f| {
                schema
                    .kept()
                    .map(|c| ColBuilder::new(c.kind, (est as f64 * f) as usize + 8))
                    .collect()
            })
            .collect();
        let mut out = Parsed {
            batches: Vec::new(),
            rows: [0; 3],
            positives: [0; 3],
            bad: 0,
            bad_examples: Vec::new(),
        };
        let mut fields = Vec::with_capacity(cols.len() + 1);
        let mut values: Vec<Value> = vec![Value::Missing; cols.len()];
        let expected = chunk.file.positions.len();
        let data = &chunk.data[..];
        let mut start = 0usize;
        let mut offset = 0u64;
        while start < data.len() {
            let end = memchr::memchr(b'\n', &data[start..]).map_or(data.len(), |p| start + p);
            let mut line = &data[start..end];
            start = end + 1;
            let row = chunk.first_row + offset;
            let line_no = chunk.first_line + offset;
            offset += 1;
            if let Some(l) = line.strip_suffix(b"\r") {
                line = l;
            }
            if line.is_empty() {
                continue;
            }
            let parsed = self.parse_line(line, &chunk.file, expected, &mut fields, &mut values);
            if let Err((field, msg)) = parsed {
                let err = Error::BadLine(
                    Location {
                        file: chunk.file.path.clone(),
                        line: line_no,
                        field,
                    },
                    msg,
                );
                if !self.skip_bad {
                    return Err(err);
                }
                out.bad += 1;
                if out.bad_examples.len() < 10 {
                    out.bad_examples.push(err.to_string());
                }
                continue;
            }
            let time = match self.rule {
                SplitRule::ByTime { column, .. } => match values[column] {
                    Value::Time(t) => Some(t),
                    _ => None,
                },
                _ => None,
            };
            let split = self.rule.assign(row, time);
            let s = split.index();
            out.rows[s] += 1;
            if values[self.label_col] == Value::Label(1) {
                out.positives[s] += 1;
            }
            for (ci, v) in values.iter().enumerate() {
                if let Some(k) = self.kept_index[ci] {
                    builders[s][k].append(v);
                    let sk = &mut self.sketches[k];
                    match v {
                        Value::Missing => sk.missing += 1,
                        Value::Label(x) => sk.distinct.insert(hash_i64(*x as i64)),
                        Value::Int(x) | Value::Time(x) => sk.distinct.insert(hash_i64(*x)),
                        Value::Float(x) => sk.distinct.insert(hash_i64(x.to_bits() as i64)),
                        Value::Str(x) => sk.distinct.insert(hash_bytes(x.as_bytes())),
                    }
                }
            }
        }
        for split in Split::ALL {
            let s = split.index();
            if out.rows[s] == 0 {
                continue;
            }
            let arrays: Vec<ArrayRef> = builders[s].iter_mut().map(ColBuilder::finish).collect();
            let batch = RecordBatch::try_new(self.arrow_schema.clone(), arrays)
                .map_err(|e| Error::arrow(&chunk.file.path, e))?;
            out.batches.push((split, batch));
        }
        Ok(out)
    }

    /// Parse one line into `values`; on failure the field (if any) and why.
    fn parse_line<'a>(
        &self,
        line: &'a [u8],
        file: &FileCtx,
        expected: usize,
        fields: &mut Vec<std::borrow::Cow<'a, [u8]>>,
        values: &mut [Value<'a>],
    ) -> std::result::Result<(), (Option<String>, String)> {
        split_fields(line, self.schema.delimiter, fields).map_err(|m| (None, m))?;
        let n = fields.len();
        if n > expected || (n < expected && !self.schema.ragged) {
            return Err((None, format!("has {n} fields, expected {expected}")));
        }
        for v in values.iter_mut() {
            *v = Value::Missing;
        }
        let cols = &self.schema.columns;
        for (pos, raw) in fields.drain(..).enumerate() {
            let ci = file.positions[pos];
            let c = &cols[ci];
            if c.kind == ColumnKind::Skip {
                continue;
            }
            values[ci] =
                parse_value(raw, c.kind, c.format).map_err(|m| (Some(c.name.clone()), m))?;
        }
        if values[self.label_col] == Value::Missing {
            return Err((
                Some(cols[self.label_col].name.clone()),
                format!("has {n} fields: the label is absent"),
            ));
        }
        Ok(())
    }
}

/// Decide the split rule; `--split time` reads the input once first.
fn resolve_split(
    opts: &ConvertOptions,
    schema: &DatasetSchema,
    ratios: [f64; 3],
) -> Result<SplitRule> {
    match opts.split {
        SplitMode::Random => Ok(SplitRule::random(opts.seed, ratios)),
        SplitMode::Time => match schema
            .columns
            .iter()
            .position(|c| c.kind == ColumnKind::Timestamp)
        {
            Some(ci) => {
                let (valid_from, test_from) = time_cutoffs(opts, schema, ci, ratios)?;
                Ok(SplitRule::ByTime {
                    column: ci,
                    valid_from,
                    test_from,
                })
            }
            None => Ok(SplitRule::by_row(count_rows(opts, schema)?, ratios)),
        },
    }
}

/// Lines after the header in all inputs, counted as `read_chunks` counts rows.
fn count_rows(opts: &ConvertOptions, schema: &DatasetSchema) -> Result<u64> {
    let mut total = 0u64;
    for path in &opts.inputs {
        let (mut r, gzip) = open_input_kind(path, Arc::new(AtomicU64::new(0)))?;
        let mut buf = vec![0u8; 1 << 20];
        let (mut lines, mut last, mut offset) = (0u64, b'\n', 0u64);
        loop {
            interrupt::check()?;
            let n = match r.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(input_error(path, gzip, e, lines, offset)),
            };
            if n == 0 {
                break;
            }
            offset += n as u64;
            lines += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
            last = buf[n - 1];
        }
        if last != b'\n' {
            lines += 1;
        }
        total += lines.saturating_sub(schema.header as u64);
    }
    Ok(total)
}

/// Read one line (with its newline, if any) into `line`, reading at most
/// `max + 1` bytes: `Ok(false)` at end of input, an error naming line
/// `line_no` if it is longer than `max` bytes.
fn read_line_bounded(
    r: &mut impl BufRead,
    line: &mut Vec<u8>,
    max: usize,
    path: &Path,
    line_no: u64,
) -> std::io::Result<std::result::Result<bool, Error>> {
    line.clear();
    let n = r.by_ref().take(max as u64 + 1).read_until(b'\n', line)?;
    if n == 0 {
        return Ok(Ok(false));
    }
    let content = line.len() - usize::from(line.last() == Some(&b'\n'));
    if content > max {
        return Ok(Err(line_too_long(path, line_no, max)));
    }
    Ok(Ok(true))
}

/// Minute-resolution cut points of the time column at the split ratios.
fn time_cutoffs(
    opts: &ConvertOptions,
    schema: &DatasetSchema,
    ci: usize,
    ratios: [f64; 3],
) -> Result<(i64, i64)> {
    let col = &schema.columns[ci];
    let mut minutes: HashMap<i64, u64> = HashMap::new();
    for path in &opts.inputs {
        let (input, gzip) = open_input_kind(path, Arc::new(AtomicU64::new(0)))?;
        let mut r = BufReader::new(input);
        let mut pos = Some(ci);
        let mut buf = Vec::new();
        let (mut i, mut offset) = (0u64, 0u64);
        loop {
            if i % 65_536 == 0 {
                interrupt::check()?;
            }
            match read_line_bounded(&mut r, &mut buf, opts.max_line_bytes, path, i + 1) {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) => break,
                Ok(Err(too_long)) => return Err(too_long),
                Err(e) => return Err(input_error(path, gzip, e, i, offset)),
            }
            i += 1;
            offset += buf.len() as u64;
            let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
            if i == 1 && schema.header {
                let positions = header_positions(line, schema, path)?;
                pos = positions.iter().position(|&p| p == ci);
                continue;
            }
            let Some(p) = pos else { break };
            let mut fields = Vec::new();
            if split_fields(line, schema.delimiter, &mut fields).is_err() {
                continue;
            }
            if let Some(raw) = fields.get(p) {
                if let Ok(Value::Time(t)) = parse_value(raw.clone(), col.kind, col.format) {
                    *minutes.entry(t.div_euclid(60)).or_default() += 1;
                }
            }
        }
    }
    let mut sorted: Vec<(i64, u64)> = minutes.into_iter().collect();
    sorted.sort_unstable();
    let total: u64 = sorted.iter().map(|x| x.1).sum();
    if total == 0 {
        return Err(Error::Invalid(format!(
            "--split time: no row has a readable `{}`",
            col.name
        )));
    }
    let cut = |frac: f64| -> i64 {
        let target = (total as f64 * frac).round() as u64;
        let mut acc = 0u64;
        for &(m, c) in &sorted {
            if acc >= target {
                return m * 60;
            }
            acc += c;
        }
        (sorted.last().map_or(0, |x| x.0) + 1) * 60
    };
    Ok((cut(ratios[0]), cut(ratios[0] + ratios[1])))
}
