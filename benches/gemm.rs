//! GEMM throughput at the shapes the paper's networks use.
//!
//! `cargo bench --bench gemm`. Ids are `M×K×N`. Functions: `matrixmultiply`
//! (the engine's rayon split over single-threaded `matrixmultiply::sgemm`
//! calls), `gemm_crate` (the `gemm` crate with rayon), and `mm_single`, one
//! plain single-threaded `sgemm` call as the baseline in the same run.

use bregman::tensor::gemm::{gemm_blocks, gemm_with, Backend};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;

/// `(M, K, N, A transposed, B transposed, name)`.
const SHAPES: &[(usize, usize, usize, bool, bool, &str)] = &[
    (128, 784, 200, false, false, "mlp_fc1"),
    // A dense layer on one image, `x · Wᵀ` (the `m = 1` rule of `Backend::for_shape`).
    (1, 784, 200, false, true, "mlp_fc1_one_image"),
    (128, 200, 80, false, false, "mlp_fc2"),
    (200, 128, 784, false, false, "mlp_fc1_dw"),
    (64, 1600, 8192, false, false, "conv2_channel_major"),
    (8192, 1600, 64, false, false, "conv2_pixel_major"),
    // The paper ConvNet's second conv as the engine runs it: forward cols·Wᵀ,
    // input gradient G·W, weight gradient Gᵀ·cols.
    (8192, 1600, 64, false, true, "conv2_fwd"),
    (8192, 64, 1600, false, false, "conv2_dx"),
    (64, 8192, 1600, true, false, "conv2_dw"),
    (1024, 1024, 1024, false, false, "square_1024"),
];

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

fn bench_gemm(c: &mut Criterion) {
    bregman::tune_allocator();
    let mut group = c.benchmark_group("gemm");
    for &(m, k, n, ta, tb, name) in SHAPES {
        let a = values(m * k, 1);
        let b = values(k * n, 2);
        let mut out = vec![0.0f32; m * n];
        group.throughput(Throughput::Elements((2 * m * k * n) as u64));
        let id = format!("{m}x{k}x{n}_{name}");
        for (fname, backend) in [
            ("matrixmultiply", Backend::MatrixMultiply),
            ("gemm_crate", Backend::GemmCrate),
            ("packed", Backend::Packed),
        ] {
            group.bench_function(BenchmarkId::new(fname, &id), |bch| {
                bch.iter(|| {
                    gemm_with(
                        backend,
                        m,
                        k,
                        n,
                        black_box(&a),
                        ta,
                        black_box(&b),
                        tb,
                        &mut out,
                        false,
                    )
                })
            });
        }
        group.bench_function(BenchmarkId::new("mm_single", &id), |bch| {
            bch.iter(|| {
                gemm_blocks(
                    m,
                    k,
                    n,
                    black_box(&a),
                    ta,
                    black_box(&b),
                    tb,
                    &mut out,
                    false,
                    1,
                )
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = bench_gemm
}
criterion_main!(benches);
