//! A dense layer's sparse weight: `W` (`[out, in]`) and `Wᵀ` in CSR form, and
//! the two products of the layer that read it.
//!
//! The kernel ([`spmm`]) is vectorised along the dense dimension of its
//! operand, here the batch, so the activations are transposed around it
//! (SparseProp's batch-contiguous layout):
//!
//! - forward: `Yᵀ[out, N] = W · Xᵀ[in, N]`, then `Y = (Yᵀ)ᵀ + b`;
//! - input gradient: `(∂L/∂X)ᵀ[in, N] = Wᵀ · Gᵀ[out, N]`.
//!
//! For a batch of one the vectors are their own transposes.

use std::cell::{Cell, RefCell};
use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::sparse::sddmm::sddmm;
use crate::sparse::spmm::spmm;
use crate::sparse::Csr;
use crate::transpose::{transpose_into, transpose_into_uninit};

/// Whether the sparse products beat the dense GEMM for a weight with this
/// share of non-zeros at this batch size, for inference (`training` false:
/// the forward product only) or for a training step (the forward product
/// and the input gradient). The break-even densities measured by
/// `benches/sparse.rs` (docs/BENCHMARKS.md; MNIST fc1 784→200 and a
/// denoiser layer 784→784, Intel Xeon) are about 25% for the forward product
/// at batch 128 and 15–25% for the input gradient; at batch 1, where the
/// dense product is a matrix-vector product bound by reading `W` and the
/// sparse one has no batch to vectorise along, about 10%. The rule stays
/// below them with a margin.
pub fn sparse_linear_pays(density: f64, batch: usize, training: bool) -> bool {
    let break_even = match (training, batch) {
        (_, 1) => 0.05,
        (false, _) => 0.2,
        (true, _) => 0.15,
    };
    density <= break_even
}

/// `W` and `Wᵀ` of a dense layer in CSR form (see the module docs). `Wᵀ` is
/// built on the first input gradient after a refill (a first layer, whose
/// input needs no gradient, never builds it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SparseLinear {
    w: Csr,
    wt: RefCell<Csr>,
    wt_fresh: Cell<bool>,
}

impl SparseLinear {
    /// The sparse form of the row-major `[out, in]` weight `w`.
    ///
    /// **Panics** if `w.len() != out·in`.
    pub fn from_dense(w: &[f32], out: usize, input: usize) -> SparseLinear {
        let mut s = SparseLinear::default();
        s.refill(w, out, input);
        s
    }

    /// Rebuilds the sparse form from `w` in place (no allocation once the
    /// support has stopped growing): one pass over `w` (`Wᵀ` follows by a
    /// counting sort when first needed).
    ///
    /// **Panics** if `w.len() != out·in`.
    pub fn refill(&mut self, w: &[f32], out: usize, input: usize) {
        self.w.fill_from_dense(w, out, input);
        self.wt_fresh.set(false);
    }

    /// Re-reads the values at the existing non-zero positions of `W` from
    /// `w` (same shape), keeping the structure: O(nnz). For a weight whose
    /// support can only have shrunk since the last [`SparseLinear::refill`]
    /// (the masked steps of sparse backpropagation); weights that became 0
    /// stay as explicit zeros. Returns `false` if `w` has a non-zero outside
    /// the structure: the form is then not `w`, and needs a refill.
    ///
    /// **Panics** if `w` does not have the weight's shape.
    pub fn refresh(&mut self, w: &[f32]) -> bool {
        self.wt_fresh.set(false);
        self.w.refresh_values(w)
    }

    /// `W` (`[out, in]`).
    pub fn weight(&self) -> &Csr {
        &self.w
    }

    /// Output features.
    pub fn out_features(&self) -> usize {
        self.w.rows()
    }

    /// Input features.
    pub fn in_features(&self) -> usize {
        self.w.cols()
    }

    /// `Y = X·Wᵀ + b` for `X: [n, in]` (row-major); returns `[n, out]`.
    ///
    /// **Panics** if `x.len() != n·in` or the bias does not have `out` values.
    pub fn forward(&self, x: &[f32], n: usize, bias: Option<&[f32]>) -> Vec<f32> {
        let (out, input) = (self.out_features(), self.in_features());
        assert_eq!(
            x.len(),
            n * input,
            "SparseLinear: input is not [{n}, {input}]"
        );
        let mut y = by_batch_blocks(&self.w, x, n);
        if let Some(b) = bias {
            assert_eq!(b.len(), out, "SparseLinear: bias is not [{out}]");
            for row in y.chunks_exact_mut(out) {
                row.iter_mut().zip(b).for_each(|(v, &b)| *v += b);
            }
        }
        y
    }

