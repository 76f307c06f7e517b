//! `im2col` / `col2im`: turning a 2-D convolution into one GEMM.
//!
//! For an input `x` of shape `[N, C, H, W]` and a `kh×kw` kernel, `im2col` builds
//! the *pixel-major* matrix `cols[(n, oy, ox), (ky, kx, c)]` of shape
//! `[N·OH·OW, kh·kw·C]`. Within a row the columns are *tap-major* (kernel
//! position first, channel last): for one kernel row `ky` the `kw·C` values
//! are one contiguous run of the image in channels-last order, so `im2col` is
//! a few long copies per output pixel instead of `C·kh` copies of `kw` floats.
//! The convolution is then `cols · W_tapᵀ` with the weight permuted to the
//! same order, `[OC, kh, kw, C]` ([`weight_to_tap_major`]). `col2im` is the
//! adjoint (it scatter-adds columns back into an image).
//!
//! The input gradient comes out *channel-major* instead (`[C·kh·kw, OH·OW]`
//! per image, from `Wᵀ · G_n`), and [`col2im_image_channel_major`] folds it.
//!
//! All run in parallel over images; each image is written by one task in a
//! fixed order, so results do not depend on the thread count.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::parallel::init_default;
use crate::transpose::{transpose_into as transpose, transpose_per_image};
use crate::{Tensor, TensorError};

/// Shapes of one 2-D convolution or pooling window sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Batch size.
    pub n: usize,
    /// Input channels.
    pub c: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Stride (both directions).
    pub stride: usize,
    /// Zero padding (both directions, both sides).
    pub pad: usize,
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
}

impl ConvGeometry {
    /// Geometry of sweeping a `kh×kw` window over an NCHW input of `shape`.
    ///
    /// **Errors** if `shape` is not 4-D, the stride is 0, or the window does not
    /// fit into the padded input.
    pub fn new(
        shape: &[usize],
        kh: usize,
        kw: usize,
        stride: usize,
        pad: usize,
    ) -> Result<Self, TensorError> {
        let bad = || TensorError::ShapeMismatch {
            op: "conv geometry (input NCHW vs kernel)",
            lhs: shape.to_vec(),
            rhs: vec![kh, kw],
        };
        if shape.len() != 4 || stride == 0 || kh == 0 || kw == 0 {
            return Err(bad());
        }
        let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3]);
        if h + 2 * pad < kh || w + 2 * pad < kw {
            return Err(bad());
        }
        let oh = (h + 2 * pad - kh) / stride + 1;
        let ow = (w + 2 * pad - kw) / stride + 1;
        Ok(ConvGeometry {
            n,
            c,
            h,
            w,
            kh,
            kw,
            stride,
            pad,
            oh,
            ow,
        })
    }

    /// Length of one `im2col` row: `C·kh·kw`.
    pub fn patch_len(&self) -> usize {
        self.c * self.kh * self.kw
    }

    /// Output pixels per image: `OH·OW`.
    pub fn out_pixels(&self) -> usize {
        self.oh * self.ow
    }

    /// Input row `iy` read by output row `oy` at kernel row `ky`, if inside the image.
    #[inline]
    fn in_y(&self, oy: usize, ky: usize) -> Option<usize> {
        (oy * self.stride + ky)
            .checked_sub(self.pad)
            .filter(|&y| y < self.h)
    }
}

/// The kernel columns `kx` of one patch row that fall inside the image, and the
/// input column of `kx = 0` (possibly negative, in the padding).
#[inline]
fn valid_kx(g: &ConvGeometry, ox: usize) -> (usize, usize, isize) {
    let x0 = (ox * g.stride) as isize - g.pad as isize;
    let lo = (-x0).clamp(0, g.kw as isize) as usize;
    let hi = (g.w as isize - x0).clamp(0, g.kw as isize) as usize;
    (lo, hi.max(lo), x0)
}

