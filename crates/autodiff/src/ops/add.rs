//! Addition with NumPy broadcasting: `y = a + b`.
//! `∂y/∂a = 1`, `∂y/∂b = 1`; a broadcast operand receives the output gradient
//! summed over the broadcast axes.

use bregman_tensor::Tensor;

use crate::{Backward, Tape, Var};

struct AddBackward;

impl Backward for AddBackward {
    /// The last input that needs the gradient at the output's shape (e.g. a
    /// residual connection's shortcut) takes the gradient's buffer itself;
    /// others get a copy, or a sum over their broadcast axes.
    fn backward(
        &self,
        inputs: &[&Tensor],
        _: &Tensor,
        grad: Tensor,
        needs: &[bool],
    ) -> Vec<Option<Tensor>> {
        let owner = (0..inputs.len())
            .rev()
            .find(|&i| needs[i] && inputs[i].shape() == grad.shape());
        let mut out: Vec<Option<Tensor>> = inputs
            .iter()
            .zip(needs)
            .enumerate()
            .map(|(i, (x, &need))| (need && Some(i) != owner).then(|| grad.sum_to_shape(x.shape())))
            .collect();
        if let Some(i) = owner {
            out[i] = Some(grad);
        }
        out
    }
}

impl<'a> Tape<'a> {
    /// `a + b` with broadcasting.
    ///
    /// **Panics** if the shapes do not broadcast.
    pub fn add(&mut self, a: Var, b: Var) -> Var {
        let y = self.value(a).broadcast_add(self.value(b));
        self.push(y, &[a, b], AddBackward)
    }
}
