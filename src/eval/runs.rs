//! Finished runs as `eval`, `compare` and `report` read them: the model
//! through the one scoring interface ([`crate::scoring`], opened by
//! [`crate::family`]), the metrics from `metrics.json`.
use std::path::Path;

use crate::data::io::read_json;
use crate::error::Result;
use crate::run::RunMetrics;

pub use crate::family::open_run;
pub use crate::scoring::OpenRun;

/// A run's `metrics.json`; an error naming the file when it is missing or
/// half written.
pub fn run_metrics(run_dir: &Path) -> Result<RunMetrics> {
    read_json(&run_dir.join("metrics.json"))
}
