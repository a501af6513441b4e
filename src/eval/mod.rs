//! Evaluation: metrics of predicted click probabilities.
pub mod calibrate;
pub mod eda;
pub mod fields;
pub mod html;
pub mod metrics;
pub mod plots;
pub mod report;
pub mod runs;
