//! 2-D convolution (cross-correlation, as PyTorch) via `im2col` + one GEMM.
//!
//! With `cols = im2col(x)` of shape `[P, C·k·k]` (`P = N·OH·OW`, pixel-major) and
//! the weight viewed as `W: [OC, C·k·k]`:
//!
//! - forward: `Y_pix = cols · Wᵀ + b` (`[P, OC]`), then transposed to NCHW;
//! - `∂L/∂W = G_pixᵀ · cols`, `∂L/∂b = Σ_pixels G`,
//! - `∂L/∂x = col2im(G_pix · W)`.

use bregman_tensor::conv::{channels_to_pixels, pixels_to_channels};
use bregman_tensor::{col2im, gemm, im2col, ConvGeometry, Tensor};

use crate::{Backward, Tape, Var};

/// Convolution hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dSpec {
    /// Stride in both directions.
    pub stride: usize,
    /// Zero padding on every side.
    pub padding: usize,
}

fn geometry(x: &Tensor, w: &Tensor, spec: Conv2dSpec) -> ConvGeometry {
    assert!(
        w.ndim() == 4 && x.ndim() == 4 && w.dim(1) == x.dim(1),
        "conv2d: input {:?} and weight {:?} do not fit (need NCHW and [OC, C, k, k])",
        x.shape(),
        w.shape()
    );
    ConvGeometry::new(x.shape(), w.dim(2), w.dim(3), spec.stride, spec.padding)
        .unwrap_or_else(|e| panic!("conv2d: {e}"))
}

/// Forward pass; returns the output and the `im2col` matrix (kept for backward).
fn forward_with_cols(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    spec: Conv2dSpec,
) -> (Tensor, Tensor, ConvGeometry) {
    let g = geometry(x, w, spec);
    let oc = w.dim(0);
    let cols = im2col(x, &g);
    let p = g.n * g.out_pixels();
    let mut y_pix = vec![0.0f32; p * oc];
    gemm(
        p,
        g.patch_len(),
        oc,
        cols.data(),
        false,
        w.data(),
        true,
        &mut y_pix,
        false,
    );
    let y = pixels_to_channels(&y_pix, g.n, g.out_pixels(), oc);
    let mut y = Tensor::from_vec(&[g.n, oc, g.oh, g.ow], y).expect("sizes from geometry");
    if let Some(b) = b {
        y.add_channel_bias_inplace(b);
    }
    (y, cols, g)
}

/// Forward pass without a tape.
///
/// **Panics** on a shape mismatch.
pub fn forward(x: &Tensor, w: &Tensor, b: Option<&Tensor>, spec: Conv2dSpec) -> Tensor {
    forward_with_cols(x, w, b, spec).0
}

struct Conv2dBackward {
    cols: Tensor,
    geom: ConvGeometry,
}

impl Backward for Conv2dBackward {
    fn backward(
        &self,
        inputs: &[&Tensor],
        _: &Tensor,
        grad: &Tensor,
        needs: &[bool],
    ) -> Vec<Option<Tensor>> {
        let (w, g) = (inputs[1], &self.geom);
        let (oc, pl, p) = (w.dim(0), g.patch_len(), g.n * g.out_pixels());
        let g_pix = channels_to_pixels(grad.data(), g.n, oc, g.out_pixels());
        let dx = needs[0].then(|| {
            let mut dcols = Tensor::zeros(&[p, pl]);
            gemm(
                p,
                oc,
                pl,
                &g_pix,
                false,
                w.data(),
                false,
                dcols.data_mut(),
                false,
            );
            col2im(&dcols, g)
        });
        let dw = needs[1].then(|| {
            let mut dw = Tensor::zeros(w.shape());
            gemm(
                oc,
                p,
                pl,
                &g_pix,
                true,
                self.cols.data(),
                false,
                dw.data_mut(),
                false,
            );
            dw
        });
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
        let (y, cols, geom) =
            forward_with_cols(self.value(x), self.value(w), b.map(|b| self.value(b)), spec);
        let rule = Conv2dBackward { cols, geom };
        match b {
            Some(b) => self.push(y, &[x, w, b], rule),
            None => self.push(y, &[x, w], rule),
        }
    }
}
