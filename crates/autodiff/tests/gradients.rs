//! A finite-difference gradient check for every differentiable op (see
//! `gradcheck.rs` for the method and tolerances), plus one composite network.

use bregman_autodiff::{check_gradients, Backward, Conv2dSpec, GradCheck, Tape, Var, WeightGrad};
use bregman_tensor::Tensor;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn rand_tensor(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Tensor::from_fn(shape, |_| rng.gen_range(-1.0f32..1.0))
}

/// Values bounded away from 0 (for ReLU's kink) and pairwise distinct enough
/// that a ±ε step never changes a max-pool winner.
fn distinct_tensor(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, rng.gen_range(0..=i));
    }
    // Spacing 0.1 between neighbours (ε = 1e-2), and never within 0.05 of 0.
    Tensor::from_fn(shape, |i| (order[i] as f32 - n as f32 / 2.0) * 0.1 + 0.05)
}

fn ok(r: Result<(), String>) {
    if let Err(e) = r {
        panic!("gradient check failed: {e}");
    }
}

#[test]
fn add_broadcast() {
    ok(check_gradients(
        &[rand_tensor(&[3, 4], 1), rand_tensor(&[4], 2)],
        |t, v| t.add(v[0], v[1]),
    ));
    ok(check_gradients(
        &[rand_tensor(&[2, 3, 2, 2], 3), rand_tensor(&[3, 1, 1], 4)],
        |t, v| t.add(v[0], v[1]),
    ));
}

#[test]
fn sub_broadcast() {
    ok(check_gradients(
        &[rand_tensor(&[3, 4], 5), rand_tensor(&[1, 4], 6)],
        |t, v| t.sub(v[0], v[1]),
    ));
}

#[test]
fn mul_broadcast() {
    ok(check_gradients(
        &[rand_tensor(&[3, 4], 7), rand_tensor(&[3, 4], 8)],
        |t, v| t.mul(v[0], v[1]),
    ));
    ok(check_gradients(
        &[rand_tensor(&[3, 4], 9), rand_tensor(&[4], 10)],
        |t, v| t.mul(v[0], v[1]),
    ));
}

#[test]
fn scale() {
    ok(check_gradients(&[rand_tensor(&[5], 11)], |t, v| {
        t.scale(v[0], -2.5)
    }));
}

#[test]
fn matmul() {
    ok(check_gradients(
        &[rand_tensor(&[3, 5], 12), rand_tensor(&[5, 4], 13)],
        |t, v| t.matmul(v[0], v[1]),
    ));
}

#[test]
fn linear_with_and_without_bias() {
    let x = rand_tensor(&[4, 6], 14);
    let w = rand_tensor(&[3, 6], 15);
    let b = rand_tensor(&[3], 16);
    ok(check_gradients(&[x.clone(), w.clone(), b], |t, v| {
        t.linear(v[0], v[1], Some(v[2]))
    }));
    ok(check_gradients(&[x, w], |t, v| t.linear(v[0], v[1], None)));
}

/// The sparse path: `W` with most entries exactly zero, its CSR form rebuilt
/// from the (perturbed) value on every evaluation. The weight gradient is
/// dense — checked at the zero entries too — and equals the dense op's.
#[test]
fn sparse_linear_with_and_without_bias() {
    use bregman_tensor::sparse::SparseLinear;
    let x = rand_tensor(&[5, 9], 30);
    let mut w = rand_tensor(&[4, 9], 31);
    for (i, v) in w.data_mut().iter_mut().enumerate() {
        if i % 3 != 0 {
            *v = 0.0;
        }
    }
    let b = rand_tensor(&[4], 32);
    let sparse_of = |t: &Tape, w: Var| {
        let wv = t.value(w);
        Box::new(SparseLinear::from_dense(wv.data(), wv.dim(0), wv.dim(1)))
    };
    ok(check_gradients(
        &[x.clone(), w.clone(), b.clone()],
        |t, v| {
            let s = sparse_of(t, v[1]);
            t.sparse_linear(v[0], v[1], Some(v[2]), s)
        },
    ));
    ok(check_gradients(&[x.clone(), w.clone()], |t, v| {
        let s = sparse_of(t, v[1]);
        t.sparse_linear(v[0], v[1], None, s)
    }));
    // Same value and gradients as the dense op.
    let grads = |sparse: bool| {
        let mut t = Tape::new();
        let (xv, wv, bv) = (t.leaf(x.clone()), t.leaf(w.clone()), t.leaf(b.clone()));
        let y = if sparse {
            let s = sparse_of(&t, wv);
            t.sparse_linear(xv, wv, Some(bv), s)
        } else {
            t.linear(xv, wv, Some(bv))
        };
        let yv = t.value(y).clone();
        t.backward_with(y, rand_tensor(yv.shape(), 33));
        [
            yv,
            t.grad(xv).unwrap().clone(),
            t.grad(wv).unwrap().clone(),
            t.grad(bv).unwrap().clone(),
        ]
    };
    for (s, d) in grads(true).iter().zip(grads(false).iter()) {
        assert!(
            s.max_abs_diff(d) < 1e-5,
            "sparse and dense ops differ by {}",
            s.max_abs_diff(d)
        );
    }
}

