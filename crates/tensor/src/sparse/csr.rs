//! Compressed sparse rows: the format every sparse kernel of this module reads.
//!
//! Row `i` holds the non-zeros `values[row_ptr[i]..row_ptr[i + 1]]` at the
//! columns `col_idx[..]` of the same range, in increasing column order (the
//! order in which the kernels add them up). `row_ptr`, `col_idx` and `values`
//! are exactly the arguments of `torch.sparse_csr_tensor`.
//!
//! A `Csr` is refilled in place ([`Csr::fill_from_dense`],
//! [`Csr::fill_transpose_of`]): its vectors keep their capacity, so rebuilding
//! it after every optimizer step allocates nothing once the support has
//! stopped growing.

/// A sparse `rows × cols` matrix in CSR form (see the module docs).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Csr {
    rows: usize,
    cols: usize,
    row_ptr: Vec<u32>,
    col_idx: Vec<u32>,
    values: Vec<f32>,
    /// Scratch of a parallel [`Csr::fill_from_dense`]: one part per block of
    /// rows (not part of the matrix).
    parts: Parts,
}

/// The row blocks of a parallel rebuild, kept for their memory; two matrices
/// are equal, printed and cloned without them.
#[derive(Default)]
struct Parts(Vec<Csr>);

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("_")
    }
}

impl PartialEq for Parts {
    fn eq(&self, _: &Parts) -> bool {
        true
    }
}

impl Clone for Parts {
    fn clone(&self) -> Parts {
        Parts::default()
    }
}

/// Entries of θ per task of a parallel [`Csr::fill_from_dense`] (whole rows;
/// 128 KB of θ): a 784×200 layer makes 5 blocks, so both cores scan.
const SCAN_BLOCK: usize = 1 << 15;

/// The number of non-zero entries of `w` (a `-0.0` counts as zero, a NaN
/// as non-zero).
pub fn count_nonzero(w: &[f32]) -> usize {
    #[cfg(target_arch = "x86_64")]
    match crate::packed::Isa::detect() {
        // SAFETY: the detected features are present.
        crate::packed::Isa::Avx512 => return unsafe { count_avx512(w) },
        crate::packed::Isa::Avx2 => return unsafe { count_avx2(w) },
        crate::packed::Isa::Portable => {}
    }
    count(w)
}

/// Summing a comparison in 32-bit lanes vectorises (`filter().count()` does
/// not, and 64-bit sums take twice the vectors); compiled for the vector
/// width of its caller. Chunks keep the 32-bit sums from overflowing.
#[inline(always)]
fn count(w: &[f32]) -> usize {
    w.chunks(1 << 30)
        .map(|c| c.iter().map(|&v| (v != 0.0) as u32).sum::<u32>() as usize)
        .sum()
}

/// [`count`] with 512-bit vectors (12× the baseline build for a 784×200 weight).
///
/// # Safety
/// The CPU supports AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn count_avx512(w: &[f32]) -> usize {
    count(w)
}

/// [`count`] with 256-bit vectors.
///
/// # Safety
/// The CPU supports AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn count_avx2(w: &[f32]) -> usize {
    count(w)
}

/// The share of non-zero entries of `w` (0 for an empty slice), without
/// building a sparse form.
pub fn density(w: &[f32]) -> f64 {
    if w.is_empty() {
        0.0
    } else {
        count_nonzero(w) as f64 / w.len() as f64
    }
}

impl Csr {
    /// An empty `0 × 0` matrix (fill it with [`Csr::fill_from_dense`]).
    pub fn new() -> Csr {
        Csr::default()
    }

    /// The non-zeros of a row-major `rows × cols` matrix.
    ///
    /// **Panics** if `w.len() != rows·cols` or the matrix has `2³²` entries
    /// or more (indices are `u32`).
    pub fn from_dense(w: &[f32], rows: usize, cols: usize) -> Csr {
        let mut csr = Csr::new();
        csr.fill_from_dense(w, rows, cols);
        csr
    }

