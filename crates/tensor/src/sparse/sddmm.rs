//! The sampled dense-dense product (SDDMM): a dense product `A·Bᵀ` computed
//! only at the non-zeros of a sparse matrix `S`,
//!
//! ```text
//! out[k] = Σ_{t<Q} A[i, t] · B[off(k) + t]     for the k-th non-zero (i, j) of S,
//! ```
//!
//! with `off(k) = j·ldb` ([`sddmm`]: `B` row-major) or a precomputed element
//! offset (a convolution's shifted windows, [`dots_add`]). It is the weight
//! gradient of a layer restricted to the support of its weight —
//! `∂L/∂W_ij = Σ_b G_bi X_bj` with `A = Gᵀ`, `B = Xᵀ`, `Q` the batch — the
//! product behind the masked steps of sparse backpropagation (SparseProp's
//! weight gradient): at 3% density it costs 3% of the dense `Gᵀ·X`.
//!
//! **The kernel.** Each output is a dot product of two contiguous rows of
//! length `Q`. A sparse row's `A` row is shared by all its non-zeros, so the
//! kernel takes them four at a time: one load of `A` feeds four fused
//! multiply-adds into four independent accumulators (which hides the
//! multiply-add latency a single dot product would wait on).
//!
//! **Bits.** Every dot product sums in one canonical order on every CPU:
//! sixteen partial sums, lane `l` a fused multiply-add chain over
//! `t ≡ l (mod 16)` in increasing `t`, then a fixed pairwise tree
//! (`l` with `l + 8`, then `+ 4`, `+ 2`, `+ 1`). AVX-512 keeps the sixteen
//! lanes in one register, AVX2 in two, the portable kernel in an array, so
//! the result does not depend on the instruction set, and the rows are split
//! over threads in fixed pieces, so it does not depend on the thread count.

use rayon::prelude::*;

use crate::packed::Isa;
use crate::sparse::Csr;

/// Lanes of the canonical summation order.
const LANES: usize = 16;

/// Rows per parallel task: the rows are cut into at most this many pieces.
const TASKS: usize = 16;

/// Below this many multiply-adds (`nnz·Q`) a product runs on the calling thread.
const PARALLEL_WORK: usize = 1 << 17;

/// `out[k] = Σ_{t<Q} a[i·lda + t] · b[j·ldb + t]` for the `k`-th non-zero
/// `(i, j)` of `S` (`out` in `S`'s order, overwritten). Only `S`'s
/// structure is read, not its values. `parallel` allows rayon tasks over
/// rows (the bits do not depend on it).
///
/// **Panics** if `out` does not have one value per non-zero, `Q` exceeds
/// `lda` or `ldb` (with more than one row), or `a` or `b` are too short for
/// `S`'s rows and columns.
#[allow(clippy::too_many_arguments)]
pub fn sddmm(
    s: &Csr,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    q: usize,
    out: &mut [f32],
    parallel: bool,
) {
    sddmm_with(Isa::detect(), s, a, lda, b, ldb, q, out, parallel);
}

#[allow(clippy::too_many_arguments)]
fn sddmm_with(
    isa: Isa,
    s: &Csr,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    q: usize,
    out: &mut [f32],
    parallel: bool,
) {
    let (m, nnz) = (s.rows(), s.nnz());
    assert_eq!(
        out.len(),
        nnz,
        "sddmm: {} outputs for {nnz} non-zeros",
        out.len()
    );
    assert!(
        (q <= lda || m <= 1) && (q <= ldb || s.cols() <= 1),
        "sddmm: Q = {q} exceeds lda = {lda} or ldb = {ldb}"
    );
    assert!(
        m == 0 || (m - 1) * lda + q <= a.len(),
        "sddmm: A has {} values, {m} rows of {q} need more",
        a.len()
    );
    out.fill(0.0);
    let row_ptr = s.row_ptr();
    let rows_into = |rows: std::ops::Range<usize>, out: &mut [f32]| {
        let base = row_ptr[rows.start] as usize;
        for i in rows {
            let (lo, hi) = (row_ptr[i] as usize, row_ptr[i + 1] as usize);
            let a_row = &a[i * lda..][..q];
            dots_add(
                isa,
                a_row,
                b,
                &s.col_idx()[lo..hi],
                ldb,
                &mut out[lo - base..hi - base],
            );
        }
    };
    if parallel && nnz * q >= PARALLEL_WORK && m > 1 {
        let per_task = m.div_ceil(TASKS);
        let mut pieces = Vec::with_capacity(TASKS);
        let mut rest = out;
        for lo in (0..m).step_by(per_task) {
            let hi = (lo + per_task).min(m);
            let len = (row_ptr[hi] - row_ptr[lo]) as usize;
            let (piece, tail) = rest.split_at_mut(len);
            pieces.push((lo..hi, piece));
            rest = tail;
        }
        pieces
            .into_par_iter()
            .for_each(|(rows, piece)| rows_into(rows, piece));
    } else {
        rows_into(0..m, out);
    }
}

