//! Optimizers written for CTR models, where the embedding table is most of the
//! parameters and a batch touches a few thousand of its rows: a parameter whose
//! gradient is sparse (the embedding tables, looked up with `sparse = true`) is
//! updated lazily, only on the rows in the batch, with its Adam moments kept
//! per row (as PyTorch's `SparseAdam`), or by row-wise Adagrad
//! (`embedding_optimizer = "adagrad"`), at `embedding_lr` when it is set;
//! dense parameters get the usual update. tch has no optimizer-state save, so the moments live here and are
//! saved with [`Optimizer::state`] / restored with [`Optimizer::load_state`].
use tch::{Kind, Tensor};

use super::config::{EmbeddingOptimizer, OptimizerKind, TrainConfig};

/// Hyperparameters of one step.
#[derive(Debug, Clone)]
pub struct OptimizerConfig {
    pub kind: OptimizerKind,
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub embedding_l1: f64,
    pub embedding_l2: f64,
    pub grad_clip: f64,
    pub embedding_optimizer: EmbeddingOptimizer,
    /// The embedding rows' learning rate over `lr` (kept when `lr` decays).
    pub embedding_lr_scale: f64,
}

impl From<&TrainConfig> for OptimizerConfig {
    fn from(t: &TrainConfig) -> Self {
        OptimizerConfig {
            kind: t.optimizer,
            lr: t.lr,
            beta1: t.beta1,
            beta2: t.beta2,
            eps: t.eps,
            momentum: t.momentum,
            weight_decay: t.weight_decay,
            embedding_l1: t.embedding_l1,
            embedding_l2: t.embedding_l2,
            grad_clip: t.grad_clip,
            embedding_optimizer: t.embedding_optimizer,
            embedding_lr_scale: t.embedding_lr_or_lr() / t.lr,
        }
    }
}

struct Param {
    name: String,
    value: Tensor,
    /// First moment (Adam) or momentum buffer (SGD); same shape as the value.
    m: Option<Tensor>,
    /// Second moment (Adam), or the sum of squared gradients (Adagrad rows).
    v: Option<Tensor>,
}

/// Adam / AdamW / SGD with lazy row-wise updates of sparse-gradient parameters.
pub struct Optimizer {
    pub config: OptimizerConfig,
    params: Vec<Param>,
    /// Steps taken (Adam's bias correction).
    pub steps: i64,
}

/// A parameter's gradient this step.
enum Grad {
    None,
    Dense(Tensor),
    /// Unique rows and their summed gradients.
    Rows(Tensor, Tensor),
}

impl Optimizer {
    /// Over the named trainable variables (sorted by name, so the order and the
    /// saved state do not depend on hash-map order).
    pub fn new(mut named: Vec<(String, Tensor)>, config: OptimizerConfig) -> Self {
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let adam = config.kind != OptimizerKind::Sgd
            || config.embedding_optimizer == EmbeddingOptimizer::Adagrad;
        let momentum = config.kind == OptimizerKind::Sgd && config.momentum > 0.0;
        let params = named
            .into_iter()
            .map(|(name, value)| {
                let zeros = || Tensor::zeros_like(&value);
                Param {
                    m: (adam || momentum).then(zeros),
                    v: adam.then(zeros),
                    name,
                    value,
                }
            })
            .collect();
        Optimizer {
            config,
            params,
            steps: 0,
        }
    }

    pub fn set_lr(&mut self, lr: f64) {
        self.config.lr = lr;
    }

