//! Sparsity metrics (SPEC §4) and image-quality metrics for denoising.

use bregman_layers::{ParamKind, Parameter};
use serde::{Deserialize, Serialize};

/// Non-zeros of one weight tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerSparsity {
    /// Parameter name.
    pub name: String,
    /// Non-zero weights.
    pub nonzero: usize,
    /// All weights.
    pub total: usize,
    /// Rows (neurons of a dense layer, filters of a conv) with a non-zero weight.
    pub active_rows: usize,
    /// Rows.
    pub rows: usize,
    /// Non-zero `k×k` kernels (conv only; 0 for dense layers).
    pub nonzero_kernels: usize,
    /// Kernels (conv only).
    pub kernels: usize,
}

/// The sparsity of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sparsity {
    /// Non-zero fraction over all linear and conv weights.
    pub n_total: f64,
    /// Non-zero fraction over linear weights (eq. 4.2); `NaN` without linear layers.
    pub n_linear: f64,
    /// Non-zero kernel fraction over conv weights; `NaN` without conv layers.
    pub n_conv: f64,
    /// Per weight tensor.
    pub layers: Vec<LayerSparsity>,
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        f64::NAN
    } else {
        a as f64 / b as f64
    }
}

/// Sparsity of one weight tensor.
pub fn layer_sparsity(p: &Parameter) -> LayerSparsity {
    let shape = p.value.shape();
    let d = p.value.data();
    let rows = shape.first().copied().unwrap_or(1).max(1);
    let row_len = d.len() / rows;
    let nz = |s: &[f32]| s.iter().any(|&v| v != 0.0);
    let (nonzero_kernels, kernels) = if p.kind == ParamKind::ConvWeight && shape.len() == 4 {
        let k = (shape[2] * shape[3]).max(1);
        (d.chunks(k).filter(|c| nz(c)).count(), d.len() / k)
    } else {
        (0, 0)
    };
    LayerSparsity {
        name: p.name.clone(),
        nonzero: d.iter().filter(|&&v| v != 0.0).count(),
        total: d.len(),
        active_rows: if row_len == 0 {
            0
        } else {
            d.chunks(row_len).filter(|c| nz(c)).count()
        },
        rows,
        nonzero_kernels,
        kernels,
    }
}

/// `N_total`, `N_linear`, `N_conv` and per-layer counts of the weights in `params`.
pub fn sparsity(params: &[&Parameter]) -> Sparsity {
    let layers: Vec<(ParamKind, LayerSparsity)> = params
        .iter()
        .filter(|p| p.kind.is_weight())
        .map(|p| (p.kind, layer_sparsity(p)))
        .collect();
    let sum = |kind: Option<ParamKind>, f: fn(&LayerSparsity) -> (usize, usize)| {
        layers
            .iter()
            .filter(|(k, _)| kind.is_none_or(|kk| kk == *k))
            .map(|(_, l)| f(l))
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    };
    let (nz, tot) = sum(None, |l| (l.nonzero, l.total));
    let (lnz, ltot) = sum(Some(ParamKind::LinearWeight), |l| (l.nonzero, l.total));
    let (knz, ktot) = sum(Some(ParamKind::ConvWeight), |l| {
        (l.nonzero_kernels, l.kernels)
    });
    Sparsity {
        n_total: ratio(nz, tot),
        n_linear: ratio(lnz, ltot),
        n_conv: ratio(knz, ktot),
        layers: layers.into_iter().map(|(_, l)| l).collect(),
    }
}

/// Peak signal-to-noise ratio of images in [0, 1]: `10·log10(1/MSE)`.
pub fn psnr(x: &[f32], y: &[f32]) -> f64 {
    let mse = x
        .iter()
        .zip(y)
        .map(|(&a, &b)| ((a - b) as f64).powi(2))
        .sum::<f64>()
        / x.len().max(1) as f64;
    10.0 * (1.0 / mse.max(1e-20)).log10()
}

