//! Matrix transposes in cache-sized blocks: the layout changes around the
//! convolution GEMMs and the sparse kernels (which want the batch, not the
//! features, contiguous).

use std::mem::MaybeUninit;
use std::ops::Range;

use rayon::prelude::*;

/// `o[j·r + i] = x[i·s + j]`: one row-major `[r, s]` matrix to `[s, r]`.
///
/// **Panics** if `x` or `o` holds fewer than `r·s` values.
pub fn transpose_into(x: &[f32], r: usize, s: usize, o: &mut [f32]) {
    let (x, o) = (&x[..r * s], &mut o[..r * s]);
    // SAFETY: both slices hold the `r·s` values the transpose reads and writes.
    unsafe { transpose_raw(x.as_ptr(), r, s, o.as_mut_ptr(), 0..r) }
}

/// [`transpose_into`] into memory not yet initialised (all `r·s` values are
/// written).
///
/// **Panics** if `x` or `o` holds fewer than `r·s` values.
pub fn transpose_into_uninit(x: &[f32], r: usize, s: usize, o: &mut [MaybeUninit<f32>]) {
    let (x, o) = (&x[..r * s], &mut o[..r * s]);
    // SAFETY: both slices hold the `r·s` values the transpose reads and
    // writes; it writes every one of them and never reads `o`.
    unsafe { transpose_raw(x.as_ptr(), r, s, o.as_mut_ptr().cast(), 0..r) }
}

/// A row-major `[r, s]` matrix as a new `[s, r]` one; large matrices are
/// split into strips of rows over rayon tasks (each output element is a copy,
/// so the split cannot change a bit).
///
/// **Panics** if `x.len() != r·s`.
pub fn transpose(x: &[f32], r: usize, s: usize) -> Vec<f32> {
    assert_eq!(x.len(), r * s, "transpose: length");
    if r * s < PARALLEL_VALUES || r < 2 * STRIP {
        return transpose_per_image(x, 1, r, s);
    }
    let mut out: Vec<f32> = Vec::with_capacity(r * s);
    let dst = SendPtr(out.as_mut_ptr());
    (0..r.div_ceil(STRIP)).into_par_iter().for_each(|t| {
        let rows = t * STRIP..((t + 1) * STRIP).min(r);
        let dst = &dst;
        // SAFETY: `out` has capacity `r·s`; the strips write disjoint sets of
        // elements (`o[j·r + i]` for their own rows `i`), together all of them.
        unsafe { transpose_raw(x.as_ptr(), r, s, dst.0, rows) }
    });
    // SAFETY: the strips cover every row, so every element was written.
    unsafe { out.set_len(r * s) };
    out
}

/// From this many values on, [`transpose`] splits the rows over rayon tasks.
const PARALLEL_VALUES: usize = 1 << 16;

/// Rows of `x` per rayon task in [`transpose`] (a multiple of 8).
const STRIP: usize = 64;

/// A pointer handed to the tasks of one transpose, which write disjoint elements.
struct SendPtr(*mut f32);
// SAFETY: the tasks write disjoint elements of one allocation that outlives them.
unsafe impl Sync for SendPtr {}

/// Transposes each of `n` row-major `[r, s]` matrices to `[s, r]`.
pub(crate) fn transpose_per_image(x: &[f32], n: usize, r: usize, s: usize) -> Vec<f32> {
    assert_eq!(x.len(), n * r * s, "transpose: length");
    let per = r * s;
    let mut out: Vec<f32> = Vec::with_capacity(x.len());
    if per > 0 {
        out.spare_capacity_mut()[..x.len()]
            .par_chunks_mut(per)
            .zip(x.par_chunks(per))
            .for_each(|(o, xi)| {
                // SAFETY: `o` and `xi` hold `r·s` values each.
                unsafe { transpose_raw(xi.as_ptr(), r, s, o.as_mut_ptr().cast(), 0..r) }
            });
    }
    // SAFETY: `transpose_raw` writes every index `0..r·s` of each image's
    // block, and the blocks cover all `x.len()` elements (none when
    // `per == 0`, and then `x` is empty).
    unsafe { out.set_len(x.len()) };
    out
}

/// `o[j·r + i] = x[i·s + j]` for the rows `i` in `rows` and every `j`: 8×8
/// blocks through registers (AVX; 24 shuffles per block) where the CPU has
/// it, each output row segment written whole, and element by element at the
/// edges and on other CPUs.
///
/// # Safety
/// `x` and `o` address `r·s` values; `rows.end ≤ r`; no one else writes
/// the elements this call writes.
unsafe fn transpose_raw(x: *const f32, r: usize, s: usize, o: *mut f32, rows: Range<usize>) {
    // SAFETY: forwarded; the detected instruction set runs here.
    unsafe { transpose_raw_with(crate::packed::Isa::detect(), x, r, s, o, rows) }
}

