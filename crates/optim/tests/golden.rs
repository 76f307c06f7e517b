//! Replays the optimizer iterates of the authors' reference PyTorch
//! implementation (TimRoith/BregmanLearning, float64), copied from
//! `shared/data/golden/optimizers.json` into `tests/data/`: 45 cases
//! (LinBreg δ = 1 and 2, LinBreg-momentum, AdaBreg, ProxGD; every regularizer;
//! two λ), four steps each, θ (and v) compared after every step.

use bregman_layers::{ParamKind, Parameter};
use bregman_optim::{
    GroupL12, GroupSpec, GroupedOptimizer, Hyper, Method, NoRegularizer, Optimizer, Regularizer, L1,
};
use bregman_tensor::Tensor;
use serde_json::Value;

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

fn regularizer(name: &str, lam: f32) -> Box<dyn Regularizer> {
    match name {
        "none" => Box::new(NoRegularizer),
        "l1" => Box::new(L1::new(lam)),
        "l1_pos" => Box::new(L1::nonnegative(lam)),
        "group_rows" => Box::new(GroupL12::rows(lam)),
        "group_kernels" => Box::new(GroupL12::kernels(lam)),
        other => panic!("unknown regularizer {other}"),
    }
}

/// |a − b| ≤ 1e-5·max(1, |b|), i.e. relative 1e-5 for values of size ≥ 1.
fn assert_close(got: &[f32], want: &[f32], what: &str) {
    for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
        let tol = 1e-5 * b.abs().max(1.0);
        assert!(
            (a - b).abs() <= tol,
            "{what}: element {i}: got {a}, reference {b}"
        );
    }
}

#[test]
fn replay_reference_iterates() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/golden_optimizers.json"
    ))
    .expect("golden file");
    let doc: Value = serde_json::from_str(&text).expect("json");
    let cases = doc["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 45);
    let mut checked = 0;
    for (ci, case) in cases.iter().enumerate() {
        let opt_name = case["optimizer"].as_str().unwrap();
        let reg_name = case["regularizer"].as_str().unwrap();
        let lam = case["lam"].as_f64().unwrap() as f32;
        let hyper = &case["hyper"];
        let shape: Vec<usize> = case["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect();
        let label = format!("case {ci} ({opt_name}, {reg_name}, λ={lam}, {hyper})");

        let mut h = Hyper::with_lr(hyper["lr"].as_f64().unwrap() as f32);
        h.delta = hyper.get("delta").and_then(Value::as_f64).unwrap_or(1.0) as f32;
        h.momentum = hyper.get("momentum").and_then(Value::as_f64).unwrap_or(0.0) as f32;
        if let Some(b) = hyper.get("betas") {
            h.betas = (b[0].as_f64().unwrap() as f32, b[1].as_f64().unwrap() as f32);
        }
        if let Some(e) = hyper.get("eps") {
            h.eps = e.as_f64().unwrap() as f32;
        }
        let method = match opt_name {
            "linbreg" | "linbreg_momentum" => Method::LinBreg,
            "adabreg" => Method::AdaBreg,
            "proxgd" => Method::ProxGd,
            other => panic!("unknown optimizer {other}"),
        };
        let kind = if shape.len() == 4 {
            ParamKind::ConvWeight
        } else {
            ParamKind::LinearWeight
        };
        let theta0 = Tensor::from_vec(&shape, floats(&case["theta0"])).unwrap();
        let mut p = Parameter::new("w", kind, theta0);
        let mut opt = GroupedOptimizer::new(
            method,
            &[&p],
            vec![GroupSpec::all(h, regularizer(reg_name, lam))],
        )
        .unwrap();
        for step in 0..4 {
            let g = Tensor::from_vec(&shape, floats(&case["grads"][step])).unwrap();
            opt.step(&mut [&mut p], &[g]).unwrap();
            assert_close(
                p.value.data(),
                &floats(&case["theta"][step]),
                &format!("{label} θ after step {}", step + 1),
            );
            if !case["v"][step].is_null() {
                let v = opt.param_states()[0].v.as_ref().expect("v");
                assert_close(
                    v,
                    &floats(&case["v"][step]),
                    &format!("{label} v after step {}", step + 1),
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 180);
}
