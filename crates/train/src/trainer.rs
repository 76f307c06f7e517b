//! The training loop: epochs of training, validation, test and sparsity
//! metrics, schedulers, outputs (CSV, JSON, SVG plots) and checkpoints.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use bregman_autodiff::{Tape, WeightGrad};
use bregman_data::{batch_shares, batches, load, BatchOptions, Dataset, DatasetKind};
use bregman_layers::{models, Module, ParamKind, Sequential};
use bregman_optim::init::{sparse_init, MaskMode, SparseInit};
use bregman_optim::schedule::{LambdaScheduler, PlateauMode, PlateauScheduler};
use bregman_optim::{
    CatchUp, GroupL12, GroupSpec, GroupedOptimizer, Hyper, L1PlusGroup, Method, NoRegularizer,
    OptimError, Optimizer, Regularizer, StepMode, L1,
};
use bregman_tensor::Tensor;
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, RunState};
use crate::comm::{fingerprint, share, Comm, Single};
use crate::metrics::{psnr, sparsity, ssim};
use crate::plot::{line_chart, Series};
use crate::resume::{check_config_file, check_optimizer_state};
use crate::{TrainConfig, TrainError};

/// The metrics of one epoch (one row of `metrics.csv`; more in `metrics.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based epoch.
    pub epoch: usize,
    /// Learning rate of the first group during the epoch.
    pub lr: f32,
    /// λ of the first regularized group.
    pub lambda: f32,
    /// Mean training loss over the epoch's batches.
    pub train_loss: f64,
    /// Training accuracy over the epoch (classification).
    pub train_acc: Option<f64>,
    /// Validation loss.
    pub val_loss: f64,
    /// Validation accuracy (classification).
    pub val_acc: Option<f64>,
    /// Validation SSIM (denoising).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_ssim: Option<f64>,
    /// Test loss.
    pub test_loss: f64,
    /// Test accuracy (classification).
    pub test_acc: Option<f64>,
    /// Test SSIM (denoising).
    pub test_ssim: Option<f64>,
    /// Test PSNR in dB (denoising).
    pub test_psnr: Option<f64>,
    /// Non-zero fraction of all weights.
    pub n_total: f64,
    /// Non-zero fraction of linear weights (`None` without linear layers).
    pub n_linear: Option<f64>,
    /// Non-zero fraction of conv kernels (`None` without conv layers).
    pub n_conv: Option<f64>,
    /// Active neurons (non-zero rows) per weight: `(name, active, rows)`.
    pub neurons: Vec<(String, usize, usize)>,
    /// `J(θ)` per parameter group.
    pub regularizer: Vec<(String, f64)>,
    /// Wall time of the epoch (training + evaluation), seconds.
    pub seconds: f64,
}

/// Loss and accuracy (and image metrics) of a model on a data set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    /// Mean loss.
    pub loss: f64,
    /// Accuracy (classification).
    pub acc: Option<f64>,
    /// Mean SSIM (denoising).
    pub ssim: Option<f64>,
    /// Mean PSNR (denoising).
    pub psnr: Option<f64>,
}

/// Which data set an experiment uses.
pub fn dataset_kind(experiment: &str) -> DatasetKind {
    match experiment {
        "fashion-convnet" | "fashion-convnet-group" => DatasetKind::FashionMnist,
        "cifar-resnet18" => DatasetKind::Cifar10,
        _ => DatasetKind::Mnist,
    }
}

fn is_denoising(cfg: &TrainConfig) -> bool {
    cfg.experiment == "mnist-denoiser"
}

/// Direction of the plateau metric: accuracy goes up, losses go down.
fn plateau_mode(cfg: &TrainConfig) -> PlateauMode {
    if cfg.plateau_metric == "val-acc" && !is_denoising(cfg) {
        PlateauMode::Max
    } else {
        PlateauMode::Min
    }
}

/// Builds the experiment's model, initialised from `cfg.seed` (sparse
/// initialisation with density `cfg.sparse_init` for r < 1).
///
/// **Errors** on an invalid initialisation setting.
pub fn build_model(cfg: &TrainConfig) -> Result<Sequential, TrainError> {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut model = match cfg.experiment.as_str() {
        "mnist-mlp" => models::mlp(&[784, 200, 80, 10], &mut rng),
        "fashion-convnet" | "fashion-convnet-group" => models::paper_convnet(&mut rng),
        "cifar-resnet18" => models::resnet18_cifar(10, &mut rng),
        "mnist-denoiser" => models::denoiser(&mut rng),
        other => return Err(TrainError::Config(format!("unknown experiment '{other}'"))),
    };
    let mask = |reg: &str| match reg {
        "group-rows" => MaskMode::Rows,
        "group-kernels" | "l1+group-kernels" => MaskMode::Kernels,
        _ => MaskMode::Elements,
    };
    let init = SparseInit {
        density: cfg.sparse_init,
        linear_mask: mask(&cfg.linear_regularizer),
        conv_mask: mask(&cfg.conv_regularizer),
        gain: cfg.init_gain,
        bias_scale: cfg.init_bias,
    };
    sparse_init(&mut model.params_mut(), &init, &mut rng)?;
    Ok(model)
}

fn regularizer(name: &str, lambda: f32) -> Box<dyn Regularizer> {
    match name {
        "l1" => Box::new(L1::new(lambda)),
        "group-rows" => Box::new(GroupL12::rows(lambda)),
        "group-kernels" => Box::new(GroupL12::kernels(lambda)),
        "l1+group-kernels" => Box::new(L1PlusGroup {
            l1: L1::new(lambda),
            group: GroupL12::kernels(lambda),
        }),
        _ => Box::new(NoRegularizer),
    }
}

