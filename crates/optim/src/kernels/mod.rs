//! The fused update kernels: one pass over memory per parameter tensor.
//!
//! Each kernel zips the parameter `θ`, its gradient `g` and its state slices,
//! splits them into chunks of whole regularizer groups (about
//! `CHUNK` values, a size that never depends
//! on the thread count) and runs the chunks on rayon. Within a chunk the
//! element-wise update applies an element-wise prox (ℓ1, none) inline, so θ is
//! written once; a group prox (ℓ1,2) runs right after on the same, still
//! cache-resident, chunk. No kernel allocates.

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

/// Runs `$body` with `$prox` bound to the regularizer's element-wise prox
/// `x ↦ prox_{tJ}(x)` as a concrete closure (so the update loop inlines and
/// vectorises it) and `$post` to `Some((reg, group_size))` when the prox is a
/// group prox that must run over each chunk after the loop instead.
macro_rules! with_prox {
    ($reg:expr, $t:expr, $gs:expr, |$prox:ident, $post:ident| $body:expr) => {{
        use $crate::regularizer::{shrink, ElementwiseProx};
        let reg: &dyn $crate::Regularizer = $reg;
        match reg.elementwise() {
            Some(ElementwiseProx::Identity) => {
                let $prox = |x: f32| x;
                let $post: Option<(&dyn $crate::Regularizer, usize)> = None;
                $body
            }
            Some(ElementwiseProx::Shrink { lambda }) => {
                let th = $t * lambda;
                let $prox = move |x: f32| shrink(x, th);
                let $post: Option<(&dyn $crate::Regularizer, usize)> = None;
                $body
            }
            Some(ElementwiseProx::ShrinkNonnegative { lambda }) => {
                let th = $t * lambda;
                let $prox = move |x: f32| (x - th).max(0.0);
                let $post: Option<(&dyn $crate::Regularizer, usize)> = None;
                $body
            }
            None => {
                let $prox = |x: f32| x;
                let $post = Some((reg, $gs));
                $body
            }
        }
    }};
}
pub(crate) use with_prox;

/// Runs `f`, compiled for AVX2 + FMA when the CPU has them (checked at run
/// time, so the crate builds and runs on any x86-64 without
/// `-C target-cpu=native`). The arithmetic is the same either way — Rust never
/// contracts `a*b + c` into an FMA on its own — so the results are bitwise
/// identical on every CPU; only the vector width changes (8 lanes, not 4).
#[inline(always)]
pub(crate) fn simd<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            #[target_feature(enable = "avx2,fma")]
            unsafe fn wide<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            // SAFETY: the CPU supports the enabled features (checked above).
            return unsafe { wide(f) };
        }
    }
    f()
}
