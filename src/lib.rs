//! ctr-dl: click-through-rate prediction from raw impression logs to a live
//! prediction service. The library holds everything; the `ctr-dl` binary only
//! parses arguments ([`cli`]) and prints errors.
//!
//! Stages, one module each: [`data`] (schemas, converters, simulator, shard
//! writer and reader, statistics), [`features`] (feature map, hashing,
//! encoded splits), [`models`] (the model zoo), [`train`] (trainer,
//! optimizers), [`gbdt`] (LightGBM), [`eval`] (evaluation, comparison,
//! reports), [`serve`] (export and the service). Shared below them:
//! [`metrics`] (classification metrics, importing nothing of the crate),
//! [`run`] (the run contract every stage after training reads),
//! [`scoring`] (the one interface to a trained model, whatever its family)
//! and [`family`] (the one place that picks the family of a run or bundle),
//! [`tensorboard`] (event files), [`device`] (libtorch and device selection).
pub mod cli;
pub mod data;
pub mod device;
pub mod error;
pub mod eval;
pub mod family;
pub mod features;
pub mod gbdt;
pub mod metrics;
pub mod models;
pub mod progress;
pub mod rng;
pub mod run;
pub mod scoring;
pub mod serve;
pub mod tensorboard;
pub mod train;

pub use error::{Error, Location};
