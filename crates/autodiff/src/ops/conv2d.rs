//! 2-D convolution (cross-correlation, as PyTorch) via `im2col` + one GEMM.
//!
//! With `cols_n = im2col(x_n)` of shape `[P, k·k·C]` (`P = OH·OW` pixels of
//! image `n`, columns in tap-major order) and the weight viewed as
//! `W: [OC, C·k·k]`, or permuted to the columns' order as `W_tap: [OC, k·k·C]`:
//!
//! - forward: `Y_n = W_tap · cols_nᵀ + b` (`[OC, P]`, already NCHW);
//! - `∂L/∂W_tap = Σ_n G_n · cols_n` (permuted back to `W`'s layout),
//!   `∂L/∂b = Σ_pixels G`;
//! - `∂L/∂x_n = col2im(Wᵀ · G_n)`, the columns channel-major (`[C·k·k, P]`).

use bregman_tensor::conv::{
    col2im_image_channel_major, im2col_image_into, im2col_with, weight_from_tap_major,
    weight_to_tap_major,
};
use bregman_tensor::parallel::{init_default, zeroed_chunks};
use bregman_tensor::{gemm, gemm_serial, ConvGeometry, Tensor};
use rayon::prelude::*;

use crate::{Backward, Tape, Var};

/// Convolution hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dSpec {
    /// Stride in both directions.
    pub stride: usize,
    /// Zero padding on every side.
    pub padding: usize,
}

pub(crate) fn geometry(x: &Tensor, w: &[usize], spec: Conv2dSpec) -> ConvGeometry {
    assert!(
        w.len() == 4 && x.ndim() == 4 && w[1] == x.dim(1),
        "conv2d: input {:?} and weight {:?} do not fit (need NCHW and [OC, C, k, k])",
        x.shape(),
        w
    );
    ConvGeometry::new(x.shape(), w[2], w[3], spec.stride, spec.padding)
        .unwrap_or_else(|e| panic!("conv2d: {e}"))
}

/// Below this batch size a convolution runs its images one after another with
/// a parallel GEMM each; from it on, images run in parallel with a serial GEMM
/// each. Both choices depend on the batch size only, never on the thread count.
pub(crate) const PARALLEL_IMAGES: usize = 4;

/// Builds an output of `n` blocks of `a_len` values, one per image: runs
/// `f(serial, scratch, image's block of the output, image's part of b)` for
/// every image, where `b` holds `n` parts of `b_len` values. Each block is
/// zero-filled by its task right before `f` (see [`zeroed_chunks`]), so the
/// output is never swept by a separate zero-fill; `scratch` is per-task
/// working memory made by `init`, reused across the images a task handles
/// (allocated once per rayon split, not once per image).
fn per_image<S>(
    n: usize,
    a_len: usize,
    b: &[f32],
    b_len: usize,
    init: impl Fn() -> S + Sync,
    f: impl Fn(bool, &mut S, &mut [f32], &[f32]) + Sync,
) -> Vec<f32> {
    // Images in parallel, each with a serial GEMM, or one after another.
    let images_in_parallel = n >= PARALLEL_IMAGES;
    zeroed_chunks(
        n * a_len,
        a_len,
        images_in_parallel,
        init,
        |scratch, i, ai| f(images_in_parallel, scratch, ai, &b[i * b_len..][..b_len]),
    )
}

/// `gemm` or `gemm_serial` (inside a per-image task).
#[allow(clippy::too_many_arguments)]
fn gemm_in(
    serial: bool,
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    ta: bool,
    b: &[f32],
    tb: bool,
    c: &mut [f32],
) {
    if serial {
        gemm_serial(m, k, n, a, ta, b, tb, c, false);
    } else {
        gemm(m, k, n, a, ta, b, tb, c, false);
    }
}

/// From this patch length (`C·k·k`) on, the weight gradient of small images regroups the
/// output gradient and runs one GEMM over all pixels (see [`weight_grad_tap`]).
const BIG_GEMM_PATCH: usize = 256;

