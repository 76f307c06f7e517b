//! The Bregman updates restricted to a set of indices: the masked steps of
//! sparse backpropagation (only the support moves) and the correction of the
//! full step that follows them (the entries off the support move further).
//!
//! A masked step of LinBreg, LinBreg-momentum or AdaBreg applies the same
//! element-wise update as its full kernel (eq. 2.8, 2.14, Alg. 3), but only
//! at the indices of the support `S = {i : θᵢ ≠ 0}`, with the gradient read
//! there alone (elsewhere it was never computed):
//!
//! ```text
//! for i ∈ S:   vᵢ ← vᵢ − Δᵢ(gᵢ);   then θ ← prox_{δJ}(δ v) on S (or on S's groups)
//! ```
//!
//! The support is the one the run of masked steps started from (the
//! positions the layers' sparse forms keep for the run). Off it `v`, `θ = 0`
//! and the optimizer state stay as they are. A weight of the support may
//! reach 0 (`|vᵢ|` falls below λ) and still moves with the run, so it may
//! come back; none off it can enter — that is what the full steps are for. Serial per tensor (gathers and
//! scatters at a few percent of the entries; the tensors of a model run in
//! parallel), so the bits do not depend on the thread count.

use super::adam::AdamCoefficients;
use super::with_prox;
use crate::Regularizer;

/// `θ = prox_{δJ}(δ v)` recomputed at the sorted indices `idx`: at each
/// index for an element-wise prox, on each whole group that holds one of
/// them for a group prox (`J` couples a group's entries).
pub fn reprox(
    theta: &mut [f32],
    v: &[f32],
    idx: &[u32],
    delta: f32,
    reg: &dyn Regularizer,
    group_size: usize,
) {
    with_prox!(reg, delta, group_size, |prox, post| match post {
        None => {
            for &i in idx {
                let i = i as usize;
                theta[i] = prox(delta * v[i]);
            }
        }
        Some((reg, gs)) => {
            let gs = gs.max(1);
            let mut last = usize::MAX;
            for &i in idx {
                let group = i as usize / gs;
                if group == last {
                    continue;
                }
                last = group;
                let range = group * gs..(group + 1) * gs;
                theta[range.clone()]
                    .iter_mut()
                    .zip(&v[range.clone()])
                    .for_each(|(t, &v)| *t = delta * v);
                reg.prox(&mut theta[range], gs, delta);
            }
        }
    })
}

/// `vᵢ ← vᵢ − step(i)` at the sorted indices `support`, then θ there.
fn on_support(
    theta: &mut [f32],
    v: &mut [f32],
    support: &[u32],
    (delta, reg, gs): (f32, &dyn Regularizer, usize),
    mut step: impl FnMut(usize) -> f32,
) {
    for &i in support {
        let i = i as usize;
        v[i] -= step(i);
    }
    reprox(theta, v, support, delta, reg, gs);
}

/// Masked LinBreg step: `vᵢ ← vᵢ − τ gᵢ` on the support (eq. 2.8).
#[allow(clippy::too_many_arguments)]
pub fn linbreg_masked(
    theta: &mut [f32],
    v: &mut [f32],
    g: &[f32],
    support: &[u32],
    tau: f32,
    delta: f32,
    reg: &dyn Regularizer,
    group_size: usize,
) {
    on_support(theta, v, support, (delta, reg, group_size), |i| tau * g[i]);
}

/// Masked LinBreg-momentum step: `mᵢ ← β mᵢ + (1 − β) τ gᵢ; vᵢ ← vᵢ − mᵢ`
/// on the support (eq. 2.14); the momentum off the support is frozen.
#[allow(clippy::too_many_arguments)]
pub fn linbreg_momentum_masked(
    theta: &mut [f32],
    v: &mut [f32],
    m: &mut [f32],
    g: &[f32],
    support: &[u32],
    (tau, beta): (f32, f32),
    delta: f32,
    reg: &dyn Regularizer,
    group_size: usize,
) {
    on_support(theta, v, support, (delta, reg, group_size), |i| {
        m[i] = beta * m[i] + (1.0 - beta) * tau * g[i];
        m[i]
    });
}

/// Masked AdaBreg step: the moments and `v` move on the support (Alg. 3,
/// with the bias correction of the global step `k`); the moments off the
/// support are frozen.
#[allow(clippy::too_many_arguments)]
pub fn adabreg_masked(
    theta: &mut [f32],
    v: &mut [f32],
    m1: &mut [f32],
    m2: &mut [f32],
    g: &[f32],
    support: &[u32],
    k: &AdamCoefficients,
    delta: f32,
    reg: &dyn Regularizer,
    group_size: usize,
) {
    on_support(theta, v, support, (delta, reg, group_size), |i| {
        k.update(&mut m1[i], &mut m2[i], g[i])
    });
}

/// The correction of a full step after masked ones: at the sorted indices
/// `off` (the entries that were off the support before the step, whose `v`
/// the masked steps left alone), the step's change of `v` is multiplied by
/// `scale` — `v = v_old + scale·(v − v_old)` — and θ recomputed there.
/// `scale` is the number of steps the full step stands for.
#[allow(clippy::too_many_arguments)]
pub fn scale_off_support(
    theta: &mut [f32],
    v: &mut [f32],
    v_old: &[f32],
    off: &[u32],
    scale: f32,
    delta: f32,
    reg: &dyn Regularizer,
    group_size: usize,
) {
    for &i in off {
        let i = i as usize;
        v[i] = v_old[i] + scale * (v[i] - v_old[i]);
    }
    reprox(theta, v, off, delta, reg, group_size);
}
