//! Implementing a new `Regularizer` and training with it.
//!
//! `J(θ) = λ‖θ‖₁ + (μ/2)‖θ‖²` (ℓ1 plus weight decay). Its proximal map is
//! `prox_{tJ}(x) = shrink(x; tλ) / (1 + tμ)` and a subgradient is
//! `λ·sign(θ) + μθ`. That is all an optimizer needs: `value`, `prox`,
//! `subgradient`. We check the initialisation identity `prox_{δJ}(δv₀) = θ₀`,
//! then train the MNIST MLP with LinBreg and compare with plain ℓ1.
//!
//! `cargo run --release --example custom_regularizer`

use bregman::autodiff::Tape;
use bregman::data::{batches, load, BatchOptions, DatasetKind};
use bregman::layers::{models, Module};
use bregman::optim::init::{sparse_init, SparseInit};
use bregman::optim::regularizer::{prox_of, shrink, subgradient_of, Grouping};
use bregman::optim::{GroupSpec, GroupedOptimizer, Hyper, Method, Optimizer, Regularizer, L1};
use bregman::tensor::Tensor;
use bregman::train::metrics::sparsity;
use rand::SeedableRng;

/// ℓ1 plus weight decay.
#[derive(Debug, Clone, Copy)]
struct L1WeightDecay {
    lambda: f32,
    mu: f32,
}

impl Regularizer for L1WeightDecay {
    fn name(&self) -> String {
        "l1+weight_decay".into()
    }
    fn lambda(&self) -> f32 {
        self.lambda
    }
    fn set_lambda(&mut self, lambda: f32) {
        self.lambda = lambda;
    }
    /// Element-wise: any slice can be processed on its own.
    fn grouping(&self) -> Grouping {
        Grouping::Elements
    }
    fn value(&self, theta: &[f32], _: usize) -> f64 {
        theta
            .iter()
            .map(|&x| (self.lambda * x.abs()) as f64 + 0.5 * (self.mu * x * x) as f64)
            .sum()
    }
    /// argmin_y ½(y − x)² + t(λ|y| + μy²/2)  ⇒  y = shrink(x; tλ)/(1 + tμ).
    fn prox(&self, x: &mut [f32], _: usize, t: f32) {
        let (th, scale) = (t * self.lambda, 1.0 / (1.0 + t * self.mu));
        x.iter_mut().for_each(|v| *v = shrink(*v, th) * scale);
    }
    fn subgradient(&self, theta: &[f32], _: usize, out: &mut [f32]) {
        for (o, &x) in out.iter_mut().zip(theta) {
            let sign = if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                0.0
            };
            *o = self.lambda * sign + self.mu * x;
        }
    }
    fn clone_box(&self) -> Box<dyn Regularizer> {
        Box::new(*self)
    }
    // `elementwise()` is left at its default (None): the kernels then call
    // `prox` on each chunk right after the update loop.
}

fn train(reg: Box<dyn Regularizer>, label: &str) -> Result<(), Box<dyn std::error::Error>> {
    let (train, test) = load(
        concat!(env!("CARGO_MANIFEST_DIR"), "/data").as_ref(),
        DatasetKind::Mnist,
    )?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut model = models::mlp(&[784, 200, 80, 10], &mut rng);
    sparse_init(&mut model.params_mut(), &SparseInit::mlp(0.01), &mut rng)?;
    let specs = GroupSpec::weights_and_rest(Hyper::with_lr(0.1), reg);
    let mut opt = GroupedOptimizer::new(Method::LinBreg, &model.params(), specs)?;
    let opts = BatchOptions {
        batch_size: 128,
        shuffle: true,
        augment: false,
        noise_std: None,
        fixed_noise: false,
    };
    for epoch in 1..=5 {
        for batch in batches(&train, opts, 0, epoch) {
            let grads = {
                let mut tape = Tape::new();
                let x = tape.constant(batch.x);
                let logits = model.forward(&mut tape, x)?;
                let loss = tape.cross_entropy(logits, &batch.labels);
                tape.backward(loss);
                model
                    .params()
                    .iter()
                    .map(|p| tape.take_grad_of(&p.value).expect("used"))
                    .collect::<Vec<_>>()
            };
            opt.step(&mut model.params_mut(), &grads)?;
        }
    }
    let all = batches(
        &test,
        BatchOptions {
            batch_size: test.len(),
            shuffle: false,
            ..opts
        },
        0,
        0,
    )
    .next()
    .expect("test");
    let pred = model.infer(&all.x)?.argmax_rows();
    let acc =
        pred.iter().zip(&all.labels).filter(|(p, l)| p == l).count() as f64 / pred.len() as f64;
    let w = &model.params()[0].value;
    let rms =
        (w.sum_squares() / w.data().iter().filter(|&&v| v != 0.0).count().max(1) as f64).sqrt();
    println!(
        "{label:<22} test accuracy {:.1}%   non-zero weights {:.2}%   RMS of non-zero layer-1 weights {rms:.3}",
        100.0 * acc,
        100.0 * sparsity(&model.params()).n_total
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let reg = L1WeightDecay {
        lambda: 0.1,
        mu: 1.0,
    };

    // The Bregman initialisation v₀ = ∂J(θ₀) + θ₀/δ must give back θ₀ through the prox.
    let theta0 = Tensor::from_vec(&[5], vec![0.0, 0.3, -1.2, 2.0, -0.05])?;
    let delta = 2.0;
    let mut v0 = subgradient_of(&reg, &theta0);
    v0.axpy(1.0 / delta, &theta0);
    let mut back = v0.scale(delta);
    prox_of(&reg, &mut back, delta);
    println!(
        "θ₀ = {:?}\nprox_δJ(δ v₀) = {:?}\n",
        theta0.data(),
        back.data()
    );
    assert!(back.max_abs_diff(&theta0) < 1e-6);

    train(Box::new(L1::new(0.1)), "LinBreg, ℓ1")?;
    train(Box::new(reg), "LinBreg, ℓ1 + decay")?;
    Ok(())
}
