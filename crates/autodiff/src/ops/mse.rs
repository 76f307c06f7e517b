//! Mean squared error against a constant target: `L = (1/n) Σ (xᵢ − tᵢ)²`,
//! `∂L/∂xᵢ = 2 (xᵢ − tᵢ) / n` (PyTorch `MSELoss`, mean reduction).

use bregman_tensor::Tensor;

use crate::{Backward, Tape, Var};

/// The mean squared error without a tape.
///
/// **Panics** if the shapes differ.
pub fn forward(x: &Tensor, target: &Tensor) -> f32 {
    bregman_tensor::assert_same_shape("mse", x, target);
    let s: f64 = x
        .data()
        .iter()
        .zip(target.data())
        .map(|(&a, &b)| ((a - b) as f64).powi(2))
        .sum();
    (s / x.len().max(1) as f64) as f32
}

struct MseBackward {
    target: Tensor,
}

impl Backward for MseBackward {
    fn backward(
        &self,
        inputs: &[&Tensor],
        _: &Tensor,
        grad: Tensor,
        _: &[bool],
    ) -> Vec<Option<Tensor>> {
        let k = 2.0 * grad.item() / inputs[0].len().max(1) as f32;
        vec![Some(inputs[0].zip_map(&self.target, |x, t| k * (x - t)))]
    }
}

impl<'a> Tape<'a> {
    /// Mean squared error of `x` against a constant `target` (a scalar).
    ///
    /// **Panics** if the shapes differ.
    pub fn mse(&mut self, x: Var, target: Tensor) -> Var {
        let loss = forward(self.value(x), &target);
        self.push(Tensor::scalar(loss), &[x], MseBackward { target })
    }
}
