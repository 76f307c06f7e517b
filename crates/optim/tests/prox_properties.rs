//! Properties every proximal map must have, checked on many seeded random
//! cases (a property test without a framework: each case is reproducible
//! from its number, printed on failure):
//!
//! - non-expansive: `‖prox(x) − prox(y)‖ ≤ ‖x − y‖`;
//! - optimality: `q = (x − prox_{tJ}(x))/t ∈ ∂J(prox_{tJ}(x))`, checked
//!   exactly for ℓ1 and group ℓ1,2 (the subdifferentials are known in closed
//!   form) and for every regularizer through the subgradient inequality
//!   `J(z) ≥ J(p) + ⟨q, z − p⟩` at random `z`;
//! - ℓ1 and group ℓ1,2 semigroup: `prox_{sJ}(prox_{tJ}(x)) = prox_{(s+t)J}(x)`.

use bregman_optim::{GroupL12, L1PlusGroup, NoRegularizer, Regularizer, L1};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const CASES: u64 = 400;
const LEN: usize = 18; // whole groups of 1, 3, 6 and 9

fn regularizers(lambda: f32) -> Vec<(Box<dyn Regularizer>, &'static [usize])> {
    vec![
        (Box::new(NoRegularizer), &[1]),
        (Box::new(L1::new(lambda)), &[1]),
        (Box::new(L1::nonnegative(lambda)), &[1]),
        (Box::new(GroupL12::rows(lambda)), &[1, 3, 6, 9]),
        (Box::new(GroupL12::kernels(lambda)), &[9]),
        (
            Box::new(L1PlusGroup {
                l1: L1::new(lambda),
                group: GroupL12::kernels(lambda),
            }),
            &[3, 9],
        ),
    ]
}

/// A random vector whose values are sometimes exactly zero and sometimes
/// near the shrinkage threshold, where the prox changes regime.
fn vector(rng: &mut ChaCha8Rng, scale: f32) -> Vec<f32> {
    (0..LEN)
        .map(|_| match rng.gen_range(0..6) {
            0 => 0.0,
            1 => scale * rng.gen_range(-1.1f32..1.1) * 0.1,
            _ => scale * rng.gen_range(-2.0f32..2.0),
        })
        .collect()
}

fn prox(reg: &dyn Regularizer, x: &[f32], gs: usize, t: f32) -> Vec<f32> {
    let mut p = x.to_vec();
    reg.prox(&mut p, gs, t);
    p
}

fn norm(v: impl Iterator<Item = f64>) -> f64 {
    v.map(|x| x * x).sum::<f64>().sqrt()
}

/// Runs `body(case, rng, regularizer, group size, t)` over every case.
fn for_cases(mut body: impl FnMut(u64, &mut ChaCha8Rng, &dyn Regularizer, usize, f32)) {
    for case in 0..CASES {
        let mut rng = ChaCha8Rng::seed_from_u64(case);
        let lambda = rng.gen_range(0.01f32..1.0);
        let t = rng.gen_range(0.05f32..2.0);
        for (reg, sizes) in regularizers(lambda) {
            for &gs in sizes {
                body(case, &mut rng, reg.as_ref(), gs, t);
            }
        }
    }
}

#[test]
fn every_prox_is_non_expansive() {
    for_cases(|case, rng, reg, gs, t| {
        let (x, y) = (vector(rng, 1.0), vector(rng, 1.0));
        let (px, py) = (prox(reg, &x, gs, t), prox(reg, &y, gs, t));
        let d_in = norm(x.iter().zip(&y).map(|(a, b)| (a - b) as f64));
        let d_out = norm(px.iter().zip(&py).map(|(a, b)| (a - b) as f64));
        assert!(
            d_out <= d_in * (1.0 + 1e-5) + 1e-6,
            "case {case}, {} gs {gs}: ‖prox x − prox y‖ = {d_out} > ‖x − y‖ = {d_in}",
            reg.name()
        );
    });
}

