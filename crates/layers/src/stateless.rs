//! Layers without parameters: `ReLU`, `MaxPool2d`, `Flatten`, `GlobalAvgPool`.

use bregman_autodiff::ops;
use bregman_autodiff::ops::relu::Relu;
use bregman_autodiff::ops::unary::{self, UnaryDerivative};
use bregman_autodiff::{PoolSpec, Tape, Var};
use bregman_tensor::Tensor;

use crate::module::expect_shape;
use crate::{BatchMajor, LayerError, Module, Parameter};

macro_rules! no_params {
    () => {
        fn params(&self) -> Vec<&Parameter> {
            Vec::new()
        }
        fn params_mut(&mut self) -> Vec<&mut Parameter> {
            Vec::new()
        }
        fn rename(&mut self, prefix: &str) {
            self.name = prefix.to_string();
        }
    };
}

/// `max(x, 0)` element-wise.
#[derive(Debug, Clone, Default)]
pub struct ReLU {
    name: String,
}

impl ReLU {
    /// A ReLU activation.
    pub fn new() -> ReLU {
        ReLU::default()
    }
}

impl Module for ReLU {
    fn forward<'a>(&'a self, tape: &mut Tape<'a>, x: Var) -> Result<Var, LayerError> {
        Ok(tape.relu(x))
    }
    fn is_relu(&self) -> bool {
        true
    }
    fn infer(&self, x: &Tensor) -> Result<Tensor, LayerError> {
        Ok(unary::forward::<Relu>(x))
    }
    fn batch_major(&self, _n: usize, features: usize) -> Option<BatchMajor> {
        Some(BatchMajor {
            features,
            pays: false,
        })
    }
    fn infer_batch_major(&self, xt: &mut Tensor) -> Result<(), LayerError> {
        // Element-wise: the layout does not matter.
        xt.data_mut().iter_mut().for_each(|v| *v = Relu::f(*v));
        Ok(())
    }
    fn describe(&self) -> String {
        "ReLU".into()
    }
    no_params!();
}

/// Max pooling with a square window.
#[derive(Debug, Clone)]
pub struct MaxPool2d {
    name: String,
    /// Window size.
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
}

impl MaxPool2d {
    /// `kernel×kernel` windows moved by `stride`.
    pub fn new(kernel: usize, stride: usize) -> MaxPool2d {
        MaxPool2d {
            name: String::new(),
            kernel,
            stride,
        }
    }

    fn check(&self, x: &[usize]) -> Result<(), LayerError> {
        expect_shape(&self.name, || self.describe(), x, &[None, None, None, None])?;
        if x[2] < self.kernel || x[3] < self.kernel || self.stride == 0 {
            return Err(LayerError::Shape {
                layer: self.name.clone(),
                what: self.describe(),
                expected: format!("[N, C, ≥{k}, ≥{k}]", k = self.kernel),
                got: x.to_vec(),
            });
        }
        Ok(())
    }
}

impl Module for MaxPool2d {
    fn forward<'a>(&'a self, tape: &mut Tape<'a>, x: Var) -> Result<Var, LayerError> {
        self.check(tape.value(x).shape())?;
        Ok(tape.maxpool2d(x, self.kernel, self.stride))
    }
    fn infer(&self, x: &Tensor) -> Result<Tensor, LayerError> {
        self.check(x.shape())?;
        Ok(ops::maxpool2d::forward(x, self.kernel, self.stride))
    }
    fn as_max_pool(&self) -> Option<PoolSpec> {
        Some(PoolSpec {
            kernel: self.kernel,
            stride: self.stride,
        })
    }
    fn describe(&self) -> String {
        format!(
            "MaxPool2d {}×{}, stride {}",
            self.kernel, self.kernel, self.stride
        )
    }
    no_params!();
}

/// `[N, d1, d2, ...]` to `[N, d1·d2·...]`.
#[derive(Debug, Clone, Default)]
pub struct Flatten {
    name: String,
}

impl Flatten {
    /// A flatten layer.
    pub fn new() -> Flatten {
        Flatten::default()
    }

    fn check(&self, x: &[usize]) -> Result<(), LayerError> {
        if x.is_empty() {
            return Err(LayerError::Shape {
                layer: self.name.clone(),
                what: self.describe(),
                expected: "[N, ...]".into(),
                got: x.to_vec(),
            });
        }
        Ok(())
    }
}

impl Module for Flatten {
    fn forward<'a>(&'a self, tape: &mut Tape<'a>, x: Var) -> Result<Var, LayerError> {
        self.check(tape.value(x).shape())?;
        Ok(tape.flatten(x))
    }
    fn infer(&self, x: &Tensor) -> Result<Tensor, LayerError> {
        self.check(x.shape())?;
        let n = x.shape()[0];
        let rest = x.len().checked_div(n).unwrap_or(0);
        Ok(x.clone().reshape(&[n, rest]).expect("same element count"))
    }
    fn is_flatten(&self) -> bool {
        true
    }
    fn batch_major(&self, _n: usize, features: usize) -> Option<BatchMajor> {
        Some(BatchMajor {
            features,
            pays: false,
        })
    }
    fn infer_batch_major(&self, _xt: &mut Tensor) -> Result<(), LayerError> {
        // Batch-major activations are `[features, N]` already.
        Ok(())
    }
    fn describe(&self) -> String {
        "Flatten".into()
    }
    no_params!();
}

/// Mean over the spatial dimensions: `[N, C, H, W]` to `[N, C]`.
#[derive(Debug, Clone, Default)]
pub struct GlobalAvgPool {
    name: String,
}

impl GlobalAvgPool {
    /// A global average pooling layer.
    pub fn new() -> GlobalAvgPool {
        GlobalAvgPool::default()
    }
}

impl Module for GlobalAvgPool {
    fn forward<'a>(&'a self, tape: &mut Tape<'a>, x: Var) -> Result<Var, LayerError> {
        expect_shape(
            &self.name,
            || self.describe(),
            tape.value(x).shape(),
            &[None; 4],
        )?;
        Ok(tape.global_avg_pool(x))
    }
    fn infer(&self, x: &Tensor) -> Result<Tensor, LayerError> {
        expect_shape(&self.name, || self.describe(), x.shape(), &[None; 4])?;
        Ok(ops::global_avg_pool::forward(x))
    }
    fn describe(&self) -> String {
        "GlobalAvgPool".into()
    }
    no_params!();
}
