//! Export of trained weights as safetensors with PyTorch `state_dict` names
//! (`layers.0.weight`, `bn1.running_mean`, ...), loadable with
//! `safetensors.torch.load_file` and `model.load_state_dict`.

use std::path::Path;

use bregman_tensor::Tensor;
use safetensors::SafeTensors;

use crate::checkpoint::{self, to_safetensors, write_atomic};
use crate::TrainError;

/// Writes the model tensors of checkpoint `ckpt` (parameters and buffers,
/// without the `model.` / `buffer.` prefixes) to `out`. Returns the number of
/// tensors written.
///
/// **Errors** naming the file if the checkpoint cannot be read or `out` written.
pub fn export(ckpt: &Path, out: &Path) -> Result<usize, TrainError> {
    let ck = checkpoint::load(ckpt)?;
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = ck
        .tensors
        .iter()
        .filter_map(|(name, t)| {
            let plain = name
                .strip_prefix("model.")
                .or_else(|| name.strip_prefix("buffer."))?;
            Some((
                plain.to_string(),
                t.shape().to_vec(),
                t.data().iter().flat_map(|x| x.to_le_bytes()).collect(),
            ))
        })
        .collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let bytes = to_safetensors(&tensors, None, out)?;
    write_atomic(out, &bytes)?;
    Ok(tensors.len())
}

/// Reads an exported file back: `(name, tensor)` pairs sorted by name.
///
/// **Errors** naming the file if it is not a valid safetensors file of `f32` tensors.
pub fn read_exported(path: &Path) -> Result<Vec<(String, Tensor)>, TrainError> {
    let bytes = std::fs::read(path).map_err(TrainError::io(path))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| TrainError::format(path, e))?;
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        let data: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        out.push((
            name,
            Tensor::from_vec(view.shape(), data).map_err(|e| TrainError::format(path, e))?,
        ));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}
