//! One whole training step (forward, backward, optimizer step) of a 3%-dense
//! network, in the three forms sparse backpropagation compares
//! (docs/BREGMAN.md, docs/BENCHMARKS.md):
//!
//! - `dense`: dense kernels everywhere (`--dense-kernels`), a full step;
//! - `exact`: the sparse kernels for the forward pass and the input
//!   gradient, the dense weight gradient, a full step (the default
//!   training, `--sparse-backprop 1`);
//! - `masked`: the masked step of `--sparse-backprop K`: the weight gradient
//!   on the support only (SDDMM) and the optimizer moving the support only.
//!
//! `cargo bench --bench sparse_backprop`. The MNIST MLP with LinBreg and the
//! paper ConvNet with AdaBreg (ℓ1), both initialised at 3% density, batch
//! 128. The learning rate is tiny so that the support stays put while
//! criterion repeats the step; each step still rebuilds the sparse forms
//! from θ, as in training.

use bregman::autodiff::{Tape, WeightGrad};
use bregman::layers::{Kernels, Module, Sequential};
use bregman::optim::{GroupedOptimizer, StepMode};
use bregman::tensor::Tensor;
use bregman::train::{build_model, build_optimizer, TrainConfig};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;
use std::time::Duration;

const BATCH: usize = 128;

fn step(
    model: &mut Sequential,
    opt: &mut GroupedOptimizer,
    x: &Tensor,
    labels: &[usize],
    mode: StepMode,
) {
    let grads: Vec<Tensor> = {
        let mut tape = Tape::new();
        let xv = tape.constant(x.clone());
        let y = model.forward(&mut tape, xv).expect("forward");
        let loss = tape.cross_entropy(y, labels);
        tape.backward(loss);
        model
            .params()
            .iter()
            .map(|p| tape.take_grad_of(&p.value).expect("gradient"))
            .collect()
    };
    opt.step_with(&mut model.params_mut(), &grads, mode)
        .expect("step");
}

fn bench_model(c: &mut Criterion, experiment: &str, optimizer: &str, input: &[usize]) {
    let mut cfg = TrainConfig::preset(experiment, Some(optimizer)).expect("preset");
    cfg.sparse_init = 0.03;
    cfg.lr = 1e-7;
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let x = Tensor::from_fn(input, |_| rng.gen_range(-1.0..1.0));
    let labels: Vec<usize> = (0..BATCH).map(|_| rng.gen_range(0..10)).collect();
    let mut group = c.benchmark_group(format!("sparse_backprop_{experiment}_{optimizer}_3pct"));
    group.throughput(Throughput::Elements(BATCH as u64));
    let variants = [
        ("dense", Kernels::Dense, WeightGrad::Dense, StepMode::Full),
        ("exact", Kernels::Auto, WeightGrad::Dense, StepMode::Full),
        (
            "masked",
            Kernels::Auto,
            WeightGrad::Support,
            StepMode::Masked,
        ),
    ];
    for (name, kernels, weight_grad, mode) in variants {
        let mut model = build_model(&cfg).expect("model");
        let mut opt = build_optimizer(&cfg, &model).expect("optimizer");
        model.set_kernels(kernels);
        model.set_weight_grad(weight_grad);
        group.bench_function(name, |b| {
            b.iter(|| step(&mut model, &mut opt, black_box(&x), &labels, mode))
        });
    }
    group.finish();
}

fn sparse_backprop(c: &mut Criterion) {
    bregman::tune_allocator();
    bench_model(c, "mnist-mlp", "linbreg", &[BATCH, 784]);
    bench_model(c, "fashion-convnet", "adabreg", &[BATCH, 1, 28, 28]);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = sparse_backprop
}
criterion_main!(benches);