/// Whether the weight gradient needs the columns of the whole batch at once:
/// long patches (`C·k·k ≥ BIG_GEMM_PATCH`) on small images
/// (`OH·OW < BIG_IMAGE_PIXELS`), where it is one GEMM over all pixels (see
/// [`weight_grad_tap`]). Every other convolution unfolds each image into a
/// small per-task buffer when it needs it (forward, and again in backward),
/// which costs less than writing the columns of the batch to memory and
/// reading them back: 52 MB for the ConvNet's second convolution (its step
/// went from 45.2–47.0 to 42.3–43.4 ms), 300 MB for each of ResNet-18's
/// first-stage convolutions.
pub(crate) fn keeps_columns(g: &ConvGeometry) -> bool {
    g.patch_len() >= BIG_GEMM_PATCH && g.out_pixels() < BIG_IMAGE_PIXELS
}

/// One image's output `Y_n[OC, P] = W_tap · cols_nᵀ + b` (`(oc, pl, p)` =
/// output channels, patch length, pixels), written over `yn`; the transposed
/// `cols_n` is read in place. Shared with the fused `conv2d_pool_relu`.
pub(crate) fn image_output(
    serial: bool,
    (oc, pl, p): (usize, usize, usize),
    w_tap: &[f32],
    b: Option<&Tensor>,
    cn: &[f32],
    yn: &mut [f32],
) {
    gemm_in(serial, oc, pl, p, w_tap, false, cn, true, yn);
    if let Some(b) = b {
        for (plane, &bo) in yn.chunks_exact_mut(p).zip(b.data()) {
            plane.iter_mut().for_each(|v| *v += bo);
        }
    }
}

/// The image groups' partial weight gradients added in group order (the
/// order that makes `∂L/∂W` independent of the thread count).
pub(crate) fn sum_in_order(partials: &[Vec<f32>], len: usize) -> Vec<f32> {
    let mut sum = vec![0.0f32; len];
    for part in partials {
        sum.iter_mut().zip(part).for_each(|(d, &v)| *d += v);
    }
    sum
}

/// `∂L/∂W_tap` (`[OC, k·k·C]`) permuted back to `w`'s shape `[OC, C, k, k]`.
pub(crate) fn weight_from_tap(dw_tap: &[f32], g: &ConvGeometry, w: &Tensor) -> Tensor {
    let dw = weight_from_tap_major(dw_tap, w.dim(0), g.c, g.kh * g.kw);
    Tensor::from_vec(w.shape(), dw).expect("weight shape")
}

/// Forward pass; returns the output, and the `im2col` matrix when backward
/// needs it ([`keeps_columns`] and `for_backward`).
///
/// Per image `n`: `Y_n[OC, OH·OW] = W_tap[OC, k·k·C] · cols_nᵀ + b`, written
/// straight into the NCHW output (the transposed `cols_n` is read in place)
/// by the task that has just unfolded `cols_n` (so it is read from cache),
/// the bias added while the image's block is still in cache. One pixel-major
/// GEMM over all images followed by a transpose to NCHW was 50–110 ms slower
/// per ResNet-18 step (the transpose, and a GEMM with only `OC` output
/// columns) and no faster on the paper ConvNet (docs/BENCHMARKS.md).
/// **Panics** unless the bias (if any) is `[OC]` for a weight of shape
/// `w_shape` (`[OC, C, KH, KW]`): the check every convolution op makes.
pub(crate) fn check_bias(b: Option<&Tensor>, w_shape: &[usize]) {
    if let Some(b) = b {
        assert!(
            b.ndim() == 1 && b.len() == w_shape[0],
            "conv2d: bias {:?} does not fit weight {:?} (need [OC])",
            b.shape(),
            w_shape
        );
    }
}

