//! Sparse kernels against the dense path they replace, over a density sweep.
//!
//! `cargo bench --bench sparse`. Ids are `<layer>/<density %>`; functions
//! `dense` (what the layer runs without the sparse path: the GEMM rule of
//! `bregman_tensor::gemm`), `sparse` (the CSR kernel, including the
//! activation transposes around it) and `refill` (rebuilding the sparse form
//! from θ, done once per optimizer step); for the dense layers also the weight
//! gradient, dense against sampled on the support (`--sparse-backprop`'s
//! masked steps). Densities 1, 2, 5, 10, 25 and 50%,
//! batch 128 and 1. The break-even densities recorded in docs/BENCHMARKS.md
//! come from this sweep.

use bregman::autodiff::ops;
use bregman::tensor::sparse::SparseLinear;
use bregman::tensor::{matmul, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::hint::black_box;

const DENSITIES: &[f64] = &[0.01, 0.02, 0.05, 0.10, 0.25, 0.50];

/// Reproducible values in [-1, 1].
fn values(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s % 1000) as f32 / 500.0 - 1.0
        })
        .collect()
}

/// A `[rows, cols]` weight with `density` of its entries non-zero, at random places.
fn sparse_weight(rows: usize, cols: usize, density: f64, seed: u32) -> Tensor {
    let keep = values(rows * cols, seed ^ 0x77);
    let w = values(rows * cols, seed)
        .into_iter()
        .zip(keep)
        .map(|(v, k)| {
            if ((k + 1.0) / 2.0) < density as f32 {
                v
            } else {
                0.0
            }
        })
        .collect();
    Tensor::from_vec(&[rows, cols], w).expect("shape")
}

fn bench_linear(c: &mut Criterion) {
    bregman::tune_allocator();
    // (name, in, out): the MNIST MLP's first layer and a denoiser layer.
    for (name, input, out) in [("mlp_fc1", 784, 200), ("denoiser", 784, 784)] {
        for batch in [128usize, 1] {
            let mut group = c.benchmark_group(format!("sparse_linear_{name}_b{batch}"));
            let x = Tensor::from_vec(&[batch, input], values(batch * input, 1)).expect("x");
            let g = Tensor::from_vec(&[batch, out], values(batch * out, 2)).expect("g");
            let b = Tensor::from_vec(&[out], values(out, 3)).expect("b");
            for &d in DENSITIES {
                let w = sparse_weight(out, input, d, 4);
                let s = SparseLinear::from_dense(w.data(), out, input);
                let id = format!("{:.0}", d * 100.0);
                group.bench_function(BenchmarkId::new("dense_forward", &id), |bch| {
                    bch.iter(|| ops::linear::forward(black_box(&x), &w, Some(&b)))
                });
                group.bench_function(BenchmarkId::new("sparse_forward", &id), |bch| {
                    bch.iter(|| s.forward(black_box(x.data()), batch, Some(b.data())))
                });
                group.bench_function(BenchmarkId::new("dense_input_grad", &id), |bch| {
                    bch.iter(|| matmul(black_box(&g), false, &w, false))
                });
                group.bench_function(BenchmarkId::new("sparse_input_grad", &id), |bch| {
                    bch.iter(|| s.input_grad(black_box(g.data()), batch))
                });
                // The weight gradient: dense `Gᵀ·X` against the sampled one on
                // the support (a masked step of --sparse-backprop, with the
                // transposes of G and X it needs).
                group.bench_function(BenchmarkId::new("dense_weight_grad", &id), |bch| {
                    bch.iter(|| matmul(black_box(&g), true, &x, false))
                });
                group.bench_function(BenchmarkId::new("sparse_weight_grad", &id), |bch| {
                    bch.iter(|| s.weight_grad(black_box(g.data()), x.data(), batch))
                });
                if batch == 128 && d == DENSITIES[0] {
                    group.bench_function(BenchmarkId::new("transpose_x", &id), |bch| {
                        bch.iter(|| {
                            bregman::tensor::transpose::transpose(black_box(x.data()), batch, input)
                        })
                    });
                    let xt = bregman::tensor::transpose::transpose(x.data(), batch, input);
                    let mut yt = vec![0.0; batch * out];
                    group.bench_function(BenchmarkId::new("spmm_only", &id), |bch| {
                        bch.iter(|| {
                            bregman::tensor::sparse::spmm::spmm(
                                s.weight(),
                                black_box(&xt),
                                batch,
                                batch,
                                &mut yt,
                                true,
                            )
                        })
                    });
                    group.bench_function(BenchmarkId::new("spmm_serial", &id), |bch| {
                        bch.iter(|| {
                            bregman::tensor::sparse::spmm::spmm(
                                s.weight(),
                                black_box(&xt),
                                batch,
                                batch,
                                &mut yt,
                                false,
                            )
                        })
                    });
                }
                if batch == 128 {
                    group.bench_function(BenchmarkId::new("count_nonzero", &id), |bch| {
                        bch.iter(|| bregman::tensor::sparse::count_nonzero(black_box(w.data())))
                    });
                    let mut r = s.clone();
                    group.bench_function(BenchmarkId::new("refill", &id), |bch| {
                        bch.iter(|| r.refill(black_box(w.data()), out, input))
                    });
                }
            }
            group.finish();
        }
    }
}

