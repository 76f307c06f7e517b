//! The steps of sparse backpropagation: a masked step moves the support
//! alone and moves it exactly as the full step would; on a dense θ it is the
//! full step; the scaled full step after masked ones catches LinBreg up with
//! the steps it stands for; other methods refuse both.

use bregman_layers::{ParamKind, Parameter};
use bregman_optim::{
    CatchUp, GroupL12, GroupSpec, GroupedOptimizer, Hyper, Method, OptimError, Optimizer,
    Regularizer, StepMode, L1,
};
use bregman_tensor::Tensor;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn rand_tensor(shape: &[usize], seed: u64) -> Tensor {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    Tensor::from_fn(shape, |_| r.gen_range(-1.0f32..1.0))
}

/// (method, momentum) of the three Bregman variants.
const METHODS: [(Method, f32); 3] = [
    (Method::LinBreg, 0.0),
    (Method::LinBreg, 0.9),
    (Method::AdaBreg, 0.0),
];

/// A regularizer with the parameter kind and shape it groups.
fn cases() -> Vec<(Box<dyn Regularizer>, ParamKind, Vec<usize>)> {
    vec![
        (Box::new(L1::new(0.3)), ParamKind::LinearWeight, vec![8, 10]),
        (
            Box::new(GroupL12::rows(0.6)),
            ParamKind::LinearWeight,
            vec![8, 10],
        ),
        (
            Box::new(GroupL12::kernels(0.5)),
            ParamKind::ConvWeight,
            vec![6, 4, 3, 3],
        ),
    ]
}

fn setup(
    (method, momentum): (Method, f32),
    reg: &dyn Regularizer,
    kind: ParamKind,
    shape: &[usize],
) -> (Parameter, GroupedOptimizer) {
    // A third of the groups (entries, rows or kernels) zero: v = 0 there,
    // and two steps of 0.05 cannot bring them to λ.
    let mut theta = rand_tensor(shape, 1).scale(0.2);
    let gs = reg.grouping().group_size(shape);
    theta.data_mut().iter_mut().enumerate().for_each(|(i, t)| {
        if (i / gs).is_multiple_of(3) {
            *t = 0.0
        }
    });
    let mut p = Parameter::new("w", kind, theta);
    let h = Hyper {
        lr: 0.05,
        momentum,
        delta: 1.0,
        ..Hyper::default()
    };
    let spec = GroupSpec::all(h, reg.clone_box());
    let mut opt = GroupedOptimizer::new(method, &[&p], vec![spec]).unwrap();
    // Two full steps: v, the moments and a sparse θ from the prox.
    for seed in [2, 3] {
        opt.step(&mut [&mut p], &[rand_tensor(shape, seed)])
            .unwrap();
    }
    (p, opt)
}

