//! A small TensorBoard event-file writer, so training runs can be watched and
//! compared with `tensorboard --logdir runs/`. Every run writes its curves
//! and final metrics as scalars, its resolved configuration as text, and its
//! settings for the HPARAMS tab ([`crate::run::tensorboard_start`] and
//! [`crate::run::tensorboard_finish`]); histograms are there for callers that
//! want them.
//!
//! Format: one file `events.out.tfevents.<unix secs>.<hostname>.<pid>.<n>` per
//! writer, a sequence of TFRecords, each holding one serialized `Event`
//! protobuf:
//!
//! ```text
//! u64 LE  length of data
//! u32 LE  masked crc32c of the 8 length bytes
//! [u8]    data (the Event)
//! u32 LE  masked crc32c of data
//! ```
//!
//! where `masked(crc) = crc.rotate_right(15) + 0xa282ead8` (wrapping). The first
//! record is an `Event` whose `file_version` is `"brain.Event:2"`; every later
//! one carries a `Summary`.
//!
//! The protobuf messages below are hand-written `prost` derives of the subset
//! of TensorBoard's `.proto` files this writer needs
//! (`tensorboard/compat/proto/{event,summary,histogram,tensor,tensor_shape}.proto`,
//! `tensorboard/plugins/hparams/{api,plugin_data}.proto` and
//! `google/protobuf/struct.proto`); field numbers are those of the originals,
//! and fields not listed are simply never written.
//!
//! Hyperparameters are a session-start summary in the run, beside its metric
//! scalars, and a session-end summary when the run finishes; unlike
//! `torch.utils.tensorboard`'s `hparams()`, no run writes an experiment
//! summary. TensorBoard shows one experiment summary per log directory and
//! picks it arbitrarily among the runs that have one, so runs of different
//! model families (each with its own settings) would hide each other's
//! columns. Without any, its hparams plugin builds the experiment from every
//! run's session start (the union of the settings) and every run's scalar
//! tags (the metrics), which is what comparing runs needs.
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message;

/// The hand-written protobuf messages (field numbers as in TensorBoard's
/// `.proto` files).
pub mod proto {
    use std::collections::BTreeMap;

