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

/// The most a deflate stream can expand: 1032 output bytes per input byte
/// (RFC 1951's longest match per two bits). A header that declares more than
/// this for its file's size is a lie, caught before anything is inflated.
const MAX_DEFLATE_RATIO: usize = 1032;

/// Reads a whole file, decompressing gzip if its first bytes say so.
///
/// **Errors** if the file cannot be read or the gzip stream is corrupt.
/// This inflates everything: [`read_idx`] is the bounded reader for IDX files.
pub fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw = read_file(path)?;
    if !is_gzip(&raw) {
        return Ok(raw);
    }
    let mut out = Vec::with_capacity(raw.len() * 4);
    flate2::read::GzDecoder::new(raw.as_slice())
        .read_to_end(&mut out)
        .map_err(|e| gzip_error(path, e))?;
    Ok(out)
}

fn read_file(path: &Path) -> Result<Vec<u8>, DataError> {
    std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

fn gzip_error(path: &Path, e: std::io::Error) -> DataError {
    DataError::corrupt(path, format!("gzip stream is corrupt or truncated ({e})"))
}

/// Inflates a gzip IDX file no further than its header allows: the header
/// first, then at most one byte more than the body it declares (so a small
/// file that inflates to gigabytes costs the declared size, not its own).
fn inflate_idx(raw: &[u8], path: &Path) -> Result<Vec<u8>, DataError> {
    let mut gz = flate2::read::GzDecoder::new(raw);
    let mut head = [0u8; 4];
    let got = read_up_to(&mut gz, &mut head, path)?;
    if got < 4 {
        // Too short for a header: let the parser say so.
        return Ok(head[..got].to_vec());
    }
    let ndim = head[3] as usize;
    let mut out = head.to_vec();
    out.resize(4 + 4 * ndim, 0);
    let got = read_up_to(&mut gz, &mut out[4..], path)?;
    out.truncate(4 + got);
    if head[..3] != [0, 0, 0x08] || ndim == 0 || got < 4 * ndim {
        return Ok(out); // the parser names what is wrong
    }
    let declared = out[4..]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .try_fold(1usize, |a, d| a.checked_mul(d));
    let bound = raw.len().saturating_mul(MAX_DEFLATE_RATIO);
    match declared {
        Some(n) if n <= bound => {
            out.reserve_exact(n + 1);
            gz.take(n as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| gzip_error(path, e))?;
            Ok(out)
        }
        Some(n) => Err(DataError::corrupt(
            path,
            format!(
                "header declares {n} data bytes, more than a gzip stream of {} bytes can hold",
                raw.len()
            ),
        )),
        None => Ok(out), // overflowing dimensions: the parser says so
    }
}

/// Fills as much of `buf` as the stream holds.
fn read_up_to(r: &mut impl Read, buf: &mut [u8], path: &Path) -> Result<usize, DataError> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(gzip_error(path, e)),
        }
    }
    Ok(n)
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

/// Reads an IDX file (raw or gzip). A gzip file is inflated only as far as
/// its header's dimensions allow (plus one byte, to detect trailing data).
///
/// **Errors** as [`read_maybe_gzip`] and [`parse_idx`], and if the header
/// declares more data than the compressed file could hold.
pub fn read_idx(path: &Path) -> Result<IdxArray, DataError> {
    decode_idx(&read_file(path)?, path)
}

/// [`read_idx`] on a file's bytes: raw IDX, or gzip inflated no further than
/// its header allows; `path` only names the file in errors.
///
/// **Errors** as [`read_idx`].
pub fn decode_idx(raw: &[u8], path: &Path) -> Result<IdxArray, DataError> {
    if is_gzip(raw) {
        parse_idx(&inflate_idx(raw, path)?, path)
    } else {
        parse_idx(raw, path)
    }
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