/// The optimizer of `cfg` over `model`'s parameters: groups {linear
/// weights}, {conv weights} with their regularizers, and {biases, batchnorm}
/// with `J = 0`.
///
/// **Errors** on an invalid hyper-parameter.
pub fn build_optimizer(
    cfg: &TrainConfig,
    model: &dyn Module,
) -> Result<GroupedOptimizer, TrainError> {
    let method = match cfg.optimizer.as_str() {
        // The Lasso and pruning baselines take plain SGD steps; the trainer adds
        // ∂J to the gradients (Lasso) or re-applies the pruning masks (prune).
        "sgd" | "lasso" | "prune" => Method::Sgd,
        "adam" => Method::Adam,
        "proxgd" => Method::ProxGd,
        "linbreg" | "linbreg-momentum" => Method::LinBreg,
        "adabreg" => Method::AdaBreg,
        other => return Err(TrainError::Config(format!("unknown optimizer '{other}'"))),
    };
    let h = Hyper {
        lr: cfg.lr,
        delta: cfg.delta,
        momentum: cfg.momentum,
        ..Hyper::default()
    };
    let specs = vec![
        GroupSpec::new(
            "linear_weights",
            &[ParamKind::LinearWeight],
            h,
            regularizer(&cfg.linear_regularizer, cfg.lambda),
        ),
        GroupSpec::new(
            "conv_weights",
            &[ParamKind::ConvWeight],
            h,
            regularizer(&cfg.conv_regularizer, cfg.lambda),
        ),
        GroupSpec::new(
            "biases_and_batchnorm",
            &[ParamKind::Bias, ParamKind::BnWeight, ParamKind::BnBias],
            h,
            Box::new(NoRegularizer),
        ),
    ];
    Ok(GroupedOptimizer::new(method, &model.params(), specs)?)
}

/// A batch loss above this multiple of the first epoch's mean training loss
/// (during the first epoch: of its first batch's loss) ends the run as
/// diverged. Cross-entropy starts near ln 10 ≈ 2.3 and the denoiser's MSE
/// near 0.1, and both only fall in a working run; an Adam run at `--lr 1e6`
/// reaches 10²¹.
pub const DIVERGENCE_FACTOR: f32 = 1e3;

/// Fewest validation images for the plateau scheduler on validation
/// accuracy: its threshold is 1% relative, and one image moves the
/// accuracy by `1/n`, so below 100 images a single image decides.
pub const MIN_VAL_IMAGES_FOR_PLATEAU: usize = 100;

/// A training run in progress.
pub struct Run {
    /// The configuration.
    pub cfg: TrainConfig,
    /// The model.
    pub model: Sequential,
    /// The optimizer.
    pub opt: GroupedOptimizer,
    /// The learning-rate scheduler.
    pub plateau: PlateauScheduler,
    /// Training split.
    pub train: Dataset,
    /// Validation split.
    pub val: Dataset,
    /// Test set.
    pub test: Dataset,
    /// Metrics of completed epochs.
    pub history: Vec<EpochMetrics>,
    /// Print progress.
    pub verbose: bool,
    /// Pruning baseline: per parameter, which weights survive (`None`: not pruned).
    pub masks: Vec<Option<Vec<bool>>>,
    /// The λ scheduler, when `lambda_target` is set.
    pub lambda_sched: Option<LambdaScheduler>,
    /// The processes training this run data-parallel ([`Single`] by
    /// default): each takes its share of every batch, gradients are summed
    /// over all, and only rank 0 writes outputs.
    pub comm: Box<dyn Comm>,
    /// The gradients of one step flattened for the collective (reused).
    flat: Vec<f32>,
}

impl Run {
    /// Loads the data, builds model and optimizer, creates the output directory.
    ///
    /// **Errors** on invalid configuration, missing or corrupt data, or data
    /// whose images do not fit the model.
    pub fn new(cfg: TrainConfig) -> Result<Run, TrainError> {
        cfg.validate()?;
        let (train_full, test) = load(&cfg.data_path()?, dataset_kind(&cfg.experiment))?;
        let (train, val) = train_full.split(cfg.val_fraction, cfg.seed);
        check_split_sizes(&cfg, train.len(), val.len(), test.len())?;
        let model = build_model(&cfg)?;
        let opt = build_optimizer(&cfg, &model)?;
        let masks = vec![None; model.params().len()];
        let plateau = PlateauScheduler::new(plateau_mode(&cfg));
        let lambda_sched = cfg
            .lambda_target
            .map(|t| LambdaScheduler::new(t, 0.1 * cfg.lambda));
        let run = Run {
            cfg,
            model,
            opt,
            plateau,
            train,
            val,
            test,
            history: Vec::new(),
            verbose: false,
            masks,
            lambda_sched,
            comm: Box::new(Single),
            flat: Vec::new(),
        };
        run.check_input_shape()?;
        Ok(run)
    }

