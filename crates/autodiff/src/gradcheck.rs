//! Finite-difference gradient checking.
//!
//! For a function `f` of several tensors, [`check_gradients`] compares the
//! tape's vector-Jacobian product with central differences. A fixed random
//! cotangent `r` (same shape as the output) turns any output into the scalar
//! `s(θ) = Σ r ⊙ f(θ)`, accumulated in `f64`; then for every input element
//!
//! ```text
//! numeric = (s(θ + ε eᵢ) − s(θ − ε eᵢ)) / 2ε        analytic = (Jᵀ r)ᵢ from backward
//! ```
//!
//! and the check passes for element `i` of input `k` when both are finite and
//!
//! ```text
//! |analytic − numeric| ≤ atol·scale_k + rtol·|numeric| + noise
//! ```
//!
//! - `scale_k` is the largest numeric derivative of input `k` alone (floored
//!   at [`SCALE_FLOOR`]), so a large gradient of one input (a bias summed
//!   over a batch) does not loosen the check of another;
//! - `noise = NOISE_ULPS · f32::EPSILON · Σ|r ⊙ y| / ε` bounds the `f32`
//!   roundoff of the forward pass in the difference quotient (each output is
//!   off by a few ulps of its size; the quotient divides by `2ε`);
//! - the defaults `ε = 1e-2`, `atol = rtol = 1e-3` sit above the central
//!   difference's truncation error (`ε²/6·f‴ ≈ 2·10⁻⁵` for smooth ops) and
//!   below what a wrong rule gives: a factor 2, a `1/(n − 1)` for `1/n`, a
//!   2% scale error and a gradient sent to the wrong max-pool input all fail
//!   (`harness_catches_a_wrong_rule` in `tests/gradients.rs`).

use bregman_tensor::Tensor;

use crate::{Tape, Var};

/// Tolerances of a gradient check.
#[derive(Debug, Clone, Copy)]
pub struct GradCheck {
    /// Finite-difference step.
    pub eps: f32,
    /// Absolute tolerance, relative to the largest numeric derivative (≥ 1).
    pub atol: f64,
    /// Relative tolerance per element.
    pub rtol: f64,
}

impl Default for GradCheck {
    fn default() -> Self {
        GradCheck {
            eps: 1e-2,
            atol: 1e-3,
            rtol: 1e-3,
        }
    }
}

/// The smallest `scale_k`: below it an input's derivatives are all near zero
/// and are compared in absolute terms.
pub const SCALE_FLOOR: f64 = 1e-2;

/// Ulps of forward-pass roundoff allowed per unit of `Σ|r ⊙ y|`.
pub const NOISE_ULPS: f64 = 8.0;

/// Deterministic pseudo-random values in `[-1, 1)` (xorshift), for cotangents.
pub fn cotangent(shape: &[usize], seed: u64) -> Tensor {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    Tensor::from_fn(shape, |_| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    })
}

/// `Σ y ⊙ r` in `f64`: the scalar whose gradient a check compares.
pub fn weighted_sum(y: &Tensor, r: &Tensor) -> f64 {
    y.data()
        .iter()
        .zip(r.data())
        .map(|(&a, &b)| a as f64 * b as f64)
        .sum()
}

