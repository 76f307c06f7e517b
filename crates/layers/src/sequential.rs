//! `Sequential`: named children applied one after another.

use bregman_autodiff::{PoolSpec, Tape, Var, WeightGrad};
use bregman_tensor::transpose::transpose;
use bregman_tensor::Tensor;

use crate::parameter::join;
use crate::{BatchMajor, Buffer, Kernels, LayerError, Module, Parameter};

/// A chain of modules; each child has a name (`"0"`, `"1"`, ... or `"conv1"`),
/// which becomes part of its parameters' names.
#[derive(Default)]
pub struct Sequential {
    name: String,
    children: Vec<(String, Box<dyn Module>)>,
}

impl Sequential {
    /// An empty chain.
    pub fn new() -> Sequential {
        Sequential::default()
    }

    /// Appends a child named by its index (as PyTorch's `nn.Sequential`).
    pub fn push(mut self, module: impl Module + 'static) -> Sequential {
        let name = self.children.len().to_string();
        self.children.push((name, Box::new(module)));
        self.rename_children();
        self
    }

    /// Appends a child with an explicit name (e.g. `"conv1"`).
    pub fn push_named(mut self, name: &str, module: impl Module + 'static) -> Sequential {
        self.children.push((name.to_string(), Box::new(module)));
        self.rename_children();
        self
    }

    /// The children with their names.
    pub fn children(&self) -> impl Iterator<Item = (&str, &dyn Module)> {
        self.children.iter().map(|(n, m)| (n.as_str(), m.as_ref()))
    }

    /// Gives `x` (`[N, ...]`, owned) the shape the model's first child turns
    /// it into when that child is a flatten: `[N, rest]`, a change of shape
    /// only (free for an owned tensor), so that the flatten finds its input
    /// flat already and does not copy it. Any other `x` comes back as it is.
    pub fn flatten_input(&self, x: Tensor) -> Tensor {
        let first_flattens = self.children.first().is_some_and(|(_, m)| m.is_flatten());
        if !first_flattens || x.ndim() < 3 {
            return x;
        }
        let n = x.dim(0);
        let rest = x.len().checked_div(n).unwrap_or(0);
        if n == 0 || rest == 0 {
            return x;
        }
        x.reshape(&[n, rest]).expect("the same number of values")
    }

    /// The window of a `max pool → ReLU` pair right after child `i`, which
    /// child `i` may fuse into its own pass ([`Module::forward_pool_relu`]).
    fn pool_relu_after(&self, i: usize) -> Option<PoolSpec> {
        let pool = self.children.get(i + 1)?.1.as_max_pool()?;
        self.children.get(i + 2)?.1.is_relu().then_some(pool)
    }

    /// The end of the batch-major run of children starting at child `i`
    /// for the input `x`, if one pays (see [`Module::batch_major`]): the
    /// longest chain of children with a batch-major path that contains a
    /// layer faster in that layout. A run starts on a row-major `[N, F]`
    /// input, or at a flatten on any rank, for a batch of two or more (a
    /// single image's activations are their own transposes: the layers take
    /// no transposes then, and a run would only add copies).
    fn batch_major_run(&self, i: usize, x: &Tensor) -> Option<usize> {
        let starts = x.ndim() == 2 || (x.ndim() > 2 && self.children.get(i)?.1.is_flatten());
        let n = x.shape().first().copied().filter(|&n| n > 1)?;
        if !starts {
            return None;
        }
        let (mut features, mut pays, mut end) = (x.len() / n, false, i);
        while let Some(step) = self
            .children
            .get(end)
            .and_then(|(_, m)| m.batch_major(n, features))
        {
            (features, pays, end) = (step.features, pays || step.pays, end + 1);
        }
        pays.then_some(end)
    }

    /// Children `run` on `x` in the batch-major layout: `x` (as `[N, F]`) is
    /// transposed once on the way in and the output once on the way out,
    /// instead of around every sparse layer.
    fn infer_run(&self, run: std::ops::Range<usize>, x: &Tensor) -> Result<Tensor, LayerError> {
        let n = x.dim(0);
        let features = x.len() / n;
        let mut xt = Tensor::from_vec(&[features, n], transpose(x.data(), n, features))
            .expect("sizes from the input");
        for (_, m) in &self.children[run] {
            m.infer_batch_major(&mut xt)?;
        }
        let features = xt.dim(0);
        Ok(
            Tensor::from_vec(&[n, features], transpose(xt.data(), features, n))
                .expect("sizes from the output"),
        )
    }

