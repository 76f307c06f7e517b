//! Errors a model reports for input it cannot process.

use thiserror::Error;

/// A layer received an input it cannot process.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LayerError {
    /// The input shape does not fit the layer.
    #[error("layer '{layer}' ({what}): expected input {expected}, got shape {got:?}")]
    Shape {
        /// Full name of the layer (e.g. `layers.0`).
        layer: String,
        /// Short description of the layer (e.g. `Dense 784→200`).
        what: String,
        /// The shape the layer expects, in words (e.g. `[N, 784]`).
        expected: String,
        /// The shape it received.
        got: Vec<usize>,
    },
}
