//! From a trained run to predictions outside training: [`export`] writes a
//! TorchScript model bundle, [`server`] serves bundles over HTTP.
pub mod export;
pub mod server;

pub use export::{export, BundleMetadata, ExportOptions, ExportReport};
pub use server::{serve, ServeConfig};
