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
//!
//! One LinBreg step on the paper's MLP, from a 1%-dense start:
//!
//! ```
//! use bregman::autodiff::Tape;
//! use bregman::layers::{models, Module};
//! use bregman::optim::{init, GroupSpec, GroupedOptimizer, Hyper, Method, Optimizer, L1};
//! use bregman::tensor::Tensor;
//! use rand::SeedableRng;
//!
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
//! let mut model = models::mlp(&[784, 200, 80, 10], &mut rng);
//! init::sparse_init(&mut model.params_mut(), &init::SparseInit::mlp(0.01), &mut rng).unwrap();
//! let mut opt = GroupedOptimizer::new(Method::LinBreg, &model.params(),
//!     GroupSpec::weights_and_rest(Hyper::with_lr(0.1), Box::new(L1::new(0.1)))).unwrap();
//!
//! let x = Tensor::from_fn(&[8, 784], |i| (i % 7) as f32 / 7.0);
//! let labels = [0, 1, 2, 3, 4, 5, 6, 7];
//! let grads: Vec<Tensor> = {
//!     let mut tape = Tape::new();
//!     let xv = tape.constant(x);
//!     let logits = model.forward(&mut tape, xv).unwrap();
//!     let loss = tape.cross_entropy(logits, &labels);
//!     tape.backward(loss);
//!     model.params().iter().map(|p| tape.take_grad_of(&p.value).unwrap()).collect()
//! };
//! opt.step(&mut model.params_mut(), &grads).unwrap(); // v ← v − τg; θ ← prox_{δJ}(δv)
//! ```
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
