//! From a trained run to predictions outside training: [`export`] writes a
//! TorchScript model bundle, [`server`] serves bundles over HTTP,
//! [`history`] keeps the online counters of history inputs, [`predlog`]
//! logs what it predicts and [`logging`] prints what Rocket reports, plainly.
pub mod export;
pub mod history;
pub mod logging;
pub mod predlog;
pub mod server;

pub use export::{export, BundleMetadata, ExportOptions, ExportReport};
pub use server::{serve, ServeConfig};
