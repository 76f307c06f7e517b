//! Matrix product of 2-D tensors: `Y = A·B`.
//! `∂L/∂A = G·Bᵀ`, `∂L/∂B = Aᵀ·G` (transposes read in place by the GEMM).

use bregman_tensor::{matmul, Tensor};

use crate::{Backward, Tape, Var};

struct MatmulBackward;

impl Backward for MatmulBackward {
    fn backward(
        &self,
        inputs: &[&Tensor],
        _: &Tensor,
        grad: Tensor,
        needs: &[bool],
    ) -> Vec<Option<Tensor>> {
        let (a, b) = (inputs[0], inputs[1]);
        vec![
            needs[0].then(|| matmul(&grad, false, b, true)),
            needs[1].then(|| matmul(a, true, &grad, false)),
        ]
    }
}

impl<'a> Tape<'a> {
    /// `a · b` for 2-D `a: [m, k]`, `b: [k, n]`.
    ///
    /// **Panics** on a shape mismatch (with both shapes).
    pub fn matmul(&mut self, a: Var, b: Var) -> Var {
        let y = matmul(self.value(a), false, self.value(b), false);
        self.push(y, &[a, b], MatmulBackward)
    }
}
