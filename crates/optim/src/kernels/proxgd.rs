//! Proximal gradient descent (eq. 1.5): `θ ← prox_{τJ}(θ − τ g)`.

use rayon::prelude::*;

use super::{chunk_len, parallel, simd, with_prox};
use crate::Regularizer;

/// ProxGD step; `group_size` is the regularizer's group size for this tensor.
pub fn proxgd(theta: &mut [f32], g: &[f32], tau: f32, reg: &dyn Regularizer, group_size: usize) {
    with_prox!(reg, tau, group_size, |prox, post| proxgd_with(
        theta, g, tau, prox, post
    ))
}

fn proxgd_with(
    theta: &mut [f32],
    g: &[f32],
    tau: f32,
    prox: impl Fn(f32) -> f32 + Sync,
    post: Option<(&dyn Regularizer, usize)>,
) {
    let c = chunk_len(post.map_or(1, |p| p.1));
    let body = |(th, g): (&mut [f32], &[f32])| {
        simd!({
            for (t, &g) in th.iter_mut().zip(g) {
                *t = prox(*t - tau * g); // θ ← prox_{τJ}(θ − τg)   (1.5)
            }
        });
        if let Some((reg, gs)) = post {
            reg.prox(th, gs, tau);
        }
    };
    if parallel(theta.len()) {
        theta.par_chunks_mut(c).zip(g.par_chunks(c)).for_each(body);
    } else {
        theta.chunks_mut(c).zip(g.chunks(c)).for_each(body);
    }
}
