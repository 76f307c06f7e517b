//! Sparse initialisation (SPEC §3, paper §4.1).
//!
//! Weights: `W = W̃ ⊙ M` with `M ~ Bernoulli(r)` drawn per element, per row
//! (neuron) or per `k×k` kernel, and `W̃` Kaiming-normal times a gain:
//! `W̃ ~ N(0, gain² · 2/fan_in)`. The paper's `Var[W̃] = α/r`, `α = 2/fan_in`,
//! is `gain = 1/√r`; the authors' code uses `gain = 0.7/√r` for the MLP, 10 for
//! the conv net, 5 for the ResNet and the autoencoder.
//! Biases are never zero: `U[0, b/√fan_in]` (`b = 1`, or 10 for the conv net).
//! BatchNorm parameters keep their (1, 0) initialisation.

use bregman_layers::{ParamKind, Parameter};
use rand::Rng;
use rand_distr::{Distribution, Normal};

use crate::OptimError;

/// What one Bernoulli draw of the mask covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskMode {
    /// One draw per weight.
    Elements,
    /// One draw per row (neuron of a dense layer, filter of a conv).
    Rows,
    /// One draw per `k×k` kernel `K[out, in]` (conv weights; dense weights fall back to elements).
    Kernels,
}

/// Settings of the sparse initialisation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SparseInit {
    /// Fraction `r ∈ (0, 1]` of weights (or rows/kernels) kept non-zero; the
    /// reference code calls it "sparsity" although it is the kept fraction.
    pub density: f32,
    /// Mask granularity for dense weights.
    pub linear_mask: MaskMode,
    /// Mask granularity for conv weights.
    pub conv_mask: MaskMode,
    /// Multiplier of the Kaiming-normal standard deviation.
    pub gain: f32,
    /// `b` in the bias distribution `U[0, b/√fan_in]`.
    pub bias_scale: f32,
}

impl SparseInit {
    /// The authors' MLP setting: element masks, gain `0.7/√r`, `b = 1`.
    pub fn mlp(density: f32) -> SparseInit {
        SparseInit {
            density,
            linear_mask: MaskMode::Elements,
            conv_mask: MaskMode::Elements,
            gain: 0.7 / density.sqrt(),
            bias_scale: 1.0,
        }
    }
}

/// Re-initialises the weights and biases of `params` (model order: a bias
/// takes the fan-in of the weight before it).
///
/// **Errors** if the density is not in `(0, 1]` or the gain is not finite.
pub fn sparse_init(
    params: &mut [&mut Parameter],
    cfg: &SparseInit,
    rng: &mut impl Rng,
) -> Result<(), OptimError> {
    if !(cfg.density > 0.0 && cfg.density <= 1.0) {
        return Err(OptimError::InvalidHyper {
            field: "density",
            value: cfg.density as f64,
            why: "must be in (0, 1]",
        });
    }
    if !cfg.gain.is_finite() || !cfg.bias_scale.is_finite() {
        return Err(OptimError::InvalidHyper {
            field: "gain",
            value: cfg.gain as f64,
            why: "must be finite",
        });
    }
    let mut fan_in = 1usize;
    for p in params.iter_mut() {
        let shape = p.value.shape().to_vec();
        match p.kind {
            ParamKind::LinearWeight | ParamKind::ConvWeight => {
                fan_in = shape.iter().skip(1).product::<usize>().max(1);
                let mode = if p.kind == ParamKind::LinearWeight {
                    cfg.linear_mask
                } else {
                    cfg.conv_mask
                };
                let group = match mode {
                    MaskMode::Elements => 1,
                    MaskMode::Rows => fan_in,
                    MaskMode::Kernels if shape.len() == 4 => shape[2] * shape[3],
                    MaskMode::Kernels => 1,
                };
                let std = cfg.gain * (2.0 / fan_in as f32).sqrt();
                let normal = Normal::new(0.0f32, std).map_err(|_| OptimError::InvalidHyper {
                    field: "gain",
                    value: cfg.gain as f64,
                    why: "gives an invalid standard deviation",
                })?;
                for g in p.value.data_mut().chunks_mut(group) {
                    let keep = rng.gen_bool(cfg.density as f64);
                    for w in g.iter_mut() {
                        let x = normal.sample(rng);
                        *w = if keep { x } else { 0.0 };
                    }
                }
            }
            ParamKind::Bias => {
                let hi = cfg.bias_scale / (fan_in as f32).sqrt();
                for b in p.value.data_mut() {
                    *b = if hi > 0.0 {
                        rng.gen_range(0.0..hi)
                    } else {
                        0.0
                    };
                }
            }
            ParamKind::BnWeight | ParamKind::BnBias => {}
        }
    }
    Ok(())
}