    /// Continues the run saved in `dir` (its `checkpoint.safetensors`).
    ///
    /// **Errors** if the checkpoint is missing or does not fit.
    pub fn resume(dir: &Path, data_dir: Option<PathBuf>) -> Result<Run, TrainError> {
        let path = dir.join("checkpoint.safetensors");
        let ck = checkpoint::load(&path)?;
        let mut cfg = ck.config.clone();
        cfg.out = dir.to_path_buf();
        if let Some(d) = data_dir {
            cfg.data_dir = d;
        }
        if ck.state.epoch != ck.state.history.len() {
            return Err(TrainError::format(
                &path,
                format!(
                    "state says epoch {} but holds the metrics of {} epochs",
                    ck.state.epoch,
                    ck.state.history.len()
                ),
            ));
        }
        check_config_file(dir, &ck.config)?;
        let mut run = Run::new(cfg)?;
        ck.restore_model(&mut run.model, &path)?;
        ck.restore_optimizer(&mut run.opt, &path)?;
        check_optimizer_state(&run.cfg, &run.model, &run.opt, &path)?;
        run.plateau.best = ck.state.plateau_best;
        run.plateau.bad_epochs = ck.state.plateau_bad_epochs;
        run.history = ck.state.history;
        if let Some(ls) = &mut run.lambda_sched {
            ls.epoch = run.history.len() as u32;
            ls.last_change = ck.state.lambda_last_change;
        }
        if run.cfg.optimizer == "prune" && run.epoch() >= prune_phase(&run.cfg) {
            // Pruned weights are exactly zero; surviving ones (almost surely) are not.
            run.masks = run
                .model
                .params()
                .iter()
                .map(|p| {
                    p.kind
                        .is_weight()
                        .then(|| p.value.data().iter().map(|&w| w != 0.0).collect())
                })
                .collect();
        }
        Ok(run)
    }

    /// Rewrites `metrics.csv`, `metrics.json` and the plots from the
    /// checkpoint's history when they disagree with it (a process killed
    /// between writing the metrics and the checkpoint leaves one epoch more
    /// in the metrics); returns what was repaired, to be reported.
    ///
    /// **Errors** on an I/O failure.
    pub fn repair_outputs(&self) -> Result<Option<String>, TrainError> {
        let path = self.cfg.out.join("metrics.csv");
        let expected = metrics_csv(&self.history, is_denoising(&self.cfg));
        let found = std::fs::read_to_string(&path).ok();
        if found.as_deref() == Some(expected.as_str()) {
            return Ok(None);
        }
        let rows = found.map(|t| t.lines().count().saturating_sub(1));
        self.write_metrics()?;
        Ok(Some(format!(
            "repaired: {} held {} but the checkpoint has {} epochs; the metrics and plots \
             were rewritten from the checkpoint",
            path.display(),
            rows.map_or("nothing readable".to_string(), |r| format!("{r} epochs")),
            self.epoch()
        )))
    }

    /// Runs one image through the model so that a data set of the wrong
    /// image size fails before training, with the layer's error.
    fn check_input_shape(&self) -> Result<(), TrainError> {
        let Some(first) = batches(
            &self.test,
            batch_options(&self.cfg, self.test.kind, false, 1),
            0,
            0,
        )
        .next() else {
            return Ok(());
        };
        self.model.infer(&first.x).map(|_| ()).map_err(|e| {
            TrainError::Config(format!(
                "the {} images ({:?}) do not fit the {} model: {e}",
                self.cfg.experiment, self.test.shape, self.cfg.experiment
            ))
        })
    }

    /// Epochs completed so far.
    pub fn epoch(&self) -> usize {
        self.history.len()
    }

