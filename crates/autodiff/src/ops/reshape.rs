//! Reshape (and flatten): the same values under a new shape. The gradient is
//! the output gradient reshaped back.

use bregman_tensor::Tensor;

use crate::{Backward, Tape, Var};

struct ReshapeBackward;

impl Backward for ReshapeBackward {
    /// The output gradient's buffer itself, under the input's shape.
    fn backward(
        &self,
        inputs: &[&Tensor],
        _: &Tensor,
        grad: Tensor,
        _: &[bool],
    ) -> Vec<Option<Tensor>> {
        let g = grad.reshape(inputs[0].shape()).expect("same element count");
        vec![Some(g)]
    }
}

impl<'a> Tape<'a> {
    /// `x` viewed with a new shape (`x` itself when the shape is unchanged,
    /// e.g. flattening an input that is already flat: no copy, no node).
    ///
    /// **Panics** if the element count changes.
    pub fn reshape(&mut self, x: Var, shape: &[usize]) -> Var {
        if self.value(x).shape() == shape {
            return x;
        }
        let y = self
            .value(x)
            .clone()
            .reshape(shape)
            .unwrap_or_else(|e| panic!("reshape: {e}"));
        self.push(y, &[x], ReshapeBackward)
    }

    /// `[N, d1, d2, ...]` to `[N, d1·d2·...]`.
    ///
    /// **Panics** on a 0-D tensor.
    pub fn flatten(&mut self, x: Var) -> Var {
        let s = self.value(x).shape();
        assert!(!s.is_empty(), "flatten: 0-D tensor");
        let shape = [s[0], s[1..].iter().product()];
        self.reshape(x, &shape)
    }
}
