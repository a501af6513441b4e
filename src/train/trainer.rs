//! The training loop: encoded batches in, a trained model, a run directory
//! and checkpoints out.
//!
//! - `runs/<run>/`: `config.toml` (resolved), `features.json`, `run.json`
//!   (seed, commit, data, device), `metrics.json` (every evaluation and the
//!   final test), TensorBoard event files.
//! - `checkpoints/<run>/`: `last.safetensors` + `optimizer.safetensors` +
//!   `state.json` after every evaluation (what `--resume` continues from), and
//!   `best.safetensors`, the weights of the best evaluation, reloaded before
//!   the test evaluation and used by `eval` and `export`.
//!
//! Determinism: libtorch's generator is reseeded from (seed, step) at every
//! checkpoint and the batch order is a function of (seed, epoch), so a resumed
//! run continues exactly as the uninterrupted one would, and two runs with the
//! same seed on CPU give the same metrics.
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

use super::config::ExperimentConfig;
use super::optim::{Optimizer, OptimizerConfig};
use crate::data::io::{read_json, write_json};
use crate::data::writer::Split;
use crate::error::{Error, Result};
use crate::features::{prepare, Batch, EncodedDataset, Loader, LoaderOptions};
use crate::metrics::{evaluate, BinnedAuc, Metrics};
use crate::models::{CtrModel, InputShape};
use crate::rng::Rng;
use crate::run::{
    git_commit, new_run_name, run_dirs, simulated_truth, tensorboard_finish, tensorboard_start,
    EvalRecord, RunInfo, RunMetrics, TrainOptions, TrainReport, TrainSummary, Truth,
};
use crate::tensorboard::{EventWriter, HParamValue};

/// Training progress, saved with every checkpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunState {
    pub epoch: u64,
    pub batch_in_epoch: u64,
    pub step: u64,
    pub lr: f64,
    pub best_score: Option<f64>,
    pub best_step: u64,
    pub best_epoch: u64,
    pub bad_evals: u64,
    pub evals: Vec<EvalRecord>,
    pub samples: u64,
    pub train_seconds: f64,
    pub wait_seconds: f64,
    pub finished: bool,
    pub stopped_early: bool,
    /// Checksums of the checkpoint files (`best.safetensors`,
    /// `last.safetensors`, `optimizer.safetensors`) as written with this
    /// state, verified before `--resume` and export read them. Empty in a
    /// state written before checksums were kept (nothing is verified then).
    #[serde(default)]
    pub checksums: std::collections::BTreeMap<String, String>,
}

/// A model with its variables.
pub struct Loaded {
    pub vs: nn::VarStore,
    pub model: Box<dyn CtrModel>,
    pub device: Device,
}

impl Loaded {
    /// Build the model of `cfg` for `ds` on `device`.
    pub fn build(cfg: &ExperimentConfig, ds: &EncodedDataset, device: Device) -> Loaded {
        let vs = nn::VarStore::new(device);
        let shape = InputShape {
            vocab_size: ds.meta.vocab_size as i64,
            num_fields: ds.meta.num_fields as i64,
            num_dense: ds.meta.num_dense as i64,
            prior_logit: prior_logit(ds),
        };
        let model = cfg.model.build(&vs.root(), shape);
        Loaded { vs, model, device }
    }

    /// Parameters that train.
    pub fn trainable(&self) -> Vec<(String, Tensor)> {
        self.vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect()
    }

    pub fn num_parameters(&self) -> i64 {
        self.vs.variables().values().map(|t| t.numel() as i64).sum()
    }

    /// Save all variables (batch-norm statistics included) as safetensors;
    /// returns the file's checksum.
    pub fn save(&self, path: &Path) -> Result<String> {
        let vars: Vec<(String, Tensor)> = sorted(self.vs.variables());
        save_tensors(path, &vars)
    }

