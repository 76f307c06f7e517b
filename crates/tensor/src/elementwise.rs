//! Element-wise arithmetic, in-place variants for hot paths, and the two
//! broadcasts the layers need (bias over rows, bias per channel of NCHW).

use rayon::prelude::*;

use crate::parallel::{map_inplace, zeroed_chunks, zip2, CHUNK, PAR_THRESHOLD};
use crate::{assert_same_shape, Tensor};

impl Tensor {
    /// Applies `f` to every element, returning a new tensor.
    pub fn map(&self, f: impl Fn(f32) -> f32 + Sync) -> Tensor {
        let mut out = self.clone();
        map_inplace(out.data_mut(), f);
        out
    }

    /// Applies `f` to every element in place.
    pub fn map_inplace(&mut self, f: impl Fn(f32) -> f32 + Sync) {
        map_inplace(self.data_mut(), f);
    }

    /// `f(self[i], other[i])` for every element.
    ///
    /// **Panics** if the shapes differ.
    pub fn zip_map(&self, other: &Tensor, f: impl Fn(f32, f32) -> f32 + Sync) -> Tensor {
        assert_same_shape("zip_map", self, other);
        let (a, b) = (self.data(), other.data());
        // Written chunk by chunk into a buffer zeroed in cache by each task.
        let out = zeroed_chunks(
            a.len(),
            CHUNK,
            a.len() >= PAR_THRESHOLD,
            || (),
            |_, i, o| {
                let (a, b) = (&a[i * CHUNK..][..o.len()], &b[i * CHUNK..][..o.len()]);
                for ((o, &x), &y) in o.iter_mut().zip(a).zip(b) {
                    *o = f(x, y);
                }
            },
        );
        Tensor::from_vec(self.shape(), out).expect("same length")
    }

    /// Element-wise sum. **Panics** if the shapes differ.
    pub fn add(&self, other: &Tensor) -> Tensor {
        assert_same_shape("add", self, other);
        self.zip_map(other, |a, b| a + b)
    }

    /// Element-wise difference. **Panics** if the shapes differ.
    pub fn sub(&self, other: &Tensor) -> Tensor {
        assert_same_shape("sub", self, other);
        self.zip_map(other, |a, b| a - b)
    }

    /// Element-wise (Hadamard) product. **Panics** if the shapes differ.
    pub fn mul(&self, other: &Tensor) -> Tensor {
        assert_same_shape("mul", self, other);
        self.zip_map(other, |a, b| a * b)
    }

    /// `s · self`.
    pub fn scale(&self, s: f32) -> Tensor {
        self.map(|a| a * s)
    }

    /// `self += other`. **Panics** if the shapes differ.
    pub fn add_assign(&mut self, other: &Tensor) {
        assert_same_shape("add_assign", self, other);
        zip2(self.data_mut(), other.data(), |o, x| *o += x);
    }

    /// `self += alpha · x` (BLAS axpy). **Panics** if the shapes differ.
    pub fn axpy(&mut self, alpha: f32, x: &Tensor) {
        assert_same_shape("axpy", self, x);
        zip2(self.data_mut(), x.data(), |o, v| *o += alpha * v);
    }

    /// `self *= s` in place.
    pub fn scale_inplace(&mut self, s: f32) {
        map_inplace(self.data_mut(), |a| a * s);
    }

    /// Sets every element to `value`.
    pub fn fill(&mut self, value: f32) {
        self.data_mut().fill(value);
    }

    /// Adds `bias` (shape `[F]`) to every row of a tensor whose last dimension is `F`
    /// (`y[.., j] += bias[j]`), in place.
    ///
    /// **Panics** if the last dimension is not `bias.len()`.
    pub fn add_row_bias_inplace(&mut self, bias: &Tensor) {
        let f = bias.len();
        assert!(
            self.ndim() >= 1 && self.shape()[self.ndim() - 1] == f && bias.ndim() == 1,
            "add_row_bias: tensor {:?} and bias {:?}",
            self.shape(),
            bias.shape()
        );
        let b = bias.data();
        let rows = |chunk: &mut [f32]| {
            for row in chunk.chunks_mut(f) {
                row.iter_mut().zip(b).for_each(|(y, &bj)| *y += bj);
            }
        };
        if self.len() < PAR_THRESHOLD || f == 0 {
            rows(self.data_mut());
        } else {
            let per = (PAR_THRESHOLD / f).max(1) * f;
            self.data_mut().par_chunks_mut(per).for_each(rows);
        }
    }

    /// General broadcasting sum (NumPy rules), used by the autodiff `add` op.
    ///
    /// **Panics** if the shapes cannot be broadcast together.
    pub fn broadcast_add(&self, other: &Tensor) -> Tensor {
        if self.shape() == other.shape() {
            return self.add(other);
        }
        let shape = broadcast_shape(self.shape(), other.shape()).unwrap_or_else(|| {
            panic!(
                "broadcast_add: shapes {:?} and {:?} do not broadcast",
                self.shape(),
                other.shape()
            )
        });
        let a = self
            .array()
            .broadcast(ndarray::IxDyn(&shape))
            .expect("checked above");
        let b = other
            .array()
            .broadcast(ndarray::IxDyn(&shape))
            .expect("checked above");
        Tensor::from_array(&a + &b)
    }

    /// Sums a broadcast result back down to `shape` (the adjoint of broadcasting).
    ///
    /// **Panics** if `shape` does not broadcast to `self.shape()`.
    pub fn sum_to_shape(&self, shape: &[usize]) -> Tensor {
        if self.shape() == shape {
            return self.clone();
        }
        assert!(
            broadcast_shape(self.shape(), shape).as_deref() == Some(self.shape()),
            "sum_to_shape: {:?} cannot be reduced to {:?}",
            self.shape(),
            shape
        );
        let mut a = self.array().clone();
        // Leading axes that `shape` lacks.
        while a.ndim() > shape.len() {
            a = a.sum_axis(ndarray::Axis(0));
        }
        // Axes where `shape` has size 1.
        for (axis, &s) in shape.iter().enumerate() {
            if s == 1 && a.shape()[axis] != 1 {
                a = a
                    .sum_axis(ndarray::Axis(axis))
                    .insert_axis(ndarray::Axis(axis));
            }
        }
        Tensor::from_array(a)
    }
}

/// The NumPy broadcast of two shapes, or `None` if they are incompatible.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i < n - a.len() {
            1
        } else {
            a[i - (n - a.len())]
        };
        let db = if i < n - b.len() {
            1
        } else {
            b[i - (n - b.len())]
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(out)
}