/// The sparse convolution (stride 1, with and without padding and bias):
/// half the kernels zero, the rest with zero taps, the sparse form rebuilt
/// from the perturbed weight on every evaluation; value and gradients equal
/// the dense op's.
#[test]
fn sparse_conv2d_with_and_without_bias() {
    use bregman_tensor::sparse::SparseConv;
    let x = rand_tensor(&[2, 3, 6, 5], 40);
    let mut w = rand_tensor(&[4, 3, 3, 3], 41);
    for (i, v) in w.data_mut().iter_mut().enumerate() {
        if (i / 9) % 2 == 0 || i % 4 == 1 {
            *v = 0.0;
        }
    }
    let b = rand_tensor(&[4], 42);
    let sparse_of = |t: &Tape, w: Var| {
        let wv = t.value(w);
        let s = wv.shape();
        Box::new(SparseConv::from_dense(wv.data(), [s[0], s[1], s[2], s[3]]))
    };
    for padding in [0, 1] {
        let spec = Conv2dSpec { stride: 1, padding };
        ok(check_gradients(
            &[x.clone(), w.clone(), b.clone()],
            |t, v| {
                let s = sparse_of(t, v[1]);
                t.sparse_conv2d(v[0], v[1], Some(v[2]), spec, s)
            },
        ));
        ok(check_gradients(&[x.clone(), w.clone()], |t, v| {
            let s = sparse_of(t, v[1]);
            t.sparse_conv2d(v[0], v[1], None, spec, s)
        }));
        let grads = |sparse: bool| {
            let mut t = Tape::new();
            let (xv, wv, bv) = (t.leaf(x.clone()), t.leaf(w.clone()), t.leaf(b.clone()));
            let y = if sparse {
                let s = sparse_of(&t, wv);
                t.sparse_conv2d(xv, wv, Some(bv), spec, s)
            } else {
                t.conv2d(xv, wv, Some(bv), spec)
            };
            let yv = t.value(y).clone();
            t.backward_with(y, rand_tensor(yv.shape(), 43));
            [
                yv,
                t.grad(xv).unwrap().clone(),
                t.grad(wv).unwrap().clone(),
                t.grad(bv).unwrap().clone(),
            ]
        };
        for (s, d) in grads(true).iter().zip(grads(false).iter()) {
            assert!(
                s.max_abs_diff(d) < 1e-5,
                "sparse and dense convolutions differ by {}",
                s.max_abs_diff(d)
            );
        }
    }
}

/// 1 where `w` is non-zero, 0 elsewhere.
fn support_mask(w: &Tensor) -> Tensor {
    Tensor::from_fn(w.shape(), |i| if w.data()[i] != 0.0 { 1.0 } else { 0.0 })
}