/// Unfolds `x` (`[N, C, H, W]`) into `[N·OH·OW, kh·kw·C]` (see the module docs).
///
/// **Panics** if `x`'s shape is not the geometry's input shape.
pub fn im2col(x: &Tensor, g: &ConvGeometry) -> Tensor {
    im2col_with::<f32>(x, g, true, &mut [], 0, |_, _| {})
}

/// [`im2col`] that also hands each image's block of columns, right after
/// writing it and on the same task (so while it is still in cache), to
/// `then(block, out_i)`, where `out_i` is the image's block of `out_len`
/// values of `out` — e.g. the forward GEMM of a convolution writing the
/// image's output. With `parallel`, images run on rayon tasks; otherwise one
/// after another on the calling thread. `then` is called exactly once per
/// image when `out_len > 0`, never when `out_len == 0`.
///
/// **Panics** if `x`'s shape is not the geometry's input shape or `out` does
/// not hold `N·out_len` values.
pub fn im2col_with<T: Send>(
    x: &Tensor,
    g: &ConvGeometry,
    parallel: bool,
    out: &mut [T],
    out_len: usize,
    then: impl Fn(&[f32], &mut [T]) + Sync,
) -> Tensor {
    assert_eq!(
        x.shape(),
        [g.n, g.c, g.h, g.w],
        "im2col: input shape vs geometry"
    );
    assert_eq!(out.len(), g.n * out_len, "im2col_with: output length");
    let (pl, img) = (g.patch_len(), g.c * g.h * g.w);
    let per_image = g.out_pixels() * pl;
    let len = g.n * per_image;
    // Every entry is written exactly once below (data or padding zero), so the
    // buffer is not zero-filled first: that saved a full extra pass over what
    // is the largest buffer of a ResNet step (300 MB in its first stage).
    let mut cols: Vec<f32> = Vec::with_capacity(len);
    let spare = &mut cols.spare_capacity_mut()[..len];
    if per_image == 0 || img == 0 {
        let zeros = init_default(spare);
        if out_len > 0 {
            for (i, o) in out.chunks_mut(out_len).enumerate() {
                then(&zeros[i * per_image..][..per_image], o);
            }
        }
    } else {
        let xd = x.data();
        let init = || vec![0.0f32; img];
        match (parallel, out_len > 0) {
            (true, true) => spare
                .par_chunks_mut(per_image)
                .zip(xd.par_chunks(img))
                .zip(out.par_chunks_mut(out_len))
                .for_each_init(init, |hwc, ((block, xi), o)| {
                    then(im2col_image(xi, g, hwc, block), o)
                }),
            (true, false) => spare
                .par_chunks_mut(per_image)
                .zip(xd.par_chunks(img))
                .for_each_init(init, |hwc, (block, xi)| {
                    im2col_image(xi, g, hwc, block);
                }),
            (false, _) => {
                let mut hwc = init();
                let mut outs = out.chunks_mut(out_len.max(1));
                for (block, xi) in spare.chunks_mut(per_image).zip(xd.chunks(img)) {
                    let block = im2col_image(xi, g, &mut hwc, block);
                    if let Some(o) = outs.next().filter(|_| out_len > 0) {
                        then(block, o);
                    }
                }
            }
        }
    }
    // SAFETY: `im2col_image` initialises every element of each image's block
    // (see its docs) and the blocks cover all `len` elements; or
    // `init_default` initialised them all.
    unsafe { cols.set_len(len) };
    Tensor::from_vec(&[g.n * g.out_pixels(), pl], cols).expect("length from geometry")
}

/// Folds `[N·OH·OW, kh·kw·C]` columns back into an `[N, C, H, W]` image,
/// summing overlapping contributions: the adjoint of [`im2col`].
///
/// **Panics** if `cols` does not have the geometry's column shape.
pub fn col2im(cols: &Tensor, g: &ConvGeometry) -> Tensor {
    let pl = g.patch_len();
    assert_eq!(
        cols.shape(),
        [g.n * g.out_pixels(), pl],
        "col2im: columns shape vs geometry"
    );
    let img = g.c * g.h * g.w;
    let mut x = Tensor::zeros(&[g.n, g.c, g.h, g.w]);
    if img == 0 || pl == 0 {
        return x;
    }
    let per_image = g.out_pixels() * pl;
    let cd = cols.data();
    x.data_mut()
        .par_chunks_mut(img)
        .zip(cd.par_chunks(per_image))
        .for_each_init(
            || vec![0.0f32; img],
            |hwc, (xi, ci)| col2im_image(ci, g, hwc, xi),
        );
    x
}