    /// `tensorboard.Event` (event.proto).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Event {
        #[prost(double, tag = "1")]
        pub wall_time: f64,
        #[prost(int64, tag = "2")]
        pub step: i64,
        #[prost(oneof = "event::What", tags = "3, 5")]
        pub what: Option<event::What>,
    }

    pub mod event {
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum What {
            #[prost(string, tag = "3")]
            FileVersion(String),
            #[prost(message, tag = "5")]
            Summary(super::Summary),
        }
    }

    /// `tensorboard.Summary` (summary.proto).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Summary {
        #[prost(message, repeated, tag = "1")]
        pub value: Vec<summary::Value>,
    }

    pub mod summary {
        /// `Summary.Value`.
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct Value {
            #[prost(string, tag = "1")]
            pub tag: String,
            #[prost(message, optional, tag = "9")]
            pub metadata: Option<super::SummaryMetadata>,
            #[prost(oneof = "value::Value", tags = "2, 5, 8")]
            pub value: Option<value::Value>,
        }

        pub mod value {
            #[derive(Clone, PartialEq, prost::Oneof)]
            pub enum Value {
                #[prost(float, tag = "2")]
                SimpleValue(f32),
                #[prost(message, tag = "5")]
                Histo(super::super::HistogramProto),
                #[prost(message, tag = "8")]
                Tensor(super::super::TensorProto),
            }
        }
    }

    /// `tensorboard.SummaryMetadata` (summary.proto).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SummaryMetadata {
        #[prost(message, optional, tag = "1")]
        pub plugin_data: Option<PluginData>,
        #[prost(string, tag = "2")]
        pub display_name: String,
        #[prost(string, tag = "3")]
        pub summary_description: String,
        /// `DataClass`: 0 unknown, 1 scalar, 2 tensor, 3 blob sequence.
        #[prost(int32, tag = "4")]
        pub data_class: i32,
    }

    /// `SummaryMetadata.PluginData`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PluginData {
        #[prost(string, tag = "1")]
        pub plugin_name: String,
        #[prost(bytes = "vec", tag = "2")]
        pub content: Vec<u8>,
    }

    /// `tensorboard.HistogramProto` (histogram.proto). Bucket `i` counts the
    /// values in `[bucket_limit[i-1], bucket_limit[i])`, the first one from
    /// `-inf`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HistogramProto {
        #[prost(double, tag = "1")]
        pub min: f64,
        #[prost(double, tag = "2")]
        pub max: f64,
        #[prost(double, tag = "3")]
        pub num: f64,
        #[prost(double, tag = "4")]
        pub sum: f64,
        #[prost(double, tag = "5")]
        pub sum_squares: f64,
        #[prost(double, repeated, tag = "6")]
        pub bucket_limit: Vec<f64>,
        #[prost(double, repeated, tag = "7")]
        pub bucket: Vec<f64>,
    }

    /// `tensorboard.TensorProto` (tensor.proto), only the string form.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorProto {
        /// `DataType` (types.proto); see [`DT_STRING`].
        #[prost(int32, tag = "1")]
        pub dtype: i32,
        #[prost(message, optional, tag = "2")]
        pub tensor_shape: Option<TensorShapeProto>,
        #[prost(bytes = "vec", repeated, tag = "8")]
        pub string_val: Vec<Vec<u8>>,
    }

    /// `DataType.DT_STRING` (types.proto).
    pub const DT_STRING: i32 = 7;

    /// `tensorboard.TensorShapeProto` (tensor_shape.proto).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorShapeProto {
        #[prost(message, repeated, tag = "2")]
        pub dim: Vec<tensor_shape_proto::Dim>,
    }

    pub mod tensor_shape_proto {
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct Dim {
            #[prost(int64, tag = "1")]
            pub size: i64,
            #[prost(string, tag = "2")]
            pub name: String,
        }
    }

    /// `google.protobuf.Value` (struct.proto), without the struct and list
    /// kinds.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ProtoValue {
        #[prost(oneof = "proto_value::Kind", tags = "1, 2, 3, 4")]
        pub kind: Option<proto_value::Kind>,
    }

    pub mod proto_value {
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Kind {
            /// `NullValue.NULL_VALUE` is 0.
            #[prost(int32, tag = "1")]
            NullValue(i32),
            #[prost(double, tag = "2")]
            NumberValue(f64),
            #[prost(string, tag = "3")]
            StringValue(String),
            #[prost(bool, tag = "4")]
            BoolValue(bool),
        }
    }

    /// `tensorboard.hparams.HParamsPluginData` (plugins/hparams/plugin_data.proto).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HParamsPluginData {
        #[prost(int32, tag = "1")]
        pub version: i32,
        #[prost(oneof = "h_params_plugin_data::Data", tags = "3, 4")]
        pub data: Option<h_params_plugin_data::Data>,
    }

    pub mod h_params_plugin_data {
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Data {
            #[prost(message, tag = "3")]
            SessionStartInfo(super::SessionStartInfo),
            #[prost(message, tag = "4")]
            SessionEndInfo(super::SessionEndInfo),
        }
    }

    /// `tensorboard.hparams.SessionStartInfo` (plugin_data.proto).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SessionStartInfo {
        #[prost(btree_map = "string, message", tag = "1")]
        pub hparams: BTreeMap<String, ProtoValue>,
        #[prost(string, tag = "2")]
        pub model_uri: String,
        #[prost(string, tag = "3")]
        pub monitor_url: String,
        #[prost(string, tag = "4")]
        pub group_name: String,
        #[prost(double, tag = "5")]
        pub start_time_secs: f64,
    }

    /// `tensorboard.hparams.SessionEndInfo` (plugin_data.proto).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SessionEndInfo {
        /// `Status` (api.proto); see [`STATUS_SUCCESS`], [`STATUS_FAILURE`].
        #[prost(int32, tag = "1")]
        pub status: i32,
        #[prost(double, tag = "2")]
        pub end_time_secs: f64,
    }

    /// `tensorboard.hparams.Status` values (api.proto).
    pub const STATUS_SUCCESS: i32 = 1;
    pub const STATUS_FAILURE: i32 = 2;
}

