//! Reduction identities, proximal maps and subgradients by hand, the `v`
//! initialisation, hand-computed AdaBreg / LinBreg-momentum steps, thread
//! independence, and error reporting.

use bregman_layers::{ParamKind, Parameter};
use bregman_optim::regularizer::{prox_of, subgradient_of, value_of};
use bregman_optim::{
    GroupL12, GroupSpec, GroupedOptimizer, Hyper, L1PlusGroup, Method, NoRegularizer, OptimError,
    Optimizer, Regularizer, L1,
};
use bregman_tensor::Tensor;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn t(shape: &[usize], v: &[f32]) -> Tensor {
    Tensor::from_vec(shape, v.to_vec()).unwrap()
}

fn rand_tensor(shape: &[usize], seed: u64) -> Tensor {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    Tensor::from_fn(shape, |_| r.gen_range(-1.0f32..1.0))
}

fn close(a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol,
            "element {i}: {x} vs {y} (all: {a:?} vs {b:?})"
        );
    }
}

fn param(kind: ParamKind, value: Tensor) -> Parameter {
    Parameter::new("p", kind, value)
}

fn optimizer(
    method: Method,
    p: &Parameter,
    h: Hyper,
    reg: Box<dyn Regularizer>,
) -> GroupedOptimizer {
    GroupedOptimizer::new(method, &[p], vec![GroupSpec::all(h, reg)]).unwrap()
}

#[test]
fn linbreg_without_regularizer_is_sgd_with_lr_delta_tau() {
    for delta in [1.0f32, 2.5] {
        let theta0 = rand_tensor(&[8, 5], 1);
        let mut a = param(ParamKind::LinearWeight, theta0.clone());
        let mut b = param(ParamKind::LinearWeight, theta0);
        let h = Hyper {
            lr: 0.1,
            delta,
            ..Hyper::default()
        };
        let mut lb = optimizer(Method::LinBreg, &a, h, Box::new(NoRegularizer));
        let mut sgd = optimizer(
            Method::Sgd,
            &b,
            Hyper::with_lr(delta * 0.1),
            Box::new(NoRegularizer),
        );
        for s in 0..5 {
            let g = rand_tensor(&[8, 5], 10 + s);
            lb.step(&mut [&mut a], std::slice::from_ref(&g)).unwrap();
            sgd.step(&mut [&mut b], &[g]).unwrap();
            // δ(v − τg) vs θ − δτg with v = θ/δ: equal up to one rounding per step.
            close(a.value.data(), b.value.data(), 1e-6);
        }
    }
}

#[test]
fn proxgd_without_regularizer_is_sgd() {
    let mut a = param(ParamKind::LinearWeight, rand_tensor(&[20], 2));
    let mut b = a.clone();
    let mut pg = optimizer(
        Method::ProxGd,
        &a,
        Hyper::with_lr(0.05),
        Box::new(L1::new(0.0)),
    );
    let mut sgd = optimizer(
        Method::Sgd,
        &b,
        Hyper::with_lr(0.05),
        Box::new(NoRegularizer),
    );
    for s in 0..3 {
        let g = rand_tensor(&[20], 20 + s);
        pg.step(&mut [&mut a], std::slice::from_ref(&g)).unwrap();
        sgd.step(&mut [&mut b], &[g]).unwrap();
    }
    assert_eq!(a.value.data(), b.value.data());
}

fn all_regularizers(lam: f32) -> Vec<Box<dyn Regularizer>> {
    vec![
        Box::new(NoRegularizer),
        Box::new(L1::new(lam)),
        Box::new(L1::nonnegative(lam)),
        Box::new(GroupL12::rows(lam)),
        Box::new(GroupL12::kernels(lam)),
        Box::new(L1PlusGroup {
            l1: L1::new(lam),
            group: GroupL12::kernels(lam),
        }),
    ]
}

#[test]
fn prox_of_initial_v_gives_back_theta() {
    // v₀ = ∂J(θ₀) + θ₀/δ  ⇒  prox_{δJ}(δ v₀) = θ₀, for every regularizer.
    let mut theta0 = rand_tensor(&[3, 2, 3, 3], 3);
    theta0.data_mut()[..9].fill(0.0); // a zero kernel
    theta0.data_mut()[20] = 0.0; // a zero element
    for delta in [1.0f32, 3.0] {
        for reg in all_regularizers(0.2) {
            let mut x = theta0.clone();
            if reg.name() == "l1_pos" {
                x.map_inplace(|v| v.abs());
            }
            let mut v = subgradient_of(reg.as_ref(), &x);
            v.axpy(1.0 / delta, &x);
            let mut back = v.scale(delta);
            prox_of(reg.as_ref(), &mut back, delta);
            close(back.data(), x.data(), 2e-6);
        }
    }
}

