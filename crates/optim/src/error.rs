//! Errors of optimizer construction, steps and state restoring.

use thiserror::Error;

/// What went wrong in the optimizer.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum OptimError {
    /// A hyper-parameter is out of its valid range.
    #[error("invalid {field} = {value}: {why}")]
    InvalidHyper {
        /// The field (`lr`, `delta`, ...).
        field: &'static str,
        /// The offending value.
        value: f64,
        /// The valid range.
        why: &'static str,
    },
    /// A parameter matched no parameter group.
    #[error("parameter '{name}' ({kind}) belongs to no parameter group")]
    Ungrouped {
        /// Parameter name.
        name: String,
        /// Its kind.
        kind: &'static str,
    },
    /// `step` received a different set of parameters than the optimizer was built for.
    #[error("optimizer was built for {expected} parameters but step got {got}")]
    ParamCount {
        /// Parameters at construction.
        expected: usize,
        /// Parameters (or gradients) passed.
        got: usize,
    },
    /// A parameter at a position has another name than at construction.
    #[error("parameter {index} is '{got}' but the optimizer state belongs to '{expected}'")]
    ParamName {
        /// Position.
        index: usize,
        /// Name at construction.
        expected: String,
        /// Name passed now.
        got: String,
    },
    /// A gradient's shape differs from its parameter's.
    #[error("gradient of '{name}' has shape {grad:?} but the parameter has shape {param:?}")]
    GradShape {
        /// Parameter name.
        name: String,
        /// Parameter shape.
        param: Vec<usize>,
        /// Gradient shape.
        grad: Vec<usize>,
    },
    /// A parameter received no gradient.
    #[error("parameter '{name}' received no gradient (is it used in the forward pass?)")]
    MissingGrad {
        /// Parameter name.
        name: String,
    },
    /// Restored state does not fit the parameters.
    #[error("optimizer state does not fit: {0}")]
    State(String),
    /// A step mode the method does not have.
    #[error("{0}")]
    Unsupported(String),
}
