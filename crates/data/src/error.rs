//! Errors for missing, truncated or corrupt data files.

use std::path::PathBuf;

use thiserror::Error;

/// A data file could not be used.
#[derive(Debug, Error)]
pub enum DataError {
    /// The file could not be opened or read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file's content is not what its format requires.
    #[error("{}: {what}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong, in words.
        what: String,
    },
    /// None of the expected files exists in a directory.
    #[error("no {what} found in {} (looked for {tried})", dir.display())]
    Missing {
        /// The directory searched.
        dir: PathBuf,
        /// What was looked for.
        what: String,
        /// File names tried.
        tried: String,
    },
    /// Two files that belong together disagree (e.g. image and label counts).
    #[error("{0}")]
    Mismatch(String),
}

impl DataError {
    pub(crate) fn corrupt(path: &std::path::Path, what: impl Into<String>) -> DataError {
        DataError::Corrupt {
            path: path.to_path_buf(),
            what: what.into(),
        }
    }
}