fn forward_with_cols(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    spec: Conv2dSpec,
    for_backward: bool,
) -> (Tensor, Option<Tensor>, ConvGeometry) {
    let g = geometry(x, w.shape(), spec);
    let (oc, pl, p) = (w.dim(0), g.patch_len(), g.out_pixels());
    check_bias(b, w.shape());
    let w_tap = weight_to_tap_major(w.data(), oc, g.c, g.kh * g.kw);
    let images_in_parallel = g.n >= PARALLEL_IMAGES;
    let image_output = |serial: bool, cn: &[f32], yn: &mut [f32]| {
        image_output(serial, (oc, pl, p), &w_tap, b, cn, yn)
    };
    let y_len = g.n * oc * p;
    let (y, cols) = if for_backward && keeps_columns(&g) {
        let mut y: Vec<f32> = Vec::with_capacity(y_len);
        let spare = &mut y.spare_capacity_mut()[..y_len];
        let cols = im2col_with(x, &g, images_in_parallel, spare, oc * p, |cn, yn| {
            image_output(images_in_parallel, cn, init_default(yn))
        });
        // SAFETY: `im2col_with` calls the closure once per image when the
        // blocks are non-empty, and the closure initialises the image's whole
        // block first (`init_default`); with empty blocks `y_len` is 0.
        unsafe { y.set_len(y_len) };
        (y, Some(cols))
    } else {
        let img = g.c * g.h * g.w;
        let scratch = || (vec![0.0f32; img], vec![0.0f32; p * pl]);
        let y = per_image(
            g.n,
            oc * p,
            x.data(),
            img,
            scratch,
            |serial, (hwc, cn), yn, xn| {
                im2col_image_into(xn, &g, hwc, cn);
                image_output(serial, cn, yn);
            },
        );
        (y, None)
    };
    let y = Tensor::from_vec(&[g.n, oc, g.oh, g.ow], y).expect("sizes from geometry");
    (y, cols, g)
}

/// Forward pass without a tape (no columns kept).
///
/// **Panics** on a shape mismatch.
pub fn forward(x: &Tensor, w: &Tensor, b: Option<&Tensor>, spec: Conv2dSpec) -> Tensor {
    forward_with_cols(x, w, b, spec, false).0
}

/// Image groups of the image-by-image weight gradient: a constant, so the
/// partial sums and their combination order never depend on the thread count.
pub(crate) const WEIGHT_GRAD_GROUPS: usize = 8;

/// From this many output pixels per image on (8×8), the weight gradient is
/// accumulated image by image even for long patches (see [`weight_grad_tap`]).
/// Below it (ResNet-18's last stage, 4×4) the per-image products are too
/// short (`K = OH·OW`) to run fast: 72–77 GFLOP/s per thread against ~100
/// for 8×8 images, ~45 ms per ResNet step more than the single GEMM.
const BIG_IMAGE_PIXELS: usize = 64;

/// `∂L/∂W_tap = Σ_n G_n · cols_n` (`[OC, k·k·C]`) from the NCHW gradient `gd`
/// (`G_n = [OC, P]`, contiguous per image) and the columns: `cols`
/// (`[N·P, k·k·C]`) when the forward pass kept them, else each image of `x`
/// is unfolded again right before its product.
///
/// Mostly image by image: each of [`WEIGHT_GRAD_GROUPS`] fixed groups of
/// images accumulates `G_n · cols_n` (reading `G_n` in place), and the group
/// sums are added in group order. That suits short patches
/// (`C·k·k < BIG_GEMM_PATCH`, e.g. a first layer with one input channel,
/// where one GEMM over all pixels would be too thin to run fast and the
/// regrouping copy it needs would cost as much as the GEMM) and large images
/// (`P ≥ BIG_IMAGE_PIXELS`, where each `G_n · cols_n` is already a
/// well-shaped product with `K = P`, and `cols_n`, unfolded right before it,
/// is read from cache: ResNet-18's first two stages ran ~55 ms faster per
/// step than with the single GEMM even when the columns were kept; the
/// ConvNet's second convolution runs at 95–98 instead of 76 GFLOP/s per
/// thread with the columns unfolded again). Otherwise — long patches on
/// tiny images, where [`keeps_columns`] holds — `G` is regrouped to
/// `[OC, N·P]` and one GEMM with `K = N·P` runs over all pixels.
fn weight_grad_tap(
    gd: &[f32],
    x: &Tensor,
    cols: Option<&Tensor>,
    g: &ConvGeometry,
    oc: usize,
) -> Vec<f32> {
    let (pl, p, n) = (g.patch_len(), g.out_pixels(), g.n);
    let mut dw = vec![0.0f32; oc * pl];
    if p == 0 || n == 0 || oc == 0 || pl == 0 {
        return dw;
    }
    if let Some(cols) = cols {
        // `G` regrouped to `[OC, N·P]`, one output channel per task.
        let g_oc = zeroed_chunks(
            gd.len(),
            n * p,
            true,
            || (),
            |_, o, dst| {
                for (i, row) in dst.chunks_mut(p).enumerate() {
                    row.copy_from_slice(&gd[(i * oc + o) * p..][..p]);
                }
            },
        );
        gemm(
            oc,
            n * p,
            pl,
            &g_oc,
            false,
            cols.data(),
            false,
            &mut dw,
            false,
        );
        return dw;
    }
    let (img, xd) = (g.c * g.h * g.w, x.data());
    let per_group = n.div_ceil(WEIGHT_GRAD_GROUPS);
    let partials: Vec<Vec<f32>> = gd
        .par_chunks(per_group * oc * p)
        .zip(xd.par_chunks(per_group * img))
        .map(|(g_grp, x_grp)| {
            let (mut hwc, mut cn) = (vec![0.0f32; img], vec![0.0f32; p * pl]);
            let mut acc = vec![0.0f32; oc * pl];
            for (gn, xn) in g_grp.chunks(oc * p).zip(x_grp.chunks(img.max(1))) {
                im2col_image_into(xn, g, &mut hwc, &mut cn);
                gemm_serial(oc, p, pl, gn, false, &cn, false, &mut acc, true);
            }
            acc
        })
        .collect();
    sum_in_order(&partials, oc * pl)
}

