//! The error type of training, evaluation, checkpoints and export.

use std::path::PathBuf;

use thiserror::Error;

/// Anything that stops a training run or a command.
#[derive(Debug, Error)]
pub enum TrainError {
    /// Data could not be loaded.
    #[error(transparent)]
    Data(#[from] bregman_data::DataError),
    /// The optimizer rejected its configuration or a step.
    #[error(transparent)]
    Optim(#[from] bregman_optim::OptimError),
    /// The model rejected its input.
    #[error(transparent)]
    Layer(#[from] bregman_layers::LayerError),
    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The loss became NaN or infinite.
    #[error("loss is {value} at epoch {epoch}, batch {batch}: training stopped (the last good checkpoint is kept); try a smaller --lr")]
    NonFinite {
        /// The value.
        value: f32,
        /// 1-based epoch.
        epoch: usize,
        /// 0-based batch within the epoch.
        batch: usize,
    },
    /// The loss rose above the divergence bound (see [`crate::Run`]).
    #[error("loss {loss:.4e} at epoch {epoch}, batch {batch} is above {bound:.4e} ({factor}× the first epoch's loss): training diverged and was stopped (the last good checkpoint is kept); try a smaller --lr")]
    Diverged {
        /// The batch's loss.
        loss: f32,
        /// The bound it broke.
        bound: f32,
        /// The bound over the reference loss.
        factor: f32,
        /// 1-based epoch.
        epoch: usize,
        /// 0-based batch within the epoch.
        batch: usize,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A checkpoint or configuration file is malformed.
    #[error("{}: {what}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
}

impl TrainError {
    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
        move |source| TrainError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn format(path: &std::path::Path, what: impl std::fmt::Display) -> TrainError {
        TrainError::Format {
            path: path.to_path_buf(),
            what: what.to_string(),
        }
    }
}
