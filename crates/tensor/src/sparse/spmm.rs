//! The one sparse × dense kernel: `C[M×Q] = S[M×K] · B`, `S` in CSR form,
//! `B` read row by row along its contiguous dimension.
//!
//! Row `i` of the output is `C[i, t] = Σ_{(j, s) ∈ row i of S} s · b[off(j) + t]`
//! for `t < Q`, where `off(j) = j·ldb` ([`spmm`]: `B` a row-major matrix) or a
//! precomputed element offset ([`spmm_offsets`]: `B` a virtual matrix whose
//! rows are shifted windows of a buffer, as in a convolution's implicit
//! im2col). The dense dimension `Q` is the batch (a dense layer with its
//! activations transposed) or the pixels of an image (a convolution).
//!
//! **The kernel** (SparseProp's and XNNPACK's layout): for each sparse row, a
//! tile of `R` vectors of `C` (8 × 16 outputs with AVX-512, 8 × 8 with AVX2)
//! stays in registers for the whole row; each non-zero is broadcast once and
//! feeds `R` fused multiply-adds with `R` contiguous loads of `B`'s row. The
//! last whole vectors of a row that do not fill a tile take one narrower
//! tile (all its vectors independent chains), the last values scalars.
//!
//! **Bits.** Every output is one chain of fused multiply-adds over the row's
//! non-zeros in increasing column order, starting from 0, whatever the tile,
//! vector width or thread split (a one-column product, `Q = 1`, splits each
//! row's non-zeros round-robin over four chains summed pairwise, on every
//! kernel alike). That is the chain the dense packed GEMM
//! computes with the zeros skipped, and adding `0·b` to a chain leaves it
//! unchanged (up to the sign of a zero), so with finite inputs the sparse
//! product equals [`crate::packed`]'s dense product bit for bit except for
//! the sign of zero outputs.

use std::ops::Range;

use rayon::prelude::*;

use crate::packed::Isa;
use crate::sparse::Csr;

/// Below this many multiply-adds (`nnz·Q`) a product runs on the calling
/// thread: a rayon fork-join costs a few microseconds, as much as ~100k
/// fused multiply-adds.
const PARALLEL_WORK: usize = 1 << 17;

/// Rows per parallel task: the rows are cut into at most this many pieces.
const TASKS: usize = 16;

/// Independent chains per output of a one-column product (see `scalar_tail`).
const VECTOR_CHAINS: usize = 4;

/// `C[M×Q] = S · B` with `B` row-major, row `j` at `b[j·ldb..][..Q]`; `C` is
/// row-major `M×Q` (overwritten). `parallel` allows rayon tasks over rows
/// (used when the product is large enough; the bits do not depend on it).
///
/// **Panics** if `b` is too short for the largest column of `S`, `Q > ldb`
/// with more than one row of `B`, or `c.len() != M·Q`.
pub fn spmm(s: &Csr, b: &[f32], ldb: usize, q: usize, c: &mut [f32], parallel: bool) {
    if s.rows() > 1 || s.cols() > 1 {
        assert!(q <= ldb || s.cols() <= 1, "spmm: Q = {q} > ldb = {ldb}");
    }
    // The largest column read is at most S's last one.
    let max_read = s.cols().saturating_sub(1) * ldb;
    run(
        Isa::detect(),
        s,
        s.col_idx(),
        ldb,
        max_read,
        b,
        q,
        c,
        parallel,
    );
}

/// Per non-zero of a sparse matrix, where its row of the dense operand
/// starts (element offsets), with their maximum computed once, so that the
/// bounds check of every product that uses them is O(1).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Offsets {
    offsets: Vec<u32>,
    max: u32,
}

impl Offsets {
    /// Offsets from a list, one per non-zero in the matrix's order.
    pub fn new(offsets: Vec<u32>) -> Offsets {
        let max = offsets.iter().copied().max().unwrap_or(0);
        Offsets { offsets, max }
    }

    /// The offsets.
    pub fn as_slice(&self) -> &[u32] {
        &self.offsets
    }
}

/// `C[M×Q] = S · B` where the `k`-th non-zero of `S` reads `B`'s row at
/// `b[offsets[k]..][..Q]`: one offset per non-zero, in `S`'s order (a
/// convolution maps each `(channel, tap)` column to where its shifted window
/// starts).
///
/// **Panics** if there is not one offset per non-zero, the largest offset
/// plus `Q` overruns `b`, or `c.len() != M·Q`.
pub fn spmm_offsets(
    s: &Csr,
    offsets: &Offsets,
    b: &[f32],
    q: usize,
    c: &mut [f32],
    parallel: bool,
) {
    assert_eq!(
        offsets.offsets.len(),
        s.nnz(),
        "spmm_offsets: one offset per non-zero"
    );
    let max_read = offsets.max as usize;
    run(
        Isa::detect(),
        s,
        &offsets.offsets,
        1,
        max_read,
        b,
        q,
        c,
        parallel,
    );
}

