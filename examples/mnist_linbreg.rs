//! Train the paper's MNIST MLP with LinBreg through the library API (not the
//! CLI), on the sample shipped in `data/`.
//!
//! `cargo run --release --example mnist_linbreg`

use bregman::autodiff::Tape;
use bregman::data::{batches, load, BatchOptions, DatasetKind};
use bregman::layers::{models, Module};
use bregman::optim::init::{sparse_init, SparseInit};
use bregman::optim::{GroupSpec, GroupedOptimizer, Hyper, Method, Optimizer, L1};
use bregman::train::metrics::sparsity;
use rand::SeedableRng;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (train, test) = load(
        concat!(env!("CARGO_MANIFEST_DIR"), "/data").as_ref(),
        DatasetKind::Mnist,
    )?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut model = models::mlp(&[784, 200, 80, 10], &mut rng);
    sparse_init(&mut model.params_mut(), &SparseInit::mlp(0.01), &mut rng)?; // 1% non-zero weights
    let hyper = Hyper::with_lr(0.1);
    let mut opt = GroupedOptimizer::new(
        Method::LinBreg,
        &model.params(),
        GroupSpec::weights_and_rest(hyper, Box::new(L1::new(0.1))),
    )?;
    let opts = BatchOptions {
        batch_size: 128,
        shuffle: true,
        augment: false,
        noise_std: None,
        fixed_noise: false,
    };
    for epoch in 1..=10 {
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
            opt.step(&mut model.params_mut(), &grads)?; // v ← v − τg; θ ← prox_{δJ}(δv)
        }
        let test_batch = batches(
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
        .expect("test set");
        let pred = model.infer(&test_batch.x)?.argmax_rows();
        let acc = pred
            .iter()
            .zip(&test_batch.labels)
            .filter(|(p, l)| p == l)
            .count() as f64
            / pred.len() as f64;
        let n_total = sparsity(&model.params()).n_total;
        println!(
            "epoch {epoch:>2}: test accuracy {:.1}%, non-zero weights {:.2}%",
            100.0 * acc,
            100.0 * n_total
        );
    }
    Ok(())
}
