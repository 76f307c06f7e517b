"""The SSIM reference figures of crates/train/src/metrics.rs and docs/RELIABILITY.md,
computed with scikit-image (pip install scikit-image; 0.26 was used).
Usage: python3 scripts/ssim_reference.py"""
import numpy as np
from skimage.metrics import structural_similarity as ssim

n = 28
i = np.arange(n * n)
x = (((i * 7) % 13) / 13.0).astype(np.float32)
y = np.clip(0.8 * x + 0.1 + 0.05 * np.sin(i.astype(np.float32)), 0, 1).astype(np.float32)
x, y = x.reshape(n, n).astype(np.float64), y.reshape(n, n).astype(np.float64)
ref = ssim(x, y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)
print(f"reference (Gaussian 11x11, sigma 1.5, population covariance): {ref!r}")
for name, kw in [
    ("uniform 11x11 window", dict(win_size=11, use_sample_covariance=False)),
    ("sample covariance", dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=True)),
    ("C = (0.01*255)^2", dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255.0)),
]:
    kw.setdefault("data_range", 1.0)
    v = ssim(x, y, **kw)
    print(f"{name}: {v!r} (differs by {abs(v - ref):.1e})")