use proto::summary::value::Value as SummaryKind;

/// The `file_version` of the first event of every file.
pub const FILE_VERSION: &str = "brain.Event:2";
/// Tags and plugin name of the hparams plugin (`tensorboard.plugins.hparams.metadata`).
pub const HPARAMS_PLUGIN: &str = "hparams";
pub const SESSION_START_INFO_TAG: &str = "_hparams_/session_start_info";
pub const SESSION_END_INFO_TAG: &str = "_hparams_/session_end_info";
/// `PLUGIN_DATA_VERSION` of the hparams plugin.
const HPARAMS_DATA_VERSION: i32 = 0;

/// One hyperparameter value, as the HPARAMS tab shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum HParamValue {
    Number(f64),
    Text(String),
    Bool(bool),
}

impl From<f64> for HParamValue {
    fn from(v: f64) -> Self {
        HParamValue::Number(v)
    }
}

impl From<&str> for HParamValue {
    fn from(v: &str) -> Self {
        HParamValue::Text(v.to_string())
    }
}

impl From<String> for HParamValue {
    fn from(v: String) -> Self {
        HParamValue::Text(v)
    }
}

impl From<bool> for HParamValue {
    fn from(v: bool) -> Self {
        HParamValue::Bool(v)
    }
}

impl HParamValue {
    fn to_proto(&self) -> proto::ProtoValue {
        use proto::proto_value::Kind;
        let kind = match self {
            HParamValue::Number(v) => Kind::NumberValue(*v),
            HParamValue::Text(v) => Kind::StringValue(v.clone()),
            HParamValue::Bool(v) => Kind::BoolValue(*v),
        };
        proto::ProtoValue { kind: Some(kind) }
    }
}

/// Writes one event file in a run directory. Events go through a buffer:
/// they reach the file on [`flush`](Self::flush), after
/// [`add_hparams`](Self::add_hparams) and [`end_hparams`](Self::end_hparams),
/// and on drop.
pub struct EventWriter {
    out: BufWriter<File>,
    path: PathBuf,
}

