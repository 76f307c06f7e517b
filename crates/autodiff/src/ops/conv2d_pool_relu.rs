//! Convolution, max pooling and ReLU in one pass: `y = relu(maxpool(conv2d(x, W) + b))`.
//!
//! The paper's ConvNet is `conv → maxpool → ReLU` twice. Run as three ops, the
//! convolution writes its whole output to memory (19 MB per batch of 128 for
//! the first layer), pooling reads it back, and in the backward pass the pool
//! writes a gradient of that size (three quarters zeros) for the convolution
//! to read again. Fused, each image's convolution output stays in a per-task
//! buffer in cache: it is pooled and rectified right after its GEMM, and in
//! backward the image's output gradient is rebuilt in the same buffer
//! (routed to the window maxima, masked by the ReLU) right before the
//! image's weight- and input-gradient products.
//!
//! On the sparse path ([`Tape::sparse_conv2d_pool_relu`]) the per-image
//! product and the input gradient are `SparseConv`'s (the non-zero taps
//! only), as `sparse_conv2d` runs them; the weight gradient stays dense.
//!
//! The arithmetic is the unfused chain's, operation for operation — the same
//! per-image GEMMs, the same pooling and ReLU, the same image groups and
//! summation orders for `∂L/∂W` and `∂L/∂b` — so the fused op gives the bits
//! of `relu(maxpool2d(conv2d(x)))` (tested), and only the memory traffic changes.
//!
//! With `Y_n = conv(x_n)` (`[OC, P]`), `Z_n = pool(Y_n)` (`[OC, Q]`), `y_n = relu(Z_n)`:
//! - `∂L/∂Z_n = G_n ⊙ [y_n > 0]`, routed to the argmax of each window: `∂L/∂Y_n`;
//! - then as a convolution: `∂L/∂W_tap = Σ_n ∂L/∂Y_n · cols_n`,
//!   `∂L/∂b = Σ_{n, pixels} ∂L/∂Y_n`, `∂L/∂x_n = col2im(Wᵀ · ∂L/∂Y_n)`.

use std::mem::MaybeUninit;
use std::ops::Deref;

use bregman_tensor::conv::{col2im_image_channel_major, im2col_image_into, weight_to_tap_major};
use bregman_tensor::parallel::init_default;
use bregman_tensor::pool::{maxpool_plane, maxpool_plane_backward};
use bregman_tensor::reduce::lane_sum;
use bregman_tensor::sparse::{ConvScratch, SparseConv};
use bregman_tensor::{gemm_serial, ConvGeometry, Tensor};
use rayon::prelude::*;

use super::conv2d::{
    check_bias, geometry, image_output, keeps_columns, sum_in_order, weight_from_tap, Conv2dSpec,
    PARALLEL_IMAGES, WEIGHT_GRAD_GROUPS,
};
use super::sparse_conv2d::check_form;
use crate::{Backward, Tape, Var};

/// A max-pooling window: `kernel×kernel`, moved by `stride`, no padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSpec {
    /// Window size.
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
}

/// The geometry of pooling the convolution's output, if the window fits.
pub(crate) fn pool_geometry(g: &ConvGeometry, oc: usize, pool: PoolSpec) -> Option<ConvGeometry> {
    ConvGeometry::new(
        &[g.n, oc, g.oh, g.ow],
        pool.kernel,
        pool.kernel,
        pool.stride,
        0,
    )
    .ok()
}

/// Whether the fused op takes this convolution: images run in parallel (a
/// batch of at least [`PARALLEL_IMAGES`]), the weight gradient goes image by
/// image (not [`keeps_columns`]), no size is zero, and the window fits the
/// output. Otherwise the caller runs the three ops, which give the same result.
pub fn fusable(x_shape: &[usize], w_shape: &[usize], spec: Conv2dSpec, pool: PoolSpec) -> bool {
    if x_shape.len() != 4 || w_shape.len() != 4 || w_shape[1] != x_shape[1] {
        return false;
    }
    let Ok(g) = ConvGeometry::new(x_shape, w_shape[2], w_shape[3], spec.stride, spec.padding)
    else {
        return false;
    };
    let oc = w_shape[0];
    let sizes = [g.c * g.h * g.w, g.out_pixels(), g.patch_len(), oc];
    g.n >= PARALLEL_IMAGES
        && !keeps_columns(&g)
        && sizes.iter().all(|&s| s > 0)
        && pool_geometry(&g, oc, pool).is_some_and(|pg| pg.out_pixels() > 0)
}