#[test]
fn the_prox_residual_is_a_subgradient_at_the_prox() {
    for_cases(|case, rng, reg, gs, t| {
        let x = vector(rng, 1.0);
        let p = prox(reg, &x, gs, t);
        let q: Vec<f64> = x
            .iter()
            .zip(&p)
            .map(|(&a, &b)| (a as f64 - b as f64) / t as f64)
            .collect();
        let jp = reg.value(&p, gs);
        let nonnegative = reg.name() == "l1_pos";
        assert!(!nonnegative || p.iter().all(|&v| v >= 0.0));
        for k in 0..20 {
            // Random points, some near p, inside J's domain.
            let step = if k < 10 { 1e-2 } else { 1.0 };
            let z: Vec<f32> = p
                .iter()
                .map(|&v| {
                    let z = v + step * rng.gen_range(-1.0f32..1.0);
                    if nonnegative {
                        z.max(0.0)
                    } else {
                        z
                    }
                })
                .collect();
            let lin: f64 = q
                .iter()
                .zip(z.iter().zip(&p))
                .map(|(qi, (&zi, &pi))| qi * (zi as f64 - pi as f64))
                .sum();
            let gap = reg.value(&z, gs) - (jp + lin);
            let tol = 1e-5 * (1.0 + reg.value(&z, gs).abs());
            assert!(
                gap >= -tol,
                "case {case}, {} gs {gs}: J(z) < J(p) + ⟨q, z − p⟩ by {gap:.3e}",
                reg.name()
            );
        }
    });
}

#[test]
fn l1_and_group_residuals_satisfy_the_closed_form_subdifferential() {
    for case in 0..CASES {
        let mut rng = ChaCha8Rng::seed_from_u64(1000 + case);
        let lambda = rng.gen_range(0.01f32..1.0);
        let t = rng.gen_range(0.05f32..2.0);
        let x = vector(&mut rng, 1.0);
        // ℓ1: q_i = λ·sign(p_i) where p_i ≠ 0, |q_i| ≤ λ where p_i = 0.
        let p = prox(&L1::new(lambda), &x, 1, t);
        for i in 0..LEN {
            let q = (x[i] - p[i]) / t;
            let ok = if p[i] != 0.0 {
                (q - lambda * p[i].signum()).abs() <= 1e-5 * (1.0 + q.abs()) / t
            } else {
                q.abs() <= lambda * (1.0 + 1e-6)
            };
            assert!(
                ok,
                "case {case} ℓ1 element {i}: x {} p {} q {q}",
                x[i], p[i]
            );
        }
        // Group ℓ1,2 with weight w = λ√n: q_g = w·p_g/‖p_g‖ where p_g ≠ 0, ‖q_g‖ ≤ w where p_g = 0.
        for gs in [3, 6, 9] {
            let p = prox(&GroupL12::rows(lambda), &x, gs, t);
            let w = lambda as f64 * (gs as f64).sqrt();
            for (g, (xg, pg)) in x.chunks(gs).zip(p.chunks(gs)).enumerate() {
                let q: Vec<f64> = xg
                    .iter()
                    .zip(pg)
                    .map(|(&a, &b)| (a as f64 - b as f64) / t as f64)
                    .collect();
                let np = norm(pg.iter().map(|&v| v as f64));
                if np > 0.0 {
                    for (qi, &pi) in q.iter().zip(pg) {
                        let want = w * pi as f64 / np;
                        assert!(
                            (qi - want).abs() <= 1e-4 * (1.0 + w) / t as f64,
                            "case {case} group {g} (n = {gs}): q {qi} vs {want}"
                        );
                    }
                } else {
                    let nq = norm(q.iter().copied());
                    assert!(
                        nq <= w * (1.0 + 1e-5),
                        "case {case} group {g}: ‖q‖ {nq} > {w}"
                    );
                }
            }
        }
    }
}

#[test]
fn l1_and_group_proxes_form_semigroups() {
    for case in 0..CASES {
        let mut rng = ChaCha8Rng::seed_from_u64(2000 + case);
        let lambda = rng.gen_range(0.01f32..1.0);
        let (s, t) = (rng.gen_range(0.05f32..1.0), rng.gen_range(0.05f32..1.0));
        let x = vector(&mut rng, 1.0);
        let regs: Vec<(Box<dyn Regularizer>, usize)> = vec![
            (Box::new(L1::new(lambda)), 1),
            (Box::new(L1::nonnegative(lambda)), 1),
            (Box::new(GroupL12::rows(lambda)), 3),
            (Box::new(GroupL12::kernels(lambda)), 9),
        ];
        for (reg, gs) in regs {
            let twice = prox(reg.as_ref(), &prox(reg.as_ref(), &x, gs, t), gs, s);
            let once = prox(reg.as_ref(), &x, gs, s + t);
            for (i, (a, b)) in twice.iter().zip(&once).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                    "case {case}, {} gs {gs} element {i}: prox_s(prox_t x) = {a}, prox_(s+t) x = {b}",
                    reg.name()
                );
            }
        }
    }
}