#[test]
fn l1_prox_and_subgradient_by_hand() {
    let reg = L1::new(0.5);
    // t = 2 → threshold tλ = 1: x exactly at the threshold goes to 0.
    let mut x = t(&[6], &[3.0, -3.0, 1.0, -1.0, 0.5, 0.0]);
    prox_of(&reg, &mut x, 2.0);
    assert_eq!(x.data(), &[2.0, -2.0, 0.0, 0.0, 0.0, 0.0]);
    let mut x = t(&[3], &[3.0, -3.0, 0.2]);
    prox_of(&L1::nonnegative(0.5), &mut x, 2.0);
    assert_eq!(x.data(), &[2.0, 0.0, 0.0]);
    let s = subgradient_of(&reg, &t(&[3], &[2.0, -0.1, 0.0]));
    assert_eq!(s.data(), &[0.5, -0.5, 0.0]);
    assert_eq!(value_of(&reg, &t(&[3], &[2.0, -1.0, 0.0])), 1.5);
}

#[test]
fn group_rows_prox_and_subgradient_by_hand() {
    // Rows of length n = 4 → threshold tλ√n = 1·0.5·2 = 1.
    let reg = GroupL12::rows(0.5);
    let mut x = t(
        &[3, 4],
        &[3.0, 0.0, 4.0, 0.0, 0.5, 0.5, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0],
    );
    prox_of(&reg, &mut x, 1.0);
    // Row 0: ‖·‖ = 5 → scale 1 − 1/5 = 0.8. Row 1: ‖·‖ = 1 = threshold → 0. Row 2: zero stays zero.
    close(
        x.data(),
        &[2.4, 0.0, 3.2, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        1e-6,
    );
    let s = subgradient_of(&reg, &t(&[2, 4], &[3.0, 0.0, 4.0, 0.0, 0.0, 0.0, 0.0, 0.0]));
    // λ√n θ/‖θ‖ = 1·[0.6, 0, 0.8, 0]; zero row → 0.
    close(s.data(), &[0.6, 0.0, 0.8, 0.0, 0.0, 0.0, 0.0, 0.0], 1e-6);
    assert!(
        (value_of(&reg, &t(&[2, 4], &[3.0, 0.0, 4.0, 0.0, 1.0, 0.0, 0.0, 0.0])) - 6.0).abs() < 1e-9
    );
}

#[test]
fn group_kernels_prox_by_hand() {
    // Weight [1, 2, 2, 2]: two 2×2 kernels, n = 4, λ = 0.25, t = 2 → threshold 1.
    let reg = GroupL12::kernels(0.25);
    let mut x = t(&[1, 2, 2, 2], &[2.0, 0.0, 0.0, 0.0, 0.4, 0.4, 0.4, 0.4]);
    prox_of(&reg, &mut x, 2.0);
    // Kernel 0: ‖·‖ = 2 → ×0.5; kernel 1: ‖·‖ = 0.8 < 1 → 0.
    close(x.data(), &[1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], 1e-6);
    // Rows of the same conv weight would be one group of 8 values.
    let mut y = t(&[1, 2, 2, 2], &[2.0, 0.0, 0.0, 0.0, 0.4, 0.4, 0.4, 0.4]);
    prox_of(&GroupL12::rows(0.25), &mut y, 2.0);
    assert!(y.data()[4] > 0.0);
}

#[test]
fn l1_plus_group_is_group_of_shrunk() {
    let reg = L1PlusGroup {
        l1: L1::new(0.5),
        group: GroupL12::rows(0.25),
    };
    // t = 2: ℓ1 threshold 1, then group threshold 2·0.25·√2 = 0.7071 on [3, −1.5] → [2, −0.5].
    let mut x = t(&[1, 2], &[3.0, -1.5]);
    prox_of(&reg, &mut x, 2.0);
    let n = (2.0f32 * 2.0 + 0.25).sqrt();
    let f = 1.0 - 0.5 * 2f32.sqrt() / n;
    close(x.data(), &[2.0 * f, -0.5 * f], 1e-6);
}

#[test]
fn linbreg_momentum_three_steps_by_hand() {
    // One weight, J = ℓ1 (λ = 1), δ = 1, τ = 1, β = 0.5; θ₀ = 0 → v₀ = 0, m₀ = 0.
    // g = −2: m = 0.5·0 + 0.5·1·(−2) = −1,  v = 1,    θ = shrink(1; 1)    = 0
    // g = −2: m = −0.5 − 1 = −1.5,          v = 2.5,  θ = 1.5
    // g = +1: m = −0.75 + 0.5 = −0.25,      v = 2.75, θ = 1.75
    let mut p = param(ParamKind::LinearWeight, t(&[1], &[0.0]));
    let h = Hyper {
        lr: 1.0,
        momentum: 0.5,
        ..Hyper::default()
    };
    let mut opt = optimizer(Method::LinBreg, &p, h, Box::new(L1::new(1.0)));
    let mut thetas = Vec::new();
    for g in [-2.0, -2.0, 1.0] {
        opt.step(&mut [&mut p], &[t(&[1], &[g])]).unwrap();
        thetas.push(p.value.data()[0]);
    }
    close(&thetas, &[0.0, 1.5, 1.75], 1e-6);
    close(opt.param_states()[0].v.as_ref().unwrap(), &[2.75], 1e-6);
}

#[test]
fn adabreg_three_steps_by_hand() {
    // One weight, J = ℓ1 (λ = 0.1), δ = 2, τ = 0.1, β = (0.5, 0.75), ε = 0; θ₀ = 0.
    // k=1, g=1:  m₁ = 0.5,   m₂ = 0.25;    m̂₁ = 1,      m̂₂ = 1      → v = −0.1
    // k=2, g=1:  m₁ = 0.75,  m₂ = 0.4375;  m̂₁ = 1,      m̂₂ = 1      → v = −0.2
    // k=3, g=−2: m₁ = −0.625, m₂ = 1.328125; m̂₁ = −0.625/0.875, m̂₂ = 1.328125/0.578125
    //            → v = −0.2 + 0.1·0.714285714/1.515700 = −0.152874
    // θ = prox_{δJ}(δv) = 2·shrink(v; 0.1): 0, −0.2, −0.105748
    let mut p = param(ParamKind::LinearWeight, t(&[1], &[0.0]));
    let h = Hyper {
        lr: 0.1,
        delta: 2.0,
        betas: (0.5, 0.75),
        eps: 1e-30,
        ..Hyper::default()
    };
    let mut opt = optimizer(Method::AdaBreg, &p, h, Box::new(L1::new(0.1)));
    let mut thetas = Vec::new();
    for g in [1.0, 1.0, -2.0] {
        opt.step(&mut [&mut p], &[t(&[1], &[g])]).unwrap();
        thetas.push(p.value.data()[0]);
    }
    let m3 = 0.625f64 / 0.875;
    let s3 = (1.328125f64 / 0.578125).sqrt();
    let v3 = -0.2 + 0.1 * m3 / s3;
    close(&thetas, &[0.0, -0.2, (2.0 * (v3 + 0.1)) as f32], 1e-6);
}

fn run_all_methods() -> Vec<Vec<f32>> {
    let mut out = Vec::new();
    for method in [
        Method::Sgd,
        Method::Adam,
        Method::ProxGd,
        Method::LinBreg,
        Method::AdaBreg,
    ] {
        for reg in [
            Box::new(L1::new(0.01)) as Box<dyn Regularizer>,
            Box::new(GroupL12::rows(0.01)),
        ] {
            let mut p = param(ParamKind::LinearWeight, rand_tensor(&[300, 250], 5));
            let h = Hyper {
                lr: 0.01,
                momentum: 0.9,
                ..Hyper::default()
            };
            let mut opt = optimizer(method, &p, h, reg);
            for s in 0..3 {
                opt.step(&mut [&mut p], &[rand_tensor(&[300, 250], 100 + s)])
                    .unwrap();
            }
            out.push(p.value.into_vec());
        }
    }
    out
}

#[test]
fn one_and_two_threads_give_identical_bits() {
    let pool = |n| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .unwrap()
    };
    let one = pool(1).install(run_all_methods);
    let two = pool(2).install(run_all_methods);
    assert!(
        one == two,
        "optimizer results differ between 1 and 2 threads"
    );
}

