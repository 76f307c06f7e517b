//! The IDX format of MNIST and Fashion-MNIST, raw or gzip-compressed.
//!
//! Layout: two zero bytes, a type byte (`0x08` = unsigned byte, the only type
//! these data sets use), the number of dimensions `d`, then `d` big-endian
//! `u32` sizes, then the values in row-major order. Gzip is recognised by its
//! magic bytes `1f 8b`, not by the file name.

use std::io::Read;
use std::path::Path;

use byteorder::{BigEndian, ReadBytesExt};

use crate::DataError;

/// An IDX array of bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// Sizes, outermost first (e.g. `[60000, 28, 28]`).
    pub dims: Vec<usize>,
    /// The values, row-major.
    pub data: Vec<u8>,
}

/// Reads a whole file, decompressing gzip if its first bytes say so.
///
/// **Errors** if the file cannot be read or the gzip stream is corrupt.
pub fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(raw.len() * 4);
        flate2::read::GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| {
                DataError::corrupt(path, format!("gzip stream is corrupt or truncated ({e})"))
            })?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Parses IDX bytes; `path` only names the file in errors.
///
/// **Errors** on a wrong magic, an unsupported type, or a length that does not
/// match the header.
pub fn parse_idx(bytes: &[u8], path: &Path) -> Result<IdxArray, DataError> {
    if bytes.len() < 4 {
        return Err(DataError::corrupt(
            path,
            format!("{} bytes is too short for an IDX header", bytes.len()),
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(DataError::corrupt(
            path,
            format!(
                "not an IDX file: magic starts with {:02x} {:02x}, expected 00 00",
                bytes[0], bytes[1]
            ),
        ));
    }
    if bytes[2] != 0x08 {
        return Err(DataError::corrupt(
            path,
            format!(
                "IDX type 0x{:02x} unsupported (only 0x08, unsigned byte)",
                bytes[2]
            ),
        ));
    }
    let ndim = bytes[3] as usize;
    if ndim == 0 {
        return Err(DataError::corrupt(path, "IDX header declares 0 dimensions"));
    }
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err(DataError::corrupt(
            path,
            format!(
                "truncated header: {ndim} dimensions need {header} bytes, file has {}",
                bytes.len()
            ),
        ));
    }
    let mut cursor = &bytes[4..header];
    let mut dims = Vec::with_capacity(ndim);
    for _ in 0..ndim {
        let d = cursor
            .read_u32::<BigEndian>()
            .map_err(|e| DataError::corrupt(path, e.to_string()))?;
        dims.push(d as usize);
    }
    let expected = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let Some(expected) = expected else {
        return Err(DataError::corrupt(
            path,
            format!("dimensions {dims:?} overflow"),
        ));
    };
    let body = bytes.len() - header;
    if body != expected {
        let how = if body < expected {
            "truncated"
        } else {
            "has trailing bytes"
        };
        return Err(DataError::corrupt(
            path,
            format!("{how}: dimensions {dims:?} need {expected} data bytes, file has {body}"),
        ));
    }
    Ok(IdxArray {
        dims,
        data: bytes[header..].to_vec(),
    })
}

/// Reads an IDX file (raw or gzip).
///
/// **Errors** as [`read_maybe_gzip`] and [`parse_idx`].
pub fn read_idx(path: &Path) -> Result<IdxArray, DataError> {
    parse_idx(&read_maybe_gzip(path)?, path)
}

/// Encodes bytes as IDX (for tests and for cutting samples).
pub fn encode_idx(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}
