//! Deterministic linearized Bregman on classic problems: exact sparse
//! recovery in compressed sensing (Yin, Osher, Goldfarb, Darbon 2008) with
//! the support growing from zero, and monotone loss decay (Theorem 2, σ = 0).

use bregman_layers::{ParamKind, Parameter};
use bregman_optim::{GroupSpec, GroupedOptimizer, Hyper, Method, Optimizer, L1};
use bregman_tensor::{matmul, Tensor};
use rand::{seq::index::sample, Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// Gaussian `A` (m × n, entries N(0, 1/m)), `x*` with `k` non-zeros, `b = A x*`.
fn problem(m: usize, n: usize, k: usize, seed: u64) -> (Tensor, Tensor, Tensor) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let s = 1.0 / (m as f32).sqrt();
    let a = Tensor::from_fn(&[m, n], |_| {
        let z: f32 = StandardNormal.sample(&mut rng);
        s * z
    });
    let mut x = Tensor::zeros(&[n, 1]);
    for i in sample(&mut rng, n, k) {
        let sign = if rng.gen_bool(0.5) { 1.0 } else { -1.0 };
        x.data_mut()[i] = sign * rng.gen_range(1.0f32..2.0);
    }
    let b = matmul(&a, false, &x, false);
    (a, x, b)
}

/// `∇(½‖Ax − b‖²) = Aᵀ(Ax − b)`.
fn gradient(a: &Tensor, x: &Tensor, b: &Tensor) -> Tensor {
    let r = matmul(a, false, x, false).sub(b);
    matmul(a, true, &r, false)
}

fn loss(a: &Tensor, x: &Tensor, b: &Tensor) -> f64 {
    0.5 * matmul(a, false, x, false).sub(b).sum_squares()
}

/// Largest eigenvalue of AᵀA by power iteration (the gradient's Lipschitz constant).
fn lipschitz(a: &Tensor) -> f32 {
    let mut v = Tensor::full(&[a.dim(1), 1], 1.0);
    let mut l = 0.0;
    for _ in 0..200 {
        let w = matmul(a, true, &matmul(a, false, &v, false), false);
        l = (w.sum_squares() / v.sum_squares()).sqrt() as f32;
        v = w.scale(1.0 / w.sum_squares().sqrt() as f32);
    }
    l
}

#[test]
fn compressed_sensing_recovers_the_sparse_vector() {
    let (a, x_star, b) = problem(100, 400, 10, 42);
    let l = lipschitz(&a);
    // LinBreg solves min λ‖x‖₁ + ‖x‖²/(2δ) s.t. Ax = b, which is the ℓ1
    // (basis pursuit) solution once λδ is large against ‖x*‖∞ ≤ 2.
    let (lambda, delta) = (5.0f32, 10.0f32);
    let tau = 1.9 / (delta * l);
    let mut x = Parameter::new("x", ParamKind::LinearWeight, Tensor::zeros(&[400, 1]));
    let h = Hyper {
        lr: tau,
        delta,
        ..Hyper::default()
    };
    let mut opt = GroupedOptimizer::new(
        Method::LinBreg,
        &[&x],
        vec![GroupSpec::all(h, Box::new(L1::new(lambda)))],
    )
    .unwrap();
    let nnz = |x: &Tensor| x.data().iter().filter(|&&v| v != 0.0).count();
    let mut support = vec![nnz(&x.value)];
    for _ in 0..20_000 {
        let g = gradient(&a, &x.value, &b);
        opt.step(&mut [&mut x], &[g]).unwrap();
        support.push(nnz(&x.value));
    }
    let err = (x.value.sub(&x_star).sum_squares() / x_star.sum_squares()).sqrt();
    assert!(err < 1e-3, "relative error {err}");
    // Every true non-zero is found; anything else is negligible.
    for (i, (&xi, &si)) in x.value.data().iter().zip(x_star.data()).enumerate() {
        if si != 0.0 {
            assert!(
                xi != 0.0 && (xi - si).abs() < 1e-2,
                "x[{i}] = {xi}, want {si}"
            );
        } else {
            assert!(xi.abs() < 1e-3, "spurious x[{i}] = {xi}");
        }
    }
    // Inverse scale space: starts from zero, enters the support a few
    // coordinates at a time (no jump to a dense vector), and grows.
    assert_eq!(support[0], 0);
    let first = support
        .iter()
        .position(|&s| s > 0)
        .expect("support never grew");
    assert!(
        support[first] <= 3,
        "{} coordinates entered at once",
        support[first]
    );
    assert!(
        support.iter().all(|&s| s <= 30),
        "support became dense: max {:?}",
        support.iter().max()
    );
    let entries = support.windows(2).filter(|w| w[1] > w[0]).count();
    assert!(entries >= 5, "the support grew only {entries} times");
}

#[test]
fn deterministic_linbreg_never_increases_the_loss() {
    // Theorem 2 with σ = 0: τ ≤ 2/(δL) gives L(θₖ₊₁) ≤ L(θₖ).
    let (a, _, b) = problem(60, 120, 8, 7);
    let l = lipschitz(&a);
    for (delta, lambda) in [(1.0f32, 0.1f32), (4.0, 0.5)] {
        let tau = 1.9 / (delta * l);
        let mut x = Parameter::new("x", ParamKind::LinearWeight, Tensor::zeros(&[120, 1]));
        let h = Hyper {
            lr: tau,
            delta,
            ..Hyper::default()
        };
        let mut opt = GroupedOptimizer::new(
            Method::LinBreg,
            &[&x],
            vec![GroupSpec::all(h, Box::new(L1::new(lambda)))],
        )
        .unwrap();
        let mut prev = loss(&a, &x.value, &b);
        let first = prev;
        for it in 0..2000 {
            let g = gradient(&a, &x.value, &b);
            opt.step(&mut [&mut x], &[g]).unwrap();
            let cur = loss(&a, &x.value, &b);
            assert!(
                cur <= prev * (1.0 + 1e-5) + 1e-9,
                "δ={delta}: loss rose at iteration {it}: {prev} → {cur}"
            );
            prev = cur;
        }
        assert!(
            prev < 0.01 * first,
            "δ={delta}: loss barely decreased: {first} → {prev}"
        );
    }
}
