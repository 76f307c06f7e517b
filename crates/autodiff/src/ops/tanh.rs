//! Hyperbolic tangent: `y = tanh(x)`, `dy/dx = 1 − y²`.

use super::unary::UnaryDerivative;
use crate::{Tape, Var};

/// The hyperbolic tangent.
#[derive(Debug, Clone, Copy)]
pub struct Tanh;

impl UnaryDerivative for Tanh {
    const NAME: &'static str = "tanh";
    #[inline]
    fn f(x: f32) -> f32 {
        x.tanh()
    }
    #[inline]
    fn df(_x: f32, y: f32) -> f32 {
        1.0 - y * y
    }
}

impl<'a> Tape<'a> {
    /// `tanh(x)` element-wise.
    pub fn tanh(&mut self, x: Var) -> Var {
        self.unary(x, Tanh)
    }
}
