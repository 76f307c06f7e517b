//! # bregman
//!
//! Sparse neural networks trained with (linearized) Bregman iterations on the CPU.
//! This facade re-exports the workspace crates:
//!
//! - [`tensor`]: n-d `f32` tensors, GEMM, im2col, deterministic parallel kernels.
//! - [`autodiff`]: reverse-mode automatic differentiation on a tape.
//! - [`layers`]: layers, the `Module` trait and the paper's models.
//! - [`optim`]: regularizers, LinBreg/AdaBreg and baselines, sparse init, schedulers.
//! - [`data`]: MNIST/Fashion-MNIST/CIFAR-10 readers, splits, batching.
//! - [`train`]: the training loop, metrics, checkpoints, experiment presets.
#![warn(missing_docs)]

pub use bregman_autodiff as autodiff;
pub use bregman_data as data;
pub use bregman_layers as layers;
pub use bregman_optim as optim;
pub use bregman_tensor as tensor;
pub use bregman_train as train;

/// Keeps freed memory in the process instead of returning it to the OS.
///
/// A training step allocates and frees the same large activation buffers
/// (tens of MB) every step. glibc hands blocks above its mmap threshold (at
/// most 32 MB) back to the kernel on `free`, so each step page-faults them in
/// again: on the paper ConvNet that doubled the time of `im2col`. Raising the
/// mmap and trim thresholds keeps those pages; the process then holds its peak
/// memory. Call once at program start (the `bregman` binary and the benches
/// do). A no-op on platforms other than Linux/glibc.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator parameters; called before any
    // threads allocate concurrently in our binaries, and it is thread-safe anyway.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}
