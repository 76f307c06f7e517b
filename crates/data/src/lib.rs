//! # bregman-data
//!
//! Data sets for the experiments, all in memory:
//!
//! - [`idx`] — the IDX format of MNIST and Fashion-MNIST (raw or gzip,
//!   recognised by magic bytes), validated against its header;
//! - [`cifar`] — the CIFAR-10 binary format;
//! - [`dataset`] — [`Dataset`], the seeded 95/5 train/validation split,
//!   batches with normalisation (SPEC §5), CIFAR crop/flip augmentation and
//!   the denoising variant (Gaussian noise on the input, clean target).
//!
//! Every error names the file and what is wrong with it.
//!
//! ```
//! use bregman_data::idx::{encode_idx, parse_idx};
//! let bytes = encode_idx(&[2, 2], &[1, 2, 3, 4]);
//! let arr = parse_idx(&bytes, "example.idx".as_ref()).unwrap();
//! assert_eq!(arr.dims, vec![2, 2]);
//! let err = parse_idx(&bytes[..7], "short.idx".as_ref()).unwrap_err();
//! assert!(err.to_string().starts_with("short.idx: truncated"));
//! ```
#![warn(missing_docs)]

pub mod cifar;
pub mod dataset;
mod error;
pub mod idx;

pub use dataset::{batch_shares, batches, load, Batch, BatchOptions, Dataset, DatasetKind};
pub use error::DataError;