impl GradCheck {
    /// Checks the gradients of `f` with respect to every tensor in `inputs`.
    ///
    /// **Errors** with a description of the first mismatching element.
    pub fn check<F>(&self, inputs: &[Tensor], f: F) -> Result<(), String>
    where
        F: for<'t> Fn(&mut Tape<'t>, &[Var]) -> Var,
    {
        // Analytic: one backward pass with cotangent r.
        let mut tape = Tape::new();
        let vars: Vec<Var> = inputs.iter().map(|t| tape.leaf(t.clone())).collect();
        let out = f(&mut tape, &vars);
        let r = cotangent(tape.value(out).shape(), 0x5eed);
        tape.backward_with(out, r.clone());
        let analytic: Vec<Tensor> = vars
            .iter()
            .zip(inputs)
            .map(|(&v, t)| {
                tape.grad(v)
                    .cloned()
                    .unwrap_or_else(|| Tensor::zeros(t.shape()))
            })
            .collect();
        drop(tape);

        let eval = |xs: &[Tensor]| -> f64 {
            let mut tape = Tape::new();
            let vars: Vec<Var> = xs.iter().map(|t| tape.constant(t.clone())).collect();
            let out = f(&mut tape, &vars);
            weighted_sum(tape.value(out), &r)
        };
        let magnitude = {
            let mut tape = Tape::new();
            let vars: Vec<Var> = inputs.iter().map(|t| tape.constant(t.clone())).collect();
            let out = f(&mut tape, &vars);
            let y = tape.value(out);
            y.data()
                .iter()
                .zip(r.data())
                .map(|(&a, &b)| (a as f64 * b as f64).abs())
                .sum::<f64>()
        };
        let mut numeric: Vec<Vec<f64>> = Vec::new();
        let mut xs = inputs.to_vec();
        for k in 0..inputs.len() {
            let mut nk = Vec::with_capacity(inputs[k].len());
            for i in 0..inputs[k].len() {
                let orig = xs[k].data()[i];
                xs[k].data_mut()[i] = orig + self.eps;
                let plus = eval(&xs);
                xs[k].data_mut()[i] = orig - self.eps;
                let minus = eval(&xs);
                xs[k].data_mut()[i] = orig;
                nk.push((plus - minus) / (2.0 * self.eps as f64));
            }
            numeric.push(nk);
        }
        let analytic: Vec<Vec<f32>> = analytic.into_iter().map(Tensor::into_vec).collect();
        let noise = NOISE_ULPS * f32::EPSILON as f64 * magnitude / self.eps as f64;
        self.compare_with_noise(&analytic, &numeric, noise)
    }

    /// Compares analytic gradients (one vector per input) with numeric ones,
    /// using this check's tolerances (for harnesses that perturb values
    /// themselves, e.g. the parameters of a layer).
    ///
    /// **Errors** with a description of the first mismatching element.
    pub fn compare(&self, analytic: &[Vec<f32>], numeric: &[Vec<f64>]) -> Result<(), String> {
        self.compare_with_noise(analytic, numeric, 0.0)
    }

    /// [`GradCheck::compare`] allowing `noise` more absolute error per element
    /// (the forward pass's roundoff in the difference quotient).
    ///
    /// **Errors** with a description of the first mismatching element.
    pub fn compare_with_noise(
        &self,
        analytic: &[Vec<f32>],
        numeric: &[Vec<f64>],
        noise: f64,
    ) -> Result<(), String> {
        for (k, (a, n)) in analytic.iter().zip(numeric).enumerate() {
            if a.len() != n.len() {
                return Err(format!(
                    "input {k}: {} analytic vs {} numeric values",
                    a.len(),
                    n.len()
                ));
            }
            let scale = n.iter().fold(SCALE_FLOOR, |m, v| m.max(v.abs()));
            for (i, (&av, &nv)) in a.iter().zip(n).enumerate() {
                let err = (av as f64 - nv).abs();
                let tol = self.atol * scale + self.rtol * nv.abs() + noise;
                // A NaN or infinity on either side never matches.
                if err.is_nan() || err > tol || !av.is_finite() || !nv.is_finite() {
                    return Err(format!(
                        "input {k} element {i}: analytic {av} vs numeric {nv} (|diff| {err:.3e}, \
                         tolerance {tol:.3e}, scale {scale:.3e})"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// [`GradCheck::check`] with default tolerances.
///
/// **Errors** with a description of the first mismatching element.
pub fn check_gradients<F>(inputs: &[Tensor], f: F) -> Result<(), String>
where
    F: for<'t> Fn(&mut Tape<'t>, &[Var]) -> Var,
{
    GradCheck::default().check(inputs, f)
}