    /// Load variables saved by [`Loaded::save`].
    pub fn load(&mut self, path: &Path) -> Result<()> {
        let tensors = Tensor::read_safetensors(path).map_err(|e| torch_err(path, e))?;
        let mut map: std::collections::HashMap<String, Tensor> = tensors.into_iter().collect();
        let _guard = tch::no_grad_guard();
        for (name, mut var) in self.vs.variables() {
            let src = map
                .remove(&name)
                .ok_or_else(|| Error::Invalid(format!("{}: no tensor `{name}`", path.display())))?;
            if src.size() != var.size() {
                return Err(Error::Invalid(format!(
                    "{}: `{name}` has shape {:?}, the model {:?}: the checkpoint is from another configuration",
                    path.display(),
                    src.size(),
                    var.size()
                )));
            }
            var.copy_(&src);
        }
        Ok(())
    }

    /// Click probabilities of a batch (evaluation mode; call under no_grad).
    pub fn probs(&self, b: &Batch) -> std::result::Result<Vec<f64>, tch::TchError> {
        self.probs_of(&b.ids, &b.dense)
    }

    /// Click probabilities of input tensors `ids` `[B, F]` and `dense`
    /// `[B, D]` (evaluation mode; call under no_grad).
    pub fn probs_of(
        &self,
        ids: &Tensor,
        dense: &Tensor,
    ) -> std::result::Result<Vec<f64>, tch::TchError> {
        let p = self
            .model
            .forward_t(&ids.to(self.device), &dense.to(self.device), false)
            .sigmoid()
            .to_kind(Kind::Double)
            .to(Device::Cpu);
        Vec::<f64>::try_from(&p)
    }

    /// Click probabilities and labels of a split.
    pub fn predict(
        &self,
        ds: &EncodedDataset,
        split: Split,
        batch_size: usize,
    ) -> Result<(Vec<f64>, Vec<u8>)> {
        let _guard = tch::no_grad_guard();
        let loader = Loader::new(
            ds,
            split,
            LoaderOptions {
                batch_size,
                ..Default::default()
            },
        )?;
        let n = ds.split(split).rows as usize;
        let (mut probs, mut labels) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for batch in loader {
            let b = batch?;
            probs.extend(self.probs(&b).map_err(|e| torch_err(&ds.dir, e))?);
            let y = Vec::<f32>::try_from(&b.labels).map_err(|e| torch_err(&ds.dir, e))?;
            labels.extend(y.into_iter().map(|y| (y > 0.5) as u8));
        }
        Ok((probs, labels))
    }
}

/// The logit of the train split's click rate (clamped away from 0 and 1).
fn prior_logit(ds: &EncodedDataset) -> f64 {
    let t = ds.split(Split::Train);
    let p = ((t.positives as f64 + 0.5) / (t.rows as f64 + 1.0)).clamp(1e-6, 1.0 - 1e-6);
    (p / (1.0 - p)).ln()
}

fn sorted(map: std::collections::HashMap<String, Tensor>) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = map.into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

pub(crate) fn torch_err(path: &Path, e: tch::TchError) -> Error {
    Error::torch(path, e)
}

/// The checksum kept for a checkpoint file: its xxh3-128, as
/// `xxh3-128:<hex>` (for damage on disk, not for tampering).
pub fn file_checksum(path: &Path) -> Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("xxh3-128:{:032x}", h.digest128()))
}

/// Check checkpoint file `name` in `dir` against the checksum `state` holds
/// for it (none held: nothing to check).
pub fn verify_checkpoint(dir: &Path, name: &str, state: &RunState) -> Result<()> {
    let Some(want) = state.checksums.get(name) else {
        return Ok(());
    };
    let path = dir.join(name);
    let got = file_checksum(&path)?;
    if &got != want {
        return Err(Error::Invalid(format!(
            "{}: its checksum ({got}) is not the one state.json holds ({want}): the file \
             was damaged, or replaced, after step {} was checkpointed (or the run was \
             killed while writing it); train again without --resume",
            path.display(),
            state.step
        )));
    }
    Ok(())
}

/// Write named tensors as safetensors, atomically; returns the file's
/// checksum.
pub fn save_tensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<String> {
    // tch picks the format from the extension, so the temporary keeps it.
    let tmp = path.with_file_name(format!(
        ".{}.{}.tmp.safetensors",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let cpu: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.to(Device::Cpu)))
        .collect();
    Tensor::write_safetensors(&cpu, &tmp).map_err(|e| torch_err(path, e))?;
    let sum = file_checksum(&tmp).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })?;
    Ok(sum)
}

