//! The tape: a Wengert list of recorded operations, walked backwards.
//!
//! Every operation appends one [`Node`] holding its output value, the indices of
//! its inputs and a [`Backward`] rule. Creation order is already a topological
//! order, so [`Tape::backward`] simply visits the nodes from last to first,
//! handing each node's accumulated output gradient to its rule and adding the
//! returned input gradients into the inputs' slots.
//!
//! Parameters live *outside* the tape: [`Tape::param`] borrows a tensor for the
//! lifetime `'a` of the tape (no copy). After `backward`, [`Tape::take_grad_of`]
//! moves each parameter's gradient out, the tape is dropped, and the optimizer
//! updates the parameters in place.

use std::borrow::Cow;

use std::time::Instant;

use bregman_tensor::Tensor;

use crate::profile::{NodeTiming, Profile};

/// A handle to a value recorded on a [`Tape`] (an index into its node list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Var(pub(crate) usize);

impl Var {
    /// Position of the node on its tape.
    pub fn index(self) -> usize {
        self.0
    }
}

/// The backward rule of one recorded operation.
///
/// Given the values of the inputs, the value of the output and the gradient of
/// the final scalar with respect to the output, return the gradient with respect
/// to each input (`None` where `needs[i]` is false or the input gets none).
///
/// The output gradient comes by value (the tape is done with it), so a rule
/// may reuse its buffer for an input gradient instead of allocating and
/// filling a new one: element-wise functions scale it in place, an addition
/// passes it on, batchnorm writes `∂L/∂x` over it.
pub trait Backward {
    /// Computes the input gradients (see the trait docs).
    fn backward(
        &self,
        inputs: &[&Tensor],
        output: &Tensor,
        grad: Tensor,
        needs: &[bool],
    ) -> Vec<Option<Tensor>>;
}

/// One recorded value.
struct Node<'a> {
    value: Cow<'a, Tensor>,
    inputs: Vec<usize>,
    rule: Option<Box<dyn Backward + 'a>>,
    requires_grad: bool,
}

/// A reverse-mode autodiff tape; `'a` is the lifetime of the borrowed parameters.
#[derive(Default)]
pub struct Tape<'a> {
    nodes: Vec<Node<'a>>,
    grads: Vec<Option<Tensor>>,
    /// Parameters bound so far: address of the borrowed tensor and its node.
    params: Vec<(*const Tensor, usize)>,
    /// Per-node timings, for tapes made with [`Tape::profiled`].
    profile: Option<Profile>,
}

