//! The data-parallel step (see [`crate::comm`]): the ranks' share
//! gradients summed into the whole batch's, and batchnorm's running
//! statistics shared from rank 0.

use bregman_layers::{Module, Sequential};
use bregman_tensor::Tensor;

use crate::comm::Comm;

/// Data-parallel step: replaces this rank's share gradients, each scaled
/// by `weight = n_share/n_batch`, by their sum over the ranks — the gradient
/// of the whole batch's mean loss, the same bits on every rank — through one
/// flat, reused buffer that also carries the share's `(loss sum, correct
/// count)`. Returns the batch's.
pub(crate) fn reduce_gradients(
    comm: &dyn Comm,
    flat: &mut Vec<f32>,
    grads: &mut [Tensor],
    weight: f32,
    (loss, correct): (f64, usize),
) -> (f64, usize) {
    let total: usize = grads.iter().map(Tensor::len).sum();
    flat.clear();
    flat.reserve(total + 2);
    for g in grads.iter() {
        flat.extend(g.data().iter().map(|&v| v * weight));
    }
    flat.push(loss as f32);
    flat.push(correct as f32);
    comm.sum_f32(flat);
    let mut at = 0;
    for g in grads.iter_mut() {
        let len = g.len();
        g.data_mut().copy_from_slice(&flat[at..at + len]);
        at += len;
    }
    (flat[total] as f64, flat[total + 1].round() as usize)
}

/// Rank 0's batchnorm running statistics to every rank (as PyTorch DDP
/// broadcasts buffers): each rank normalises with its own batch statistics,
/// but all evaluate and checkpoint with the same buffers.
pub(crate) fn share_buffers(comm: &dyn Comm, model: &Sequential) {
    for b in model.buffers() {
        comm.broadcast_f32(b.value.borrow_mut().data_mut());
    }
}

/// Images in batch `b` of an epoch over `len` images in batches of `batch_size`.
pub(crate) fn n_images(len: usize, batch_size: usize, b: usize) -> usize {
    batch_size.min(len - b * batch_size)
}
