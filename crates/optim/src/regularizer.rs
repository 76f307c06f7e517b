//! Regularizers `J`: value, proximal map and a subgradient (SPEC §2).
//!
//! Every regularizer works on a flat parameter slice split into consecutive
//! *groups* of `group_size` values: a row `W[i, :]` of a dense weight, a
//! `k×k` kernel `K[out, in]` of a conv weight, or single elements. The fused
//! optimizer kernels hand it chunks made of whole groups, so one call to
//! [`Regularizer::prox`] never straddles a group.

use bregman_tensor::Tensor;

/// How a regularizer groups the values of a parameter tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grouping {
    /// Each value on its own (ℓ1, none).
    Elements,
    /// All values after the first dimension: a neuron's row `W[i, :]` of a
    /// dense weight, or a whole filter `K[i, :, :, :]` of a conv weight.
    Rows,
    /// Each `k×k` kernel `K[out, in]` of a conv weight (the last two dimensions).
    Kernels,
}

impl Grouping {
    /// The group size for a tensor of `shape`.
    pub fn group_size(self, shape: &[usize]) -> usize {
        let size = match self {
            Grouping::Elements => 1,
            Grouping::Rows => shape.iter().skip(1).product(),
            Grouping::Kernels if shape.len() >= 2 => {
                shape[shape.len() - 2] * shape[shape.len() - 1]
            }
            Grouping::Kernels => shape.iter().product(),
        };
        size.max(1)
    }
}

/// A convex regularizer `J` with strength `λ` (SPEC §2).
pub trait Regularizer: Send + Sync + std::fmt::Debug {
    /// A short name (`l1`, `group_rows`, ...).
    fn name(&self) -> String;

    /// The strength `λ`.
    fn lambda(&self) -> f32;

    /// Changes `λ` (the λ scheduler does this during training).
    fn set_lambda(&mut self, lambda: f32);

    /// How values form groups.
    fn grouping(&self) -> Grouping;

    /// `J(θ)` of a slice made of whole groups of `group_size` values.
    fn value(&self, theta: &[f32], group_size: usize) -> f64;

    /// In place `x ← prox_{tJ}(x) = argmin_y ½‖y − x‖² + t·J(y)`, on whole groups.
    fn prox(&self, x: &mut [f32], group_size: usize, t: f32);

    /// Writes a subgradient `p ∈ ∂J(θ)` into `out` (same length as `theta`).
    fn subgradient(&self, theta: &[f32], group_size: usize, out: &mut [f32]);

    /// A boxed copy.
    fn clone_box(&self) -> Box<dyn Regularizer>;

    /// The prox as a per-element map, if it is one, so that the optimizer
    /// kernels can fuse it into their update loop (one pass over memory).
    fn elementwise(&self) -> Option<ElementwiseProx> {
        None
    }
}

/// An element-wise proximal map `prox_{tJ}`, applied inside a kernel's loop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ElementwiseProx {
    /// `J = 0`: the identity.
    Identity,
    /// ℓ1 with strength λ: soft shrinkage by `tλ`.
    Shrink {
        /// λ.
        lambda: f32,
    },
    /// Non-negative ℓ1 with strength λ: `max(x − tλ, 0)`.
    ShrinkNonnegative {
        /// λ.
        lambda: f32,
    },
}

impl Clone for Box<dyn Regularizer> {
    fn clone(&self) -> Self {
        self.clone_box()
    }
}

/// `J(θ)` of a whole tensor.
pub fn value_of(reg: &dyn Regularizer, theta: &Tensor) -> f64 {
    reg.value(theta.data(), reg.grouping().group_size(theta.shape()))
}

/// `prox_{tJ}(x)` of a whole tensor, in place.
pub fn prox_of(reg: &dyn Regularizer, x: &mut Tensor, t: f32) {
    let gs = reg.grouping().group_size(x.shape());
    reg.prox(x.data_mut(), gs, t);
}

/// A subgradient of a whole tensor.
pub fn subgradient_of(reg: &dyn Regularizer, theta: &Tensor) -> Tensor {
    let mut out = Tensor::zeros(theta.shape());
    reg.subgradient(
        theta.data(),
        reg.grouping().group_size(theta.shape()),
        out.data_mut(),
    );
    out
}

/// `J = 0`: the prox is the identity (biases, batchnorm parameters, dense training).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRegularizer;

