//! Regression tests: one test a finding, each named after what it guards.
//! The findings of issue 18's hostile-input and fault probe live here, by the
//! part of the tool they concern (`serve`, `data`, `train`).
mod data;
mod serve;
mod train;
