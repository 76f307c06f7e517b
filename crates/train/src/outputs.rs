//! What a run writes after every epoch: its metrics (one row of
//! `metrics.csv`, one entry of `metrics.json`), the log line, and the SVG
//! plots.

use serde::{Deserialize, Serialize};

use crate::plot::{line_chart, Series};

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

pub(crate) fn pct(x: Option<f64>) -> String {
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

pub(crate) fn opt_field(x: Option<f64>) -> String {
    x.map_or(String::new(), |v| format!("{v:.6}"))
}

pub(crate) fn nan_field(x: f64) -> String {
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