/// [`im2col`] of one image alone: unfolds `xi` (`[C, H, W]`) into `out`
/// (`[OH·OW, kh·kw·C]`, every value overwritten), using `hwc` (`C·H·W`
/// values) as scratch. For callers that unfold an image into a small buffer
/// right before using it, instead of keeping the columns of a whole batch.
///
/// **Panics** if a slice is shorter than the geometry requires.
pub fn im2col_image_into(xi: &[f32], g: &ConvGeometry, hwc: &mut [f32], out: &mut [f32]) {
    let (img, len) = (g.c * g.h * g.w, g.out_pixels() * g.patch_len());
    let (xi, hwc, out) = (&xi[..img], &mut hwc[..img], &mut out[..len]);
    if len == 0 {
        return;
    }
    // SAFETY: `MaybeUninit<f32>` has the layout of `f32`, and `im2col_image`
    // only ever writes initialised values into `out`.
    let out = unsafe { &mut *(out as *mut [f32] as *mut [MaybeUninit<f32>]) };
    im2col_image(xi, g, hwc, out);
}

/// [`im2col`] of one image: `xi` is `[C, H, W]`, `hwc` scratch of the same
/// length (receives the image channels-last), `out` is `[OH·OW, kh·kw·C]`.
/// Writes every element of `out`: image values, and zeros where the window
/// covers padding; returns `out` as initialised values.
fn im2col_image<'o>(
    xi: &[f32],
    g: &ConvGeometry,
    hwc: &mut [f32],
    out: &'o mut [MaybeUninit<f32>],
) -> &'o [f32] {
    transpose(xi, g.c, g.h * g.w, hwc);
    let (c, run) = (g.c, g.kw * g.c);
    let zero = |d: &mut [MaybeUninit<f32>]| {
        d.iter_mut().for_each(|e| {
            e.write(0.0);
        })
    };
    for (pix, row) in out.chunks_exact_mut(g.patch_len()).enumerate() {
        let (oy, ox) = (pix / g.ow, pix % g.ow);
        let (lo, hi, x0) = valid_kx(g, ox);
        for (ky, seg) in row.chunks_exact_mut(run).enumerate() {
            match g.in_y(oy, ky) {
                Some(iy) if lo < hi => {
                    let start = (iy * g.w) as isize + x0 + lo as isize;
                    let src = &hwc[start as usize * c..][..(hi - lo) * c];
                    zero(&mut seg[..lo * c]);
                    for (d, &v) in seg[lo * c..hi * c].iter_mut().zip(src) {
                        d.write(v);
                    }
                    zero(&mut seg[hi * c..]);
                }
                _ => zero(seg),
            }
        }
    }
    // SAFETY: the loops above wrote every element of `out` (each row is
    // covered by its `kh` segments, each segment by zeros or data), and
    // `MaybeUninit<f32>` has the layout of `f32`.
    unsafe { &*(out as *const [MaybeUninit<f32>] as *const [f32]) }
}

