//! Which weight gradient a sparse op computes: the dense one, or the one
//! restricted to the weight's support (sparse backpropagation's masked steps).

/// The weight gradient a sparse op ([`Tape::sparse_linear_with`],
/// [`Tape::sparse_conv2d_with`]) hands back.
///
/// [`Tape::sparse_linear_with`]: crate::Tape::sparse_linear_with
/// [`Tape::sparse_conv2d_with`]: crate::Tape::sparse_conv2d_with
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightGrad {
    /// `∂L/∂W` for every weight, zero or not — what a full Bregman step
    /// needs: the subgradient variable `v` of a zero weight moves too, and
    /// that is how weights enter the support.
    #[default]
    Dense,
    /// `P_S ∂L/∂W`: the gradient at the weight's non-zeros (its support `S`)
    /// and exactly 0 elsewhere, computed by the sampled dense-dense product
    /// ([`bregman_tensor::sparse::sddmm`]) at a cost proportional to the
    /// number of non-zeros — what a masked step, which moves only the
    /// support, needs.
    Support,
}