#[test]
fn errors_name_the_parameter() {
    let mut p = Parameter::new(
        "layers.0.weight",
        ParamKind::LinearWeight,
        Tensor::zeros(&[2, 3]),
    );
    let mut opt = optimizer(
        Method::LinBreg,
        &p,
        Hyper::default(),
        Box::new(L1::new(0.1)),
    );
    let err = opt
        .step(&mut [&mut p], &[Tensor::zeros(&[3, 2])])
        .unwrap_err();
    assert!(matches!(err, OptimError::GradShape { .. }));
    assert!(err.to_string().contains("layers.0.weight") && err.to_string().contains("[3, 2]"));
    let err = opt.step(&mut [&mut p], &[]).unwrap_err();
    assert!(matches!(
        err,
        OptimError::ParamCount {
            expected: 1,
            got: 0
        }
    ));

    let bias = Parameter::new("b", ParamKind::Bias, Tensor::zeros(&[2]));
    let only_weights = GroupSpec::new(
        "w",
        &[ParamKind::LinearWeight],
        Hyper::default(),
        Box::new(NoRegularizer),
    );
    let err = GroupedOptimizer::new(Method::Sgd, &[&p, &bias], vec![only_weights]).unwrap_err();
    assert!(err.to_string().contains("'b'"), "{err}");

    for (h, field) in [
        (
            Hyper {
                lr: 0.0,
                ..Hyper::default()
            },
            "lr",
        ),
        (
            Hyper {
                delta: -1.0,
                ..Hyper::default()
            },
            "delta",
        ),
        (
            Hyper {
                momentum: 1.0,
                ..Hyper::default()
            },
            "momentum",
        ),
    ] {
        let err = GroupedOptimizer::new(
            Method::Sgd,
            &[&p],
            vec![GroupSpec::all(h, Box::new(NoRegularizer))],
        )
        .unwrap_err();
        assert!(err.to_string().contains(field), "{err}");
    }
    let err = GroupedOptimizer::new(
        Method::Sgd,
        &[&p],
        vec![GroupSpec::all(Hyper::default(), Box::new(L1::new(-1.0)))],
    )
    .unwrap_err();
    assert!(err.to_string().contains("lambda"));
}