/// The masked weight gradient, checked by finite differences: through
/// `F(x, w, b) = op(x, w ⊙ M, b)` with `M` the support of the starting
/// weight, whose true gradient in `w` is `M ⊙ ∂L/∂W` — exactly what
/// [`WeightGrad::Support`] must return (its finite differences off the
/// support are 0, so a gradient there fails the check). Also equal, at
/// every entry, to the dense op's gradient times the mask.
#[test]
fn sparse_linear_weight_grad_on_the_support() {
    use bregman_tensor::sparse::SparseLinear;
    for n in [1, 5] {
        let x = rand_tensor(&[n, 9], 50);
        let mut w = rand_tensor(&[4, 9], 51);
        w.data_mut().iter_mut().enumerate().for_each(|(i, v)| {
            if i % 3 != 1 {
                *v = 0.0
            }
        });
        let (b, mask) = (rand_tensor(&[4], 52), support_mask(&w));
        let masked = |t: &mut Tape, v: &[Var], bias: bool| {
            let m = t.constant(mask.clone());
            let wm = t.mul(v[1], m);
            let wv = t.value(wm);
            let s = Box::new(SparseLinear::from_dense(wv.data(), 4, 9));
            t.sparse_linear_with(v[0], wm, bias.then(|| v[2]), s, WeightGrad::Support)
        };
        ok(check_gradients(
            &[x.clone(), w.clone(), b.clone()],
            |t, v| masked(t, v, true),
        ));
        ok(check_gradients(&[x.clone(), w.clone()], |t, v| {
            masked(t, v, false)
        }));
        let grad_w = |support: bool| {
            let mut t = Tape::new();
            let (xv, wv) = (t.leaf(x.clone()), t.leaf(w.clone()));
            let y = if support {
                let s = Box::new(SparseLinear::from_dense(w.data(), 4, 9));
                t.sparse_linear_with(xv, wv, None, s, WeightGrad::Support)
            } else {
                t.linear(xv, wv, None)
            };
            t.backward_with(y, rand_tensor(&[n, 4], 53));
            t.grad(wv).unwrap().clone()
        };
        let (s, d) = (grad_w(true), grad_w(false));
        let want = Tensor::from_fn(d.shape(), |i| d.data()[i] * mask.data()[i]);
        assert!(
            s.max_abs_diff(&want) < 1e-5,
            "batch {n}: {}",
            s.max_abs_diff(&want)
        );
        assert!(
            s.data()
                .iter()
                .zip(mask.data())
                .all(|(g, m)| *m != 0.0 || *g == 0.0),
            "a gradient off the support"
        );
    }
}

/// As [`sparse_linear_weight_grad_on_the_support`], for the convolution
/// (zero kernels and zero taps, with and without padding).
#[test]
fn sparse_conv2d_weight_grad_on_the_support() {
    use bregman_tensor::sparse::SparseConv;
    let x = rand_tensor(&[3, 2, 6, 5], 60);
    let mut w = rand_tensor(&[4, 2, 3, 3], 61);
    w.data_mut().iter_mut().enumerate().for_each(|(i, v)| {
        if (i / 9) % 3 == 0 || i % 4 == 1 {
            *v = 0.0
        }
    });
    let (b, mask) = (rand_tensor(&[4], 62), support_mask(&w));
    for padding in [0, 1] {
        let spec = Conv2dSpec { stride: 1, padding };
        ok(check_gradients(
            &[x.clone(), w.clone(), b.clone()],
            |t, v| {
                let m = t.constant(mask.clone());
                let wm = t.mul(v[1], m);
                let s = Box::new(SparseConv::from_dense(t.value(wm).data(), [4, 2, 3, 3]));
                t.sparse_conv2d_with(v[0], wm, Some(v[2]), spec, s, WeightGrad::Support)
            },
        ));
        let grad_w = |support: bool| {
            let mut t = Tape::new();
            let (xv, wv) = (t.leaf(x.clone()), t.leaf(w.clone()));
            let y = if support {
                let s = Box::new(SparseConv::from_dense(w.data(), [4, 2, 3, 3]));
                t.sparse_conv2d_with(xv, wv, None, spec, s, WeightGrad::Support)
            } else {
                t.conv2d(xv, wv, None, spec)
            };
            let shape = t.value(y).shape().to_vec();
            t.backward_with(y, rand_tensor(&shape, 63));
            t.grad(wv).unwrap().clone()
        };
        let (s, d) = (grad_w(true), grad_w(false));
        let want = Tensor::from_fn(d.shape(), |i| d.data()[i] * mask.data()[i]);
        assert!(
            s.max_abs_diff(&want) < 1e-5,
            "padding {padding}: {}",
            s.max_abs_diff(&want)
        );
    }
}

