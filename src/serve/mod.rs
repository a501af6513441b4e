//! From a trained run to predictions outside training.
//!
//! - [`export`] writes a model bundle (TorchScript or LightGBM).
//! - The service, one room a job: [`config`] (settings), [`bundle`] (a loaded
//!   bundle and where bundles are), [`request`] (reading and checking JSON,
//!   the API error), [`pool`] (inference threads), [`metrics`] (`/metrics`),
//!   [`routes`] (the HTTP routes), and [`server`], which holds the shared
//!   state and assembles them into Rocket.
//! - [`history`] keeps the online counters of history inputs, [`predlog`]
//!   logs what the service predicts, and [`logging`] prints what Rocket
//!   reports, plainly.
pub mod bundle;
pub mod config;
pub mod export;
pub mod history;
pub mod logging;
pub mod metrics;
pub mod openapi;
pub mod pool;
pub mod predict;
pub mod predlog;
pub mod request;
pub mod routes;
pub mod server;

pub use bundle::Bundle;
pub use config::{EventWindow, ServeConfig};
pub use export::{export, BundleMetadata, ExportOptions, ExportReport};
pub use predict::{predict, PredictOptions, PredictReport};
pub use server::{rocket, serve, Server};
