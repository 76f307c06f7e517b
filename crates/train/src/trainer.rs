//! The training loop: a [`Run`] trains epoch after epoch (each batch's
//! forward and backward pass, the optimizer step, and in a data-parallel
//! run the gradient sum over the ranks), then evaluates, steps the
//! schedulers and writes its outputs and checkpoint. What it is built from,
//! evaluates with and writes lives beside it: `setup.rs`, `evaluate.rs`,
//! `outputs.rs`, `guards.rs`, `baselines.rs`, `data_parallel.rs`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use bregman_autodiff::{Tape, WeightGrad};
use bregman_data::{batch_shares, batches, load, Dataset};
use bregman_layers::{Module, Sequential};
use bregman_optim::schedule::{LambdaScheduler, PlateauScheduler};
use bregman_optim::{GroupedOptimizer, OptimError, Optimizer, StepMode};
use bregman_tensor::Tensor;
use indicatif::{ProgressBar, ProgressStyle};

use crate::baselines::{apply_masks, prune_phase, threshold_weights};
use crate::checkpoint::{self, RunState};
use crate::comm::{fingerprint, Comm, Single};
use crate::data_parallel::{n_images, reduce_gradients, share_buffers};
use crate::evaluate::{evaluate_shared, rank_share};
use crate::guards::{check_split_sizes, epochs_without_improvement, DIVERGENCE_FACTOR};
use crate::metrics::sparsity;
use crate::outputs::{epoch_line, metrics_csv, plots, EpochMetrics};
use crate::resume::{check_config_file, check_optimizer_state};
use crate::setup::{
    batch_options, build_model, build_optimizer, dataset_kind, is_denoising, plateau_mode,
    sparse_backprop_step,
};
use crate::{TrainConfig, TrainError};

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
                let x = tape.constant(self.model.flatten_input(batch.x));
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
        // A data-parallel run's evaluation shares, cut once for all epochs.
        let shares = (self.comm.size() > 1).then(|| {
            let comm = self.comm.as_ref();
            (rank_share(&self.val, comm), rank_share(&self.test, comm))
        });
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
            let (val_set, test_set) = match &shares {
                Some((v, t)) => (v, t),
                None => (&self.val, &self.test),
            };
            let comm = self.comm.as_ref();
            let val = evaluate_shared(&mut self.model, &self.cfg, val_set, comm)?;
            let test = evaluate_shared(&mut self.model, &self.cfg, test_set, comm)?;
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
