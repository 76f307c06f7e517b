//! Batch normalisation in training mode (batch statistics), per channel `c`
//! over the `M = N·H·W` values of that channel:
//!
//! ```text
//! μ = (1/M) Σ x,   σ² = (1/M) Σ (x − μ)²,   x̂ = (x − μ)/√(σ² + ε),   y = γ x̂ + β
//! ```
//!
//! Backward, through the mean and the variance:
//! `∂L/∂β = Σ g`, `∂L/∂γ = Σ g x̂`, `∂L/∂x = γ/(M √(σ²+ε)) · (M g − Σ g − x̂ Σ g x̂)`.
//!
//! Inputs may be `[N, C, H, W]` (BatchNorm2d) or `[N, C]` (BatchNorm1d).

use bregman_tensor::parallel::zeroed_chunks;
use bregman_tensor::reduce::lane_sum2;
use bregman_tensor::Tensor;
use rayon::prelude::*;

use crate::{Backward, Tape, Var};

/// Batch statistics of one forward pass, for the running averages.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchStats {
    /// Per-channel mean.
    pub mean: Vec<f32>,
    /// Per-channel *biased* variance (divided by `M`).
    pub var: Vec<f32>,
    /// Number of values per channel, `M = N·H·W` (for the unbiased correction).
    pub count: usize,
}

/// `(N, C, H·W)` for a 2-D or 4-D input.
fn dims(x: &Tensor) -> (usize, usize, usize) {
    match x.shape() {
        [n, c] => (*n, *c, 1),
        [n, c, h, w] => (*n, *c, h * w),
        s => panic!("batchnorm: expected [N, C] or [N, C, H, W], got {s:?}"),
    }
}

/// `out = a[c]·x + b[c]` per channel, into a new tensor.
fn channel_affine(x: &Tensor, a: &[f32], b: &[f32]) -> Tensor {
    let (_, c, p) = dims(x);
    let xd = x.data();
    // One plane per task, zeroed in cache right before it is written.
    let out = zeroed_chunks(
        xd.len(),
        p,
        true,
        || (),
        |_, i, op| {
            let (ac, bc) = (a[i % c], b[i % c]);
            let xp = &xd[i * p..][..op.len()];
            op.iter_mut().zip(xp).for_each(|(o, &v)| *o = ac * v + bc);
        },
    );
    Tensor::from_vec(x.shape(), out).expect("same length")
}

fn check_params(x: &Tensor, gamma: &Tensor, beta: &Tensor) {
    let c = dims(x).1;
    assert!(
        gamma.shape() == [c] && beta.shape() == [c],
        "batchnorm: input {:?} needs weight and bias of shape [{c}], got {:?} and {:?}",
        x.shape(),
        gamma.shape(),
        beta.shape()
    );
}

/// Inference-mode forward: normalise with given (running) statistics.
///
/// **Panics** on a shape mismatch.
pub fn forward_eval(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    mean: &[f32],
    var: &[f32],
    eps: f32,
) -> Tensor {
    check_params(x, gamma, beta);
    let (g, b) = (gamma.data(), beta.data());
    let scale: Vec<f32> = (0..g.len()).map(|c| g[c] / (var[c] + eps).sqrt()).collect();
    let shift: Vec<f32> = (0..g.len()).map(|c| b[c] - mean[c] * scale[c]).collect();
    channel_affine(x, &scale, &shift)
}