#[test]
fn state_round_trips_and_continues_identically() {
    let mut a = param(ParamKind::LinearWeight, rand_tensor(&[10, 4], 6));
    let h = Hyper {
        lr: 0.05,
        ..Hyper::default()
    };
    let mut opt = optimizer(Method::AdaBreg, &a, h, Box::new(L1::new(0.1)));
    for s in 0..3 {
        opt.step(&mut [&mut a], &[rand_tensor(&[10, 4], 200 + s)])
            .unwrap();
    }
    let saved = opt.state();
    let mut b = a.clone();
    let mut restored = optimizer(Method::AdaBreg, &b, h, Box::new(L1::new(0.1)));
    restored.load_state(saved).unwrap();
    for s in 3..6 {
        let g = rand_tensor(&[10, 4], 200 + s);
        opt.step(&mut [&mut a], std::slice::from_ref(&g)).unwrap();
        restored.step(&mut [&mut b], &[g]).unwrap();
    }
    assert_eq!(a.value.data(), b.value.data());
}

#[test]
fn sgd_momentum_three_steps_by_hand() {
    // θ₀ = 1, τ = 0.5, β = 0.5, heavy ball b ← βb + g, θ ← θ − τb:
    // g = 2:  b = 2,   θ = 0
    // g = 2:  b = 3,   θ = −1.5
    // g = −1: b = 0.5, θ = −1.75
    let mut p = param(ParamKind::LinearWeight, t(&[1], &[1.0]));
    let h = Hyper {
        lr: 0.5,
        momentum: 0.5,
        ..Hyper::default()
    };
    let mut opt = optimizer(Method::Sgd, &p, h, Box::new(NoRegularizer));
    let mut thetas = Vec::new();
    for g in [2.0, 2.0, -1.0] {
        opt.step(&mut [&mut p], &[t(&[1], &[g])]).unwrap();
        thetas.push(p.value.data()[0]);
    }
    close(&thetas, &[0.0, -1.5, -1.75], 1e-6);
    close(opt.param_states()[0].m1.as_ref().unwrap(), &[0.5], 1e-6);
}