#[test]
fn relu() {
    ok(check_gradients(&[distinct_tensor(&[4, 5], 17)], |t, v| {
        t.relu(v[0])
    }));
}

#[test]
fn sigmoid() {
    ok(check_gradients(
        &[rand_tensor(&[4, 5], 18).scale(3.0)],
        |t, v| t.sigmoid(v[0]),
    ));
}

#[test]
fn tanh() {
    ok(check_gradients(
        &[rand_tensor(&[4, 5], 19).scale(2.0)],
        |t, v| t.tanh(v[0]),
    ));
}

#[test]
fn reshape_and_flatten() {
    ok(check_gradients(
        &[rand_tensor(&[2, 3, 2, 2], 20)],
        |t, v| t.flatten(v[0]),
    ));
    ok(check_gradients(&[rand_tensor(&[6, 4], 21)], |t, v| {
        let r = t.reshape(v[0], &[3, 8]);
        // Something position-dependent after the reshape.
        let w = t.constant(rand_tensor(&[3, 8], 22));
        t.mul(r, w)
    }));
    // Flattening what is already flat is the identity: the same variable.
    ok(check_gradients(&[rand_tensor(&[6, 4], 23)], |t, v| {
        let f = t.flatten(v[0]);
        assert_eq!(f, v[0], "flatten of a flat tensor records nothing");
        let w = t.constant(rand_tensor(&[6, 4], 24));
        t.mul(f, w)
    }));
}

#[test]
fn conv2d_stride1_with_bias() {
    let spec = Conv2dSpec {
        stride: 1,
        padding: 0,
    };
    ok(check_gradients(
        &[
            rand_tensor(&[2, 3, 6, 5], 23),
            rand_tensor(&[4, 3, 3, 3], 24),
            rand_tensor(&[4], 25),
        ],
        |t, v| t.conv2d(v[0], v[1], Some(v[2]), spec),
    ));
}

#[test]
fn conv2d_stride2_padding1() {
    let spec = Conv2dSpec {
        stride: 2,
        padding: 1,
    };
    ok(check_gradients(
        &[
            rand_tensor(&[2, 2, 7, 6], 26),
            rand_tensor(&[3, 2, 3, 3], 27),
        ],
        |t, v| t.conv2d(v[0], v[1], None, spec),
    ));
}

/// A long patch (29·3·3 = 261 values) on large images (16×16 = 256 output
/// pixels): the weight gradient accumulates image by image, not through one
/// GEMM over all pixels (that path is checked with small images below).
#[test]
fn conv2d_long_patch_on_large_images() {
    let spec = Conv2dSpec {
        stride: 1,
        padding: 1,
    };
    ok(check_gradients(
        &[
            rand_tensor(&[2, 29, 16, 16], 40),
            rand_tensor(&[2, 29, 3, 3], 41),
            rand_tensor(&[2], 42),
        ],
        |t, v| t.conv2d(v[0], v[1], Some(v[2]), spec),
    ));
}

#[test]
fn conv2d_1x1_stride2() {
    let spec = Conv2dSpec {
        stride: 2,
        padding: 0,
    };
    ok(check_gradients(
        &[
            rand_tensor(&[2, 3, 4, 4], 28),
            rand_tensor(&[5, 3, 1, 1], 29),
        ],
        |t, v| t.conv2d(v[0], v[1], None, spec),
    ));
}

#[test]
fn maxpool2d() {
    ok(check_gradients(
        &[distinct_tensor(&[2, 3, 4, 6], 30)],
        |t, v| t.maxpool2d(v[0], 2, 2),
    ));
    // Overlapping windows (kernel 3, stride 1) route several outputs to one input.
    ok(check_gradients(
        &[distinct_tensor(&[1, 2, 5, 5], 31)],
        |t, v| t.maxpool2d(v[0], 3, 1),
    ));
}

#[test]
fn global_avg_pool() {
    ok(check_gradients(
        &[rand_tensor(&[2, 3, 3, 2], 32)],
        |t, v| t.global_avg_pool(v[0]),
    ));
}