/// `out[k] += Σ_{t<Q} a[t] · b[idx[k]·ldb + t]` with `Q = a.len()`: the dot
/// products of one row of `A` with the rows of `B` that `idx` names, in the
/// canonical order of the module docs (each added to `out[k]` once).
///
/// **Panics** if `out` and `idx` differ in length or a row overruns `b`.
pub fn dots_add(isa: Isa, a: &[f32], b: &[f32], idx: &[u32], ldb: usize, out: &mut [f32]) {
    assert_eq!(out.len(), idx.len(), "sddmm: one output per index");
    let q = a.len();
    if let Some(&far) = idx.iter().max() {
        assert!(
            far as usize * ldb + q <= b.len(),
            "sddmm: B has {} values, a row reads up to {}",
            b.len(),
            far as usize * ldb + q
        );
    }
    // SAFETY: every row `idx[k]·ldb .. + Q` is within `b` (checked above),
    // `a` has `Q` values, `out` one per index; the kernel is chosen by detection.
    unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => avx512::dots_add(a, b, idx, ldb, out),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => avx2::dots_add(a, b, idx, ldb, out),
            _ => portable_dots_add(a, b, idx, ldb, out),
        }
    }
}

/// The canonical tree over sixteen partial sums.
#[inline(always)]
fn tree(acc: &[f32; LANES]) -> f32 {
    let r8: [f32; 8] = std::array::from_fn(|l| acc[l] + acc[l + 8]);
    let r4: [f32; 4] = std::array::from_fn(|l| r8[l] + r8[l + 4]);
    let r2 = [r4[0] + r4[2], r4[1] + r4[3]];
    r2[0] + r2[1]
}

