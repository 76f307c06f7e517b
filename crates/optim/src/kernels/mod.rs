//! The fused update kernels: one pass over memory per parameter tensor.
//!
//! Each kernel zips the parameter `θ`, its gradient `g` and its state slices,
//! splits them into chunks of whole regularizer groups (about
//! [`CHUNK`](bregman_tensor::parallel::CHUNK) values, a size that never depends
//! on the thread count) and runs the chunks on rayon. Within a chunk the
//! element-wise update is followed by the regularizer's prox on the same,
//! still cache-resident, chunk. No kernel allocates.

pub mod adabreg;
pub mod adam;
pub mod linbreg;
pub mod proxgd;
pub mod sgd;

use bregman_tensor::parallel::{CHUNK, PAR_THRESHOLD};

/// Chunk length: a whole number of groups of `group_size`, about `CHUNK` values.
pub(crate) fn chunk_len(group_size: usize) -> usize {
    (CHUNK / group_size.max(1)).max(1) * group_size.max(1)
}

/// Whether a tensor of `len` values is worth splitting across threads.
pub(crate) fn parallel(len: usize) -> bool {
    len >= PAR_THRESHOLD
}
