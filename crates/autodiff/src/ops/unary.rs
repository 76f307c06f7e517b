//! Element-wise functions `y = f(x)` as a scalar pair `f` / `df`, driven by one
//! generic forward loop and one generic backward loop (`dx = dy · f'(x)`).

use bregman_tensor::{parallel::zip3, Tensor};

use crate::{Backward, Tape, Var};

/// A scalar function and its derivative. `df` receives both `x` and `y = f(x)`
/// because many derivatives are cheapest in terms of the output (sigmoid, tanh).
pub trait UnaryDerivative: Copy + Send + Sync + 'static {
    /// Name used in panics and docs.
    const NAME: &'static str;
    /// `f(x)`.
    fn f(x: f32) -> f32;
    /// `f'(x)`, given `x` and `y = f(x)`.
    fn df(x: f32, y: f32) -> f32;
}

/// Forward pass without a tape: `f` applied element-wise.
pub fn forward<F: UnaryDerivative>(x: &Tensor) -> Tensor {
    x.map(F::f)
}

struct UnaryBackward<F>(F);

impl<F: UnaryDerivative> Backward for UnaryBackward<F> {
    /// `dx = dy · f'(x)`, written over the output gradient's own buffer.
    fn backward(
        &self,
        inputs: &[&Tensor],
        output: &Tensor,
        grad: Tensor,
        _: &[bool],
    ) -> Vec<Option<Tensor>> {
        let mut dx = grad;
        zip3(dx.data_mut(), inputs[0].data(), output.data(), |g, x, y| {
            *g *= F::df(x, y)
        });
        vec![Some(dx)]
    }
}

impl<'a> Tape<'a> {
    /// Records `y = F::f(x)` element-wise.
    pub fn unary<F: UnaryDerivative>(&mut self, x: Var, f: F) -> Var {
        let y = forward::<F>(self.value(x));
        self.push(y, &[x], UnaryBackward(f))
    }
}