/// The forward pass: the output `[N, OC, QH, QW]`, the index of each window's
/// maximum within its plane, and both geometries.
fn forward_with_index(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    spec: Conv2dSpec,
    pool: PoolSpec,
    sparse: Option<&SparseConv>,
) -> (Tensor, Vec<u32>, ConvGeometry, ConvGeometry) {
    assert!(
        fusable(x.shape(), w.shape(), spec, pool),
        "conv2d_pool_relu: input {:?}, weight {:?}, {pool:?} cannot be fused (check `fusable`)",
        x.shape(),
        w.shape()
    );
    let g = geometry(x, w.shape(), spec);
    let oc = w.dim(0);
    let pg = pool_geometry(&g, oc, pool).expect("checked by `fusable`");
    check_bias(b, w.shape());
    let (pl, p, q, img) = (
        g.patch_len(),
        g.out_pixels(),
        pg.out_pixels(),
        g.c * g.h * g.w,
    );
    let len = g.n * oc * q;
    let (mut y, mut idx): (Vec<f32>, Vec<u32>) = (Vec::with_capacity(len), Vec::with_capacity(len));
    // The dense product reads `W` tap-major through im2col; the sparse one
    // reads its non-zero taps' windows of the padded image (its plan).
    let dense = sparse.is_none();
    let w_tap = if dense {
        weight_to_tap_major(w.data(), oc, g.c, g.kh * g.kw)
    } else {
        Vec::new()
    };
    let plan = sparse.map(|s| s.plan(&g));
    // Per task: the image in channels-last order and its columns (dense), the
    // sparse product's scratch, the image's convolution output.
    let scratch = || {
        let (img_len, cols_len) = if dense { (img, p * pl) } else { (0, 0) };
        (
            vec![0.0f32; img_len],
            vec![0.0f32; cols_len],
            ConvScratch::default(),
            vec![0.0f32; oc * p],
        )
    };
    y.spare_capacity_mut()[..len]
        .par_chunks_mut(oc * q)
        .zip(idx.spare_capacity_mut()[..len].par_chunks_mut(oc * q))
        .zip(x.data().par_chunks(img))
        .for_each_init(scratch, |(hwc, cn, scratch, conv), ((yn, ixn), xn)| {
            let (yn, ixn) = (init_default(yn), init_default(ixn));
            // The convolution's own per-image step (`conv2d::forward_with_cols`,
            // or `SparseConv::forward_image` as `sparse_conv2d::forward` runs it).
            match (sparse, &plan) {
                (Some(s), Some(plan)) => {
                    // SAFETY: `forward_image` writes every value (all of them
                    // valid `f32`s), so `conv` stays initialised.
                    let out = unsafe {
                        &mut *(conv.as_mut_slice() as *mut [f32] as *mut [MaybeUninit<f32>])
                    };
                    s.forward_image(xn, plan, b.map(Tensor::data), out, scratch);
                }
                _ => {
                    im2col_image_into(xn, &g, hwc, cn);
                    image_output(true, (oc, pl, p), &w_tap, b, cn, conv);
                }
            }
            // Pooling and ReLU of each plane while it is in cache.
            let planes = yn.chunks_exact_mut(q).zip(ixn.chunks_exact_mut(q));
            for ((yo, io), co) in planes.zip(conv.chunks_exact(p)) {
                maxpool_plane(yo, io, co, &pg);
                yo.iter_mut().for_each(|v| *v = v.max(0.0));
            }
        });
    // SAFETY: the images' blocks cover all `len` elements of both buffers, and
    // each task initialised its blocks (`init_default`) before writing them.
    unsafe {
        y.set_len(len);
        idx.set_len(len);
    }
    let y = Tensor::from_vec(&[g.n, oc, pg.oh, pg.ow], y).expect("sizes from geometry");
    (y, idx, g, pg)
}

/// Forward pass without a tape.
///
/// **Panics** unless [`fusable`], or on a bias that does not fit.
pub fn forward(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    spec: Conv2dSpec,
    pool: PoolSpec,
) -> Tensor {
    forward_with_index(x, w, b, spec, pool, None).0
}

