//! # bregman-autodiff
//!
//! Reverse-mode automatic differentiation on a tape (a Wengert list).
//!
//! - [`Tape`] records every operation as a node in a `Vec`; [`Var`] is an index.
//!   [`Tape::backward`] walks the nodes in reverse creation order.
//! - Each operation lives in its own file under [`ops`] with its forward pass,
//!   its [`Backward`] rule and its derivative in the doc comment.
//! - Parameters are *borrowed* by the tape ([`Tape::param`]), never copied, and
//!   their gradients are moved out afterwards ([`Tape::take_grad_of`]).
//! - Inference records nothing: ops expose plain `forward` functions
//!   (e.g. [`ops::linear::forward`]).
//! - [`gradcheck`] compares every rule with central finite differences.
//!
//! ```
//! use bregman_autodiff::Tape;
//! use bregman_tensor::Tensor;
//!
//! let w = Tensor::from_vec(&[1, 2], vec![0.5, -1.0])?;        // [out=1, in=2]
//! let x = Tensor::from_vec(&[1, 2], vec![2.0, 3.0])?;
//! let mut tape = Tape::new();
//! let (wv, xv) = (tape.param(&w), tape.constant(x));
//! let y = tape.linear(xv, wv, None);      // y = x·wᵀ = 0.5·2 − 1·3 = −2
//! let loss = tape.mse(y, Tensor::from_vec(&[1, 1], vec![0.0])?); // (−2)² = 4
//! tape.backward(loss);
//! // ∂L/∂w = 2·y·x = [−8, −12]
//! assert_eq!(tape.grad_of(&w).unwrap().data(), &[-8.0, -12.0]);
//! # Ok::<(), bregman_tensor::TensorError>(())
//! ```
#![warn(missing_docs)]

pub mod gradcheck;
pub mod ops;
pub mod profile;
mod tape;

pub use gradcheck::{check_gradients, GradCheck};
pub use ops::batchnorm::BatchStats;
pub use ops::conv2d::Conv2dSpec;
pub use ops::conv2d_pool_relu::PoolSpec;
pub use ops::weight_grad::WeightGrad;
pub use profile::NodeTiming;
pub use tape::{Backward, Tape, Var};