    /// Trains one epoch: `(mean loss, accuracy)`.
    ///
    /// **Errors** on a NaN/Inf loss (naming epoch and batch) or a layer error.
    pub fn train_epoch(&mut self, bar: &ProgressBar) -> Result<(f64, Option<f64>), TrainError> {
        let epoch = self.epoch() + 1;
        self.model.set_training(true);
        let opts = batch_options(&self.cfg, self.train.kind, true, self.cfg.batch_size);
        let denoise = is_denoising(&self.cfg);
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        let start = Instant::now();
        let n_batches = self.train.len().div_ceil(self.cfg.batch_size.max(1));
        let mut reference = self.history.first().map(|m| m.train_loss as f32);
        let (rank, ranks) = (self.comm.rank(), self.comm.size());
        let shares = batch_shares(&self.train, opts, self.cfg.seed, epoch as u64, rank, ranks);
        for (bi, batch) in shares.enumerate() {
            let n = batch.labels.len();
            let mode = sparse_backprop_step(&self.cfg, bi, n_batches);
            self.model.set_weight_grad(match mode {
                StepMode::Masked => WeightGrad::Support,
                _ => WeightGrad::Dense,
            });
            // This process's share: gradients of its mean loss, the loss summed
            // over its images, and how many it classified right.
            let (mut grads, share_loss, share_correct) = if n == 0 {
                // An empty share (a last batch with fewer images than ranks).
                let params = self.model.params();
                let zeros = params.iter().map(|p| Tensor::zeros(p.value.shape()));
                (zeros.collect(), 0.0, 0)
            } else {
                let mut tape = Tape::new();
                let x = tape.constant(batch.x);
                let y = self.model.forward(&mut tape, x)?;
                let mut right = 0;
                let loss = match batch.target {
                    Some(t) => {
                        let shape = tape.value(y).shape().to_vec();
                        let t = t
                            .reshape(&shape)
                            .map_err(|e| TrainError::Config(format!("denoising target: {e}")))?;
                        tape.mse(y, t)
                    }
                    None => {
                        let pred = tape.value(y).argmax_rows();
                        right = pred
                            .iter()
                            .zip(&batch.labels)
                            .filter(|(p, l)| p == l)
                            .count();
                        tape.cross_entropy(y, &batch.labels)
                    }
                };
                let lv = tape.value(loss).item();
                if !lv.is_finite() {
                    return Err(TrainError::NonFinite {
                        value: lv,
                        epoch,
                        batch: bi,
                    });
                }
                // The divergence bound's reference: the first epoch's mean
                // loss, or during the first epoch its first batch's loss.
                let reference = *reference.get_or_insert(lv);
                let bound = DIVERGENCE_FACTOR * reference;
                if lv > bound {
                    return Err(TrainError::Diverged {
                        loss: lv,
                        bound,
                        factor: DIVERGENCE_FACTOR,
                        epoch,
                        batch: bi,
                    });
                }
                tape.backward(loss);
                let grads = self
                    .model
                    .params()
                    .iter()
                    .map(|p| {
                        tape.take_grad_of(&p.value)
                            .ok_or_else(|| OptimError::MissingGrad {
                                name: p.name.clone(),
                            })
                    })
                    .collect::<Result<Vec<Tensor>, _>>()?;
                (grads, lv as f64 * n as f64, right)
            };
            let (batch_loss, batch_correct, batch_n) = if ranks > 1 {
                let global = n_images(self.train.len(), self.cfg.batch_size, bi);
                let weight = n as f32 / global as f32;
                let comm = self.comm.as_ref();
                let share = (share_loss, share_correct);
                let (l, c) = reduce_gradients(comm, &mut self.flat, &mut grads, weight, share);
                (l, c, global)
            } else {
                (share_loss, share_correct, n)
            };
            loss_sum += batch_loss;
            correct += batch_correct;
            seen += batch_n;
            if self.cfg.optimizer == "lasso" {
                // SGD on L + J: add a subgradient of J to each regularized weight's gradient.
                let params = self.model.params();
                let mut sub = Vec::new();
                for g in self.opt.groups() {
                    let reg = g.regularizer.as_ref();
                    for &i in &g.params {
                        let theta = &params[i].value;
                        sub.resize(theta.len(), 0.0);
                        reg.subgradient(
                            theta.data(),
                            reg.grouping().group_size(theta.shape()),
                            &mut sub,
                        );
                        grads[i]
                            .data_mut()
                            .iter_mut()
                            .zip(&sub)
                            .for_each(|(gv, s)| *gv += s);
                    }
                }
            }
            self.opt
                .step_with(&mut self.model.params_mut(), &grads, mode)?;
            apply_masks(&mut self.model, &self.masks);
            if ranks > 1 {
                share_buffers(self.comm.as_ref(), &self.model);
            }
            bar.inc(1);
            let rate = seen as f64 / start.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!(
                "loss {:.4}  {:.0} img/s",
                loss_sum / seen.max(1) as f64,
                rate
            ));
        }
        let acc = (!denoise).then(|| correct as f64 / seen.max(1) as f64);
        Ok((loss_sum / seen.max(1) as f64, acc))
    }

    /// The fingerprint (FNV-1a of the bits) of every parameter and buffer:
    /// what the ranks of a data-parallel run compare after every epoch, and
    /// what two runs compare to prove they ended with the same bits.
    pub fn fingerprint(&self) -> u64 {
        let params = self.model.params();
        let buffers: Vec<Vec<f32>> = self
            .model
            .buffers()
            .iter()
            .map(|b| b.value.borrow().data().to_vec())
            .collect();
        fingerprint(
            params
                .iter()
                .map(|p| p.value.data())
                .chain(buffers.iter().map(Vec::as_slice)),
        )
    }

    /// Runs the remaining epochs, writing outputs and a checkpoint after each.
    ///
    /// **Errors** as [`Run::train_epoch`], or on an I/O failure.
    pub fn run(&mut self) -> Result<&[EpochMetrics], TrainError> {
        let writer = self.comm.rank() == 0;
        if writer {
            std::fs::create_dir_all(&self.cfg.out).map_err(TrainError::io(&self.cfg.out))?;
            let cfg_path = self.cfg.out.join("config.toml");
            checkpoint::write_atomic(&cfg_path, self.cfg.to_toml().as_bytes())?;
        }
        let steps = self.train.len().div_ceil(self.cfg.batch_size) as u64;
        let show_bar = self.verbose && std::io::stderr().is_terminal();
        while self.epoch() < self.cfg.epochs && !self.stopped_early() {
            let epoch = self.epoch() + 1;
            let start = Instant::now();
            let bar = if show_bar {
                let b = ProgressBar::new(steps);
                b.set_style(
                    ProgressStyle::with_template(&format!(
                        "epoch {epoch:>3}/{} {{bar:30}} {{pos}}/{{len}} {{msg}}",
                        self.cfg.epochs
                    ))
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                b
            } else {
                ProgressBar::hidden()
            };
            let lr = self.opt.groups()[0].hyper.lr;
            let lambda = self
                .opt
                .groups()
                .iter()
                .map(|g| g.regularizer.lambda())
                .find(|&l| l > 0.0)
                .unwrap_or(0.0);
            let (train_loss, train_acc) = self.train_epoch(&bar)?;
            bar.finish_and_clear();
            if self.cfg.optimizer == "prune" {
                self.prune_after(epoch);
            }
            // Lasso: the metrics are those of the thresholded network; training goes on unthresholded.
            let saved = (self.cfg.optimizer == "lasso")
                .then(|| threshold_weights(&mut self.model, self.cfg.lasso_threshold));
            let val = evaluate_shared(&mut self.model, &self.cfg, &self.val, self.comm.as_ref())?;
            let test = evaluate_shared(&mut self.model, &self.cfg, &self.test, self.comm.as_ref())?;
            let sp_thresholded = saved.as_ref().map(|_| sparsity(&self.model.params()));
            if let Some(saved) = saved {
                for (p, v) in self.model.params_mut().into_iter().zip(saved) {
                    p.value = v;
                }
            }
            let params = self.model.params();
            let sp = sp_thresholded.unwrap_or_else(|| sparsity(&params));
            let regs = self.opt.regularizer_values(&params);
            let m = EpochMetrics {
                epoch,
                lr,
                lambda,
                train_loss,
                train_acc,
                val_loss: val.loss,
                val_acc: val.acc,
                val_ssim: val.ssim,
                test_loss: test.loss,
                test_acc: test.acc,
                test_ssim: test.ssim,
                test_psnr: test.psnr,
                n_total: sp.n_total,
                n_linear: sp.n_linear.is_finite().then_some(sp.n_linear),
                n_conv: sp.n_conv.is_finite().then_some(sp.n_conv),
                neurons: sp
                    .layers
                    .iter()
                    .map(|l| (l.name.clone(), l.active_rows, l.rows))
                    .collect(),
                regularizer: regs,
                seconds: start.elapsed().as_secs_f64(),
            };
            if let Some(ls) = &mut self.lambda_sched {
                ls.step(m.n_total as f32, &mut self.opt, &self.model.params());
            }
            if self.cfg.lr_plateau {
                let metric = match (self.cfg.plateau_metric.as_str(), val.acc) {
                    ("train-loss", _) => train_loss,
                    (_, Some(acc)) => acc,
                    (_, None) => val.loss, // denoising: no accuracy
                };
                self.plateau.step(metric as f32, &mut self.opt);
            }
            if self.verbose {
                println!("{}", epoch_line(&m, self.cfg.epochs));
            }
            self.history.push(m);
            if self.comm.size() > 1 && !self.comm.all_equal(self.fingerprint()) {
                return Err(TrainError::Config(format!(
                    "after epoch {epoch} the ranks hold different parameters (fingerprints \
                     differ): the run is stopped before rank 0 writes this epoch's checkpoint"
                )));
            }
            if writer {
                self.write_outputs()?;
            }
            if self.verbose && self.stopped_early() {
                println!(
                    "early stop: validation {} has not improved by {} for {} epochs",
                    if is_denoising(&self.cfg) {
                        "SSIM"
                    } else {
                        "accuracy"
                    },
                    self.cfg.early_stop_delta,
                    self.cfg.early_stop.unwrap_or(0)
                );
            }
        }
        Ok(&self.history)
    }

    /// Whether the early-stopping rule (`cfg.early_stop`) ends the run after
    /// the epochs so far (a resumed run that stopped stays stopped).
    pub fn stopped_early(&self) -> bool {
        self.cfg.early_stop.is_some_and(|patience| {
            // A pruning run is judged only once its last round has pruned.
            let first = if self.cfg.optimizer == "prune" {
                prune_phase(&self.cfg) * self.cfg.prune_rounds
            } else {
                0
            };
            let metric: Vec<f64> = self
                .history
                .iter()
                .skip(first)
                .map(|m| m.val_acc.or(m.val_ssim).unwrap_or(f64::NAN))
                .collect();
            epochs_without_improvement(&metric, self.cfg.early_stop_delta) >= patience
        })
    }

    /// Pruning baseline (Han et al. 2015): after each of the first
    /// `prune_rounds` phases, keep the largest-magnitude weights of every layer,
    /// a fraction `target^(k/rounds)` after round `k`, and fix the rest at zero.
    fn prune_after(&mut self, epoch: usize) {
        let phase = prune_phase(&self.cfg);
        if !epoch.is_multiple_of(phase) || epoch / phase > self.cfg.prune_rounds {
            return;
        }
        let k = epoch / phase;
        let density = self
            .cfg
            .prune_target
            .powf(k as f32 / self.cfg.prune_rounds as f32);
        for (p, mask) in self
            .model
            .params_mut()
            .into_iter()
            .zip(self.masks.iter_mut())
        {
            if !p.kind.is_weight() {
                continue;
            }
            let mut mags: Vec<f32> = p.value.data().iter().map(|w| w.abs()).collect();
            let keep = ((density as f64 * mags.len() as f64).ceil() as usize).clamp(1, mags.len());
            let cut = mags.len() - keep;
            mags.select_nth_unstable_by(cut, |a, b| a.total_cmp(b));
            let threshold = mags[cut];
            let m: Vec<bool> = p
                .value
                .data()
                .iter()
                .map(|w| w.abs() >= threshold && *w != 0.0)
                .collect();
            *mask = Some(m);
        }
        apply_masks(&mut self.model, &self.masks);
    }

    fn write_outputs(&self) -> Result<(), TrainError> {
        self.write_metrics()?;
        self.write_checkpoint()
    }

    fn write_metrics(&self) -> Result<(), TrainError> {
        let out = &self.cfg.out;
        checkpoint::write_atomic(
            &out.join("metrics.csv"),
            metrics_csv(&self.history, is_denoising(&self.cfg)).as_bytes(),
        )?;
        let json =
            serde_json::to_string_pretty(&self.history).map_err(|e| TrainError::format(out, e))?;
        checkpoint::write_atomic(&out.join("metrics.json"), json.as_bytes())?;
        for (name, svg) in plots(&self.history) {
            checkpoint::write_atomic(&out.join(name), svg.as_bytes())?;
        }
        Ok(())
    }

    fn write_checkpoint(&self) -> Result<(), TrainError> {
        let out = &self.cfg.out;
        let state = RunState {
            epoch: self.epoch(),
            optimizer_step: self.opt.steps(),
            groups: self
                .opt
                .groups()
                .iter()
                .map(|g| (g.hyper.lr, g.regularizer.lambda()))
                .collect(),
            plateau_best: self.plateau.best,
            plateau_bad_epochs: self.plateau.bad_epochs,
            history: self.history.clone(),
            lambda_last_change: self.lambda_sched.as_ref().and_then(|l| l.last_change),
        };
        checkpoint::save(
            &out.join("checkpoint.safetensors"),
            &self.cfg,
            &self.model,
            &self.opt,
            &state,
        )
    }
}