struct Conv2dPoolReluBackward<S> {
    /// Per output: the index of its window's maximum within the plane.
    idx: Vec<u32>,
    geom: ConvGeometry,
    pool: ConvGeometry,
    /// The sparse form of `W` when the convolution ran on it: `∂L/∂x` then
    /// runs on its non-zero taps too (`∂L/∂W` stays dense, as in
    /// `sparse_conv2d` with a dense weight gradient).
    sparse: Option<S>,
}

/// One image's convolution output gradient `∂L/∂Y_n` (`[OC, P]`, into `dy`)
/// from the fused output's gradient `gn` and value `yn` (`[OC, Q]`): the ReLU's
/// mask (`dy/dz = 1` where `y > 0`, as `relu`'s backward computes it), then
/// each window's gradient to its maximum (as `maxpool2d`'s backward).
fn output_grad(dy: &mut [f32], gn: &[f32], yn: &[f32], ixn: &[u32], p: usize, q: usize) {
    dy.fill(0.0);
    let mut masked = [0.0f32; 64];
    let planes = gn
        .chunks_exact(q)
        .zip(yn.chunks_exact(q))
        .zip(ixn.chunks_exact(q));
    for (((go, yo), io), d) in planes.zip(dy.chunks_exact_mut(p)) {
        for ((go, yo), io) in go.chunks(64).zip(yo.chunks(64)).zip(io.chunks(64)) {
            let m = &mut masked[..go.len()];
            for ((m, &g), &y) in m.iter_mut().zip(go).zip(yo) {
                *m = g * if y > 0.0 { 1.0 } else { 0.0 };
            }
            maxpool_plane_backward(d, m, io);
        }
    }
}

impl<S: Deref<Target = SparseConv>> Backward for Conv2dPoolReluBackward<S> {
    fn backward(
        &self,
        inputs: &[&Tensor],
        output: &Tensor,
        grad: Tensor,
        needs: &[bool],
    ) -> Vec<Option<Tensor>> {
        let (x, w, g, pg) = (inputs[0], inputs[1], &self.geom, &self.pool);
        let (n, oc) = (g.n, w.dim(0));
        let (pl, p, q, img) = (
            g.patch_len(),
            g.out_pixels(),
            pg.out_pixels(),
            g.c * g.h * g.w,
        );
        let (need_x, need_w) = (needs[0], needs[1]);
        // The image groups of `conv2d::weight_grad_tap`, so that `∂L/∂W` is summed
        // in its order; `∂L/∂x` is per image and does not depend on the grouping.
        let per_group = n.div_ceil(WEIGHT_GRAD_GROUPS);
        let groups = n.div_ceil(per_group);
        let mut dx: Vec<f32> = Vec::with_capacity(if need_x { n * img } else { 0 });
        let dx_parts: Vec<&mut [MaybeUninit<f32>]> = if need_x {
            dx.spare_capacity_mut()[..n * img]
                .chunks_mut(per_group * img)
                .collect()
        } else {
            (0..groups).map(|_| Default::default()).collect()
        };
        // ∂L/∂b per image and channel, summed over the images in order below
        // (as `Tensor::sum_channels`).
        let mut db = vec![0.0f64; n * oc];
        let (gd, yd, xd) = (grad.data(), output.data(), x.data());
        // A plain reference (shared by the groups; the guard `S` may not be `Sync`).
        let sparse: Option<&SparseConv> = self.sparse.as_deref();
        let plan = sparse.filter(|_| need_x).map(|s| s.plan(g));
        let all_idx = &self.idx;
        let partials: Vec<Vec<f32>> = dx_parts
            .into_par_iter()
            .zip(db.par_chunks_mut(per_group * oc))
            .enumerate()
            .map(|(group, (dx_g, db_g))| {
                let first = group * per_group;
                let images = db_g.len() / oc;
                let mut dy = vec![0.0f32; oc * p];
                let (mut hwc, mut cn) = (vec![0.0f32; img], vec![0.0f32; p * pl]);
                let mut acc = vec![0.0f32; if need_w { oc * pl } else { 0 }];
                let mut scratch = ConvScratch::default();
                for i in 0..images {
                    let out = (first + i) * oc * q..(first + i + 1) * oc * q;
                    let ixn = &all_idx[out.clone()];
                    output_grad(&mut dy, &gd[out.clone()], &yd[out], ixn, p, q);
                    for (s, plane) in db_g[i * oc..][..oc].iter_mut().zip(dy.chunks_exact(p)) {
                        *s = lane_sum(plane, |v| v as f64);
                    }
                    let xn = &xd[(first + i) * img..][..img];
                    if need_w {
                        im2col_image_into(xn, g, &mut hwc, &mut cn);
                        gemm_serial(oc, p, pl, &dy, false, &cn, false, &mut acc, true);
                    }
                    if need_x {
                        let dxn = &mut dx_g[i * img..][..img];
                        if let (Some(s), Some(plan)) = (sparse, &plan) {
                            // As `sparse_conv2d`'s backward: the non-zero taps only.
                            s.input_grad_image(&dy, plan, dxn, &mut scratch);
                        } else {
                            // `cn` is free again: it takes the channel-major columns `Wᵀ · ∂L/∂Y_n`.
                            gemm_serial(pl, oc, p, w.data(), true, &dy, false, &mut cn, false);
                            col2im_image_channel_major(&cn, g, init_default(dxn));
                        }
                    }
                }
                acc
            })
            .collect();
        let dx = need_x.then(|| {
            // SAFETY: the groups cover all `n` images, and each image's block
            // was initialised (`init_default`) and then written by its group.
            unsafe { dx.set_len(n * img) };
            Tensor::from_vec(&[n, g.c, g.h, g.w], dx).expect("sizes from geometry")
        });
        let dw = need_w.then(|| weight_from_tap(&sum_in_order(&partials, oc * pl), g, w));
        let mut out = vec![dx, dw];
        if inputs.len() == 3 {
            out.push(needs[2].then(|| {
                let sums: Vec<f32> = (0..oc)
                    .map(|o| (0..n).map(|i| db[i * oc + o]).fold(0.0f64, |s, v| s + v) as f32)
                    .collect();
                Tensor::from_vec(&[oc], sums).expect("length oc")
            }));
        }
        out
    }
}

