//! Checkpoints: everything needed to continue a run exactly, in one
//! safetensors file written atomically (temporary file, then rename).
//!
//! Tensors: `model.<name>` (parameters), `buffer.<name>` (batchnorm running
//! statistics), `optim.<name>.v|m1|m2` (optimizer state). Metadata:
//! `format`, `config` (TOML of the run), `state` (JSON: epoch, optimizer step,
//! per-group lr and λ, scheduler state, the metrics so far).

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use bregman_layers::Module;
use bregman_optim::{GroupedOptimizer, OptimizerState, ParamState};
use bregman_tensor::Tensor;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::{EpochMetrics, TrainConfig, TrainError};

/// Format tag stored in the metadata.
pub const FORMAT: &str = "bregman-checkpoint-1";

/// The non-tensor part of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// Epochs completed.
    pub epoch: usize,
    /// Optimizer steps taken.
    pub optimizer_step: u64,
    /// Per-group `(lr, λ)`.
    pub groups: Vec<(f32, f32)>,
    /// Plateau scheduler: best metric so far.
    pub plateau_best: Option<f32>,
    /// Plateau scheduler: epochs without improvement.
    pub plateau_bad_epochs: u32,
    /// Metrics of the completed epochs.
    pub history: Vec<EpochMetrics>,
    /// λ scheduler: epoch of its last change (`None`: never changed or not in use).
    #[serde(default)]
    pub lambda_last_change: Option<u32>,
}

fn bytes_of(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn floats_of(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Writes `bytes` to `path` atomically: a temporary file in the same
/// directory (`.NAME.PID.tmp`, unique per target and process), flushed to
/// disk, then renamed over `path`. The temporary file is removed if any step
/// fails; one left by a killed process is removed by the next
/// [`crate::run_dir::RunLock`] on the directory.
///
/// **Errors** naming the file on any I/O failure.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    let name = path
        .file_name()
        .map_or_else(|| "output".into(), |n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(TrainError::io(&tmp))?;
        f.write_all(bytes).map_err(TrainError::io(&tmp))?;
        f.sync_all().map_err(TrainError::io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(TrainError::io(path))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Serializes named `f32` tensors (and metadata) as safetensors bytes.
///
/// **Errors** if a tensor's byte length does not match its shape.
pub fn to_safetensors(
    tensors: &[(String, Vec<usize>, Vec<u8>)],
    metadata: Option<HashMap<String, String>>,
    path: &Path,
) -> Result<Vec<u8>, TrainError> {
    let mut views = Vec::with_capacity(tensors.len());
    for (name, shape, bytes) in tensors {
        let view = TensorView::new(Dtype::F32, shape.clone(), bytes)
            .map_err(|e| TrainError::format(path, e))?;
        views.push((name.clone(), view));
    }
    safetensors::serialize(views, metadata).map_err(|e| TrainError::format(path, e))
}

/// Saves a checkpoint of `model`, `opt` and `state` to `path`.
///
/// **Errors** on an I/O failure; the previous checkpoint stays intact.
pub fn save(
    path: &Path,
    config: &TrainConfig,
    model: &dyn Module,
    opt: &GroupedOptimizer,
    state: &RunState,
) -> Result<(), TrainError> {
    let mut tensors = Vec::new();
    for p in model.params() {
        tensors.push((
            format!("model.{}", p.name),
            p.value.shape().to_vec(),
            bytes_of(p.value.data()),
        ));
    }
    for b in model.buffers() {
        let t = b.value.borrow();
        tensors.push((
            format!("buffer.{}", b.name),
            t.shape().to_vec(),
            bytes_of(t.data()),
        ));
    }
    for s in opt.param_states() {
        for (suffix, buf) in [("v", &s.v), ("m1", &s.m1), ("m2", &s.m2)] {
            if let Some(b) = buf {
                tensors.push((
                    format!("optim.{}.{suffix}", s.name),
                    vec![b.len()],
                    bytes_of(b),
                ));
            }
        }
    }
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), FORMAT.to_string());
    meta.insert("config".to_string(), config.to_toml());
    meta.insert(
        "state".to_string(),
        serde_json::to_string(state).map_err(|e| TrainError::format(path, e))?,
    );
    let bytes = to_safetensors(&tensors, Some(meta), path)?;
    write_atomic(path, &bytes)
}

/// A checkpoint read back: configuration, run state and named tensors.
pub struct Checkpoint {
    /// The run's configuration.
    pub config: TrainConfig,
    /// Epoch, schedulers, metrics.
    pub state: RunState,
    /// Every tensor by name.
    pub tensors: HashMap<String, Tensor>,
}

/// Reads a checkpoint written by [`save`].
///
/// **Errors** naming the file if it is missing, not safetensors, or lacks the
/// checkpoint metadata.
pub fn load(path: &Path) -> Result<Checkpoint, TrainError> {
    let bytes = std::fs::read(path).map_err(TrainError::io(path))?;
    from_bytes(&bytes, path)
}

/// [`load`] on a file's bytes; `path` only names the file in errors.
///
/// **Errors** as [`load`].
pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Checkpoint, TrainError> {
    let (_, meta) = SafeTensors::read_metadata(bytes)
        .map_err(|e| TrainError::format(path, format!("not a safetensors file ({e})")))?;
    let info = meta.metadata().clone().unwrap_or_default();
    if info.get("format").map(String::as_str) != Some(FORMAT) {
        return Err(TrainError::format(
            path,
            format!("not a bregman checkpoint (metadata 'format' is not '{FORMAT}')"),
        ));
    }
    let config: TrainConfig = toml::from_str(info.get("config").map(String::as_str).unwrap_or(""))
        .map_err(|e| TrainError::format(path, format!("config: {e}")))?;
    let state: RunState = serde_json::from_str(info.get("state").map(String::as_str).unwrap_or(""))
        .map_err(|e| TrainError::format(path, format!("state: {e}")))?;
    let st = SafeTensors::deserialize(bytes).map_err(|e| TrainError::format(path, e))?;
    let mut tensors = HashMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(TrainError::format(
                path,
                format!("tensor '{name}' is {:?}, expected F32", view.dtype()),
            ));
        }
        let t = Tensor::from_vec(view.shape(), floats_of(view.data()))
            .map_err(|e| TrainError::format(path, e))?;
        tensors.insert(name, t);
    }
    Ok(Checkpoint {
        config,
        state,
        tensors,
    })
}