impl EventWriter {
    /// Creates `dir` (and its parents) and a new event file in it, and writes
    /// the `file_version` event. An existing file of the same name (same
    /// second, host and process) is never overwritten: the trailing counter
    /// goes up instead.
    pub fn create(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let host = hostname();
        let pid = std::process::id();
        let mut n = 0u32;
        let (file, path) = loop {
            let path = dir.join(format!("events.out.tfevents.{secs}.{host}.{pid}.{n}"));
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(f) => break (f, path),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
                Err(e) => return Err(e),
            }
        };
        let mut w = EventWriter {
            out: BufWriter::new(file),
            path,
        };
        w.write_event(0, proto::event::What::FileVersion(FILE_VERSION.to_string()))?;
        w.flush()?;
        Ok(w)
    }

    /// The event file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A scalar (SCALARS tab). Stored as a `float` like TensorFlow's
    /// `simple_value`, so it keeps about 7 significant digits.
    pub fn add_scalar(&mut self, tag: &str, value: f64, step: i64) -> io::Result<()> {
        self.write_value(step, tag, None, SummaryKind::SimpleValue(value as f32))
    }

    /// A histogram of `values` (HISTOGRAMS and DISTRIBUTIONS tabs), counted in
    /// TensorFlow's default exponential buckets (limits `±1e-12 * 1.1^k` up to
    /// 1e20, and 0); only the range from the first to the last non-empty
    /// bucket is written, with runs of empty buckets inside it merged into
    /// one, so a typical weight tensor takes a few dozen to a few hundred
    /// buckets. NaN and infinite values are left out.
    pub fn add_histogram(&mut self, tag: &str, values: &[f32], step: i64) -> io::Result<()> {
        let histo = histogram(values);
        self.write_value(step, tag, None, SummaryKind::Histo(histo))
    }

    /// Markdown text (TEXT tab): a one-element string tensor for the `text`
    /// plugin.
    pub fn add_text(&mut self, tag: &str, text: &str, step: i64) -> io::Result<()> {
        let metadata = proto::SummaryMetadata {
            plugin_data: Some(proto::PluginData {
                plugin_name: "text".to_string(),
                // A `TextPluginData { version: 0 }`, which serializes to nothing.
                content: Vec::new(),
            }),
            ..Default::default()
        };
        let tensor = proto::TensorProto {
            dtype: proto::DT_STRING,
            tensor_shape: Some(proto::TensorShapeProto {
                dim: vec![proto::tensor_shape_proto::Dim {
                    size: 1,
                    name: String::new(),
                }],
            }),
            string_val: vec![text.as_bytes().to_vec()],
        };
        self.write_value(step, tag, Some(metadata), SummaryKind::Tensor(tensor))
    }

    /// The hyperparameters of this run (HPARAMS tab): a session-start
    /// summary with their values (see the module doc for why there is no
    /// experiment summary). TensorBoard's metric columns are the run's scalar
    /// tags. Call once per writer (TensorBoard keeps the first), and
    /// [`end_hparams`](Self::end_hparams) at the end. Names must be distinct.
    pub fn add_hparams(&mut self, hparams: &[(String, HParamValue)]) -> io::Result<()> {
        let mut values = BTreeMap::new();
        for (name, v) in hparams {
            if values.insert(name.clone(), v.to_proto()).is_some() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("hyperparameter {name:?} is given twice"),
                ));
            }
        }
        let start = proto::SessionStartInfo {
            hparams: values,
            start_time_secs: now_secs(),
            ..Default::default()
        };
        self.write_hparams(
            SESSION_START_INFO_TAG,
            proto::h_params_plugin_data::Data::SessionStartInfo(start),
        )?;
        self.flush()
    }

    /// Ends the session begun by [`add_hparams`](Self::add_hparams): status
    /// success when `ok`, failure otherwise.
    pub fn end_hparams(&mut self, ok: bool) -> io::Result<()> {
        let end = proto::SessionEndInfo {
            status: if ok {
                proto::STATUS_SUCCESS
            } else {
                proto::STATUS_FAILURE
            },
            end_time_secs: now_secs(),
        };
        self.write_hparams(
            SESSION_END_INFO_TAG,
            proto::h_params_plugin_data::Data::SessionEndInfo(end),
        )?;
        self.flush()
    }

    /// Writes the buffered events to the file.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// One hparams-plugin summary: no value, only metadata whose content is
    /// an `HParamsPluginData`.
    fn write_hparams(
        &mut self,
        tag: &str,
        data: proto::h_params_plugin_data::Data,
    ) -> io::Result<()> {
        let content = proto::HParamsPluginData {
            version: HPARAMS_DATA_VERSION,
            data: Some(data),
        }
        .encode_to_vec();
        let value = proto::summary::Value {
            tag: tag.to_string(),
            metadata: Some(proto::SummaryMetadata {
                plugin_data: Some(proto::PluginData {
                    plugin_name: HPARAMS_PLUGIN.to_string(),
                    content,
                }),
                ..Default::default()
            }),
            value: None,
        };
        self.write_summary(0, value)
    }

    fn write_value(
        &mut self,
        step: i64,
        tag: &str,
        metadata: Option<proto::SummaryMetadata>,
        value: SummaryKind,
    ) -> io::Result<()> {
        let value = proto::summary::Value {
            tag: tag.to_string(),
            metadata,
            value: Some(value),
        };
        self.write_summary(step, value)
    }

    fn write_summary(&mut self, step: i64, value: proto::summary::Value) -> io::Result<()> {
        let summary = proto::Summary { value: vec![value] };
        self.write_event(step, proto::event::What::Summary(summary))
    }

    fn write_event(&mut self, step: i64, what: proto::event::What) -> io::Result<()> {
        let event = proto::Event {
            wall_time: now_secs(),
            step,
            what: Some(what),
        };
        write_record(&mut self.out, &event.encode_to_vec())
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        let _ = self.out.flush();
    }
}

