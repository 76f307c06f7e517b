//! Sparse weights and the kernels that skip their zeros.
//!
//! Bregman training keeps a network sparse from the first step on (2–10% of
//! the weights of the paper's networks are non-zero), so the products with
//! those weights can skip the zeros. This module holds the formats and the
//! kernels; the layers decide, per layer and per call, whether the sparse or
//! the dense path runs (from the weight's density and the measured
//! break-even densities, see docs/BENCHMARKS.md).
//!
//! - [`Csr`]: compressed sparse rows, rebuilt in place from θ.
//! - [`spmm`](spmm::spmm): `C = S·B`, sparse times dense, vectorised along
//!   the dense dimension with a register tile of outputs per sparse row.
//! - [`SparseLinear`]: a dense layer's weight `W` and its transpose in CSR
//!   form, with the layer's forward product `Y = X·Wᵀ` and input gradient
//!   `∂L/∂X = G·W`.
//! - [`SparseConv`]: a stride-1 convolution's weight, with the forward pass
//!   and the input gradient of one image on the non-zero taps (implicit
//!   im2col: each weight reads a shifted window of the padded image).
//!
//! - [`sddmm`](sddmm::sddmm): the sampled dense-dense product, a dense
//!   product computed at a sparse matrix's non-zeros only — the weight
//!   gradient restricted to the support (`SparseLinear::weight_grad`,
//!   `SparseConv::weight_grad`), for the masked steps of sparse
//!   backpropagation.
//!
//! A full Bregman step still needs the dense weight gradient `∂L/∂W = Gᵀ·X`
//! for every weight, zero or not — that is how weights enter the support;
//! only the masked steps between full steps use the sampled one.

mod conv;
mod csr;
mod linear;
pub mod sddmm;
pub mod spmm;

pub use conv::{sparse_conv_pays, ConvPlan, ConvScratch, SparseConv};
pub use csr::{count_nonzero, density, Csr};
pub use linear::{sparse_linear_pays, SparseLinear};
