//! SGD, optionally with heavy-ball momentum (baseline):
//! `θ ← θ − τ g`, or `b ← β b + g; θ ← θ − τ b` (PyTorch's form, no dampening).

use rayon::prelude::*;

use super::{chunk_len, parallel, simd};

/// Plain SGD step.
pub fn sgd(theta: &mut [f32], g: &[f32], tau: f32) {
    let c = chunk_len(1);
    let body = |(th, g): (&mut [f32], &[f32])| {
        simd!({
            for (t, &g) in th.iter_mut().zip(g) {
                *t -= tau * g;
            }
        });
    };
    if parallel(theta.len()) {
        theta.par_chunks_mut(c).zip(g.par_chunks(c)).for_each(body);
    } else {
        theta.chunks_mut(c).zip(g.chunks(c)).for_each(body);
    }
}

/// SGD with momentum `beta`; `b` is the momentum buffer.
pub fn sgd_momentum(theta: &mut [f32], b: &mut [f32], g: &[f32], tau: f32, beta: f32) {
    let c = chunk_len(1);
    let body = |(th, (b, g)): (&mut [f32], (&mut [f32], &[f32]))| {
        simd!({
            for ((t, b), &g) in th.iter_mut().zip(b.iter_mut()).zip(g) {
                *b = beta * *b + g;
                *t -= tau * *b;
            }
        });
    };
    if parallel(theta.len()) {
        theta
            .par_chunks_mut(c)
            .zip(b.par_chunks_mut(c).zip(g.par_chunks(c)))
            .for_each(body);
    } else {
        theta
            .chunks_mut(c)
            .zip(b.chunks_mut(c).zip(g.chunks(c)))
            .for_each(body);
    }
}