#[test]
fn batchnorm_train_mode_4d_and_2d() {
    let check = GradCheck::default();
    ok(check.check(
        &[
            rand_tensor(&[3, 2, 3, 3], 33).scale(2.0),
            rand_tensor(&[2], 34),
            rand_tensor(&[2], 35),
        ],
        |t, v| t.batchnorm(v[0], v[1], v[2], 1e-5).0,
    ));
    ok(check.check(
        &[
            rand_tensor(&[6, 3], 36),
            rand_tensor(&[3], 37),
            rand_tensor(&[3], 38),
        ],
        |t, v| t.batchnorm(v[0], v[1], v[2], 1e-5).0,
    ));
}

#[test]
fn cross_entropy() {
    let labels = [2usize, 0, 4, 1];
    ok(check_gradients(
        &[rand_tensor(&[4, 5], 39).scale(3.0)],
        |t, v| t.cross_entropy(v[0], &labels),
    ));
}

#[test]
fn mse() {
    let target = rand_tensor(&[3, 4], 40);
    ok(check_gradients(&[rand_tensor(&[3, 4], 41)], move |t, v| {
        t.mse(v[0], target.clone())
    }));
}

#[test]
fn sum_and_mean() {
    ok(check_gradients(&[rand_tensor(&[3, 4], 42)], |t, v| {
        t.sum(v[0])
    }));
    ok(check_gradients(&[rand_tensor(&[3, 4], 43)], |t, v| {
        t.mean(v[0])
    }));
}

#[test]
fn composite_small_convnet() {
    // conv → batchnorm → relu → maxpool → flatten → linear → tanh/sigmoid mix → cross-entropy,
    // with a weight used twice (shared parameter accumulates both paths).
    let labels = [1usize, 0, 2];
    let inputs = [
        rand_tensor(&[3, 2, 6, 6], 44),
        rand_tensor(&[4, 2, 3, 3], 45),
        rand_tensor(&[4], 46),
        rand_tensor(&[4], 47),
        rand_tensor(&[3, 16], 48),
        rand_tensor(&[3], 49),
    ];
    // Ten ops deep (batchnorm, max-pool, two squashings): the central
    // difference's truncation error reaches ~1% of these small derivatives.
    let check = GradCheck {
        eps: 1e-2,
        atol: 1e-2,
        rtol: 1e-2,
    };
    ok(check.check(&inputs, |t, v| {
        let c = t.conv2d(
            v[0],
            v[1],
            None,
            Conv2dSpec {
                stride: 1,
                padding: 1,
            },
        );
        let (b, _) = t.batchnorm(c, v[2], v[3], 1e-5);
        let r = t.relu(b);
        let p = t.maxpool2d(r, 3, 3);
        let f = t.flatten(p);
        let z = t.linear(f, v[4], Some(v[5]));
        let s = t.sigmoid(z);
        let th = t.tanh(z);
        let zz = t.add(s, th);
        let z2 = t.add(zz, v[5]);
        t.cross_entropy(z2, &labels)
    }));
}

/// A test-only op: `forward` computes the value from the inputs, `rule`
/// is the (possibly wrong) backward rule under test.
struct Mutant<F: Fn(&[&Tensor], Tensor) -> Vec<Option<Tensor>>>(F);

impl<F: Fn(&[&Tensor], Tensor) -> Vec<Option<Tensor>>> Backward for Mutant<F> {
    fn backward(
        &self,
        inputs: &[&Tensor],
        _: &Tensor,
        g: Tensor,
        _: &[bool],
    ) -> Vec<Option<Tensor>> {
        (self.0)(inputs, g)
    }
}

/// Records `value` as a function of `inputs` with the backward `rule`.
fn mutant<'t>(
    t: &mut Tape<'t>,
    inputs: &[Var],
    value: Tensor,
    rule: impl Fn(&[&Tensor], Tensor) -> Vec<Option<Tensor>> + 't,
) -> Var {
    t.push(value, inputs, Mutant(rule))
}

fn must_fail(name: &str, r: Result<(), String>) {
    assert!(
        r.is_err(),
        "the wrong rule '{name}' passed the gradient check"
    );
}

