//! Fixed-chunk rayon helpers.
//!
//! Every parallel loop in the engine splits its work into chunks whose size is a
//! constant ([`CHUNK`]) and never depends on the number of threads. Element-wise
//! work is independent per element anyway; reductions combine per-chunk partial
//! results in chunk order. So `RAYON_NUM_THREADS=1` and `=2` give identical bits.

use std::mem::MaybeUninit;

use rayon::prelude::*;

/// Elements per parallel chunk (64 KiB of `f32`).
pub const CHUNK: usize = 1 << 14;

/// Below this many elements a loop runs on the calling thread.
pub const PAR_THRESHOLD: usize = 1 << 15;

/// `out[i] = f(out[i])` for every element, in parallel for large slices.
pub fn map_inplace(out: &mut [f32], f: impl Fn(f32) -> f32 + Sync) {
    if out.len() < PAR_THRESHOLD {
        out.iter_mut().for_each(|o| *o = f(*o));
    } else {
        out.par_chunks_mut(CHUNK)
            .for_each(|c| c.iter_mut().for_each(|o| *o = f(*o)));
    }
}

/// `f(&mut out[i], a[i])` for every element.
///
/// **Panics** if the lengths differ.
pub fn zip2(out: &mut [f32], a: &[f32], f: impl Fn(&mut f32, f32) + Sync) {
    assert_eq!(out.len(), a.len(), "zip2: length mismatch");
    if out.len() < PAR_THRESHOLD {
        out.iter_mut().zip(a).for_each(|(o, &x)| f(o, x));
    } else {
        out.par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK))
            .for_each(|(oc, ac)| oc.iter_mut().zip(ac).for_each(|(o, &x)| f(o, x)));
    }
}

/// `f(&mut out[i], a[i], b[i])` for every element.
///
/// **Panics** if the lengths differ.
pub fn zip3(out: &mut [f32], a: &[f32], b: &[f32], f: impl Fn(&mut f32, f32, f32) + Sync) {
    assert!(
        out.len() == a.len() && a.len() == b.len(),
        "zip3: length mismatch"
    );
    if out.len() < PAR_THRESHOLD {
        out.iter_mut()
            .zip(a.iter().zip(b))
            .for_each(|(o, (&x, &y))| f(o, x, y));
    } else {
        out.par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
            .for_each(|(oc, (ac, bc))| {
                oc.iter_mut()
                    .zip(ac.iter().zip(bc))
                    .for_each(|(o, (&x, &y))| f(o, x, y))
            });
    }
}

/// Sum of `f(x)` over a slice, reduced deterministically: partial sums per
/// [`CHUNK`] (each accumulated in `f64`), combined in chunk order.
pub fn sum_map(x: &[f32], f: impl Fn(f32) -> f64 + Sync) -> f64 {
    let chunk_sum = |c: &[f32]| c.iter().map(|&v| f(v)).sum::<f64>();
    if x.len() < PAR_THRESHOLD {
        x.chunks(CHUNK).map(chunk_sum).sum()
    } else {
        let partial: Vec<f64> = x.par_chunks(CHUNK).map(chunk_sum).collect();
        partial.into_iter().sum()
    }
}

/// Writes `T::default()` (zero for numbers) over every element of `c` and
/// returns it as initialised values: the first step of filling a chunk of an
/// uninitialised buffer inside the task that owns it (see [`zeroed_chunks`]).
pub fn init_default<T: Copy + Default>(c: &mut [MaybeUninit<T>]) -> &mut [T] {
    c.iter_mut().for_each(|e| {
        e.write(T::default());
    });
    // SAFETY: every element of `c` was initialised just above, and
    // `MaybeUninit<T>` has the layout of `T`.
    unsafe { &mut *(c as *mut [MaybeUninit<T>] as *mut [T]) }
}

/// Builds a vector of `len` values, `chunk` values at a time: each chunk is
/// zero-filled by the task that then hands it to `fill(state, index, chunk)`
/// (the last chunk may be shorter). The zeros are written while the chunk is
/// in cache, right before `fill` adds to or overwrites it, instead of in a
/// separate pass over a buffer that may be far larger than the cache.
///
/// With `parallel`, chunks run on rayon tasks and each task makes its own
/// `state` with `init` (scratch memory reused across the chunks it handles);
/// otherwise one `state` serves every chunk, in order. The chunks are fixed by
/// `len` and `chunk`, never by the thread count.
pub fn zeroed_chunks<S>(
    len: usize,
    chunk: usize,
    parallel: bool,
    init: impl Fn() -> S + Sync,
    fill: impl Fn(&mut S, usize, &mut [f32]) + Sync,
) -> Vec<f32> {
    // SAFETY: `init_default` writes every element of each chunk.
    unsafe {
        written_chunks(len, chunk, parallel, init, |state, i, c| {
            fill(state, i, init_default(c))
        })
    }
}

/// Builds a buffer of `len` values in chunks of `chunk` that
/// `fill(state, index, chunk)` writes without their being zeroed first (for
/// kernels that overwrite their whole output), otherwise as
/// [`zeroed_chunks`].
///
/// # Safety
/// `fill` must write every element of the chunk it is handed.
pub unsafe fn written_chunks<S>(
    len: usize,
    chunk: usize,
    parallel: bool,
    init: impl Fn() -> S + Sync,
    fill: impl Fn(&mut S, usize, &mut [MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    let mut out: Vec<f32> = Vec::with_capacity(len);
    if len == 0 {
        return out;
    }
    let chunk = chunk.max(1);
    let run = |state: &mut S, (i, c): (usize, &mut [MaybeUninit<f32>])| fill(state, i, c);
    let spare = &mut out.spare_capacity_mut()[..len];
    if parallel {
        spare
            .par_chunks_mut(chunk)
            .enumerate()
            .for_each_init(&init, run);
    } else {
        let mut state = init();
        spare
            .chunks_mut(chunk)
            .enumerate()
            .for_each(|item| run(&mut state, item));
    }
    // SAFETY: the chunks cover all `len` elements and the caller's `fill`
    // wrote each.
    unsafe { out.set_len(len) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every chunk reaches `fill` zeroed (even when the allocator hands back
    /// memory that held other values), chunk `i` covers `i·chunk..`, the last
    /// chunk is the remainder, and the parallel and serial paths agree.
    #[test]
    fn zeroed_chunks_hands_out_zeroed_chunks_in_order() {
        for parallel in [false, true] {
            // Leave non-zero memory behind for the allocator to reuse (small
            // enough to come from the heap, not from fresh zeroed pages).
            drop(vec![7.0f32; 10_003]);
            let out = zeroed_chunks(
                10_003,
                100,
                parallel,
                || 0usize,
                |seen, i, c| {
                    assert!(c.iter().all(|&v| v == 0.0), "chunk {i} not zeroed");
                    assert_eq!(c.len(), if i == 100 { 3 } else { 100 });
                    *seen += 1;
                    for (j, v) in c.iter_mut().enumerate() {
                        *v += (i * 100 + j) as f32;
                    }
                },
            );
            assert_eq!(out.len(), 10_003);
            assert!(out.iter().enumerate().all(|(j, &v)| v == j as f32));
        }
        assert!(zeroed_chunks(0, 8, true, || (), |_, _, _| unreachable!()).is_empty());
    }
}
