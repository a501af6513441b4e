//! Training: the experiment configuration ([`config`]), the optimizers with
//! lazy sparse updates ([`optim`]), the loop with evaluation, early stopping
//! and checkpoints ([`trainer`]). What a run is lives in [`crate::run`].
pub mod config;
pub mod init;
pub mod optim;
pub mod scoring;
pub mod trainer;

pub use crate::run::{TrainOptions, TrainReport};
pub use config::ExperimentConfig;
pub use trainer::{load_run, resume, train};