impl Checkpoint {
    /// Copies parameters and buffers into `model` (built from the same config).
    ///
    /// **Errors** if a tensor is missing or has another shape.
    pub fn restore_model(&self, model: &mut dyn Module, path: &Path) -> Result<(), TrainError> {
        for p in model.params_mut() {
            let t = self.get(&format!("model.{}", p.name), p.value.shape(), path)?;
            p.value = t.clone();
        }
        for b in model.buffers() {
            let shape = b.value.borrow().shape().to_vec();
            let t = self.get(&format!("buffer.{}", b.name), &shape, path)?;
            *b.value.borrow_mut() = t.clone();
        }
        Ok(())
    }

    /// Restores the optimizer's state (after [`Checkpoint::restore_model`]).
    ///
    /// **Errors** if the saved state does not fit the optimizer.
    pub fn restore_optimizer(
        &self,
        opt: &mut GroupedOptimizer,
        path: &Path,
    ) -> Result<(), TrainError> {
        let params = opt
            .param_states()
            .iter()
            .map(|s| {
                let get = |suffix: &str| {
                    self.tensors
                        .get(&format!("optim.{}.{suffix}", s.name))
                        .map(|t| t.data().to_vec())
                };
                ParamState {
                    name: s.name.clone(),
                    v: get("v"),
                    m1: get("m1"),
                    m2: get("m2"),
                }
            })
            .collect();
        let state = OptimizerState {
            step: self.state.optimizer_step,
            params,
            groups: self.state.groups.clone(),
        };
        opt.load_state(state)
            .map_err(|e| TrainError::format(path, e))
    }

    fn get(&self, name: &str, shape: &[usize], path: &Path) -> Result<&Tensor, TrainError> {
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| TrainError::format(path, format!("tensor '{name}' is missing")))?;
        if t.shape() != shape {
            return Err(TrainError::format(
                path,
                format!(
                    "tensor '{name}' has shape {:?}, model needs {shape:?}",
                    t.shape()
                ),
            ));
        }
        Ok(t)
    }
}