/// Bounds checks (`max_read`: the largest `idx·ldb` any non-zero reads at),
/// then the rows, split over rayon tasks or not.
#[allow(clippy::too_many_arguments)]
fn run(
    isa: Isa,
    s: &Csr,
    idx: &[u32],
    ldb: usize,
    max_read: usize,
    b: &[f32],
    q: usize,
    c: &mut [f32],
    parallel: bool,
) {
    let m = s.rows();
    assert_eq!(
        c.len(),
        m * q,
        "spmm: output has {} values for {m}×{q}",
        c.len()
    );
    if q == 0 || m == 0 {
        return;
    }
    if s.nnz() > 0 {
        assert!(
            max_read + q <= b.len(),
            "spmm: B has {} values, a row of S reads up to {}",
            b.len(),
            max_read + q
        );
    }
    let args = Rows {
        row_ptr: s.row_ptr(),
        idx,
        ldb,
        values: s.values(),
        b,
        q,
    };
    if parallel && s.nnz() * q >= PARALLEL_WORK && m > 1 {
        let per_task = m.div_ceil(TASKS);
        c.par_chunks_mut(per_task * q)
            .enumerate()
            .for_each(|(t, ct)| {
                let lo = t * per_task;
                args.compute(isa, lo..lo + ct.len() / q, ct);
            });
    } else {
        args.compute(isa, 0..m, c);
    }
}

/// The arguments every kernel shares (bounds already checked).
#[derive(Clone, Copy)]
struct Rows<'a> {
    row_ptr: &'a [u32],
    idx: &'a [u32],
    ldb: usize,
    values: &'a [f32],
    b: &'a [f32],
    q: usize,
}

impl Rows<'_> {
    /// Output rows `rows` into `c` (which starts at row `rows.start`).
    fn compute(self, isa: Isa, rows: Range<usize>, c: &mut [f32]) {
        assert_eq!(c.len(), rows.len() * self.q);
        // SAFETY: `run` checked that every `idx·ldb + Q` is within `b`, and
        // `c` holds `rows.len()·Q` values; the kernel is chosen by detection.
        unsafe {
            match isa {
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => avx512::rows(self, rows, c.as_mut_ptr()),
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => avx2::rows(self, rows, c.as_mut_ptr()),
                _ => portable_rows(self, rows, c),
            }
        }
    }

    /// The non-zeros of row `i`: offsets into `b` (before scaling by `ldb`) and values.
    #[inline(always)]
    fn row(&self, i: usize) -> (&[u32], &[f32]) {
        let (lo, hi) = (self.row_ptr[i] as usize, self.row_ptr[i + 1] as usize);
        (&self.idx[lo..hi], &self.values[lo..hi])
    }
}

/// Outputs `t0..Q` of one row, one scalar chain each (the tail of the SIMD
/// kernels, and the portable kernel's). A product with a single column
/// (`Q = 1`: a dense layer on one image) has nothing to vectorise along, and
/// one chain per row would wait on each multiply-add in turn, so its
/// non-zeros are split round-robin over [`VECTOR_CHAINS`] chains, summed
/// pairwise at the end — on every kernel, so the bits still do not depend on
/// the CPU or the thread count.
///
/// # Safety
/// As [`Rows::compute`]; `c` points at the row's first output.
#[inline(always)]
unsafe fn scalar_tail(a: &Rows, idx: &[u32], vals: &[f32], t0: usize, c: *mut f32) {
    if a.q == 1 && t0 == 0 {
        let mut acc = [0.0f32; VECTOR_CHAINS];
        let (ic, vc) = (
            idx.chunks_exact(VECTOR_CHAINS),
            vals.chunks_exact(VECTOR_CHAINS),
        );
        let (ir, vr) = (ic.remainder(), vc.remainder());
        for (is, vs) in ic.zip(vc) {
            for k in 0..VECTOR_CHAINS {
                // SAFETY: bounds checked in `run` (`ldb` is irrelevant for Q = 1
                // only through `j·ldb + 0`, checked there).
                let x = unsafe { *a.b.get_unchecked(is[k] as usize * a.ldb) };
                acc[k] = vs[k].mul_add(x, acc[k]);
            }
        }
        for (k, (&j, &v)) in ir.iter().zip(vr).enumerate() {
            // SAFETY: as above.
            acc[k] = v.mul_add(unsafe { *a.b.get_unchecked(j as usize * a.ldb) }, acc[k]);
        }
        // SAFETY: the row's single output.
        unsafe { *c = (acc[0] + acc[1]) + (acc[2] + acc[3]) };
        return;
    }
    for t in t0..a.q {
        let mut acc = 0.0f32;
        for (&j, &v) in idx.iter().zip(vals) {
            // SAFETY: bounds checked in `run`.
            acc = v.mul_add(unsafe { *a.b.get_unchecked(j as usize * a.ldb + t) }, acc);
        }
        // SAFETY: `t < Q`, inside the row.
        unsafe { *c.add(t) = acc };
    }
}