fn reseed(seed: u64, step: u64) {
    let s = Rng::derive(seed, &format!("torch-{step}")).next_u64() >> 1;
    tch::manual_seed(s as i64);
}

/// Train an experiment in a new run directory.
pub fn train(cfg: &ExperimentConfig, opts: &TrainOptions) -> Result<TrainReport> {
    let run = new_run_name(&cfg.output.runs, &cfg.name, opts)?;
    Trainer::start(cfg.clone(), run, None, opts)
}

/// Continue an interrupted run from its last checkpoint.
pub fn resume(run_dir: &Path, opts: &TrainOptions) -> Result<TrainReport> {
    let cfg = ExperimentConfig::load_saved(&run_dir.join("config.toml"))?;
    let info: RunInfo = read_json(&run_dir.join("run.json"))?;
    let state: RunState = read_json(&info.checkpoints.join("state.json"))?;
    if state.finished {
        return Err(Error::Invalid(format!(
            "{} finished already (step {}); nothing to resume",
            run_dir.display(),
            state.step
        )));
    }
    Trainer::start(cfg, info.run.clone(), Some((info, state)), opts)
}

struct Trainer {
    cfg: ExperimentConfig,
    run: String,
    run_dir: PathBuf,
    ckpt_dir: PathBuf,
    ds: EncodedDataset,
    net: Loaded,
    opt: Optimizer,
    state: RunState,
    tb: EventWriter,
    truth: Option<(f64, Option<f64>)>,
    quiet: bool,
    progress: bool,
}

impl Trainer {
    fn start(
        cfg: ExperimentConfig,
        run: String,
        resumed: Option<(RunInfo, RunState)>,
        opts: &TrainOptions,
    ) -> Result<TrainReport> {
        let device = crate::device::resolve_device(&cfg.train.device).map_err(Error::Invalid)?;
        if cfg.train.threads > 0 {
            tch::set_num_threads(cfg.train.threads as i32);
        }
        let say = |s: String| {
            if !opts.quiet {
                eprintln!("{s}");
            }
        };
        let ds = prepare(
            &cfg.data.path,
            cfg.data.cache.as_deref(),
            &cfg.features,
            opts.progress,
        )?;
        say(format!(
            "features: {} categorical fields ({} embedding rows), {} dense inputs; encoded {} ({})",
            ds.meta.num_fields,
            ds.meta.vocab_size,
            ds.meta.num_dense,
            ds.dir.display(),
            if ds.reused { "cached" } else { "new" }
        ));
        let (run_dir, ckpt_dir) = run_dirs(&ds, &cfg.data.path, &cfg.output, &run)?;
        tch::manual_seed(cfg.seed as i64);
        let mut net = Loaded::build(&cfg, &ds, device);
        let mut opt = Optimizer::new(net.trainable(), OptimizerConfig::from(&cfg.train));
        let state = match resumed {
            Some((info, state)) => {
                for name in [
                    "last.safetensors",
                    "optimizer.safetensors",
                    "best.safetensors",
                ] {
                    verify_checkpoint(&info.checkpoints, name, &state)?;
                }
                net.load(&info.checkpoints.join("last.safetensors"))?;
                let path = info.checkpoints.join("optimizer.safetensors");
                let saved = Tensor::read_safetensors(&path).map_err(|e| torch_err(&path, e))?;
                let saved = saved.into_iter().map(|(n, t)| (n, t.to(device))).collect();
                opt.load_state(saved)
                    .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
                if opt.steps as u64 != state.step {
                    return Err(Error::Invalid(format!(
                        "{}: optimizer at step {}, state at step {}: the checkpoint is inconsistent",
                        info.checkpoints.display(),
                        opt.steps,
                        state.step
                    )));
                }
                say(format!(
                    "resuming {run} at epoch {}, step {}",
                    state.epoch + 1,
                    state.step
                ));
                state
            }
            None => {
                std::fs::write(run_dir.join("config.toml"), cfg.to_toml())
                    .map_err(|e| Error::io(run_dir.join("config.toml"), e))?;
                ds.features.save(&run_dir.join("features.json"))?;
                let info = RunInfo {
                    run: run.clone(),
                    name: cfg.name.clone(),
                    model: cfg.model.kind().name().into(),
                    created: crate::data::manifest::now_rfc3339(),
                    commit: git_commit(),
                    seed: cfg.seed,
                    data: cfg.data.path.clone(),
                    encoded: ds.dir.clone(),
                    device: format!("{device:?}"),
                    checkpoints: ckpt_dir.clone(),
                    parameters: net.num_parameters(),
                    ctr_dl_version: env!("CARGO_PKG_VERSION").into(),
                };
                write_json(&run_dir.join("run.json"), &info)?;
                RunState {
                    lr: cfg.train.lr,
                    ..Default::default()
                }
            }
        };
        let mut tb = EventWriter::create(&run_dir).map_err(|e| Error::io(&run_dir, e))?;
        if state.step == 0 {
            tensorboard_start(
                &mut tb,
                cfg.model.kind().name(),
                &cfg.data.path,
                cfg.seed,
                hparams(&cfg),
                &cfg.to_toml(),
            )
            .map_err(|e| Error::io(tb.path().to_path_buf(), e))?;
        }
        let truth = simulated_truth(&cfg.data.path);
        say(format!(
            "model: {} with {} parameters on {device:?}; run {}",
            cfg.model.kind().name(),
            net.num_parameters(),
            run_dir.display()
        ));
        let mut t = Trainer {
            progress: opts.progress && std::io::stderr().is_terminal() && !opts.quiet,
            quiet: opts.quiet,
            cfg,
            run,
            run_dir,
            ckpt_dir,
            ds,
            net,
            opt,
            state,
            tb,
            truth,
        };
        let interrupted = t.fit(opts.stop_after_steps)?;
        if interrupted {
            return Ok(t.report(None, None));
        }
        t.finish()
    }

