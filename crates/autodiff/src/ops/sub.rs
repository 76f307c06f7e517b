//! Subtraction with broadcasting: `y = a − b`; `∂y/∂a = 1`, `∂y/∂b = −1`.

use bregman_tensor::Tensor;

use crate::{Backward, Tape, Var};

struct SubBackward;

impl Backward for SubBackward {
    fn backward(
        &self,
        inputs: &[&Tensor],
        _: &Tensor,
        grad: Tensor,
        needs: &[bool],
    ) -> Vec<Option<Tensor>> {
        let ga = needs[0].then(|| grad.sum_to_shape(inputs[0].shape()));
        let gb = needs[1].then(|| {
            let mut g = grad.sum_to_shape(inputs[1].shape());
            g.scale_inplace(-1.0);
            g
        });
        vec![ga, gb]
    }
}

impl<'a> Tape<'a> {
    /// `a − b` with broadcasting.
    ///
    /// **Panics** if the shapes do not broadcast.
    pub fn sub(&mut self, a: Var, b: Var) -> Var {
        let neg_b = self.value(b).scale(-1.0);
        let y = self.value(a).broadcast_add(&neg_b);
        self.push(y, &[a, b], SubBackward)
    }
}
