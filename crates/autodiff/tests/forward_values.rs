//! Forward values and gradients against hand-computed results.

use bregman_autodiff::ops;
use bregman_autodiff::{Conv2dSpec, Tape};
use bregman_tensor::Tensor;

fn t(shape: &[usize], v: &[f32]) -> Tensor {
    Tensor::from_vec(shape, v.to_vec()).unwrap()
}

fn close(a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= tol, "{a:?} vs {b:?}");
    }
}

#[test]
fn linear_forward_and_backward_by_hand() {
    // x = [[1, 2]], W = [[1, 0], [0, 1], [1, 1]], b = [0.5, 0, -1]  → y = [1.5, 2, 2]
    let w = t(&[3, 2], &[1., 0., 0., 1., 1., 1.]);
    let b = t(&[3], &[0.5, 0., -1.]);
    let mut tape = Tape::new();
    let x = tape.leaf(t(&[1, 2], &[1., 2.]));
    let (wv, bv) = (tape.param(&w), tape.param(&b));
    let y = tape.linear(x, wv, Some(bv));
    assert_eq!(tape.value(y).data(), &[1.5, 2., 2.]);
    let s = tape.sum(y);
    tape.backward(s);
    // ∂Σy/∂W = 1ᵀx: every row is x; ∂/∂b = 1; ∂/∂x = column sums of W = [2, 2].
    assert_eq!(tape.grad_of(&w).unwrap().data(), &[1., 2., 1., 2., 1., 2.]);
    assert_eq!(tape.grad_of(&b).unwrap().data(), &[1., 1., 1.]);
    assert_eq!(tape.grad(x).unwrap().data(), &[2., 2.]);
}

#[test]
fn shared_parameter_accumulates() {
    // y = w·w (same tensor bound twice) → dy/dw = 2w.
    let w = t(&[1], &[3.0]);
    let mut tape = Tape::new();
    let a = tape.param(&w);
    let b = tape.param(&w);
    assert_eq!(a, b);
    let y = tape.mul(a, b);
    let s = tape.sum(y);
    tape.backward(s);
    assert_eq!(tape.take_grad_of(&w).unwrap().data(), &[6.0]);
}

#[test]
fn cross_entropy_by_hand() {
    // Logits [0, ln 3] for label 1: softmax = [1/4, 3/4], loss = −ln(3/4).
    let z = t(&[1, 2], &[0.0, 3f32.ln()]);
    let (loss, probs) = ops::cross_entropy::forward(&z, &[1]);
    close(&[loss], &[-(0.75f32).ln()], 1e-6);
    close(probs.data(), &[0.25, 0.75], 1e-6);
    // Huge logits stay finite (max subtracted).
    let (loss, _) = ops::cross_entropy::forward(&t(&[1, 2], &[1000.0, -1000.0]), &[1]);
    close(&[loss], &[2000.0], 1e-2);
}

#[test]
fn mse_by_hand() {
    assert_eq!(
        ops::mse::forward(&t(&[2], &[1., 3.]), &t(&[2], &[0., 1.])),
        2.5
    );
}

#[test]
fn conv2d_by_hand() {
    // 1×1×3×3 input, one 2×2 kernel of ones, bias 1: window sums + 1.
    let x = t(&[1, 1, 3, 3], &[1., 2., 3., 4., 5., 6., 7., 8., 9.]);
    let w = Tensor::full(&[1, 1, 2, 2], 1.0);
    let b = t(&[1], &[1.0]);
    let y = ops::conv2d::forward(
        &x,
        &w,
        Some(&b),
        Conv2dSpec {
            stride: 1,
            padding: 0,
        },
    );
    assert_eq!(y.shape(), [1, 1, 2, 2]);
    assert_eq!(y.data(), &[13., 17., 25., 29.]);
    // Two output channels see the input in the right order (channel-major result).
    let w2 = t(&[2, 1, 1, 1], &[1., -1.]);
    let y2 = ops::conv2d::forward(
        &x,
        &w2,
        None,
        Conv2dSpec {
            stride: 2,
            padding: 0,
        },
    );
    assert_eq!(y2.shape(), [1, 2, 2, 2]);
    assert_eq!(y2.data(), &[1., 3., 7., 9., -1., -3., -7., -9.]);
}

/// Direct convolution by its definition (cross-correlation, zero padding).
fn conv_by_definition(x: &Tensor, w: &Tensor, stride: usize, pad: usize) -> Tensor {
    let (n, c, h, wd) = (x.dim(0), x.dim(1), x.dim(2), x.dim(3));
    let (oc, k) = (w.dim(0), w.dim(2));
    let (oh, ow) = (
        (h + 2 * pad - k) / stride + 1,
        (wd + 2 * pad - k) / stride + 1,
    );
    let mut y = vec![0.0f32; n * oc * oh * ow];
    for i in 0..n {
        for o in 0..oc {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut s = 0.0f64;
                    for ch in 0..c {
                        for ky in 0..k {
                            for kx in 0..k {
                                let iy = (oy * stride + ky) as isize - pad as isize;
                                let ix = (ox * stride + kx) as isize - pad as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                    continue;
                                }
                                let xv =
                                    x.data()[((i * c + ch) * h + iy as usize) * wd + ix as usize];
                                let wv = w.data()[((o * c + ch) * k + ky) * k + kx];
                                s += (xv * wv) as f64;
                            }
                        }
                    }
                    y[((i * oc + o) * oh + oy) * ow + ox] = s as f32;
                }
            }
        }
    }
    Tensor::from_vec(&[n, oc, oh, ow], y).unwrap()
}