/// [`col2im`] of one image: adds the columns `ci` (`[OH·OW, kh·kw·C]`, in
/// [`im2col`]'s tap-major order) into `xi` (`[C, H, W]`). Like `im2col`, it
/// works channels-last (contiguous runs of `kw·C` per kernel row, summed in
/// the scratch `hwc` of `C·H·W` values) and transposes once at the end.
fn col2im_image(ci: &[f32], g: &ConvGeometry, hwc: &mut [f32], xi: &mut [f32]) {
    let (c, run, plane) = (g.c, g.kw * g.c, g.h * g.w);
    let hwc = &mut hwc[..c * plane];
    hwc.fill(0.0);
    for (pix, row) in ci
        .chunks_exact(g.patch_len())
        .take(g.out_pixels())
        .enumerate()
    {
        let (oy, ox) = (pix / g.ow, pix % g.ow);
        let (lo, hi, x0) = valid_kx(g, ox);
        for (ky, seg) in row.chunks_exact(run).enumerate() {
            let Some(iy) = g.in_y(oy, ky) else { continue };
            if lo >= hi {
                continue;
            }
            let start = ((iy * g.w) as isize + x0 + lo as isize) as usize * c;
            let dst = &mut hwc[start..][..(hi - lo) * c];
            dst.iter_mut()
                .zip(&seg[lo * c..hi * c])
                .for_each(|(d, &s)| *d += s);
        }
    }
    for (ch, xp) in xi.chunks_exact_mut(plane).take(c).enumerate() {
        xp.iter_mut()
            .zip(hwc[ch..].iter().step_by(c))
            .for_each(|(d, &s)| *d += s);
    }
}

/// The fold of [`col2im`] for one image, from *channel-major* columns: adds `ct` (`[C·kh·kw, OH·OW]`,
/// the transpose of one image's `im2col` block) into `xi` (`[C, H, W]`).
///
/// This is the layout the input gradient comes in when it is computed as
/// `Wᵀ · G_n` (`G_n` is `[OC, OH·OW]`, straight from the NCHW gradient). Each
/// kernel tap `(c, ky, kx)` then adds whole output rows into input rows, so the
/// inner loop is a contiguous, vectorised add (with stride 1) instead of the
/// overlapping three-element adds of the pixel-major fold.
///
/// **Panics** if a slice is shorter than the geometry requires.
pub fn col2im_image_channel_major(ct: &[f32], g: &ConvGeometry, xi: &mut [f32]) {
    let p = g.out_pixels();
    if p == 0 {
        return;
    }
    for ch in 0..g.c {
        let plane = &mut xi[ch * g.h * g.w..][..g.h * g.w];
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let tap = &ct[((ch * g.kh + ky) * g.kw + kx) * p..][..p];
                // Output columns whose input column `ox·s + kx − pad` is inside.
                let lo = g.pad.saturating_sub(kx).div_ceil(g.stride);
                let hi = if g.w + g.pad > kx {
                    ((g.w + g.pad - kx - 1) / g.stride + 1).min(g.ow)
                } else {
                    0
                };
                if lo >= hi {
                    continue;
                }
                for oy in 0..g.oh {
                    let Some(iy) = g.in_y(oy, ky) else { continue };
                    let src = &tap[oy * g.ow + lo..oy * g.ow + hi];
                    let ix0 = lo * g.stride + kx - g.pad;
                    let row = &mut plane[iy * g.w..][..g.w];
                    if g.stride == 1 {
                        let dst = &mut row[ix0..ix0 + src.len()];
                        dst.iter_mut().zip(src).for_each(|(d, &s)| *d += s);
                    } else {
                        let dst = row[ix0..].iter_mut().step_by(g.stride);
                        dst.zip(src).for_each(|(d, &s)| *d += s);
                    }
                }
            }
        }
    }
}

/// The weight `[OC, C, kh, kw]` (PyTorch's layout) permuted to `[OC, kh, kw, C]`,
/// the column order of [`im2col`].
///
/// **Panics** if `w.len() != oc·c·taps` (`taps = kh·kw`).
pub fn weight_to_tap_major(w: &[f32], oc: usize, c: usize, taps: usize) -> Vec<f32> {
    transpose_per_image(w, oc, c, taps)
}

