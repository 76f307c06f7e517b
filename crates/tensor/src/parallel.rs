//! Fixed-chunk rayon helpers.
//!
//! Every parallel loop in the engine splits its work into chunks whose size is a
//! constant ([`CHUNK`]) and never depends on the number of threads. Element-wise
//! work is independent per element anyway; reductions combine per-chunk partial
//! results in chunk order. So `RAYON_NUM_THREADS=1` and `=2` give identical bits.

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
