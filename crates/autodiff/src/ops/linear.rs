//! The affine map of a dense layer, fused: `Y = X·Wᵀ + b` with `X: [N, in]`,
//! `W: [out, in]` (PyTorch layout), `b: [out]`.
//!
//! `∂L/∂X = G·W`, `∂L/∂W = Gᵀ·X`, `∂L/∂b = Σ_rows G`.

use bregman_tensor::{matmul, Tensor};

use crate::{Backward, Tape, Var};

/// Forward pass without a tape.
///
/// **Panics** on a shape mismatch.
pub fn forward(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Tensor {
    let mut y = matmul(x, false, w, true);
    if let Some(b) = b {
        y.add_row_bias_inplace(b);
    }
    y
}

struct LinearBackward;

impl Backward for LinearBackward {
    fn backward(
        &self,
        inputs: &[&Tensor],
        _: &Tensor,
        grad: Tensor,
        needs: &[bool],
    ) -> Vec<Option<Tensor>> {
        let (x, w) = (inputs[0], inputs[1]);
        let mut out = vec![
            needs[0].then(|| matmul(&grad, false, w, false)),
            needs[1].then(|| matmul(&grad, true, x, false)),
        ];
        if inputs.len() == 3 {
            out.push(needs[2].then(|| grad.sum_rows()));
        }
        out
    }
}

impl<'a> Tape<'a> {
    /// `x · wᵀ + b` (bias optional).
    ///
    /// **Panics** on a shape mismatch.
    pub fn linear(&mut self, x: Var, w: Var, b: Option<Var>) -> Var {
        let y = forward(self.value(x), self.value(w), b.map(|b| self.value(b)));
        match b {
            Some(b) => self.push(y, &[x, w, b], LinearBackward),
            None => self.push(y, &[x, w], LinearBackward),
        }
    }
}
