//! Convolution and batchnorm, forward and backward, give identical bits on
//! 1, 2 and 4 rayon threads (fixed chunking and fixed reduction order).

use bregman_autodiff::{Conv2dSpec, Tape, WeightGrad};
use bregman_tensor::Tensor;

fn values(shape: &[usize], seed: u32) -> Tensor {
    let mut s = seed | 1;
    Tensor::from_fn(shape, |_| {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        (s % 2000) as f32 / 1000.0 - 1.0
    })
}

/// Gradients of a conv → batchnorm → conv stack: a short-patch convolution
/// (1 input channel, 5×5: per-image GEMMs, grouped weight gradient) and a
/// long-patch one (32·3·3 = 288: one GEMM over all pixels), 20 images.
fn gradients() -> Vec<Vec<f32>> {
    let x = values(&[20, 1, 20, 20], 1);
    let w1 = values(&[32, 1, 5, 5], 2);
    let b1 = values(&[32], 3);
    let gamma = values(&[32], 4);
    let beta = values(&[32], 5);
    let w2 = values(&[8, 32, 3, 3], 6);
    let w3 = values(&[8, 32, 3, 3], 7);
    let mut tape = Tape::new();
    let xv = tape.leaf(x);
    let (w1v, b1v, gv, bv, w2v, w3v) = (
        tape.param(&w1),
        tape.param(&b1),
        tape.param(&gamma),
        tape.param(&beta),
        tape.param(&w2),
        tape.param(&w3),
    );
    let s1 = Conv2dSpec {
        stride: 1,
        padding: 0,
    };
    let s2 = Conv2dSpec {
        stride: 3,
        padding: 1,
    };
    let s3 = Conv2dSpec {
        stride: 1,
        padding: 1,
    };
    // Every weight-gradient path: conv1 a short patch (25), conv2 a long
    // patch (288) on tiny images (6×6), conv3 a long patch on large images
    // (16×16 = 256 pixels).
    let h = tape.conv2d(xv, w1v, Some(b1v), s1);
    let (h, _) = tape.batchnorm(h, gv, bv, 1e-5);
    let h2 = tape.conv2d(h, w2v, None, s2);
    let h3 = tape.conv2d(h, w3v, None, s3);
    let (l2, l3) = (tape.sum(h2), tape.sum(h3));
    let loss = tape.mul(l2, l3);
    tape.backward(loss);
    let mut out = vec![
        tape.value(h2).data().to_vec(),
        tape.value(h3).data().to_vec(),
    ];
    for v in [xv, w1v, b1v, gv, bv, w2v, w3v] {
        out.push(tape.grad(v).expect("gradient").data().to_vec());
    }
    out
}

#[test]
fn conv_and_batchnorm_agree_bitwise_across_thread_counts() {
    let run = |n| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .unwrap()
            .install(gradients)
    };
    let one = run(1);
    for n in [2, 4] {
        let other = run(n);
        for (i, (a, b)) in one.iter().zip(&other).enumerate() {
            assert!(a == b, "value {i} differs between 1 and {n} threads");
        }
    }
}

/// The sparse paths: a sparse dense layer (batch 300: several batch blocks
/// run as tasks; and batch 40: one block with its rows split) and a sparse
/// convolution, forward and all gradients, with the dense weight gradient
/// and the one on the support (sparse backpropagation).
fn sparse_gradients(batch: usize, weight_grad: WeightGrad) -> Vec<Vec<f32>> {
    use bregman_tensor::sparse::{SparseConv, SparseLinear};
    let sparsify = |t: Tensor, keep: usize| {
        let v = t
            .data()
            .iter()
            .enumerate()
            .map(|(i, &v)| if i % keep == 0 { v } else { 0.0 })
            .collect();
        Tensor::from_vec(t.shape(), v).unwrap()
    };
    let x = values(&[batch, 3, 10, 10], 11);
    let wc = sparsify(values(&[16, 3, 3, 3], 12), 7);
    let wl = sparsify(values(&[30, 16 * 10 * 10], 13), 20);
    let bl = values(&[30], 14);
    let sc = SparseConv::from_dense(wc.data(), [16, 3, 3, 3]);
    let sl = SparseLinear::from_dense(wl.data(), 30, 1600);
    let mut tape = Tape::new();
    let xv = tape.leaf(x);
    let (wcv, wlv, blv) = (tape.param(&wc), tape.param(&wl), tape.param(&bl));
    let spec = Conv2dSpec {
        stride: 1,
        padding: 1,
    };
    let h = tape.sparse_conv2d_with(xv, wcv, None, spec, &sc, weight_grad);
    let h = tape.reshape(h, &[batch, 1600]);
    let y = tape.sparse_linear_with(h, wlv, Some(blv), &sl, weight_grad);
    let loss = tape.sum(y);
    let loss = tape.mul(loss, loss);
    tape.backward(loss);
    let mut out = vec![tape.value(y).data().to_vec()];
    for v in [xv, wcv, wlv, blv] {
        out.push(tape.grad(v).expect("gradient").data().to_vec());
    }
    out
}

#[test]
fn sparse_kernels_agree_bitwise_across_thread_counts() {
    for (batch, weight_grad) in [
        (40, WeightGrad::Dense),
        (300, WeightGrad::Dense),
        (40, WeightGrad::Support),
        (300, WeightGrad::Support),
    ] {
        let run = |n| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap()
                .install(|| sparse_gradients(batch, weight_grad))
        };
        let one = run(1);
        for n in [2, 4] {
            let other = run(n);
            for (i, (a, b)) in one.iter().zip(&other).enumerate() {
                assert!(
                    a == b,
                    "batch {batch}: value {i} differs between 1 and {n} threads"
                );
            }
        }
    }
}