impl<'a> Tape<'a> {
    /// An empty tape.
    pub fn new() -> Tape<'a> {
        Tape::default()
    }

    /// An empty tape that times every node's forward and backward pass
    /// (see [`Tape::timings`]).
    pub fn profiled() -> Tape<'a> {
        Tape {
            profile: Some(Profile::new()),
            ..Tape::default()
        }
    }

    /// Per-node timings, in node order, for a tape made with
    /// [`Tape::profiled`]; `None` for an ordinary tape.
    pub fn timings(&self) -> Option<&[NodeTiming]> {
        self.profile.as_ref().map(|p| p.nodes.as_slice())
    }

    /// Number of recorded nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when nothing has been recorded.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Binds a trainable parameter (borrowed, not copied). Binding the same
    /// tensor twice returns the same [`Var`], so shared weights accumulate
    /// their gradient in one place.
    pub fn param(&mut self, t: &'a Tensor) -> Var {
        let ptr = t as *const Tensor;
        if let Some(&(_, i)) = self.params.iter().find(|(p, _)| *p == ptr) {
            return Var(i);
        }
        let v = self.push_leaf(Cow::Borrowed(t), true);
        self.params.push((ptr, v.0));
        v
    }

    /// Records a constant input (data, labels as floats, ...): no gradient.
    pub fn constant(&mut self, t: Tensor) -> Var {
        self.push_leaf(Cow::Owned(t), false)
    }

    /// Records an owned leaf that *does* receive a gradient (for tests and
    /// gradient checks with respect to inputs).
    pub fn leaf(&mut self, t: Tensor) -> Var {
        self.push_leaf(Cow::Owned(t), true)
    }

    fn push_leaf(&mut self, value: Cow<'a, Tensor>, requires_grad: bool) -> Var {
        if let Some(p) = &mut self.profile {
            p.record(None, value.shape());
        }
        self.nodes.push(Node {
            value,
            inputs: Vec::new(),
            rule: None,
            requires_grad,
        });
        self.grads.push(None);
        Var(self.nodes.len() - 1)
    }

    /// Records the result of an operation. Ops call this after computing their
    /// forward value; `rule` is kept only if some input requires a gradient.
    pub fn push(&mut self, value: Tensor, inputs: &[Var], rule: impl Backward + 'a) -> Var {
        if let Some(p) = &mut self.profile {
            p.record(Some(std::any::type_name_of_val(&rule)), value.shape());
        }
        let requires_grad = inputs.iter().any(|v| self.nodes[v.0].requires_grad);
        let rule: Option<Box<dyn Backward + 'a>> = if requires_grad {
            Some(Box::new(rule))
        } else {
            None
        };
        self.nodes.push(Node {
            value: Cow::Owned(value),
            inputs: inputs.iter().map(|v| v.0).collect(),
            rule,
            requires_grad,
        });
        self.grads.push(None);
        Var(self.nodes.len() - 1)
    }

    /// The value of a recorded node.
    pub fn value(&self, v: Var) -> &Tensor {
        &self.nodes[v.0].value
    }

    /// Whether gradients flow to this node.
    pub fn requires_grad(&self, v: Var) -> bool {
        self.nodes[v.0].requires_grad
    }

    /// Back-propagates from a scalar (one-element) `loss`, seeding `d loss = 1`.
    ///
    /// **Panics** if `loss` has more than one element.
    pub fn backward(&mut self, loss: Var) {
        let n = self.value(loss).len();
        assert_eq!(
            n,
            1,
            "backward: loss must have one element, has shape {:?}",
            self.value(loss).shape()
        );
        let seed = Tensor::full(self.value(loss).shape(), 1.0);
        self.backward_with(loss, seed);
    }

    /// Back-propagates from `out` with a given output gradient `seed`
    /// (a vector-Jacobian product; used by the gradient checks).
    ///
    /// Gradients of intermediate nodes are freed as soon as they have been
    /// propagated; gradients of leaves stay available.
    ///
    /// **Panics** if `seed`'s shape is not `out`'s.
    pub fn backward_with(&mut self, out: Var, seed: Tensor) {
        assert_eq!(
            seed.shape(),
            self.value(out).shape(),
            "backward_with: seed shape vs output shape"
        );
        for g in self.grads.iter_mut() {
            *g = None;
        }
        self.grads[out.0] = Some(seed);
        for i in (0..=out.0).rev() {
            let Some(rule) = self.nodes[i].rule.as_ref() else {
                continue;
            };
            let Some(grad) = self.grads[i].take() else {
                continue;
            };
            let node = &self.nodes[i];
            let inputs: Vec<&Tensor> = node.inputs.iter().map(|&j| &*self.nodes[j].value).collect();
            let needs: Vec<bool> = node
                .inputs
                .iter()
                .map(|&j| self.nodes[j].requires_grad)
                .collect();
            let start = self.profile.as_ref().map(|_| Instant::now());
            let in_grads = rule.backward(&inputs, &node.value, grad, &needs);
            if let (Some(p), Some(start)) = (&mut self.profile, start) {
                p.nodes[i].backward = start.elapsed();
            }
            debug_assert_eq!(in_grads.len(), node.inputs.len());
            for (&j, g) in node.inputs.iter().zip(in_grads) {
                let Some(g) = g else { continue };
                if !self.nodes[j].requires_grad {
                    continue;
                }
                assert_eq!(
                    g.shape(),
                    self.nodes[j].value.shape(),
                    "backward: gradient shape from node {i} does not match input {j}"
                );
                match &mut self.grads[j] {
                    Some(acc) => acc.add_assign(&g),
                    slot @ None => *slot = Some(g),
                }
            }
        }
    }

    /// The gradient of a node after [`Tape::backward`] (leaves keep theirs).
    pub fn grad(&self, v: Var) -> Option<&Tensor> {
        self.grads[v.0].as_ref()
    }

    /// The gradient of a bound parameter, found by identity of the borrowed tensor.
    pub fn grad_of(&self, t: &Tensor) -> Option<&Tensor> {
        let ptr = t as *const Tensor;
        let &(_, i) = self.params.iter().find(|(p, _)| *p == ptr)?;
        self.grads[i].as_ref()
    }

    /// Moves the gradient of a bound parameter out of the tape (no copy).
    pub fn take_grad_of(&mut self, t: &Tensor) -> Option<Tensor> {
        let ptr = t as *const Tensor;
        let &(_, i) = self.params.iter().find(|(p, _)| *p == ptr)?;
        self.grads[i].take()
    }
}