    /// `∂L/∂X = G·W` for `G: [n, out]`; returns `[n, in]`.
    ///
    /// **Panics** if `g.len() != n·out`.
    pub fn input_grad(&self, g: &[f32], n: usize) -> Vec<f32> {
        let out = self.out_features();
        assert_eq!(
            g.len(),
            n * out,
            "SparseLinear: gradient is not [{n}, {out}]"
        );
        if !self.wt_fresh.get() {
            self.wt.borrow_mut().fill_transpose_of(&self.w);
            self.wt_fresh.set(true);
        }
        by_batch_blocks(&self.wt.borrow(), g, n)
    }

    /// `Y = X·Wᵀ + b` from `Xᵀ: [in, n]` (the batch-contiguous activations,
    /// as [`SparseLinear::transpose_input`] gives them); returns `[n, out]`.
    /// For a training pass that computes the weight gradient on the support
    /// too ([`SparseLinear::weight_grad_transposed`]), so `X` is transposed
    /// once for both products.
    ///
    /// **Panics** if `xt.len() != in·n` or the bias does not have `out` values.
    pub fn forward_transposed(&self, xt: &[f32], n: usize, bias: Option<&[f32]>) -> Vec<f32> {
        let (out, input) = (self.out_features(), self.in_features());
        assert_eq!(
            xt.len(),
            n * input,
            "SparseLinear: input is not [{input}, {n}]"
        );
        let yt = self.forward_batch_major(xt, n, bias);
        let mut y = vec![0.0; n * out];
        crate::transpose::transpose_into(&yt, out, n, &mut y);
        y
    }

    /// `Yᵀ = W·Xᵀ + b` on batch-contiguous activations: `Xᵀ: [in, n]` to
    /// `Yᵀ: [out, n]`, nothing transposed. A chain of sparse layers runs
    /// in this layout from its first layer's input to its last one's output
    /// (SparseProp's layout), so only the chain's ends are transposed. The
    /// same bits as [`SparseLinear::forward`] (each output is the same chain
    /// of multiply-adds, the bias added last).
    ///
    /// **Panics** if `xt.len() != in·n` or the bias does not have `out` values.
    pub fn forward_batch_major(&self, xt: &[f32], n: usize, bias: Option<&[f32]>) -> Vec<f32> {
        let (out, input) = (self.out_features(), self.in_features());
        assert_eq!(
            xt.len(),
            n * input,
            "SparseLinear: input is not [{input}, {n}]"
        );
        let mut yt = vec![0.0; out * n];
        if n > 0 {
            spmm(&self.w, xt, n, n, &mut yt, true);
        }
        if let Some(b) = bias {
            assert_eq!(b.len(), out, "SparseLinear: bias is not [{out}]");
            if n > 0 {
                for (row, &b) in yt.chunks_exact_mut(n).zip(b) {
                    row.iter_mut().for_each(|v| *v += b);
                }
            }
        }
        yt
    }

    /// `Xᵀ: [in, n]` for `X: [n, in]`, the operand of
    /// [`SparseLinear::forward_transposed`] and
    /// [`SparseLinear::weight_grad_transposed`].
    ///
    /// **Panics** if `x.len() != n·in`.
    pub fn transpose_input(&self, x: &[f32], n: usize) -> Vec<f32> {
        let input = self.in_features();
        assert_eq!(
            x.len(),
            n * input,
            "SparseLinear: input is not [{n}, {input}]"
        );
        let mut xt = Vec::with_capacity(x.len());
        transpose_into_uninit(x, n, input, &mut xt.spare_capacity_mut()[..x.len()]);
        // SAFETY: `transpose_into_uninit` wrote all `n·in` values.
        unsafe { xt.set_len(x.len()) };
        xt
    }