/// [`transpose_raw`] with the blocks of a given instruction set.
///
/// # Safety
/// As [`transpose_raw`], and the CPU supports `isa`.
unsafe fn transpose_raw_with(
    isa: crate::packed::Isa,
    x: *const f32,
    r: usize,
    s: usize,
    o: *mut f32,
    rows: Range<usize>,
) {
    let mut done_rows = rows.start;
    #[cfg(target_arch = "x86_64")]
    {
        use crate::packed::Isa;
        let side = match isa {
            Isa::Avx512 => 16,
            Isa::Avx2 => 8,
            Isa::Portable => 0,
        };
        if let Some(blocks) = rows.len().checked_div(side) {
            // SAFETY: forwarded; the blocks stay within `rows` and `0..s`.
            unsafe {
                if isa == Isa::Avx512 {
                    avx512::blocks(x, r, s, o, rows.start, blocks);
                } else {
                    avx::blocks(x, r, s, o, rows.start, blocks);
                }
            }
            let full_cols = s / side * side;
            for i in rows.start..rows.start + blocks * side {
                for j in full_cols..s {
                    // SAFETY: in bounds, as above.
                    unsafe { *o.add(j * r + i) = *x.add(i * s + j) };
                }
            }
            done_rows = rows.start + blocks * side;
        }
    }
    // The remaining rows, in 16×16 blocks: each output row segment written
    // in order (contiguous stores; the strided reads stay within 16 lines).
    const B: usize = 16;
    for r0 in (done_rows..rows.end).step_by(B) {
        let r1 = (r0 + B).min(rows.end);
        for s0 in (0..s).step_by(B) {
            for j in s0..(s0 + B).min(s) {
                for i in r0..r1 {
                    // SAFETY: `i < r`, `j < s`.
                    unsafe { *o.add(j * r + i) = *x.add(i * s + j) };
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// `blocks` strips of 16 rows from row `row0`, each cut into 16×16
    /// blocks (the last `s mod 16` columns are left to the caller): 16
    /// loads, 64 two-source shuffles in four stages (32-bit, 64-bit, then
    /// twice 128-bit lanes) and 16 stores of whole 64-byte lines per block.
    ///
    /// # Safety
    /// As `transpose_raw`, with the CPU supporting AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn blocks(
        x: *const f32,
        r: usize,
        s: usize,
        o: *mut f32,
        row0: usize,
        blocks: usize,
    ) {
        // SAFETY: every load reads row `i0 + k < r`, columns `j0..j0 + 16 ≤ s`;
        // every store writes row `j0 + k < s` of `o`, columns `i0..i0 + 16 ≤ r`.
        unsafe {
            for b in 0..blocks {
                let i0 = row0 + 16 * b;
                for j0 in (0..s / 16 * 16).step_by(16) {
                    let mut v = [_mm512_setzero_ps(); 16];
                    for (k, v) in v.iter_mut().enumerate() {
                        *v = _mm512_loadu_ps(x.add((i0 + k) * s + j0));
                    }
                    // Stage 1: interleave 32-bit elements of row pairs.
                    let mut t = [_mm512_setzero_ps(); 16];
                    for k in 0..8 {
                        t[2 * k] = _mm512_unpacklo_ps(v[2 * k], v[2 * k + 1]);
                        t[2 * k + 1] = _mm512_unpackhi_ps(v[2 * k], v[2 * k + 1]);
                    }
                    // Stage 2: interleave 64-bit pairs of rows 4 apart.
                    for q in 0..4 {
                        let (a, b, c, d) = (t[4 * q], t[4 * q + 1], t[4 * q + 2], t[4 * q + 3]);
                        let pd = |x: __m512, y: __m512, hi: bool| {
                            let (x, y) = (_mm512_castps_pd(x), _mm512_castps_pd(y));
                            _mm512_castpd_ps(if hi {
                                _mm512_unpackhi_pd(x, y)
                            } else {
                                _mm512_unpacklo_pd(x, y)
                            })
                        };
                        v[4 * q] = pd(a, c, false);
                        v[4 * q + 1] = pd(a, c, true);
                        v[4 * q + 2] = pd(b, d, false);
                        v[4 * q + 3] = pd(b, d, true);
                    }
                    // Stages 3 and 4: 128-bit lanes of groups 4 and 8 apart.
                    for h in 0..2 {
                        for k in 0..4 {
                            let (a, b) = (v[8 * h + k], v[8 * h + k + 4]);
                            t[8 * h + k] = _mm512_shuffle_f32x4::<0x88>(a, b);
                            t[8 * h + k + 4] = _mm512_shuffle_f32x4::<0xDD>(a, b);
                        }
                    }
                    for k in 0..8 {
                        let (a, b) = (t[k], t[k + 8]);
                        v[k] = _mm512_shuffle_f32x4::<0x88>(a, b);
                        v[k + 8] = _mm512_shuffle_f32x4::<0xDD>(a, b);
                    }
                    for (k, v) in v.iter().enumerate() {
                        _mm512_storeu_ps(o.add((j0 + k) * r + i0), *v);
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx {
    use std::arch::x86_64::*;

    /// `blocks` strips of 8 rows from row `row0`, each cut into 8×8 blocks
    /// (the last `s mod 8` columns are left to the caller).
    ///
    /// # Safety
    /// As `transpose_raw`, with the CPU supporting AVX.
    #[target_feature(enable = "avx")]
    pub(super) unsafe fn blocks(
        x: *const f32,
        r: usize,
        s: usize,
        o: *mut f32,
        row0: usize,
        blocks: usize,
    ) {
        // SAFETY: every load reads row `i0 + k < r`, columns `j0..j0 + 8 ≤ s`;
        // every store writes row `j0 + k < s` of `o`, columns `i0..i0 + 8 ≤ r`.
        unsafe {
            // Two strips side by side, so that each pair of blocks fills whole
            // 64-byte lines of the output (16 values) in one go instead of
            // bringing every output line into L1 twice: 35 → µs for a
            // 128×784 batch.
            let mut b = 0;
            while b < blocks {
                let i0 = row0 + 8 * b;
                let pair = b + 1 < blocks;
                for j0 in (0..s / 8 * 8).step_by(8) {
                    block(x, r, s, o, i0, j0);
                    if pair {
                        block(x, r, s, o, i0 + 8, j0);
                    }
                }
                b += if pair { 2 } else { 1 };
            }
        }
    }

    /// One 8×8 block: rows `i0..i0 + 8` and columns `j0..j0 + 8` of `x`.
    ///
    /// # Safety
    /// The block is inside both matrices; the CPU supports AVX.
    #[inline]
    #[target_feature(enable = "avx")]
    unsafe fn block(x: *const f32, r: usize, s: usize, o: *mut f32, i0: usize, j0: usize) {
        // SAFETY: the caller's bounds.
        unsafe {
            let ld = |k: usize| _mm256_loadu_ps(x.add((i0 + k) * s + j0));
            let (r0, r1, r2, r3) = (ld(0), ld(1), ld(2), ld(3));
            let (r4, r5, r6, r7) = (ld(4), ld(5), ld(6), ld(7));
            let t0 = _mm256_unpacklo_ps(r0, r1);
            let t1 = _mm256_unpackhi_ps(r0, r1);
            let t2 = _mm256_unpacklo_ps(r2, r3);
            let t3 = _mm256_unpackhi_ps(r2, r3);
            let t4 = _mm256_unpacklo_ps(r4, r5);
            let t5 = _mm256_unpackhi_ps(r4, r5);
            let t6 = _mm256_unpacklo_ps(r6, r7);
            let t7 = _mm256_unpackhi_ps(r6, r7);
            let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
            let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
            let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
            let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
            let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
            let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
            let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
            let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
            let st = |k: usize, v: __m256| _mm256_storeu_ps(o.add((j0 + k) * r + i0), v);
            st(0, _mm256_permute2f128_ps::<0x20>(u0, u4));
            st(1, _mm256_permute2f128_ps::<0x20>(u1, u5));
            st(2, _mm256_permute2f128_ps::<0x20>(u2, u6));
            st(3, _mm256_permute2f128_ps::<0x20>(u3, u7));
            st(4, _mm256_permute2f128_ps::<0x31>(u0, u4));
            st(5, _mm256_permute2f128_ps::<0x31>(u1, u5));
            st(6, _mm256_permute2f128_ps::<0x31>(u2, u6));
            st(7, _mm256_permute2f128_ps::<0x31>(u3, u7));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transposes_round_trip() {
        // Two [40, 3] matrices to [3, 40] and back (more than one 16×16 block).
        let x: Vec<f32> = (0..2 * 3 * 40).map(|v| v as f32).collect();
        let t = transpose_per_image(&x, 2, 40, 3);
        assert_eq!(t[1], x[3]); // image 0: row 0, column 1 of the result
        assert_eq!(transpose_per_image(&t, 2, 3, 40), x);
        // Edges on both sides of the 8×8 blocks, and the parallel strips.
        for (r, s) in [
            (37, 21),
            (8, 8),
            (16, 16),
            (1, 9),
            (9, 1),
            (33, 47),
            (130, 784),
            (256, 300),
        ] {
            let y: Vec<f32> = (0..r * s).map(|v| v as f32).collect();
            let yt = transpose(&y, r, s);
            for i in 0..r {
                for j in 0..s {
                    assert_eq!(yt[j * r + i], y[i * s + j], "{r}×{s} at ({i}, {j})");
                }
            }
            let mut back = vec![0.0; r * s];
            transpose_into(&yt, s, r, &mut back);
            assert_eq!(back, y);
            // Every block size this CPU runs (16×16, 8×8, element by element).
            for isa in crate::packed::Isa::available() {
                let mut t = vec![f32::NAN; r * s];
                // SAFETY: both buffers hold r·s values; `isa` is available.
                unsafe { transpose_raw_with(isa, y.as_ptr(), r, s, t.as_mut_ptr(), 0..r) };
                assert_eq!(t, yt, "{isa:?} {r}×{s}");
            }
        }
    }
}
