//! From a trained run to predictions outside training: [`export`] writes a
//! TorchScript model bundle.
pub mod export;

pub use export::{export, BundleMetadata, ExportOptions, ExportReport};
