//! The optimizers: one [`Optimizer`] trait, and [`GroupedOptimizer`], which
//! runs any [`Method`] over parameter groups with per-parameter state.

use bregman_layers::Parameter;
use bregman_tensor::sparse::Csr;
use bregman_tensor::Tensor;

use crate::group::{build_groups, GroupSpec, ParamGroup};
use crate::kernels::{
    adabreg::adabreg, adam::adam, adam::AdamCoefficients, linbreg, masked, proxgd::proxgd, sgd,
};
use crate::regularizer::ElementwiseProx;
use crate::OptimError;
use rayon::prelude::*;

/// An optimizer: updates parameters in place from their gradients.
pub trait Optimizer {
    /// One update. `params` and `grads` are in the model's parameter order.
    ///
    /// **Errors** if the parameters are not the ones the optimizer was built
    /// for, or a gradient's shape differs from its parameter's.
    fn step(&mut self, params: &mut [&mut Parameter], grads: &[Tensor]) -> Result<(), OptimError>;

    /// The parameter groups (hyper-parameters and regularizers).
    fn groups(&self) -> &[ParamGroup];

    /// The parameter groups, mutable (schedulers change `lr` and `λ`).
    fn groups_mut(&mut self) -> &mut [ParamGroup];
}

/// The update rule (SPEC §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `θ ← θ − τg` (heavy-ball momentum when the group's β > 0).
    Sgd,
    /// Adam, bias-corrected.
    Adam,
    /// `θ ← prox_{τJ}(θ − τg)` (eq. 1.5).
    ProxGd,
    /// `v ← v − τg; θ ← prox_{δJ}(δv)` (Alg. 1); with β > 0 the momentum form (Alg. 2).
    LinBreg,
    /// Alg. 3.
    AdaBreg,
}

impl Method {
    /// Whether the method keeps the subgradient variable `v` (the Bregman family).
    pub fn is_bregman(self) -> bool {
        matches!(self, Method::LinBreg | Method::AdaBreg)
    }

    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Sgd => "sgd",
            Method::Adam => "adam",
            Method::ProxGd => "proxgd",
            Method::LinBreg => "linbreg",
            Method::AdaBreg => "adabreg",
        }
    }
}

/// How a step treats the regularized parameters (sparse backpropagation,
/// docs/BREGMAN.md). Unregularized parameters (biases, batch-norm scales)
/// always take a plain step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StepMode {
    /// Every entry moves: the plain step.
    Full,
    /// Only the support moves (`v`, `θ` and the optimizer state there), the
    /// gradient read there alone: the positions `θᵢ ≠ 0` when the run of
    /// masked steps began (after the last full step), fixed for the run — a
    /// weight that reaches 0 inside the run keeps moving with it, one that
    /// was 0 waits for the next full step. Bregman methods only.
    Masked,
    /// A full step that catches up with the masked steps since the last
    /// full step: at the entries those steps left alone (off the support
    /// they started from), the step's change of `v` is multiplied by a
    /// factor of `n`, the number of steps it stands for (`1 +` the masked
    /// steps; a plain step when there were none). Bregman methods only.
    FullCatchUp(CatchUp),
}

/// The factor of a [`StepMode::FullCatchUp`] step for a step standing for `n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUp {
    /// `n`: the skipped steps' drift if the gradient stayed what it is now
    /// (its noise is multiplied by `n` too).
    Linear,
    /// `√n`: the spread of `n` steps of independent gradient noise (the drift
    /// is under-counted by `√n`).
    Sqrt,
}

impl CatchUp {
    /// The factor for a step standing for `n` steps.
    pub fn factor(self, n: u64) -> f32 {
        match self {
            CatchUp::Linear => n as f32,
            CatchUp::Sqrt => (n as f32).sqrt(),
        }
    }
}

/// The state of one parameter.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ParamState {
    /// The parameter's name (the state's key).
    pub name: String,
    /// Bregman subgradient variable `v`.
    pub v: Option<Vec<f32>>,
    /// Momentum buffer (SGD `b`, LinBreg `m`) or Adam's first moment `m₁`.
    pub m1: Option<Vec<f32>>,
    /// Adam's second moment `m₂`.
    pub m2: Option<Vec<f32>>,
}

/// Everything needed to continue an optimizer exactly (checkpoints).
#[derive(Debug, Clone, PartialEq)]
pub struct OptimizerState {
    /// Steps taken.
    pub step: u64,
    /// Per-parameter state, in parameter order.
    pub params: Vec<ParamState>,
    /// Per-group `(lr, λ)`, in group order (schedulers change them).
    pub groups: Vec<(f32, f32)>,
}