/// The harness must be able to fail, on subtle errors too: every rule below
/// is wrong, and every one must be rejected.
#[test]
fn harness_catches_a_wrong_rule() {
    // A factor 2: the derivative of 2x is 2, not 4.
    must_fail(
        "factor 2",
        check_gradients(&[rand_tensor(&[3], 50)], |t, v| {
            let y = t.value(v[0]).scale(2.0);
            mutant(t, &[v[0]], y, |_, g| vec![Some(g.scale(4.0))])
        }),
    );
    // A 2% scale error.
    must_fail(
        "2% scale",
        check_gradients(&[rand_tensor(&[8], 51)], |t, v| {
            let y = t.value(v[0]).scale(2.0);
            mutant(t, &[v[0]], y, |_, g| vec![Some(g.scale(2.04))])
        }),
    );
    // A mean that divides its gradient by n − 1 (n = 12).
    must_fail(
        "mean over n - 1",
        check_gradients(&[rand_tensor(&[3, 4], 52)], |t, v| {
            let x = t.value(v[0]);
            let n = x.len();
            let y = Tensor::from_vec(&[1], vec![x.data().iter().sum::<f32>() / n as f32]).unwrap();
            mutant(t, &[v[0]], y, move |inp, g| {
                let gv = g.data()[0] / (n - 1) as f32;
                vec![Some(Tensor::from_fn(inp[0].shape(), |_| gv))]
            })
        }),
    );
    // `x + b` over a batch of 256: b's gradient (a sum over the batch) is
    // large; x's is 5% too large. A tolerance scaled by the largest
    // gradient of all inputs let this through.
    must_fail(
        "5% error beside a large bias gradient",
        check_gradients(
            &[rand_tensor(&[256, 3], 53), rand_tensor(&[3], 54)],
            |t, v| {
                let (x, b) = (t.value(v[0]), t.value(v[1]));
                let y = Tensor::from_fn(x.shape(), |i| x.data()[i] + b.data()[i % 3]);
                mutant(t, &[v[0], v[1]], y, |_, g| {
                    let mut db = vec![0.0f32; 3];
                    g.data()
                        .iter()
                        .enumerate()
                        .for_each(|(i, &gv)| db[i % 3] += gv);
                    vec![
                        Some(g.scale(1.05)),
                        Some(Tensor::from_vec(&[3], db).unwrap()),
                    ]
                })
            },
        ),
    );
    // Max-pool (2×2, stride 2) with one window's gradient sent to the wrong input.
    must_fail(
        "misrouted max-pool index",
        check_gradients(&[distinct_tensor(&[1, 1, 2, 4], 55)], |t, v| {
            let x = t.value(v[0]).clone();
            let argmax = move |w: usize| {
                let idx = [2 * w, 2 * w + 1, 4 + 2 * w, 5 + 2 * w];
                *idx.iter()
                    .max_by(|&&a, &&b| x.data()[a].total_cmp(&x.data()[b]))
                    .unwrap()
            };
            let y = Tensor::from_fn(&[1, 1, 1, 2], |w| t.value(v[0]).data()[argmax(w)]);
            mutant(t, &[v[0]], y, move |_, g| {
                let mut dx = vec![0.0f32; 8];
                dx[argmax(0)] += g.data()[0];
                // Window 1's winner, off by one position (within the window).
                let wrong = if argmax(1) == 2 { 3 } else { 2 };
                dx[wrong] += g.data()[1];
                vec![Some(Tensor::from_vec(&[1, 1, 2, 4], dx).unwrap())]
            })
        }),
    );
    // A forward pass that yields NaN: the difference quotient is NaN, and a
    // NaN must never compare as a match.
    must_fail(
        "NaN finite difference",
        check_gradients(&[rand_tensor(&[4], 56)], |t, v| {
            let x = t.value(v[0]);
            let y = Tensor::from_fn(x.shape(), |i| if i == 2 { f32::NAN } else { x.data()[i] });
            mutant(t, &[v[0]], y, |_, g| vec![Some(g)])
        }),
    );
    // The same harness accepts the right rules of these ops.
    ok(check_gradients(&[rand_tensor(&[8], 57)], |t, v| {
        let y = t.value(v[0]).scale(2.0);
        mutant(t, &[v[0]], y, |_, g| vec![Some(g.scale(2.0))])
    }));
}