    /// The epochs. Returns true when stopped by `stop_after_steps`.
    fn fit(&mut self, stop_after: Option<u64>) -> Result<bool> {
        let c = self.cfg.train.clone();
        let steps_per_epoch = self.steps_per_epoch();
        let device = self.net.device;
        let mut this_run = 0u64;
        let (mut loss_sum, mut loss_n) = (0f64, 0u64);
        let (mut window_sum, mut window_n) = (0f64, 0u64);
        reseed(self.cfg.seed, self.state.step);
        // Patience ran out, or `max_steps` is reached (not an early stop).
        let done = |s: &RunState| s.stopped_early || (c.max_steps > 0 && s.step >= c.max_steps);
        while self.state.epoch < c.epochs && !done(&self.state) {
            let loader = Loader::new(
                &self.ds,
                Split::Train,
                LoaderOptions {
                    batch_size: c.batch_size,
                    shuffle: c.shuffle,
                    shuffle_chunks: c.shuffle_chunks,
                    seed: self.cfg.seed,
                    epoch: self.state.epoch,
                    skip_batches: self.state.batch_in_epoch,
                    ..Default::default()
                },
            )?;
            let bar = self.bar(steps_per_epoch);
            let mut auc = BinnedAuc::default();
            let epoch_started = Instant::now();
            let mut epoch_samples = 0u64;
            let mut waited = Instant::now();
            for batch in loader {
                let batch = batch?;
                self.state.wait_seconds += waited.elapsed().as_secs_f64();
                let step_started = Instant::now();
                self.opt.set_lr(self.lr_now());
                let loss = self.step(&batch, device, &mut auc);
                self.state.train_seconds += step_started.elapsed().as_secs_f64();
                self.state.step += 1;
                self.state.batch_in_epoch += 1;
                self.state.samples += batch.rows as u64;
                epoch_samples += batch.rows as u64;
                this_run += 1;
                loss_sum += loss;
                loss_n += 1;
                window_sum += loss;
                window_n += 1;
                if self.state.step % c.log_every.max(1) == 0 {
                    let sps = epoch_samples as f64 / epoch_started.elapsed().as_secs_f64();
                    self.scalar("train/loss", window_sum / window_n as f64)?;
                    self.scalar("train/lr", self.opt.config.lr)?;
                    self.scalar("train/samples_per_sec", sps)?;
                    if let Some(bar) = &bar {
                        bar.set_message(format!(
                            "loss {:.4} auc {} {:.0} samples/s",
                            window_sum / window_n as f64,
                            auc.value().map_or("-".into(), |a| format!("{a:.4}")),
                            sps
                        ));
                    }
                    window_sum = 0.0;
                    window_n = 0;
                }
                if let Some(bar) = &bar {
                    bar.set_position(self.state.batch_in_epoch);
                }
                let at_max = c.max_steps > 0 && self.state.step >= c.max_steps;
                if (c.eval_every > 0 && self.state.step % c.eval_every == 0) || at_max {
                    self.evaluate_and_checkpoint(loss_sum / loss_n.max(1) as f64)?;
                    (loss_sum, loss_n) = (0.0, 0);
                    if done(&self.state) {
                        break;
                    }
                }
                if stop_after.is_some_and(|n| this_run >= n) {
                    if let Some(bar) = &bar {
                        bar.finish_and_clear();
                    }
                    return Ok(true);
                }
                waited = Instant::now();
            }
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            if done(&self.state) {
                break;
            }
            self.state.epoch += 1;
            self.state.batch_in_epoch = 0;
            // Every epoch without `eval_every`; with it, evaluations keep
            // their spacing (an extra one at an epoch's end, a few steps from
            // the last, would count against patience twice over one stretch of
            // training), and only the end of the last epoch adds one.
            let last_epoch = self.state.epoch >= c.epochs;
            let evaluated_here = self
                .state
                .evals
                .last()
                .is_some_and(|e| e.step == self.state.step);
            if c.eval_every == 0 || (last_epoch && !evaluated_here) {
                self.evaluate_and_checkpoint(loss_sum / loss_n.max(1) as f64)?;
                (loss_sum, loss_n) = (0.0, 0);
            }
        }
        Ok(false)
    }

