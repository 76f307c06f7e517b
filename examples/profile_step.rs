//! Where does a training step's time go? Times every tape node and every GEMM
//! call of one forward + backward pass at batch 128 and prints per-operation
//! and per-GEMM-shape tables (the figures behind docs/BENCHMARKS.md).
//!
//! ```sh
//! cargo run --release --example profile_step -- convnet
//! cargo run --release --example profile_step -- resnet18 --steps 2 --backend gemm
//! cargo run --release --example profile_step -- convnet --density 0.03 --masked
//! ```
//!
//! `--density R` initialises the weights sparse (a fraction `R` non-zero, as
//! Bregman training starts), so the sparse kernels run where they pay;
//! `--masked` computes the weight gradients on the support only (a masked
//! step of `--sparse-backprop`); `--stale` marks the weights changed before
//! every step, as the optimizer does in training, so each step rebuilds the
//! sparse forms (inside the forward times of the layers that have them).
//!
//! Models: `mlp`, `convnet` (default), `resnet18`. `--backend` forces one GEMM
//! kernel for every call (`matrixmultiply`, `gemm` or `packed`; default: the engine's
//! per-shape choice), to compare the two shape by shape. Timings are wall
//! clock: on a noisy machine, repeat and compare the best runs.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bregman::autodiff::{Tape, WeightGrad};
use bregman::layers::{models, Module, Sequential};
use bregman::optim::init::{sparse_init, SparseInit};
use bregman::tensor::gemm::Backend;
use bregman::tensor::gemm_profile;
use bregman::tensor::Tensor;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const BATCH: usize = 128;

fn main() {
    bregman::tune_allocator();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let model_name = args
        .first()
        .filter(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_else(|| "convnet".to_string());
    let steps: usize = flag("--steps").map_or(5, |s| s.parse().expect("--steps N"));
    let backend = match flag("--backend").as_deref() {
        None | Some("auto") => None,
        Some("matrixmultiply") => Some(Backend::MatrixMultiply),
        Some("gemm") => Some(Backend::GemmCrate),
        Some("packed") => Some(Backend::Packed),
        Some(other) => panic!("--backend {other}: expected auto, matrixmultiply, gemm or packed"),
    };
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let (mut model, input): (Sequential, Vec<usize>) = match model_name.as_str() {
        "mlp" => (models::mlp(&[784, 200, 80, 10], &mut rng), vec![BATCH, 784]),
        "convnet" => (models::paper_convnet(&mut rng), vec![BATCH, 1, 28, 28]),
        "resnet18" => (models::resnet18_cifar(10, &mut rng), vec![BATCH, 3, 32, 32]),
        other => panic!("unknown model {other}: expected mlp, convnet or resnet18"),
    };
    if let Some(r) = flag("--density") {
        let r: f32 = r.parse().expect("--density R");
        sparse_init(&mut model.params_mut(), &SparseInit::mlp(r), &mut rng)
            .expect("--density in (0, 1]");
    }
    if args.iter().any(|a| a == "--masked") {
        model.set_weight_grad(WeightGrad::Support);
    }
    let x = Tensor::from_fn(&input, |_| rng.gen_range(-1.0..1.0));
    let labels: Vec<usize> = (0..BATCH).map(|_| rng.gen_range(0..10)).collect();
    gemm_profile::force_backend(backend);

    let stale = args.iter().any(|a| a == "--stale");
    let mut step = |profiled: bool| {
        let start = Instant::now();
        if stale {
            drop(model.params_mut());
        }
        let mut tape = if profiled {
            Tape::profiled()
        } else {
            Tape::new()
        };
        let xv = tape.constant(x.clone());
        let y = model.forward(&mut tape, xv).expect("forward");
        let loss = tape.cross_entropy(y, &labels);
        tape.backward(loss);
        let timings = tape.timings().map(<[_]>::to_vec).unwrap_or_default();
        drop(tape);
        (start.elapsed(), timings)
    };
    step(false); // warm-up: first-touch page faults, thread start-up

    gemm_profile::enable(true);
    let mut per_op: BTreeMap<String, (usize, Duration, Duration)> = BTreeMap::new();
    let mut step_times = Vec::new();
    for _ in 0..steps {
        let (time, timings) = step(true);
        step_times.push(time);
        for t in timings {
            let e = per_op.entry(t.op).or_default();
            e.0 += 1;
            e.1 += t.forward;
            e.2 += t.backward;
        }
    }
    gemm_profile::enable(false);
    let gemms = gemm_profile::take();

    step_times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3 / steps as f64;
    println!(
        "{model_name}, batch {BATCH}, {steps} profiled steps, backend {}: median step {:.3} ms (min {:.3})",
        flag("--backend").unwrap_or_else(|| "auto".into()),
        step_times[steps / 2].as_secs_f64() * 1e3,
        step_times[0].as_secs_f64() * 1e3,
    );
    println!("\n| op | nodes/step | forward ms/step | backward ms/step |");
    println!("|---|---|---|---|");
    let mut ops: Vec<_> = per_op.into_iter().collect();
    ops.sort_by_key(|(_, (_, fwd, bwd))| std::cmp::Reverse(*fwd + *bwd));
    for (op, (count, fwd, bwd)) in ops {
        println!(
            "| {op} | {} | {:.3} | {:.3} |",
            count / steps,
            ms(fwd),
            ms(bwd)
        );
    }
    println!("\nSerial GEMMs run one product per rayon task (one image); their ms/step add up all threads.");
    println!("\n| GEMM m×k×n | transposes | serial | backend | calls/step | ms per call | ms/step | GFLOP/s per call |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut gemms = gemms;
    gemms.sort_by_key(|g| std::cmp::Reverse(g.total));
    for g in gemms {
        let per_call = g.total.as_secs_f64() / g.calls as f64;
        let flops = 2.0 * (g.m * g.k * g.n) as f64;
        println!(
            "| {}×{}×{} | {}{} | {} | {:?} | {} | {:.4} | {:.3} | {:.0} |",
            g.m,
            g.k,
            g.n,
            if g.trans_a { "Aᵀ" } else { "A" },
            if g.trans_b { "Bᵀ" } else { "B" },
            if g.serial { "yes" } else { "no" },
            g.backend,
            g.calls / steps,
            per_call * 1e3,
            ms(g.total),
            flops / per_call / 1e9,
        );
    }
}