/// The MNIST MLP (784-200-80-10) with 3% of its weights non-zero (the main
/// job's checkpoint keeps 2.97%), whole-model inference and one training
/// step's forward and backward (sparse forward and input gradients, dense
/// weight gradients, the sparse forms rebuilt first as after an optimizer
/// step), with the sparse kernels (`auto`) and without (`dense`).
fn bench_mlp(c: &mut Criterion) {
    bregman::tune_allocator();
    use bregman::autodiff::Tape;
    use bregman::layers::{models, Kernels, Module};
    use bregman::optim::init::{sparse_init, SparseInit};
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut model = models::mlp(&[784, 200, 80, 10], &mut rng);
    sparse_init(&mut model.params_mut(), &SparseInit::mlp(0.03), &mut rng).expect("init");
    for batch in [128usize, 1] {
        let mut group = c.benchmark_group(format!("sparse_mlp_3pct_b{batch}"));
        let x = Tensor::from_vec(&[batch, 784], values(batch * 784, 5)).expect("x");
        let labels: Vec<usize> = (0..batch).map(|i| i % 10).collect();
        for (name, kernels) in [("auto", Kernels::Auto), ("dense", Kernels::Dense)] {
            model.set_kernels(kernels);
            group.bench_function(BenchmarkId::new("infer", name), |bch| {
                bch.iter(|| model.infer(black_box(&x)).expect("infer"))
            });
            // As in training: the optimizer has just changed θ, so each step
            // starts by rebuilding the sparse forms (`params_mut` marks them stale).
            group.bench_function(BenchmarkId::new("forward_backward", name), |bch| {
                bch.iter(|| {
                    drop(model.params_mut());
                    let mut tape = Tape::new();
                    let xv = tape.constant(x.clone());
                    let y = model.forward(&mut tape, xv).expect("forward");
                    let loss = tape.cross_entropy(y, &labels);
                    tape.backward(loss);
                    black_box(tape.len())
                })
            });
        }
        group.finish();
    }
}

/// The paper ConvNet's second convolution (64 → 64 channels, 5×5, on 12×12
/// inputs), batch 128 and 1: dense (im2col + GEMM) against the sparse
/// implicit-im2col kernels, forward and input gradient; `l1` zeros
/// individual taps at random, `kernels` zeros whole 5×5 kernels (group ℓ1,2).
fn bench_conv(c: &mut Criterion) {
    use bregman::autodiff::ops::{conv2d, sparse_conv2d};
    use bregman::autodiff::{Conv2dSpec, Tape};
    use bregman::tensor::sparse::SparseConv;
    bregman::tune_allocator();
    let spec = Conv2dSpec {
        stride: 1,
        padding: 0,
    };
    let shape = [64usize, 64, 5, 5];
    for batch in [128usize, 1] {
        let x = Tensor::from_vec(&[batch, 64, 12, 12], values(batch * 64 * 144, 6)).expect("x");
        for structure in ["l1", "kernels"] {
            let mut group = c.benchmark_group(format!("sparse_conv2_{structure}_b{batch}"));
            for &d in DENSITIES {
                let w = match structure {
                    "l1" => sparse_weight(64 * 64, 25, d, 7),
                    _ => {
                        let keep = sparse_weight(64 * 64, 1, d, 7);
                        let v = values(64 * 64 * 25, 8);
                        let w = (0..v.len())
                            .map(|i| {
                                if keep.data()[i / 25] != 0.0 {
                                    v[i]
                                } else {
                                    0.0
                                }
                            })
                            .collect();
                        Tensor::from_vec(&[64 * 64, 25], w).expect("w")
                    }
                };
                let w = w.reshape(&shape).expect("shape");
                let s = SparseConv::from_dense(w.data(), shape);
                let id = format!("{:.0}", d * 100.0);
                group.bench_function(BenchmarkId::new("dense_forward", &id), |bch| {
                    bch.iter(|| conv2d::forward(black_box(&x), &w, None, spec))
                });
                group.bench_function(BenchmarkId::new("sparse_forward", &id), |bch| {
                    bch.iter(|| sparse_conv2d::forward(black_box(&x), &s, None, spec))
                });
                // Forward and input gradient on a tape (the weight gradient,
                // dense on both paths, is not asked for: `w` is a constant).
                let seed = Tensor::full(&[batch, 64, 8, 8], 1.0);
                group.bench_function(BenchmarkId::new("dense_fwd_input_grad", &id), |bch| {
                    bch.iter(|| {
                        let mut t = Tape::new();
                        let (xv, wv) = (t.leaf(x.clone()), t.constant(w.clone()));
                        let y = t.conv2d(xv, wv, None, spec);
                        t.backward_with(y, seed.clone());
                        black_box(t.len())
                    })
                });
                group.bench_function(BenchmarkId::new("sparse_fwd_input_grad", &id), |bch| {
                    bch.iter(|| {
                        let mut t = Tape::new();
                        let (xv, wv) = (t.leaf(x.clone()), t.constant(w.clone()));
                        let y = t.sparse_conv2d(xv, wv, None, spec, &s);
                        t.backward_with(y, seed.clone());
                        black_box(t.len())
                    })
                });
            }
            group.finish();
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).warm_up_time(std::time::Duration::from_millis(300)).measurement_time(std::time::Duration::from_millis(800));
    targets = bench_mlp, bench_conv, bench_linear
}
criterion_main!(benches);
