//! Reductions: sums and means over everything or one axis, per-row argmax.
//!
//! All reductions are sequential or combine fixed-size chunks in order, so the
//! result never depends on the thread count.

use rayon::prelude::*;

use crate::parallel::sum_map;
use crate::Tensor;

/// Independent partial sums in [`lane_sum`]: enough to hide the latency of
/// `f64` additions and to fill a SIMD register.
const LANES: usize = 8;

/// `Σ f(x_i)` in `f64` with 8 interleaved partial sums, combined in a
/// fixed order: deterministic, and vectorisable (one running `f64` sum is
/// bound by the latency of each addition, ~4× slower on long slices).
#[inline]
pub fn lane_sum(x: &[f32], f: impl Fn(f32) -> f64) -> f64 {
    let mut acc = [0.0f64; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..LANES {
            acc[l] += f(c[l]);
        }
    }
    for (l, &v) in tail.iter().enumerate() {
        acc[l] += f(v);
    }
    acc.iter().sum()
}

/// `(Σ f(a_i, b_i), Σ h(a_i, b_i))` in one pass, with [`lane_sum`]'s 8 lanes.
///
/// **Panics** if the lengths differ.
#[inline]
pub fn lane_sum2(
    a: &[f32],
    b: &[f32],
    f: impl Fn(f32, f32) -> f64,
    h: impl Fn(f32, f32) -> f64,
) -> (f64, f64) {
    assert_eq!(a.len(), b.len(), "lane_sum2: length mismatch");
    let (mut s, mut t) = ([0.0f64; LANES], [0.0f64; LANES]);
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ta, tb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            s[l] += f(x[l], y[l]);
            t[l] += h(x[l], y[l]);
        }
    }
    for (l, (&x, &y)) in ta.iter().zip(tb).enumerate() {
        s[l] += f(x, y);
        t[l] += h(x, y);
    }
    (s.iter().sum(), t.iter().sum())
}

impl Tensor {
    /// Sum of all elements (accumulated in `f64`, deterministic).
    pub fn sum_all(&self) -> f32 {
        sum_map(self.data(), |x| x as f64) as f32
    }

    /// Mean of all elements (0 for an empty tensor).
    pub fn mean_all(&self) -> f32 {
        if self.is_empty() {
            return 0.0;
        }
        (sum_map(self.data(), |x| x as f64) / self.len() as f64) as f32
    }

    /// Sum of squares of all elements (accumulated in `f64`).
    pub fn sum_squares(&self) -> f64 {
        sum_map(self.data(), |x| (x as f64) * (x as f64))
    }

    /// Sum over one axis, removing it.
    ///
    /// **Panics** if `axis >= ndim`.
    pub fn sum_axis(&self, axis: usize) -> Tensor {
        assert!(
            axis < self.ndim(),
            "sum_axis: axis {axis} of shape {:?}",
            self.shape()
        );
        Tensor::from_array(self.array().sum_axis(ndarray::Axis(axis)))
    }

    /// Mean over one axis, removing it.
    ///
    /// **Panics** if `axis >= ndim`.
    pub fn mean_axis(&self, axis: usize) -> Tensor {
        let n = self.shape()[axis].max(1) as f32;
        let mut s = self.sum_axis(axis);
        s.scale_inplace(1.0 / n);
        s
    }

    /// For a tensor `[.., F]`, the sum over all leading dimensions: shape `[F]`
    /// (the gradient of a row bias).
    ///
    /// **Panics** on a 0-D tensor.
    pub fn sum_rows(&self) -> Tensor {
        assert!(self.ndim() >= 1, "sum_rows: 0-D tensor");
        let f = self.shape()[self.ndim() - 1];
        let mut out = vec![0.0f32; f];
        if f > 0 {
            for row in self.data().chunks(f) {
                out.iter_mut().zip(row).for_each(|(o, &x)| *o += x);
            }
        }
        Tensor::from_vec(&[f], out).expect("length f")
    }

    /// For an NCHW tensor, the sum over N, H and W: shape `[C]` (the gradient of a
    /// per-channel bias). Each channel is summed in `f64` in a fixed order.
    ///
    /// **Panics** unless 4-D.
    pub fn sum_channels(&self) -> Tensor {
        let (n, c, plane) = nchw_dims("sum_channels", self);
        let d = self.data();
        let out: Vec<f32> = (0..c)
            .into_par_iter()
            .map(|ch| {
                let mut s = 0.0f64;
                for i in 0..n {
                    let p = &d[(i * c + ch) * plane..(i * c + ch + 1) * plane];
                    s += lane_sum(p, |x| x as f64);
                }
                s as f32
            })
            .collect();
        Tensor::from_vec(&[c], out).expect("length c")
    }

    /// Index of the largest element of each row of a 2-D tensor (first one on ties).
    ///
    /// **Panics** unless 2-D.
    pub fn argmax_rows(&self) -> Vec<usize> {
        assert_eq!(
            self.ndim(),
            2,
            "argmax_rows: expected 2-D, got {:?}",
            self.shape()
        );
        let f = self.shape()[1];
        if f == 0 {
            return vec![0; self.shape()[0]];
        }
        self.data()
            .chunks(f)
            .map(|row| {
                let mut best = 0;
                for (j, &x) in row.iter().enumerate() {
                    if x > row[best] {
                        best = j;
                    }
                }
                best
            })
            .collect()
    }
}

/// `(N, C, H·W)` of a 4-D tensor. **Panics** unless 4-D.
#[track_caller]
pub(crate) fn nchw_dims(op: &str, t: &Tensor) -> (usize, usize, usize) {
    assert_eq!(
        t.ndim(),
        4,
        "{op}: expected an NCHW tensor, got shape {:?}",
        t.shape()
    );
    let s = t.shape();
    (s[0], s[1], s[2] * s[3])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_sums_match_plain_sums() {
        // Lengths around the lane count, including an empty slice and a tail;
        // the values are exact in f64, so any order gives the same sum.
        for len in [0usize, 1, 7, 8, 9, 30] {
            let a: Vec<f32> = (0..len).map(|i| i as f32 * 0.5 - 3.0).collect();
            let b: Vec<f32> = (0..len).map(|i| (i % 5) as f32).collect();
            let plain: f64 = a.iter().map(|&x| x as f64).sum();
            assert_eq!(lane_sum(&a, |x| x as f64), plain);
            let dot: f64 = a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum();
            let (s, t) = lane_sum2(&a, &b, |x, _| x as f64, |x, y| x as f64 * y as f64);
            assert_eq!((s, t), (plain, dot));
        }
    }
}
