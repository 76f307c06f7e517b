//! Global average pooling: `y[n, c] = mean over H×W of x[n, c]`;
//! `∂L/∂x[n, c, i, j] = g[n, c] / (H·W)`.

use bregman_tensor::pool::{global_avg_pool, global_avg_pool_backward};
use bregman_tensor::Tensor;

use crate::{Backward, Tape, Var};

/// Forward pass without a tape: `[N, C, H, W]` to `[N, C]`.
pub fn forward(x: &Tensor) -> Tensor {
    global_avg_pool(x)
}

struct GapBackward;

impl Backward for GapBackward {
    fn backward(
        &self,
        inputs: &[&Tensor],
        _: &Tensor,
        grad: Tensor,
        _: &[bool],
    ) -> Vec<Option<Tensor>> {
        vec![Some(global_avg_pool_backward(&grad, inputs[0].shape()))]
    }
}

impl<'a> Tape<'a> {
    /// Mean over the spatial dimensions: `[N, C, H, W]` to `[N, C]`.
    ///
    /// **Panics** unless `x` is 4-D.
    pub fn global_avg_pool(&mut self, x: Var) -> Var {
        let y = global_avg_pool(self.value(x));
        self.push(y, &[x], GapBackward)
    }
}