/// Refuses splits a run cannot be measured on: no training, validation or
/// test images, or a validation split too small for the plateau scheduler.
fn check_split_sizes(
    cfg: &TrainConfig,
    train: usize,
    val: usize,
    test: usize,
) -> Result<(), TrainError> {
    let data = cfg.data_dir.display();
    let fail = |what: String| Err(TrainError::Config(what));
    if train == 0 {
        return fail(format!(
            "no training images in {data} after holding out --val-fraction {} for validation",
            cfg.val_fraction
        ));
    }
    if test == 0 {
        return fail(format!("no test images in {data}"));
    }
    if val == 0 && cfg.val_fraction > 0.0 {
        return fail(format!(
            "--val-fraction {} of {} training images leaves no validation images",
            cfg.val_fraction,
            train + val
        ));
    }
    let plateau_on_acc = cfg.lr_plateau && cfg.plateau_metric == "val-acc" && !is_denoising(cfg);
    if plateau_on_acc && val < MIN_VAL_IMAGES_FOR_PLATEAU {
        return fail(format!(
            "--plateau-metric val-acc with {val} validation images: the scheduler's 1% relative \
             threshold needs at least {MIN_VAL_IMAGES_FOR_PLATEAU} (one image moves the accuracy \
             by 1/{val}); use more data or --plateau-metric train-loss"
        ));
    }
    if cfg.early_stop.is_some() && val == 0 {
        return fail("--early-stop needs validation images (--val-fraction > 0)".into());
    }
    Ok(())
}

