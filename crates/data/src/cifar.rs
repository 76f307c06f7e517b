//! The CIFAR-10 binary format: `data_batch_1.bin` … `data_batch_5.bin` and
//! `test_batch.bin`, each a sequence of records of 1 label byte followed by
//! 3072 pixel bytes (1024 red, 1024 green, 1024 blue, rows of 32).

use std::path::Path;

use crate::DataError;

/// Bytes per record.
pub const RECORD: usize = 1 + 3 * 32 * 32;

/// Reads CIFAR-10 records from the given files: `(images [N·3072], labels [N])`.
///
/// **Errors** if a file is missing, not a whole number of records, or has a
/// label ≥ 10.
pub fn read_cifar_batches(paths: &[std::path::PathBuf]) -> Result<(Vec<u8>, Vec<u8>), DataError> {
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for path in paths {
        parse_cifar_records(&read(path)?, path, &mut images, &mut labels)?;
    }
    Ok((images, labels))
}

/// Appends the records of one CIFAR-10 file's bytes to `images` and
/// `labels`; `path` only names the file in errors.
///
/// **Errors** if the bytes are not a whole, non-zero number of records, or a
/// label is ≥ 10 (nothing is appended then).
pub fn parse_cifar_records(
    bytes: &[u8],
    path: &Path,
    images: &mut Vec<u8>,
    labels: &mut Vec<u8>,
) -> Result<(), DataError> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(RECORD) {
        return Err(DataError::corrupt(
            path,
            format!(
                "{} bytes is not a whole number of {RECORD}-byte CIFAR-10 records",
                bytes.len()
            ),
        ));
    }
    if let Some((i, rec)) = bytes.chunks(RECORD).enumerate().find(|(_, r)| r[0] >= 10) {
        return Err(DataError::corrupt(
            path,
            format!("record {i} has label {} (must be < 10)", rec[0]),
        ));
    }
    images.reserve(bytes.len() / RECORD * (RECORD - 1));
    for rec in bytes.chunks(RECORD) {
        labels.push(rec[0]);
        images.extend_from_slice(&rec[1..]);
    }
    Ok(())
}

fn read(path: &Path) -> Result<Vec<u8>, DataError> {
    std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })
}
