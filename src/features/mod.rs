//! Features: from raw shard columns to model input. [`config`] is the
//! experiment's `[features]` section, [`map`] the fitted feature map
//! (`features.json`, shared by training and serving), [`hashing`] the stable
//! hashing trick, [`cache`] the encoded splits the trainer reads.
pub mod cache;
pub mod config;
pub mod fit;
pub mod hashing;
pub mod history;
pub mod map;
pub mod raw;
pub mod target;

pub use cache::{prepare, Batch, EncodedDataset, Loader, LoaderOptions};
pub use config::{Encoding, FeatureConfig};
pub use map::FeatureMap;
pub use raw::RawValue;