/// The inverse of [`weight_to_tap_major`]: `[OC, kh, kw, C]` back to `[OC, C, kh, kw]`.
///
/// **Panics** if `w.len() != oc·taps·c`.
pub fn weight_from_tap_major(w: &[f32], oc: usize, c: usize, taps: usize) -> Vec<f32> {
    transpose_per_image(w, oc, taps, c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn im2col_hand_example() {
        // 1 image, 1 channel, 3x3, kernel 2x2, stride 1, no padding -> 4 patches.
        let x = Tensor::from_vec(&[1, 1, 3, 3], (1..=9).map(|v| v as f32).collect()).unwrap();
        let g = ConvGeometry::new(x.shape(), 2, 2, 1, 0).unwrap();
        let cols = im2col(&x, &g);
        assert_eq!(cols.shape(), [4, 4]);
        assert_eq!(
            cols.data(),
            &[1., 2., 4., 5., 2., 3., 5., 6., 4., 5., 7., 8., 5., 6., 8., 9.]
        );
    }

    #[test]
    fn padding_and_stride() {
        // 1x1x2x2 input, 3x3 kernel, pad 1, stride 2 -> 1x1 output centred at (0,0).
        let x = Tensor::from_vec(&[1, 1, 2, 2], vec![1., 2., 3., 4.]).unwrap();
        let g = ConvGeometry::new(x.shape(), 3, 3, 2, 1).unwrap();
        assert_eq!((g.oh, g.ow), (1, 1));
        let cols = im2col(&x, &g);
        assert_eq!(cols.data(), &[0., 0., 0., 0., 1., 2., 0., 3., 4.]);
    }

    #[test]
    fn col2im_is_adjoint_of_im2col() {
        // <im2col(x), y> == <x, col2im(y)> for random x, y.
        let x = Tensor::from_fn(&[2, 3, 5, 4], |i| ((i * 37 % 11) as f32) - 5.0);
        let g = ConvGeometry::new(x.shape(), 3, 3, 2, 1).unwrap();
        let cols = im2col(&x, &g);
        let y = Tensor::from_fn(cols.shape(), |i| ((i * 13 % 7) as f32) - 3.0);
        let lhs: f64 = cols
            .data()
            .iter()
            .zip(y.data())
            .map(|(a, b)| (a * b) as f64)
            .sum();
        let back = col2im(&y, &g);
        let rhs: f64 = x
            .data()
            .iter()
            .zip(back.data())
            .map(|(a, b)| (a * b) as f64)
            .sum();
        assert!((lhs - rhs).abs() < 1e-6, "{lhs} vs {rhs}");
    }

    /// `x[n, c, y, x]` read through the padding (0 outside the image).
    fn padded(x: &Tensor, n: usize, c: usize, y: isize, xx: isize) -> f32 {
        let s = x.shape();
        if y < 0 || xx < 0 || y >= s[2] as isize || xx >= s[3] as isize {
            return 0.0;
        }
        x.data()[((n * s[1] + c) * s[2] + y as usize) * s[3] + xx as usize]
    }

    /// `im2col_with` hands image `i` its own block of columns and its own
    /// block of the output, on both paths, and builds the same columns; and
    /// `im2col_image_into` unfolds one image to the same block.
    #[test]
    fn im2col_with_hands_each_image_its_blocks() {
        let x = Tensor::from_fn(&[5, 2, 4, 3], |i| i as f32 * 0.5 - 7.0);
        let g = ConvGeometry::new(x.shape(), 3, 3, 1, 1).unwrap();
        let plain = im2col(&x, &g);
        let per_image = g.out_pixels() * g.patch_len();
        for parallel in [false, true] {
            let mut out = vec![0.0f32; 5 * 2];
            let cols = im2col_with(&x, &g, parallel, &mut out, 2, |block, o| {
                // Which image this is, found from the block itself.
                let i = (0..5)
                    .find(|&i| plain.data()[i * per_image..][..per_image] == *block)
                    .expect("a block of the plain columns");
                o[0] += i as f32;
                o[1] += 1.0;
            });
            assert_eq!(cols, plain);
            assert_eq!(out, [0., 1., 1., 1., 2., 1., 3., 1., 4., 1.]);
        }
        // One image alone, into a buffer holding other values: the same block.
        let img = 2 * 4 * 3;
        let (mut hwc, mut one) = (vec![0.0; img], vec![9.0; per_image]);
        for i in 0..5 {
            im2col_image_into(&x.data()[i * img..][..img], &g, &mut hwc, &mut one);
            assert_eq!(one, plain.data()[i * per_image..][..per_image]);
        }
    }

    #[test]
    fn im2col_matches_definition_with_channels() {
        // cols[(n, oy, ox), (ky, kx, c)] = x[n, c, oy·s + ky − p, ox·s + kx − p].
        let x = Tensor::from_fn(&[2, 3, 5, 6], |i| i as f32 + 1.0);
        for &(k, stride, pad) in &[(3, 1, 1), (3, 2, 1), (2, 1, 0), (5, 1, 2), (1, 2, 0)] {
            let g = ConvGeometry::new(x.shape(), k, k, stride, pad).unwrap();
            let cols = im2col(&x, &g);
            let pl = g.patch_len();
            for n in 0..2 {
                for oy in 0..g.oh {
                    for ox in 0..g.ow {
                        let row = (n * g.oh + oy) * g.ow + ox;
                        for ky in 0..k {
                            for kx in 0..k {
                                for c in 0..3 {
                                    let y = (oy * stride + ky) as isize - pad as isize;
                                    let xx = (ox * stride + kx) as isize - pad as isize;
                                    assert_eq!(
                                        cols.data()[row * pl + (ky * k + kx) * 3 + c],
                                        padded(&x, n, c, y, xx),
                                        "k{k} s{stride} p{pad} n{n} ({oy},{ox}) tap ({ky},{kx}) c{c}"
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn weight_permutation_round_trips() {
        let w: Vec<f32> = (0..4 * 3 * 9).map(|v| v as f32).collect();
        let tap = weight_to_tap_major(&w, 4, 3, 9);
        // [o=1, c=2, tap=5] moves to [o=1, tap=5, c=2].
        assert_eq!(tap[27 + 5 * 3 + 2], w[27 + 2 * 9 + 5]);
        assert_eq!(weight_from_tap_major(&tap, 4, 3, 9), w);
    }

    #[test]
    fn channel_major_fold_matches_pixel_major_fold() {
        // Every stride/padding/kernel mix, including taps that fall entirely
        // into the padding: the channel-major fold of the transposed columns
        // must give exactly the pixel-major fold.
        for &(h, w, k, stride, pad) in &[
            (5, 4, 3, 2, 1),
            (6, 6, 3, 1, 1),
            (7, 5, 5, 1, 0),
            (4, 4, 1, 2, 0),
            (3, 3, 3, 1, 2),
            (8, 8, 3, 3, 1),
        ] {
            let g = ConvGeometry::new(&[1, 2, h, w], k, k, stride, pad).unwrap();
            let (p, pl) = (g.out_pixels(), g.patch_len());
            let cols: Vec<f32> = (0..p * pl).map(|i| ((i * 29 % 13) as f32) - 6.0).collect();
            // Channel-major rows are (c, ky, kx); pixel-major columns (ky, kx, c).
            let mut transposed = vec![0.0; p * pl];
            for i in 0..p {
                for ch in 0..2 {
                    for tap in 0..k * k {
                        transposed[(ch * k * k + tap) * p + i] = cols[i * pl + tap * 2 + ch];
                    }
                }
            }
            let mut expected = vec![0.0; 2 * h * w];
            col2im_image(&cols, &g, &mut vec![0.0; 2 * h * w], &mut expected);
            let mut got = vec![0.0; 2 * h * w];
            col2im_image_channel_major(&transposed, &g, &mut got);
            assert_eq!(got, expected, "{h}x{w} k{k} s{stride} p{pad}");
        }
    }

    #[test]
    fn geometry_rejects_oversized_kernel() {
        assert!(ConvGeometry::new(&[1, 1, 2, 2], 5, 5, 1, 0).is_err());
        assert!(ConvGeometry::new(&[1, 2, 2], 1, 1, 1, 0).is_err());
    }
}
