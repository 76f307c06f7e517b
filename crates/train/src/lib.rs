//! # bregman-train
//!
//! The training loop of the experiments and everything around it:
//!
//! - [`TrainConfig`] — every setting, with presets carrying the authors'
//!   settings for each experiment (SPEC §5), TOML in and out;
//! - [`Run`] — epochs of training, validation and test, sparsity metrics
//!   (SPEC §4), the learning-rate plateau scheduler, `metrics.csv`,
//!   `metrics.json`, SVG plots and atomic checkpoints; [`Run::resume`]
//!   continues a run exactly;
//! - [`checkpoint`], [`export`] (safetensors with PyTorch names), [`metrics`]
//!   (N_total, N_linear, N_conv, neurons, SSIM, PSNR), [`plot`].
#![warn(missing_docs)]

pub mod checkpoint;
mod config;
mod error;
pub mod export;
pub mod metrics;
pub mod plot;
mod trainer;

pub use config::{TrainConfig, EXPERIMENTS, OPTIMIZERS};
pub use error::TrainError;
pub use trainer::{
    build_model, build_optimizer, dataset_kind, epoch_line, evaluate, metrics_csv, plots,
    EpochMetrics, Evaluation, Run,
};