impl Regularizer for NoRegularizer {
    fn name(&self) -> String {
        "none".into()
    }
    fn lambda(&self) -> f32 {
        0.0
    }
    fn set_lambda(&mut self, _: f32) {}
    fn grouping(&self) -> Grouping {
        Grouping::Elements
    }
    fn value(&self, _: &[f32], _: usize) -> f64 {
        0.0
    }
    fn prox(&self, _: &mut [f32], _: usize, _: f32) {}
    fn subgradient(&self, _: &[f32], _: usize, out: &mut [f32]) {
        out.fill(0.0);
    }
    fn clone_box(&self) -> Box<dyn Regularizer> {
        Box::new(*self)
    }
    fn elementwise(&self) -> Option<ElementwiseProx> {
        Some(ElementwiseProx::Identity)
    }
}

/// `sign(x)` with `sign(0) = 0`.
#[inline]
fn sign(x: f32) -> f32 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// ℓ1 (eq. 1.1): `J(θ) = λ Σ|θᵢ|`; prox = soft shrinkage
/// `sign(x)·max(|x| − tλ, 0)`; subgradient `λ·sign(θ)`. With `nonnegative`,
/// the prox also clamps at 0: `max(x − tλ, 0)`.
#[derive(Debug, Clone, Copy)]
pub struct L1 {
    /// Strength λ.
    pub lambda: f32,
    /// Restrict to `θ ≥ 0`.
    pub nonnegative: bool,
}

impl L1 {
    /// ℓ1 with strength `lambda`.
    pub fn new(lambda: f32) -> L1 {
        L1 {
            lambda,
            nonnegative: false,
        }
    }

    /// Non-negative ℓ1 with strength `lambda`.
    pub fn nonnegative(lambda: f32) -> L1 {
        L1 {
            lambda,
            nonnegative: true,
        }
    }
}

/// Soft shrinkage of one value by `threshold ≥ 0` (eq. 1.3):
/// `sign(x)·max(|x| − threshold, 0)`, written branch-free as
/// `x − clamp(x, −threshold, threshold)` so that the loop vectorises.
#[inline]
pub fn shrink(x: f32, threshold: f32) -> f32 {
    let clamped = if x > threshold {
        threshold
    } else if x < -threshold {
        -threshold
    } else {
        x
    };
    x - clamped
}

impl Regularizer for L1 {
    fn name(&self) -> String {
        if self.nonnegative { "l1_pos" } else { "l1" }.into()
    }
    fn lambda(&self) -> f32 {
        self.lambda
    }
    fn set_lambda(&mut self, lambda: f32) {
        self.lambda = lambda;
    }
    fn grouping(&self) -> Grouping {
        Grouping::Elements
    }
    fn value(&self, theta: &[f32], _: usize) -> f64 {
        self.lambda as f64 * theta.iter().map(|&x| x.abs() as f64).sum::<f64>()
    }
    fn prox(&self, x: &mut [f32], _: usize, t: f32) {
        let th = t * self.lambda;
        if self.nonnegative {
            x.iter_mut().for_each(|v| *v = (*v - th).max(0.0));
        } else {
            x.iter_mut().for_each(|v| *v = shrink(*v, th));
        }
    }
    fn subgradient(&self, theta: &[f32], _: usize, out: &mut [f32]) {
        out.iter_mut()
            .zip(theta)
            .for_each(|(o, &x)| *o = self.lambda * sign(x));
    }
    fn clone_box(&self) -> Box<dyn Regularizer> {
        Box::new(*self)
    }
    fn elementwise(&self) -> Option<ElementwiseProx> {
        let lambda = self.lambda;
        Some(if self.nonnegative {
            ElementwiseProx::ShrinkNonnegative { lambda }
        } else {
            ElementwiseProx::Shrink { lambda }
        })
    }
}

/// Group ℓ1,2 (eq. 1.2, 1.14): `J(θ) = λ√n Σ_groups ‖θ_g‖₂` with `n` the group
/// size; prox per group `x_g·max(1 − tλ√n/‖x_g‖₂, 0)` (a zero group stays 0);
/// subgradient `λ√n·θ_g/‖θ_g‖₂` (0 for a zero group).
#[derive(Debug, Clone, Copy)]
pub struct GroupL12 {
    /// Strength λ.
    pub lambda: f32,
    /// Rows (neurons/filters) or conv kernels.
    pub grouping: Grouping,
}

impl GroupL12 {
    /// Group sparsity over rows of dense weights (neurons).
    pub fn rows(lambda: f32) -> GroupL12 {
        GroupL12 {
            lambda,
            grouping: Grouping::Rows,
        }
    }