    fn steps_per_epoch(&self) -> u64 {
        let rows = self.ds.split(Split::Train).rows;
        rows.div_ceil(self.cfg.train.batch_size as u64)
    }

    /// The learning rate of the next step: the rate after any decays on
    /// plateau, times the schedule's factor at this step of the planned ones.
    fn lr_now(&self) -> f64 {
        let c = &self.cfg.train;
        let mut planned = c.epochs * self.steps_per_epoch();
        if c.max_steps > 0 {
            planned = planned.min(c.max_steps);
        }
        self.state.lr
            * c.lr_schedule
                .factor(self.state.step, planned, c.warmup_steps)
    }

    fn bar(&self, steps: u64) -> Option<indicatif::ProgressBar> {
        self.progress.then(|| {
            let bar = indicatif::ProgressBar::with_draw_target(
                Some(steps),
                indicatif::ProgressDrawTarget::stderr_with_hz(4),
            );
            if let Ok(style) = indicatif::ProgressStyle::with_template(&format!(
                "epoch {} [{{bar:30}}] {{pos}}/{{len}} {{msg}} eta {{eta}}",
                self.state.epoch + 1
            )) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        })
    }

    /// One optimizer step; returns the batch loss.
    fn step(&mut self, b: &Batch, device: Device, auc: &mut BinnedAuc) -> f64 {
        let ids = b.ids.to(device);
        let dense = b.dense.to(device);
        let labels = b.labels.to(device);
        let amp = self.cfg.train.amp && device.is_cuda();
        let logits = tch::autocast(amp, || self.net.model.forward_t(&ids, &dense, true))
            .to_kind(Kind::Float);
        let loss = logits.binary_cross_entropy_with_logits::<Tensor>(
            &labels,
            None,
            None,
            tch::Reduction::Mean,
        );
        self.opt.zero_grad();
        loss.backward();
        self.opt.step();
        // Train AUC on a sample of each batch keeps the bar cheap.
        let probs = logits.detach().sigmoid().to(Device::Cpu);
        if let (Ok(p), Ok(y)) = (
            Vec::<f32>::try_from(&probs.slice(0, 0, 512, 1)),
            Vec::<f32>::try_from(&b.labels.slice(0, 0, 512, 1)),
        ) {
            for (p, y) in p.into_iter().zip(y) {
                auc.add(p as f64, y > 0.5);
            }
        }
        loss.double_value(&[])
    }