    /// Refills `self` with the non-zeros of a row-major `rows × cols` matrix,
    /// reusing its memory. One pass over `w`.
    ///
    /// **Panics** as [`Csr::from_dense`].
    pub fn fill_from_dense(&mut self, w: &[f32], rows: usize, cols: usize) {
        assert_eq!(
            w.len(),
            rows * cols,
            "Csr: {} values for {rows}×{cols}",
            w.len()
        );
        assert!(
            u32::try_from(w.len()).is_ok(),
            "Csr: {rows}×{cols} has too many entries for u32 indices"
        );
        let rows_per_block = (SCAN_BLOCK / cols.max(1)).max(1);
        if rows > rows_per_block && cols > 0 && rayon::current_num_threads() > 1 {
            self.fill_in_blocks(w, rows, cols, rows_per_block);
            return;
        }
        self.clear_to(rows, cols);
        if cols > 0 {
            #[cfg(target_arch = "x86_64")]
            match crate::packed::Isa::detect() {
                crate::packed::Isa::Avx512 => {
                    // SAFETY: AVX-512F is present (detected).
                    unsafe { self.scan_avx512(w, cols) };
                    return;
                }
                crate::packed::Isa::Avx2 => {
                    // SAFETY: AVX2 is present (detected).
                    unsafe { self.scan_avx2(w, cols) };
                    return;
                }
                crate::packed::Isa::Portable => {}
            }
            self.scan(w, cols, |chunk| {
                chunk
                    .iter()
                    .enumerate()
                    .fold(0u32, |m, (k, &v)| m | (((v != 0.0) as u32) << k))
            });
        } else {
            self.row_ptr.resize(rows + 1, 0);
        }
    }

    /// Makes `self` an empty `rows × cols` matrix with no stored entries yet
    /// (`row_ptr = [0]`), keeping its memory.
    fn clear_to(&mut self, rows: usize, cols: usize) {
        self.rows = rows;
        self.cols = cols;
        self.row_ptr.clear();
        self.col_idx.clear();
        self.values.clear();
        self.row_ptr.push(0);
    }

    /// [`Csr::fill_from_dense`] on rayon: each block of `rows_per_block` rows
    /// is scanned into its own part by one task, then the parts are joined in
    /// order — the same matrix as one serial scan, for any thread count.
    fn fill_in_blocks(&mut self, w: &[f32], rows: usize, cols: usize, rows_per_block: usize) {
        use rayon::prelude::*;
        let mut parts = std::mem::take(&mut self.parts.0);
        parts.resize_with(rows.div_ceil(rows_per_block), Csr::default);
        parts
            .par_iter_mut()
            .zip(w.par_chunks(rows_per_block * cols))
            .for_each(|(part, block)| part.fill_from_dense(block, block.len() / cols, cols));
        self.clear_to(rows, cols);
        for part in &parts {
            let offset = self.values.len() as u32;
            self.row_ptr
                .extend(part.row_ptr[1..].iter().map(|&p| p + offset));
            self.col_idx.extend_from_slice(&part.col_idx);
            self.values.extend_from_slice(&part.values);
        }
        self.parts.0 = parts;
    }

    /// Appends the rows of `w` (`cols` values each): 32 entries at a time, a
    /// bit mask of the non-zeros from `mask`, then one push per set bit, so
    /// the zeros of a sparse weight cost a fraction of a cycle each.
    #[inline(always)]
    fn scan(&mut self, w: &[f32], cols: usize, mask: impl Fn(&[f32]) -> u32) {
        for row in w.chunks_exact(cols) {
            for (c, chunk) in row.chunks(32).enumerate() {
                let mut m = mask(chunk);
                while m != 0 {
                    let k = m.trailing_zeros() as usize;
                    self.col_idx.push((c * 32 + k) as u32);
                    self.values.push(chunk[k]);
                    m &= m - 1;
                }
            }
            self.row_ptr.push(self.values.len() as u32);
        }
    }

