//! The fused `conv → max pool → ReLU` op gives the bits of the three ops run
//! one after another, forward and every gradient, and passes a
//! finite-difference gradient check of its own.

use bregman_autodiff::ops::conv2d_pool_relu::{self, fusable};
use bregman_autodiff::ops::sparse_conv2d;
use bregman_autodiff::{check_gradients, Conv2dSpec, PoolSpec, Tape};
use bregman_tensor::Tensor;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Values on a coarse grid (multiples of 1/8), so that convolution outputs
/// tie within pooling windows and hit exactly 0 at the ReLU — the cases where
/// a fused rule that picks another winner or masks differently would show.
fn coarse(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Tensor::from_fn(shape, |_| rng.gen_range(-4i32..=4) as f32 / 8.0)
}

fn random(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Tensor::from_fn(shape, |_| rng.gen_range(-1.0f32..1.0))
}

struct Case {
    x: [usize; 4],
    w: [usize; 4],
    spec: Conv2dSpec,
    pool: PoolSpec,
    bias: bool,
    /// Whether `x` needs a gradient (a first layer's input does not).
    x_grad: bool,
}

/// Forward values and the gradients of `Σ y ⊙ r` (a random upstream
/// gradient `r`) with respect to x (if asked), w and b, fused or not.
fn run(case: &Case, x: &Tensor, w: &Tensor, b: &Tensor, r: &Tensor, fused: bool) -> Vec<Vec<f32>> {
    run_on(case, (x, w, b, r), None, fused)
}

fn cases() -> Vec<Case> {
    let (s1p0, s2p1) = (
        Conv2dSpec {
            stride: 1,
            padding: 0,
        },
        Conv2dSpec {
            stride: 2,
            padding: 1,
        },
    );
    let pool = |kernel, stride| PoolSpec { kernel, stride };
    vec![
        // The paper ConvNet's two layers, scaled down: one input channel and
        // a 5×5 kernel (short patch), then a long patch (8·5·5 = 200) on 8×8.
        Case {
            x: [8, 1, 14, 14],
            w: [6, 1, 5, 5],
            spec: s1p0,
            pool: pool(2, 2),
            bias: true,
            x_grad: false,
        },
        Case {
            x: [9, 8, 12, 12],
            w: [5, 8, 5, 5],
            spec: s1p0,
            pool: pool(2, 2),
            bias: true,
            x_grad: true,
        },
        // Strided and padded, an odd output (7×7: the last row and column are
        // not pooled), no bias; overlapping 3×3 windows with stride 1.
        Case {
            x: [5, 3, 13, 13],
            w: [4, 3, 3, 3],
            spec: s2p1,
            pool: pool(2, 2),
            bias: false,
            x_grad: true,
        },
        Case {
            x: [4, 2, 9, 9],
            w: [3, 2, 3, 3],
            spec: s1p0,
            pool: pool(3, 1),
            bias: true,
            x_grad: true,
        },
    ]
}

#[test]
fn fused_op_gives_the_bits_of_conv_pool_relu() {
    for (i, case) in cases().iter().enumerate() {
        assert!(fusable(&case.x, &case.w, case.spec, case.pool), "case {i}");
        for (seed, values) in [(0u64, coarse as fn(&[usize], u64) -> Tensor), (1, random)] {
            let s = seed * 10 + i as u64 * 100;
            let (x, w, b) = (
                values(&case.x, s),
                values(&case.w, s + 1),
                values(&[case.w[0]], s + 2),
            );
            // The output's shape, from a run of the unfused chain.
            let mut tape = Tape::new();
            let (xv, wv) = (tape.constant(x.clone()), tape.constant(w.clone()));
            let c = tape.conv2d(xv, wv, None, case.spec);
            let p = tape.maxpool2d(c, case.pool.kernel, case.pool.stride);
            let r = values(tape.value(p).shape(), s + 3);
            let fused = run(case, &x, &w, &b, &r, true);
            let unfused = run(case, &x, &w, &b, &r, false);
            assert_eq!(fused.len(), unfused.len());
            for (k, (f, u)) in fused.iter().zip(&unfused).enumerate() {
                let same =
                    f.len() == u.len() && f.iter().zip(u).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(
                    same,
                    "case {i}, seed {seed}: output {k} differs from the unfused ops"
                );
            }
            let zeros = fused[0].iter().filter(|&&v| v == 0.0).count();
            assert!(
                zeros > 0 && zeros < fused[0].len(),
                "case {i}: the ReLU should cut some outputs"
            );
        }
    }
}

