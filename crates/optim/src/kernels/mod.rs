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
pub mod masked;
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

/// Tensors with at least this many values (1 MB) have `θ` written with
/// streaming stores by the Bregman kernels. Smaller ones (all of the MLP's)
/// keep plain stores: their θ may still be cached when the next forward pass
/// reads it. Public so tests can cover both paths.
pub const STREAM_THRESHOLD: usize = 1 << 18;

/// Values per stack tile of [`write_theta`] (4 KB, stays in L1).
const TILE: usize = 1024;

/// Whether a Bregman kernel should stream `θ` (never with a group prox, which
/// reads θ back right after the loop).
pub(crate) fn stream_theta(len: usize, post: Option<(&dyn crate::Regularizer, usize)>) -> bool {
    post.is_none() && len >= STREAM_THRESHOLD
}

/// Writes one chunk of `θ`: `update(offset, out)` fills `out` with the new θ
/// of the chunk's values `offset..offset + out.len()` (and updates the
/// state there).
///
/// The Bregman kernels never read θ, yet a plain store to a cache line that
/// is not cached first reads the line (read-for-ownership): LinBreg would move
/// 20 bytes per parameter instead of 16. With `stream`, `out` is a small
/// stack tile that is then copied to θ with non-temporal stores, which skip
/// that read; without it, `out` is θ itself.
#[inline(always)]
pub(crate) fn write_theta(
    theta: &mut [f32],
    stream: bool,
    mut update: impl FnMut(usize, &mut [f32]),
) {
    if !stream {
        update(0, theta);
        return;
    }
    let mut tile = [0.0f32; TILE];
    for (i, th) in theta.chunks_mut(TILE).enumerate() {
        let out = &mut tile[..th.len()];
        update(i * TILE, out);
        store_streaming(th, out);
    }
    store_fence();
}

/// `dst.copy_from_slice(src)` with non-temporal stores where `dst` is
/// 16-byte aligned (SSE, part of every x86-64); a plain copy elsewhere.
fn store_streaming(dst: &mut [f32], src: &[f32]) {
    debug_assert_eq!(dst.len(), src.len());
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_loadu_ps, _mm_stream_ps};
        let head = dst.as_ptr().align_offset(16).min(dst.len());
        let body = (dst.len() - head) / 4 * 4;
        dst[..head].copy_from_slice(&src[..head]);
        for i in (head..head + body).step_by(4) {
            // SAFETY: i + 4 ≤ head + body ≤ len for both slices, and
            // dst + i is 16-byte aligned (head aligns it, steps keep it).
            unsafe { _mm_stream_ps(dst.as_mut_ptr().add(i), _mm_loadu_ps(src.as_ptr().add(i))) };
        }
        dst[head + body..].copy_from_slice(&src[head + body..]);
    }
    #[cfg(not(target_arch = "x86_64"))]
    dst.copy_from_slice(src);
}

/// Orders the streaming stores before anything this thread does next (they
/// are weakly ordered; rayon's join then publishes them to other threads).
fn store_fence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `sfence` has no preconditions.
    unsafe {
        std::arch::x86_64::_mm_sfence()
    };
}

/// Runs the loop `$body`, compiled for AVX2 + FMA when the CPU has them
/// (checked at run time, so the crate builds and runs on any x86-64 without
/// `-C target-cpu=native`). The arithmetic is the same either way — Rust never
/// contracts `a*b + c` into an FMA on its own — so the results are bitwise
/// identical on every CPU; only the vector width changes (8 lanes, not 4).
///
/// A macro, not a function taking a closure: the body is expanded twice, so
/// each copy has exactly one caller and LLVM inlines the wide copy into the
/// AVX2 function. With one closure called from both paths, large loops (Adam,
/// AdaBreg) stayed out of line and ran as 4-lane SSE code.
macro_rules! simd {
    ($body:expr) => {{
        #[cfg(target_arch = "x86_64")]
        {
            if $crate::kernels::has_avx2_fma() {
                // SAFETY: the CPU supports AVX2 and FMA (checked just above).
                unsafe { $crate::kernels::wide(|| $body) }
            } else {
                $body
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            $body
        }
    }};
}
pub(crate) use simd;

/// Whether the CPU has AVX2 and FMA (cached by `std`).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn has_avx2_fma() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// Calls `f` inside a function compiled with AVX2 + FMA enabled.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn wide<R>(f: impl FnOnce() -> R) -> R {
    f()
}
