//! The [`Module`] trait: what every layer and model provides.

use bregman_autodiff::{PoolSpec, Tape, Var, WeightGrad};
use bregman_tensor::Tensor;

use crate::{Buffer, Kernels, LayerError, Parameter};

/// A layer or a model.
///
/// `forward` records on a tape (training, or evaluation with gradients);
/// `infer` computes the same function without recording anything.
pub trait Module {
    /// Forward pass on the tape. The module's parameters are bound with
    /// [`Tape::param`] (borrowed for `'a`, not copied).
    ///
    /// **Errors** if the input shape does not fit, naming the layer.
    fn forward<'a>(&'a self, tape: &mut Tape<'a>, x: Var) -> Result<Var, LayerError>;

    /// Forward pass without a tape (uses running statistics in eval mode).
    ///
    /// **Errors** if the input shape does not fit, naming the layer.
    fn infer(&self, x: &Tensor) -> Result<Tensor, LayerError>;

    /// Switches training mode (batch statistics) on or off (running statistics).
    fn set_training(&mut self, _training: bool) {}

    /// Chooses the kernels of every weight product in this module
    /// ([`Kernels::Auto`] by default: sparse where the density pays).
    fn set_kernels(&mut self, _kernels: Kernels) {}

    /// Chooses the weight gradient of every sparse-capable layer's training
    /// pass: dense (the default, what a full Bregman step needs) or on the
    /// weight's support only ([`WeightGrad::Support`], the masked steps of
    /// sparse backpropagation).
    fn set_weight_grad(&mut self, _weight_grad: WeightGrad) {}

    /// The parameters, in a fixed order.
    fn params(&self) -> Vec<&Parameter>;

    /// The parameters, mutable, in the same order as [`Module::params`].
    fn params_mut(&mut self) -> Vec<&mut Parameter>;

    /// The buffers (running statistics), in a fixed order.
    fn buffers(&self) -> Vec<&Buffer> {
        Vec::new()
    }

    /// Gives every parameter and buffer its full name under `prefix`.
    fn rename(&mut self, prefix: &str);

    /// A short description, e.g. `Dense 784→200`.
    fn describe(&self) -> String;

    /// This module's window, if it is a max pooling (so that a convolution
    /// before it can fuse it, see [`Module::forward_pool_relu`]).
    fn as_max_pool(&self) -> Option<PoolSpec> {
        None
    }

    /// Whether this module is a ReLU (so that a layer before it can fuse it).
    fn is_relu(&self) -> bool {
        false
    }

    /// `relu(maxpool(self(x)))` in one fused pass, for a chain `self → pool →
    /// ReLU` ([`Sequential`](crate::Sequential) asks), or `None` when this
    /// module cannot fuse them; the caller then runs the three modules one by
    /// one. Both ways give the same bits; the fused pass moves less memory.
    fn forward_pool_relu<'a>(
        &'a self,
        _tape: &mut Tape<'a>,
        _x: Var,
        _pool: PoolSpec,
    ) -> Option<Result<Var, LayerError>> {
        None
    }

    /// [`Module::forward_pool_relu`] without a tape.
    fn infer_pool_relu(&self, _x: &Tensor, _pool: PoolSpec) -> Option<Result<Tensor, LayerError>> {
        None
    }

    /// Whether this module runs on batch-major activations (`[features, N]`,
    /// each feature's batch values contiguous) for a batch of `n` with
    /// `features` input features, and with what output. `None` (the
    /// default): it has no such path, and a batch-major run of modules
    /// ([`Sequential`](crate::Sequential) looks for them in inference) ends
    /// before it.
    fn batch_major(&self, _n: usize, _features: usize) -> Option<BatchMajor> {
        None
    }

    /// [`Module::infer`] on batch-major activations: replaces `xt`
    /// (`[features, N]`) by this module's output (`[out features, N]`). Only
    /// called after [`Module::batch_major`] answered `Some` for this shape.
    ///
    /// **Errors** if the input shape does not fit, naming the layer (the
    /// default, for modules without a batch-major path, always does).
    fn infer_batch_major(&self, xt: &mut Tensor) -> Result<(), LayerError> {
        Err(LayerError::Shape {
            layer: String::new(),
            what: format!("{} (no batch-major path)", self.describe()),
            expected: "[N, ...] (row-major)".into(),
            got: xt.shape().to_vec(),
        })
    }

    /// Whether this module is a flatten (a batch-major run may start at it
    /// on an input of any rank, see [`Module::batch_major`]).
    fn is_flatten(&self) -> bool {
        false
    }

    /// Total number of trainable scalars.
    fn num_params(&self) -> usize {
        self.params().iter().map(|p| p.value.len()).sum()
    }
}

/// What a module does on batch-major activations ([`Module::batch_major`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMajor {
    /// Features of its output (`[features, N]`).
    pub features: usize,
    /// Whether the module is faster in this layout than row-major: a dense
    /// layer on its sparse kernels, which read the batch contiguous and would
    /// otherwise transpose their input and output themselves. A run of
    /// batch-major modules is only taken when one of them pays; the others
    /// (activations, flatten) merely pass the layout on.
    pub pays: bool,
}

/// Errors unless `x` has the given rank and the listed dimensions
/// (`None` = any size).
pub(crate) fn expect_shape(
    layer: &str,
    what: impl Fn() -> String,
    x: &[usize],
    expected: &[Option<usize>],
) -> Result<(), LayerError> {
    let fits = x.len() == expected.len()
        && x.iter()
            .zip(expected)
            .all(|(d, e)| e.is_none_or(|e| e == *d));
    if fits {
        return Ok(());
    }
    let words: Vec<String> = expected
        .iter()
        .enumerate()
        .map(|(i, e)| match e {
            Some(v) => v.to_string(),
            None => ["N", "C", "H", "W"].get(i).unwrap_or(&"_").to_string(),
        })
        .collect();
    Err(LayerError::Shape {
        layer: layer.to_string(),
        what: what(),
        expected: format!("[{}]", words.join(", ")),
        got: x.to_vec(),
    })
}
