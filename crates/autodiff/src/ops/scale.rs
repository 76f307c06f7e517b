//! Multiplication by a constant: `y = s·x`, `∂L/∂x = s·g`.

use bregman_tensor::Tensor;

use crate::{Backward, Tape, Var};

struct ScaleBackward(f32);

impl Backward for ScaleBackward {
    fn backward(&self, _: &[&Tensor], _: &Tensor, grad: Tensor, _: &[bool]) -> Vec<Option<Tensor>> {
        vec![Some(grad.scale(self.0))]
    }
}

impl<'a> Tape<'a> {
    /// `s · x` for a constant `s`.
    pub fn scale(&mut self, x: Var, s: f32) -> Var {
        let y = self.value(x).scale(s);
        self.push(y, &[x], ScaleBackward(s))
    }
}