/// The kernel in plain Rust (`f32::mul_add`), for CPUs without AVX2+FMA.
fn portable_dots_add(a: &[f32], b: &[f32], idx: &[u32], ldb: usize, out: &mut [f32]) {
    let q = a.len();
    for (o, &j) in out.iter_mut().zip(idx) {
        let row = &b[j as usize * ldb..][..q];
        let mut acc = [0.0f32; LANES];
        for (t, (&x, &y)) in a.iter().zip(row).enumerate() {
            acc[t % LANES] = x.mul_add(y, acc[t % LANES]);
        }
        *o += tree(&acc);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// Dots per group sharing each load of `A`.
    const D: usize = 4;

    /// Sixteen lanes to one value, in the canonical tree.
    #[inline(always)]
    unsafe fn tree(v: __m512) -> f32 {
        let lo = _mm512_castps512_ps256(v);
        let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
        let r8 = _mm256_add_ps(lo, hi);
        let r4 = _mm_add_ps(_mm256_castps256_ps128(r8), _mm256_extractf128_ps(r8, 1));
        let r2 = _mm_add_ps(r4, _mm_movehl_ps(r4, r4));
        _mm_cvtss_f32(_mm_add_ss(r2, _mm_shuffle_ps(r2, r2, 1)))
    }

    /// # Safety
    /// As `super::dots_add` after its checks; the CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn dots_add(a: &[f32], b: &[f32], idx: &[u32], ldb: usize, out: &mut [f32]) {
        let q = a.len();
        let (whole, rem) = (q / 16 * 16, q % 16);
        let tail = ((1u32 << rem) - 1) as __mmask16;
        let (ap, bp) = (a.as_ptr(), b.as_ptr());
        let mut k = 0;
        while k + D <= idx.len() {
            let rows: [*const f32; D] = std::array::from_fn(|d| bp.add(idx[k + d] as usize * ldb));
            let mut acc = [_mm512_setzero_ps(); D];
            let mut t = 0;
            while t < whole {
                let x = _mm512_loadu_ps(ap.add(t));
                for d in 0..D {
                    acc[d] = _mm512_fmadd_ps(x, _mm512_loadu_ps(rows[d].add(t)), acc[d]);
                }
                t += 16;
            }
            if rem > 0 {
                let x = _mm512_maskz_loadu_ps(tail, ap.add(t));
                for d in 0..D {
                    let y = _mm512_maskz_loadu_ps(tail, rows[d].add(t));
                    acc[d] = _mm512_fmadd_ps(x, y, acc[d]);
                }
            }
            for d in 0..D {
                out[k + d] += tree(acc[d]);
            }
            k += D;
        }
        for k in k..idx.len() {
            let row = bp.add(idx[k] as usize * ldb);
            let mut acc = _mm512_setzero_ps();
            let mut t = 0;
            while t < whole {
                acc = _mm512_fmadd_ps(_mm512_loadu_ps(ap.add(t)), _mm512_loadu_ps(row.add(t)), acc);
                t += 16;
            }
            if rem > 0 {
                let x = _mm512_maskz_loadu_ps(tail, ap.add(t));
                acc = _mm512_fmadd_ps(x, _mm512_maskz_loadu_ps(tail, row.add(t)), acc);
            }
            out[k] += tree(acc);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// Dots per group sharing each load of `A` (two registers each).
    const D: usize = 4;

    /// Sixteen lanes (lanes 0–7 in `lo`, 8–15 in `hi`) to one value, in the canonical tree.
    #[inline(always)]
    unsafe fn tree(lo: __m256, hi: __m256) -> f32 {
        let r8 = _mm256_add_ps(lo, hi);
        let r4 = _mm_add_ps(_mm256_castps256_ps128(r8), _mm256_extractf128_ps(r8, 1));
        let r2 = _mm_add_ps(r4, _mm_movehl_ps(r4, r4));
        _mm_cvtss_f32(_mm_add_ss(r2, _mm_shuffle_ps(r2, r2, 1)))
    }

    /// The load masks of the last `rem < 16` values: lanes below `rem` set.
    #[inline(always)]
    unsafe fn masks(rem: usize) -> (__m256i, __m256i) {
        let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let r = rem as i32;
        (
            _mm256_cmpgt_epi32(_mm256_set1_epi32(r), lane),
            _mm256_cmpgt_epi32(_mm256_set1_epi32(r - 8), lane),
        )
    }

    /// # Safety
    /// As `super::dots_add` after its checks; the CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dots_add(a: &[f32], b: &[f32], idx: &[u32], ldb: usize, out: &mut [f32]) {
        let q = a.len();
        let (whole, rem) = (q / 16 * 16, q % 16);
        let (m_lo, m_hi) = masks(rem);
        let (ap, bp) = (a.as_ptr(), b.as_ptr());
        let mut k = 0;
        while k + D <= idx.len() {
            let rows: [*const f32; D] = std::array::from_fn(|d| bp.add(idx[k + d] as usize * ldb));
            let mut lo = [_mm256_setzero_ps(); D];
            let mut hi = [_mm256_setzero_ps(); D];
            let mut t = 0;
            while t < whole {
                let (x0, x1) = (_mm256_loadu_ps(ap.add(t)), _mm256_loadu_ps(ap.add(t + 8)));
                for d in 0..D {
                    lo[d] = _mm256_fmadd_ps(x0, _mm256_loadu_ps(rows[d].add(t)), lo[d]);
                    hi[d] = _mm256_fmadd_ps(x1, _mm256_loadu_ps(rows[d].add(t + 8)), hi[d]);
                }
                t += 16;
            }
            if rem > 0 {
                let x0 = _mm256_maskload_ps(ap.add(t), m_lo);
                let x1 = _mm256_maskload_ps(ap.add(t + 8), m_hi);
                for d in 0..D {
                    let y0 = _mm256_maskload_ps(rows[d].add(t), m_lo);
                    let y1 = _mm256_maskload_ps(rows[d].add(t + 8), m_hi);
                    lo[d] = _mm256_fmadd_ps(x0, y0, lo[d]);
                    hi[d] = _mm256_fmadd_ps(x1, y1, hi[d]);
                }
            }
            for d in 0..D {
                out[k + d] += tree(lo[d], hi[d]);
            }
            k += D;
        }
        for k in k..idx.len() {
            let row = bp.add(idx[k] as usize * ldb);
            let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            let mut t = 0;
            while t < whole {
                lo = _mm256_fmadd_ps(_mm256_loadu_ps(ap.add(t)), _mm256_loadu_ps(row.add(t)), lo);
                hi = _mm256_fmadd_ps(
                    _mm256_loadu_ps(ap.add(t + 8)),
                    _mm256_loadu_ps(row.add(t + 8)),
                    hi,
                );
                t += 16;
            }
            if rem > 0 {
                let x0 = _mm256_maskload_ps(ap.add(t), m_lo);
                let x1 = _mm256_maskload_ps(ap.add(t + 8), m_hi);
                lo = _mm256_fmadd_ps(x0, _mm256_maskload_ps(row.add(t), m_lo), lo);
                hi = _mm256_fmadd_ps(x1, _mm256_maskload_ps(row.add(t + 8), m_hi), hi);
            }
            out[k] += tree(lo, hi);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{pseudo, sparse_values};

    /// The definition, in f64: `Σ_t A[i, t]·B[j, t]` at each non-zero.
    fn reference(s: &Csr, a: &[f32], lda: usize, b: &[f32], ldb: usize, q: usize) -> Vec<f64> {
        let mut out = Vec::new();
        for i in 0..s.rows() {
            let (lo, hi) = (s.row_ptr()[i] as usize, s.row_ptr()[i + 1] as usize);
            for &j in &s.col_idx()[lo..hi] {
                let j = j as usize;
                out.push(
                    (0..q)
                        .map(|t| a[i * lda + t] as f64 * b[j * ldb + t] as f64)
                        .sum(),
                );
            }
        }
        out
    }

    fn isas() -> Vec<Isa> {
        let mut v = vec![Isa::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                v.push(Isa::Avx2);
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                v.push(Isa::Avx512);
            }
        }
        v
    }

    /// Close to the f64 definition, and bit for bit the same on every kernel
    /// of this CPU and split over threads or not — for `Q` below, at and
    /// above a vector, rows with fewer than four non-zeros, empty rows.
    #[test]
    fn matches_the_definition_on_every_kernel() {
        for (m, k, q, density) in [
            (7, 13, 1, 0.5),
            (5, 9, 15, 0.4),
            (6, 11, 16, 1.0),
            (9, 20, 37, 0.3),
            (20, 78, 128, 0.05),
            (64, 300, 64, 0.1),
            (3, 4, 5, 0.0),
        ] {
            let (lda, ldb) = (q + 3, q + 1);
            let w = sparse_values(m * k, density, 5);
            let s = Csr::from_dense(&w, m, k);
            let a = pseudo(m * lda, 6);
            let b = pseudo(k * ldb, 7);
            let want = reference(&s, &a, lda, &b, ldb, q);
            let mut first: Option<Vec<f32>> = None;
            for isa in isas() {
                for parallel in [false, true] {
                    let mut out = vec![f32::NAN; s.nnz()];
                    sddmm_with(isa, &s, &a, lda, &b, ldb, q, &mut out, parallel);
                    for (o, w) in out.iter().zip(&want) {
                        assert!(
                            (*o as f64 - w).abs() <= 1e-5 * (1.0 + w.abs()),
                            "{m}×{k}, Q = {q}: {o} vs {w}"
                        );
                    }
                    match &first {
                        None => first = Some(out),
                        Some(f) => assert_eq!(
                            f.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                            out.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                            "{isa:?} (parallel {parallel}) differs from the portable kernel"
                        ),
                    }
                }
            }
        }
    }

    /// A large product (split over tasks) equals the serial one bit for bit.
    #[test]
    fn the_split_does_not_change_the_bits() {
        let (m, k, q) = (200, 784, 128);
        let s = Csr::from_dense(&sparse_values(m * k, 0.05, 1), m, k);
        let (a, b) = (pseudo(m * q, 2), pseudo(k * q, 3));
        let (mut x, mut y) = (vec![0.0; s.nnz()], vec![0.0; s.nnz()]);
        sddmm(&s, &a, q, &b, q, q, &mut x, false);
        sddmm(&s, &a, q, &b, q, q, &mut y, true);
        assert!(
            s.nnz() * q >= PARALLEL_WORK,
            "the test must reach the parallel path"
        );
        assert_eq!(x, y);
    }

    #[test]
    #[should_panic(expected = "B has")]
    fn a_short_operand_is_caught() {
        let s = Csr::from_dense(&[1.0, 0.0, 0.0, 1.0], 2, 2);
        let mut out = vec![0.0; 2];
        sddmm(&s, &[0.0; 8], 4, &[0.0; 6], 4, 4, &mut out, false);
    }
}
