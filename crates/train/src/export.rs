//! Export of trained weights as safetensors with PyTorch `state_dict` names
//! (`layers.0.weight`, `bn1.running_mean`, ...), loadable with
//! `safetensors.torch.load_file` and `model.load_state_dict`.

//!
//! With `sparse`, every weight of rank 2 or more (dense and convolution
//! weights; a convolution's as `[OC, C·k·k]`) is written instead as the three
//! CSR tensors `<name>.crow_indices`, `<name>.col_indices` (both `int32`) and
//! `<name>.values`, the arguments of `torch.sparse_csr_tensor`; the
//! metadata entry `<name>.shape` keeps the original shape. Loading (see the
//! README):
//!
//! ```python
//! import math, torch
//! from safetensors import safe_open
//! with safe_open("model.safetensors", "pt") as f:
//!     name = "layers.0.weight"
//!     shape = eval(f.metadata()[name + ".shape"])
//!     w = torch.sparse_csr_tensor(f.get_tensor(name + ".crow_indices"),
//!                                 f.get_tensor(name + ".col_indices"),
//!                                 f.get_tensor(name + ".values"),
//!                                 size=(shape[0], math.prod(shape[1:])))
//!     dense = w.to_dense().reshape(shape)
//! ```

use std::collections::HashMap;
use std::path::Path;

use bregman_tensor::sparse::Csr;
use bregman_tensor::Tensor;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use crate::checkpoint::{self, write_atomic};
use crate::TrainError;

/// Writes the model tensors of checkpoint `ckpt` (parameters and buffers,
/// without the `model.` / `buffer.` prefixes) to `out`, the weights as CSR
/// tensors when `sparse` (see the module docs). Returns the number of
/// tensors written.
///
/// **Errors** naming the file if the checkpoint cannot be read, does not
/// rebuild its model (a tensor missing or misshaped, as `eval` would find),
/// or `out` cannot be written.
pub fn export(ckpt: &Path, out: &Path, sparse: bool) -> Result<usize, TrainError> {
    let ck = checkpoint::load(ckpt)?;
    // Validate as `eval` does: the checkpoint must rebuild its model, every
    // parameter and buffer present with the shape the model needs.
    let mut model = crate::build_model(&ck.config)?;
    ck.restore_model(&mut model, ckpt)?;
    let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut metadata = HashMap::new();
    for (name, t) in &ck.tensors {
        let Some(plain) = name
            .strip_prefix("model.")
            .or_else(|| name.strip_prefix("buffer."))
        else {
            continue;
        };
        if sparse && t.ndim() >= 2 {
            let rows = t.dim(0);
            let csr = Csr::from_dense(t.data(), rows, t.len() / rows.max(1));
            let ints = |v: &[u32]| -> Vec<u8> {
                v.iter().flat_map(|&x| (x as i32).to_le_bytes()).collect()
            };
            tensors.push((
                format!("{plain}.crow_indices"),
                Dtype::I32,
                vec![rows + 1],
                ints(csr.row_ptr()),
            ));
            tensors.push((
                format!("{plain}.col_indices"),
                Dtype::I32,
                vec![csr.nnz()],
                ints(csr.col_idx()),
            ));
            tensors.push((
                format!("{plain}.values"),
                Dtype::F32,
                vec![csr.nnz()],
                floats(csr.values()),
            ));
            metadata.insert(format!("{plain}.shape"), format!("{:?}", t.shape()));
        } else {
            tensors.push((
                plain.to_string(),
                Dtype::F32,
                t.shape().to_vec(),
                floats(t.data()),
            ));
        }
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let mut views = Vec::with_capacity(tensors.len());
    for (name, dtype, shape, bytes) in &tensors {
        let view = TensorView::new(*dtype, shape.clone(), bytes)
            .map_err(|e| TrainError::format(out, e))?;
        views.push((name.clone(), view));
    }
    if sparse {
        metadata.insert(
            "format".to_string(),
            "bregman sparse CSR export".to_string(),
        );
    }
    let bytes = safetensors::serialize(views, (!metadata.is_empty()).then_some(metadata))
        .map_err(|e| TrainError::format(out, e))?;
    write_atomic(out, &bytes)?;
    Ok(tensors.len())
}

fn floats(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Reads an exported file back: `(name, tensor)` pairs sorted by name
/// (`int32` index tensors converted to `f32`, exact below 2²⁴).
///
/// **Errors** naming the file if it is not a valid safetensors file of `f32`
/// and `int32` tensors.
pub fn read_exported(path: &Path) -> Result<Vec<(String, Tensor)>, TrainError> {
    let bytes = std::fs::read(path).map_err(TrainError::io(path))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| TrainError::format(path, e))?;
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        let bytes4 = view
            .data()
            .chunks_exact(4)
            .map(|c| [c[0], c[1], c[2], c[3]]);
        let data: Vec<f32> = match view.dtype() {
            Dtype::F32 => bytes4.map(f32::from_le_bytes).collect(),
            Dtype::I32 => bytes4.map(|b| i32::from_le_bytes(b) as f32).collect(),
            other => {
                return Err(TrainError::format(
                    path,
                    format!("tensor {name} has dtype {other:?}, expected F32 or I32"),
                ))
            }
        };
        out.push((
            name,
            Tensor::from_vec(view.shape(), data).map_err(|e| TrainError::format(path, e))?,
        ));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}
