//! One training step (forward + backward, no optimizer) at batch 128.
//!
//! `cargo bench --bench train_step`. Throughput is in images, so criterion
//! reports images/second next to the median step time.

use bregman::autodiff::Tape;
use bregman::layers::{models, Module, Sequential};
use bregman::tensor::Tensor;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;
use std::time::Duration;

const BATCH: usize = 128;

fn step(model: &Sequential, x: &Tensor, labels: &[usize]) -> f32 {
    let mut tape = Tape::new();
    let xv = tape.constant(x.clone());
    let y = model.forward(&mut tape, xv).expect("forward");
    let loss = tape.cross_entropy(y, labels);
    tape.backward(loss);
    tape.value(loss).item()
}

fn bench_model(c: &mut Criterion, name: &str, model: Sequential, input: &[usize], samples: usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let x = Tensor::from_fn(input, |_| rng.gen_range(-1.0..1.0));
    let labels: Vec<usize> = (0..BATCH).map(|_| rng.gen_range(0..10)).collect();
    let mut group = c.benchmark_group("train_step");
    group.sample_size(samples);
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function(name, |b| b.iter(|| black_box(step(&model, &x, &labels))));
    group.finish();
}

fn train_step(c: &mut Criterion) {
    bregman::tune_allocator();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    bench_model(
        c,
        "mlp",
        models::mlp(&[784, 200, 80, 10], &mut rng),
        &[BATCH, 784],
        50,
    );
    bench_model(
        c,
        "paper_convnet",
        models::paper_convnet(&mut rng),
        &[BATCH, 1, 28, 28],
        20,
    );
    bench_model(
        c,
        "resnet18",
        models::resnet18_cifar(10, &mut rng),
        &[BATCH, 3, 32, 32],
        10,
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(2));
    targets = train_step
}
criterion_main!(benches);