#[test]
fn fused_forward_without_tape_matches_the_tape() {
    let case = &cases()[1];
    let (x, w, b) = (
        random(&case.x, 7),
        random(&case.w, 8),
        random(&[case.w[0]], 9),
    );
    let y = conv2d_pool_relu::forward(&x, &w, Some(&b), case.spec, case.pool);
    let mut tape = Tape::new();
    let (xv, wv, bv) = (tape.constant(x.clone()), tape.param(&w), tape.param(&b));
    let yv = tape.conv2d_pool_relu(xv, wv, Some(bv), case.spec, case.pool);
    assert_eq!(y.shape(), tape.value(yv).shape());
    assert_eq!(y.data(), tape.value(yv).data());
}

#[test]
fn fused_op_gradient_check() {
    let spec = Conv2dSpec {
        stride: 1,
        padding: 1,
    };
    let pool = PoolSpec {
        kernel: 2,
        stride: 2,
    };
    // A central difference is only valid where the function is smooth within
    // ±ε of the point: take the first inputs whose convolution outputs stay
    // clear of the ReLU's kink and of ties within a window by more than any
    // ±ε step of one input (ε = 1e-2) can move them.
    let (shapes, eps) = ([[4, 2, 6, 6], [3, 2, 3, 3]], 1e-2f32);
    let inputs = (0..200u64)
        .map(|seed| {
            let (x, w, b) = (
                random(&shapes[0], 3 * seed),
                random(&shapes[1], 3 * seed + 1),
                random(&[3], 3 * seed + 2),
            );
            let reach = 2.0
                * eps
                * w.data()
                    .iter()
                    .chain(x.data())
                    .fold(1.0f32, |m, v| m.max(v.abs()));
            (kink_margin(&x, &w, &b, spec) > reach).then_some(vec![x, w, b])
        })
        .find_map(|inputs| inputs)
        .expect("inputs clear of every kink among 200 seeds");
    ok(check_gradients(&inputs, |t, v| {
        t.conv2d_pool_relu(v[0], v[1], Some(v[2]), spec, pool)
    }));
}

/// The smallest distance of a 2×2 window's maximum from 0 and from the
/// window's second largest value, over the convolution's output.
fn kink_margin(x: &Tensor, w: &Tensor, b: &Tensor, spec: Conv2dSpec) -> f32 {
    let c = bregman_autodiff::ops::conv2d::forward(x, w, Some(b), spec);
    let (h, wd) = (c.dim(2), c.dim(3));
    let mut margin = f32::INFINITY;
    for plane in c.data().chunks(h * wd) {
        for oy in 0..h / 2 {
            for ox in 0..wd / 2 {
                let mut v: Vec<f32> = [(0, 0), (0, 1), (1, 0), (1, 1)]
                    .iter()
                    .map(|(dy, dx)| plane[(2 * oy + dy) * wd + 2 * ox + dx])
                    .collect();
                v.sort_by(|a, b| b.total_cmp(a));
                margin = margin.min(v[0].abs()).min(v[0] - v[1]);
            }
        }
    }
    margin
}

fn ok(r: Result<(), String>) {
    if let Err(e) = r {
        panic!("gradient check failed: {e}");
    }
}