/// TFRecord's checksum: crc32c, rotated and offset so that a checksum of data
/// that holds checksums does not degenerate.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
        .rotate_right(15)
        .wrapping_add(0xa282_ead8)
}

/// One TFRecord: length, its masked crc, data, the data's masked crc.
pub fn write_record<W: Write>(out: &mut W, data: &[u8]) -> io::Result<()> {
    let len = (data.len() as u64).to_le_bytes();
    out.write_all(&len)?;
    out.write_all(&masked_crc32c(&len).to_le_bytes())?;
    out.write_all(data)?;
    out.write_all(&masked_crc32c(data).to_le_bytes())
}

/// TensorFlow's default histogram bucket limits (`histogram.cc`): `-1e20 ..
/// -1e-12, 0, 1e-12 .. 1e20` growing by 1.1, then `f64::MAX` for the last
/// bucket.
fn default_bucket_limits() -> &'static [f64] {
    static LIMITS: std::sync::OnceLock<Vec<f64>> = std::sync::OnceLock::new();
    LIMITS.get_or_init(|| {
        let mut pos = Vec::new();
        let mut v = 1e-12;
        while v < 1e20 {
            pos.push(v);
            v *= 1.1;
        }
        let mut limits: Vec<f64> = pos.iter().rev().map(|v| -v).collect();
        limits.push(0.0);
        limits.extend_from_slice(&pos);
        limits.push(f64::MAX);
        limits
    })
}

