//! `BatchNorm2d`: per-channel normalisation with learned scale γ and shift β.
//!
//! Training mode normalises with the batch statistics (see
//! `bregman_autodiff::ops::batchnorm`) and updates the running statistics with
//! momentum 0.1, as PyTorch: `running = (1 − 0.1)·running + 0.1·batch`, using
//! the *unbiased* batch variance for `running_var`. Eval mode normalises with
//! the running statistics.

use bregman_autodiff::{ops, Tape, Var};
use bregman_tensor::Tensor;

use crate::module::expect_shape;
use crate::{Buffer, LayerError, Module, ParamKind, Parameter};

/// Batch normalisation over the channels of an NCHW tensor.
#[derive(Debug, Clone)]
pub struct BatchNorm2d {
    name: String,
    /// Scale γ `[C]` (initialised to 1).
    pub weight: Parameter,
    /// Shift β `[C]` (initialised to 0).
    pub bias: Parameter,
    /// Running mean `[C]`.
    pub running_mean: Buffer,
    /// Running (unbiased) variance `[C]`.
    pub running_var: Buffer,
    /// Added to the variance (1e-5).
    pub eps: f32,
    /// Weight of the new batch in the running averages (0.1).
    pub momentum: f32,
    training: bool,
}

impl BatchNorm2d {
    /// Batch normalisation of `channels` channels, in training mode.
    pub fn new(channels: usize) -> BatchNorm2d {
        BatchNorm2d {
            name: String::new(),
            weight: Parameter::new(
                "weight",
                ParamKind::BnWeight,
                Tensor::full(&[channels], 1.0),
            ),
            bias: Parameter::new("bias", ParamKind::BnBias, Tensor::zeros(&[channels])),
            running_mean: Buffer::new("running_mean", Tensor::zeros(&[channels])),
            running_var: Buffer::new("running_var", Tensor::full(&[channels], 1.0)),
            eps: 1e-5,
            momentum: 0.1,
            training: true,
        }
    }

    fn channels(&self) -> usize {
        self.weight.value.len()
    }

    fn check(&self, x: &[usize]) -> Result<(), LayerError> {
        expect_shape(
            &self.name,
            || self.describe(),
            x,
            &[None, Some(self.channels()), None, None],
        )
    }

    fn update_running(&self, stats: &bregman_autodiff::BatchStats) {
        let m = self.momentum;
        let unbias = if stats.count > 1 {
            stats.count as f32 / (stats.count - 1) as f32
        } else {
            1.0
        };
        let mut mean = self.running_mean.value.borrow_mut();
        for (r, &b) in mean.data_mut().iter_mut().zip(&stats.mean) {
            *r = (1.0 - m) * *r + m * b;
        }
        let mut var = self.running_var.value.borrow_mut();
        for (r, &b) in var.data_mut().iter_mut().zip(&stats.var) {
            *r = (1.0 - m) * *r + m * b * unbias;
        }
    }

    /// The per-channel `(scale, shift)` of eval mode: `y = scale·x + shift`.
    fn eval_affine(&self) -> (Tensor, Tensor) {
        let mean = self.running_mean.value.borrow();
        let var = self.running_var.value.borrow();
        let inv: Vec<f32> = var
            .data()
            .iter()
            .map(|&v| 1.0 / (v + self.eps).sqrt())
            .collect();
        let c = self.channels();
        let inv = Tensor::from_vec(&[c], inv).expect("c values");
        let neg_mean = mean.scale(-1.0);
        (inv, neg_mean)
    }
}

impl Module for BatchNorm2d {
    fn forward<'a>(&'a self, tape: &mut Tape<'a>, x: Var) -> Result<Var, LayerError> {
        self.check(tape.value(x).shape())?;
        let gamma = tape.param(&self.weight.value);
        let beta = tape.param(&self.bias.value);
        if self.training {
            let (y, stats) = tape.batchnorm(x, gamma, beta, self.eps);
            self.update_running(&stats);
            return Ok(y);
        }
        // Eval mode on the tape: y = (x − μ)·(1/√(σ²+ε))·γ + β with constant μ, σ².
        let c = self.channels();
        let (inv, neg_mean) = self.eval_affine();
        let neg_mean = tape.constant(neg_mean.reshape(&[c, 1, 1]).expect("c values"));
        let inv = tape.constant(inv);
        let scale = tape.mul(gamma, inv);
        let scale = tape.reshape(scale, &[c, 1, 1]);
        let shift = tape.reshape(beta, &[c, 1, 1]);
        let centred = tape.add(x, neg_mean);
        let scaled = tape.mul(centred, scale);
        Ok(tape.add(scaled, shift))
    }

    fn infer(&self, x: &Tensor) -> Result<Tensor, LayerError> {
        self.check(x.shape())?;
        if self.training {
            // Training-mode semantics without a tape: batch statistics.
            let mut tape = Tape::new();
            let xv = tape.constant(x.clone());
            let y = self.forward(&mut tape, xv)?;
            return Ok(tape.value(y).clone());
        }
        let mean = self.running_mean.value.borrow();
        let var = self.running_var.value.borrow();
        Ok(ops::batchnorm::forward_eval(
            x,
            &self.weight.value,
            &self.bias.value,
            mean.data(),
            var.data(),
            self.eps,
        ))
    }

    fn set_training(&mut self, training: bool) {
        self.training = training;
    }

    fn params(&self) -> Vec<&Parameter> {
        vec![&self.weight, &self.bias]
    }

    fn params_mut(&mut self) -> Vec<&mut Parameter> {
        vec![&mut self.weight, &mut self.bias]
    }

    fn buffers(&self) -> Vec<&crate::Buffer> {
        vec![&self.running_mean, &self.running_var]
    }

    fn rename(&mut self, prefix: &str) {
        self.name = prefix.to_string();
        self.weight.rename(prefix, "weight");
        self.bias.rename(prefix, "bias");
        self.running_mean.rename(prefix, "running_mean");
        self.running_var.rename(prefix, "running_var");
    }

    fn describe(&self) -> String {
        format!("BatchNorm2d {}", self.channels())
    }
}