    /// [`Csr::scan`] with the mask of each full 32-value chunk from four
    /// 8-wide compares.
    ///
    /// # Safety
    /// The CPU supports AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn scan_avx2(&mut self, w: &[f32], cols: usize) {
        use std::arch::x86_64::*;
        self.scan(w, cols, |chunk| {
            if chunk.len() < 32 {
                return chunk
                    .iter()
                    .enumerate()
                    .fold(0u32, |m, (k, &v)| m | (((v != 0.0) as u32) << k));
            }
            let zero = _mm256_setzero_ps();
            let mut mask = 0u32;
            for q in 0..4 {
                // SAFETY: `8q + 8 ≤ 32 = chunk.len()`.
                let v = unsafe { _mm256_loadu_ps(chunk.as_ptr().add(8 * q)) };
                // Not-equal, unordered: a NaN counts as non-zero, as `v != 0.0` does.
                let ne = _mm256_cmp_ps::<_CMP_NEQ_UQ>(v, zero);
                mask |= (_mm256_movemask_ps(ne) as u32) << (8 * q);
            }
            mask
        });
    }

    /// [`Csr::scan`] without a branch per non-zero: per 16 values one
    /// compare to a mask, the non-zeros and their columns compressed to the
    /// front of a register (the register form of `vcompress`, fast on Intel
    /// and AMD alike; the memory form is microcoded on Zen 4) and stored
    /// whole, the write position advanced by the mask's population count.
    ///
    /// # Safety
    /// The CPU supports AVX-512F.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn scan_avx512(&mut self, w: &[f32], cols: usize) {
        use std::arch::x86_64::*;
        let zero = _mm512_setzero_ps();
        let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        let mut k = 0usize;
        for row in w.chunks_exact(cols) {
            // Room for this row's non-zeros (at most `cols`) and for the last
            // whole-register store past them; no reallocation once the
            // capacity has reached the support (plus one row).
            self.values.reserve(k + cols + 16 - self.values.len());
            self.col_idx.reserve(k + cols + 16 - self.col_idx.len());
            let (vals, idx) = (self.values.as_mut_ptr(), self.col_idx.as_mut_ptr());
            let mut j = 0;
            while j + 16 <= cols {
                // SAFETY: `j + 16 ≤ cols`; the stores write 16 values from `k`,
                // below the row's start plus `cols + 16` (reserved above).
                // Branch-free: at a few percent density a 16-entry block holds
                // a non-zero about as often as not, so a test would be
                // mispredicted half the time; an empty block's stores are
                // simply overwritten by the next block's.
                unsafe {
                    let v = _mm512_loadu_ps(row.as_ptr().add(j));
                    // Not-equal, unordered: NaN counts as non-zero, −0 as zero.
                    let m = _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(v, zero);
                    _mm512_storeu_ps(vals.add(k), _mm512_maskz_compress_ps(m, v));
                    let cols16 = _mm512_add_epi32(_mm512_set1_epi32(j as i32), lanes);
                    let packed = _mm512_maskz_compress_epi32(m, cols16);
                    _mm512_storeu_si512(idx.add(k).cast(), packed);
                    k += m.count_ones() as usize;
                }
                j += 16;
            }
            for (jj, &v) in row.iter().enumerate().skip(j) {
                if v != 0.0 {
                    // SAFETY: `k` is below the row's start plus `cols`.
                    unsafe {
                        *vals.add(k) = v;
                        *idx.add(k) = jj as u32;
                    }
                    k += 1;
                }
            }
            // SAFETY: the first `k` values of both vectors are written.
            unsafe {
                self.values.set_len(k);
                self.col_idx.set_len(k);
            }
            self.row_ptr.push(k as u32);
        }
    }

    /// Refills `self` with the transpose of `a` (`a.cols × a.rows`), reusing
    /// its memory: a counting sort by column, `O(nnz + rows + cols)`. Each
    /// row of the result lists its entries in increasing column order, as
    /// every `Csr` does.
    pub fn fill_transpose_of(&mut self, a: &Csr) {
        self.rows = a.cols;
        self.cols = a.rows;
        let nnz = a.nnz();
        self.row_ptr.clear();
        self.row_ptr.resize(a.cols + 1, 0);
        for &j in &a.col_idx {
            self.row_ptr[j as usize + 1] += 1;
        }
        for j in 0..a.cols {
            self.row_ptr[j + 1] += self.row_ptr[j];
        }
        self.col_idx.clear();
        self.col_idx.resize(nnz, 0);
        self.values.clear();
        self.values.resize(nnz, 0.0);
        // `next[j]`: where column j's next entry goes; rows are visited in
        // increasing order, so each transposed row comes out sorted.
        let mut next: Vec<u32> = self.row_ptr[..a.cols].to_vec();
        for i in 0..a.rows {
            let (lo, hi) = (a.row_ptr[i] as usize, a.row_ptr[i + 1] as usize);
            for (&j, &v) in a.col_idx[lo..hi].iter().zip(&a.values[lo..hi]) {
                let slot = &mut next[j as usize];
                self.col_idx[*slot as usize] = i as u32;
                self.values[*slot as usize] = v;
                *slot += 1;
            }
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Number of stored non-zeros.
    pub fn nnz(&self) -> usize {
        self.values.len()
    }

    /// `nnz / (rows·cols)`, 0 for an empty matrix.
    pub fn density(&self) -> f64 {
        let size = self.rows * self.cols;
        if size == 0 {
            0.0
        } else {
            self.nnz() as f64 / size as f64
        }
    }

    /// Row starts: `rows + 1` offsets into [`Csr::col_idx`] and [`Csr::values`].
    pub fn row_ptr(&self) -> &[u32] {
        &self.row_ptr
    }

    /// Column of each non-zero.
    pub fn col_idx(&self) -> &[u32] {
        &self.col_idx
    }

    /// Value of each non-zero.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// Re-reads the values of the existing non-zero positions from the dense
    /// row-major `w` (`rows × cols`, the shape the structure was built for),
    /// keeping the structure: a gather of nnz values. A position whose value
    /// has become 0 stays, as an explicit zero. Returns whether the structure
    /// still holds every non-zero of `w` (one counting pass over `w`); when
    /// it does not, the matrix no longer equals `w` and must be refilled.
    ///
    /// **Panics** if `w` does not have the structure's shape.
    pub fn refresh_values(&mut self, w: &[f32]) -> bool {
        assert_eq!(
            w.len(),
            self.rows * self.cols,
            "Csr: refresh from another shape"
        );
        let cols = self.cols;
        self.refresh_values_by(|i, j| w[i * cols + j]);
        self.values.iter().filter(|&&v| v != 0.0).count() == count_nonzero(w)
    }

    /// As [`Csr::refresh_values`], the value at `(row, col)` given by `value`.
    pub fn refresh_values_by(&mut self, value: impl Fn(usize, usize) -> f32) {
        for i in 0..self.rows {
            let (lo, hi) = (self.row_ptr[i] as usize, self.row_ptr[i + 1] as usize);
            for (v, &j) in self.values[lo..hi].iter_mut().zip(&self.col_idx[lo..hi]) {
                *v = value(i, j as usize);
            }
        }
    }

    /// The dense row-major matrix (for tests and exports).
    pub fn to_dense(&self) -> Vec<f32> {
        self.scatter(&self.values)
    }

    /// The dense row-major matrix with this matrix's structure and the
    /// given values (one per non-zero, in CSR order), zeros elsewhere: how a
    /// product computed on the support (e.g. [`sddmm`](super::sddmm::sddmm))
    /// becomes a full-size tensor.
    ///
    /// **Panics** if `values` does not have one value per non-zero.
    pub fn scatter(&self, values: &[f32]) -> Vec<f32> {
        assert_eq!(
            values.len(),
            self.nnz(),
            "Csr::scatter: one value per non-zero"
        );
        let mut w = vec![0.0; self.rows * self.cols];
        for i in 0..self.rows {
            let (lo, hi) = (self.row_ptr[i] as usize, self.row_ptr[i + 1] as usize);
            let row = &mut w[i * self.cols..][..self.cols];
            for (&j, &v) in self.col_idx[lo..hi].iter().zip(&values[lo..hi]) {
                row[j as usize] = v;
            }
        }
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::sparse_values;

    #[test]
    fn round_trips_and_transposes() {
        for (rows, cols, density) in [
            (7, 13, 0.3),
            (1, 1, 1.0),
            (5, 4, 0.0),
            (0, 3, 0.5),
            (3, 0, 0.5),
        ] {
            let w = sparse_values(rows * cols, density, 3);
            let a = Csr::from_dense(&w, rows, cols);
            assert_eq!(a.to_dense(), w);
            assert_eq!(a.nnz(), count_nonzero(&w));
            assert_eq!(a.row_ptr().len(), rows + 1);
            for r in a.row_ptr().windows(2) {
                let cols_of_row = &a.col_idx()[r[0] as usize..r[1] as usize];
                assert!(
                    cols_of_row.windows(2).all(|p| p[0] < p[1]),
                    "sorted columns"
                );
            }
            let mut t = Csr::new();
            t.fill_transpose_of(&a);
            let mut wt = vec![0.0; w.len()];
            for i in 0..rows {
                for j in 0..cols {
                    wt[j * rows + i] = w[i * cols + j];
                }
            }
            assert_eq!((t.rows(), t.cols()), (cols, rows));
            assert_eq!(t.to_dense(), wt);
            let mut back = Csr::new();
            back.fill_transpose_of(&t);
            assert_eq!(back, a);
        }
    }

    /// The portable and AVX2 scans (used on CPUs without AVX-512 or AVX2)
    /// find the same entries as the one this CPU runs, including NaN (a
    /// non-zero) and −0 (a zero).
    #[test]
    fn portable_scan_matches() {
        let mut w = sparse_values(9 * 100, 0.2, 5);
        w[17] = f32::NAN;
        w[18] = -0.0;
        let fast = Csr::from_dense(&w, 9, 100);
        let row0 = &fast.col_idx()[..fast.row_ptr()[1] as usize];
        assert!(row0.contains(&17) && !row0.contains(&18));
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            let mut avx2 = Csr {
                rows: 9,
                cols: 100,
                row_ptr: vec![0],
                ..Csr::default()
            };
            // SAFETY: AVX2 detected.
            unsafe { avx2.scan_avx2(&w, 100) };
            assert_eq!(format!("{avx2:?}"), format!("{fast:?}"));
        }
        let mut slow = Csr {
            rows: 9,
            cols: 100,
            row_ptr: vec![0],
            ..Csr::default()
        };
        slow.scan(&w, 100, |chunk| {
            chunk
                .iter()
                .enumerate()
                .fold(0u32, |m, (k, &v)| m | (((v != 0.0) as u32) << k))
        });
        // Compared through Debug: NaN != NaN under PartialEq.
        assert_eq!(format!("{slow:?}"), format!("{fast:?}"));
    }

    /// A weight large enough for the parallel rebuild (several row blocks, the
    /// last one short, empty rows, a NaN and a −0) gives the serial scan's
    /// matrix on 2 threads, also when refilled sparser and denser.
    #[test]
    fn parallel_rebuild_is_the_serial_one() {
        let (rows, cols) = (203, 784);
        let pool = |threads| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
        };
        let (one, two) = (pool(1), pool(2));
        let mut again = Csr::new();
        for (density, seed) in [(0.03, 1), (0.0, 2), (0.5, 3), (0.01, 4)] {
            let mut w = sparse_values(rows * cols, density, seed);
            for r in [0, 57, 202] {
                w[r * cols..(r + 1) * cols].fill(0.0);
            }
            w[cols + 3] = f32::NAN;
            w[cols + 4] = -0.0;
            let serial = one.install(|| Csr::from_dense(&w, rows, cols));
            two.install(|| again.fill_from_dense(&w, rows, cols));
            // Compared through Debug: NaN != NaN under PartialEq.
            assert_eq!(
                format!("{again:?}"),
                format!("{serial:?}"),
                "density {density}"
            );
            assert_eq!(serial.nnz(), count_nonzero(&w));
        }
    }

    #[test]
    fn refilling_reuses_memory() {
        let big = sparse_values(40 * 50, 0.5, 1);
        let small = sparse_values(40 * 50, 0.1, 2);
        let mut a = Csr::from_dense(&big, 40, 50);
        let ptr = a.values().as_ptr();
        a.fill_from_dense(&small, 40, 50);
        assert_eq!(
            a.values().as_ptr(),
            ptr,
            "no reallocation for a smaller support"
        );
        assert_eq!(a.to_dense(), small);
        assert!((a.density() - count_nonzero(&small) as f64 / 2000.0).abs() < 1e-12);
    }
}
