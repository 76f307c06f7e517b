//! A convolution's sparse weight and the two products that read it, for
//! stride 1: the forward pass and the input gradient, both on the non-zero
//! kernel taps only, both through [`spmm_offsets`] with no `im2col` matrix.
//!
//! **Forward (implicit im2col).** Copy the image into a zero-padded buffer
//! `Xp: [C, Hp, Wp]`. Output pixel `(oy, ox)` of channel `o` is
//! `Σ W[o, c, ky, kx] · Xp[c, oy + ky, ox + kx]`. Computed on a *wide* grid
//! of `OH × Wp` pixels (the columns `ox ≥ OW` are computed and dropped),
//! pixel `q = oy·Wp + ox` reads `Xp` at `off(c, ky, kx) + q` with
//! `off = c·Hp·Wp + ky·Wp + kx`: each weight reads one contiguous window of
//! `Xp`, which is exactly the offset form of the sparse kernel (`S = W` as
//! `[OC, C·k·k]`, `Q = OH·Wp`). Kernels that are zero cost nothing, whether
//! the zeros are unstructured (ℓ1) or whole kernels (group ℓ1,2).
//!
//! **Input gradient.** `∂L/∂Xp[c, iy, ix] = Σ W[o, c, ky, kx] · G[o, iy − ky,
//! ix − kx]`: a correlation of the output gradient, zero-padded by `k − 1`
//! on every side (`Gp: [OC, Hp + KH − 1, Wg]`, `Wg = OW + 2(KW − 1)`), with
//! the flipped kernels — the same offset form with `S[c, (o, ky', kx')] =
//! W[o, c, KH−1−ky', KW−1−kx']`, on a wide grid of `Hp × Wg` pixels, then
//! cropped to the unpadded image.
//!
//! Both grids waste `Wp/OW` (or `Wg/Wp`) of the work on dropped columns:
//! 1.5× for the paper ConvNet's second convolution (8×8 outputs from 12×12
//! inputs), 1.17× for its first.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::conv::ConvGeometry;
use crate::packed::Isa;
use crate::sparse::sddmm::dots_add;
use crate::sparse::spmm::{spmm_offsets, Offsets};
use crate::sparse::Csr;

/// Images per partial sum of [`SparseConv::weight_grad`]: the batch is cut
/// into pieces of this many images (a fixed size, so the bits do not depend
/// on the thread count), each summed by one task, the pieces added in order.
const IMAGES_PER_PART: usize = 8;

/// Whether the sparse convolution beats the dense one (im2col + GEMM) for a
/// weight with this share of non-zero taps: for inference (`training`
/// false: the forward pass only) or a training step (forward and input
/// gradient). The break-even densities measured by `benches/sparse.rs` on
/// the paper ConvNet's second convolution (docs/BENCHMARKS.md, Intel Xeon),
/// at batch 128 and 1 alike, with unstructured and kernel sparsity: about
/// 30–40% for the forward pass, 25% for forward plus input gradient; the
/// rule stays below them with a margin.
pub fn sparse_conv_pays(density: f64, training: bool) -> bool {
    density <= if training { 0.2 } else { 0.25 }
}

/// The sparse form of a convolution weight `[OC, C, KH, KW]` (see the module docs).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SparseConv {
    /// `W` as `[OC, C·KH·KW]`.
    w: Csr,
    /// The flipped transpose: `[C, OC·KH·KW]`.
    wt_flip: Csr,
    /// Scratch of the refill: the permuted, flipped dense weight.
    flipped: Vec<f32>,
    shape: [usize; 4],
}

/// Reused buffers of one image's products.
#[derive(Debug, Default)]
pub struct ConvScratch {
    padded: Vec<f32>,
    wide: Vec<f32>,
}

/// Where each non-zero's window starts in the padded image (forward) and in
/// the padded output gradient (input gradient), for one geometry: computed
/// once per batch by [`SparseConv::plan`].
#[derive(Debug, Clone)]
pub struct ConvPlan {
    geom: ConvGeometry,
    forward: Offsets,
    input_grad: Offsets,
}

