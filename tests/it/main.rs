//! The integration tests, one module a part of the tool, in one test binary:
//! each former `tests/*.rs` file linked its own 180 MB binary (Arrow,
//! Parquet, Rocket, libtorch and LightGBM each time), so one crate links once
//! (issue 31). Select a part with the module path, e.g.
//! `bash scripts/test.sh serve::` or `bash scripts/test.sh regression::`.
mod common;

mod baseline;
mod cli;
mod convert;
mod eda;
mod export;
mod features;
mod fields;
mod history;
mod metrics;
mod reader;
mod regression;
mod report;
mod serve;
mod simulate;
mod tensorboard;
mod train;