impl<'a> Tape<'a> {
    /// `relu(maxpool2d(conv2d(x, w, b)))` in one pass (see the module docs):
    /// the same result as the three ops, with less memory traffic.
    ///
    /// **Panics** unless [`fusable`] (`x`'s shape, `w`'s shape, `spec`, `pool`),
    /// or on a bias that does not fit.
    pub fn conv2d_pool_relu(
        &mut self,
        x: Var,
        w: Var,
        b: Option<Var>,
        spec: Conv2dSpec,
        pool: PoolSpec,
    ) -> Var {
        self.push_fused::<&SparseConv>(x, w, b, spec, pool, None)
    }

    /// [`Tape::conv2d_pool_relu`] with the convolution and its input
    /// gradient on the non-zero taps of `sparse`, the sparse form of `w`'s
    /// value (as [`Tape::sparse_conv2d`]); `w` receives its dense gradient.
    /// The same bits as `sparse_conv2d → maxpool2d → relu`.
    ///
    /// **Panics** unless [`fusable`], on a stride other than 1, if `sparse`
    /// does not have `w`'s shape, or on a bias that does not fit.
    pub fn sparse_conv2d_pool_relu<S>(
        &mut self,
        x: Var,
        w: Var,
        b: Option<Var>,
        spec: Conv2dSpec,
        pool: PoolSpec,
        sparse: S,
    ) -> Var
    where
        S: Deref<Target = SparseConv> + 'a,
    {
        check_form(self.value(w), &sparse);
        self.push_fused(x, w, b, spec, pool, Some(sparse))
    }

    /// The fused op on the dense path (`sparse` is `None`) or the sparse one.
    fn push_fused<S>(
        &mut self,
        x: Var,
        w: Var,
        b: Option<Var>,
        spec: Conv2dSpec,
        pool: PoolSpec,
        sparse: Option<S>,
    ) -> Var
    where
        S: Deref<Target = SparseConv> + 'a,
    {
        let (y, idx, geom, pool) = forward_with_index(
            self.value(x),
            self.value(w),
            b.map(|b| self.value(b)),
            spec,
            pool,
            sparse.as_deref(),
        );
        let rule = Conv2dPoolReluBackward {
            idx,
            geom,
            pool,
            sparse,
        };
        match b {
            Some(b) => self.push(y, &[x, w, b], rule),
            None => self.push(y, &[x, w], rule),
        }
    }
}