impl SparseConv {
    /// The sparse form of the weight `w` of shape `[oc, c, kh, kw]`.
    ///
    /// **Panics** if `w.len()` is not the product of the shape.
    pub fn from_dense(w: &[f32], shape: [usize; 4]) -> SparseConv {
        let mut s = SparseConv::default();
        s.refill(w, shape);
        s
    }

    /// Rebuilds the sparse form in place (no allocation once the support has
    /// stopped growing): two passes over `w`.
    ///
    /// **Panics** if `w.len()` is not the product of the shape.
    pub fn refill(&mut self, w: &[f32], shape: [usize; 4]) {
        let [oc, c, kh, kw] = shape;
        let taps = kh * kw;
        self.shape = shape;
        self.w.fill_from_dense(w, oc, c * taps);
        self.flipped.clear();
        self.flipped.resize(w.len(), 0.0);
        for o in 0..oc {
            for ci in 0..c {
                let src = &w[(o * c + ci) * taps..][..taps];
                let dst = &mut self.flipped[(ci * oc + o) * taps..][..taps];
                // Reversing a row-major kernel flips both axes.
                dst.iter_mut()
                    .zip(src.iter().rev())
                    .for_each(|(d, &s)| *d = s);
            }
        }
        self.wt_flip.fill_from_dense(&self.flipped, c, oc * taps);
    }

    /// Re-reads the values at the existing non-zero taps from `w` (same
    /// shape), keeping the structure of `W` and of its flipped transpose:
    /// O(nnz). For a weight whose support can only have shrunk since the last
    /// [`SparseConv::refill`] (the masked steps of sparse backpropagation).
    /// Returns `false` if `w` has a non-zero outside the structure: the form
    /// is then not `w`, and needs a refill.
    ///
    /// **Panics** if `w` does not have the weight's shape.
    pub fn refresh(&mut self, w: &[f32]) -> bool {
        let [oc, c, kh, kw] = self.shape;
        let taps = kh * kw;
        assert_eq!(
            w.len(),
            oc * c * taps,
            "SparseConv: refresh from another shape"
        );
        let covered = self.w.refresh_values(w);
        // Row ci, column (o, t') of the flipped transpose is W[o, ci, taps − 1 − t'].
        self.wt_flip.refresh_values_by(|ci, j| {
            let (o, t) = (j / taps, j % taps);
            w[(o * c + ci) * taps + taps - 1 - t]
        });
        covered
    }

    /// `W` as `[OC, C·KH·KW]` (the layout of `torch.sparse_csr_tensor` for
    /// the flattened weight).
    pub fn weight(&self) -> &Csr {
        &self.w
    }

    /// The weight's shape `[OC, C, KH, KW]`.
    pub fn shape(&self) -> [usize; 4] {
        self.shape
    }

    /// Share of non-zero weights.
    pub fn density(&self) -> f64 {
        self.w.density()
    }

    /// The window offsets of both products for the images of `g`.
    ///
    /// **Panics** if the geometry does not fit the weight or has a stride
    /// other than 1.
    pub fn plan(&self, g: &ConvGeometry) -> ConvPlan {
        let [_, c, kh, kw] = self.shape;
        assert!(
            g.stride == 1 && g.c == c && g.kh == kh && g.kw == kw,
            "SparseConv: geometry {g:?} does not fit weight {:?} (stride 1 only)",
            self.shape
        );
        let (hp, wp) = (g.h + 2 * g.pad, g.w + 2 * g.pad);
        let (hg, wg) = (g.oh + 2 * (kh - 1), g.ow + 2 * (kw - 1));
        ConvPlan {
            geom: *g,
            forward: offsets(&self.w, kh, kw, hp * wp, wp),
            input_grad: offsets(&self.wt_flip, kh, kw, hg * wg, wg),
        }
    }

