//! Max pooling: each output is the maximum of its window; the gradient is routed
//! to the input that won (argmax routing), `∂yⱼ/∂xᵢ = 1` iff `i = argmax` of window `j`.

use bregman_tensor::pool::{maxpool2d, maxpool2d_backward};
use bregman_tensor::{ConvGeometry, Tensor};

use crate::{Backward, Tape, Var};

fn geometry(x: &Tensor, kernel: usize, stride: usize) -> ConvGeometry {
    ConvGeometry::new(x.shape(), kernel, kernel, stride, 0)
        .unwrap_or_else(|e| panic!("maxpool2d: kernel {kernel} stride {stride}: {e}"))
}

/// Forward pass without a tape.
///
/// **Panics** if `x` is not NCHW or the window does not fit.
pub fn forward(x: &Tensor, kernel: usize, stride: usize) -> Tensor {
    maxpool2d(x, &geometry(x, kernel, stride)).0
}

struct MaxPoolBackward {
    idx: Vec<u32>,
    geom: ConvGeometry,
}

impl Backward for MaxPoolBackward {
    fn backward(&self, _: &[&Tensor], _: &Tensor, grad: Tensor, _: &[bool]) -> Vec<Option<Tensor>> {
        vec![Some(maxpool2d_backward(&grad, &self.idx, &self.geom))]
    }
}

impl<'a> Tape<'a> {
    /// `kernel×kernel` max pooling with the given stride (no padding).
    ///
    /// **Panics** if `x` is not NCHW or the window does not fit.
    pub fn maxpool2d(&mut self, x: Var, kernel: usize, stride: usize) -> Var {
        let geom = geometry(self.value(x), kernel, stride);
        let (y, idx) = maxpool2d(self.value(x), &geom);
        self.push(y, &[x], MaxPoolBackward { idx, geom })
    }
}
