//! Which kernels a layer runs — dense, or sparse where the weight's density
//! makes them pay — and the cached sparse form of a weight.
//!
//! A layer keeps its weight's sparse form in a [`SparseForm`], rebuilt from
//! θ on the first pass after the weight changed. The weight can only change
//! through `&mut` access to the layer (its fields are private and
//! [`Module::params_mut`](crate::Module::params_mut) marks the form stale),
//! so the form can never be out of date: after an optimizer step the next
//! forward pass rebuilds it once (one pass over θ, no allocation once the
//! support has stopped growing), and inference on a fixed model builds it
//! once for all batches.

use std::cell::{Cell, Ref, RefCell};

use bregman_autodiff::WeightGrad;

/// The kernel choice for a layer's weight products.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kernels {
    /// Sparse kernels wherever the weight's density is below the measured
    /// break-even for the shape and batch, dense products elsewhere.
    #[default]
    Auto,
    /// Dense products always (`--dense-kernels`).
    Dense,
}

/// A weight's sparse form `T`, rebuilt lazily after the weight changed.
#[derive(Debug, Clone, Default)]
pub(crate) struct SparseForm<T> {
    kernels: Kernels,
    weight_grad: WeightGrad,
    /// The density the form (or the decision not to build one) was made from;
    /// `None` when stale.
    density: Cell<Option<f64>>,
    /// During a run of masked steps (weight gradient on the support): the
    /// density of the structure built at the run's start. The support can
    /// only shrink until the next full step, so the form keeps that structure
    /// and a stale form only re-reads its values (O(nnz), no pass over θ).
    run: Cell<Option<f64>>,
    /// Whether the last full rebuild decision built a form (the weight was
    /// sparse enough): the next rebuild then fills the form straight away and
    /// takes the density from it, instead of counting θ's non-zeros first.
    built: Cell<bool>,
    form: RefCell<Option<T>>,
}

/// A sparse form's share of non-zero weights: after a full rebuild, exactly
/// the share of non-zeros of θ it was built from.
pub(crate) trait Density {
    /// `nnz / len`.
    fn density(&self) -> f64;
}

impl Density for bregman_tensor::sparse::SparseLinear {
    fn density(&self) -> f64 {
        bregman_tensor::sparse::SparseLinear::density(self)
    }
}

impl Density for bregman_tensor::sparse::SparseConv {
    fn density(&self) -> f64 {
        bregman_tensor::sparse::SparseConv::density(self)
    }
}

/// How [`SparseForm::get`] asks its caller to bring a stale form up to date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refill {
    /// Rebuild it from θ (structure and values).
    Full,
    /// Keep the structure, re-read the values at its positions.
    Values,
}

impl<T: Default + Density> SparseForm<T> {
    /// Marks the form stale (the weight is about to change).
    pub(crate) fn invalidate(&mut self) {
        self.density.set(None);
    }

    /// Sets which weight gradient a training pass computes (the form itself
    /// does not change).
    pub(crate) fn set_weight_grad(&mut self, weight_grad: WeightGrad) {
        if weight_grad != self.weight_grad {
            // A run of masked steps starts or ends: the next pass rebuilds.
            self.weight_grad = weight_grad;
            self.run.set(None);
            self.invalidate();
        }
    }

    /// The weight gradient a training pass computes.
    pub(crate) fn weight_grad(&self) -> WeightGrad {
        self.weight_grad
    }

    /// Sets the kernel choice.
    pub(crate) fn set_kernels(&mut self, kernels: Kernels) {
        self.kernels = kernels;
        self.run.set(None);
        self.invalidate();
    }

    /// The sparse form of `w` if the sparse kernels should run: when
    /// `kernels` is `Auto`, the weight's density `d` is at most `max_density`
    /// (otherwise no form is built) and `pays(d)` — or, in a training pass
    /// that wants the weight gradient on the support only, `d` is at most
    /// `masked_max` (the sampled weight gradient needs the form, and saves a
    /// whole dense product, so the masked step breaks even at a higher
    /// density than `pays` says). Brings a stale
    /// form up to date first with `fill(form, w, how)`: a full rebuild, or
    /// within a run of masked steps a refresh of the values ([`Refill`]),
    /// which `fill` reports `false` for when `w` has a non-zero outside the
    /// kept structure (the weight was changed by something other than a
    /// masked step) — the form is then rebuilt in full.
    pub(crate) fn get(
        &self,
        w: &[f32],
        training: bool,
        (max_density, masked_max): (f64, f64),
        pays: impl Fn(f64) -> bool,
        mut fill: impl FnMut(&mut T, &[f32], Refill) -> bool,
    ) -> Option<Ref<'_, T>> {
        if self.kernels == Kernels::Dense {
            return None;
        }
        // Inside a run of masked steps a stale form re-reads its values; if θ
        // has left the kept structure, the run ends and the form is rebuilt.
        if let (None, Some(d)) = (self.density.get(), self.run.get()) {
            let mut slot = self.form.borrow_mut();
            if fill(slot.get_or_insert_with(T::default), w, Refill::Values) {
                self.density.set(Some(d));
            } else {
                self.run.set(None);
            }
        }
        let density = match self.density.get() {
            Some(d) => d,
            None => {
                // A weight that was sparse at the last rebuild is rebuilt at
                // once (the rebuild counts its non-zeros: one pass over θ, not
                // two); any other is counted first. The density, and so every
                // decision below, is the same either way.
                let d = if self.built.get() {
                    let mut slot = self.form.borrow_mut();
                    let form = slot.get_or_insert_with(T::default);
                    fill(form, w, Refill::Full);
                    form.density()
                } else {
                    let d = bregman_tensor::sparse::density(w);
                    if d <= max_density {
                        let mut slot = self.form.borrow_mut();
                        fill(slot.get_or_insert_with(T::default), w, Refill::Full);
                    }
                    d
                };
                self.built.set(d <= max_density);
                if d <= max_density && self.weight_grad == WeightGrad::Support {
                    self.run.set(Some(d));
                }
                self.density.set(Some(d));
                d
            }
        };
        let on_support = training && self.weight_grad == WeightGrad::Support;
        let masked_pays = on_support && density <= masked_max;
        if density > max_density || !(masked_pays || pays(density)) {
            return None;
        }
        Ref::filter_map(self.form.borrow(), Option::as_ref).ok()
    }
}