/// Any [`Method`] over parameter groups.
#[derive(Debug, Clone)]
pub struct GroupedOptimizer {
    method: Method,
    groups: Vec<ParamGroup>,
    state: Vec<ParamState>,
    /// Group of each parameter (by position).
    group_of: Vec<usize>,
    step: u64,
    /// Per parameter, the support the current run of masked steps started
    /// from: the positions every masked step of the run moves (scratch
    /// reused across steps). Not part of [`OptimizerState`]: a checkpoint
    /// taken after a full step (the trainer ends every epoch with one) does
    /// not need it.
    supports: Vec<Csr>,
    /// Masked steps since the last full step.
    masked_run: u64,
}

impl GroupedOptimizer {
    /// Builds the optimizer for `params` (the model's parameters, in order),
    /// assigning each to the first group spec that lists its kind.
    ///
    /// **Errors** if a parameter fits no group or a hyper-parameter is invalid.
    pub fn new(
        method: Method,
        params: &[&Parameter],
        specs: Vec<GroupSpec>,
    ) -> Result<Self, OptimError> {
        let groups = build_groups(params, specs)?;
        let state = params
            .iter()
            .map(|p| ParamState {
                name: p.name.clone(),
                ..Default::default()
            })
            .collect();
        let mut group_of = vec![0; params.len()];
        for (gi, g) in groups.iter().enumerate() {
            g.params.iter().for_each(|&i| group_of[i] = gi);
        }
        Ok(GroupedOptimizer {
            method,
            groups,
            state,
            supports: vec![Csr::new(); params.len()],
            masked_run: 0,
            group_of,
            step: 0,
        })
    }

