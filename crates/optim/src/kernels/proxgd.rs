//! Proximal gradient descent (eq. 1.5): `θ ← prox_{τJ}(θ − τ g)`.

use rayon::prelude::*;

use super::{chunk_len, parallel};
use crate::Regularizer;

/// ProxGD step; `group_size` is the regularizer's group size for this tensor.
pub fn proxgd(theta: &mut [f32], g: &[f32], tau: f32, reg: &dyn Regularizer, group_size: usize) {
    let c = chunk_len(group_size);
    let body = |(th, g): (&mut [f32], &[f32])| {
        for (t, &g) in th.iter_mut().zip(g) {
            *t -= tau * g;
        }
        reg.prox(th, group_size, tau);
    };
    if parallel(theta.len()) {
        theta.par_chunks_mut(c).zip(g.par_chunks(c)).for_each(body);
    } else {
        theta.chunks_mut(c).zip(g.chunks(c)).for_each(body);
    }
}