/// Data-parallel step: replaces this rank's share gradients, each scaled
/// by `weight = n_share/n_batch`, by their sum over the ranks — the gradient
/// of the whole batch's mean loss, the same bits on every rank — through one
/// flat, reused buffer that also carries the share's `(loss sum, correct
/// count)`. Returns the batch's.
fn reduce_gradients(
    comm: &dyn Comm,
    flat: &mut Vec<f32>,
    grads: &mut [Tensor],
    weight: f32,
    (loss, correct): (f64, usize),
) -> (f64, usize) {
    let total: usize = grads.iter().map(Tensor::len).sum();
    flat.clear();
    flat.reserve(total + 2);
    for g in grads.iter() {
        flat.extend(g.data().iter().map(|&v| v * weight));
    }
    flat.push(loss as f32);
    flat.push(correct as f32);
    comm.sum_f32(flat);
    let mut at = 0;
    for g in grads.iter_mut() {
        let len = g.len();
        g.data_mut().copy_from_slice(&flat[at..at + len]);
        at += len;
    }
    (flat[total] as f64, flat[total + 1].round() as usize)
}

/// Rank 0's batchnorm running statistics to every rank (as PyTorch DDP
/// broadcasts buffers): each rank normalises with its own batch statistics,
/// but all evaluate and checkpoint with the same buffers.
fn share_buffers(comm: &dyn Comm, model: &Sequential) {
    for b in model.buffers() {
        comm.broadcast_f32(b.value.borrow_mut().data_mut());
    }
}

/// Images in batch `b` of an epoch over `len` images in batches of `batch_size`.
fn n_images(len: usize, batch_size: usize, b: usize) -> usize {
    batch_size.min(len - b * batch_size)
}

/// Epochs since the last one that beat the best value before it by at
/// least `delta` (the first finite value sets the best; NaN never improves;
/// a tolerance of 1e-9 absorbs the rounding of accuracies such as 2671/3000).
pub fn epochs_without_improvement(metric: &[f64], delta: f64) -> usize {
    let mut best = f64::NEG_INFINITY;
    let mut last = 0;
    for (e, &v) in metric.iter().enumerate() {
        if v - best >= delta - 1e-9 {
            best = v;
            last = e + 1;
        }
    }
    metric.len() - last
}

fn pct(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{:.2}%", 100.0 * v))
}

/// One log line per epoch.
pub fn epoch_line(m: &EpochMetrics, epochs: usize) -> String {
    let quality = match (m.test_ssim, m.test_psnr) {
        (Some(s), Some(p)) => format!("  test SSIM {s:.4}  PSNR {p:.2} dB"),
        _ => format!(
            "  train {}  val {}  test {}",
            pct(m.train_acc),
            pct(m.val_acc),
            pct(m.test_acc)
        ),
    };
    format!(
        "epoch {:>3}/{epochs}  loss {:.4}{quality}  N_total {:.2}%  lr {:.2e}  [{:.1}s]",
        m.epoch,
        m.train_loss,
        100.0 * m.n_total,
        m.lr,
        m.seconds
    )
}

fn opt_field(x: Option<f64>) -> String {
    x.map_or(String::new(), |v| format!("{v:.6}"))
}

fn nan_field(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.6}")
    } else {
        String::new()
    }
}

/// `metrics.csv`: one row per epoch (empty fields where a metric does not apply).
pub fn metrics_csv(history: &[EpochMetrics], denoising: bool) -> String {
    let mut s = String::from("epoch,lr,train_loss,train_acc,val_loss,val_acc,test_loss,test_acc,n_total,n_linear,n_conv,seconds");
    if denoising {
        s.push_str(",test_ssim,test_psnr");
    }
    s.push('\n');
    for m in history {
        s.push_str(&format!(
            "{},{},{:.6},{},{:.6},{},{:.6},{},{},{},{},{:.3}",
            m.epoch,
            m.lr,
            m.train_loss,
            opt_field(m.train_acc),
            m.val_loss,
            opt_field(m.val_acc),
            m.test_loss,
            opt_field(m.test_acc),
            nan_field(m.n_total),
            opt_field(m.n_linear),
            opt_field(m.n_conv),
            m.seconds
        ));
        if denoising {
            s.push_str(&format!(
                ",{},{}",
                opt_field(m.test_ssim),
                opt_field(m.test_psnr)
            ));
        }
        s.push('\n');
    }
    s
}