fn bits(x: &[f32]) -> Vec<u32> {
    x.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn a_masked_step_moves_the_support_only_and_as_the_full_step_does() {
    for m in METHODS {
        for (reg, kind, shape) in cases() {
            let what = format!("{m:?} {}", reg.name());
            let (mut a, mut opt_a) = setup(m, reg.as_ref(), kind, &shape);
            let (mut b, mut opt_b) = (a.clone(), opt_a.clone());
            let on: Vec<bool> = a.value.data().iter().map(|&t| t != 0.0).collect();
            let n_on = on.iter().filter(|&&x| x).count();
            assert!(
                n_on > 0 && n_on < on.len(),
                "{what}: the test needs a sparse θ"
            );
            let before = opt_a.param_states()[0].clone();
            let g = rand_tensor(&shape, 4);
            opt_a
                .step_with(&mut [&mut a], std::slice::from_ref(&g), StepMode::Masked)
                .unwrap();
            opt_b.step(&mut [&mut b], &[g]).unwrap();
            let (sa, sb) = (&opt_a.param_states()[0], &opt_b.param_states()[0]);
            let buffers = |s: &bregman_optim::ParamState| {
                [&s.v, &s.m1, &s.m2].map(|b| b.as_ref().map(|b| bits(b)))
            };
            let (ba, bb, b0) = (buffers(sa), buffers(sb), buffers(&before));
            for i in 0..on.len() {
                let (ta, tb) = (a.value.data()[i], b.value.data()[i]);
                if on[i] {
                    assert_eq!(ta.to_bits(), tb.to_bits(), "{what}: θ[{i}] on the support");
                } else {
                    assert_eq!(
                        ta, 0.0,
                        "{what}: θ[{i}] entered the support in a masked step"
                    );
                }
                for k in 0..3 {
                    let (Some(x), Some(y), Some(z)) = (&ba[k], &bb[k], &b0[k]) else {
                        continue;
                    };
                    let want = if on[i] { y[i] } else { z[i] };
                    assert_eq!(
                        x[i], want,
                        "{what}: state {k} at {i} (on support: {})",
                        on[i]
                    );
                }
            }
        }
    }
}

#[test]
fn on_a_dense_theta_the_masked_step_is_the_full_step() {
    for m in METHODS {
        for (reg, kind, shape) in cases() {
            let mut a = Parameter::new("w", kind, rand_tensor(&shape, 9).scale(3.0));
            assert!(a.value.data().iter().all(|&t| t != 0.0));
            let h = Hyper {
                lr: 0.05,
                momentum: m.1,
                ..Hyper::default()
            };
            let spec = GroupSpec::all(h, reg.clone_box());
            let mut opt_a = GroupedOptimizer::new(m.0, &[&a], vec![spec]).unwrap();
            let (mut b, mut opt_b) = (a.clone(), opt_a.clone());
            let g = rand_tensor(&shape, 10);
            opt_a
                .step_with(&mut [&mut a], std::slice::from_ref(&g), StepMode::Masked)
                .unwrap();
            opt_b.step(&mut [&mut b], &[g]).unwrap();
            assert_eq!(
                bits(a.value.data()),
                bits(b.value.data()),
                "{m:?} {}",
                reg.name()
            );
            assert_eq!(opt_a.param_states(), opt_b.param_states());
        }
    }
}

/// LinBreg's `v` does not depend on θ, so under a constant gradient that
/// keeps the support's entries in it, `K − 1` masked steps and one full
/// step catching up give every entry the `v` of `K` full steps (to
/// rounding), and hence the same θ.
#[test]
fn the_scaled_full_step_stands_for_the_skipped_steps() {
    let mut grew = 0;
    for (reg, kind, shape) in cases() {
        let k = 8;
        let (mut exact, mut opt_e) = setup((Method::LinBreg, 0.0), reg.as_ref(), kind, &shape);
        let (mut approx, mut opt_a) = (exact.clone(), opt_e.clone());
        // Pushing |v| up on the support: no entry leaves it.
        let r = rand_tensor(&shape, 5);
        let g = Tensor::from_fn(&shape, |i| {
            let t = exact.value.data()[i];
            if t == 0.0 {
                r.data()[i]
            } else {
                -t.signum() * r.data()[i].abs()
            }
        });
        for _ in 0..k {
            opt_e
                .step(&mut [&mut exact], std::slice::from_ref(&g))
                .unwrap();
        }
        for _ in 0..k - 1 {
            opt_a
                .step_with(
                    &mut [&mut approx],
                    std::slice::from_ref(&g),
                    StepMode::Masked,
                )
                .unwrap();
        }
        opt_a
            .step_with(
                &mut [&mut approx],
                std::slice::from_ref(&g),
                StepMode::FullCatchUp(CatchUp::Linear),
            )
            .unwrap();
        let ve = opt_e.param_states()[0].v.clone().unwrap();
        let va = opt_a.param_states()[0].v.clone().unwrap();
        for (x, y) in va.iter().zip(&ve) {
            assert!((x - y).abs() < 1e-5, "{}: v {x} vs {y}", reg.name());
        }
        for (x, y) in approx.value.data().iter().zip(exact.value.data()) {
            assert!((x - y).abs() < 1e-5, "{}: θ {x} vs {y}", reg.name());
        }
        // Without the correction the support lags: never more non-zeros
        // than the exact run, and fewer in at least one case.
        let (mut plain, mut opt_p) = setup((Method::LinBreg, 0.0), reg.as_ref(), kind, &shape);
        let nnz = |p: &Parameter| p.value.data().iter().filter(|&&t| t != 0.0).count();
        let start = nnz(&plain);
        for _ in 0..k - 1 {
            opt_p
                .step_with(
                    &mut [&mut plain],
                    std::slice::from_ref(&g),
                    StepMode::Masked,
                )
                .unwrap();
        }
        opt_p
            .step(&mut [&mut plain], std::slice::from_ref(&g))
            .unwrap();
        let (p, e) = (nnz(&plain), nnz(&exact));
        assert!(
            p <= e,
            "{}: {p} non-zeros without the correction, {e} exact",
            reg.name()
        );
        if p < e && e > start {
            grew += 1;
        }
    }
    assert!(
        grew > 0,
        "the support never lagged without the correction: vacuous"
    );
}

#[test]
fn methods_without_v_refuse_masked_steps() {
    for method in [Method::Sgd, Method::Adam, Method::ProxGd] {
        let mut p = Parameter::new("w", ParamKind::LinearWeight, rand_tensor(&[3, 4], 1));
        let spec = GroupSpec::all(Hyper::default(), Box::new(L1::new(0.1)));
        let mut opt = GroupedOptimizer::new(method, &[&p], vec![spec]).unwrap();
        for mode in [StepMode::Masked, StepMode::FullCatchUp(CatchUp::Sqrt)] {
            let err = opt.step_with(&mut [&mut p], &[rand_tensor(&[3, 4], 2)], mode);
            assert!(
                matches!(err, Err(OptimError::Unsupported(_))),
                "{method:?}: {err:?}"
            );
        }
        assert_eq!(opt.steps(), 0, "a refused step is not counted");
    }
}
