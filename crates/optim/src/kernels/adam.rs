//! Adam (baseline), bias-corrected as PyTorch:
//! `m₁ ← β₁m₁ + (1−β₁)g; m₂ ← β₂m₂ + (1−β₂)g²;`
//! `θ ← θ − (τ/(1−β₁ᵏ)) · m₁ / (√m₂/√(1−β₂ᵏ) + ε)`.

use rayon::prelude::*;

use super::{chunk_len, parallel, simd};

/// Coefficients of step `k` (1-based).
#[derive(Debug, Clone, Copy)]
pub struct AdamCoefficients {
    /// β₁.
    pub beta1: f32,
    /// β₂.
    pub beta2: f32,
    /// `τ / (1 − β₁ᵏ)`.
    pub step_size: f32,
    /// `1 / √(1 − β₂ᵏ)`.
    pub inv_sqrt_bc2: f32,
    /// ε.
    pub eps: f32,
}

impl AdamCoefficients {
    /// Coefficients for step `k ≥ 1` with learning rate `tau`.
    pub fn new(tau: f32, (beta1, beta2): (f32, f32), eps: f32, k: u64) -> AdamCoefficients {
        let k = k.min(i32::MAX as u64) as i32;
        let bc1 = 1.0 - (beta1 as f64).powi(k);
        let bc2 = 1.0 - (beta2 as f64).powi(k);
        AdamCoefficients {
            beta1,
            beta2,
            step_size: (tau as f64 / bc1) as f32,
            inv_sqrt_bc2: (1.0 / bc2.sqrt()) as f32,
            eps,
        }
    }

    /// Updates the moments with `g` and returns the step `m̂₁/(√m̂₂ + ε)·τ`.
    #[inline]
    pub fn update(&self, m1: &mut f32, m2: &mut f32, g: f32) -> f32 {
        *m1 = self.beta1 * *m1 + (1.0 - self.beta1) * g;
        *m2 = self.beta2 * *m2 + (1.0 - self.beta2) * g * g;
        self.step_size * *m1 / (m2.sqrt() * self.inv_sqrt_bc2 + self.eps)
    }
}

/// Adam step.
pub fn adam(theta: &mut [f32], m1: &mut [f32], m2: &mut [f32], g: &[f32], k: &AdamCoefficients) {
    let c = chunk_len(1);
    #[allow(clippy::type_complexity)]
    let body = |((th, g), (m1, m2)): ((&mut [f32], &[f32]), (&mut [f32], &mut [f32]))| {
        simd!({
            for (((t, &g), a), b) in th.iter_mut().zip(g).zip(m1.iter_mut()).zip(m2.iter_mut()) {
                *t -= k.update(a, b, g);
            }
        });
    };
    if parallel(theta.len()) {
        theta
            .par_chunks_mut(c)
            .zip(g.par_chunks(c))
            .zip(m1.par_chunks_mut(c).zip(m2.par_chunks_mut(c)))
            .for_each(body);
    } else {
        theta
            .chunks_mut(c)
            .zip(g.chunks(c))
            .zip(m1.chunks_mut(c).zip(m2.chunks_mut(c)))
            .for_each(body);
    }
}