    fn check(&self, plan: &ConvPlan, g: &ConvGeometry) {
        assert!(
            plan.geom == *g && plan.forward.as_slice().len() == self.w.nnz(),
            "SparseConv: the plan was made for another geometry or weight"
        );
    }

    /// One image's output `y: [OC, OH, OW]` from `x: [C, H, W]`, plus the
    /// bias `[OC]` if given: every value of `y` is written (it may start
    /// uninitialised).
    ///
    /// **Panics** if the plan was made for another weight or geometry, or a
    /// slice has the wrong length.
    pub fn forward_image(
        &self,
        x: &[f32],
        plan: &ConvPlan,
        bias: Option<&[f32]>,
        y: &mut [MaybeUninit<f32>],
        s: &mut ConvScratch,
    ) {
        let g = &plan.geom;
        self.check(plan, g);
        let [oc, c, _, kw] = self.shape;
        let (hp, wp) = (g.h + 2 * g.pad, g.w + 2 * g.pad);
        assert_eq!(x.len(), c * g.h * g.w, "SparseConv: image length");
        assert_eq!(y.len(), oc * g.out_pixels(), "SparseConv: output length");
        // Xp, with `kw − 1` zeros of slack read only by dropped columns.
        pad_planes(
            x,
            c,
            (g.h, g.w),
            (hp, wp),
            (g.pad, g.pad),
            kw - 1,
            &mut s.padded,
        );
        let q = g.oh * wp;
        s.wide.resize(oc * q, 0.0);
        spmm_offsets(
            &self.w,
            &plan.forward,
            &s.padded,
            q,
            &mut s.wide[..oc * q],
            false,
        );
        if let Some(b) = bias {
            assert_eq!(b.len(), oc, "SparseConv: bias length");
        }
        crop(&s.wide, oc, (g.oh, wp), (0, 0), (g.oh, g.ow), bias, y);
    }

    /// One image's input gradient `dx: [C, H, W]` from the output gradient
    /// `gy: [OC, OH, OW]`: every value of `dx` is written (it may start
    /// uninitialised).
    ///
    /// **Panics** as [`SparseConv::forward_image`].
    pub fn input_grad_image(
        &self,
        gy: &[f32],
        plan: &ConvPlan,
        dx: &mut [MaybeUninit<f32>],
        s: &mut ConvScratch,
    ) {
        let g = &plan.geom;
        self.check(plan, g);
        let [oc, c, kh, kw] = self.shape;
        let hp = g.h + 2 * g.pad;
        assert_eq!(gy.len(), oc * g.out_pixels(), "SparseConv: gradient length");
        assert_eq!(dx.len(), c * g.h * g.w, "SparseConv: input length");
        let (hg, wg) = (g.oh + 2 * (kh - 1), g.ow + 2 * (kw - 1));
        pad_planes(
            gy,
            oc,
            (g.oh, g.ow),
            (hg, wg),
            (kh - 1, kw - 1),
            kw - 1,
            &mut s.padded,
        );
        let q = hp * wg;
        s.wide.resize(c * q, 0.0);
        spmm_offsets(
            &self.wt_flip,
            &plan.input_grad,
            &s.padded,
            q,
            &mut s.wide[..c * q],
            false,
        );
        crop(&s.wide, c, (hp, wg), (g.pad, g.pad), (g.h, g.w), None, dx);
    }

