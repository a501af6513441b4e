//! Evaluation: metrics of predicted click probabilities.
pub mod metrics;
