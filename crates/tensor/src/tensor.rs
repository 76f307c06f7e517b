//! The [`Tensor`] type: an n-dimensional, row-major, contiguous array of `f32`.

use ndarray::{ArrayD, IxDyn};

use crate::TensorError;

/// An n-dimensional `f32` array, always row-major and contiguous (NCHW for images).
///
/// It wraps an [`ndarray::ArrayD`] whose memory layout is guaranteed to be the
/// standard (C) layout, so every kernel in this crate can work on a flat slice
/// via [`Tensor::data`] / [`Tensor::data_mut`] and hand raw strides to GEMM.
///
/// Constructors that take user data return [`Result`]; arithmetic on tensors of
/// incompatible shapes is a programming error and panics with the op name and
/// both shapes (see the `**Panics**` sections).
#[derive(Clone, PartialEq)]
pub struct Tensor {
    array: ArrayD<f32>,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor{:?} ", self.shape())?;
        let d = self.data();
        if d.len() <= 16 {
            write!(f, "{d:?}")
        } else {
            write!(
                f,
                "[{}, {}, ..., {}] ({} values)",
                d[0],
                d[1],
                d[d.len() - 1],
                d.len()
            )
        }
    }
}

impl Tensor {
    /// A tensor of zeros.
    pub fn zeros(shape: &[usize]) -> Tensor {
        Tensor {
            array: ArrayD::zeros(IxDyn(shape)),
        }
    }

    /// A tensor with every element equal to `value`.
    pub fn full(shape: &[usize], value: f32) -> Tensor {
        Tensor {
            array: ArrayD::from_elem(IxDyn(shape), value),
        }
    }

    /// A zero-dimensional tensor holding one value.
    pub fn scalar(value: f32) -> Tensor {
        Tensor::full(&[], value)
    }

    /// Builds a tensor from row-major `data`.
    ///
    /// **Errors** if `data.len()` is not the product of `shape`.
    pub fn from_vec(shape: &[usize], data: Vec<f32>) -> Result<Tensor, TensorError> {
        let expected: usize = shape.iter().product();
        if expected != data.len() {
            return Err(TensorError::LengthMismatch {
                shape: shape.to_vec(),
                expected,
                got: data.len(),
            });
        }
        let array = ArrayD::from_shape_vec(IxDyn(shape), data).map_err(|_| {
            TensorError::LengthMismatch {
                shape: shape.to_vec(),
                expected,
                got: 0,
            }
        })?;
        Ok(Tensor { array })
    }

    /// Builds a tensor by calling `f` with each flat (row-major) index.
    pub fn from_fn(shape: &[usize], mut f: impl FnMut(usize) -> f32) -> Tensor {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n).map(&mut f).collect();
        Tensor {
            array: ArrayD::from_shape_vec(IxDyn(shape), data).expect("length is the shape product"),
        }
    }

    /// Wraps an ndarray array, copying it into standard layout if needed.
    pub fn from_array(array: ArrayD<f32>) -> Tensor {
        if array.is_standard_layout() {
            Tensor { array }
        } else {
            Tensor {
                array: array.as_standard_layout().into_owned(),
            }
        }
    }

    /// The underlying ndarray view (standard layout).
    pub fn array(&self) -> &ArrayD<f32> {
        &self.array
    }

    /// Consumes the tensor and returns its values in row-major order.
    pub fn into_vec(self) -> Vec<f32> {
        let (v, offset) = self.array.into_raw_vec_and_offset();
        debug_assert!(offset.unwrap_or(0) == 0);
        v
    }

    /// The shape, outermost dimension first.
    pub fn shape(&self) -> &[usize] {
        self.array.shape()
    }

    /// Number of dimensions.
    pub fn ndim(&self) -> usize {
        self.array.ndim()
    }

    /// Total number of elements.
    pub fn len(&self) -> usize {
        self.array.len()
    }

    /// True when the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.array.is_empty()
    }

    /// The values, row-major.
    pub fn data(&self) -> &[f32] {
        self.array
            .as_slice()
            .expect("Tensor is always in standard layout")
    }

    /// The values, row-major, mutable.
    pub fn data_mut(&mut self) -> &mut [f32] {
        self.array
            .as_slice_mut()
            .expect("Tensor is always in standard layout")
    }

    /// The single value of a one-element tensor.
    ///
    /// **Panics** if the tensor does not have exactly one element.
    pub fn item(&self) -> f32 {
        assert_eq!(
            self.len(),
            1,
            "item: tensor of shape {:?} has {} elements",
            self.shape(),
            self.len()
        );
        self.data()[0]
    }

    /// Returns the same values under a new shape (no copy).
    ///
    /// **Errors** if the element counts differ.
    pub fn reshape(self, shape: &[usize]) -> Result<Tensor, TensorError> {
        let n: usize = shape.iter().product();
        if n != self.len() {
            return Err(TensorError::ShapeMismatch {
                op: "reshape",
                lhs: self.shape().to_vec(),
                rhs: shape.to_vec(),
            });
        }
        let data = self.into_vec();
        Tensor::from_vec(shape, data)
    }

    /// Size of dimension `axis`.
    ///
    /// **Panics** if `axis >= ndim`.
    pub fn dim(&self, axis: usize) -> usize {
        self.shape()[axis]
    }

    /// Largest absolute difference to `other` (shapes must match).
    ///
    /// **Panics** on a shape mismatch.
    pub fn max_abs_diff(&self, other: &Tensor) -> f32 {
        crate::assert_same_shape("max_abs_diff", self, other);
        self.data()
            .iter()
            .zip(other.data())
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()))
    }
}

/// Panics with the op name and both shapes unless `a` and `b` have the same shape.
#[track_caller]
pub fn assert_same_shape(op: &str, a: &Tensor, b: &Tensor) {
    assert!(
        a.shape() == b.shape(),
        "{op}: shape mismatch {:?} vs {:?}",
        a.shape(),
        b.shape()
    );
}
