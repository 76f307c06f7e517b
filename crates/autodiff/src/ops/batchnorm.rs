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

/// Per-channel `Σ f(x_i, y_i)` over a channel's planes, in `f64`, in a fixed order.
fn channel_sums(
    x: &[f32],
    y: &[f32],
    (n, c, p): (usize, usize, usize),
    f: impl Fn(f32, f32) -> f64 + Sync,
) -> Vec<f64> {
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let mut s = 0.0f64;
            for i in 0..n {
                let o = (i * c + ch) * p;
                s += x[o..o + p]
                    .iter()
                    .zip(&y[o..o + p])
                    .map(|(&a, &b)| f(a, b))
                    .sum::<f64>();
            }
            s
        })
        .collect()
}

/// Applies `out = a[c]·x + b[c]` per channel.
fn channel_affine(x: &Tensor, a: &[f32], b: &[f32]) -> Tensor {
    let (_, c, p) = dims(x);
    let mut out = x.clone();
    if p > 0 {
        out.data_mut()
            .par_chunks_mut(p)
            .enumerate()
            .for_each(|(i, plane)| {
                let (ac, bc) = (a[i % c], b[i % c]);
                plane.iter_mut().for_each(|v| *v = ac * *v + bc);
            });
    }
    out
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

/// Training-mode forward without a tape; returns `y`, `x̂`, `1/√(σ²+ε)` and the stats.
fn forward_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f32,
) -> (Tensor, Tensor, Vec<f32>, BatchStats) {
    check_params(x, gamma, beta);
    let d = dims(x);
    let m = (d.0 * d.2).max(1) as f64;
    let xd = x.data();
    let mean: Vec<f64> = channel_sums(xd, xd, d, |a, _| a as f64)
        .into_iter()
        .map(|s| s / m)
        .collect();
    let var: Vec<f64> = {
        let mean = &mean;
        let (n, c, p) = d;
        (0..c)
            .into_par_iter()
            .map(|ch| {
                let mut s = 0.0f64;
                for i in 0..n {
                    let o = (i * c + ch) * p;
                    s += xd[o..o + p]
                        .iter()
                        .map(|&a| (a as f64 - mean[ch]).powi(2))
                        .sum::<f64>();
                }
                s / m
            })
            .collect()
    };
    let inv_std: Vec<f32> = var
        .iter()
        .map(|&v| (1.0 / (v + eps as f64).sqrt()) as f32)
        .collect();
    let shift: Vec<f32> = mean
        .iter()
        .zip(&inv_std)
        .map(|(&mu, &s)| -(mu as f32) * s)
        .collect();
    let xhat = channel_affine(x, &inv_std, &shift);
    let y = channel_affine(&xhat, gamma.data(), beta.data());
    let stats = BatchStats {
        mean: mean.iter().map(|&v| v as f32).collect(),
        var: var.iter().map(|&v| v as f32).collect(),
        count: d.0 * d.2,
    };
    (y, xhat, inv_std, stats)
}

struct BatchNormBackward {
    xhat: Tensor,
    inv_std: Vec<f32>,
}

impl Backward for BatchNormBackward {
    fn backward(
        &self,
        inputs: &[&Tensor],
        _: &Tensor,
        grad: &Tensor,
        needs: &[bool],
    ) -> Vec<Option<Tensor>> {
        let gamma = inputs[1].data();
        let d = dims(grad);
        let m = (d.0 * d.2).max(1) as f32;
        let sum_g: Vec<f32> = channel_sums(grad.data(), grad.data(), d, |a, _| a as f64)
            .into_iter()
            .map(|s| s as f32)
            .collect();
        let sum_gx: Vec<f32> =
            channel_sums(grad.data(), self.xhat.data(), d, |a, b| a as f64 * b as f64)
                .into_iter()
                .map(|s| s as f32)
                .collect();
        let dx = needs[0].then(|| {
            let (c, p) = (d.1, d.2);
            let mut dx = grad.clone();
            if p > 0 {
                dx.data_mut()
                    .par_chunks_mut(p)
                    .zip(self.xhat.data().par_chunks(p))
                    .enumerate()
                    .for_each(|(i, (gp, xp))| {
                        let ch = i % c;
                        let k = gamma[ch] * self.inv_std[ch] / m;
                        for (gv, &xh) in gp.iter_mut().zip(xp) {
                            *gv = k * (m * *gv - sum_g[ch] - xh * sum_gx[ch]);
                        }
                    });
            }
            dx
        });
        let c = d.1;
        vec![
            dx,
            needs[1].then(|| Tensor::from_vec(&[c], sum_gx.clone()).expect("c values")),
            needs[2].then(|| Tensor::from_vec(&[c], sum_g.clone()).expect("c values")),
        ]
    }
}

impl<'a> Tape<'a> {
    /// Training-mode batch normalisation of `x` with scale `gamma` and shift
    /// `beta` (both `[C]`). Returns the output and the batch statistics.
    ///
    /// **Panics** on a shape mismatch.
    pub fn batchnorm(&mut self, x: Var, gamma: Var, beta: Var, eps: f32) -> (Var, BatchStats) {
        let (y, xhat, inv_std, stats) =
            forward_train(self.value(x), self.value(gamma), self.value(beta), eps);
        let v = self.push(y, &[x, gamma, beta], BatchNormBackward { xhat, inv_std });
        (v, stats)
    }
}