/// Training-mode forward without a tape; returns `y`, the per-channel mean
/// and `1/√(σ²+ε)`, and the stats. One pass reads `x` for both statistics
/// (shifted sums, see below) and one writes `y`; `x̂` is not stored, the
/// backward pass recomputes it from `x`.
fn forward_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f32,
) -> (Tensor, Vec<f32>, Vec<f32>, BatchStats) {
    check_params(x, gamma, beta);
    let d = dims(x);
    let m = (d.0 * d.2).max(1) as f64;
    let xd = x.data();
    // One pass for both statistics with the shifted-data formulas: with `K`
    // the channel's first value, μ = K + Σ(x−K)/M and σ² = Σ(x−K)²/M − (μ−K)².
    // The shift keeps the subtraction from cancelling when |μ| ≫ σ, and the
    // sums are in f64, so this matches a two-pass variance to f32 precision
    // while reading `x` once instead of twice.
    let (n, c, p) = d;
    let shift: Vec<f64> = (0..c)
        .map(|ch| if n * p > 0 { xd[ch * p] as f64 } else { 0.0 })
        .collect();
    let (mean, var): (Vec<f64>, Vec<f64>) = (0..c)
        .into_par_iter()
        .map(|ch| {
            let k = shift[ch];
            let (mut s1, mut s2) = (0.0f64, 0.0f64);
            for i in 0..n {
                let plane = &xd[(i * c + ch) * p..][..p];
                let (a, b) = lane_sum2(
                    plane,
                    plane,
                    |v, _| v as f64 - k,
                    |v, _| (v as f64 - k) * (v as f64 - k),
                );
                s1 += a;
                s2 += b;
            }
            let d1 = s1 / m;
            (k + d1, (s2 / m - d1 * d1).max(0.0))
        })
        .unzip();
    let inv_std: Vec<f32> = var
        .iter()
        .map(|&v| (1.0 / (v + eps as f64).sqrt()) as f32)
        .collect();
    let mean32: Vec<f32> = mean.iter().map(|&v| v as f32).collect();
    // y = γ (x − μ)/σ + β = a·x + b with a = γ/σ, b = β − μ a.
    let (g, b) = (gamma.data(), beta.data());
    let scale: Vec<f32> = (0..d.1).map(|c| g[c] * inv_std[c]).collect();
    let shift: Vec<f32> = (0..d.1).map(|c| b[c] - mean32[c] * scale[c]).collect();
    let y = channel_affine(x, &scale, &shift);
    let stats = BatchStats {
        mean: mean32.clone(),
        var: var.iter().map(|&v| v as f32).collect(),
        count: d.0 * d.2,
    };
    (y, mean32, inv_std, stats)
}

struct BatchNormBackward {
    mean: Vec<f32>,
    inv_std: Vec<f32>,
}

impl Backward for BatchNormBackward {
    /// `∂L/∂x` is written over the output gradient's buffer (each value is
    /// read once, right before its place is overwritten).
    fn backward(
        &self,
        inputs: &[&Tensor],
        _: &Tensor,
        grad: Tensor,
        needs: &[bool],
    ) -> Vec<Option<Tensor>> {
        let (x, gamma) = (inputs[0].data(), inputs[1].data());
        let d = dims(&grad);
        let (c, p) = (d.1, d.2);
        let m = (d.0 * d.2).max(1) as f32;
        // Σ g and Σ g x̂ per channel in one pass, x̂ = (x − μ)/σ recomputed.
        let (mean, inv_std) = (&self.mean, &self.inv_std);
        let sums: Vec<(f32, f32)> = (0..c)
            .into_par_iter()
            .map(|ch| {
                let (mu, is) = (mean[ch], inv_std[ch]);
                let (mut sg, mut sgx) = (0.0f64, 0.0f64);
                for i in 0..d.0 {
                    let o = (i * c + ch) * p;
                    let (a, b) = lane_sum2(
                        &grad.data()[o..o + p],
                        &x[o..o + p],
                        |g, _| g as f64,
                        |g, xv| g as f64 * ((xv - mu) * is) as f64,
                    );
                    sg += a;
                    sgx += b;
                }
                (sg as f32, sgx as f32)
            })
            .collect();
        let dx = needs[0].then(|| {
            let mut dx = grad;
            if p > 0 {
                dx.data_mut()
                    .par_chunks_mut(p)
                    .zip(x.par_chunks(p))
                    .enumerate()
                    .for_each(|(i, (dp, xp))| {
                        let ch = i % c;
                        let (mu, is) = (mean[ch], inv_std[ch]);
                        let (sg, sgx) = sums[ch];
                        let k = gamma[ch] * is / m;
                        for (dv, &xv) in dp.iter_mut().zip(xp) {
                            // `*dv` holds the output gradient g here.
                            *dv = k * (m * *dv - sg - (xv - mu) * is * sgx);
                        }
                    });
            }
            dx
        });
        let (sum_g, sum_gx): (Vec<f32>, Vec<f32>) = sums.into_iter().unzip();
        vec![
            dx,
            needs[1].then(|| Tensor::from_vec(&[c], sum_gx).expect("c values")),
            needs[2].then(|| Tensor::from_vec(&[c], sum_g).expect("c values")),
        ]
    }
}

impl<'a> Tape<'a> {
    /// Training-mode batch normalisation of `x` with scale `gamma` and shift
    /// `beta` (both `[C]`). Returns the output and the batch statistics.
    ///
    /// **Panics** on a shape mismatch.
    pub fn batchnorm(&mut self, x: Var, gamma: Var, beta: Var, eps: f32) -> (Var, BatchStats) {
        let (y, mean, inv_std, stats) =
            forward_train(self.value(x), self.value(gamma), self.value(beta), eps);
        let v = self.push(y, &[x, gamma, beta], BatchNormBackward { mean, inv_std });
        (v, stats)
    }
}
