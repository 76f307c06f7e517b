//! The error type of fallible tensor constructors.

use thiserror::Error;

/// What went wrong when building or reshaping a tensor from user-supplied data.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TensorError {
    /// The number of values does not match the product of the shape.
    #[error("shape {shape:?} holds {expected} values but {got} were given")]
    LengthMismatch {
        /// The requested shape.
        shape: Vec<usize>,
        /// Product of the shape.
        expected: usize,
        /// Number of values supplied.
        got: usize,
    },
    /// Two shapes that must agree do not.
    #[error("{op}: shapes {lhs:?} and {rhs:?} do not fit together")]
    ShapeMismatch {
        /// The operation that was attempted.
        op: &'static str,
        /// Shape of the left operand (or the tensor).
        lhs: Vec<usize>,
        /// Shape of the right operand (or the requested shape).
        rhs: Vec<usize>,
    },
}
