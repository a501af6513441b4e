//! ctr-dl: click-through-rate prediction from raw impression logs to a live
//! prediction service. The library holds everything; the `ctr-dl` binary only
//! parses arguments ([`cli`]) and prints errors.
//!
//! Stages, one module each: [`data`] (schemas, converters, simulator, shard
//! writer and reader, statistics), [`eval`] (metrics), [`device`] (libtorch
//! and device selection).
pub mod cli;
pub mod data;
pub mod device;
pub mod error;
pub mod eval;
pub mod progress;
pub mod rng;

pub use error::{DataError, Location};
