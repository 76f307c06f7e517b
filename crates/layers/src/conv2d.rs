//! `Conv2d`: 2-D convolution, weight `[out, in, k, k]` (PyTorch `nn.Conv2d`).

use bregman_autodiff::{ops, Conv2dSpec, Tape, Var};
use bregman_tensor::Tensor;
use rand::Rng;

use crate::init::{default_bound, uniform};
use crate::module::expect_shape;
use crate::{LayerError, Module, ParamKind, Parameter};

/// A 2-D convolution with square kernels.
#[derive(Debug, Clone)]
pub struct Conv2d {
    name: String,
    /// Weight `[out, in, k, k]`.
    pub weight: Parameter,
    /// Optional bias `[out]`.
    pub bias: Option<Parameter>,
    /// Stride and padding.
    pub spec: Conv2dSpec,
}

impl Conv2d {
    /// `in → out` channels, `kernel×kernel`, with the given stride and padding,
    /// PyTorch's default init.
    pub fn new(
        input: usize,
        output: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        bias: bool,
        rng: &mut impl Rng,
    ) -> Conv2d {
        let b = default_bound(input * kernel * kernel);
        let weight = Parameter::new(
            "weight",
            ParamKind::ConvWeight,
            uniform(&[output, input, kernel, kernel], b, rng),
        );
        let bias =
            bias.then(|| Parameter::new("bias", ParamKind::Bias, uniform(&[output], b, rng)));
        Conv2d {
            name: String::new(),
            weight,
            bias,
            spec: Conv2dSpec { stride, padding },
        }
    }

    /// Input channels.
    pub fn in_channels(&self) -> usize {
        self.weight.value.dim(1)
    }

    /// Kernel size.
    pub fn kernel(&self) -> usize {
        self.weight.value.dim(2)
    }

    fn check(&self, x: &[usize]) -> Result<(), LayerError> {
        expect_shape(
            &self.name,
            || self.describe(),
            x,
            &[None, Some(self.in_channels()), None, None],
        )?;
        let k = self.kernel();
        let p = 2 * self.spec.padding;
        if x[2] + p < k || x[3] + p < k {
            let min = k - p.min(k);
            return Err(LayerError::Shape {
                layer: self.name.clone(),
                what: format!("{}: image smaller than the kernel", self.describe()),
                expected: format!("[N, {}, ≥{min}, ≥{min}]", self.in_channels()),
                got: x.to_vec(),
            });
        }
        Ok(())
    }
}

impl Module for Conv2d {
    fn forward<'a>(&'a self, tape: &mut Tape<'a>, x: Var) -> Result<Var, LayerError> {
        self.check(tape.value(x).shape())?;
        let w = tape.param(&self.weight.value);
        let b = self.bias.as_ref().map(|b| tape.param(&b.value));
        Ok(tape.conv2d(x, w, b, self.spec))
    }

    fn infer(&self, x: &Tensor) -> Result<Tensor, LayerError> {
        self.check(x.shape())?;
        Ok(ops::conv2d::forward(
            x,
            &self.weight.value,
            self.bias.as_ref().map(|b| &b.value),
            self.spec,
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
        let w = self.weight.value.shape();
        format!(
            "Conv2d {}→{}, {}×{}, stride {}, padding {}",
            w[1], w[0], w[2], w[3], self.spec.stride, self.spec.padding
        )
    }
}
