//! The differentiable operations, one per file: forward, backward and the
//! derivative in the doc comment side by side. Each op is a method on
//! [`Tape`](crate::Tape); ops with an inference use also expose a plain
//! `forward` function that records nothing.

pub mod add;
pub mod batchnorm;
pub mod conv2d;
pub mod conv2d_pool_relu;
pub mod cross_entropy;
pub mod global_avg_pool;
pub mod linear;
pub mod matmul;
pub mod maxpool2d;
pub mod mse;
pub mod mul;
pub mod relu;
pub mod reshape;
pub mod scale;
pub mod sigmoid;
pub mod sparse_conv2d;
pub mod sparse_linear;
pub mod sub;
pub mod sum;
pub mod tanh;
pub mod unary;
pub mod weight_grad;