    fn rename_children(&mut self) {
        for (n, m) in &mut self.children {
            m.rename(&join(&self.name, n));
        }
    }
}

impl Module for Sequential {
    /// The children one after another, except that a `conv → max pool →
    /// ReLU` chain runs as one fused pass where the convolution can fuse it
    /// (the same bits, less memory traffic).
    fn forward<'a>(&'a self, tape: &mut Tape<'a>, mut x: Var) -> Result<Var, LayerError> {
        let mut i = 0;
        while let Some((_, m)) = self.children.get(i) {
            if let Some(pool) = self.pool_relu_after(i) {
                if let Some(y) = m.forward_pool_relu(tape, x, pool) {
                    x = y?;
                    i += 3;
                    continue;
                }
            }
            x = m.forward(tape, x)?;
            i += 1;
        }
        Ok(x)
    }

    /// The children one after another, with the fusions of
    /// [`Sequential::forward`], and with runs of layers that are faster on
    /// batch-major activations (dense layers on sparse kernels, with the
    /// activations between them) computed in that layout from the run's
    /// first input to its last output (the same bits).
    fn infer(&self, x: &Tensor) -> Result<Tensor, LayerError> {
        let mut y: Option<Tensor> = None;
        let mut i = 0;
        while let Some((_, m)) = self.children.get(i) {
            let input = y.as_ref().unwrap_or(x);
            if let Some(end) = self.batch_major_run(i, input) {
                y = Some(self.infer_run(i..end, input)?);
                i = end;
                continue;
            }
            if let Some(pool) = self.pool_relu_after(i) {
                if let Some(out) = m.infer_pool_relu(input, pool) {
                    y = Some(out?);
                    i += 3;
                    continue;
                }
            }
            y = Some(m.infer(input)?);
            i += 1;
        }
        Ok(y.unwrap_or_else(|| x.clone()))
    }

    /// Batch-major when every child is.
    fn batch_major(&self, n: usize, features: usize) -> Option<BatchMajor> {
        self.children.iter().try_fold(
            BatchMajor {
                features,
                pays: false,
            },
            |acc, (_, m)| {
                let step = m.batch_major(n, acc.features)?;
                Some(BatchMajor {
                    features: step.features,
                    pays: acc.pays || step.pays,
                })
            },
        )
    }

    fn infer_batch_major(&self, xt: &mut Tensor) -> Result<(), LayerError> {
        self.children
            .iter()
            .try_for_each(|(_, m)| m.infer_batch_major(xt))
    }

    fn set_training(&mut self, training: bool) {
        self.children
            .iter_mut()
            .for_each(|(_, m)| m.set_training(training));
    }

    fn set_kernels(&mut self, kernels: Kernels) {
        self.children
            .iter_mut()
            .for_each(|(_, m)| m.set_kernels(kernels));
    }

    fn set_weight_grad(&mut self, weight_grad: WeightGrad) {
        self.children
            .iter_mut()
            .for_each(|(_, m)| m.set_weight_grad(weight_grad));
    }

    fn params(&self) -> Vec<&Parameter> {
        self.children.iter().flat_map(|(_, m)| m.params()).collect()
    }

    fn params_mut(&mut self) -> Vec<&mut Parameter> {
        self.children
            .iter_mut()
            .flat_map(|(_, m)| m.params_mut())
            .collect()
    }

    fn buffers(&self) -> Vec<&Buffer> {
        self.children
            .iter()
            .flat_map(|(_, m)| m.buffers())
            .collect()
    }

    fn rename(&mut self, prefix: &str) {
        self.name = prefix.to_string();
        self.rename_children();
    }

    fn describe(&self) -> String {
        let parts: Vec<String> = self.children.iter().map(|(_, m)| m.describe()).collect();
        format!("Sequential[{}]", parts.join(" → "))
    }
}
