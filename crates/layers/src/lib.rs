//! # bregman-layers
//!
//! Layers and models on top of the autodiff tape.
//!
//! - The [`Module`] trait: `forward` on a tape, `infer` without one, train/eval
//!   mode, named [`Parameter`]s with a [`ParamKind`] (so optimizers can group
//!   them), and named [`Buffer`]s (batchnorm running statistics).
//! - Layers, one per file: [`Dense`], [`Conv2d`], [`BatchNorm2d`],
//!   [`BasicBlock`], [`Sequential`], and the parameter-free [`ReLU`],
//!   [`MaxPool2d`], [`Flatten`], [`GlobalAvgPool`].
//! - The paper's networks in [`models`]: [`models::mlp`],
//!   [`models::paper_convnet`], [`models::resnet18_cifar`], [`models::denoiser`].
//!
//! ```
//! use bregman_layers::{models, Module};
//! use bregman_autodiff::Tape;
//! use bregman_tensor::Tensor;
//! use rand::SeedableRng;
//!
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
//! let model = models::mlp(&[784, 200, 80, 10], &mut rng);
//! assert_eq!(model.num_params(), 173_890);
//! assert_eq!(model.params()[0].name, "layers.0.weight");
//!
//! let x = Tensor::zeros(&[4, 1, 28, 28]);
//! let mut tape = Tape::new();
//! let xv = tape.constant(x);
//! let logits = model.forward(&mut tape, xv)?;
//! let loss = tape.cross_entropy(logits, &[0, 1, 2, 3]);
//! tape.backward(loss);
//! assert!(tape.grad_of(&model.params()[0].value).is_some());
//! # Ok::<(), bregman_layers::LayerError>(())
//! ```
#![warn(missing_docs)]

mod basic_block;
mod batchnorm2d;
mod conv2d;
mod dense;
mod error;
pub mod init;
mod kernels;
pub mod models;
mod module;
mod parameter;
mod sequential;
mod stateless;

pub use basic_block::BasicBlock;
pub use batchnorm2d::BatchNorm2d;
pub use conv2d::Conv2d;
pub use dense::Dense;
pub use error::LayerError;
pub use kernels::Kernels;
pub use module::{BatchMajor, Module};
pub use parameter::{join, Buffer, ParamKind, Parameter};
pub use sequential::Sequential;
pub use stateless::{Flatten, GlobalAvgPool, MaxPool2d, ReLU};
