//! PyTorch's default initialisation of dense and conv layers:
//! weight and bias `~ U(−1/√fan_in, 1/√fan_in)` (Kaiming-uniform with `a = √5`).
//! The paper's *sparse* initialisation (SPEC §3) lives in the optimizer crate.

use bregman_tensor::Tensor;
use rand::Rng;

/// A tensor of `U(−bound, bound)` values.
pub fn uniform(shape: &[usize], bound: f32, rng: &mut impl Rng) -> Tensor {
    Tensor::from_fn(shape, |_| rng.gen_range(-bound..=bound))
}

/// The bound `1/√fan_in` of PyTorch's default init (1 for `fan_in = 0`).
pub fn default_bound(fan_in: usize) -> f32 {
    1.0 / (fan_in.max(1) as f32).sqrt()
}