/// The kernel in plain Rust (`f32::mul_add`), for CPUs without AVX2+FMA.
fn portable_rows(a: Rows, rows: Range<usize>, c: &mut [f32]) {
    let q = a.q;
    for (i, crow) in rows.zip(c.chunks_exact_mut(q)) {
        let (idx, vals) = a.row(i);
        // SAFETY: `crow` is the row's `Q` outputs; bounds checked in `run`.
        unsafe { scalar_tail(&a, idx, vals, 0, crow.as_mut_ptr()) };
    }
}

/// Defines `rows`, the register-tiled kernel of the module docs on one x86
/// instruction set.
macro_rules! spmm_kernel {
    (
        features: $features:literal,
        vector: $vec:ty,
        lanes: $lanes:literal,
        loadu: $loadu:ident,
        storeu: $storeu:ident,
        set1: $set1:ident,
        fmadd: $fmadd:ident,
        setzero: $setzero:ident $(,)?
    ) => {
        use std::arch::x86_64::*;
        use std::ops::Range;

        use super::{scalar_tail, Rows};

        /// Vectors of outputs kept in registers per row tile.
        const R: usize = 8;
        const L: usize = $lanes;

        /// Rows `rows` of the product into `c` (row-major, `Q` per row).
        ///
        /// # Safety
        /// As `Rows::compute`, and the CPU has the features.
        #[target_feature(enable = $features)]
        pub(super) unsafe fn rows(a: Rows, rows: Range<usize>, c: *mut f32) {
            let q = a.q;
            // SAFETY: every pointer below stays within `b` (checked in `run`:
            // `idx·ldb + Q ≤ len`) and within the `Q` outputs of row `i` of `c`.
            unsafe {
                for (r, i) in rows.enumerate() {
                    let (idx, vals) = a.row(i);
                    let crow = c.add(r * q);
                    let mut t0 = 0;
                    while t0 + R * L <= q {
                        tile::<R>(&a, idx, vals, t0, crow);
                        t0 += R * L;
                    }
                    // The vectors left over take one tile of their own width,
                    // so that they, too, are independent chains.
                    let left = (q - t0) / L;
                    match left {
                        1 => tile::<1>(&a, idx, vals, t0, crow),
                        2 => tile::<2>(&a, idx, vals, t0, crow),
                        3 => tile::<3>(&a, idx, vals, t0, crow),
                        4 => tile::<4>(&a, idx, vals, t0, crow),
                        5 => tile::<5>(&a, idx, vals, t0, crow),
                        6 => tile::<6>(&a, idx, vals, t0, crow),
                        7 => tile::<7>(&a, idx, vals, t0, crow),
                        _ => {}
                    }
                    scalar_tail(&a, idx, vals, t0 + left * L, crow);
                }
            }
        }

        /// Outputs `t0..t0 + V·L` of one row: `V` vectors in registers for the
        /// whole row, one broadcast and `V` loads and FMAs per non-zero.
        ///
        /// # Safety
        /// As `rows`, with `t0 + V·L ≤ Q`.
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn tile<const V: usize>(
            a: &Rows,
            idx: &[u32],
            vals: &[f32],
            t0: usize,
            crow: *mut f32,
        ) {
            let (b, ldb) = (a.b.as_ptr(), a.ldb);
            // SAFETY: as `rows`.
            unsafe {
                let mut acc: [$vec; V] = [$setzero(); V];
                for (&j, &v) in idx.iter().zip(vals) {
                    let w = $set1(v);
                    let p = b.add(j as usize * ldb + t0);
                    for (k, acc) in acc.iter_mut().enumerate() {
                        *acc = $fmadd(w, $loadu(p.add(k * L)), *acc);
                    }
                }
                for (k, acc) in acc.iter().enumerate() {
                    $storeu(crow.add(t0 + k * L), *acc);
                }
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    spmm_kernel! {
        features: "avx512f,avx2,fma",
        vector: __m512,
        lanes: 16,
        loadu: _mm512_loadu_ps,
        storeu: _mm512_storeu_ps,
        set1: _mm512_set1_ps,
        fmadd: _mm512_fmadd_ps,
        setzero: _mm512_setzero_ps,
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    spmm_kernel! {
        features: "avx2,fma",
        vector: __m256,
        lanes: 8,
        loadu: _mm256_loadu_ps,
        storeu: _mm256_storeu_ps,
        set1: _mm256_set1_ps,
        fmadd: _mm256_fmadd_ps,
        setzero: _mm256_setzero_ps,
    }
}

/// `spmm` with a given kernel on the calling thread (the tests compare every
/// kernel of this CPU).
#[cfg(test)]
pub(crate) fn spmm_with(isa: Isa, s: &Csr, b: &[f32], ldb: usize, q: usize, c: &mut [f32]) {
    let max_read = s.cols().saturating_sub(1) * ldb;
    run(isa, s, s.col_idx(), ldb, max_read, b, q, c, false);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{pseudo, sparse_values};

    /// The definition: a fused multiply-add chain over the row's non-zeros
    /// (for `Q = 1`: the `k`-th non-zero into chain `k mod 4`, the chains
    /// summed pairwise).
    fn reference(s: &Csr, b: &[f32], ldb: usize, q: usize) -> Vec<f32> {
        let w = s.to_dense();
        let mut c = vec![0.0f32; s.rows() * q];
        for i in 0..s.rows() {
            for t in 0..q {
                let mut acc = [0.0f32; 4];
                let mut k = 0;
                for j in 0..s.cols() {
                    let v = w[i * s.cols() + j];
                    if v != 0.0 {
                        let chain = if q == 1 { k % 4 } else { 0 };
                        acc[chain] = v.mul_add(b[j * ldb + t], acc[chain]);
                        k += 1;
                    }
                }
                c[i * q + t] = (acc[0] + acc[1]) + (acc[2] + acc[3]);
            }
        }
        c
    }

    /// Every kernel of this CPU, every tile path (Q below one vector, between
    /// one vector and a tile, several tiles plus a tail), densities from 0 to
    /// 1 with empty rows: bitwise the definition; the parallel split too.
    #[test]
    fn kernels_give_the_definitions_bits() {
        for (m, k, q, density) in [
            (7, 13, 1, 0.4),
            (5, 90, 1, 0.3),
            (5, 9, 7, 0.5),
            (9, 30, 37, 0.2),
            (33, 70, 300, 0.05),
            (4, 5, 129, 1.0),
            (6, 8, 20, 0.0),
            (64, 200, 128, 0.03),
            (10, 40, 64 + 16 + 3, 0.2),
            (8, 50, 96, 0.3),
            (3, 20, 7 * 16 + 5, 0.5),
        ] {
            let s = Csr::from_dense(&sparse_values(m * k, density, m as u32), m, k);
            let ldb = q + 3;
            let b = pseudo(k * ldb, 11);
            let want = reference(&s, &b, ldb, q);
            for isa in Isa::available() {
                let mut c = vec![f32::NAN; m * q];
                spmm_with(isa, &s, &b, ldb, q, &mut c);
                assert_eq!(c, want, "{isa:?} {m}×{k}·{q} at {density}");
            }
            let mut c = vec![f32::NAN; m * q];
            spmm(&s, &b, ldb, q, &mut c, true);
            assert_eq!(c, want, "parallel {m}×{k}·{q}");
        }
    }

    /// The offset form reads each non-zero's row where its offset says.
    #[test]
    fn offsets_address_shifted_windows() {
        let s = Csr::from_dense(&sparse_values(6 * 10, 0.5, 4), 6, 10);
        let buf = pseudo(200, 5);
        // Column j's "row" starts at 3·j + 1 (overlapping windows).
        let offsets = Offsets::new(s.col_idx().iter().map(|&j| 3 * j + 1).collect());
        let q = 40;
        let mut c = vec![0.0; 6 * q];
        spmm_offsets(&s, &offsets, &buf, q, &mut c, false);
        let w = s.to_dense();
        for i in 0..6 {
            for t in 0..q {
                let mut acc = 0.0f32;
                for j in 0..10 {
                    if w[i * 10 + j] != 0.0 {
                        acc = w[i * 10 + j].mul_add(buf[3 * j + 1 + t], acc);
                    }
                }
                assert_eq!(c[i * q + t], acc);
            }
        }
    }

    #[test]
    #[should_panic(expected = "a row of S reads up to")]
    fn a_short_b_is_refused() {
        let s = Csr::from_dense(&[0.0, 1.0], 1, 2);
        let mut c = vec![0.0; 4];
        spmm(&s, &[0.0; 7], 4, 4, &mut c, false);
    }
}
