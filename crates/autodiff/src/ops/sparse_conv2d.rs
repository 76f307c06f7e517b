//! A stride-1 convolution whose weight is sparse: the same function and
//! gradients as [`crate::ops::conv2d`], with the products that read `W` —
//! the forward pass and `∂L/∂x` — computed on its non-zero taps only
//! ([`SparseConv`], one image per task). `∂L/∂W` is dense (every weight,
//! zero or not: the Bregman methods need it to grow the support), or with
//! [`WeightGrad::Support`] (the masked steps of sparse backpropagation) only
//! at the non-zero taps, by the sampled product [`SparseConv::weight_grad`],
//! and 0 elsewhere; `∂L/∂b = Σ_pixels G`.

use std::ops::Deref;

use bregman_tensor::sparse::{ConvScratch, SparseConv};
use bregman_tensor::{ConvGeometry, Tensor};

use std::mem::MaybeUninit;

use bregman_tensor::parallel::{written_chunks, zeroed_chunks};
use bregman_tensor::pool::maxpool_plane;

use crate::ops::conv2d_pool_relu::pool_geometry;
use crate::ops::relu::Relu;
use crate::ops::unary::UnaryDerivative;
use crate::PoolSpec;

use crate::ops::conv2d::{check_bias, geometry, weight_grad, Conv2dSpec, PARALLEL_IMAGES};
use crate::{Backward, Tape, Var, WeightGrad};

/// Forward pass without a tape.
///
/// **Panics** on a shape mismatch or a stride other than 1.
pub fn forward(x: &Tensor, w: &SparseConv, b: Option<&Tensor>, spec: Conv2dSpec) -> Tensor {
    let g = geometry(x, &w.shape(), spec);
    let oc = w.shape()[0];
    let p = g.out_pixels();
    check_bias(b, &w.shape());
    let img = g.c * g.h * g.w;
    let plan = w.plan(&g);
    let xd = x.data();
    // SAFETY: `forward_image` writes every value of the image's block.
    let y = unsafe {
        written_chunks(
            g.n * oc * p,
            oc * p,
            g.n >= PARALLEL_IMAGES,
            ConvScratch::default,
            |scratch, i, yn| {
                w.forward_image(
                    &xd[i * img..][..img],
                    &plan,
                    b.map(|b| b.data()),
                    yn,
                    scratch,
                )
            },
        )
    };
    Tensor::from_vec(&[g.n, oc, g.oh, g.ow], y).expect("sizes from geometry")
}

/// Whether [`forward_pool_relu`] takes an input of shape `x_shape` for a
/// weight of shape `w_shape`: a 4-d input with the weight's channels, and a
/// pooling window that fits the convolution's non-empty output.
pub fn pool_fits(x_shape: &[usize], w_shape: [usize; 4], spec: Conv2dSpec, pool: PoolSpec) -> bool {
    if x_shape.len() != 4 || x_shape[1] != w_shape[1] || spec.stride != 1 {
        return false;
    }
    ConvGeometry::new(x_shape, w_shape[2], w_shape[3], spec.stride, spec.padding)
        .ok()
        .filter(|g| g.out_pixels() > 0)
        .and_then(|g| pool_geometry(&g, w_shape[0], pool))
        .is_some_and(|pg| pg.out_pixels() > 0)
}

/// [`forward`], then `kernel×kernel` max pooling and ReLU, without a tape:
/// `relu(maxpool(conv2d(x, W) + b))` image by image, each image's
/// convolution output kept in a per-task buffer and pooled while it is in
/// cache (as [`crate::ops::conv2d_pool_relu`] does on the dense path), so the
/// full-size convolution output is never written. The same bits as the three
/// ops one after another (the same per-image product, the same pooling
/// kernel, the same ReLU).
///
/// **Panics** unless [`pool_fits`], or on a bias that does not fit.
pub fn forward_pool_relu(
    x: &Tensor,
    w: &SparseConv,
    b: Option<&Tensor>,
    spec: Conv2dSpec,
    pool: PoolSpec,
) -> Tensor {
    assert!(
        pool_fits(x.shape(), w.shape(), spec, pool),
        "sparse conv2d: input {:?}, weight {:?}, {pool:?} cannot be fused (check `pool_fits`)",
        x.shape(),
        w.shape()
    );
    let g = geometry(x, &w.shape(), spec);
    let oc = w.shape()[0];
    let pg = pool_geometry(&g, oc, pool).expect("checked by `pool_fits`");
    check_bias(b, &w.shape());
    let (img, p, q) = (g.c * g.h * g.w, g.out_pixels(), pg.out_pixels());
    let plan = w.plan(&g);
    let xd = x.data();
    // Per task: the product's scratch, one image's convolution output, and
    // the pooling's (unused) window indices of one plane.
    let scratch = || {
        (
            ConvScratch::default(),
            vec![MaybeUninit::<f32>::uninit(); oc * p],
            vec![0u32; q],
        )
    };
    let y = zeroed_chunks(
        g.n * oc * q,
        oc * q,
        g.n >= PARALLEL_IMAGES,
        scratch,
        |(scratch, conv, ix), i, yn| {
            w.forward_image(
                &xd[i * img..][..img],
                &plan,
                b.map(|b| b.data()),
                conv,
                scratch,
            );
            // SAFETY: `forward_image` wrote every value of `conv`.
            let conv: &[f32] =
                unsafe { &*(conv.as_slice() as *const [MaybeUninit<f32>] as *const [f32]) };
            for (yo, co) in yn.chunks_exact_mut(q).zip(conv.chunks_exact(p)) {
                maxpool_plane(yo, ix, co, &pg);
                yo.iter_mut().for_each(|v| *v = Relu::f(*v));
            }
        },
    );
    Tensor::from_vec(&[g.n, oc, pg.oh, pg.ow], y).expect("sizes from geometry")
}