/// `∂L/∂W` (`w`'s shape) from the NCHW output gradient `gd`: `∂L/∂W_tap =
/// Σ_n G_n · cols_n` (see [`weight_grad_tap`]), permuted to `W`'s layout.
pub(crate) fn weight_grad(
    gd: &[f32],
    x: &Tensor,
    cols: Option<&Tensor>,
    g: &ConvGeometry,
    w: &Tensor,
) -> Tensor {
    weight_from_tap(&weight_grad_tap(gd, x, cols, g, w.dim(0)), g, w)
}

struct Conv2dBackward {
    /// The batch's columns, when the weight gradient needs them all at once.
    cols: Option<Tensor>,
    geom: ConvGeometry,
}

impl Backward for Conv2dBackward {
    fn backward(
        &self,
        inputs: &[&Tensor],
        _: &Tensor,
        grad: Tensor,
        needs: &[bool],
    ) -> Vec<Option<Tensor>> {
        let (w, g) = (inputs[1], &self.geom);
        let (oc, pl, p) = (w.dim(0), g.patch_len(), g.out_pixels());
        // ∂L/∂x, per image: dcols_nᵀ[C·k·k, P] = Wᵀ · G_n, folded back by col2im.
        let dx = needs[0].then(|| {
            let img = g.c * g.h * g.w;
            let dx = per_image(
                g.n,
                img,
                grad.data(),
                oc * p,
                || vec![0.0f32; p * pl],
                |serial, dcols, dxn, gn| {
                    // The GEMM overwrites all of `dcols` (no accumulation), so reuse is safe.
                    gemm_in(serial, pl, oc, p, w.data(), true, gn, false, dcols);
                    col2im_image_channel_major(dcols, g, dxn);
                },
            );
            Tensor::from_vec(&[g.n, g.c, g.h, g.w], dx).expect("sizes from geometry")
        });
        let dw = needs[1].then(|| weight_grad(grad.data(), inputs[0], self.cols.as_ref(), g, w));
        let mut out = vec![dx, dw];
        if inputs.len() == 3 {
            out.push(needs[2].then(|| grad.sum_channels()));
        }
        out
    }
}

impl<'a> Tape<'a> {
    /// Convolution of `x: [N, C, H, W]` with `w: [OC, C, k, k]` (+ bias `[OC]`).
    ///
    /// **Panics** on a shape mismatch.
    pub fn conv2d(&mut self, x: Var, w: Var, b: Option<Var>, spec: Conv2dSpec) -> Var {
        let (y, cols, geom) = forward_with_cols(
            self.value(x),
            self.value(w),
            b.map(|b| self.value(b)),
            spec,
            true,
        );
        let rule = Conv2dBackward { cols, geom };
        match b {
            Some(b) => self.push(y, &[x, w, b], rule),
            None => self.push(y, &[x, w], rule),
        }
    }
}
