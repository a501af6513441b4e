//! Training: the experiment configuration ([`config`]), the optimizers with
//! lazy sparse updates ([`optim`]), the loop with evaluation, early stopping
//! and checkpoints ([`trainer`]), and the run comparisons ([`compare`]).
pub mod compare;
pub mod config;
pub mod optim;
pub mod trainer;

pub use config::ExperimentConfig;
pub use trainer::{load_run, resume, train, TrainOptions, TrainReport};
