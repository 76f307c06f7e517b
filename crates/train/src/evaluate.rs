//! Evaluation of a model on a data set (loss, accuracy, SSIM, PSNR), on
//! one process or split over the ranks of a data-parallel run, and
//! inference throughput.

use std::time::Instant;

use bregman_data::{batches, Dataset};
use bregman_layers::{Module, Sequential};

use crate::comm::{share, Comm};
use crate::metrics::{psnr, ssim};
use crate::setup::{batch_options, is_denoising};
use crate::{TrainConfig, TrainError};

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

/// This rank's contiguous share of `ds` for [`evaluate_shared`] (made once
/// per run, not per evaluation).
pub fn rank_share(ds: &Dataset, comm: &dyn Comm) -> Dataset {
    let (lo, hi) = share(ds.len(), comm.rank(), comm.size());
    ds.subset(&(lo..hi).collect::<Vec<_>>())
}

/// [`evaluate`] split over the ranks of `comm`: each evaluates its share
/// ([`rank_share`]; the whole set on one process), and the sums are added up
/// (the same result on every rank).
///
/// **Errors** if the model rejects the data.
pub fn evaluate_shared(
    model: &mut Sequential,
    cfg: &TrainConfig,
    mine: &Dataset,
    comm: &dyn Comm,
) -> Result<Evaluation, TrainError> {
    if comm.size() == 1 {
        return evaluate(model, cfg, mine);
    }
    let s = EvalSums::of(model, cfg, mine)?;
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
pub(crate) struct EvalSums {
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
            let y = model.infer(&model.flatten_input(batch.x))?;
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