    /// The update rule.
    pub fn method(&self) -> Method {
        self.method
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// Per-parameter state (e.g. `v` of the Bregman methods), in parameter order.
    pub fn param_states(&self) -> &[ParamState] {
        &self.state
    }

    /// Sets the Bregman variable from the current parameters,
    /// `v = ∂J(θ) + θ/δ` (Alg. 1). Call after changing λ, as the λ scheduler
    /// does; the first [`Optimizer::step`] does it for parameters without `v`.
    /// No-op for non-Bregman methods.
    pub fn reinit_v(&mut self, params: &[&Parameter]) {
        if !self.method.is_bregman() {
            return;
        }
        for g in &self.groups {
            for &i in &g.params {
                let Some(p) = params.get(i) else { continue };
                self.state[i].v = Some(init_v(&p.value, g));
            }
        }
    }

    /// `J(θ)` per group, as `(group name, value)`.
    pub fn regularizer_values(&self, params: &[&Parameter]) -> Vec<(String, f64)> {
        self.groups
            .iter()
            .map(|g| {
                let j: f64 = g
                    .params
                    .iter()
                    .filter_map(|&i| params.get(i))
                    .map(|p| crate::regularizer::value_of(g.regularizer.as_ref(), &p.value))
                    .sum();
                (g.name.clone(), j)
            })
            .collect()
    }

    /// A copy of the full state (for checkpoints).
    pub fn state(&self) -> OptimizerState {
        OptimizerState {
            step: self.step,
            params: self.state.clone(),
            groups: self
                .groups
                .iter()
                .map(|g| (g.hyper.lr, g.regularizer.lambda()))
                .collect(),
        }
    }

    /// Restores a state saved by [`GroupedOptimizer::state`].
    ///
    /// **Errors** if it does not fit this optimizer's parameters and groups.
    pub fn load_state(&mut self, s: OptimizerState) -> Result<(), OptimError> {
        if s.params.len() != self.state.len() || s.groups.len() != self.groups.len() {
            return Err(OptimError::State(format!(
                "{} parameters / {} groups saved, {} / {} expected",
                s.params.len(),
                s.groups.len(),
                self.state.len(),
                self.groups.len()
            )));
        }
        for (old, new) in self.state.iter().zip(&s.params) {
            if old.name != new.name {
                return Err(OptimError::State(format!(
                    "parameter '{}' saved where '{}' expected",
                    new.name, old.name
                )));
            }
        }
        for (g, &(lr, lam)) in self.groups.iter_mut().zip(&s.groups) {
            g.hyper.lr = lr;
            g.regularizer.set_lambda(lam);
        }
        self.state = s.params;
        self.step = s.step;
        Ok(())
    }

    /// One update in the given [`StepMode`]; [`Optimizer::step`] is
    /// `step_with(…, StepMode::Full)`.
    ///
    /// **Errors** as [`Optimizer::step`], or for a masked or scaled step of a
    /// method that is not a Bregman method.
    pub fn step_with(
        &mut self,
        params: &mut [&mut Parameter],
        grads: &[Tensor],
        mode: StepMode,
    ) -> Result<(), OptimError> {
        if mode != StepMode::Full && !self.method.is_bregman() {
            return Err(OptimError::Unsupported(format!(
                "masked steps (sparse backpropagation) need a Bregman method \
                 (linbreg, adabreg), not {}",
                self.method.as_str()
            )));
        }
        self.check(params, grads)?;
        self.step += 1;
        let (method, groups, k) = (self.method, &self.groups, self.step);
        let step = Step {
            method,
            k,
            mode,
            masked_run: self.masked_run,
        };
        let group_of = &self.group_of;
        params
            .par_iter_mut()
            .zip(self.state.par_iter_mut())
            .zip(grads.par_iter().zip(self.supports.par_iter_mut()))
            .enumerate()
            .for_each(|(i, ((p, s), (g, support)))| {
                update(step, &groups[group_of[i]], p, s, g.data(), support)
            });
        self.masked_run = match mode {
            StepMode::Masked => self.masked_run + 1,
            _ => 0,
        };
        Ok(())
    }

    fn check(&self, params: &[&mut Parameter], grads: &[Tensor]) -> Result<(), OptimError> {
        let n = self.state.len();
        if params.len() != n || grads.len() != n {
            let got = if params.len() != n {
                params.len()
            } else {
                grads.len()
            };
            return Err(OptimError::ParamCount { expected: n, got });
        }
        for (i, ((p, g), s)) in params.iter().zip(grads).zip(&self.state).enumerate() {
            if p.name != s.name {
                return Err(OptimError::ParamName {
                    index: i,
                    expected: s.name.clone(),
                    got: p.name.clone(),
                });
            }
            if p.value.shape() != g.shape() {
                return Err(OptimError::GradShape {
                    name: p.name.clone(),
                    param: p.value.shape().to_vec(),
                    grad: g.shape().to_vec(),
                });
            }
            let want = p.value.len();
            for buf in [&s.v, &s.m1, &s.m2].into_iter().flatten() {
                if buf.len() != want {
                    return Err(OptimError::State(format!(
                        "state of '{}' has {} values, not {want}",
                        p.name,
                        buf.len()
                    )));
                }
            }
        }
        Ok(())
    }
}

/// `v₀ = ∂J(θ) + θ/δ` for one parameter of group `g`.
fn init_v(theta: &Tensor, g: &ParamGroup) -> Vec<f32> {
    let mut v = crate::regularizer::subgradient_of(g.regularizer.as_ref(), theta).into_vec();
    let inv_delta = 1.0 / g.hyper.delta;
    v.iter_mut()
        .zip(theta.data())
        .for_each(|(v, &t)| *v += t * inv_delta);
    v
}

/// The buffer, allocated (zeros) on first use.
fn buffer(slot: &mut Option<Vec<f32>>, len: usize) -> &mut [f32] {
    slot.get_or_insert_with(|| vec![0.0; len])
}

/// What one step is: the method, its number `k`, its mode and the masked
/// steps before it since the last full one.
#[derive(Clone, Copy)]
struct Step {
    method: Method,
    k: u64,
    mode: StepMode,
    masked_run: u64,
}

/// One step of one parameter of group `g`: the plain update, or for a
/// regularized parameter of a Bregman method its masked or scaled form.
fn update(
    step: Step,
    g: &ParamGroup,
    p: &mut Parameter,
    s: &mut ParamState,
    grad: &[f32],
    support: &mut Csr,
) {
    if step.method.is_bregman() && s.v.is_none() {
        s.v = Some(init_v(&p.value, g));
    }
    let regularized = !matches!(g.regularizer.elementwise(), Some(ElementwiseProx::Identity));
    let len = p.value.len();
    match step.mode {
        StepMode::Masked if regularized => {
            if step.masked_run == 0 {
                // A run starts: its positions are the current support.
                support.fill_from_dense(p.value.data(), 1, len);
            }
            masked_update(step, g, p, s, grad, support.col_idx());
        }
        StepMode::FullCatchUp(catch_up) if regularized && step.masked_run > 0 => {
            // The entries off the run's starting support missed `masked_run` steps.
            let off = complement(support.col_idx(), len);
            let v_old = s.v.clone().expect("initialised above");
            full_update(step, g, p, s, grad);
            let scale = catch_up.factor(step.masked_run + 1);
            let gs = g.regularizer.grouping().group_size(p.value.shape());
            let v = s.v.as_mut().expect("initialised above");
            let (delta, reg) = (g.hyper.delta, g.regularizer.as_ref());
            masked::scale_off_support(p.value.data_mut(), v, &v_old, &off, scale, delta, reg, gs);
        }
        _ => full_update(step, g, p, s, grad),
    }
}

/// The sorted indices below `len` that are not in the sorted `idx`.
fn complement(idx: &[u32], len: usize) -> Vec<u32> {
    let mut out = Vec::with_capacity(len - idx.len());
    let mut next = idx.iter().copied().peekable();
    for i in 0..len as u32 {
        if next.peek() == Some(&i) {
            next.next();
        } else {
            out.push(i);
        }
    }
    out
}

/// The masked step of a Bregman method at the sorted indices `support`.
fn masked_update(
    step: Step,
    g: &ParamGroup,
    p: &mut Parameter,
    s: &mut ParamState,
    grad: &[f32],
    support: &[u32],
) {
    let h = &g.hyper;
    let reg = g.regularizer.as_ref();
    let gs = reg.grouping().group_size(p.value.shape());
    let len = p.value.len();
    let theta = p.value.data_mut();
    let v = s.v.as_mut().expect("initialised by update");
    match step.method {
        Method::LinBreg if h.momentum > 0.0 => {
            let m = buffer(&mut s.m1, len);
            let hyper = (h.lr, h.momentum);
            masked::linbreg_momentum_masked(theta, v, m, grad, support, hyper, h.delta, reg, gs)
        }
        Method::LinBreg => masked::linbreg_masked(theta, v, grad, support, h.lr, h.delta, reg, gs),
        Method::AdaBreg => {
            let m1 = s.m1.get_or_insert_with(|| vec![0.0; len]);
            let m2 = s.m2.get_or_insert_with(|| vec![0.0; len]);
            let k = AdamCoefficients::new(h.lr, h.betas, h.eps, step.k);
            masked::adabreg_masked(theta, v, m1, m2, grad, support, &k, h.delta, reg, gs)
        }
        _ => unreachable!("step_with admits masked steps of Bregman methods only"),
    }
}

/// The plain step `k` of `method` for one parameter of group `g`.
fn full_update(step: Step, g: &ParamGroup, p: &mut Parameter, s: &mut ParamState, grad: &[f32]) {
    let (method, k) = (step.method, step.k);
    let h = &g.hyper;
    let reg = g.regularizer.as_ref();
    let gs = reg.grouping().group_size(p.value.shape());
    let len = p.value.len();
    let theta = p.value.data_mut();
    let adam_k = || AdamCoefficients::new(h.lr, h.betas, h.eps, k);
    match method {
        Method::Sgd if h.momentum > 0.0 => {
            sgd::sgd_momentum(theta, buffer(&mut s.m1, len), grad, h.lr, h.momentum)
        }
        Method::Sgd => sgd::sgd(theta, grad, h.lr),
        Method::Adam => {
            let m1 = s.m1.get_or_insert_with(|| vec![0.0; len]);
            let m2 = s.m2.get_or_insert_with(|| vec![0.0; len]);
            adam(theta, m1, m2, grad, &adam_k())
        }
        Method::ProxGd => proxgd(theta, grad, h.lr, reg, gs),
        Method::LinBreg => {
            let v = s.v.as_mut().expect("initialised by update");
            if h.momentum > 0.0 {
                let m = s.m1.get_or_insert_with(|| vec![0.0; len]);
                linbreg::linbreg_momentum(theta, v, m, grad, h.lr, h.momentum, h.delta, reg, gs)
            } else {
                linbreg::linbreg(theta, v, grad, h.lr, h.delta, reg, gs)
            }
        }
        Method::AdaBreg => {
            let v = s.v.as_mut().expect("initialised by update");
            let m1 = s.m1.get_or_insert_with(|| vec![0.0; len]);
            let m2 = s.m2.get_or_insert_with(|| vec![0.0; len]);
            adabreg(theta, v, m1, m2, grad, &adam_k(), h.delta, reg, gs)
        }
    }
}

impl Optimizer for GroupedOptimizer {
    /// Tensors are updated in parallel (rayon over tensors, and over chunks
    /// within large tensors), each by its method's fused kernel.
    fn step(&mut self, params: &mut [&mut Parameter], grads: &[Tensor]) -> Result<(), OptimError> {
        self.step_with(params, grads, StepMode::Full)
    }

    fn groups(&self) -> &[ParamGroup] {
        &self.groups
    }

    fn groups_mut(&mut self) -> &mut [ParamGroup] {
        &mut self.groups
    }
}
