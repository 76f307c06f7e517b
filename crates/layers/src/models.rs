//! The paper's four networks (SPEC §5), with PyTorch-style parameter names.

use rand::Rng;

use crate::{
    BasicBlock, BatchNorm2d, Conv2d, Dense, Flatten, GlobalAvgPool, MaxPool2d, Module, ReLU,
    Sequential,
};

/// A fully connected ReLU network with the given layer widths, e.g.
/// `mlp(&[784, 200, 80, 10])`; ReLU between layers, none after the last
/// (logits). Inputs are flattened first, so `[N, 1, 28, 28]` works as well as
/// `[N, 784]`. Parameters are named `layers.0.weight`, `layers.2.weight`, ...
///
/// **Panics** if fewer than two widths are given.
pub fn mlp(widths: &[usize], rng: &mut impl Rng) -> Sequential {
    assert!(
        widths.len() >= 2,
        "mlp: need at least input and output widths, got {widths:?}"
    );
    dense_stack(widths, false, rng)
}

/// `flatten` then `layers`: dense maps between consecutive `widths` with a
/// ReLU between them, and after the last one too when `relu_out`.
fn dense_stack(widths: &[usize], relu_out: bool, rng: &mut impl Rng) -> Sequential {
    let mut layers = Sequential::new();
    for (i, w) in widths.windows(2).enumerate() {
        layers = layers.push(Dense::new(w[0], w[1], rng));
        if relu_out || i + 2 < widths.len() {
            layers = layers.push(ReLU::new());
        }
    }
    let mut model = Sequential::new()
        .push_named("flatten", Flatten::new())
        .push_named("layers", layers);
    model.rename("");
    model
}

/// The Fashion-MNIST ConvNet of Table 1: conv(1→64, 5) → maxpool 2 → ReLU →
/// conv(64→64, 5) → maxpool 2 → ReLU → flatten 1024 → dense 128 → ReLU → dense 10.
/// 236,618 parameters; input `[N, 1, 28, 28]`.
pub fn paper_convnet(rng: &mut impl Rng) -> Sequential {
    let layers = Sequential::new()
        .push(Conv2d::new(1, 64, 5, 1, 0, true, rng))
        .push(MaxPool2d::new(2, 2))
        .push(ReLU::new())
        .push(Conv2d::new(64, 64, 5, 1, 0, true, rng))
        .push(MaxPool2d::new(2, 2))
        .push(ReLU::new())
        .push(Flatten::new())
        .push(Dense::new(1024, 128, rng))
        .push(ReLU::new())
        .push(Dense::new(128, 10, rng));
    let mut model = Sequential::new().push_named("layers", layers);
    model.rename("");
    model
}

/// ResNet-18 for 32×32 inputs: 3×3 stem conv (64) + BN + ReLU, no stem
/// max-pool, four stages of two [`BasicBlock`]s (64, 128, 256, 512 channels;
/// stride 2 from the second stage on), global average pool, dense.
/// 11,173,962 parameters for 10 classes.
pub fn resnet18_cifar(num_classes: usize, rng: &mut impl Rng) -> Sequential {
    let mut model = Sequential::new()
        .push_named("conv1", Conv2d::new(3, 64, 3, 1, 1, false, rng))
        .push_named("bn1", BatchNorm2d::new(64))
        .push_named("relu", ReLU::new());
    let mut input = 64;
    for (stage, (&channels, &stride)) in [64, 128, 256, 512].iter().zip(&[1, 2, 2, 2]).enumerate() {
        let blocks = Sequential::new()
            .push(BasicBlock::new(input, channels, stride, rng))
            .push(BasicBlock::new(channels, channels, 1, rng));
        model = model.push_named(&format!("layer{}", stage + 1), blocks);
        input = channels;
    }
    let mut model = model
        .push_named("pool", GlobalAvgPool::new())
        .push_named("linear", Dense::new(512, num_classes, rng));
    model.rename("");
    model
}

/// The denoising network of Sec. 4.6: seven layers of 784 neurons (input,
/// five hidden, output), i.e. six dense 784 → 784 maps, each followed by a
/// ReLU — also the last, as in the authors' code: the targets are images in
/// [0, 1], and without it the few active output rows of a sparse start push
/// every hidden unit into the dead zone within the first steps (see
/// docs/RESULTS.md). Input `[N, 784]` or `[N, 1, 28, 28]`; parameter names as
/// [`mlp`] (`layers.0.weight` … `layers.10.bias`).
pub fn denoiser(rng: &mut impl Rng) -> Sequential {
    dense_stack(&[784; 7], true, rng)
}