    /// [`SparseLinear::weight_grad`] from `Xᵀ: [in, n]` instead of `X`.
    ///
    /// **Panics** if `g.len() != n·out` or `xt.len() != in·n`.
    pub fn weight_grad_transposed(&self, g: &[f32], xt: &[f32], n: usize) -> Vec<f32> {
        let (out, input) = (self.out_features(), self.in_features());
        assert_eq!(
            g.len(),
            n * out,
            "SparseLinear: gradient is not [{n}, {out}]"
        );
        assert_eq!(
            xt.len(),
            n * input,
            "SparseLinear: input is not [{input}, {n}]"
        );
        let mut dw = vec![0.0; self.w.nnz()];
        if n == 0 {
            return dw;
        }
        GRAD_SCRATCH.with_borrow_mut(|gt| {
            gt.resize(gt.len().max(n * out), 0.0);
            transpose_into(g, n, out, gt);
            sddmm(&self.w, &gt[..n * out], n, xt, n, n, &mut dw, true);
        });
        dw
    }

    /// The weight gradient on the support of `W`: `∂L/∂W_ij = Σ_b G_bi X_bj`
    /// at the non-zeros `(i, j)` only, in `W`'s CSR order, for `G: [n, out]`
    /// and `X: [n, in]` — the sampled dense-dense product with both operands
    /// transposed (batch-contiguous), so each value is a dot product of two
    /// contiguous rows of length `n`.
    ///
    /// **Panics** if `g.len() != n·out` or `x.len() != n·in`.
    pub fn weight_grad(&self, g: &[f32], x: &[f32], n: usize) -> Vec<f32> {
        if n == 1 {
            // Vectors are their own transposes.
            let (out, input) = (self.out_features(), self.in_features());
            assert_eq!(g.len(), out, "SparseLinear: gradient is not [1, {out}]");
            assert_eq!(x.len(), input, "SparseLinear: input is not [1, {input}]");
            let mut dw = vec![0.0; self.w.nnz()];
            sddmm(&self.w, g, 1, x, 1, 1, &mut dw, true);
            return dw;
        }
        self.weight_grad_transposed(g, &self.transpose_input(x, n), n)
    }

    /// Share of non-zero weights.
    pub fn density(&self) -> f64 {
        self.w.density()
    }
}

/// Batch rows per block of [`by_batch_blocks`]: the block's transposed
/// activations (`in × 64` values, 200 KB for 784 inputs) stay in L2 while
/// every sparse row reads them, and a batch of 128 makes two blocks, one per
/// core, each transposing its own part (the transposes cost as much as the
/// sparse product).
const BATCH_BLOCK: usize = 64;

/// `Z[n, rows] = A[n, cols] · Sᵀ` (row-major `A`, `S: [rows, cols]` sparse):
/// per block of [`BATCH_BLOCK`] rows of `A`, `Zᵀ = S · Aᵀ` with the block
/// transposed into per-thread scratch memory (reused across calls) and the
/// result transposed back. One block splits its sparse rows over rayon
/// tasks; several blocks run as tasks themselves. Each output is computed by
/// one task either way, so the bits do not depend on the split.
fn by_batch_blocks(s: &Csr, a: &[f32], n: usize) -> Vec<f32> {
    let (rows, cols) = (s.rows(), s.cols());
    let len = n * rows;
    if n == 1 {
        // A vector is its own transpose.
        let mut z = vec![0.0; len];
        spmm(s, a, 1, 1, &mut z, true);
        return z;
    }
    let mut z: Vec<f32> = Vec::with_capacity(len);
    if len == 0 {
        return z;
    }
    let block = |ab: &[f32], zb: &mut [MaybeUninit<f32>], par: bool| {
        let nb = zb.len() / rows;
        SCRATCH.with_borrow_mut(|(at, zt)| {
            if cols > 0 {
                at.resize(at.len().max(nb * cols), 0.0);
                transpose_into(ab, nb, cols, at);
            }
            zt.resize(zt.len().max(nb * rows), 0.0);
            spmm(s, &at[..nb * cols], nb, nb, &mut zt[..nb * rows], par);
            transpose_into_uninit(zt, rows, nb, zb);
        })
    };
    let spare = &mut z.spare_capacity_mut()[..len];
    if n <= BATCH_BLOCK || cols == 0 {
        block(a, spare, true);
    } else {
        spare
            .par_chunks_mut(BATCH_BLOCK * rows)
            .zip(a.par_chunks(BATCH_BLOCK * cols))
            .for_each(|(zb, ab)| block(ab, zb, false));
    }
    // SAFETY: the blocks cover all `len` values, and `transpose_into_uninit`
    // wrote every value of each block.
    unsafe { z.set_len(len) };
    z
}