    /// Forget the gradients of the last step.
    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.value.zero_grad();
        }
    }

    /// One update from the gradients left by `backward`. The global gradient
    /// norm (one device sync per parameter) is computed only when clipping.
    pub fn step(&mut self) {
        let _guard = tch::no_grad_guard();
        let c = self.config.clone();
        let grads: Vec<Grad> = self.params.iter().map(grad_of).collect();
        let mut scale = 1.0;
        if c.grad_clip > 0.0 {
            let sq: f64 = grads
                .iter()
                .map(|g| match g {
                    Grad::None => 0.0,
                    Grad::Dense(g) | Grad::Rows(_, g) => {
                        g.square().sum(Kind::Double).double_value(&[])
                    }
                })
                .sum();
            let norm = sq.sqrt();
            if norm > c.grad_clip {
                scale = c.grad_clip / (norm + 1e-12);
            }
        }
        self.steps += 1;
        let t = self.steps as f64;
        let (bc1, bc2) = (1.0 - c.beta1.powf(t), 1.0 - c.beta2.powf(t));
        for (p, g) in self.params.iter_mut().zip(grads) {
            match g {
                Grad::None => {}
                Grad::Dense(mut g) => {
                    if scale != 1.0 {
                        g *= scale;
                    }
                    dense_update(p, g, &c, bc1, bc2);
                }
                Grad::Rows(rows, mut g) => {
                    if scale != 1.0 {
                        g *= scale;
                    }
                    rows_update(p, &rows, g, &c, bc1, bc2);
                }
            }
        }
    }

    /// The optimizer state as named tensors (`<param>.m`, `<param>.v`, and
    /// `steps`), for a safetensors file.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![("steps".to_string(), Tensor::from_slice(&[self.steps]))];
        for p in &self.params {
            if let Some(m) = &p.m {
                out.push((format!("{}.m", p.name), m.shallow_clone()));
            }
            if let Some(v) = &p.v {
                out.push((format!("{}.v", p.name), v.shallow_clone()));
            }
        }
        out
    }

    /// Restore a state saved by [`Optimizer::state`].
    pub fn load_state(&mut self, state: Vec<(String, Tensor)>) -> Result<(), String> {
        let _guard = tch::no_grad_guard();
        let mut map: std::collections::HashMap<String, Tensor> = state.into_iter().collect();
        let steps = map
            .remove("steps")
            .ok_or("optimizer state has no `steps`")?;
        self.steps = steps.int64_value(&[0]);
        for p in &mut self.params {
            for (suffix, slot) in [("m", &mut p.m), ("v", &mut p.v)] {
                if let Some(dst) = slot {
                    let key = format!("{}.{suffix}", p.name);
                    let src = map
                        .remove(&key)
                        .ok_or_else(|| format!("optimizer state has no `{key}`"))?;
                    if src.size() != dst.size() {
                        return Err(format!(
                            "optimizer state `{key}` has shape {:?}, the model {:?}",
                            src.size(),
                            dst.size()
                        ));
                    }
                    dst.copy_(&src);
                }
            }
        }
        Ok(())
    }
}

fn grad_of(p: &Param) -> Grad {
    let g = p.value.grad();
    if !g.defined() {
        return Grad::None;
    }
    if g.is_sparse() {
        let g = g.coalesce();
        let rows = g.internal_indices().select(0, 0);
        if rows.size()[0] == 0 {
            return Grad::None;
        }
        Grad::Rows(rows, g.internal_values())
    } else {
        Grad::Dense(g)
    }
}

fn dense_update(p: &mut Param, mut g: Tensor, c: &OptimizerConfig, bc1: f64, bc2: f64) {
    let w = &mut p.value;
    match c.kind {
        OptimizerKind::Adam | OptimizerKind::Adamw => {
            if c.weight_decay > 0.0 {
                if c.kind == OptimizerKind::Adamw {
                    let _ = w.g_mul_scalar_(1.0 - c.lr * c.weight_decay);
                } else {
                    g += &*w * c.weight_decay;
                }
            }
            let m = p.m.as_mut().expect("adam has moments");
            let v = p.v.as_mut().expect("adam has moments");
            let _ = m.g_mul_scalar_(c.beta1);
            let _ = m.g_add_(&(&g * (1.0 - c.beta1)));
            let _ = v.g_mul_scalar_(c.beta2);
            let _ = v.g_add_(&(g.square() * (1.0 - c.beta2)));
            let denom = (&*v / bc2).sqrt() + c.eps;
            let _ = w.g_sub_(&(&*m / denom * (c.lr / bc1)));
        }
        OptimizerKind::Sgd => {
            if c.weight_decay > 0.0 {
                g += &*w * c.weight_decay;
            }
            if let Some(buf) = p.m.as_mut() {
                let _ = buf.g_mul_scalar_(c.momentum);
                let _ = buf.g_add_(&g);
                g = buf.shallow_clone();
            }
            let _ = w.g_sub_(&(g * c.lr));
        }
    }
}

/// Adagrad's epsilon (PyTorch's default).
const ADAGRAD_EPS: f64 = 1e-10;

