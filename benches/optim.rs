//! One optimizer step, every method, at MLP size (173,890 parameters in 6
//! tensors) and ResNet-18 size (11,173,962 parameters in 62 tensors), with a
//! streaming read-2/write-2 loop over the same tensors as the bandwidth
//! reference in the same run.
//!
//! `cargo bench --bench optim`. Throughput is in bytes moved per step (e.g.
//! LinBreg reads g, v and writes v, θ: 16 bytes per parameter). After the
//! timings the bench counts heap allocations of 10 steps per method (a global
//! allocator wrapper) and prints them: a fused step allocates nothing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bregman::layers::{models, Module, Parameter, Sequential};
use bregman::optim::{
    GroupL12, GroupSpec, GroupedOptimizer, Hyper, Method, NoRegularizer, Optimizer, Regularizer, L1,
};
use bregman::tensor::parallel::CHUNK;
use bregman::tensor::Tensor;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// Counts allocations so the bench can show that a step allocates nothing.
struct Counting;
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// `(id, method, momentum, weight regularizer, bytes moved per parameter)`.
type Case = (&'static str, Method, f32, Box<dyn Regularizer>, u64);

fn cases() -> Vec<Case> {
    vec![
        ("sgd", Method::Sgd, 0.0, Box::new(NoRegularizer), 12),
        (
            "sgd_momentum",
            Method::Sgd,
            0.9,
            Box::new(NoRegularizer),
            20,
        ),
        ("adam", Method::Adam, 0.0, Box::new(NoRegularizer), 28),
        (
            "proxgd_l1",
            Method::ProxGd,
            0.0,
            Box::new(L1::new(1e-4)),
            12,
        ),
        (
            "linbreg_l1",
            Method::LinBreg,
            0.0,
            Box::new(L1::new(0.1)),
            16,
        ),
        (
            "linbreg_momentum_l1",
            Method::LinBreg,
            0.9,
            Box::new(L1::new(0.1)),
            24,
        ),
        (
            "adabreg_l1",
            Method::AdaBreg,
            0.0,
            Box::new(L1::new(0.1)),
            32,
        ),
        (
            "linbreg_group_rows",
            Method::LinBreg,
            0.0,
            Box::new(GroupL12::rows(0.1)),
            16,
        ),
    ]
}

struct Setup {
    params: Vec<Parameter>,
    grads: Vec<Tensor>,
    n: usize,
}

fn setup(model: Sequential) -> Setup {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let params: Vec<Parameter> = model.params().into_iter().cloned().collect();
    let grads = params
        .iter()
        .map(|p| Tensor::from_fn(p.value.shape(), |_| rng.gen_range(-1e-3..1e-3)))
        .collect();
    let n = params.iter().map(|p| p.value.len()).sum();
    Setup { params, grads, n }
}

fn optimizer(
    s: &Setup,
    method: Method,
    momentum: f32,
    reg: Box<dyn Regularizer>,
) -> GroupedOptimizer {
    let refs: Vec<&Parameter> = s.params.iter().collect();
    let h = Hyper {
        lr: 1e-3,
        momentum,
        ..Hyper::default()
    };
    GroupedOptimizer::new(method, &refs, GroupSpec::weights_and_rest(h, reg)).expect("groups")
}

/// The bandwidth reference: per tensor, `v ← v − τg; θ ← δv` (read 2, write 2)
/// with the kernels' chunking, no prox.
fn reference(theta: &mut [Tensor], v: &mut [Tensor], g: &[Tensor]) {
    for ((t, v), g) in theta.iter_mut().zip(v.iter_mut()).zip(g) {
        let body = |(t, (v, g)): (&mut [f32], (&mut [f32], &[f32]))| {
            for ((t, v), &g) in t.iter_mut().zip(v.iter_mut()).zip(g) {
                *v -= 1e-3 * g;
                *t = *v;
            }
        };
        let (t, v, g) = (t.data_mut(), v.data_mut(), g.data());
        if t.len() >= 2 * CHUNK {
            t.par_chunks_mut(CHUNK)
                .zip(v.par_chunks_mut(CHUNK).zip(g.par_chunks(CHUNK)))
                .for_each(body);
        } else {
            t.chunks_mut(CHUNK)
                .zip(v.chunks_mut(CHUNK).zip(g.chunks(CHUNK)))
                .for_each(body);
        }
    }
}

fn bench_optim(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let sizes = [
        (
            "mlp_173890",
            setup(models::mlp(&[784, 200, 80, 10], &mut rng)),
        ),
        (
            "resnet18_11173962",
            setup(models::resnet18_cifar(10, &mut rng)),
        ),
    ];
    let mut group = c.benchmark_group("optim_step");
    let mut allocation_report = Vec::new();
    for (size, s) in &sizes {
        for (id, method, momentum, reg, bytes) in cases() {
            let mut opt = optimizer(s, method, momentum, reg);
            let mut params = s.params.clone();
            // First step allocates the state (v, moments); not timed.
            opt.step(&mut params.iter_mut().collect::<Vec<_>>(), &s.grads)
                .expect("step");
            let mut refs: Vec<&mut Parameter> = params.iter_mut().collect();
            group.throughput(Throughput::Bytes(bytes * s.n as u64));
            group.bench_function(BenchmarkId::new(id, size), |b| {
                b.iter(|| {
                    opt.step(black_box(&mut refs), black_box(&s.grads))
                        .expect("step")
                })
            });
            let before = ALLOCATIONS.load(Ordering::Relaxed);
            for _ in 0..10 {
                opt.step(&mut refs, &s.grads).expect("step");
            }
            allocation_report.push(format!(
                "{id}/{size}: {} allocations in 10 steps",
                ALLOCATIONS.load(Ordering::Relaxed) - before
            ));
        }
        let mut theta: Vec<Tensor> = s.params.iter().map(|p| p.value.clone()).collect();
        let mut v = theta.clone();
        group.throughput(Throughput::Bytes(16 * s.n as u64));
        group.bench_function(BenchmarkId::new("reference", size), |b| {
            b.iter(|| {
                reference(
                    black_box(&mut theta),
                    black_box(&mut v),
                    black_box(&s.grads),
                )
            })
        });
    }
    group.finish();
    for line in allocation_report {
        println!("{line}");
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    targets = bench_optim
}
criterion_main!(benches);
