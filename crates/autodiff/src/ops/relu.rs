//! ReLU: `y = max(x, 0)`, `dy/dx = 1 if x > 0 else 0` (0 at the kink, as PyTorch).

use super::unary::UnaryDerivative;
use crate::{Tape, Var};

/// The rectified linear unit.
#[derive(Debug, Clone, Copy)]
pub struct Relu;

impl UnaryDerivative for Relu {
    const NAME: &'static str = "relu";
    #[inline]
    fn f(x: f32) -> f32 {
        x.max(0.0)
    }
    #[inline]
    fn df(x: f32, _y: f32) -> f32 {
        if x > 0.0 {
            1.0
        } else {
            0.0
        }
    }
}

impl<'a> Tape<'a> {
    /// `max(x, 0)` element-wise.
    pub fn relu(&mut self, x: Var) -> Var {
        self.unary(x, Relu)
    }
}