/// Structural similarity of two `h×w` images in [0, 1] (Wang et al. 2004):
/// 11×11 Gaussian window with σ = 1.5, `C₁ = (0.01)²`, `C₂ = (0.03)²`, the
/// mean over the positions where the window fits ("valid").
///
/// **Panics** if the slices are not `h·w` long.
pub fn ssim(x: &[f32], y: &[f32], h: usize, w: usize) -> f64 {
    assert!(
        x.len() == h * w && y.len() == h * w,
        "ssim: images must be {h}×{w}"
    );
    const K: usize = 11;
    let sigma = 1.5f64;
    let g: Vec<f64> = (0..K)
        .map(|i| (-((i as f64 - 5.0).powi(2)) / (2.0 * sigma * sigma)).exp())
        .collect();
    let gs: f64 = g.iter().sum();
    let (c1, c2) = (0.01f64.powi(2), 0.03f64.powi(2));
    if h < K || w < K {
        return f64::NAN;
    }
    let mut total = 0.0;
    let mut count = 0usize;
    for i in 0..=h - K {
        for j in 0..=w - K {
            let (mut mx, mut my, mut sxx, mut syy, mut sxy) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for a in 0..K {
                for b in 0..K {
                    let wt = g[a] * g[b] / (gs * gs);
                    let (xv, yv) = (x[(i + a) * w + j + b] as f64, y[(i + a) * w + j + b] as f64);
                    mx += wt * xv;
                    my += wt * yv;
                    sxx += wt * xv * xv;
                    syy += wt * yv * yv;
                    sxy += wt * xv * yv;
                }
            }
            let (vx, vy, cxy) = (sxx - mx * mx, syy - my * my, sxy - mx * my);
            total += ((2.0 * mx * my + c1) * (2.0 * cxy + c2))
                / ((mx * mx + my * my + c1) * (vx + vy + c2));
            count += 1;
        }
    }
    total / count as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use bregman_tensor::Tensor;

    #[test]
    fn sparsity_counts() {
        let w = Parameter::new(
            "fc.weight",
            ParamKind::LinearWeight,
            Tensor::from_vec(&[2, 2], vec![0., 1., 0., 0.]).unwrap(),
        );
        let c = Parameter::new(
            "conv.weight",
            ParamKind::ConvWeight,
            Tensor::from_fn(&[1, 2, 1, 2], |i| if i < 2 { 1.0 } else { 0.0 }),
        );
        let b = Parameter::new("fc.bias", ParamKind::Bias, Tensor::full(&[2], 1.0));
        let s = sparsity(&[&w, &c, &b]);
        assert_eq!(s.n_total, 3.0 / 8.0);
        assert_eq!(s.n_linear, 0.25);
        assert_eq!(s.n_conv, 0.5);
        assert_eq!((s.layers[0].active_rows, s.layers[0].rows), (1, 2));
    }

    #[test]
    fn ssim_and_psnr_values() {
        let x: Vec<f32> = (0..16 * 16).map(|i| ((i * 7) % 13) as f32 / 13.0).collect();
        assert!((ssim(&x, &x, 16, 16) - 1.0).abs() < 1e-12);
        let y: Vec<f32> = x.iter().map(|v| 1.0 - v).collect();
        assert!(
            ssim(&x, &y, 16, 16) < 0.0,
            "inverted image must anti-correlate"
        );
        let z: Vec<f32> = x.iter().map(|v| v + 0.1).collect();
        assert!((psnr(&x, &z) - 20.0).abs() < 1e-4);
    }

    /// Constant images have zero variances and covariance, so SSIM reduces
    /// to its luminance term `(2ab + C₁)/(a² + b² + C₁)`.
    #[test]
    fn ssim_of_constant_images_is_the_luminance_term() {
        for (a, b) in [(0.3f32, 0.7f32), (0.0, 1.0), (0.5, 0.5), (0.9, 0.1)] {
            let (x, y) = (vec![a; 28 * 28], vec![b; 28 * 28]);
            let (a, b, c1) = (a as f64, b as f64, 1e-4);
            let want = (2.0 * a * b + c1) / (a * a + b * b + c1);
            assert!((ssim(&x, &y, 28, 28) - want).abs() < 1e-12, "{a} {b}");
        }
    }

    /// A reference value from an independent implementation of Wang et al.'s
    /// definition: scikit-image 0.26,
    /// `structural_similarity(x, y, gaussian_weights=True, sigma=1.5,
    /// use_sample_covariance=False, data_range=1.0)` on these 28×28 images
    /// (its Gaussian filter truncated at 3.5σ is the 11×11 window, and it
    /// averages over the positions where the window fits) gives
    /// 0.9661497847956646 (`scripts/ssim_reference.py`). A uniform window, sample covariance or
    /// `C = (0.01·255)²` all move the value by more than the tolerance.
    #[test]
    fn ssim_matches_scikit_image_on_a_fixed_pair() {
        let x: Vec<f32> = (0..28 * 28).map(|i| ((i * 7) % 13) as f32 / 13.0).collect();
        let y: Vec<f32> = x
            .iter()
            .enumerate()
            .map(|(i, &v)| (0.8 * v + 0.1 + 0.05 * (i as f32).sin()).clamp(0.0, 1.0))
            .collect();
        let got = ssim(&x, &y, 28, 28);
        assert!((got - 0.966_149_784_795_664_6).abs() < 1e-8, "{got}");
    }
}
