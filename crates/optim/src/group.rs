//! Parameter groups: each group has its own learning rate τ, regularizer J
//! with strength λ, elastic-net scale δ and momentum β (and Adam's β₁, β₂, ε),
//! as in the authors' experiments (typically {conv weights}, {linear weights},
//! {batchnorm weights}, {biases}).

use bregman_layers::{ParamKind, Parameter};

use crate::regularizer::{NoRegularizer, Regularizer};
use crate::OptimError;

/// Hyper-parameters of one group.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hyper {
    /// Learning rate τ.
    pub lr: f32,
    /// Elastic-net scale δ > 0 of the Bregman methods (default 1).
    pub delta: f32,
    /// Momentum β (SGD: heavy ball; LinBreg: eq. 2.14); 0 disables it.
    pub momentum: f32,
    /// Adam/AdaBreg β₁, β₂.
    pub betas: (f32, f32),
    /// Adam/AdaBreg ε.
    pub eps: f32,
}

impl Default for Hyper {
    fn default() -> Self {
        Hyper {
            lr: 0.1,
            delta: 1.0,
            momentum: 0.0,
            betas: (0.9, 0.999),
            eps: 1e-8,
        }
    }
}

impl Hyper {
    /// Default hyper-parameters with learning rate `lr`.
    pub fn with_lr(lr: f32) -> Hyper {
        Hyper {
            lr,
            ..Hyper::default()
        }
    }

    /// Checks every field's range.
    ///
    /// **Errors** naming the first invalid field.
    pub fn validate(&self) -> Result<(), OptimError> {
        let bad = |field, value: f32, why| {
            Err(OptimError::InvalidHyper {
                field,
                value: value as f64,
                why,
            })
        };
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("lr", self.lr, "must be > 0");
        }
        if !(self.delta > 0.0 && self.delta.is_finite()) {
            return bad("delta", self.delta, "must be > 0");
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return bad("momentum", self.momentum, "must be in [0, 1)");
        }
        if !(0.0..1.0).contains(&self.betas.0) {
            return bad("beta1", self.betas.0, "must be in [0, 1)");
        }
        if !(0.0..1.0).contains(&self.betas.1) {
            return bad("beta2", self.betas.1, "must be in [0, 1)");
        }
        if self.eps.is_nan() || self.eps <= 0.0 {
            return bad("eps", self.eps, "must be > 0");
        }
        Ok(())
    }
}

/// Which parameters a group takes, and how it treats them.
#[derive(Debug, Clone)]
pub struct GroupSpec {
    /// Name of the group (`conv_weights`, `biases`, ...).
    pub name: String,
    /// The parameter kinds it takes.
    pub kinds: Vec<ParamKind>,
    /// Its hyper-parameters.
    pub hyper: Hyper,
    /// Its regularizer J (with λ).
    pub regularizer: Box<dyn Regularizer>,
}

impl GroupSpec {
    /// A group of the given kinds.
    pub fn new(
        name: &str,
        kinds: &[ParamKind],
        hyper: Hyper,
        regularizer: Box<dyn Regularizer>,
    ) -> GroupSpec {
        GroupSpec {
            name: name.to_string(),
            kinds: kinds.to_vec(),
            hyper,
            regularizer,
        }
    }

    /// One group for every parameter.
    pub fn all(hyper: Hyper, regularizer: Box<dyn Regularizer>) -> GroupSpec {
        use ParamKind::*;
        GroupSpec::new(
            "all",
            &[LinearWeight, ConvWeight, Bias, BnWeight, BnBias],
            hyper,
            regularizer,
        )
    }

    /// The paper's common split: linear and conv weights regularized by
    /// `weights`; biases and batchnorm parameters with `J = 0`; same hyper.
    pub fn weights_and_rest(hyper: Hyper, weights: Box<dyn Regularizer>) -> Vec<GroupSpec> {
        use ParamKind::*;
        vec![
            GroupSpec::new("weights", &[LinearWeight, ConvWeight], hyper, weights),
            GroupSpec::new(
                "rest",
                &[Bias, BnWeight, BnBias],
                hyper,
                Box::new(NoRegularizer),
            ),
        ]
    }
}

/// A group as the optimizer holds it: the spec plus the indices of its parameters.
#[derive(Debug, Clone)]
pub struct ParamGroup {
    /// Name.
    pub name: String,
    /// Hyper-parameters (mutable during training: the lr scheduler changes `lr`).
    pub hyper: Hyper,
    /// The regularizer (the λ scheduler changes its λ).
    pub regularizer: Box<dyn Regularizer>,
    /// Positions of its parameters in the model's parameter list.
    pub params: Vec<usize>,
}

/// Assigns every parameter to the first spec that lists its kind.
///
/// **Errors** if a parameter fits no group or a spec's hyper-parameters are invalid.
pub fn build_groups(
    params: &[&Parameter],
    specs: Vec<GroupSpec>,
) -> Result<Vec<ParamGroup>, OptimError> {
    for s in &specs {
        s.hyper.validate()?;
        let lam = s.regularizer.lambda();
        if !(lam >= 0.0 && lam.is_finite()) {
            return Err(OptimError::InvalidHyper {
                field: "lambda",
                value: lam as f64,
                why: "must be ≥ 0",
            });
        }
    }
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); specs.len()];
    for (i, p) in params.iter().enumerate() {
        let Some(g) = specs.iter().position(|s| s.kinds.contains(&p.kind)) else {
            return Err(OptimError::Ungrouped {
                name: p.name.clone(),
                kind: p.kind.as_str(),
            });
        };
        members[g].push(i);
    }
    Ok(specs
        .into_iter()
        .zip(members)
        .map(|(s, params)| ParamGroup {
            name: s.name,
            hyper: s.hyper,
            regularizer: s.regularizer,
            params,
        })
        .collect())
}