/// **Panics** unless `sparse` has the shape of the weight `w` (the caller
/// keeps the sparse form in step with the weight's value).
pub(crate) fn check_form(w: &Tensor, sparse: &SparseConv) {
    assert_eq!(
        w.shape(),
        sparse.shape(),
        "sparse conv2d: sparse form does not have the weight's shape"
    );
}

struct SparseConv2dBackward<S> {
    sparse: S,
    geom: ConvGeometry,
    weight_grad: WeightGrad,
}

impl<S: Deref<Target = SparseConv>> Backward for SparseConv2dBackward<S> {
    fn backward(
        &self,
        inputs: &[&Tensor],
        _: &Tensor,
        grad: Tensor,
        needs: &[bool],
    ) -> Vec<Option<Tensor>> {
        let g = &self.geom;
        // A plain reference (shared by the image tasks; the guard `S` may not be `Sync`).
        let sparse: &SparseConv = &self.sparse;
        let oc = sparse.shape()[0];
        let dx = needs[0].then(|| {
            let img = g.c * g.h * g.w;
            let plan = sparse.plan(g);
            let (gd, gl) = (grad.data(), oc * g.out_pixels());
            // SAFETY: `input_grad_image` writes every value of the image's block.
            let dx = unsafe {
                written_chunks(
                    g.n * img,
                    img,
                    g.n >= PARALLEL_IMAGES,
                    ConvScratch::default,
                    |scratch, i, dxn| {
                        sparse.input_grad_image(&gd[i * gl..][..gl], &plan, dxn, scratch)
                    },
                )
            };
            Tensor::from_vec(&[g.n, g.c, g.h, g.w], dx).expect("sizes from geometry")
        });
        let dw = needs[1].then(|| match self.weight_grad {
            WeightGrad::Dense => weight_grad(grad.data(), inputs[0], None, g, inputs[1]),
            WeightGrad::Support => {
                let plan = sparse.plan(g);
                let values = sparse.weight_grad(grad.data(), inputs[0].data(), g.n, &plan);
                let w = sparse.weight().scatter(&values);
                Tensor::from_vec(&sparse.shape(), w).expect("weight shape")
            }
        });
        let mut out = vec![dx, dw];
        if inputs.len() == 3 {
            out.push(needs[2].then(|| grad.sum_channels()));
        }
        out
    }
}

impl<'a> Tape<'a> {
    /// Convolution of `x` with `w` where `sparse` is the sparse form of `w`'s
    /// value (the caller keeps them in step); `w` receives its dense gradient.
    ///
    /// **Panics** on a shape mismatch, a stride other than 1, or if `sparse`
    /// does not have `w`'s shape.
    pub fn sparse_conv2d<S>(
        &mut self,
        x: Var,
        w: Var,
        b: Option<Var>,
        spec: Conv2dSpec,
        sparse: S,
    ) -> Var
    where
        S: Deref<Target = SparseConv> + 'a,
    {
        self.sparse_conv2d_with(x, w, b, spec, sparse, WeightGrad::Dense)
    }

    /// [`Tape::sparse_conv2d`] with the choice of weight gradient: dense, or
    /// on the non-zero taps of `w` only ([`WeightGrad`]).
    ///
    /// **Panics** as [`Tape::sparse_conv2d`].
    pub fn sparse_conv2d_with<S>(
        &mut self,
        x: Var,
        w: Var,
        b: Option<Var>,
        spec: Conv2dSpec,
        sparse: S,
        weight_grad: WeightGrad,
    ) -> Var
    where
        S: Deref<Target = SparseConv> + 'a,
    {
        check_form(self.value(w), &sparse);
        let y = forward(self.value(x), &sparse, b.map(|b| self.value(b)), spec);
        let geom = geometry(self.value(x), &sparse.shape(), spec);
        let rule = SparseConv2dBackward {
            sparse,
            geom,
            weight_grad,
        };
        match b {
            Some(b) => self.push(y, &[x, w, b], rule),
            None => self.push(y, &[x, w], rule),
        }
    }
}