#[test]
fn broadcast_left_operand_and_an_input_used_twice() {
    ok(check_gradients(
        &[rand_tensor(&[4], 60), rand_tensor(&[3, 4], 61)],
        |t, v| t.add(v[0], v[1]),
    ));
    ok(check_gradients(
        &[rand_tensor(&[1, 4], 62), rand_tensor(&[3, 4], 63)],
        |t, v| t.sub(v[0], v[1]),
    ));
    ok(check_gradients(
        &[rand_tensor(&[3, 1, 1], 64), rand_tensor(&[2, 3, 2, 2], 65)],
        |t, v| t.mul(v[0], v[1]),
    ));
    // add(x, x) and mul(x, x): both paths accumulate into one gradient.
    ok(check_gradients(&[rand_tensor(&[5], 66)], |t, v| {
        t.add(v[0], v[0])
    }));
    ok(check_gradients(&[rand_tensor(&[5], 67)], |t, v| {
        t.mul(v[0], v[0])
    }));
}

/// Ties are not differentiable, so no finite difference can check them; the
/// rule's behaviour is checked instead: each window's gradient goes, whole,
/// to exactly one of its tied inputs (a subgradient), also where windows overlap.
#[test]
fn maxpool_backward_with_ties_routes_each_window_to_one_input() {
    for (kernel, stride) in [(2, 2), (3, 1)] {
        let x = Tensor::from_fn(&[1, 1, 5, 5], |i| if i % 2 == 0 { 1.0 } else { 0.5 });
        let x = if kernel == 2 {
            Tensor::from_fn(&[1, 1, 4, 4], |_| 1.0)
        } else {
            x
        };
        let mut tape = Tape::new();
        let xv = tape.leaf(x.clone());
        let y = tape.maxpool2d(xv, kernel, stride);
        let out = tape.value(y).clone();
        let g = Tensor::from_fn(out.shape(), |i| 1.0 + i as f32);
        tape.backward_with(y, g.clone());
        let dx = tape.grad(xv).unwrap().clone();
        // The gradient's total is the outputs' total: nothing lost, nothing doubled.
        let (sum_dx, sum_g): (f32, f32) = (dx.data().iter().sum(), g.data().iter().sum());
        assert_eq!(sum_dx, sum_g, "kernel {kernel} stride {stride}");
        // Only maximal inputs receive gradient.
        let max = x.data().iter().cloned().fold(f32::MIN, f32::max);
        for (i, (&d, &xi)) in dx.data().iter().zip(x.data()).enumerate() {
            assert!(d == 0.0 || xi == max, "input {i} ({xi}) got {d}");
        }
        if kernel == 2 {
            // Non-overlapping windows of equal values: one input per window.
            assert_eq!(dx.data().iter().filter(|&&d| d != 0.0).count(), out.len());
        }
    }
}

/// Batches of ≥ 4 images run the per-image parallel path, and patches of ≥ 256
/// values on small images the weight gradient's single GEMM over all pixels:
/// check both.
#[test]
fn conv2d_parallel_image_path_and_big_patch_path() {
    let spec = Conv2dSpec {
        stride: 1,
        padding: 1,
    };
    ok(check_gradients(
        &[
            rand_tensor(&[5, 2, 4, 4], 51),
            rand_tensor(&[3, 2, 3, 3], 52),
            rand_tensor(&[3], 53),
        ],
        |t, v| t.conv2d(v[0], v[1], Some(v[2]), spec),
    ));
    // C·k·k = 29·3·3 = 261 ≥ 256.
    let check = GradCheck::default();
    ok(check.check(
        &[
            rand_tensor(&[4, 29, 3, 3], 54),
            rand_tensor(&[2, 29, 3, 3], 55),
        ],
        |t, v| {
            t.conv2d(
                v[0],
                v[1],
                None,
                Conv2dSpec {
                    stride: 2,
                    padding: 1,
                },
            )
        },
    ));
    // Big patch, 10 images and a bias: pixel-major forward with the bias added
    // after the transpose, per-image input gradients in parallel.
    ok(check.check(
        &[
            rand_tensor(&[10, 29, 4, 4], 56),
            rand_tensor(&[2, 29, 3, 3], 57),
            rand_tensor(&[2], 58),
        ],
        |t, v| {
            t.conv2d(
                v[0],
                v[1],
                Some(v[2]),
                Conv2dSpec {
                    stride: 1,
                    padding: 0,
                },
            )
        },
    ));
}
