//! The same inputs give identical bits on 1 and 2 rayon threads.

use bregman_tensor::gemm::{gemm_with, Backend};
use bregman_tensor::pool::maxpool2d;
use bregman_tensor::{col2im, gemm, im2col, ConvGeometry, Tensor};

fn values(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s % 2000) as f32 / 1000.0 - 1.0
        })
        .collect()
}

fn run_all() -> Vec<Vec<f32>> {
    let (m, k, n) = (257, 300, 190);
    let a = values(m * k, 1);
    let b = values(k * n, 2);
    let mut c = vec![0.0; m * n];
    gemm(m, k, n, &a, false, &b, true, &mut c, false);
    let mut c2 = vec![0.0; n * n];
    gemm(
        n,
        m,
        n,
        &values(m * n, 3),
        true,
        &values(m * n, 4),
        false,
        &mut c2,
        false,
    );
    let mut c3 = vec![0.0; m * n];
    gemm_with(
        Backend::GemmCrate,
        m,
        k,
        n,
        &a,
        false,
        &b,
        true,
        &mut c3,
        false,
    );
    let big_k = values(64 * 5000, 7);
    let mut c4 = vec![0.0; 64 * 64];
    gemm_with(
        Backend::GemmCrate,
        64,
        5000,
        64,
        &big_k,
        false,
        &big_k,
        true,
        &mut c4,
        false,
    );
    let mut c5 = vec![0.0; 64 * 64];
    gemm_with(
        Backend::MatrixMultiply,
        64,
        5000,
        64,
        &big_k,
        false,
        &big_k,
        true,
        &mut c5,
        false,
    );
    // The packed GEMM, split into one block per thread (so the split itself
    // changes with the thread count), with a tall A read in place.
    let mut c6 = vec![0.0; m * n];
    gemm_with(
        Backend::Packed,
        m,
        k,
        n,
        &a,
        false,
        &b,
        true,
        &mut c6,
        false,
    );
    let tall = values(3000 * 70, 8);
    let mut c7 = vec![0.0; 3000 * 40];
    let b7 = values(70 * 40, 9);
    gemm_with(
        Backend::Packed,
        3000,
        70,
        40,
        &tall,
        false,
        &b7,
        false,
        &mut c7,
        false,
    );
    let x = Tensor::from_vec(&[4, 3, 30, 30], values(4 * 3 * 900, 5)).unwrap();
    let g = ConvGeometry::new(x.shape(), 3, 3, 2, 1).unwrap();
    let cols = im2col(&x, &g);
    let back = col2im(&cols, &g);
    let pg = ConvGeometry::new(x.shape(), 2, 2, 2, 0).unwrap();
    let (pooled, _) = maxpool2d(&x, &pg);
    let big = Tensor::from_vec(&[100_000], values(100_000, 6)).unwrap();
    // One output row (a dense layer on one image), small and split in halves.
    let mut gemv = Vec::new();
    for (k, n) in [(784, 200), (1024, 1024)] {
        let (a, b) = (values(k, 8), values(k * n, 9));
        let mut c = vec![0.0f32; n];
        gemm(1, k, n, &a, false, &b, true, &mut c, false);
        gemv.extend(c);
    }
    vec![
        gemv,
        c,
        c2,
        c3,
        c4,
        c5,
        c6,
        c7,
        cols.into_vec(),
        back.into_vec(),
        pooled.into_vec(),
        vec![big.sum_all(), big.mean_all()],
        x.sum_channels().into_vec(),
    ]
}

#[test]
fn one_and_two_threads_agree_bitwise() {
    let pool = |n| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .unwrap()
    };
    let one = pool(1).install(run_all);
    let two = pool(2).install(run_all);
    let four = pool(4).install(run_all);
    for (i, (a, b)) in one.iter().zip(&two).enumerate() {
        assert!(a == b, "result {i} differs between 1 and 2 threads");
    }
    assert!(one == four, "1 vs 4 threads differ");
}
