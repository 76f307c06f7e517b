//! `Dense`: `y = x Wᵀ + b`, `W: [out, in]` (PyTorch `nn.Linear`).
//!
//! When `W` is sparse enough (see [`sparse_linear_pays`]) the products that
//! read it — the forward pass and the input gradient — run on its non-zeros
//! ([`bregman_tensor::sparse::SparseLinear`]); the weight gradient is
//! dense, or only on the support of `W` after
//! [`Module::set_weight_grad`]`(WeightGrad::Support)` (sparse
//! backpropagation's masked steps; the sparse form is then used up to 20%
//! density, and above it the optimizer's masked step reads the dense
//! gradient on the support only).

use std::cell::Ref;

use bregman_autodiff::{ops, Tape, Var, WeightGrad};
use bregman_tensor::sparse::{sparse_linear_pays, SparseLinear};
use bregman_tensor::transpose::transpose;
use bregman_tensor::Tensor;
use rand::Rng;

use crate::init::{default_bound, uniform};
use crate::kernels::{Refill, SparseForm};
use crate::module::expect_shape;
use crate::{BatchMajor, Kernels, LayerError, Module, ParamKind, Parameter};

/// The density up to which a masked step (weight gradient on the support)
/// runs the sparse kernels. Measured by `benches/sparse.rs` on MNIST fc1 at
/// batch 128 (docs/BENCHMARKS.md): forward + input gradient + sampled weight
/// gradient against the three dense products is 0.54× at 10% density, 0.94×
/// at 25% and 1.7× at 50% (the sampled weight gradient alone breaks even near
/// 15–20%); the rule stays below the ~25% break-even with a margin.
const MASKED_STEP_BREAK_EVEN: f64 = 0.2;

/// No sparse form is built above this density (no batch size pays there).
const MAX_SPARSE_DENSITY: f64 = 0.5;

/// A fully connected layer.
#[derive(Debug, Clone)]
pub struct Dense {
    name: String,
    weight: Parameter,
    bias: Option<Parameter>,
    sparse: SparseForm<SparseLinear>,
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
            sparse: SparseForm::default(),
        }
    }

    /// Weight `[out, in]` (changed only through [`Module::params_mut`]).
    pub fn weight(&self) -> &Parameter {
        &self.weight
    }

    /// Bias `[out]`.
    pub fn bias(&self) -> Option<&Parameter> {
        self.bias.as_ref()
    }

    /// The weight's sparse form, when the sparse kernels run for a batch of
    /// `n` (in a training step, or for inference).
    fn sparse_for(&self, n: usize, training: bool) -> Option<Ref<'_, SparseLinear>> {
        let (out, input) = (self.output_size(), self.input_size());
        self.sparse.get(
            self.weight.value.data(),
            training,
            (MAX_SPARSE_DENSITY, MASKED_STEP_BREAK_EVEN),
            |d| sparse_linear_pays(d, n, training),
            |s, w, how| match how {
                Refill::Full => {
                    s.refill(w, out, input);
                    true
                }
                Refill::Values => s.refresh(w),
            },
        )
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
        let n = tape.value(x).dim(0);
        let w = tape.param(&self.weight.value);
        let b = self.bias.as_ref().map(|b| tape.param(&b.value));
        Ok(match self.sparse_for(n, true) {
            Some(sparse) => tape.sparse_linear_with(x, w, b, sparse, self.sparse.weight_grad()),
            None => tape.linear(x, w, b),
        })
    }

    fn infer(&self, x: &Tensor) -> Result<Tensor, LayerError> {
        self.check(x.shape())?;
        let b = self.bias.as_ref().map(|b| &b.value);
        Ok(match self.sparse_for(x.dim(0), false) {
            Some(sparse) => ops::sparse_linear::forward(x, &sparse, b),
            None => ops::linear::forward(x, &self.weight.value, b),
        })
    }

    /// Batch-major only on the sparse kernels (which read the batch
    /// contiguous); a layer on the dense GEMM stays row-major.
    fn batch_major(&self, n: usize, features: usize) -> Option<BatchMajor> {
        (features == self.input_size() && self.sparse_for(n, false).is_some()).then_some(
            BatchMajor {
                features: self.output_size(),
                pays: true,
            },
        )
    }

    fn infer_batch_major(&self, xt: &mut Tensor) -> Result<(), LayerError> {
        expect_shape(
            &self.name,
            || format!("{} on batch-major input", self.describe()),
            xt.shape(),
            &[Some(self.input_size()), None],
        )?;
        let n = xt.dim(1);
        let out = self.output_size();
        let b = self.bias.as_ref().map(|b| b.value.data());
        let yt = match self.sparse_for(n, false) {
            Some(sparse) => sparse.forward_batch_major(xt.data(), n, b),
            // Not reached after `batch_major` (same weight, same batch), but
            // correct: the row-major path between two transposes.
            None => {
                let x = Tensor::from_vec(
                    &[n, self.input_size()],
                    transpose(xt.data(), self.input_size(), n),
                )
                .expect("sizes from the layer");
                let y = ops::linear::forward(
                    &x,
                    &self.weight.value,
                    self.bias.as_ref().map(|b| &b.value),
                );
                transpose(y.data(), n, out)
            }
        };
        *xt = Tensor::from_vec(&[out, n], yt).expect("sizes from the layer");
        Ok(())
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
        format!("Dense {}→{}", self.input_size(), self.output_size())
    }
}