/// The SVG plots of a run: `accuracy.svg`, `nonzeros.svg`, `loss.svg`, and
/// `neurons.svg` (active neurons per layer).
pub fn plots(history: &[EpochMetrics]) -> Vec<(&'static str, String)> {
    let series = |name: &str, f: &dyn Fn(&EpochMetrics) -> Option<f64>| Series {
        name: name.to_string(),
        points: history
            .iter()
            .filter_map(|m| f(m).map(|v| (m.epoch as f64, v)))
            .collect(),
    };
    let mut out = Vec::new();
    out.push((
        "accuracy.svg",
        line_chart(
            "Accuracy",
            "epoch",
            "accuracy (%)",
            &[
                series("train", &|m| m.train_acc.map(|v| 100.0 * v)),
                series("validation", &|m| m.val_acc.map(|v| 100.0 * v)),
                series("test", &|m| m.test_acc.map(|v| 100.0 * v)),
            ],
        ),
    ));
    out.push((
        "nonzeros.svg",
        line_chart(
            "Non-zero weights",
            "epoch",
            "non-zero (%)",
            &[
                series("N_total", &|m| Some(100.0 * m.n_total)),
                series("N_linear", &|m| m.n_linear.map(|v| 100.0 * v)),
                series("N_conv (kernels)", &|m| m.n_conv.map(|v| 100.0 * v)),
            ],
        ),
    ));
    out.push((
        "loss.svg",
        line_chart(
            "Loss",
            "epoch",
            "loss",
            &[
                series("train", &|m| Some(m.train_loss)),
                series("validation", &|m| Some(m.val_loss)),
                series("test", &|m| Some(m.test_loss)),
            ],
        ),
    ));
    let layers: Vec<String> = history
        .last()
        .map(|m| m.neurons.iter().map(|n| n.0.clone()).collect())
        .unwrap_or_default();
    let neuron_series: Vec<Series> = layers
        .iter()
        .enumerate()
        .map(|(i, name)| Series {
            name: name.trim_end_matches(".weight").to_string(),
            points: history
                .iter()
                .filter_map(|m| m.neurons.get(i).map(|n| (m.epoch as f64, n.1 as f64)))
                .collect(),
        })
        .collect();
    out.push((
        "neurons.svg",
        line_chart(
            "Active neurons per layer",
            "epoch",
            "active rows",
            &neuron_series,
        ),
    ));
    out
}

/// Evaluates on `ds` in eval mode (running batchnorm statistics, no tape).
///
/// **Errors** if the model rejects the data.
pub fn evaluate(
    model: &mut Sequential,
    cfg: &TrainConfig,
    ds: &Dataset,
) -> Result<Evaluation, TrainError> {
    Ok(EvalSums::of(model, cfg, ds)?.evaluation(is_denoising(cfg)))
}

/// [`evaluate`] split over the ranks of `comm`: each evaluates a contiguous
/// share of `ds`, and the sums are added up (the same result on every rank).
///
/// **Errors** if the model rejects the data.
pub fn evaluate_shared(
    model: &mut Sequential,
    cfg: &TrainConfig,
    ds: &Dataset,
    comm: &dyn Comm,
) -> Result<Evaluation, TrainError> {
    if comm.size() == 1 {
        return evaluate(model, cfg, ds);
    }
    let (lo, hi) = share(ds.len(), comm.rank(), comm.size());
    let mine = ds.subset(&(lo..hi).collect::<Vec<_>>());
    let s = EvalSums::of(model, cfg, &mine)?;
    let mut v = [s.loss, s.correct, s.ssim, s.psnr, s.n];
    comm.sum_f64(&mut v);
    let [loss, correct, ssim, psnr, n] = v;
    let total = EvalSums {
        loss,
        correct,
        ssim,
        psnr,
        n,
    };
    Ok(total.evaluation(is_denoising(cfg)))
}

/// The sums an evaluation divides by the image count.
struct EvalSums {
    loss: f64,
    correct: f64,
    ssim: f64,
    psnr: f64,
    n: f64,
}

impl EvalSums {
    fn of(model: &mut Sequential, cfg: &TrainConfig, ds: &Dataset) -> Result<EvalSums, TrainError> {
        model.set_training(false);
        let opts = batch_options(cfg, ds.kind, false, cfg.eval_batch_size);
        let (mut loss, mut correct, mut n, mut ssim_sum, mut psnr_sum) =
            (0.0f64, 0usize, 0usize, 0.0f64, 0.0f64);
        // Evaluation noise is fixed (epoch stream 0), so every epoch sees the same noisy images.
        for batch in batches(ds, opts, cfg.seed ^ 0xE7A1, 0) {
            let y = model.infer(&batch.x)?;
            let b = batch.labels.len();
            if let Some(t) = &batch.target {
                let (yd, td) = (y.data(), t.data());
                let per = yd.len() / b.max(1);
                // Mean squared error over the batch (outputs [B, 784] vs clean images [B, 1, 28, 28]).
                let se: f64 = yd
                    .iter()
                    .zip(td)
                    .map(|(&a, &c)| ((a - c) as f64).powi(2))
                    .sum();
                loss += se / per.max(1) as f64;
                let [_, h, w] = ds.shape;
                for i in 0..b {
                    let out: Vec<f32> = yd[i * per..(i + 1) * per]
                        .iter()
                        .map(|v| v.clamp(0.0, 1.0))
                        .collect();
                    let clean = &td[i * per..(i + 1) * per];
                    ssim_sum += ssim(&out, clean, h, w);
                    psnr_sum += psnr(&out, clean);
                }
            } else {
                let (l, _) = bregman_autodiff::ops::cross_entropy::forward(&y, &batch.labels);
                loss += l as f64 * b as f64;
                correct += y
                    .argmax_rows()
                    .iter()
                    .zip(&batch.labels)
                    .filter(|(p, l)| p == l)
                    .count();
            }
            n += b;
        }
        Ok(EvalSums {
            loss,
            correct: correct as f64,
            ssim: ssim_sum,
            psnr: psnr_sum,
            n: n as f64,
        })
    }

