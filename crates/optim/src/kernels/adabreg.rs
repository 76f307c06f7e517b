//! AdaBreg (Alg. 3): Adam's preconditioned, bias-corrected step applied to
//! the subgradient variable `v` instead of `θ`:
//!
//! ```text
//! m₁ ← β₁m₁ + (1−β₁)g;  m₂ ← β₂m₂ + (1−β₂)g²
//! v  ← v − (τ/(1−β₁ᵏ)) · m₁ / (√m₂/√(1−β₂ᵏ) + ε);   θ ← prox_{δJ}(δ v)
//! ```

use rayon::prelude::*;

use super::adam::AdamCoefficients;
use super::{chunk_len, parallel, simd, stream_theta, with_prox, write_theta};
use crate::Regularizer;

/// AdaBreg step: reads `g`, `v`, `m₁`, `m₂`; writes `v`, `m₁`, `m₂`, `θ`.
#[allow(clippy::too_many_arguments)]
pub fn adabreg(
    theta: &mut [f32],
    v: &mut [f32],
    m1: &mut [f32],
    m2: &mut [f32],
    g: &[f32],
    k: &AdamCoefficients,
    delta: f32,
    reg: &dyn Regularizer,
    group_size: usize,
) {
    with_prox!(reg, delta, group_size, |prox, post| adabreg_with(
        theta, v, m1, m2, g, k, delta, prox, post
    ))
}

#[allow(clippy::too_many_arguments)]
fn adabreg_with(
    theta: &mut [f32],
    v: &mut [f32],
    m1: &mut [f32],
    m2: &mut [f32],
    g: &[f32],
    k: &AdamCoefficients,
    delta: f32,
    prox: impl Fn(f32) -> f32 + Sync,
    post: Option<(&dyn Regularizer, usize)>,
) {
    let c = chunk_len(post.map_or(1, |p| p.1));
    type Chunk<'s> = (
        (&'s mut [f32], &'s mut [f32]),
        ((&'s mut [f32], &'s mut [f32]), &'s [f32]),
    );
    let stream = stream_theta(theta.len(), post);
    let body = |((th, v), ((m1, m2), g)): Chunk<'_>| {
        write_theta(th, stream, |o, th| {
            let n = th.len();
            // Five slices of the same length n: the indexed loop below needs
            // no bounds checks and reads like Alg. 3.
            let (v, m1, m2, g) = (
                &mut v[o..o + n],
                &mut m1[o..o + n],
                &mut m2[o..o + n],
                &g[o..o + n],
            );
            simd!(for i in 0..n {
                v[i] -= k.update(&mut m1[i], &mut m2[i], g[i]); // v ← v − τ̂ m̂₁/(√m̂₂ + ε)  (Alg. 3)
                th[i] = prox(delta * v[i]); //                      θ ← prox_{δJ}(δv)
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
            .zip(
                m1.par_chunks_mut(c)
                    .zip(m2.par_chunks_mut(c))
                    .zip(g.par_chunks(c)),
            )
            .for_each(body);
    } else {
        theta
            .chunks_mut(c)
            .zip(v.chunks_mut(c))
            .zip(m1.chunks_mut(c).zip(m2.chunks_mut(c)).zip(g.chunks(c)))
            .for_each(body);
    }
}
