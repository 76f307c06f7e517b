//! Sparse initialisation statistics and the schedulers.

use bregman_layers::{models, Module, ParamKind, Parameter};
use bregman_optim::init::{sparse_init, MaskMode, SparseInit};
use bregman_optim::schedule::{LambdaScheduler, PlateauMode, PlateauScheduler};
use bregman_optim::{GroupSpec, GroupedOptimizer, Hyper, Method, Optimizer, L1};
use bregman_tensor::Tensor;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

#[test]
fn element_mask_density_and_variance() {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut model = models::mlp(&[784, 200, 80, 10], &mut rng);
    let cfg = SparseInit::mlp(0.01);
    sparse_init(&mut model.params_mut(), &cfg, &mut rng).unwrap();
    let params = model.params();
    let w = &params[0].value; // [200, 784]
    let nnz: Vec<f32> = w.data().iter().copied().filter(|&v| v != 0.0).collect();
    let density = nnz.len() as f32 / w.len() as f32;
    assert!((density - 0.01).abs() < 0.003, "density {density}");
    // Non-zeros ~ N(0, gain²·2/fan_in) with gain 0.7/√r = 7.
    let var = nnz.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / nnz.len() as f64;
    let want = 49.0 * 2.0 / 784.0;
    assert!((var / want - 1.0).abs() < 0.2, "variance {var} vs {want}");
    // Biases: positive, within [0, 1/√fan_in].
    let b = &params[1].value;
    assert!(b
        .data()
        .iter()
        .all(|&v| v >= 0.0 && v <= 1.0 / 784f32.sqrt()));
    assert!(b.data().iter().filter(|&&v| v > 0.0).count() > 190);
}

#[test]
fn row_and_kernel_masks_zero_whole_groups() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut w = Parameter::new("w", ParamKind::LinearWeight, Tensor::zeros(&[400, 30]));
    let mut c = Parameter::new("c", ParamKind::ConvWeight, Tensor::zeros(&[40, 30, 3, 3]));
    let cfg = SparseInit {
        density: 0.3,
        linear_mask: MaskMode::Rows,
        conv_mask: MaskMode::Kernels,
        gain: 1.0,
        bias_scale: 1.0,
    };
    sparse_init(&mut [&mut w, &mut c], &cfg, &mut rng).unwrap();
    let rows: Vec<bool> = w
        .value
        .data()
        .chunks(30)
        .map(|r| r.iter().any(|&v| v != 0.0))
        .collect();
    assert!(w
        .value
        .data()
        .chunks(30)
        .all(|r| r.iter().all(|&v| v != 0.0) || r.iter().all(|&v| v == 0.0)));
    let frac = rows.iter().filter(|&&r| r).count() as f32 / 400.0;
    assert!((frac - 0.3).abs() < 0.07, "row density {frac}");
    assert!(c
        .value
        .data()
        .chunks(9)
        .all(|k| k.iter().all(|&v| v != 0.0) || k.iter().all(|&v| v == 0.0)));
}

#[test]
fn invalid_density_is_an_error() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let mut w = Parameter::new("w", ParamKind::LinearWeight, Tensor::zeros(&[2, 2]));
    for r in [0.0, -0.1, 1.5, f32::NAN] {
        let err = sparse_init(&mut [&mut w], &SparseInit::mlp(r), &mut rng).unwrap_err();
        assert!(err.to_string().contains("density"), "{err}");
    }
}

#[test]
fn same_seed_same_init() {
    let init = |seed| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut m = models::mlp(&[20, 10, 5], &mut rng);
        sparse_init(&mut m.params_mut(), &SparseInit::mlp(0.2), &mut rng).unwrap();
        m.params()
            .iter()
            .map(|p| p.value.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(init(3), init(3));
    assert_ne!(init(3), init(4));
}

#[test]
fn plateau_scheduler_halves_after_patience() {
    let mut w = Parameter::new("w", ParamKind::LinearWeight, Tensor::zeros(&[1]));
    let mut opt = GroupedOptimizer::new(
        Method::Sgd,
        &[&w],
        vec![GroupSpec::all(Hyper::with_lr(0.1), Box::new(L1::new(0.0)))],
    )
    .unwrap();
    let mut s = PlateauScheduler::default();
    // 0.9 then six epochs within 1% (0.905 < 0.9·1.01): the 6th bad epoch (> patience 5) halves lr.
    let metrics = [0.9, 0.905, 0.902, 0.9, 0.905, 0.906, 0.907];
    let reduced: Vec<bool> = metrics.iter().map(|&m| s.step(m, &mut opt)).collect();
    assert_eq!(reduced, [false, false, false, false, false, false, true]);
    assert!((opt.groups()[0].hyper.lr - 0.05).abs() < 1e-9);
    // A real improvement resets the count.
    assert!(!s.step(0.95, &mut opt));
    assert_eq!(s.bad_epochs, 0);
    let g = Tensor::zeros(&[1]);
    opt.step(&mut [&mut w], &[g]).unwrap();
}

#[test]
fn plateau_scheduler_in_min_mode_watches_a_falling_loss() {
    // The authors' notebooks: ReduceLROnPlateau(mode="min") on the training loss.
    let mut s = PlateauScheduler::new(PlateauMode::Min);
    // Each epoch 2% lower: always an improvement, never a reduction.
    let falling: Vec<bool> = (0..10).map(|k| s.observe(0.98f32.powi(k))).collect();
    assert!(falling.iter().all(|&r| !r));
    // Then within 1% of the best (0.98⁹ ≈ 0.8337): the 6th such epoch reduces.
    let best = s.best.unwrap();
    let flat: Vec<bool> = (0..6).map(|_| s.observe(best * 0.995)).collect();
    assert_eq!(flat, [false, false, false, false, false, true]);
    // In max mode the same falling sequence is a plateau.
    let mut m = PlateauScheduler::default();
    let r: Vec<bool> = (0..7).map(|k| m.observe(0.98f32.powi(k))).collect();
    assert_eq!(r, [false, false, false, false, false, false, true]);
}

#[test]
fn lambda_scheduler_moves_lambda_and_reinitialises_v() {
    let mut w = Parameter::new(
        "w",
        ParamKind::LinearWeight,
        Tensor::from_vec(&[2], vec![0.5, 0.0]).unwrap(),
    );
    let mut opt = GroupedOptimizer::new(
        Method::LinBreg,
        &[&w],
        vec![GroupSpec::all(Hyper::with_lr(0.1), Box::new(L1::new(0.1)))],
    )
    .unwrap();
    opt.step(&mut [&mut w], &[Tensor::zeros(&[2])]).unwrap();
    let mut s = LambdaScheduler::new(0.1, 0.05);
    s.warmup = 1;
    s.cooldown = 1;
    assert!(!s.step(0.5, &mut opt, &[&w])); // warm-up
    assert!(s.step(0.5, &mut opt, &[&w])); // density 0.5 > 0.1: λ up
    assert!((opt.groups()[0].regularizer.lambda() - 0.15).abs() < 1e-6);
    // v = λ·sign(θ) + θ/δ with the new λ, so θ is unchanged by the prox.
    let v = opt.param_states()[0].v.clone().unwrap();
    assert!((v[0] - (0.15 + 0.5)).abs() < 1e-6 && v[1] == 0.0, "{v:?}");
    assert!(s.step(0.01, &mut opt, &[&w])); // far below target: λ down
    assert!((opt.groups()[0].regularizer.lambda() - 0.1).abs() < 1e-6);
    assert!(!s.step(0.095, &mut opt, &[&w])); // inside the band
}
