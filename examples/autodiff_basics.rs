//! Reverse-mode autodiff in one screen: build `L = mean((tanh(x·Wᵀ + b) − t)²)`,
//! call `backward`, and compare every gradient entry with a central finite difference.
//!
//! `cargo run --release --example autodiff_basics`

use bregman::autodiff::Tape;
use bregman::tensor::Tensor;

/// The loss as a plain function of W (for finite differences).
fn loss(x: &Tensor, w: &Tensor, b: &Tensor, t: &Tensor) -> f32 {
    let mut tape = Tape::new();
    let (xv, wv, bv) = (tape.constant(x.clone()), tape.param(w), tape.param(b));
    let z = tape.linear(xv, wv, Some(bv));
    let y = tape.tanh(z);
    let l = tape.mse(y, t.clone());
    tape.value(l).item()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let x = Tensor::from_vec(&[2, 3], vec![0.5, -1.0, 2.0, 1.5, 0.3, -0.7])?;
    let w = Tensor::from_vec(&[2, 3], vec![0.1, 0.2, -0.3, 0.4, -0.5, 0.6])?;
    let b = Tensor::from_vec(&[2], vec![0.05, -0.05])?;
    let t = Tensor::from_vec(&[2, 2], vec![0.0, 1.0, 1.0, 0.0])?;

    // Forward: every op appends a node to the tape. Backward: walk it in reverse.
    let mut tape = Tape::new();
    let (xv, wv, bv) = (tape.constant(x.clone()), tape.param(&w), tape.param(&b));
    let z = tape.linear(xv, wv, Some(bv)); //  z = x·Wᵀ + b
    let y = tape.tanh(z); //                   y = tanh(z)
    let l = tape.mse(y, t.clone()); //          L = mean((y − t)²)
    println!(
        "tape has {} nodes; L = {:.6}",
        tape.len(),
        tape.value(l).item()
    );
    tape.backward(l);
    let grad_w = tape.grad_of(&w).expect("W was bound with param").clone();

    println!("\n  i   dL/dW (backward)   finite difference   |diff|");
    let eps = 1e-3;
    let mut worst = 0.0f32;
    for i in 0..w.len() {
        let (mut plus, mut minus) = (w.clone(), w.clone());
        plus.data_mut()[i] += eps;
        minus.data_mut()[i] -= eps;
        let numeric = (loss(&x, &plus, &b, &t) - loss(&x, &minus, &b, &t)) / (2.0 * eps);
        let analytic = grad_w.data()[i];
        worst = worst.max((analytic - numeric).abs());
        println!(
            "  {i}   {analytic:>16.6}   {numeric:>17.6}   {:.1e}",
            (analytic - numeric).abs()
        );
    }
    println!("\nlargest difference {worst:.1e} (f32 central differences with ε = {eps})");
    assert!(worst < 1e-3, "backward and finite differences disagree");
    Ok(())
}
