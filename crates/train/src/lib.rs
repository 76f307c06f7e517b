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
//!   (N_total, N_linear, N_conv, neurons, SSIM, PSNR), [`plot`], and
//!   [`run_dir`] (the lock on a run directory, no silent overwrites).
//!
//! ```
//! use bregman_train::{build_model, build_optimizer, TrainConfig};
//! use bregman_layers::Module;
//!
//! // The authors' settings for the Fashion-MNIST ConvNet with AdaBreg (Table 1).
//! let cfg = TrainConfig::preset("fashion-convnet", Some("adabreg")).unwrap();
//! assert_eq!((cfg.lr, cfg.lambda, cfg.sparse_init), (1e-3, 0.5, 0.01));
//! let model = build_model(&cfg).unwrap(); // sparse init: ~1% of the weights non-zero
//! let opt = build_optimizer(&cfg, &model).unwrap();
//! assert_eq!(opt.groups()[0].name, "linear_weights");
//! let s = bregman_train::metrics::sparsity(&model.params());
//! assert!(s.n_total > 0.005 && s.n_total < 0.02);
//! // Invalid values are errors naming the flag.
//! let mut bad = cfg.clone();
//! bad.delta = 0.0;
//! assert_eq!(bad.validate().unwrap_err().to_string(), "invalid configuration: --delta 0: must be > 0");
//! # use bregman_optim::Optimizer;
//! ```
#![warn(missing_docs)]

mod baselines;
pub mod checkpoint;
pub mod comm;
mod config;
mod data_parallel;
mod error;
mod evaluate;
pub mod export;
mod guards;
pub mod metrics;
mod outputs;
pub mod plot;
pub mod resume;
pub mod run_dir;
mod setup;
mod trainer;

pub use config::{TrainConfig, DATA_ENV_PLACEHOLDER, EXPERIMENTS, OPTIMIZERS};
pub use error::TrainError;
pub use evaluate::{evaluate, evaluate_shared, inference_rate, rank_share, Evaluation};
pub use guards::{epochs_without_improvement, DIVERGENCE_FACTOR, MIN_VAL_IMAGES_FOR_PLATEAU};
pub use outputs::{epoch_line, metrics_csv, plots, EpochMetrics};
pub use setup::{build_model, build_optimizer, dataset_kind, sparse_backprop_step};
pub use trainer::Run;