    /// The weight gradient on the support of `W` — `∂L/∂W[o, c, ky, kx] =
    /// Σ_{n, oy, ox} G[n, o, oy, ox] · Xp[n, c, oy + ky, ox + kx]` at the
    /// non-zero taps only, in `W`'s CSR order — for a batch of `n` images
    /// `x: [n, C, H, W]` and output gradients `gy: [n, OC, OH, OW]`.
    ///
    /// Each non-zero is one dot product per image ([`dots_add`], the
    /// sampled dense-dense product): the output gradient's plane `o`, laid
    /// out on the wide grid of the forward pass (rows of `Wp`, zeros in the
    /// dropped columns) and cut after the last real pixel (`(OH − 1)·Wp + OW`
    /// values, so no window overruns its image), against the tap's window of
    /// the padded image at the forward pass's offset. Zero taps cost nothing.
    ///
    /// **Panics** if the plan was made for another weight or geometry, or a
    /// slice does not hold `n` images.
    pub fn weight_grad(&self, gy: &[f32], x: &[f32], n: usize, plan: &ConvPlan) -> Vec<f32> {
        let g = &plan.geom;
        self.check(plan, g);
        let [oc, c, _, _] = self.shape;
        let (hp, wp) = (g.h + 2 * g.pad, g.w + 2 * g.pad);
        let (img, out) = (c * g.h * g.w, oc * g.out_pixels());
        assert_eq!(x.len(), n * img, "SparseConv: input is not {n} images");
        assert_eq!(gy.len(), n * out, "SparseConv: gradient is not {n} images");
        let nnz = self.w.nnz();
        if nnz == 0 || n == 0 || g.out_pixels() == 0 {
            return vec![0.0; nnz];
        }
        let q = (g.oh - 1) * wp + g.ow;
        let (row_ptr, offsets) = (self.w.row_ptr(), plan.forward.as_slice());
        let isa = Isa::detect();
        let part = |first: usize| {
            let mut sum = vec![0.0f32; nnz];
            let (mut padded, mut wide) = (Vec::new(), vec![0.0f32; q]);
            for i in first..(first + IMAGES_PER_PART).min(n) {
                let xi = &x[i * img..][..img];
                let xp: &[f32] = if g.pad == 0 {
                    xi
                } else {
                    let (h, w) = (g.h, g.w);
                    pad_planes(xi, c, (h, w), (hp, wp), (g.pad, g.pad), 0, &mut padded);
                    &padded
                };
                for o in 0..oc {
                    let (lo, hi) = (row_ptr[o] as usize, row_ptr[o + 1] as usize);
                    if lo == hi {
                        continue;
                    }
                    // Plane o on the wide grid: columns OW..Wp stay zero.
                    let plane = &gy[i * out + o * g.out_pixels()..][..g.out_pixels()];
                    for (y, row) in plane.chunks_exact(g.ow).enumerate() {
                        wide[y * wp..][..g.ow].copy_from_slice(row);
                    }
                    dots_add(isa, &wide, xp, &offsets[lo..hi], 1, &mut sum[lo..hi]);
                }
            }
            sum
        };
        let firsts: Vec<usize> = (0..n).step_by(IMAGES_PER_PART).collect();
        let parts: Vec<Vec<f32>> = firsts.into_par_iter().map(part).collect();
        let mut parts = parts.into_iter();
        let mut dw = parts.next().unwrap_or_else(|| vec![0.0; nnz]);
        for p in parts {
            dw.iter_mut().zip(&p).for_each(|(d, &v)| *d += v);
        }
        dw
    }
}

/// `dst = planes` zero-padded: `n` planes of `size` placed at `at` inside
/// planes of `padded` size, plus `slack` zeros at the end.
fn pad_planes(
    src: &[f32],
    n: usize,
    (h, w): (usize, usize),
    (hp, wp): (usize, usize),
    (top, left): (usize, usize),
    slack: usize,
    dst: &mut Vec<f32>,
) {
    dst.clear();
    if (hp, wp) == (h, w) {
        // No padding: one copy, zeros only for the slack.
        dst.extend_from_slice(&src[..n * h * w]);
        dst.resize(n * h * w + slack, 0.0);
        return;
    }
    dst.resize(n * hp * wp + slack, 0.0);
    for (plane, out) in src.chunks_exact(h * w).zip(dst.chunks_exact_mut(hp * wp)) {
        for (row, out_row) in plane
            .chunks_exact(w)
            .zip(out[top * wp..].chunks_exact_mut(wp))
        {
            out_row[left..left + w].copy_from_slice(row);
        }
    }
}