fn histogram(values: &[f32]) -> proto::HistogramProto {
    let limits = default_bucket_limits();
    let mut counts = vec![0u64; limits.len()];
    let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
    let (mut num, mut sum, mut sum_squares) = (0u64, 0.0f64, 0.0f64);
    for &v in values {
        if !v.is_finite() {
            continue;
        }
        let v = f64::from(v);
        // Bucket i holds [limits[i-1], limits[i]).
        let i = limits.partition_point(|&l| l <= v);
        counts[i.min(limits.len() - 1)] += 1;
        min = min.min(v);
        max = max.max(v);
        num += 1;
        sum += v;
        sum_squares += v * v;
    }
    let mut h = proto::HistogramProto {
        num: num as f64,
        sum,
        sum_squares,
        ..Default::default()
    };
    if num == 0 {
        // As TensorFlow writes an empty histogram: one empty bucket.
        h.bucket_limit.push(f64::MAX);
        h.bucket.push(0.0);
        return h;
    }
    h.min = min;
    h.max = max;
    let first = counts.iter().position(|&c| c > 0).unwrap_or(0);
    let last = counts.iter().rposition(|&c| c > 0).unwrap_or(0);
    for i in first..=last {
        let c = counts[i];
        if c == 0 && counts[i + 1] == 0 {
            // Inside a run of empty buckets (never the last bucket, which is
            // non-empty): the run's last bucket stands for all of it.
            continue;
        }
        h.bucket_limit.push(limits[i]);
        h.bucket.push(c as f64);
    }
    h
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The host name for the file name: `/etc/hostname`, else "localhost".
fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && !s.contains(['/', '\\']))
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_and_mask_match_the_reference_vector() {
        // The CRC-32C check value (RFC 3720 / the crc catalogue).
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        // 0xE3069283 rotated right by 15, plus 0xa282ead8.
        assert_eq!(masked_crc32c(b"123456789"), 0xC78A_B0E5);
    }

    #[test]
    fn record_framing() {
        let mut buf = Vec::new();
        write_record(&mut buf, b"hello").unwrap();
        write_record(&mut buf, b"").unwrap();
        assert_eq!(buf.len(), (8 + 4 + 5 + 4) + (8 + 4 + 4));
        assert_eq!(&buf[0..8], &5u64.to_le_bytes());
        let len_crc = u32::from_le_bytes(buf[8..12].try_into().unwrap());
        assert_eq!(len_crc, masked_crc32c(&5u64.to_le_bytes()));
        assert_eq!(&buf[12..17], b"hello");
        let data_crc = u32::from_le_bytes(buf[17..21].try_into().unwrap());
        assert_eq!(data_crc, masked_crc32c(b"hello"));
        assert_ne!(data_crc, crc32c::crc32c(b"hello"), "the crc must be masked");
        assert_eq!(&buf[21..29], &0u64.to_le_bytes());
        assert_eq!(&buf[33..37], &masked_crc32c(b"").to_le_bytes());
    }

    #[test]
    fn file_version_event_bytes() {
        let event = proto::Event {
            wall_time: 0.0,
            step: 0,
            what: Some(proto::event::What::FileVersion(FILE_VERSION.into())),
        };
        // Field 3, wire type 2 (0x1a), length 13, the string.
        let mut want = vec![0x1a, 13];
        want.extend_from_slice(FILE_VERSION.as_bytes());
        assert_eq!(event.encode_to_vec(), want);
    }

    #[test]
    fn writer_starts_with_the_file_version_and_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let w = EventWriter::create(&dir.path().join("run")).unwrap();
        let path = w.path().to_path_buf();
        drop(w);
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("events.out.tfevents."), "{name}");
        assert!(
            name.ends_with(&format!(".{}.0", std::process::id())),
            "{name}"
        );
        let bytes = std::fs::read(&path).unwrap();
        let len = u64::from_le_bytes(bytes[0..8].try_into().unwrap()) as usize;
        assert_eq!(bytes.len(), 8 + 4 + len + 4);
        let event = proto::Event::decode(&bytes[12..12 + len]).unwrap();
        assert_eq!(
            event.what,
            Some(proto::event::What::FileVersion(FILE_VERSION.into()))
        );
        // A second writer in the same second gets the next counter.
        let w2 = EventWriter::create(&dir.path().join("run")).unwrap();
        assert_ne!(w2.path(), path);
    }

    #[test]
    fn histogram_buckets() {
        let h = histogram(&[0.5, 0.5, -2.0, 0.0, 3.0, f32::NAN]);
        assert_eq!(h.num, 5.0);
        assert_eq!((h.min, h.max), (-2.0, 3.0));
        assert_eq!(h.sum, 2.0);
        assert_eq!(h.sum_squares, 0.25 + 0.25 + 4.0 + 9.0);
        assert_eq!(h.bucket.len(), h.bucket_limit.len());
        assert_eq!(h.bucket.iter().sum::<f64>(), 5.0);
        // Limits increase; no two empty buckets in a row; ends non-empty.
        assert!(h.bucket_limit.windows(2).all(|w| w[0] < w[1]));
        assert!(h.bucket.windows(2).all(|w| w[0] > 0.0 || w[1] > 0.0));
        assert!(h.bucket[0] > 0.0 && *h.bucket.last().unwrap() > 0.0);
        // Each value sits below its bucket's limit and at or above the
        // previous one.
        for v in [0.5f64, -2.0, 0.0, 3.0] {
            let i = h.bucket_limit.partition_point(|&l| l <= v);
            assert!(h.bucket[i] > 0.0, "{v} in an empty bucket");
        }
        // 0 has a bucket of its own: [0, 1e-12).
        let i = h.bucket_limit.partition_point(|&l| l <= 0.0);
        assert_eq!((h.bucket_limit[i], h.bucket[i]), (1e-12, 1.0));

        let empty = histogram(&[]);
        assert_eq!(empty.num, 0.0);
        assert_eq!(empty.bucket_limit, vec![f64::MAX]);
    }
}
