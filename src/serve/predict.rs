//! `ctr-dl predict`: score a dataset offline with a bundle (or a run, which
//! is exported to a temporary bundle first), through the same loading,
//! encoder, model, calibrator and history counters as `serve`, so a row gets
//! the probability the server would answer for it.
//!
//! The input is streamed: batches of the dataset's shards are read on a
//! background thread, encoded, scored and written as they come, so memory
//! does not grow with the input. The output is one Parquet file, the kept
//! input columns then `probability`, in input order; it is written to a
//! temporary name and renamed when complete.
//!
//! History inputs are read from the bundle's counters as they were at the end
//! of its training data, at each row's time, and nothing is added to them: a
//! server without `/feedback` answers the same. Those counters already hold
//! every row of the data the model was made from, clicks included, so a row
//! at or before their latest impression would read its own outcome and what
//! followed it: `predict` refuses such rows (score them with `ctr-dl eval`,
//! which replays the counters in time order).
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, Float64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use tch::Device;

use super::bundle::Bundle;
use super::export::{export, ExportOptions};
use crate::data::convert::{convert, ConvertOptions};
use crate::data::io::temp_path;
use crate::data::manifest::{is_dataset, DatasetManifest};
use crate::data::reader::{ReaderOptions, ShardReader};
use crate::data::schema::DatasetSchema;
use crate::data::writer::Split;
use crate::error::{Error, Result};

/// What to score and where to write it.
#[derive(Debug, Clone)]
pub struct PredictOptions {
    /// A bundle folder (`models/<name>/<version>`) ...
    pub bundle: Option<PathBuf>,
    /// ... or a run folder, exported to a temporary bundle first.
    pub run: Option<PathBuf>,
    /// A dataset folder (`dataset.json`), a Parquet shard, a folder of
    /// shards, or a raw CSV/TSV file (plain or gzip) read by `schema`.
    pub input: PathBuf,
    /// The schema of a raw input file (a built-in format's or a file's).
    pub schema: Option<DatasetSchema>,
    /// Of a dataset folder, these splits (all, in train, valid, test order,
    /// when empty).
    pub splits: Vec<Split>,
    /// The Parquet file written.
    pub out: PathBuf,
    /// Input columns copied into the output, before `probability`.
    pub keep: Vec<String>,
    pub device: Device,
    pub batch_size: usize,
    pub overwrite: bool,
    pub progress: bool,
}

/// What `predict` did.
#[derive(Debug, Clone)]
pub struct PredictReport {
    pub rows: u64,
    pub out: PathBuf,
    /// The bundle scored with (a temporary one, removed, for a run).
    pub model: String,
    pub seconds: f64,
}

/// Score `opts.input` into `opts.out`.
pub fn predict(opts: &PredictOptions) -> Result<PredictReport> {
    if opts.out.exists() && !opts.overwrite {
        return Err(Error::Invalid(format!(
            "{} exists; pass --overwrite to replace it",
            opts.out.display()
        )));
    }
    // A raw file is converted first, by its schema, into shards of one
    // split in its own order, beside the output, and removed at the end.
    let raw = !opts.input.is_dir() && opts.input.extension().is_none_or(|x| x != "parquet");
    let converted = temp_path(&opts.out.with_extension("input"));
    let files = if raw {
        let schema = opts.schema.clone().ok_or_else(|| {
            Error::Invalid(format!(
                "--input {}: a raw file is read by its schema: give --format or --schema",
                opts.input.display()
            ))
        })?;
        let mut c = ConvertOptions::new(vec![opts.input.clone()], converted.clone(), schema);
        c.ratios = [1.0, 0.0, 0.0];
        c.overwrite = true;
        c.progress = opts.progress;
        let files = convert(&c).and_then(|_| input_files(&converted, &[Split::Train]));
        if files.is_err() {
            let _ = std::fs::remove_dir_all(&converted);
        }
        files?
    } else {
        input_files(&opts.input, &opts.splits)?
    };
    let result = predict_files(opts, files);
    if raw {
        let _ = std::fs::remove_dir_all(&converted);
    }
    result
}

fn predict_files(opts: &PredictOptions, files: Vec<PathBuf>) -> Result<PredictReport> {
    match (&opts.bundle, &opts.run) {
        (Some(b), None) => score(opts, b, files),
        (None, Some(run)) => {
            // A temporary bundle beside the output, removed once scored.
            let tmp = temp_path(&opts.out.with_extension("bundle"));
            let _ = std::fs::remove_dir_all(&tmp);
            let exported = export(&ExportOptions {
                out: Some(tmp.clone()),
                overwrite: true,
                ..ExportOptions::new(run)
            });
            let result = exported.and_then(|_| score(opts, &tmp, files));
            let _ = std::fs::remove_dir_all(&tmp);
            result.map(|r| PredictReport {
                model: run.display().to_string(),
                ..r
            })
        }
        _ => Err(Error::Invalid(
            "predict takes one model: --bundle DIR or --run DIR".into(),
        )),
    }
}