fn rows_update(
    p: &mut Param,
    rows: &Tensor,
    mut g: Tensor,
    c: &OptimizerConfig,
    bc1: f64,
    bc2: f64,
) {
    let w = &mut p.value;
    let lr = c.lr * c.embedding_lr_scale;
    if c.embedding_l2 > 0.0 || c.embedding_l1 > 0.0 {
        let w_rows = w.index_select(0, rows);
        if c.embedding_l1 > 0.0 {
            // The L1 subgradient: a pull of constant size toward zero.
            g += w_rows.sign() * c.embedding_l1;
        }
        if c.embedding_l2 > 0.0 {
            g += w_rows * c.embedding_l2;
        }
    }
    if c.embedding_optimizer == EmbeddingOptimizer::Adagrad {
        let v = p.v.as_mut().expect("adagrad has an accumulator");
        let v_rows = v.index_select(0, rows) + g.square();
        let _ = v.index_copy_(0, rows, &v_rows);
        let update = g / (v_rows.sqrt() + ADAGRAD_EPS) * -lr;
        let _ = w.index_add_(0, rows, &update);
        return;
    }
    match c.kind {
        OptimizerKind::Adam | OptimizerKind::Adamw => {
            let m = p.m.as_mut().expect("adam has moments");
            let v = p.v.as_mut().expect("adam has moments");
            let m_rows = m.index_select(0, rows) * c.beta1 + &g * (1.0 - c.beta1);
            let v_rows = v.index_select(0, rows) * c.beta2 + g.square() * (1.0 - c.beta2);
            let _ = m.index_copy_(0, rows, &m_rows);
            let _ = v.index_copy_(0, rows, &v_rows);
            let update = m_rows / ((v_rows / bc2).sqrt() + c.eps) * (-lr / bc1);
            let _ = w.index_add_(0, rows, &update);
        }
        OptimizerKind::Sgd => {
            let _ = w.index_add_(0, rows, &(g * -lr));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::{self, Init};

    fn config(kind: OptimizerKind) -> OptimizerConfig {
        OptimizerConfig {
            kind,
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            momentum: 0.0,
            weight_decay: 0.0,
            embedding_l1: 0.0,
            embedding_l2: 0.0,
            grad_clip: 0.0,
            embedding_optimizer: EmbeddingOptimizer::Same,
            embedding_lr_scale: 1.0,
        }
    }

    /// Row-wise Adagrad on the used rows, by hand: with the loss `sum(e)` each
    /// used row's gradient is its count in the batch, so after two steps a
    /// row seen c times a step has moved by `lr * (c/|c| + c/sqrt(2 c^2))`;
    /// `embedding_lr` replaces `lr` for the rows; dense parameters keep Adam.
    #[test]
    fn adagrad_rows_follow_the_accumulated_gradients() {
        let w = Tensor::zeros([3, 1], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
        let b = Tensor::zeros([1], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
        let mut opt = Optimizer::new(
            vec![
                ("b".into(), b.shallow_clone()),
                ("w".into(), w.shallow_clone()),
            ],
            OptimizerConfig {
                embedding_optimizer: EmbeddingOptimizer::Adagrad,
                embedding_lr_scale: 0.5,
                ..config(OptimizerKind::Adam)
            },
        );
        for _ in 0..2 {
            opt.zero_grad();
            let ids = Tensor::from_slice(&[0i64, 1, 1]);
            let e = Tensor::embedding(&w, &ids, -1, false, true);
            (e.sum(Kind::Float) + b.sum(Kind::Float)).backward();
            opt.step();
        }
        let got = Vec::<f32>::try_from(w.view([-1])).unwrap();
        let step2 = 1.0 / 2f32.sqrt();
        // lr 0.1 * scale 0.5; the count cancels in g / sqrt(sum g^2).
        for (row, want) in [(0usize, -0.05 * (1.0 + step2)), (1, -0.05 * (1.0 + step2))] {
            assert!((got[row] - want).abs() < 1e-6, "row {row}: {got:?}");
        }
        assert_eq!(got[2], 0.0, "an unused row stays");
        // The bias is dense: two Adam steps of about lr each.
        let bias = b.double_value(&[0]);
        assert!((bias + 0.2).abs() < 1e-3, "{bias}");
    }

    /// With a zero loss gradient, L1 pulls the used rows toward zero by a
    /// constant step (SGD: lr * l1 each step), L2 in proportion to the weight,
    /// and rows the batch does not use stay where they are.
    #[test]
    fn l1_and_l2_shrink_only_the_rows_a_batch_uses() {
        let w0 = Tensor::from_slice(&[1.0f32, -1.0, 1.0]).view([3, 1]);
        let run = |l1: f64, l2: f64| {
            let w = w0.copy().set_requires_grad(true);
            let mut opt = Optimizer::new(
                vec![("w".into(), w.shallow_clone())],
                OptimizerConfig {
                    embedding_l1: l1,
                    embedding_l2: l2,
                    ..config(OptimizerKind::Sgd)
                },
            );
            for _ in 0..2 {
                opt.zero_grad();
                let e = Tensor::embedding(&w, &Tensor::from_slice(&[0i64, 1]), -1, false, true);
                (e.sum(Kind::Float) * 0.0).backward();
                opt.step();
            }
            Vec::<f32>::try_from(w.view([-1])).unwrap()
        };
        let l1 = run(0.5, 0.0);
        // Two steps of 0.1 * 0.5 toward zero.
        assert!(
            (l1[0] - 0.9).abs() < 1e-6 && (l1[1] + 0.9).abs() < 1e-6,
            "{l1:?}"
        );
        assert_eq!(l1[2], 1.0);
        let l2 = run(0.0, 0.5);
        assert!((l2[0] - 0.95 * 0.95).abs() < 1e-6, "{l2:?}");
        assert_eq!(l2[2], 1.0);
    }

    /// On the rows a batch touches, lazy Adam equals dense Adam for a table
    /// whose every row is touched every step; untouched rows never move.
    #[test]
    fn lazy_adam_matches_dense_adam_on_touched_rows_and_leaves_others() {
        let vs_a = nn::VarStore::new(tch::Device::Cpu);
        let vs_b = nn::VarStore::new(tch::Device::Cpu);
        tch::manual_seed(1);
        let wa = vs_a.root().var(
            "w",
            &[5, 3],
            Init::Randn {
                mean: 0.0,
                stdev: 1.0,
            },
        );
        let wb = vs_b.root().var_copy("w", &wa);
        let mut sparse = Optimizer::new(
            vec![("w".into(), wa.shallow_clone())],
            config(OptimizerKind::Adam),
        );
        let mut dense = Optimizer::new(
            vec![("w".into(), wb.shallow_clone())],
            config(OptimizerKind::Adam),
        );
        let ids = Tensor::from_slice(&[0i64, 2, 2, 3]);
        let target = Tensor::from_slice(&[1.0f32, -1.0, 0.5, 2.0]);
        let before = Vec::<f32>::try_from(wa.view([-1])).unwrap();
        for _ in 0..3 {
            for (w, opt, sp) in [(&wa, &mut sparse, true), (&wb, &mut dense, false)] {
                opt.zero_grad();
                let e = Tensor::embedding(w, &ids, -1, false, sp);
                let loss = (e.sum_dim_intlist(&[1i64][..], false, Kind::Float) - &target)
                    .square()
                    .sum(Kind::Float);
                loss.backward();
                opt.step();
            }
        }
        let a = Vec::<f32>::try_from(wa.view([-1])).unwrap();
        let b = Vec::<f32>::try_from(wb.view([-1])).unwrap();
        for row in [0usize, 2, 3] {
            for k in 0..3 {
                let i = row * 3 + k;
                assert!(
                    (a[i] - b[i]).abs() < 1e-5,
                    "row {row}: {} vs {}",
                    a[i],
                    b[i]
                );
                assert!((a[i] - before[i]).abs() > 1e-3, "touched row {row} moved");
            }
        }
        // Rows 1 and 4 have zero gradient: dense Adam leaves them too (its
        // moments stay zero), and lazy Adam never reads them.
        for row in [1usize, 4] {
            for k in 0..3 {
                assert_eq!(a[row * 3 + k], before[row * 3 + k]);
            }
        }
    }

    #[test]
    fn state_round_trips() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let w = vs.root().var("w", &[4, 2], Init::Const(1.0));
        let mut opt = Optimizer::new(
            vec![("w".into(), w.shallow_clone())],
            config(OptimizerKind::Adam),
        );
        let loss =
            Tensor::embedding(&w, &Tensor::from_slice(&[1i64]), -1, false, true).sum(Kind::Float);
        loss.backward();
        opt.step();
        let saved: Vec<(String, Tensor)> = opt
            .state()
            .into_iter()
            .map(|(n, t)| (n, t.copy()))
            .collect();
        let mut other = Optimizer::new(
            vec![("w".into(), w.shallow_clone())],
            config(OptimizerKind::Adam),
        );
        other.load_state(saved).unwrap();
        assert_eq!(other.steps, 1);
        let m: Vec<f32> = Vec::try_from(other.params[0].m.as_ref().unwrap().view([-1])).unwrap();
        assert!(m[2] != 0.0 && m[0] == 0.0, "{m:?}");
    }
}
