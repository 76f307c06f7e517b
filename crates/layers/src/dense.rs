//! `Dense`: `y = x Wᵀ + b`, `W: [out, in]` (PyTorch `nn.Linear`).

use bregman_autodiff::{ops, Tape, Var};
use bregman_tensor::Tensor;
use rand::Rng;

use crate::init::{default_bound, uniform};
use crate::module::expect_shape;
use crate::{LayerError, Module, ParamKind, Parameter};

/// A fully connected layer.
#[derive(Debug, Clone)]
pub struct Dense {
    name: String,
    /// Weight `[out, in]`.
    pub weight: Parameter,
    /// Bias `[out]`.
    pub bias: Option<Parameter>,
}

impl Dense {
    /// A dense layer `in → out` with bias, PyTorch's default init.
    pub fn new(input: usize, output: usize, rng: &mut impl Rng) -> Dense {
        let b = default_bound(input);
        Dense {
            name: String::new(),
            weight: Parameter::new(
                "weight",
                ParamKind::LinearWeight,
                uniform(&[output, input], b, rng),
            ),
            bias: Some(Parameter::new(
                "bias",
                ParamKind::Bias,
                uniform(&[output], b, rng),
            )),
        }
    }

    /// Input features.
    pub fn input_size(&self) -> usize {
        self.weight.value.dim(1)
    }

    /// Output features.
    pub fn output_size(&self) -> usize {
        self.weight.value.dim(0)
    }

    fn check(&self, x: &[usize]) -> Result<(), LayerError> {
        expect_shape(
            &self.name,
            || self.describe(),
            x,
            &[None, Some(self.input_size())],
        )
    }
}

impl Module for Dense {
    fn forward<'a>(&'a self, tape: &mut Tape<'a>, x: Var) -> Result<Var, LayerError> {
        self.check(tape.value(x).shape())?;
        let w = tape.param(&self.weight.value);
        let b = self.bias.as_ref().map(|b| tape.param(&b.value));
        Ok(tape.linear(x, w, b))
    }

    fn infer(&self, x: &Tensor) -> Result<Tensor, LayerError> {
        self.check(x.shape())?;
        Ok(ops::linear::forward(
            x,
            &self.weight.value,
            self.bias.as_ref().map(|b| &b.value),
        ))
    }

    fn params(&self) -> Vec<&Parameter> {
        std::iter::once(&self.weight)
            .chain(self.bias.as_ref())
            .collect()
    }

    fn params_mut(&mut self) -> Vec<&mut Parameter> {
        std::iter::once(&mut self.weight)
            .chain(self.bias.as_mut())
            .collect()
    }

    fn rename(&mut self, prefix: &str) {
        self.name = prefix.to_string();
        self.weight.rename(prefix, "weight");
        if let Some(b) = &mut self.bias {
            b.rename(prefix, "bias");
        }
    }

    fn describe(&self) -> String {
        format!("Dense {}→{}", self.input_size(), self.output_size())
    }
}
