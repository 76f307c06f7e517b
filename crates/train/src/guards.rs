//! The checks that stop a run rather than let it produce nonsense: splits
//! too small to measure on, a diverging loss, and the early-stopping rule.

use crate::setup::is_denoising;
use crate::{TrainConfig, TrainError};

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

/// Refuses splits a run cannot be measured on: no training, validation or
/// test images, or a validation split too small for the plateau scheduler.
pub(crate) fn check_split_sizes(
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
