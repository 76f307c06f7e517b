//! The Bregman kernels write θ of large tensors with streaming stores (from a
//! stack tile, aligned in the middle, plain stores at the ends). Element-wise
//! updates do not care how a tensor is cut, so the streamed result must equal,
//! bit for bit, the same kernel run piece by piece below the threshold.

use bregman_optim::kernels::adabreg::adabreg;
use bregman_optim::kernels::adam::AdamCoefficients;
use bregman_optim::kernels::linbreg::{linbreg, linbreg_momentum};
use bregman_optim::kernels::STREAM_THRESHOLD;
use bregman_optim::{Regularizer, L1};

const PIECE: usize = 1000;

/// A deterministic pseudo-random vector in [-1, 1).
fn values(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s as f32 / u32::MAX as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Length above the threshold, not a multiple of the tile, started one value
/// past an allocation's start so the first values are not 16-byte aligned.
fn len() -> usize {
    STREAM_THRESHOLD + 1037
}

#[test]
fn streamed_linbreg_equals_piecewise_linbreg() {
    let n = len();
    let reg: &dyn Regularizer = &L1::new(0.3);
    let g = values(n, 1);
    let mut v_big = values(n + 1, 2);
    let mut v_small = v_big.clone();
    let (mut th_big, mut th_small) = (vec![7.0f32; n + 1], vec![7.0f32; n + 1]);
    for _ in 0..3 {
        linbreg(&mut th_big[1..], &mut v_big[1..], &g, 0.1, 2.0, reg, 1);
        for ((th, v), g) in th_small[1..]
            .chunks_mut(PIECE)
            .zip(v_small[1..].chunks_mut(PIECE))
            .zip(g.chunks(PIECE))
        {
            linbreg(th, v, g, 0.1, 2.0, reg, 1);
        }
    }
    assert_eq!(th_big, th_small);
    assert_eq!(v_big, v_small);
    // Every θ was written (none left at 7), and the shrinkage made zeros.
    assert!(th_big[1..].iter().all(|&t| t != 7.0));
    assert!(th_big.iter().filter(|&&t| t == 0.0).count() > n / 10);
}

#[test]
fn streamed_momentum_and_adabreg_equal_piecewise() {
    let n = len();
    let reg: &dyn Regularizer = &L1::new(0.2);
    let g = values(n, 3);
    let init = values(n, 4);
    // LinBreg-momentum.
    let (mut v1, mut m1) = (init.clone(), vec![0.0f32; n]);
    let (mut v2, mut m2) = (init.clone(), vec![0.0f32; n]);
    let (mut t1, mut t2) = (vec![7.0f32; n], vec![7.0f32; n]);
    linbreg_momentum(&mut t1, &mut v1, &mut m1, &g, 0.1, 0.9, 1.0, reg, 1);
    for (((t, v), m), g) in t2
        .chunks_mut(PIECE)
        .zip(v2.chunks_mut(PIECE))
        .zip(m2.chunks_mut(PIECE))
        .zip(g.chunks(PIECE))
    {
        linbreg_momentum(t, v, m, g, 0.1, 0.9, 1.0, reg, 1);
    }
    assert_eq!((&t1, &v1, &m1), (&t2, &v2, &m2));
    // AdaBreg.
    let k = AdamCoefficients::new(1e-3, (0.9, 0.999), 1e-8, 1);
    let (mut v1, mut a1, mut b1) = (init.clone(), vec![0.0f32; n], vec![0.0f32; n]);
    let (mut v2, mut a2, mut b2) = (init.clone(), vec![0.0f32; n], vec![0.0f32; n]);
    let (mut t1, mut t2) = (vec![7.0f32; n], vec![7.0f32; n]);
    adabreg(&mut t1, &mut v1, &mut a1, &mut b1, &g, &k, 1.0, reg, 1);
    for ((((t, v), a), b), g) in t2
        .chunks_mut(PIECE)
        .zip(v2.chunks_mut(PIECE))
        .zip(a2.chunks_mut(PIECE))
        .zip(b2.chunks_mut(PIECE))
        .zip(g.chunks(PIECE))
    {
        adabreg(t, v, a, b, g, &k, 1.0, reg, 1);
    }
    assert_eq!((&t1, &v1), (&t2, &v2));
    assert_eq!((&a1, &b1), (&a2, &b2));
    assert!(t1.iter().all(|&t| t != 7.0));
}

#[test]
fn l1_prox_is_fused_into_the_kernels() {
    // Without an element-wise prox the kernels fall back to a second pass
    // (`Regularizer::prox` over each chunk): same numbers, more memory traffic.
    use bregman_optim::regularizer::ElementwiseProx;
    assert_eq!(
        L1::new(0.3).elementwise(),
        Some(ElementwiseProx::Shrink { lambda: 0.3 })
    );
    assert_eq!(
        L1::nonnegative(0.3).elementwise(),
        Some(ElementwiseProx::ShrinkNonnegative { lambda: 0.3 })
    );
}
