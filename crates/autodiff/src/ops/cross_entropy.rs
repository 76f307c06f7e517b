//! Cross-entropy of logits against class labels: log-softmax and negative
//! log-likelihood fused, averaged over the batch.
//!
//! `L = (1/N) Σₙ (log Σₖ e^{z_{nk}} − z_{n,yₙ})`, computed with the max
//! subtracted for stability; `∂L/∂z_{nk} = (softmax(zₙ)ₖ − [k = yₙ]) / N`.

use bregman_tensor::Tensor;

use crate::{Backward, Tape, Var};

/// Mean cross-entropy and the softmax probabilities, without a tape.
///
/// **Panics** if `logits` is not `[N, K]`, `labels.len() != N` or a label is `≥ K`.
pub fn forward(logits: &Tensor, labels: &[usize]) -> (f32, Tensor) {
    assert!(
        logits.ndim() == 2 && logits.dim(0) == labels.len(),
        "cross_entropy: logits {:?} vs {} labels",
        logits.shape(),
        labels.len()
    );
    let k = logits.dim(1);
    let mut probs = logits.clone();
    let mut total = 0.0f64;
    if k > 0 {
        for (row, &y) in probs.data_mut().chunks_mut(k).zip(labels) {
            assert!(
                y < k,
                "cross_entropy: label {y} out of range for {k} classes"
            );
            let zmax = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            let zy = row[y];
            let mut s = 0.0f64;
            for z in row.iter_mut() {
                *z = (*z - zmax).exp();
                s += *z as f64;
            }
            // log Σₖ e^{zₖ} − z_y = log Σₖ e^{zₖ − zmax} − (z_y − zmax).
            total += s.ln() - (zy - zmax) as f64;
            let inv = (1.0 / s) as f32;
            row.iter_mut().for_each(|z| *z *= inv);
        }
    }
    let n = labels.len().max(1) as f64;
    ((total / n) as f32, probs)
}

struct CrossEntropyBackward {
    probs: Tensor,
    labels: Vec<usize>,
}

impl Backward for CrossEntropyBackward {
    fn backward(&self, _: &[&Tensor], _: &Tensor, grad: Tensor, _: &[bool]) -> Vec<Option<Tensor>> {
        let k = self.probs.dim(1);
        let scale = grad.item() / self.labels.len().max(1) as f32;
        let mut dz = self.probs.clone();
        if k > 0 {
            for (row, &y) in dz.data_mut().chunks_mut(k).zip(&self.labels) {
                row[y] -= 1.0;
                row.iter_mut().for_each(|v| *v *= scale);
            }
        }
        vec![Some(dz)]
    }
}

impl<'a> Tape<'a> {
    /// Mean cross-entropy of `logits: [N, K]` against `labels` (a scalar).
    ///
    /// **Panics** on a shape mismatch or a label `≥ K`.
    pub fn cross_entropy(&mut self, logits: Var, labels: &[usize]) -> Var {
        let (loss, probs) = forward(self.value(logits), labels);
        let rule = CrossEntropyBackward {
            probs,
            labels: labels.to_vec(),
        };
        self.push(Tensor::scalar(loss), &[logits], rule)
    }
}
