//! A stride-1 convolution whose weight is sparse: the same function and
//! gradients as [`crate::ops::conv2d`], with the products that read `W` —
//! the forward pass and `∂L/∂x` — computed on its non-zero taps only
//! ([`SparseConv`], one image per task). `∂L/∂W` stays dense (every weight,
//! zero or not: the Bregman methods need it to grow the support); `∂L/∂b =
//! Σ_pixels G`.

use std::ops::Deref;

use bregman_tensor::sparse::{ConvScratch, SparseConv};
use bregman_tensor::{ConvGeometry, Tensor};

use crate::ops::conv2d::{geometry, per_image_blocks, weight_grad, Conv2dSpec};
use crate::{Backward, Tape, Var};

/// Forward pass without a tape.
///
/// **Panics** on a shape mismatch or a stride other than 1.
pub fn forward(x: &Tensor, w: &SparseConv, b: Option<&Tensor>, spec: Conv2dSpec) -> Tensor {
    let g = geometry(x, &w.shape(), spec);
    let oc = w.shape()[0];
    let p = g.out_pixels();
    if let Some(b) = b {
        assert!(
            b.ndim() == 1 && b.len() == oc,
            "conv2d: bias {:?} does not fit weight {:?} (need [OC])",
            b.shape(),
            w.shape()
        );
    }
    let img = g.c * g.h * g.w;
    let plan = w.plan(&g);
    let y = per_image_blocks(
        g.n,
        oc * p,
        x.data(),
        img,
        ConvScratch::default,
        |scratch, yn, xn| {
            w.forward_image(xn, &plan, yn, scratch);
            if let Some(b) = b {
                for (plane, &bo) in yn.chunks_exact_mut(p).zip(b.data()) {
                    plane.iter_mut().for_each(|v| *v += bo);
                }
            }
        },
    );
    Tensor::from_vec(&[g.n, oc, g.oh, g.ow], y).expect("sizes from geometry")
}

struct SparseConv2dBackward<S> {
    sparse: S,
    geom: ConvGeometry,
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
            let dx = per_image_blocks(
                g.n,
                img,
                grad.data(),
                oc * g.out_pixels(),
                ConvScratch::default,
                |scratch, dxn, gn| sparse.input_grad_image(gn, &plan, dxn, scratch),
            );
            Tensor::from_vec(&[g.n, g.c, g.h, g.w], dx).expect("sizes from geometry")
        });
        let dw = needs[1].then(|| weight_grad(grad.data(), inputs[0], None, g, inputs[1]));
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
        assert_eq!(
            self.value(w).shape(),
            sparse.shape(),
            "sparse conv2d: sparse form does not have the weight's shape"
        );
        let y = forward(self.value(x), &sparse, b.map(|b| self.value(b)), spec);
        let geom = geometry(self.value(x), &sparse.shape(), spec);
        let rule = SparseConv2dBackward { sparse, geom };
        match b {
            Some(b) => self.push(y, &[x, w, b], rule),
            None => self.push(y, &[x, w], rule),
        }
    }
}
