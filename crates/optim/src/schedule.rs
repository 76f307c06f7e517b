//! Schedulers: the learning-rate plateau scheduler of the experiments and a
//! λ scheduler that steers the number of non-zero weights towards a target.

use bregman_layers::Parameter;

use crate::{GroupedOptimizer, Optimizer};

/// Whether the monitored metric should go up or down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlateauMode {
    /// Higher is better (validation accuracy): improved when `m > best·(1 + threshold)`.
    Max,
    /// Lower is better (a loss): improved when `m < best·(1 − threshold)`.
    Min,
}

/// Halves (by `factor`) every group's learning rate when the monitored
/// metric has not improved by a relative `threshold` for more than
/// `patience` epochs — PyTorch's `ReduceLROnPlateau(threshold_mode="rel")`.
/// SPEC §5 monitors validation accuracy ([`PlateauMode::Max`], the default);
/// the authors' notebooks step it on the training loss ([`PlateauMode::Min`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PlateauScheduler {
    /// Direction of improvement of the metric.
    pub mode: PlateauMode,
    /// Multiplier of the learning rate on a plateau (0.5).
    pub factor: f32,
    /// Epochs without improvement tolerated (5).
    pub patience: u32,
    /// Relative improvement that counts (0.01).
    pub threshold: f32,
    /// Best metric so far.
    pub best: Option<f32>,
    /// Epochs since the last improvement.
    pub bad_epochs: u32,
}

impl Default for PlateauScheduler {
    fn default() -> Self {
        PlateauScheduler {
            mode: PlateauMode::Max,
            factor: 0.5,
            patience: 5,
            threshold: 0.01,
            best: None,
            bad_epochs: 0,
        }
    }
}

impl PlateauScheduler {
    /// The default scheduler (factor 0.5, patience 5, threshold 1%) for a
    /// metric of the given direction.
    pub fn new(mode: PlateauMode) -> PlateauScheduler {
        PlateauScheduler {
            mode,
            ..PlateauScheduler::default()
        }
    }

    /// Records an epoch's metric; returns true when the learning rate should drop.
    pub fn observe(&mut self, metric: f32) -> bool {
        let improved = match (self.best, self.mode) {
            (None, _) => true,
            (Some(best), PlateauMode::Max) => metric > best * (1.0 + self.threshold),
            (Some(best), PlateauMode::Min) => metric < best * (1.0 - self.threshold),
        };
        if improved {
            self.best = Some(metric);
            self.bad_epochs = 0;
            return false;
        }
        self.bad_epochs += 1;
        if self.bad_epochs > self.patience {
            self.bad_epochs = 0;
            return true;
        }
        false
    }

    /// [`PlateauScheduler::observe`], and on a plateau multiplies every group's
    /// learning rate by `factor`. Returns whether it did.
    pub fn step(&mut self, metric: f32, opt: &mut dyn Optimizer) -> bool {
        let reduce = self.observe(metric);
        if reduce {
            for g in opt.groups_mut() {
                g.hyper.lr *= self.factor;
            }
        }
        reduce
    }
}

/// Moves λ of the regularized groups towards a target density of non-zero
/// weights: after `warmup` epochs, at most every `cooldown` epochs, λ grows by
/// `increment` while the density is above `target`, and shrinks by it (not
/// below 0) while the density is below `target·(1 − tolerance)`. On every
/// change `v` is re-initialised from θ (`v = ∂J(θ) + θ/δ`) so that θ is kept.
#[derive(Debug, Clone, PartialEq)]
pub struct LambdaScheduler {
    /// Target fraction of non-zero weights.
    pub target: f32,
    /// Epochs before the first change.
    pub warmup: u32,
    /// Additive change of λ.
    pub increment: f32,
    /// Minimum epochs between changes.
    pub cooldown: u32,
    /// Relative band below the target in which λ is left alone.
    pub tolerance: f32,
    /// Epochs observed.
    pub epoch: u32,
    /// Epoch of the last change.
    pub last_change: Option<u32>,
}

impl LambdaScheduler {
    /// A scheduler towards `target` density.
    pub fn new(target: f32, increment: f32) -> LambdaScheduler {
        LambdaScheduler {
            target,
            warmup: 5,
            increment,
            cooldown: 2,
            tolerance: 0.2,
            epoch: 0,
            last_change: None,
        }
    }

    /// Records an epoch's density; returns the signed change of λ to apply (0: none).
    pub fn observe(&mut self, density: f32) -> f32 {
        self.epoch += 1;
        if self.epoch <= self.warmup {
            return 0.0;
        }
        if let Some(last) = self.last_change {
            if self.epoch - last < self.cooldown {
                return 0.0;
            }
        }
        let change = if density > self.target {
            self.increment
        } else if density < self.target * (1.0 - self.tolerance) {
            -self.increment
        } else {
            0.0
        };
        if change != 0.0 {
            self.last_change = Some(self.epoch);
        }
        change
    }

    /// [`LambdaScheduler::observe`] and applies the change to every group with
    /// λ > 0 (or that had λ changed before), re-initialising `v`. Returns
    /// whether λ changed.
    pub fn step(
        &mut self,
        density: f32,
        opt: &mut GroupedOptimizer,
        params: &[&Parameter],
    ) -> bool {
        let change = self.observe(density);
        if change == 0.0 {
            return false;
        }
        let mut changed = false;
        for g in opt.groups_mut() {
            let lam = g.regularizer.lambda();
            if lam > 0.0 || g.regularizer.name() != "none" {
                let new = (lam + change).max(0.0);
                changed |= new != lam;
                g.regularizer.set_lambda(new);
            }
        }
        if changed {
            opt.reinit_v(params);
        }
        changed
    }
}
