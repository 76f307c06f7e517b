//! # bregman
//!
//! Sparse neural networks trained with (linearized) Bregman iterations on the CPU.
//! This facade re-exports the workspace crates:
//!
//! - [`tensor`]: n-d `f32` tensors, GEMM, im2col, deterministic parallel kernels.
//! - [`autodiff`]: reverse-mode automatic differentiation on a tape.
#![warn(missing_docs)]

pub use bregman_autodiff as autodiff;
pub use bregman_tensor as tensor;