#[test]
fn conv2d_with_many_channels_matches_definition() {
    // Short and long patches (3·3·3 = 27, 32·3·3 = 288, 5·5·5 = 125), with
    // padding, stride and a bias (added per image after its GEMM).
    for &(c, oc, k, stride, pad) in &[(3, 4, 3, 1, 1), (32, 3, 3, 2, 1), (5, 2, 5, 1, 2)] {
        let x = Tensor::from_fn(&[2, c, 6, 5], |i| ((i * 37 % 23) as f32 - 11.0) / 8.0);
        let w = Tensor::from_fn(&[oc, c, k, k], |i| ((i * 53 % 19) as f32 - 9.0) / 16.0);
        let b = Tensor::from_fn(&[oc], |i| i as f32 - 0.75);
        let y = ops::conv2d::forward(
            &x,
            &w,
            Some(&b),
            Conv2dSpec {
                stride,
                padding: pad,
            },
        );
        let mut expected = conv_by_definition(&x, &w, stride, pad);
        let plane = expected.dim(2) * expected.dim(3);
        for (j, v) in expected.data_mut().iter_mut().enumerate() {
            *v += b.data()[j / plane % oc];
        }
        assert_eq!(y.shape(), expected.shape());
        for (a, b) in y.data().iter().zip(expected.data()) {
            assert!((a - b).abs() < 1e-4, "c{c} oc{oc} k{k}: {a} vs {b}");
        }
    }
}

#[test]
#[should_panic(expected = "bias [3] does not fit weight [2, 1, 3, 3]")]
fn conv2d_rejects_a_bias_of_the_wrong_length() {
    let x = Tensor::zeros(&[1, 1, 4, 4]);
    let w = Tensor::zeros(&[2, 1, 3, 3]);
    let b = Tensor::zeros(&[3]);
    let spec = Conv2dSpec {
        stride: 1,
        padding: 0,
    };
    ops::conv2d::forward(&x, &w, Some(&b), spec);
}

#[test]
fn batchnorm_normalises_each_channel() {
    // Channel 0 values {1, 3} (mean 2, var 1), channel 1 values {10, 10} (var 0).
    let x = t(&[2, 2, 1, 1], &[1., 10., 3., 10.]);
    let g = t(&[2], &[2., 1.]);
    let b = t(&[2], &[0.5, -1.]);
    let mut tape = Tape::new();
    let xv = tape.constant(x);
    let (gv, bv) = (tape.param(&g), tape.param(&b));
    let (y, stats) = tape.batchnorm(xv, gv, bv, 1e-5);
    assert_eq!(stats.mean, vec![2., 10.]);
    assert_eq!(stats.var, vec![1., 0.]);
    let s = 1.0 / (1.0f32 + 1e-5).sqrt();
    close(
        tape.value(y).data(),
        &[0.5 - 2. * s, -1., 0.5 + 2. * s, -1.],
        1e-5,
    );
}

#[test]
fn batchnorm_statistics_survive_a_large_offset() {
    // 4 images × 3×3 of 10000 ± (1, 2, 3): mean 10000 and variance 28/9,
    // eight orders of magnitude below the mean's square (a one-pass
    // E[x²] − μ² in f32 would lose it). The statistics come from shifted
    // one-pass sums (shift = the channel's first value, 10001 here).
    let dev = [1.0f32, -1., 2., -2., 3., -3., 0., 0., 0.];
    let x = Tensor::from_fn(&[4, 1, 3, 3], |i| {
        10_000.0 + dev[i % 9] * if i < 18 { 1.0 } else { -1.0 }
    });
    let (g, b) = (t(&[1], &[1.0]), t(&[1], &[0.0]));
    let mut tape = Tape::new();
    let xv = tape.constant(x);
    let (gv, bv) = (tape.param(&g), tape.param(&b));
    let (_, stats) = tape.batchnorm(xv, gv, bv, 1e-5);
    assert!((stats.mean[0] - 10_000.0).abs() < 1e-3, "{:?}", stats.mean);
    assert!((stats.var[0] - 28.0 / 9.0).abs() < 1e-4, "{:?}", stats.var);
}

#[test]
fn activations_by_hand() {
    let x = t(&[3], &[-1., 0., 2.]);
    let mut tape = Tape::new();
    let v = tape.leaf(x);
    let r = tape.relu(v);
    assert_eq!(tape.value(r).data(), &[0., 0., 2.]);
    let s = tape.sigmoid(v);
    close(
        tape.value(s).data(),
        &[0.268_941_42, 0.5, 0.880_797_1],
        1e-6,
    );
    let th = tape.tanh(v);
    close(
        tape.value(th).data(),
        &[-0.761_594_2, 0., 0.964_027_6],
        1e-6,
    );
}

#[test]
fn no_gradient_recorded_for_constants_only() {
    let mut tape = Tape::new();
    let a = tape.constant(t(&[2], &[1., 2.]));
    let b = tape.relu(a);
    assert!(!tape.requires_grad(b));
    let s = tape.sum(b);
    tape.backward(s);
    assert!(tape.grad(a).is_none());
}

#[test]
fn profiled_tape_times_every_node() {
    let w = t(&[2, 3], &[1., 0., -1., 0.5, 0.5, 0.5]);
    let mut tape = Tape::profiled();
    let wv = tape.param(&w);
    let xv = tape.constant(t(&[1, 3], &[1., 2., 3.]));
    let y = tape.linear(xv, wv, None);
    let r = tape.relu(y);
    let loss = tape.sum(r);
    tape.backward(loss);
    let timings = tape.timings().expect("a profiled tape has timings");
    assert_eq!(timings.len(), tape.len());
    let ops: Vec<&str> = timings.iter().map(|n| n.op.as_str()).collect();
    assert_eq!(ops, ["leaf", "leaf", "Linear", "Relu", "Sum"]);
    assert_eq!(timings[2].shape, [1, 2]);
    assert!(Tape::new().timings().is_none());
}
