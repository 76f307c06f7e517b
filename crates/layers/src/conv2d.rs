//! `Conv2d`: 2-D convolution, weight `[out, in, k, k]` (PyTorch `nn.Conv2d`).
//!
//! A stride-1 convolution whose weight is sparse enough (see
//! [`sparse_conv_pays`]) runs its forward pass and input gradient on the
//! non-zero taps ([`bregman_tensor::sparse::SparseConv`]); the weight
//! gradient is dense, or only at the non-zero taps after
//! [`Module::set_weight_grad`]`(WeightGrad::Support)` (sparse
//! backpropagation's masked steps; a strided convolution computes it
//! densely, and the optimizer's masked step reads the support only).

use std::cell::Ref;

use bregman_autodiff::ops::conv2d_pool_relu::fusable;
use bregman_autodiff::{ops, Conv2dSpec, PoolSpec, Tape, Var, WeightGrad};
use bregman_tensor::sparse::{sparse_conv_pays, SparseConv};
use bregman_tensor::Tensor;
use rand::Rng;

use crate::init::{default_bound, uniform};
use crate::kernels::{Refill, SparseForm};
use crate::module::expect_shape;
use crate::{Kernels, LayerError, Module, ParamKind, Parameter};

/// No sparse form is built above this density (no shape pays there).
const MAX_SPARSE_DENSITY: f64 = 0.5;

/// A 2-D convolution with square kernels.
#[derive(Debug, Clone)]
pub struct Conv2d {
    name: String,
    weight: Parameter,
    bias: Option<Parameter>,
    /// Stride and padding.
    pub spec: Conv2dSpec,
    sparse: SparseForm<SparseConv>,
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
            sparse: SparseForm::default(),
        }
    }

    /// Weight `[out, in, k, k]` (changed only through [`Module::params_mut`]).
    pub fn weight(&self) -> &Parameter {
        &self.weight
    }

    /// Bias `[out]`.
    pub fn bias(&self) -> Option<&Parameter> {
        self.bias.as_ref()
    }

    /// The weight's sparse form, when the sparse kernels run (in a training
    /// step, or for inference).
    fn sparse_for(&self, training: bool) -> Option<Ref<'_, SparseConv>> {
        if self.spec.stride != 1 {
            return None;
        }
        let w = self.weight.value.shape();
        let wshape = [w[0], w[1], w[2], w[3]];
        self.sparse.get(
            self.weight.value.data(),
            training,
            // A masked step pays up to the form's limit: with the Fashion
            // ConvNet's convolutions at 25–28% density, AdaBreg epochs ran
            // 1.4–1.7× faster with --sparse-backprop 4 / 16 (docs/RESULTS.md).
            (MAX_SPARSE_DENSITY, MAX_SPARSE_DENSITY),
            |d| sparse_conv_pays(d, training),
            |s, v, how| match how {
                Refill::Full => {
                    s.refill(v, wshape);
                    true
                }
                Refill::Values => s.refresh(v),
            },
        )
    }

    /// Input channels.
    pub fn in_channels(&self) -> usize {
        self.weight.value.dim(1)
    }

    /// Kernel size.
    pub fn kernel(&self) -> usize {
        self.weight.value.dim(2)
    }

    /// Whether this layer's training pass runs fused with the pooling and
    /// ReLU after it on an input of shape `x`: `None` when it cannot (not
    /// [`fusable`], or a masked step, whose weight gradient on the support
    /// keeps its own sampled product), `Some(Err)` on an input that does not
    /// fit the layer, `Some(Ok(sparse))` when it fuses, with the sparse form
    /// when the sparse kernels run.
    #[allow(clippy::type_complexity)]
    fn fuses(
        &self,
        x: &[usize],
        pool: PoolSpec,
    ) -> Option<Result<Option<Ref<'_, SparseConv>>, LayerError>> {
        if let Err(e) = self.check(x) {
            return Some(Err(e));
        }
        let sparse = self.sparse_for(true);
        let masked = sparse.is_some() && self.sparse.weight_grad() == WeightGrad::Support;
        (!masked && fusable(x, self.weight.value.shape(), self.spec, pool)).then_some(Ok(sparse))
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
        let sparse = self.sparse_for(true);
        let w = tape.param(&self.weight.value);
        let b = self.bias.as_ref().map(|b| tape.param(&b.value));
        Ok(match sparse {
            Some(sparse) => {
                let grad = self.sparse.weight_grad();
                tape.sparse_conv2d_with(x, w, b, self.spec, sparse, grad)
            }
            None => tape.conv2d(x, w, b, self.spec),
        })
    }

    fn infer(&self, x: &Tensor) -> Result<Tensor, LayerError> {
        self.check(x.shape())?;
        let b = self.bias.as_ref().map(|b| &b.value);
        Ok(match self.sparse_for(false) {
            Some(sparse) => ops::sparse_conv2d::forward(x, &sparse, b, self.spec),
            None => ops::conv2d::forward(x, &self.weight.value, b, self.spec),
        })
    }

    /// Fused with the pooling and ReLU after it, when [`fusable`], on the
    /// dense and the sparse path (not in masked steps).
    fn forward_pool_relu<'a>(
        &'a self,
        tape: &mut Tape<'a>,
        x: Var,
        pool: PoolSpec,
    ) -> Option<Result<Var, LayerError>> {
        let sparse = match self.fuses(tape.value(x).shape(), pool)? {
            Ok(sparse) => sparse,
            Err(e) => return Some(Err(e)),
        };
        let w = tape.param(&self.weight.value);
        let b = self.bias.as_ref().map(|b| tape.param(&b.value));
        Some(Ok(match sparse {
            Some(sparse) => tape.sparse_conv2d_pool_relu(x, w, b, self.spec, pool, sparse),
            None => tape.conv2d_pool_relu(x, w, b, self.spec, pool),
        }))
    }

    /// Fused on both paths: the sparse one pools each image's output of
    /// the sparse kernel while it is in cache
    /// ([`ops::sparse_conv2d::forward_pool_relu`], any batch), the dense one
    /// when [`fusable`].
    fn infer_pool_relu(&self, x: &Tensor, pool: PoolSpec) -> Option<Result<Tensor, LayerError>> {
        if let Err(e) = self.check(x.shape()) {
            return Some(Err(e));
        }
        let b = self.bias.as_ref().map(|b| &b.value);
        let (w, spec) = (&self.weight.value, self.spec);
        match self.sparse_for(false) {
            Some(sparse) => ops::sparse_conv2d::pool_fits(x.shape(), sparse.shape(), spec, pool)
                .then(|| {
                    Ok(ops::sparse_conv2d::forward_pool_relu(
                        x, &sparse, b, spec, pool,
                    ))
                }),
            None => fusable(x.shape(), w.shape(), spec, pool)
                .then(|| Ok(ops::conv2d_pool_relu::forward(x, w, b, spec, pool))),
        }
    }

    fn set_kernels(&mut self, kernels: Kernels) {
        self.sparse.set_kernels(kernels);
    }

    fn set_weight_grad(&mut self, weight_grad: WeightGrad) {
        self.sparse.set_weight_grad(weight_grad);
    }

    fn params(&self) -> Vec<&Parameter> {
        std::iter::once(&self.weight)
            .chain(self.bias.as_ref())
            .collect()
    }

    fn params_mut(&mut self) -> Vec<&mut Parameter> {
        // The caller may change the weight: rebuild the sparse form on next use.
        self.sparse.invalidate();
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