#[test]
fn what_cannot_be_fused_is_refused() {
    let spec = Conv2dSpec {
        stride: 1,
        padding: 0,
    };
    let pool = PoolSpec {
        kernel: 2,
        stride: 2,
    };
    // Fewer than 4 images (they run one after another with parallel GEMMs).
    assert!(!fusable(&[3, 1, 8, 8], &[2, 1, 3, 3], spec, pool));
    // A pool window larger than the convolution's output.
    let big = PoolSpec {
        kernel: 7,
        stride: 1,
    };
    assert!(!fusable(&[4, 1, 8, 8], &[2, 1, 3, 3], spec, big));
    // Channels that do not match, and a long patch on tiny images (the weight
    // gradient needs the whole batch's columns).
    assert!(!fusable(&[4, 2, 8, 8], &[2, 1, 3, 3], spec, pool));
    assert!(!fusable(&[4, 64, 6, 6], &[2, 64, 3, 3], spec, pool));
    assert!(fusable(&[4, 1, 8, 8], &[2, 1, 3, 3], spec, pool));
}

#[test]
fn fused_op_gives_the_same_bits_on_1_2_and_4_threads() {
    let case = &cases()[1];
    let (x, w, b) = (
        random(&case.x, 11),
        random(&case.w, 12),
        random(&[case.w[0]], 13),
    );
    let r = random(&[9, 5, 4, 4], 14);
    let on = |threads| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("thread pool")
            .install(|| run(case, &x, &w, &b, &r, true))
    };
    let one = on(1);
    for threads in [2, 4] {
        assert!(on(threads) == one, "{threads} threads differ from 1");
    }
}

/// The sparse path's fused inference (`sparse_conv2d::forward_pool_relu`)
/// gives the bits of the sparse convolution, max pooling and ReLU run one
/// after another, at densities from 0 to 1, on the stride-1 cases (the sparse
/// kernels take stride 1 only) and with padding, for batches of one and
/// more (serial and parallel images); what does not fit is refused.
#[test]
fn sparse_fused_inference_gives_the_bits_of_the_three_ops() {
    use bregman_autodiff::ops::{maxpool2d, relu::Relu, unary};
    use bregman_tensor::sparse::SparseConv;
    let s1p1 = Conv2dSpec {
        stride: 1,
        padding: 1,
    };
    let mut all = cases();
    all.retain(|c| c.spec.stride == 1);
    all.push(Case {
        x: [3, 2, 8, 7],
        w: [4, 2, 3, 3],
        spec: s1p1,
        pool: PoolSpec {
            kernel: 2,
            stride: 2,
        },
        bias: true,
        x_grad: false,
    });
    for case in &all {
        for density in [0.0, 0.05, 0.3, 1.0] {
            for n in [1, case.x[0]] {
                let mut xs = case.x;
                xs[0] = n;
                let x = coarse(&xs, 1);
                let mut w = coarse(&case.w, 2);
                let keep = (density * 1000.0) as usize;
                for (i, v) in w.data_mut().iter_mut().enumerate() {
                    if (i * 7919) % 1000 >= keep {
                        *v = 0.0;
                    }
                }
                let b = case.bias.then(|| coarse(&[case.w[0]], 3));
                let sparse = SparseConv::from_dense(w.data(), case.w);
                assert!(sparse_conv2d::pool_fits(&xs, case.w, case.spec, case.pool));
                let fused =
                    sparse_conv2d::forward_pool_relu(&x, &sparse, b.as_ref(), case.spec, case.pool);
                let conv = sparse_conv2d::forward(&x, &sparse, b.as_ref(), case.spec);
                let pooled = maxpool2d::forward(&conv, case.pool.kernel, case.pool.stride);
                let want = unary::forward::<Relu>(&pooled);
                assert_eq!(fused.shape(), want.shape());
                assert!(
                    fused.data() == want.data(),
                    "{:?} {:?} batch {n} density {density}",
                    case.x,
                    case.w
                );
            }
        }
    }
    let pool = |kernel, stride| PoolSpec { kernel, stride };
    // A window larger than the output, a stride-2 convolution, wrong channels.
    assert!(!sparse_conv2d::pool_fits(
        &[2, 1, 6, 6],
        [3, 1, 5, 5],
        all[0].spec,
        pool(3, 1)
    ));
    let s2 = Conv2dSpec {
        stride: 2,
        padding: 0,
    };
    assert!(!sparse_conv2d::pool_fits(
        &[2, 1, 9, 9],
        [3, 1, 3, 3],
        s2,
        pool(2, 2)
    ));
    assert!(!sparse_conv2d::pool_fits(
        &[2, 2, 9, 9],
        [3, 1, 3, 3],
        all[0].spec,
        pool(2, 2)
    ));
}

