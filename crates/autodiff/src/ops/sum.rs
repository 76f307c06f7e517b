//! Full reductions: `sum(x) = Σᵢ xᵢ` (`∂/∂xᵢ = 1`) and `mean(x) = sum(x)/n`
//! (`∂/∂xᵢ = 1/n`). Both produce a one-element tensor of shape `[]`.

use bregman_tensor::Tensor;

use crate::{Backward, Tape, Var};

struct SumBackward {
    factor: f32,
}

impl Backward for SumBackward {
    fn backward(
        &self,
        inputs: &[&Tensor],
        _: &Tensor,
        grad: Tensor,
        _: &[bool],
    ) -> Vec<Option<Tensor>> {
        vec![Some(Tensor::full(
            inputs[0].shape(),
            grad.item() * self.factor,
        ))]
    }
}

impl<'a> Tape<'a> {
    /// Sum of all elements (a scalar).
    pub fn sum(&mut self, x: Var) -> Var {
        let y = Tensor::scalar(self.value(x).sum_all());
        self.push(y, &[x], SumBackward { factor: 1.0 })
    }

    /// Mean of all elements (a scalar).
    pub fn mean(&mut self, x: Var) -> Var {
        let n = self.value(x).len().max(1) as f32;
        let y = Tensor::scalar(self.value(x).mean_all());
        self.push(y, &[x], SumBackward { factor: 1.0 / n })
    }
}
