//! `ctr-dl eval` and `ctr-dl compare`: metrics of a run's best weights on a
//! split, and a table of runs side by side.
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::data::io::{read_json, write_json};
use crate::data::writer::Split;
use crate::error::{Error, Result};
use crate::eval::runs::open_run;
use crate::gbdt::{GbdtExperiment, LIGHTGBM};
use crate::metrics::{calibration, evaluate, Calibration, Metrics};
use crate::run::{RunInfo, RunMetrics};
use crate::train::config::{ExperimentConfig, LrSchedule};

/// The evaluation of one run on one split (`eval-<split>.json`).
#[derive(Debug, Clone, Serialize)]
pub struct RunEval {
    pub run: String,
    pub split: String,
    pub metrics: Metrics,
    pub calibration: Calibration,
}

/// Evaluate a run's best weights on a split; writes `eval-<split>.json` in the run.
pub fn eval_run(run_dir: &Path, split: Split, device: tch::Device) -> Result<RunEval> {
    let run = open_run(run_dir, device)?;
    let (p, y, _) = run.predict_split(split)?;
    let out = RunEval {
        run: run.info.run,
        split: split.name().into(),
        metrics: evaluate(&p, &y),
        calibration: calibration(&p, &y, 10),
    };
    write_json(&run_dir.join(format!("eval-{}.json", split.name())), &out)?;
    Ok(out)
}

/// One row of the comparison table.
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    pub run: String,
    pub dir: PathBuf,
    pub model: String,
    pub settings: String,
    /// The dataset folder the run trained on (`data.path`).
    pub data: PathBuf,
    pub valid_auc: Option<f64>,
    pub valid_logloss: Option<f64>,
    pub test_auc: Option<f64>,
    pub test_logloss: Option<f64>,
    pub gap: Option<f64>,
    pub steps: u64,
    pub seconds: f64,
    pub samples_per_sec: f64,
    pub finished: bool,
}

/// Run directories under the given paths: each path is a run (it has
/// `run.json`) or a folder of runs.
pub fn find_runs(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut runs = Vec::new();
    for p in paths {
        if p.join("run.json").exists() {
            runs.push(p.clone());
            continue;
        }
        let entries = std::fs::read_dir(p).map_err(|e| Error::io(p, e))?;
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|d| d.join("run.json").exists())
            .collect();
        if found.is_empty() {
            return Err(Error::Invalid(format!(
                "{}: not a run directory and holds none (no run.json)",
                p.display()
            )));
        }
        found.sort();
        runs.extend(found);
    }
    Ok(runs)
}

/// Read the rows of the comparison.
pub fn compare(paths: &[PathBuf]) -> Result<Vec<RunRow>> {
    find_runs(paths)?
        .into_iter()
        .map(|dir| {
            let info: RunInfo = read_json(&dir.join("run.json"))?;
            let m: Option<RunMetrics> = read_json(&dir.join("metrics.json")).ok();
            let best_valid = m.as_ref().and_then(|m| {
                m.valid.clone().or_else(|| {
                    m.evals
                        .iter()
                        .find(|e| e.step == m.best_step)
                        .map(|e| e.valid.clone())
                })
            });
            let config = dir.join("config.toml");
            let settings = if info.model == LIGHTGBM {
                GbdtExperiment::load(&config, &[])?.lightgbm.describe()
            } else {
                deep_settings(&ExperimentConfig::load_saved(&config)?)
            };
            Ok(RunRow {
                run: info.run,
                data: info.data,
                dir,
                model: info.model,
                settings,
                valid_auc: best_valid.as_ref().and_then(|v| v.auc),
                valid_logloss: best_valid.as_ref().map(|v| v.logloss),
                test_auc: m.as_ref().and_then(|m| m.test.as_ref()).and_then(|t| t.auc),
                test_logloss: m.as_ref().and_then(|m| m.test.as_ref()).map(|t| t.logloss),
                gap: m.as_ref().and_then(|m| m.truth.as_ref()).map(|t| t.gap),
                steps: m.as_ref().map_or(0, |m| m.train.steps),
                seconds: m.as_ref().map_or(0.0, |m| m.train.seconds),
                samples_per_sec: m.as_ref().map_or(0.0, |m| m.train.samples_per_sec),
                finished: m.as_ref().is_some_and(|m| m.train.finished),
            })
        })
        .collect()
}

/// The key settings of a deep run.
fn deep_settings(cfg: &ExperimentConfig) -> String {
    let mut settings = cfg.model.summary();
    let t = &cfg.train;
    if !settings.is_empty() {
        settings.push(' ');
    }
    settings += &format!("lr {:e}", t.lr);
    if t.embedding_lr_or_lr() != t.lr {
        settings += &format!(" emb lr {:e}", t.embedding_lr);
    }
    if t.lr_schedule != LrSchedule::Constant {
        settings += &format!(" {}", t.lr_schedule.name());
    }
    settings + &format!(" bs {}", t.batch_size)
}

/// Group `rows` by data set, keeping their order within each: runs are
/// ranked against runs on the same data only.
pub fn group_by_data(rows: &mut [RunRow]) {
    let mut first: Vec<PathBuf> = Vec::new();
    for r in rows.iter() {
        if !first.contains(&r.data) {
            first.push(r.data.clone());
        }
    }
    rows.sort_by_key(|r| first.iter().position(|d| *d == r.data));
}