/// [`run`] on the dense path (`sparse` is `None`) or on the sparse one:
/// `sparse_conv2d_pool_relu` (fused) or `sparse_conv2d → maxpool2d → relu`,
/// with `sparse` the form of `w`.
fn run_on(
    case: &Case,
    (x, w, b, r): (&Tensor, &Tensor, &Tensor, &Tensor),
    sparse: Option<&bregman_tensor::sparse::SparseConv>,
    fused: bool,
) -> Vec<Vec<f32>> {
    let mut tape = Tape::new();
    let xv = if case.x_grad {
        tape.leaf(x.clone())
    } else {
        tape.constant(x.clone())
    };
    let (wv, bv) = (tape.param(w), tape.param(b));
    let bv = case.bias.then_some(bv);
    let y = match (sparse, fused) {
        (None, true) => tape.conv2d_pool_relu(xv, wv, bv, case.spec, case.pool),
        (Some(s), true) => tape.sparse_conv2d_pool_relu(xv, wv, bv, case.spec, case.pool, s),
        (sparse, false) => {
            let c = match sparse {
                Some(s) => tape.sparse_conv2d(xv, wv, bv, case.spec, s),
                None => tape.conv2d(xv, wv, bv, case.spec),
            };
            let p = tape.maxpool2d(c, case.pool.kernel, case.pool.stride);
            tape.relu(p)
        }
    };
    let rv = tape.constant(r.clone());
    let weighted = tape.mul(y, rv);
    let loss = tape.sum(weighted);
    tape.backward(loss);
    let mut out = vec![tape.value(y).data().to_vec()];
    let mut vars = vec![wv];
    if case.x_grad {
        vars.push(xv);
    }
    vars.extend(bv);
    for v in vars {
        out.push(tape.grad(v).expect("gradient").data().to_vec());
    }
    out
}

/// The fused op on the sparse path (training): forward and every gradient
/// (the dense weight gradient, the sparse input gradient, the bias) give the
/// bits of the sparse convolution, max pooling and ReLU run one by one, at
/// densities from 0 to 1, on the stride-1 cases.
#[test]
fn sparse_fused_op_gives_the_bits_of_the_three_ops() {
    use bregman_tensor::sparse::SparseConv;
    for (i, case) in cases().iter().enumerate() {
        if case.spec.stride != 1 {
            continue;
        }
        for density in [0.0, 0.05, 0.3, 1.0] {
            let s = i as u64 * 100;
            let (x, mut w, b) = (
                coarse(&case.x, s),
                coarse(&case.w, s + 1),
                coarse(&[case.w[0]], s + 2),
            );
            let keep = (density * 1000.0) as usize;
            for (j, v) in w.data_mut().iter_mut().enumerate() {
                if (j * 7919) % 1000 >= keep {
                    *v = 0.0;
                }
            }
            let sparse = SparseConv::from_dense(w.data(), case.w);
            let y = sparse_conv2d::forward_pool_relu(&x, &sparse, None, case.spec, case.pool);
            let r = random(y.shape(), s + 3);
            let fused = run_on(case, (&x, &w, &b, &r), Some(&sparse), true);
            let unfused = run_on(case, (&x, &w, &b, &r), Some(&sparse), false);
            assert_eq!(fused.len(), unfused.len());
            for (k, (f, u)) in fused.iter().zip(&unfused).enumerate() {
                let same =
                    f.len() == u.len() && f.iter().zip(u).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "case {i}, density {density}: output {k} differs");
            }
        }
    }
}
