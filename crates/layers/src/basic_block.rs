//! The residual `BasicBlock` of ResNet-18:
//! `y = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`, with 3×3 convs
//! (the first with the block's stride) and a shortcut that is the identity, or
//! a 1×1 conv + batchnorm when the stride or the channel count changes.

use bregman_autodiff::ops::relu::Relu;
use bregman_autodiff::ops::unary;
use bregman_autodiff::{Tape, Var, WeightGrad};
use bregman_tensor::Tensor;
use rand::Rng;

use crate::{BatchNorm2d, Buffer, Conv2d, Kernels, LayerError, Module, Parameter, Sequential};

/// A ResNet basic block.
pub struct BasicBlock {
    name: String,
    /// First 3×3 conv (carries the stride).
    pub conv1: Conv2d,
    /// Batchnorm after `conv1`.
    pub bn1: BatchNorm2d,
    /// Second 3×3 conv.
    pub conv2: Conv2d,
    /// Batchnorm after `conv2`.
    pub bn2: BatchNorm2d,
    /// Projection shortcut (1×1 conv + BN), or `None` for the identity.
    pub shortcut: Option<Sequential>,
}

impl BasicBlock {
    /// A block `input → output` channels with the given stride.
    pub fn new(input: usize, output: usize, stride: usize, rng: &mut impl Rng) -> BasicBlock {
        let shortcut = (stride != 1 || input != output).then(|| {
            Sequential::new()
                .push(Conv2d::new(input, output, 1, stride, 0, false, rng))
                .push(BatchNorm2d::new(output))
        });
        let mut b = BasicBlock {
            name: String::new(),
            conv1: Conv2d::new(input, output, 3, stride, 1, false, rng),
            bn1: BatchNorm2d::new(output),
            conv2: Conv2d::new(output, output, 3, 1, 1, false, rng),
            bn2: BatchNorm2d::new(output),
            shortcut,
        };
        b.rename("");
        b
    }
}

impl Module for BasicBlock {
    fn forward<'a>(&'a self, tape: &mut Tape<'a>, x: Var) -> Result<Var, LayerError> {
        let h = self.conv1.forward(tape, x)?;
        let h = self.bn1.forward(tape, h)?;
        let h = tape.relu(h);
        let h = self.conv2.forward(tape, h)?;
        let h = self.bn2.forward(tape, h)?;
        let s = match &self.shortcut {
            Some(sc) => sc.forward(tape, x)?,
            None => x,
        };
        let y = tape.add(h, s);
        Ok(tape.relu(y))
    }

    fn infer(&self, x: &Tensor) -> Result<Tensor, LayerError> {
        let h = self.conv1.infer(x)?;
        let h = unary::forward::<Relu>(&self.bn1.infer(&h)?);
        let mut h = self.bn2.infer(&self.conv2.infer(&h)?)?;
        match &self.shortcut {
            Some(sc) => h.add_assign(&sc.infer(x)?),
            None => h.add_assign(x),
        }
        h.map_inplace(|v| v.max(0.0));
        Ok(h)
    }

    fn set_training(&mut self, training: bool) {
        self.bn1.set_training(training);
        self.bn2.set_training(training);
        if let Some(sc) = &mut self.shortcut {
            sc.set_training(training);
        }
    }

    fn set_kernels(&mut self, kernels: Kernels) {
        self.conv1.set_kernels(kernels);
        self.conv2.set_kernels(kernels);
        if let Some(sc) = &mut self.shortcut {
            sc.set_kernels(kernels);
        }
    }

    fn set_weight_grad(&mut self, weight_grad: WeightGrad) {
        self.conv1.set_weight_grad(weight_grad);
        self.conv2.set_weight_grad(weight_grad);
        if let Some(sc) = &mut self.shortcut {
            sc.set_weight_grad(weight_grad);
        }
    }

    fn params(&self) -> Vec<&Parameter> {
        let mut p = self.conv1.params();
        p.extend(self.bn1.params());
        p.extend(self.conv2.params());
        p.extend(self.bn2.params());
        if let Some(sc) = &self.shortcut {
            p.extend(sc.params());
        }
        p
    }

    fn params_mut(&mut self) -> Vec<&mut Parameter> {
        let mut p = self.conv1.params_mut();
        p.extend(self.bn1.params_mut());
        p.extend(self.conv2.params_mut());
        p.extend(self.bn2.params_mut());
        if let Some(sc) = &mut self.shortcut {
            p.extend(sc.params_mut());
        }
        p
    }

    fn buffers(&self) -> Vec<&Buffer> {
        let mut b = self.bn1.buffers();
        b.extend(self.bn2.buffers());
        if let Some(sc) = &self.shortcut {
            b.extend(sc.buffers());
        }
        b
    }

    fn rename(&mut self, prefix: &str) {
        use crate::parameter::join;
        self.name = prefix.to_string();
        self.conv1.rename(&join(prefix, "conv1"));
        self.bn1.rename(&join(prefix, "bn1"));
        self.conv2.rename(&join(prefix, "conv2"));
        self.bn2.rename(&join(prefix, "bn2"));
        if let Some(sc) = &mut self.shortcut {
            sc.rename(&join(prefix, "shortcut"));
        }
    }

    fn describe(&self) -> String {
        format!(
            "BasicBlock {}→{}, stride {}{}",
            self.conv1.in_channels(),
            self.conv2.weight().value.dim(0),
            self.conv1.spec.stride,
            if self.shortcut.is_some() {
                ", projection shortcut"
            } else {
                ""
            }
        )
    }
}
