//! # bregman-tensor
//!
//! The numeric floor of the bregman engine: an n-dimensional `f32` [`Tensor`]
//! (row-major, contiguous, NCHW for images) on top of `ndarray`, with
//!
//! - element-wise arithmetic and the broadcasts layers need ([`elementwise`]),
//! - deterministic reductions ([`reduce`]),
//! - one GEMM entry point, [`gemm::gemm`], with transposed operands read in
//!   place and a thread-count-independent parallel split,
//! - `im2col`/`col2im` for convolutions ([`conv`]) and pooling kernels ([`pool`]),
//! - sparse weights (CSR) and the kernels that skip their zeros ([`sparse`]).
//!
//! Parallel loops use rayon over fixed-size chunks ([`parallel`]), so results are
//! bitwise identical for any `RAYON_NUM_THREADS`.
//!
//! ```
//! use bregman_tensor::{matmul, Tensor};
//! let a = Tensor::from_vec(&[2, 3], vec![1., 2., 3., 4., 5., 6.])?;
//! let b = Tensor::from_vec(&[2, 3], vec![1., 0., 0., 0., 1., 0.])?;
//! // a · bᵀ, with bᵀ read in place (no copy):
//! let c = matmul(&a, false, &b, true);
//! assert_eq!(c.data(), &[1., 2., 4., 5.]);
//! # Ok::<(), bregman_tensor::TensorError>(())
//! ```
#![warn(missing_docs)]

pub mod conv;
pub mod elementwise;
mod error;
pub mod gemm;
pub mod gemm_profile;
pub mod packed;
pub mod parallel;
pub mod pool;
pub mod reduce;
pub mod sparse;
mod tensor;
#[cfg(test)]
mod test_support;
pub mod transpose;

pub use conv::{col2im, im2col, ConvGeometry};
pub use error::TensorError;
pub use gemm::{gemm, gemm_serial, matmul, matmul_into};
pub use tensor::{assert_same_shape, Tensor};
