//! Named parameters with a *kind*, and named buffers.

use std::cell::RefCell;

use bregman_tensor::Tensor;

/// What a parameter is, so that optimizers can build parameter groups
/// (each with its own regularizer and hyper-parameters) from kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ParamKind {
    /// Weight `[out, in]` of a dense layer.
    LinearWeight,
    /// Weight `[out, in, k, k]` of a convolution.
    ConvWeight,
    /// Bias of a dense or convolutional layer.
    Bias,
    /// Scale γ of a batch normalisation.
    BnWeight,
    /// Shift β of a batch normalisation.
    BnBias,
}

impl ParamKind {
    /// A short lowercase name (`linear_weight`, `conv_weight`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ParamKind::LinearWeight => "linear_weight",
            ParamKind::ConvWeight => "conv_weight",
            ParamKind::Bias => "bias",
            ParamKind::BnWeight => "bn_weight",
            ParamKind::BnBias => "bn_bias",
        }
    }

    /// True for the weights whose sparsity the paper measures (linear and conv).
    pub fn is_weight(self) -> bool {
        matches!(self, ParamKind::LinearWeight | ParamKind::ConvWeight)
    }
}

/// A trainable tensor with a stable, PyTorch-`state_dict`-style name.
///
/// Each parameter is its own contiguous buffer, so an optimizer updates it
/// with one fused pass over memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Parameter {
    /// Full name, e.g. `layers.0.weight` or `layer1.0.conv1.weight`.
    pub name: String,
    /// What the parameter is.
    pub kind: ParamKind,
    /// The values.
    pub value: Tensor,
}

impl Parameter {
    /// A parameter named `local` (the name gets its prefix from [`Parameter::rename`]).
    pub fn new(local: &str, kind: ParamKind, value: Tensor) -> Parameter {
        Parameter {
            name: local.to_string(),
            kind,
            value,
        }
    }

    /// Sets the full name to `prefix.local` (or `local` for an empty prefix).
    pub fn rename(&mut self, prefix: &str, local: &str) {
        self.name = join(prefix, local);
    }
}

/// A non-trainable state tensor (e.g. `bn1.running_mean`), updated during training.
///
/// Interior mutability lets a training forward pass, which borrows the model
/// immutably (the tape holds `&` to the parameters), update it.
#[derive(Debug)]
pub struct Buffer {
    /// Full name.
    pub name: String,
    /// The values.
    pub value: RefCell<Tensor>,
}

impl Buffer {
    /// A buffer named `local`.
    pub fn new(local: &str, value: Tensor) -> Buffer {
        Buffer {
            name: local.to_string(),
            value: RefCell::new(value),
        }
    }

    /// Sets the full name to `prefix.local`.
    pub fn rename(&mut self, prefix: &str, local: &str) {
        self.name = join(prefix, local);
    }
}

impl Clone for Buffer {
    fn clone(&self) -> Self {
        Buffer {
            name: self.name.clone(),
            value: RefCell::new(self.value.borrow().clone()),
        }
    }
}

/// `prefix.local`, or `local` alone for an empty prefix.
pub fn join(prefix: &str, local: &str) -> String {
    if prefix.is_empty() {
        local.to_string()
    } else {
        format!("{prefix}.{local}")
    }
}
