//! The data stage: dataset schemas, converters of real logs, the simulator,
//! the Parquet shard writer and reader, and dataset statistics.
pub mod convert;
pub mod infer;
pub mod interrupt;
pub mod io;
pub mod manifest;
pub mod parse;
pub mod reader;
pub mod schema;
pub mod simulate;
pub mod sketch;
pub mod split;
pub mod stats;
pub mod writer;

pub use convert::{convert, ConvertOptions, ConvertReport};
pub use manifest::DatasetManifest;
pub use reader::{ReaderOptions, ShardReader};
pub use schema::{ColumnKind, DatasetSchema};
pub use split::SplitMode;
pub use writer::{Split, WriterOptions};