    fn evaluation(&self, denoise: bool) -> Evaluation {
        let n_f = self.n.max(1.0);
        Evaluation {
            loss: self.loss / n_f,
            acc: (!denoise).then(|| self.correct / n_f),
            ssim: denoise.then(|| self.ssim / n_f),
            psnr: denoise.then(|| self.psnr / n_f),
        }
    }
}

/// Batching of `cfg`'s experiment: shuffled (and for CIFAR augmented) for
/// training; noisy inputs for denoising.
/// The step mode of batch `bi` of an epoch of `n_batches` under sparse
/// backpropagation with `K = cfg.sparse_backprop`: every `K`-th step and the
/// epoch's last are full (so a checkpoint, written after an epoch, never
/// falls inside a run of masked steps), the others masked; a full step
/// catches up with the masked ones by `cfg.sparse_backprop_catch_up`.
pub fn sparse_backprop_step(cfg: &TrainConfig, bi: usize, n_batches: usize) -> StepMode {
    let k = cfg.sparse_backprop.max(1);
    if k == 1 {
        return StepMode::Full;
    }
    if !(bi + 1).is_multiple_of(k) && bi + 1 < n_batches {
        return StepMode::Masked;
    }
    let plain_linbreg = cfg.optimizer == "linbreg" && cfg.momentum == 0.0;
    match cfg.sparse_backprop_catch_up.as_str() {
        "linear" => StepMode::FullCatchUp(CatchUp::Linear),
        "sqrt" => StepMode::FullCatchUp(CatchUp::Sqrt),
        "auto" if plain_linbreg => StepMode::FullCatchUp(CatchUp::Linear),
        "auto" => StepMode::FullCatchUp(CatchUp::Sqrt),
        _ => StepMode::Full,
    }
}

fn batch_options(
    cfg: &TrainConfig,
    kind: DatasetKind,
    train: bool,
    batch_size: usize,
) -> BatchOptions {
    BatchOptions {
        batch_size,
        shuffle: train,
        augment: train && kind == DatasetKind::Cifar10,
        noise_std: is_denoising(cfg).then_some(cfg.noise_std),
        fixed_noise: cfg.noise_fixed,
    }
}

/// Epochs per prune-and-retrain phase: the run is split into `prune_rounds + 1` phases.
fn prune_phase(cfg: &TrainConfig) -> usize {
    (cfg.epochs / (cfg.prune_rounds + 1)).max(1)
}

/// Zeroes the pruned weights.
fn apply_masks(model: &mut Sequential, masks: &[Option<Vec<bool>>]) {
    for (p, mask) in model.params_mut().into_iter().zip(masks) {
        if let Some(mask) = mask {
            p.value
                .data_mut()
                .iter_mut()
                .zip(mask)
                .filter(|(_, &keep)| !keep)
                .for_each(|(w, _)| *w = 0.0);
        }
    }
}

/// Sets weights with `|θ| < threshold` to zero; returns every parameter's previous value.
fn threshold_weights(model: &mut Sequential, threshold: f32) -> Vec<Tensor> {
    model
        .params_mut()
        .into_iter()
        .map(|p| {
            let saved = p.value.clone();
            if p.kind.is_weight() {
                p.value
                    .map_inplace(|w| if w.abs() < threshold { 0.0 } else { w });
            }
            saved
        })
        .collect()
}

/// Inference throughput of `model` on `ds` in images per second: the best of
/// `passes` passes of [`Module::infer`] over the first `max_images` images in
/// batches of `batch_size` (the batches are gathered before the clock starts,
/// so this times the model alone).
///
/// **Errors** if the model rejects the data.
pub fn inference_rate(
    model: &mut Sequential,
    cfg: &TrainConfig,
    ds: &Dataset,
    batch_size: usize,
    max_images: usize,
    passes: usize,
) -> Result<f64, TrainError> {
    model.set_training(false);
    let opts = batch_options(cfg, ds.kind, false, batch_size);
    let mut inputs = Vec::new();
    let mut images = 0;
    for batch in batches(ds, opts, cfg.seed ^ 0xE7A1, 0) {
        if images >= max_images {
            break;
        }
        images += batch.labels.len();
        inputs.push(batch.x);
    }
    let mut best = f64::INFINITY;
    for _ in 0..passes.max(1) {
        let start = Instant::now();
        for x in &inputs {
            std::hint::black_box(model.infer(x)?);
        }
        best = best.min(start.elapsed().as_secs_f64());
    }
    Ok(images as f64 / best.max(1e-12))
}

#[cfg(test)]
mod tests {
    use super::epochs_without_improvement as stale;

    #[test]
    fn early_stopping_counts_epochs_since_an_improvement_of_at_least_delta() {
        assert_eq!(stale(&[], 1e-3), 0);
        assert_eq!(stale(&[0.5], 1e-3), 0);
        // +0.1 pp exactly counts; +0.05 pp twice does not (measured from the best).
        assert_eq!(stale(&[0.500, 0.501], 1e-3), 0);
        assert_eq!(stale(&[0.500, 0.5005, 0.5009], 1e-3), 2);
        assert_eq!(stale(&[0.500, 0.5005, 0.5010], 1e-3), 0);
        // A drop and a recovery to below best + delta do not reset the count.
        assert_eq!(stale(&[0.9, 0.8, 0.9005, 0.85], 1e-3), 3);
        // NaN epochs never improve; a finite value after them does.
        assert_eq!(stale(&[f64::NAN, f64::NAN], 1e-3), 2);
        assert_eq!(stale(&[f64::NAN, 0.1, f64::NAN], 1e-3), 1);
    }
}
