//! The pruning and Lasso baselines' parts outside the optimizer: the
//! prune-and-retrain schedule's masks, and thresholding small weights.

use bregman_layers::{Module, Sequential};
use bregman_tensor::Tensor;

use crate::TrainConfig;

/// Epochs per prune-and-retrain phase: the run is split into `prune_rounds + 1` phases.
pub(crate) fn prune_phase(cfg: &TrainConfig) -> usize {
    (cfg.epochs / (cfg.prune_rounds + 1)).max(1)
}

/// Zeroes the pruned weights.
pub(crate) fn apply_masks(model: &mut Sequential, masks: &[Option<Vec<bool>>]) {
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
pub(crate) fn threshold_weights(model: &mut Sequential, threshold: f32) -> Vec<Tensor> {
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