/// For each non-zero of `s` (columns `(plane, ky, kx)`, `KH·KW` per plane),
/// where its window starts in a padded buffer of planes of `plane` values
/// with rows of `wp`: a table per column, so no division per non-zero.
fn offsets(s: &Csr, kh: usize, kw: usize, plane: usize, wp: usize) -> Offsets {
    let table: Vec<u32> = (0..s.cols())
        .map(|j| {
            let (p, tap) = (j / (kh * kw), j % (kh * kw));
            (p * plane + (tap / kw) * wp + tap % kw) as u32
        })
        .collect();
    Offsets::new(s.col_idx().iter().map(|&j| table[j as usize]).collect())
}

/// Writes the `h × w` window at `(top, left)` of each of `n` wide planes of
/// `hw × ww` into the dense planes of `dst` (every value of `dst`), plus
/// plane `i`'s bias `bias[i]` when given.
fn crop(
    wide: &[f32],
    n: usize,
    (hw, ww): (usize, usize),
    (top, left): (usize, usize),
    (h, w): (usize, usize),
    bias: Option<&[f32]>,
    dst: &mut [MaybeUninit<f32>],
) {
    assert_eq!(dst.len(), n * h * w, "SparseConv: output length");
    for (i, (plane, out)) in wide[..n * hw * ww]
        .chunks_exact(hw * ww)
        .zip(dst.chunks_exact_mut(h * w))
        .enumerate()
    {
        let b = bias.map_or(0.0, |b| b[i]);
        for (y, out_row) in out.chunks_exact_mut(w).enumerate() {
            let src = &plane[(top + y) * ww + left..][..w];
            for (o, &v) in out_row.iter_mut().zip(src) {
                o.write(v + b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{pseudo, sparse_values};

    /// The definition of the convolution and of its input gradient.
    fn reference(
        x: &[f32],
        w: &[f32],
        gy: &[f32],
        [oc, c, k, _]: [usize; 4],
        g: &ConvGeometry,
    ) -> (Vec<f32>, Vec<f32>) {
        let mut y = vec![0.0f32; oc * g.oh * g.ow];
        let mut dx = vec![0.0f32; c * g.h * g.w];
        for o in 0..oc {
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    for ci in 0..c {
                        for ky in 0..k {
                            for kx in 0..k {
                                let (iy, ix) = (oy + ky, ox + kx);
                                if iy < g.pad
                                    || ix < g.pad
                                    || iy - g.pad >= g.h
                                    || ix - g.pad >= g.w
                                {
                                    continue;
                                }
                                let xi = (ci * g.h + iy - g.pad) * g.w + ix - g.pad;
                                let wv = w[((o * c + ci) * k + ky) * k + kx];
                                y[(o * g.oh + oy) * g.ow + ox] += wv * x[xi];
                                dx[xi] += wv * gy[(o * g.oh + oy) * g.ow + ox];
                            }
                        }
                    }
                }
            }
        }
        (y, dx)
    }

    /// The weight gradient on the support against the definition (f64),
    /// with and without padding, batches of one image and of several parts.
    #[test]
    fn weight_grad_matches_the_definition_on_the_support() {
        for (n, oc, c, k, h, w, pad, density) in [
            (1, 3, 2, 3, 5, 7, 1, 0.5),
            (19, 4, 3, 5, 12, 12, 0, 0.2),
            (3, 2, 1, 5, 9, 8, 2, 1.0),
            (2, 5, 4, 3, 6, 6, 1, 0.0),
            (9, 6, 5, 1, 4, 3, 0, 0.4),
        ] {
            let shape = [oc, c, k, k];
            let wv = sparse_values(oc * c * k * k, density, 3);
            let g = ConvGeometry::new(&[n, c, h, w], k, k, 1, pad).unwrap();
            let x = pseudo(n * c * h * w, 4);
            let gy = pseudo(n * oc * g.out_pixels(), 5);
            let sc = SparseConv::from_dense(&wv, shape);
            let dw = sc.weight_grad(&gy, &x, n, &sc.plan(&g));
            let mut want = vec![0.0f64; wv.len()];
            for i in 0..n {
                for (wi, d) in want.iter_mut().enumerate() {
                    let (o, ci, ky, kx) = (wi / (c * k * k), wi / (k * k) % c, wi / k % k, wi % k);
                    for oy in 0..g.oh {
                        for ox in 0..g.ow {
                            let (iy, ix) = (oy + ky, ox + kx);
                            if iy < pad || ix < pad || iy - pad >= h || ix - pad >= w {
                                continue;
                            }
                            let xv = x[((i * c + ci) * h + iy - pad) * w + ix - pad];
                            let gv = gy[((i * oc + o) * g.oh + oy) * g.ow + ox];
                            *d += xv as f64 * gv as f64;
                        }
                    }
                }
            }
            let support: Vec<f64> = (0..wv.len())
                .filter(|&i| wv[i] != 0.0)
                .map(|i| want[i])
                .collect();
            assert_eq!(dw.len(), support.len());
            for (a, b) in dw.iter().zip(&support) {
                assert!(
                    (*a as f64 - b).abs() <= 1e-4 * (1.0 + b.abs()),
                    "{shape:?} pad {pad}: {a} vs {b}"
                );
            }
        }
    }

    /// Against the definition, with and without padding, at densities from
    /// 0 to 1 (all-zero kernels, a fully dense weight), odd sizes.
    #[test]
    fn image_products_match_the_definition() {
        for (oc, c, k, h, w, pad, density) in [
            (3, 2, 3, 5, 7, 1, 0.5),
            (4, 3, 5, 12, 12, 0, 0.2),
            (2, 1, 5, 9, 8, 2, 1.0),
            (5, 4, 3, 6, 6, 1, 0.0),
            (6, 5, 1, 4, 3, 0, 0.4),
        ] {
            let shape = [oc, c, k, k];
            let wv = sparse_values(oc * c * k * k, density, 7);
            let g = ConvGeometry::new(&[1, c, h, w], k, k, 1, pad).unwrap();
            let x = pseudo(c * h * w, 8);
            let gy = pseudo(oc * g.out_pixels(), 9);
            let (want_y, want_dx) = reference(&x, &wv, &gy, shape, &g);
            let sc = SparseConv::from_dense(&wv, shape);
            let mut s = ConvScratch::default();
            let plan = sc.plan(&g);
            let b = pseudo(oc, 10);
            let mut y = vec![MaybeUninit::new(f32::NAN); want_y.len()];
            sc.forward_image(&x, &plan, Some(&b), &mut y, &mut s);
            let y: Vec<f32> = y.iter().map(|v| unsafe { v.assume_init() }).collect();
            let want_y: Vec<f32> = want_y
                .iter()
                .enumerate()
                .map(|(i, &v)| v + b[i / g.out_pixels()])
                .collect();
            let mut dx = vec![MaybeUninit::new(f32::NAN); want_dx.len()];
            sc.input_grad_image(&gy, &plan, &mut dx, &mut s);
            let dx: Vec<f32> = dx.iter().map(|v| unsafe { v.assume_init() }).collect();
            let close = |a: &[f32], b: &[f32]| {
                a.iter()
                    .zip(b)
                    .all(|(x, y)| (x - y).abs() <= 1e-5 * (1.0 + y.abs()))
            };
            assert!(
                close(&y, &want_y),
                "forward {shape:?} pad {pad} at {density}"
            );
            assert!(
                close(&dx, &want_dx),
                "input grad {shape:?} pad {pad} at {density}"
            );
        }
    }
}
