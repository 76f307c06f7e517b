//! What a run is built from: the experiment's data set, model and
//! optimizer (parameter groups and regularizers), its batching, and the
//! step mode of each batch under sparse backpropagation.

use bregman_data::{BatchOptions, DatasetKind};
use bregman_layers::{models, Module, ParamKind, Sequential};
use bregman_optim::init::{sparse_init, MaskMode, SparseInit};
use bregman_optim::schedule::PlateauMode;
use bregman_optim::{
    CatchUp, GroupL12, GroupSpec, GroupedOptimizer, Hyper, L1PlusGroup, Method, NoRegularizer,
    Regularizer, StepMode, L1,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::{TrainConfig, TrainError};

/// Which data set an experiment uses.
pub fn dataset_kind(experiment: &str) -> DatasetKind {
    match experiment {
        "fashion-convnet" | "fashion-convnet-group" => DatasetKind::FashionMnist,
        "cifar-resnet18" => DatasetKind::Cifar10,
        _ => DatasetKind::Mnist,
    }
}

pub(crate) fn is_denoising(cfg: &TrainConfig) -> bool {
    cfg.experiment == "mnist-denoiser"
}

/// Direction of the plateau metric: accuracy goes up, losses go down.
pub(crate) fn plateau_mode(cfg: &TrainConfig) -> PlateauMode {
    if cfg.plateau_metric == "val-acc" && !is_denoising(cfg) {
        PlateauMode::Max
    } else {
        PlateauMode::Min
    }
}

/// Builds the experiment's model, initialised from `cfg.seed` (sparse
/// initialisation with density `cfg.sparse_init` for r < 1).
///
/// **Errors** on an invalid initialisation setting.
pub fn build_model(cfg: &TrainConfig) -> Result<Sequential, TrainError> {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut model = match cfg.experiment.as_str() {
        "mnist-mlp" => models::mlp(&[784, 200, 80, 10], &mut rng),
        "fashion-convnet" | "fashion-convnet-group" => models::paper_convnet(&mut rng),
        "cifar-resnet18" => models::resnet18_cifar(10, &mut rng),
        "mnist-denoiser" => models::denoiser(&mut rng),
        other => return Err(TrainError::Config(format!("unknown experiment '{other}'"))),
    };
    let mask = |reg: &str| match reg {
        "group-rows" => MaskMode::Rows,
        "group-kernels" | "l1+group-kernels" => MaskMode::Kernels,
        _ => MaskMode::Elements,
    };
    let init = SparseInit {
        density: cfg.sparse_init,
        linear_mask: mask(&cfg.linear_regularizer),
        conv_mask: mask(&cfg.conv_regularizer),
        gain: cfg.init_gain,
        bias_scale: cfg.init_bias,
    };
    sparse_init(&mut model.params_mut(), &init, &mut rng)?;
    Ok(model)
}

pub(crate) fn regularizer(name: &str, lambda: f32) -> Box<dyn Regularizer> {
    match name {
        "l1" => Box::new(L1::new(lambda)),
        "group-rows" => Box::new(GroupL12::rows(lambda)),
        "group-kernels" => Box::new(GroupL12::kernels(lambda)),
        "l1+group-kernels" => Box::new(L1PlusGroup {
            l1: L1::new(lambda),
            group: GroupL12::kernels(lambda),
        }),
        _ => Box::new(NoRegularizer),
    }
}

/// The optimizer of `cfg` over `model`'s parameters: groups {linear
/// weights}, {conv weights} with their regularizers, and {biases, batchnorm}
/// with `J = 0`.
///
/// **Errors** on an invalid hyper-parameter.
pub fn build_optimizer(
    cfg: &TrainConfig,
    model: &dyn Module,
) -> Result<GroupedOptimizer, TrainError> {
    let method = match cfg.optimizer.as_str() {
        // The Lasso and pruning baselines take plain SGD steps; the trainer adds
        // ∂J to the gradients (Lasso) or re-applies the pruning masks (prune).
        "sgd" | "lasso" | "prune" => Method::Sgd,
        "adam" => Method::Adam,
        "proxgd" => Method::ProxGd,
        "linbreg" | "linbreg-momentum" => Method::LinBreg,
        "adabreg" => Method::AdaBreg,
        other => return Err(TrainError::Config(format!("unknown optimizer '{other}'"))),
    };
    let h = Hyper {
        lr: cfg.lr,
        delta: cfg.delta,
        momentum: cfg.momentum,
        ..Hyper::default()
    };
    let specs = vec![
        GroupSpec::new(
            "linear_weights",
            &[ParamKind::LinearWeight],
            h,
            regularizer(&cfg.linear_regularizer, cfg.lambda),
        ),
        GroupSpec::new(
            "conv_weights",
            &[ParamKind::ConvWeight],
            h,
            regularizer(&cfg.conv_regularizer, cfg.lambda),
        ),
        GroupSpec::new(
            "biases_and_batchnorm",
            &[ParamKind::Bias, ParamKind::BnWeight, ParamKind::BnBias],
            h,
            Box::new(NoRegularizer),
        ),
    ];
    Ok(GroupedOptimizer::new(method, &model.params(), specs)?)
}

/// Batching of `cfg`'s experiment: shuffled (and for CIFAR augmented) for
/// training; noisy inputs for denoising.
pub(crate) fn batch_options(
    cfg: &TrainConfig,
    kind: DatasetKind,
    train: bool,
    batch_size: usize,
) -> BatchOptions {
    BatchOptions {
        batch_size,
        shuffle: train,
        augment: train && kind == DatasetKind::Cifar10,
        noise_std: is_denoising(cfg).then_some(cfg.noise_std),
        fixed_noise: cfg.noise_fixed,
    }
}

/// The step mode of batch `bi` of an epoch of `n_batches` under sparse
/// backpropagation with `K = cfg.sparse_backprop`: every `K`-th step and the
/// epoch's last are full (so a checkpoint, written after an epoch, never
/// falls inside a run of masked steps), the others masked; a full step
/// catches up with the masked ones by `cfg.sparse_backprop_catch_up`.
pub fn sparse_backprop_step(cfg: &TrainConfig, bi: usize, n_batches: usize) -> StepMode {
    let k = cfg.sparse_backprop.max(1);
    if k == 1 {
        return StepMode::Full;
    }
    if !(bi + 1).is_multiple_of(k) && bi + 1 < n_batches {
        return StepMode::Masked;
    }
    let plain_linbreg = cfg.optimizer == "linbreg" && cfg.momentum == 0.0;
    match cfg.sparse_backprop_catch_up.as_str() {
        "linear" => StepMode::FullCatchUp(CatchUp::Linear),
        "sqrt" => StepMode::FullCatchUp(CatchUp::Sqrt),
        "auto" if plain_linbreg => StepMode::FullCatchUp(CatchUp::Linear),
        "auto" => StepMode::FullCatchUp(CatchUp::Sqrt),
        _ => StepMode::Full,
    }
}