    /// Group sparsity over `k×k` kernels of conv weights.
    pub fn kernels(lambda: f32) -> GroupL12 {
        GroupL12 {
            lambda,
            grouping: Grouping::Kernels,
        }
    }
}

/// ‖x‖₂ accumulated in f64, in eight interleaved partial sums combined in a
/// fixed order: the same bits on every run and thread count, and a loop the
/// compiler can vectorise (one running sum is a chain of dependent adds).
#[inline]
fn norm2(x: &[f32]) -> f64 {
    let mut acc = [0.0f64; 8];
    let lanes = x.chunks_exact(8);
    let rest = lanes.remainder();
    for c in lanes {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += (v as f64) * (v as f64);
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for &v in rest {
        s += (v as f64) * (v as f64);
    }
    s.sqrt()
}

/// Group shrinkage of one group by `threshold`: `x·max(1 − threshold/‖x‖, 0)`.
#[inline]
pub fn group_shrink(x: &mut [f32], threshold: f32) {
    let n = norm2(x);
    let factor = if n > 0.0 {
        (1.0 - threshold as f64 / n).max(0.0)
    } else {
        0.0
    };
    let f = factor as f32;
    x.iter_mut().for_each(|v| *v *= f);
}

impl Regularizer for GroupL12 {
    fn name(&self) -> String {
        match self.grouping {
            Grouping::Kernels => "group_kernels",
            _ => "group_rows",
        }
        .into()
    }
    fn lambda(&self) -> f32 {
        self.lambda
    }
    fn set_lambda(&mut self, lambda: f32) {
        self.lambda = lambda;
    }
    fn grouping(&self) -> Grouping {
        self.grouping
    }
    fn value(&self, theta: &[f32], gs: usize) -> f64 {
        let w = self.lambda as f64 * (gs as f64).sqrt();
        w * theta.chunks(gs).map(norm2).sum::<f64>()
    }
    fn prox(&self, x: &mut [f32], gs: usize, t: f32) {
        let th = t * self.lambda * (gs as f32).sqrt();
        crate::kernels::simd!(x.chunks_mut(gs).for_each(|g| group_shrink(g, th)));
    }
    fn subgradient(&self, theta: &[f32], gs: usize, out: &mut [f32]) {
        let w = self.lambda as f64 * (gs as f64).sqrt();
        for (o, t) in out.chunks_mut(gs).zip(theta.chunks(gs)) {
            let n = norm2(t);
            for (oi, &ti) in o.iter_mut().zip(t) {
                *oi = if n > 0.0 {
                    (w * ti as f64 / n) as f32
                } else {
                    0.0
                };
            }
        }
    }
    fn clone_box(&self) -> Box<dyn Regularizer> {
        Box::new(*self)
    }
}

/// ℓ1 + group ℓ1,2: `J = J_ℓ1 + J_group`; prox = `prox_group(prox_ℓ1(x))`
/// (exact for this sum); subgradient = sum of both.
#[derive(Debug, Clone, Copy)]
pub struct L1PlusGroup {
    /// The ℓ1 part.
    pub l1: L1,
    /// The group part.
    pub group: GroupL12,
}

impl Regularizer for L1PlusGroup {
    fn name(&self) -> String {
        format!("l1+{}", self.group.name())
    }
    /// The group part's λ.
    fn lambda(&self) -> f32 {
        self.group.lambda
    }
    /// Sets both parts' λ.
    fn set_lambda(&mut self, lambda: f32) {
        self.l1.lambda = lambda;
        self.group.lambda = lambda;
    }
    fn grouping(&self) -> Grouping {
        self.group.grouping
    }
    fn value(&self, theta: &[f32], gs: usize) -> f64 {
        self.l1.value(theta, gs) + self.group.value(theta, gs)
    }
    fn prox(&self, x: &mut [f32], gs: usize, t: f32) {
        self.l1.prox(x, gs, t);
        self.group.prox(x, gs, t);
    }
    fn subgradient(&self, theta: &[f32], gs: usize, out: &mut [f32]) {
        self.l1.subgradient(theta, gs, out);
        let mut g = vec![0.0f32; out.len()];
        self.group.subgradient(theta, gs, &mut g);
        out.iter_mut().zip(&g).for_each(|(o, v)| *o += v);
    }
    fn clone_box(&self) -> Box<dyn Regularizer> {
        Box::new(*self)
    }
}
