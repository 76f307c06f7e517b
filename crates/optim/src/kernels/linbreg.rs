//! Linearized Bregman iterations (Alg. 1, eq. 2.8) and their momentum
//! variant (Alg. 2, eq. 2.14):
//!
//! ```text
//! LinBreg:           v ← v − τ g;                       θ ← prox_{δJ}(δ v)
//! LinBreg-momentum:  m ← β m + (1 − β) τ g;  v ← v − m;  θ ← prox_{δJ}(δ v)
//! ```
//!
//! `θ` is never read: it is recomputed from `v`. For ℓ1 the prox is
//! `δ·shrink(v; λ)` (eq. 1.3), so `θᵢ ≠ 0` exactly where `|vᵢ| > λ`.

use rayon::prelude::*;

use super::{chunk_len, parallel, simd, stream_theta, with_prox, write_theta};
use crate::Regularizer;

/// LinBreg step: reads `g`, `v`; writes `v`, `θ` (16 bytes per parameter).
pub fn linbreg(
    theta: &mut [f32],
    v: &mut [f32],
    g: &[f32],
    tau: f32,
    delta: f32,
    reg: &dyn Regularizer,
    group_size: usize,
) {
    with_prox!(reg, delta, group_size, |prox, post| {
        linbreg_with(theta, v, g, (tau, delta), prox, post)
    })
}

fn linbreg_with(
    theta: &mut [f32],
    v: &mut [f32],
    g: &[f32],
    (tau, delta): (f32, f32),
    prox: impl Fn(f32) -> f32 + Sync,
    post: Option<(&dyn Regularizer, usize)>,
) {
    let c = chunk_len(post.map_or(1, |p| p.1));
    let stream = stream_theta(theta.len(), post);
    let body = |(th, (v, g)): (&mut [f32], (&mut [f32], &[f32]))| {
        write_theta(th, stream, |o, th| {
            simd!({
                for ((t, v), &g) in th.iter_mut().zip(&mut v[o..]).zip(&g[o..]) {
                    *v -= tau * g; //          v ← v − τ∇L(θ)      (2.8, first line)
                    *t = prox(delta * *v); //  θ ← prox_{δJ}(δv)   (2.8, second line)
                }
            })
        });
        if let Some((reg, gs)) = post {
            reg.prox(th, gs, delta); // a group prox runs over the whole chunk
        }
    };
    if parallel(theta.len()) {
        theta
            .par_chunks_mut(c)
            .zip(v.par_chunks_mut(c).zip(g.par_chunks(c)))
            .for_each(body);
    } else {
        theta
            .chunks_mut(c)
            .zip(v.chunks_mut(c).zip(g.chunks(c)))
            .for_each(body);
    }
}

/// LinBreg-momentum step with momentum buffer `m` and momentum `beta`.
#[allow(clippy::too_many_arguments)]
pub fn linbreg_momentum(
    theta: &mut [f32],
    v: &mut [f32],
    m: &mut [f32],
    g: &[f32],
    tau: f32,
    beta: f32,
    delta: f32,
    reg: &dyn Regularizer,
    group_size: usize,
) {
    with_prox!(reg, delta, group_size, |prox, post| {
        momentum_with(theta, v, m, g, (tau, beta, delta), prox, post)
    })
}

fn momentum_with(
    theta: &mut [f32],
    v: &mut [f32],
    m: &mut [f32],
    g: &[f32],
    (tau, beta, delta): (f32, f32, f32),
    prox: impl Fn(f32) -> f32 + Sync,
    post: Option<(&dyn Regularizer, usize)>,
) {
    let c = chunk_len(post.map_or(1, |p| p.1));
    let stream = stream_theta(theta.len(), post);
    #[allow(clippy::type_complexity)]
    let body = |((th, v), (m, g)): ((&mut [f32], &mut [f32]), (&mut [f32], &[f32]))| {
        write_theta(th, stream, |o, th| {
            simd!({
                let state = th.iter_mut().zip(&mut v[o..]).zip(&mut m[o..]);
                for (((t, v), m), &g) in state.zip(&g[o..]) {
                    *m = beta * *m + (1.0 - beta) * tau * g; // m ← βm + (1−β)τg   (2.14)
                    *v -= *m; //                                v ← v − m
                    *t = prox(delta * *v); //                   θ ← prox_{δJ}(δv)
                }
            })
        });
        if let Some((reg, gs)) = post {
            reg.prox(th, gs, delta);
        }
    };
    if parallel(theta.len()) {
        theta
            .par_chunks_mut(c)
            .zip(v.par_chunks_mut(c))
            .zip(m.par_chunks_mut(c).zip(g.par_chunks(c)))
            .for_each(body);
    } else {
        theta
            .chunks_mut(c)
            .zip(v.chunks_mut(c))
            .zip(m.chunks_mut(c).zip(g.chunks(c)))
            .for_each(body);
    }
}
