//! GEMM throughput at the shapes the paper's networks use.
//!
//! `cargo bench --bench gemm`. Ids are `M×K×N`; `bregman` is the engine's
//! `gemm` (rayon split + matrixmultiply), `mm_single` one plain single-threaded
//! `matrixmultiply::sgemm` call, as the baseline in the same run.

use bregman::tensor::gemm;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;

const SHAPES: &[(usize, usize, usize, &str)] = &[
    (128, 784, 200, "mlp_fc1"),
    (128, 200, 80, "mlp_fc2"),
    (200, 128, 784, "mlp_fc1_dw"),
    (64, 1600, 8192, "conv2_channel_major"),
    (8192, 1600, 64, "conv2_pixel_major"),
    (1024, 1024, 1024, "square_1024"),
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
    let mut group = c.benchmark_group("gemm");
    for &(m, k, n, name) in SHAPES {
        let a = values(m * k, 1);
        let b = values(k * n, 2);
        let mut out = vec![0.0f32; m * n];
        group.throughput(Throughput::Elements((2 * m * k * n) as u64));
        let id = format!("{m}x{k}x{n}_{name}");
        group.bench_function(BenchmarkId::new("bregman", &id), |bch| {
            bch.iter(|| {
                gemm(
                    m,
                    k,
                    n,
                    black_box(&a),
                    false,
                    black_box(&b),
                    false,
                    &mut out,
                    false,
                )
            })
        });
        group.bench_function(BenchmarkId::new("mm_single", &id), |bch| {
            bch.iter(|| unsafe {
                matrixmultiply_sgemm(m, k, n, black_box(&a), black_box(&b), &mut out);
            })
        });
    }
    group.finish();
}

/// One single-threaded `matrixmultiply::sgemm` call over row-major operands.
unsafe fn matrixmultiply_sgemm(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    matrixmultiply::sgemm(
        m,
        k,
        n,
        1.0,
        a.as_ptr(),
        k as isize,
        1,
        b.as_ptr(),
        n as isize,
        1,
        0.0,
        c.as_mut_ptr(),
        n as isize,
        1,
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = bench_gemm
}
criterion_main!(benches);