/// A model with history inputs scores only rows after what its counters
/// hold: an earlier row would read its own click.
fn check_after(batch: &RecordBatch, time_column: &str, until: i64, before: u64) -> Result<()> {
    let times = crate::features::raw::view(batch, time_column)?;
    for r in 0..batch.num_rows() {
        if let crate::features::RawValue::TimeMs(t) = times.get(r) {
            if t <= until {
                let at = |ms: i64| {
                    chrono::DateTime::from_timestamp_millis(ms).map_or(ms.to_string(), |d| {
                        d.format("%Y-%m-%d %H:%M:%S").to_string()
                    })
                };
                return Err(Error::Invalid(format!(
                    "row {} is at {} ({time_column}), not after {}, the latest impression \
                     the model's history counters hold: they already count that row and \
                     what followed it, so its history inputs would leak its click. \
                     Score data that comes after the model's data, or evaluate its own \
                     splits with `ctr-dl eval`",
                    before + r as u64 + 1,
                    at(t),
                    at(until)
                )));
            }
        }
    }
    Ok(())
}

/// The shards to read: a dataset folder's (of `splits`), one shard, or a
/// folder of shards.
fn input_files(input: &Path, splits: &[Split]) -> Result<Vec<PathBuf>> {
    let shards_in = |dir: &Path| -> Result<Vec<PathBuf>> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| Error::io(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
            .collect();
        files.sort();
        Ok(files)
    };
    let files = if is_dataset(input) {
        let splits = if splits.is_empty() {
            Split::ALL.to_vec()
        } else {
            splits.to_vec()
        };
        let manifest = DatasetManifest::load(input)?;
        splits
            .into_iter()
            .flat_map(|s| manifest.shard_paths(input, s))
            .collect()
    } else if input.is_dir() {
        shards_in(input)?
    } else if input.is_file() {
        vec![input.to_path_buf()]
    } else {
        return Err(Error::Invalid(format!(
            "--input {}: no such file or folder",
            input.display()
        )));
    };
    if files.is_empty() {
        return Err(Error::Invalid(format!(
            "--input {}: no Parquet shards to score (a dataset folder written by \
             `ctr-dl convert` or `ctr-dl simulate`, a shard, or a folder of shards)",
            input.display()
        )));
    }
    Ok(files)
}

fn score(opts: &PredictOptions, bundle_dir: &Path, files: Vec<PathBuf>) -> Result<PredictReport> {
    let started = Instant::now();
    let bundle = Bundle::load(bundle_dir, opts.device)?;
    let counted_until = match &bundle.history {
        Some(h) => h.latest()?,
        None => None,
    };
    let mut reader = ShardReader::open(
        files,
        ReaderOptions {
            batch_size: opts.batch_size.max(1),
            ..Default::default()
        },
    )?;
    let in_schema = reader.schema();
    let mut fields = Vec::new();
    for k in &opts.keep {
        let f = in_schema.field_with_name(k).map_err(|_| {
            Error::Invalid(format!(
                "--keep {k}: the input has no such column (it has: {})",
                in_schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        if k == "probability" {
            return Err(Error::Invalid(
                "--keep probability: the output's own column has that name".into(),
            ));
        }
        fields.push(f.clone());
    }
    fields.push(Field::new("probability", DataType::Float64, false));
    let schema = Arc::new(Schema::new(fields));

    let bar = opts.progress.then(|| {
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(reader.total_rows()),
            indicatif::ProgressDrawTarget::stderr_with_hz(4),
        );
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("scoring [{bar:30}] {pos}/{len} rows eta {eta}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    });
    let tmp = temp_path(&opts.out);
    if let Some(parent) = opts.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let mut write = || -> Result<u64> {
        let file = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let mut writer = ArrowWriter::try_new(file, schema.clone(), None)
            .map_err(|e| Error::parquet(&tmp, e))?;
        let mut rows = 0u64;
        for batch in reader.by_ref() {
            let batch = batch?;
            let n = batch.num_rows();
            if let (Some(until), Some(h)) = (counted_until, &bundle.history) {
                check_after(&batch, &h.spec.time_column, until, rows)?;
            }
            let (ids, dense) = bundle.encode_batch(&batch)?;
            let p = bundle.forward(&ids, &dense, n)?;
            let mut columns: Vec<ArrayRef> = opts
                .keep
                .iter()
                .map(|k| batch.column_by_name(k).cloned())
                .collect::<Option<_>>()
                .ok_or_else(|| Error::Invalid("a kept column is missing from a shard".into()))?;
            columns.push(Arc::new(Float64Array::from_iter_values(
                p.into_iter().map(f64::from),
            )));
            let out =
                RecordBatch::try_new(schema.clone(), columns).map_err(|e| Error::arrow(&tmp, e))?;
            writer.write(&out).map_err(|e| Error::parquet(&tmp, e))?;
            rows += n as u64;
            if let Some(bar) = &bar {
                bar.set_position(rows);
            }
        }
        writer.close().map_err(|e| Error::parquet(&tmp, e))?;
        Ok(rows)
    };
    let rows = match write() {
        Ok(rows) => rows,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    std::fs::rename(&tmp, &opts.out).map_err(|e| Error::io(&opts.out, e))?;
    Ok(PredictReport {
        rows,
        out: opts.out.clone(),
        model: format!("{}/{}", bundle.name, bundle.version),
        seconds: started.elapsed().as_secs_f64(),
    })
}
