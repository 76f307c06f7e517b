//! Linearized Bregman iterations recovering a sparse vector from few
//! measurements (Yin, Osher, Goldfarb, Darbon 2008): `b = A x*` with `A`
//! Gaussian 100 × 400 and `x*` 10-sparse. LinBreg on `½‖Ax − b‖²` starts at
//! `x = 0` and the support grows one coordinate at a time — the inverse scale
//! space in one screen.
//!
//! `cargo run --release --example compressed_sensing`

use bregman::layers::{ParamKind, Parameter};
use bregman::optim::{GroupSpec, GroupedOptimizer, Hyper, Method, Optimizer, L1};
use bregman::tensor::{matmul, Tensor};
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (m, n, k) = (100, 400, 10);
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let a = Tensor::from_fn(&[m, n], |_| {
        let z: f32 = StandardNormal.sample(&mut rng);
        z / (m as f32).sqrt()
    });
    let mut x_star = Tensor::zeros(&[n, 1]);
    for i in sample(&mut rng, n, k) {
        x_star.data_mut()[i] = if rng.gen_bool(0.5) { 1.0 } else { -1.0 } * rng.gen_range(1.0..2.0);
    }
    let b = matmul(&a, false, &x_star, false);

    // J = λ‖x‖₁, elastic-net scale δ; step τ < 2/(δ‖A‖²) (‖A‖² ≈ (1 + √(n/m))² = 9).
    let (lambda, delta) = (5.0, 10.0);
    let tau = 1.9 / (delta * 9.5);
    let mut x = Parameter::new("x", ParamKind::LinearWeight, Tensor::zeros(&[n, 1]));
    let hyper = Hyper {
        lr: tau,
        delta,
        ..Hyper::default()
    };
    let mut opt = GroupedOptimizer::new(
        Method::LinBreg,
        &[&x],
        vec![GroupSpec::all(hyper, Box::new(L1::new(lambda)))],
    )?;

    println!("iteration   support   residual ‖Ax−b‖   error ‖x−x*‖/‖x*‖");
    let mut last_support = usize::MAX;
    for it in 0..=20_000 {
        let r = matmul(&a, false, &x.value, false).sub(&b);
        let support = x.value.data().iter().filter(|&&v| v != 0.0).count();
        if support != last_support || it % 5000 == 0 {
            let err = (x.value.sub(&x_star).sum_squares() / x_star.sum_squares()).sqrt();
            println!(
                "{it:>9}   {support:>7}   {:>15.3e}   {err:>17.3e}",
                r.sum_squares().sqrt()
            );
            last_support = support;
        }
        let g = matmul(&a, true, &r, false); // ∇ ½‖Ax − b‖² = Aᵀ(Ax − b)
        opt.step(&mut [&mut x], &[g])?;
    }
    let err = (x.value.sub(&x_star).sum_squares() / x_star.sum_squares()).sqrt();
    let spurious = x
        .value
        .data()
        .iter()
        .zip(x_star.data())
        .filter(|(_, &s)| s == 0.0)
        .fold(0.0f32, |m, (&v, _)| m.max(v.abs()));
    println!("\nrecovered x* ({k} non-zeros of {n}) with relative error {err:.2e}; largest entry outside its support {spurious:.1e}");
    assert!(err < 1e-3);
    Ok(())
}