thread_local! {
    /// Per-thread scratch of [`by_batch_blocks`]: a transposed block of the
    /// dense operand and of the result (grown, never shrunk).
    static SCRATCH: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };

    /// Per-thread scratch of [`SparseLinear::weight_grad_transposed`]: `Gᵀ`.
    static GRAD_SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{pseudo, sparse_values};
    use crate::{matmul, Tensor};

    /// Against the dense products, to 1e-5 relative (the dense backend the
    /// shape gets may sum in another order), for densities from 0 to 1,
    /// batches of 1 and more (several batch blocks), odd sizes.
    #[test]
    fn products_match_the_dense_ones() {
        for (n, out, input, density) in [
            (1, 7, 13, 0.3),
            (5, 10, 3, 0.0),
            (37, 21, 50, 0.1),
            (128, 20, 78, 0.03),
            (3, 4, 5, 1.0),
            (300, 30, 40, 0.05),
        ] {
            let w = sparse_values(out * input, density, 9);
            let x = pseudo(n * input, 1);
            let g = pseudo(n * out, 2);
            let b = pseudo(out, 3);
            let s = SparseLinear::from_dense(&w, out, input);
            assert!((s.density() - crate::sparse::density(&w)).abs() < 1e-12);
            let wt = Tensor::from_vec(&[out, input], w).unwrap();
            let xt = Tensor::from_vec(&[n, input], x.clone()).unwrap();
            let gt = Tensor::from_vec(&[n, out], g.clone()).unwrap();
            let mut want_y = matmul(&xt, false, &wt, true);
            want_y.add_row_bias_inplace(&Tensor::from_vec(&[out], b.clone()).unwrap());
            let y = s.forward(&x, n, Some(&b));
            let close = |a: &[f32], b: &[f32]| {
                a.iter()
                    .zip(b)
                    .all(|(x, y)| (x - y).abs() <= 1e-5 * (1.0 + y.abs()))
            };
            assert!(
                close(&y, want_y.data()),
                "forward {n}×{input}→{out} at {density}"
            );
            let want_dx = matmul(&gt, false, &wt, false);
            let dx = s.input_grad(&g, n);
            assert!(close(&dx, want_dx.data()), "input grad {n}×{out}→{input}");
            // The weight gradient on the support: Gᵀ·X at the non-zeros.
            let want_dw = matmul(&gt, true, &xt, false);
            let support: Vec<f32> = (0..out * input)
                .filter(|&i| wt.data()[i] != 0.0)
                .map(|i| want_dw.data()[i])
                .collect();
            let dw = s.weight_grad(&g, &x, n);
            assert!(close(&dw, &support), "weight grad {n}×{out}×{input}");
            // The batch-contiguous path: the same bits as the two above.
            let xt = s.transpose_input(&x, n);
            assert_eq!(s.weight_grad_transposed(&g, &xt, n), dw);
            let y_bm = s.forward_batch_major(&xt, n, Some(&b));
            let mut y_back = vec![0.0; n * out];
            transpose_into(&y_bm, out, n, &mut y_back);
            assert_eq!(y_back, y, "batch-major forward {n}×{input}→{out}");
            let yt = s.forward_transposed(&xt, n, Some(&b));
            assert!(
                close(&yt, want_y.data()),
                "forward from Xᵀ {n}×{input}→{out}"
            );
        }
    }

    /// A refill replaces both `W` and (when next needed) `Wᵀ`.
    #[test]
    fn refill_replaces_the_transpose_too() {
        let (n, out, input) = (3, 6, 5);
        let (w1, w2) = (sparse_values(30, 0.5, 1), sparse_values(30, 0.5, 2));
        let g = pseudo(n * out, 3);
        let mut s = SparseLinear::from_dense(&w1, out, input);
        let _ = s.input_grad(&g, n);
        s.refill(&w2, out, input);
        let fresh = SparseLinear::from_dense(&w2, out, input);
        assert_eq!(s.input_grad(&g, n), fresh.input_grad(&g, n));
        assert_eq!(
            s.forward(&pseudo(n * input, 4), n, None),
            fresh.forward(&pseudo(n * input, 4), n, None)
        );
    }
}