/// The table as text: the data set above it (a column, and a warning, when
/// the runs are on more than one), and what `gap` is below it.
pub fn render(rows: &[RunRow]) -> String {
    let mut sets: Vec<&Path> = rows.iter().map(|r| r.data.as_path()).collect();
    sets.sort();
    sets.dedup();
    let mut head = match sets.as_slice() {
        [] => String::new(),
        [one] => format!("data: {}\n", one.display()),
        many => format!(
            "warning: these runs are on {} data sets, whose metrics do not compare; \
             each data set's runs are ranked apart, its folder in the `data` column\n",
            many.len()
        ),
    };
    let table = render_table(rows, sets.len() > 1);
    head += &table;
    head += if rows.iter().any(|r| r.gap.is_some()) {
        "gap: test log loss minus the true click probability's (simulated data only; - elsewhere)\n"
    } else {
        "gap: - (the distance from the true click probability, known on simulated data only)\n"
    };
    head
}

fn render_table(rows: &[RunRow], with_data: bool) -> String {
    let f = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.5}"));
    // The text columns are as wide as their longest value.
    let width = |head: &str, cell: fn(&RunRow) -> &str| {
        rows.iter()
            .map(|r| cell(r).chars().count())
            .fold(head.len(), usize::max)
    };
    let (wr, wm, ws) = (
        width("run", |r| &r.run),
        width("model", |r| &r.model),
        width("settings", |r| &r.settings),
    );
    let data = |r: Option<&RunRow>| match (with_data, r) {
        (false, _) => String::new(),
        (true, None) => "data  ".into(),
        (true, Some(r)) => format!("{}  ", r.data.display()),
    };
    let wd = rows
        .iter()
        .map(|r| data(Some(r)).chars().count())
        .fold(data(None).len(), usize::max);
    let mut out = format!(
        "{:<wd$}{:<wr$} {:<wm$} {:<ws$} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>9}\n",
        data(None),
        "run",
        "model",
        "settings",
        "valid auc",
        "valid ll",
        "test auc",
        "test ll",
        "gap",
        "time s",
        "samples/s"
    );
    for r in rows {
        out += &format!(
            "{:<wd$}{:<wr$} {:<wm$} {:<ws$} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8.1} {:>9.0}{}\n",
            data(Some(r)),
            r.run,
            r.model,
            r.settings,
            f(r.valid_auc),
            f(r.valid_logloss),
            f(r.test_auc),
            f(r.test_logloss),
            f(r.gap),
            r.seconds,
            r.samples_per_sec,
            if r.finished { "" } else { "  (unfinished)" }
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs on different data are ranked apart, with a warning and their
    /// folder; runs on one data set name it once; `gap` says what it is.
    #[test]
    fn runs_on_different_data_are_not_ranked_together() {
        let row = |run: &str, data: &str, auc: f64, gap: Option<f64>| RunRow {
            run: run.into(),
            dir: PathBuf::from(run),
            model: "lr".into(),
            settings: String::new(),
            data: PathBuf::from(data),
            valid_auc: None,
            valid_logloss: None,
            test_auc: Some(auc),
            test_logloss: None,
            gap,
            steps: 1,
            seconds: 1.0,
            samples_per_sec: 1.0,
            finished: true,
        };
        // Sorted by test AUC: a, b (criteo), c.
        let mut rows = vec![
            row("a", "sim", 0.80, Some(0.01)),
            row("b", "criteo", 0.79, None),
            row("c", "sim", 0.70, Some(0.02)),
        ];
        group_by_data(&mut rows);
        let order: Vec<&str> = rows.iter().map(|r| r.run.as_str()).collect();
        assert_eq!(order, ["a", "c", "b"]);
        let text = render(&rows);
        assert!(
            text.starts_with("warning: these runs are on 2 data sets"),
            "{text}"
        );
        assert!(text.lines().nth(1).unwrap().starts_with("data "), "{text}");
        assert!(
            text.lines().nth(4).unwrap().starts_with("criteo "),
            "{text}"
        );
        assert!(text.contains("gap: test log loss minus"), "{text}");
        let one = render(&rows[..2]);
        assert!(
            one.starts_with("data: sim\n") && !one.contains("warning"),
            "{one}"
        );
        let none = render(&rows[2..]);
        assert!(none.contains("gap: - (the distance"), "{none}");
    }

    #[test]
    fn deep_settings_name_a_separate_embedding_rate() {
        let text = "name = 'x'\n[data]\npath = 'd'\n[model]\nkind = 'dcn'\ncross_layers = 3\n";
        let cfg = |sets: &[&str]| {
            let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
            ExperimentConfig::parse(text, Path::new("x.toml"), &sets).unwrap()
        };
        let plain = deep_settings(&cfg(&["train.lr=1e-3"]));
        assert!(plain.contains("cross 3 lr 1e-3 bs") && !plain.contains("emb lr"));
        let split = deep_settings(&cfg(&["train.lr=1e-3", "train.embedding_lr=1e-2"]));
        assert!(split.contains("lr 1e-3 emb lr 1e-2 bs"), "{split}");
    }
}
