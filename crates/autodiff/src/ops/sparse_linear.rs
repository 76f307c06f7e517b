//! The affine map of a dense layer whose weight is sparse: `Y = X·Wᵀ + b`
//! with the products that read `W` computed on its non-zeros only
//! ([`SparseLinear`]). The same function as [`crate::ops::linear`], and the
//! same gradients:
//!
//! - `∂L/∂X = G·W` — sparse (skips the zeros of `W`);
//! - `∂L/∂W = Gᵀ·X` — dense, for every weight: LinBreg and AdaBreg move the
//!   subgradient variable `v` of the zero weights too (that is how weights
//!   enter the support), so every entry of the gradient is needed; or, with
//!   [`WeightGrad::Support`] (the masked steps of sparse backpropagation),
//!   only at `W`'s non-zeros, by the sampled product
//!   [`SparseLinear::weight_grad`], and 0 elsewhere;
//! - `∂L/∂b = Σ_rows G`.
//!
//! The sparse form is borrowed from the layer for the tape's lifetime, so it
//! cannot change between the forward and the backward pass.

use std::ops::Deref;

use bregman_tensor::sparse::SparseLinear;
use bregman_tensor::{matmul, Tensor};

use crate::{Backward, Tape, Var, WeightGrad};

/// Forward pass without a tape: `x · wᵀ + b` for `x: [N, in]`.
///
/// **Panics** if `x` is not `[N, in]` or the bias not `[out]`.
pub fn forward(x: &Tensor, w: &SparseLinear, b: Option<&Tensor>) -> Tensor {
    let n = batch_of(x, w);
    output(w, n, w.forward(x.data(), n, b.map(|b| b.data())))
}

/// The batch size of `x`, which must be `[N, in]`.
fn batch_of(x: &Tensor, w: &SparseLinear) -> usize {
    assert!(
        x.ndim() == 2 && x.dim(1) == w.in_features(),
        "sparse linear: input {:?} does not fit {} inputs",
        x.shape(),
        w.in_features()
    );
    x.dim(0)
}

/// The `[n, out]` output tensor of the products' values.
fn output(w: &SparseLinear, n: usize, y: Vec<f32>) -> Tensor {
    Tensor::from_vec(&[n, w.out_features()], y).expect("sizes from the weight")
}

struct SparseLinearBackward<S> {
    sparse: S,
    weight_grad: WeightGrad,
    /// `Xᵀ`, kept from the forward pass when the weight gradient is the
    /// sampled one (it reads the activations batch-contiguous too).
    xt: Option<Vec<f32>>,
}

impl<S: Deref<Target = SparseLinear>> Backward for SparseLinearBackward<S> {
    fn backward(
        &self,
        inputs: &[&Tensor],
        _: &Tensor,
        grad: Tensor,
        needs: &[bool],
    ) -> Vec<Option<Tensor>> {
        let x = inputs[0];
        let n = x.dim(0);
        let dx = needs[0].then(|| {
            let dx = self.sparse.input_grad(grad.data(), n);
            Tensor::from_vec(x.shape(), dx).expect("input shape")
        });
        let dw = needs[1].then(|| match self.weight_grad {
            WeightGrad::Dense => matmul(&grad, true, x, false),
            WeightGrad::Support => {
                let w = self.sparse.weight();
                let values = match &self.xt {
                    Some(xt) => self.sparse.weight_grad_transposed(grad.data(), xt, n),
                    None => self.sparse.weight_grad(grad.data(), x.data(), n),
                };
                Tensor::from_vec(&[w.rows(), w.cols()], w.scatter(&values)).expect("weight shape")
            }
        });
        let mut out = vec![dx, dw];
        if inputs.len() == 3 {
            out.push(needs[2].then(|| grad.sum_rows()));
        }
        out
    }
}

impl<'a> Tape<'a> {
    /// `x · wᵀ + b` where `sparse` is the sparse form of `w`'s value (the
    /// caller keeps the two in step); `w` still receives its dense gradient.
    ///
    /// **Panics** on a shape mismatch, or if `sparse` does not have `w`'s shape.
    pub fn sparse_linear<S>(&mut self, x: Var, w: Var, b: Option<Var>, sparse: S) -> Var
    where
        S: Deref<Target = SparseLinear> + 'a,
    {
        self.sparse_linear_with(x, w, b, sparse, WeightGrad::Dense)
    }

    /// [`Tape::sparse_linear`] with the choice of weight gradient: dense, or
    /// on the support of `w` only ([`WeightGrad`]).
    ///
    /// **Panics** as [`Tape::sparse_linear`].
    pub fn sparse_linear_with<S>(
        &mut self,
        x: Var,
        w: Var,
        b: Option<Var>,
        sparse: S,
        weight_grad: WeightGrad,
    ) -> Var
    where
        S: Deref<Target = SparseLinear> + 'a,
    {
        let wv = self.value(w);
        assert_eq!(
            wv.shape(),
            [sparse.out_features(), sparse.in_features()],
            "sparse linear: sparse form does not have the weight's shape"
        );
        let (xv, bv) = (self.value(x), b.map(|b| self.value(b)));
        let n = batch_of(xv, &sparse);
        // A weight gradient on the support reads Xᵀ as the forward product
        // does: transpose once, keep it for the backward pass.
        let keep_xt = weight_grad == WeightGrad::Support && n > 1 && self.requires_grad(w);
        let (y, xt) = if keep_xt {
            let xt = sparse.transpose_input(xv.data(), n);
            let y = sparse.forward_transposed(&xt, n, bv.map(|b| b.data()));
            (output(&sparse, n, y), Some(xt))
        } else {
            (forward(xv, &sparse, bv), None)
        };
        let rule = SparseLinearBackward {
            sparse,
            weight_grad,
            xt,
        };
        match b {
            Some(b) => self.push(y, &[x, w, b], rule),
            None => self.push(y, &[x, w], rule),
        }
    }
}