    fn scalar(&mut self, tag: &str, value: f64) -> Result<()> {
        let step = self.state.step as i64;
        self.tb
            .add_scalar(tag, value, step)
            .map_err(|e| Error::io(self.tb.path().to_path_buf(), e))
    }

    fn evaluate_and_checkpoint(&mut self, train_loss: f64) -> Result<()> {
        let started = Instant::now();
        let c = self.cfg.train.clone();
        let (p, y) = self.net.predict(&self.ds, Split::Valid, 16_384)?;
        let valid = evaluate(&p, &y);
        let score = c.monitor.score(valid.auc, valid.logloss);
        let improved = self.state.best_score.is_none_or(|b| score > b + 1e-6);
        // 1-based: the epoch this evaluation happened in (or just finished).
        let epoch = self.state.epoch + (self.state.batch_in_epoch > 0) as u64;
        if improved {
            self.state.best_score = Some(score);
            self.state.best_step = self.state.step;
            self.state.best_epoch = epoch;
            self.state.bad_evals = 0;
            let sum = self.net.save(&self.ckpt_dir.join("best.safetensors"))?;
            self.state.checksums.insert("best.safetensors".into(), sum);
        } else {
            self.state.bad_evals += 1;
            let lr = (self.state.lr * c.lr_decay).max(c.min_lr.min(self.state.lr));
            self.state.lr = lr;
            if self.state.bad_evals >= c.patience {
                self.state.stopped_early = true;
            }
        }
        let record = EvalRecord {
            epoch,
            step: self.state.step,
            lr: self.lr_now(),
            train_loss,
            valid: valid.clone(),
            improved,
            seconds: started.elapsed().as_secs_f64(),
        };
        if !self.quiet {
            if self.progress {
                eprint!("\r\x1b[2K");
            }
            eprintln!(
                "  step {:>7} epoch {:>2}  train loss {:.5}  valid auc {}  logloss {:.5}{}",
                record.step,
                epoch,
                train_loss,
                valid.auc.map_or("-".into(), |a| format!("{a:.5}")),
                valid.logloss,
                if improved {
                    "  (best)".to_string()
                } else {
                    format!(
                        "  (no gain {}/{}, lr {:.1e})",
                        self.state.bad_evals,
                        c.patience,
                        self.lr_now()
                    )
                }
            );
        }
        self.scalar("valid/auc", valid.auc.unwrap_or(f64::NAN))?;
        self.scalar("valid/logloss", valid.logloss)?;
        self.scalar("valid/pr_auc", valid.pr_auc.unwrap_or(f64::NAN))?;
        self.state.evals.push(record);
        // The checkpoint: weights and optimizer first, the state that names
        // them last, and the torch generator reseeded at the boundary.
        let sum = self.net.save(&self.ckpt_dir.join("last.safetensors"))?;
        self.state.checksums.insert("last.safetensors".into(), sum);
        let sum = save_tensors(
            &self.ckpt_dir.join("optimizer.safetensors"),
            &self.opt.state(),
        )?;
        self.state
            .checksums
            .insert("optimizer.safetensors".into(), sum);
        write_json(&self.ckpt_dir.join("state.json"), &self.state)?;
        self.write_metrics(None, None)?;
        self.tb
            .flush()
            .map_err(|e| Error::io(self.tb.path().to_path_buf(), e))?;
        reseed(self.cfg.seed, self.state.step);
        Ok(())
    }

    fn finish(mut self) -> Result<TrainReport> {
        self.net.load(&self.ckpt_dir.join("best.safetensors"))?;
        let eval = |t: &Self, s: Split| -> Result<Option<Metrics>> {
            if t.ds.split(s).rows == 0 {
                return Ok(None);
            }
            let (p, y) = t.net.predict(&t.ds, s, 16_384)?;
            Ok(Some(evaluate(&p, &y)))
        };
        let valid = eval(&self, Split::Valid)?;
        let test = eval(&self, Split::Test)?;
        let step = self.state.step as i64;
        let metrics = self.metrics(valid.clone(), test.clone());
        tensorboard_finish(&mut self.tb, &metrics, step)
            .map_err(|e| Error::io(self.run_dir.clone(), e))?;
        self.state.finished = true;
        write_json(&self.ckpt_dir.join("state.json"), &self.state)?;
        self.write_metrics(valid.clone(), test.clone())?;
        Ok(self.report(valid, test))
    }

