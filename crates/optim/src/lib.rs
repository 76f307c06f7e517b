//! # bregman-optim
//!
//! The Bregman optimizer family and its baselines (SPEC §1), the regularizers
//! with their proximal maps (SPEC §2), sparse initialisation (SPEC §3) and
//! schedulers.
//!
//! - [`Regularizer`] — `value`, `prox`, `subgradient`: [`NoRegularizer`],
//!   [`L1`] (also non-negative), [`GroupL12`] over rows or conv kernels,
//!   [`L1PlusGroup`].
//! - [`GroupedOptimizer`] implements [`Optimizer`] for every [`Method`]: SGD,
//!   Adam, ProxGD, LinBreg (with optional momentum), AdaBreg, over
//!   parameter groups built from parameter kinds ([`GroupSpec`]).
//! - [`kernels`] — the fused, rayon-parallel update loops, one file per method.
//! - [`init`] — sparse initialisation; [`schedule`] — lr plateau and λ schedulers.
//!
//! ```
//! use bregman_layers::{ParamKind, Parameter};
//! use bregman_optim::{GroupSpec, GroupedOptimizer, Hyper, Method, Optimizer, L1};
//! use bregman_tensor::Tensor;
//!
//! let mut w = Parameter::new("w", ParamKind::LinearWeight, Tensor::from_vec(&[3], vec![0.0, 0.5, -2.0])?);
//! let spec = GroupSpec::all(Hyper::with_lr(0.1), Box::new(L1::new(1.0)));
//! let mut opt = GroupedOptimizer::new(Method::LinBreg, &[&w], vec![spec]).unwrap();
//! // v₀ = λ·sign(θ) + θ/δ = [0, 1.5, −3];  v ← v − τ·g with g = [−20, 0, 0] → [2, 1.5, −3]
//! let g = Tensor::from_vec(&[3], vec![-20.0, 0.0, 0.0])?;
//! opt.step(&mut [&mut w], &[g]).unwrap();
//! // θ = shrink(v; λ = 1) = [1, 0.5, −2]: the first weight entered the support.
//! assert_eq!(w.value.data(), &[1.0, 0.5, -2.0]);
//! # Ok::<(), bregman_tensor::TensorError>(())
//! ```
#![warn(missing_docs)]

mod error;
pub mod group;
pub mod init;
pub mod kernels;
mod optimizer;
pub mod regularizer;
pub mod schedule;

pub use error::OptimError;
pub use group::{GroupSpec, Hyper, ParamGroup};
pub use optimizer::{
    CatchUp, GroupedOptimizer, Method, Optimizer, OptimizerState, ParamState, StepMode,
};
pub use regularizer::{GroupL12, Grouping, L1PlusGroup, NoRegularizer, Regularizer, L1};