#[test]
fn adam_three_steps_by_hand() {
    // θ₀ = 0, τ = 0.1, β = (0.5, 0.75), ε → 0; θ ← θ − τ·m̂₁/√m̂₂ with the
    // bias corrections m̂ = m/(1 − βᵏ):
    // k=1, g=1:  m₁ = 0.5,    m₂ = 0.25;     m̂₁ = 1, m̂₂ = 1 → θ = −0.1
    // k=2, g=1:  m₁ = 0.75,   m₂ = 0.4375;   m̂₁ = 1, m̂₂ = 1 → θ = −0.2
    // k=3, g=−2: m₁ = −0.625, m₂ = 1.328125; m̂₁ = −0.625/0.875, m̂₂ = 1.328125/0.578125
    //            → θ = −0.2 + 0.1·0.714286/1.515700 = −0.152874
    let mut p = param(ParamKind::LinearWeight, t(&[1], &[0.0]));
    let h = Hyper {
        lr: 0.1,
        betas: (0.5, 0.75),
        eps: 1e-30,
        ..Hyper::default()
    };
    let mut opt = optimizer(Method::Adam, &p, h, Box::new(NoRegularizer));
    let mut thetas = Vec::new();
    for g in [1.0, 1.0, -2.0] {
        opt.step(&mut [&mut p], &[t(&[1], &[g])]).unwrap();
        thetas.push(p.value.data()[0]);
    }
    let third = -0.2 + 0.1 * (0.625f64 / 0.875) / (1.328125f64 / 0.578125).sqrt();
    close(&thetas, &[-0.1, -0.2, third as f32], 1e-6);
    let s = &opt.param_states()[0];
    close(s.m1.as_ref().unwrap(), &[-0.625], 1e-6);
    close(s.m2.as_ref().unwrap(), &[1.328125], 1e-6);
}

#[test]
fn weights_shrink_in_their_group_while_biases_in_theirs_stay_unregularized() {
    // ProxGD with zero gradients is the prox alone: the ℓ1 group's weights
    // shrink by τλ = 0.01 per step (and stop at 0), the biases do not move.
    let mut w = Parameter::new(
        "fc.weight",
        ParamKind::LinearWeight,
        t(&[2], &[1.0, -0.015]),
    );
    let mut b = Parameter::new("fc.bias", ParamKind::Bias, t(&[2], &[1.0, -0.015]));
    let h = Hyper {
        lr: 0.1,
        ..Hyper::default()
    };
    let specs = vec![
        GroupSpec::new(
            "weights",
            &[ParamKind::LinearWeight],
            h,
            Box::new(L1::new(0.1)),
        ),
        GroupSpec::new("biases", &[ParamKind::Bias], h, Box::new(NoRegularizer)),
    ];
    let mut opt = GroupedOptimizer::new(Method::ProxGd, &[&w, &b], specs).unwrap();
    for _ in 0..3 {
        let zero = [t(&[2], &[0.0, 0.0]), t(&[2], &[0.0, 0.0])];
        opt.step(&mut [&mut w, &mut b], &zero).unwrap();
    }
    close(w.value.data(), &[0.97, 0.0], 1e-6);
    assert_eq!(b.value.data(), &[1.0, -0.015]);
    // LinBreg with a strong λ on the weights: the same gradient moves the
    // unregularized biases (θ = δv) and leaves the weights in the zero set.
    let mut w = Parameter::new("fc.weight", ParamKind::LinearWeight, t(&[2], &[0.0, 0.0]));
    let mut b = Parameter::new("fc.bias", ParamKind::Bias, t(&[2], &[0.0, 0.0]));
    let specs = vec![
        GroupSpec::new(
            "weights",
            &[ParamKind::LinearWeight],
            h,
            Box::new(L1::new(10.0)),
        ),
        GroupSpec::new("biases", &[ParamKind::Bias], h, Box::new(NoRegularizer)),
    ];
    let mut opt = GroupedOptimizer::new(Method::LinBreg, &[&w, &b], specs).unwrap();
    let g = [t(&[2], &[1.0, -2.0]), t(&[2], &[1.0, -2.0])];
    opt.step(&mut [&mut w, &mut b], &g).unwrap();
    assert_eq!(w.value.data(), &[0.0, 0.0]);
    close(b.value.data(), &[-0.1, 0.2], 1e-7);
}
