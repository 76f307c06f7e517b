//! Sigmoid: `y = 1 / (1 + e^{-x})`, `dy/dx = y (1 − y)`.

use super::unary::UnaryDerivative;
use crate::{Tape, Var};

/// The logistic function.
#[derive(Debug, Clone, Copy)]
pub struct Sigmoid;

impl UnaryDerivative for Sigmoid {
    const NAME: &'static str = "sigmoid";
    #[inline]
    fn f(x: f32) -> f32 {
        1.0 / (1.0 + (-x).exp())
    }
    #[inline]
    fn df(_x: f32, y: f32) -> f32 {
        y * (1.0 - y)
    }
}

impl<'a> Tape<'a> {
    /// `1 / (1 + e^{-x})` element-wise.
    pub fn sigmoid(&mut self, x: Var) -> Var {
        self.unary(x, Sigmoid)
    }
}
