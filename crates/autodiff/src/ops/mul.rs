//! Element-wise product with broadcasting: `y = a ⊙ b`;
//! `∂L/∂a = sum_to_shape(g ⊙ b)`, `∂L/∂b = sum_to_shape(g ⊙ a)`.

use bregman_tensor::Tensor;

use crate::{Backward, Tape, Var};

struct MulBackward;

fn broadcast_mul(a: &Tensor, b: &Tensor) -> Tensor {
    if a.shape() == b.shape() {
        return a.mul(b);
    }
    let shape =
        bregman_tensor::elementwise::broadcast_shape(a.shape(), b.shape()).unwrap_or_else(|| {
            panic!(
                "mul: shapes {:?} and {:?} do not broadcast",
                a.shape(),
                b.shape()
            )
        });
    let av = a.array().broadcast(shape.as_slice()).expect("checked");
    let bv = b.array().broadcast(shape.as_slice()).expect("checked");
    Tensor::from_array(&av * &bv)
}

impl Backward for MulBackward {
    fn backward(
        &self,
        inputs: &[&Tensor],
        _: &Tensor,
        grad: Tensor,
        needs: &[bool],
    ) -> Vec<Option<Tensor>> {
        let (a, b) = (inputs[0], inputs[1]);
        vec![
            needs[0].then(|| broadcast_mul(&grad, b).sum_to_shape(a.shape())),
            needs[1].then(|| broadcast_mul(&grad, a).sum_to_shape(b.shape())),
        ]
    }
}

impl<'a> Tape<'a> {
    /// `a ⊙ b` element-wise with broadcasting.
    ///
    /// **Panics** if the shapes do not broadcast.
    pub fn mul(&mut self, a: Var, b: Var) -> Var {
        let y = broadcast_mul(self.value(a), self.value(b));
        self.push(y, &[a, b], MulBackward)
    }
}