    fn metrics(&self, valid: Option<Metrics>, test: Option<Metrics>) -> RunMetrics {
        let s = &self.state;
        let busy = s.train_seconds + s.wait_seconds;
        RunMetrics {
            run: self.run.clone(),
            model: self.cfg.model.kind().name().into(),
            evals: s.evals.clone(),
            best_step: s.best_step,
            best_epoch: s.best_epoch,
            truth: Truth::of(test.as_ref(), self.truth),
            valid,
            test,
            train: TrainSummary {
                steps: s.step,
                epochs: s.epoch,
                samples: s.samples,
                seconds: busy,
                samples_per_sec: if busy > 0.0 {
                    s.samples as f64 / busy
                } else {
                    0.0
                },
                data_wait_fraction: if busy > 0.0 {
                    s.wait_seconds / busy
                } else {
                    0.0
                },
                stopped_early: s.stopped_early,
                finished: s.finished,
            },
        }
    }

    fn write_metrics(&self, valid: Option<Metrics>, test: Option<Metrics>) -> Result<()> {
        write_json(
            &self.run_dir.join("metrics.json"),
            &self.metrics(valid, test),
        )
    }

    fn report(&self, valid: Option<Metrics>, test: Option<Metrics>) -> TrainReport {
        TrainReport {
            run: self.run.clone(),
            run_dir: self.run_dir.clone(),
            checkpoint_dir: self.ckpt_dir.clone(),
            metrics: self.metrics(valid, test),
            encoded_reused: self.ds.reused,
        }
    }
}

/// The hyperparameters shown in TensorBoard's HPARAMS tab.
fn hparams(cfg: &ExperimentConfig) -> Vec<(String, HParamValue)> {
    let t = &cfg.train;
    let n = |x: f64| HParamValue::Number(x);
    // The model's own settings under their TOML keys, then training's.
    let mut out = Vec::new();
    for (key, value) in cfg.model.settings_table() {
        let value = match value {
            toml::Value::Integer(i) => n(i as f64),
            toml::Value::Float(x) => n(x),
            toml::Value::Boolean(b) => HParamValue::Bool(b),
            toml::Value::String(s) => HParamValue::Text(s),
            other => HParamValue::Text(other.to_string()),
        };
        out.push((key, value));
    }
    out.extend([
        (
            "optimizer".into(),
            HParamValue::Text(format!("{:?}", t.optimizer).to_lowercase()),
        ),
        ("lr".into(), n(t.lr)),
        ("embedding_lr".into(), n(t.embedding_lr_or_lr())),
        (
            "lr_schedule".into(),
            HParamValue::Text(t.lr_schedule.name().into()),
        ),
        ("warmup_steps".into(), n(t.warmup_steps as f64)),
        ("batch_size".into(), n(t.batch_size as f64)),
        ("embedding_l1".into(), n(t.embedding_l1)),
        ("embedding_l2".into(), n(t.embedding_l2)),
        ("weight_decay".into(), n(t.weight_decay)),
    ]);
    out
}

/// Load a finished (or interrupted) run's model with its best weights.
pub fn load_run(
    run_dir: &Path,
    device: Device,
) -> Result<(ExperimentConfig, RunInfo, EncodedDataset, Loaded)> {
    let cfg = ExperimentConfig::load_saved(&run_dir.join("config.toml"))?;
    let info: RunInfo = read_json(&run_dir.join("run.json"))?;
    // The cache is found again (or rebuilt, identically) from the settings.
    let ds = prepare(
        &cfg.data.path,
        cfg.data.cache.as_deref(),
        &cfg.features,
        false,
    )?;
    let mut net = Loaded::build(&cfg, &ds, device);
    let state_path = info.checkpoints.join("state.json");
    if state_path.exists() {
        let state: RunState = read_json(&state_path)?;
        verify_checkpoint(&info.checkpoints, "best.safetensors", &state)?;
    }
    net.load(&info.checkpoints.join("best.safetensors"))?;
    Ok((cfg, info, ds, net))
}
