//! In-memory image classification data sets, their train/validation split
//! and seeded, reproducible batching.

use std::path::{Path, PathBuf};

use bregman_tensor::Tensor;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use rayon::prelude::*;

use crate::cifar::read_cifar_batches;
use crate::idx::read_idx;
use crate::DataError;

/// The data sets the experiments use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatasetKind {
    /// MNIST digits, 1×28×28.
    Mnist,
    /// Fashion-MNIST, 1×28×28.
    FashionMnist,
    /// CIFAR-10, 3×32×32.
    Cifar10,
}

impl DatasetKind {
    /// Sub-directory of the data directory (`mnist`, `fashion-mnist`, `cifar-10`).
    pub fn dir_name(self) -> &'static str {
        match self {
            DatasetKind::Mnist => "mnist",
            DatasetKind::FashionMnist => "fashion-mnist",
            DatasetKind::Cifar10 => "cifar-10",
        }
    }

    /// Per-channel normalisation `(mean, std)` of SPEC §5.
    pub fn normalization(self) -> (Vec<f32>, Vec<f32>) {
        match self {
            DatasetKind::Mnist => (vec![0.1307], vec![0.3081]),
            DatasetKind::FashionMnist => (vec![0.5], vec![0.5]),
            DatasetKind::Cifar10 => (vec![0.4914, 0.4822, 0.4465], vec![0.2023, 0.1994, 0.2010]),
        }
    }
}

/// Images (bytes) with labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Pixels, `[N, C, H, W]` row-major, 0–255.
    pub images: Vec<u8>,
    /// Class labels.
    pub labels: Vec<u8>,
    /// `[C, H, W]`.
    pub shape: [usize; 3],
    /// Which data set this is (normalisation constants).
    pub kind: DatasetKind,
}

impl Dataset {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Values per image.
    pub fn image_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// The images at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let n = self.image_len();
        let mut images = Vec::with_capacity(indices.len() * n);
        for &i in indices {
            images.extend_from_slice(&self.images[i * n..(i + 1) * n]);
        }
        Dataset {
            images,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            shape: self.shape,
            kind: self.kind,
        }
    }

    /// Splits off a validation set of `fraction` of the images, chosen by a
    /// seeded permutation: `(train, validation)`.
    pub fn split(&self, fraction: f64, seed: u64) -> (Dataset, Dataset) {
        let mut idx: Vec<usize> = (0..self.len()).collect();
        idx.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_5B11));
        let n_val = ((self.len() as f64) * fraction).round() as usize;
        let (val, train) = idx.split_at(n_val.min(self.len()));
        let (mut train, mut val) = (train.to_vec(), val.to_vec());
        train.sort_unstable();
        val.sort_unstable();
        (self.subset(&train), self.subset(&val))
    }
}

/// How batches are made.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchOptions {
    /// Images per batch (the last batch may be smaller).
    pub batch_size: usize,
    /// Shuffle the order each epoch.
    pub shuffle: bool,
    /// CIFAR augmentation: random crop with 4 pixels of zero padding and a
    /// random horizontal flip.
    pub augment: bool,
    /// Denoising: inputs are the clean image (scaled to [0, 1]) plus `N(0, σ²)`
    /// noise, then normalised with the data set's mean and std as in every
    /// other experiment (the authors' model normalises its input the same
    /// way); targets are the clean image in [0, 1].
    pub noise_std: Option<f32>,
    /// Denoising: each image's noise depends on the seed and the image
    /// alone, so every epoch sees the same noisy copy (the authors' notebook
    /// adds the noise once, when it builds the data set); otherwise it is
    /// drawn anew every epoch.
    pub fixed_noise: bool,
}

/// One batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Inputs `[B, C, H, W]`.
    pub x: Tensor,
    /// Labels.
    pub labels: Vec<usize>,
    /// Denoising targets `[B, C, H, W]`.
    pub target: Option<Tensor>,
}

/// Images per rayon task when a batch is gathered (a 128-image MNIST batch
/// makes 8 tasks).
const IMAGES_PER_TASK: usize = 16;

/// The seed of epoch `epoch`'s randomness (shuffling, augmentation, noise).
fn epoch_rng(seed: u64, epoch: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(epoch.wrapping_add(1));
    rng
}

/// The noise stream of image `i` under [`BatchOptions::fixed_noise`]: the top
/// half of the stream space, apart from the epoch streams.
fn image_noise_rng(seed: u64, i: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream((1 << 63) | i as u64);
    rng
}

/// The batches of one epoch. All randomness derives from `(seed, epoch)`, so
/// a resumed run sees exactly the batches the uninterrupted run would have.
pub fn batches(
    ds: &Dataset,
    opts: BatchOptions,
    seed: u64,
    epoch: u64,
) -> impl Iterator<Item = Batch> + '_ {
    batch_shares(ds, opts, seed, epoch, 0, 1)
}

/// Rank `rank`'s share of each batch of [`batches`] when `ranks` processes
/// split every batch into contiguous shares (data-parallel training): the
/// same global order, and each image shifted, flipped or noised exactly as
/// in [`batches`] (every rank draws the randomness of the whole batch and
/// keeps its share's). A share may be empty when a batch has fewer images
/// than there are ranks.
pub fn batch_shares(
    ds: &Dataset,
    opts: BatchOptions,
    seed: u64,
    epoch: u64,
    rank: usize,
    ranks: usize,
) -> impl Iterator<Item = Batch> + '_ {
    let mut rng = epoch_rng(seed, epoch);
    let mut order: Vec<usize> = (0..ds.len()).collect();
    if opts.shuffle {
        order.shuffle(&mut rng);
    }
    let bs = opts.batch_size.max(1);
    let ranks = ranks.max(1);
    let (mean, std) = ds.kind.normalization();
    let n = ds.image_len();
    let [c, h, w] = ds.shape;
    let noise = opts.noise_std.and_then(|s| Normal::new(0.0f32, s).ok());
    // Each channel's normalised value of every byte, `(p/255 − mean)/std`:
    // the same arithmetic as per pixel, done once per byte value.
    let luts: Vec<[f32; 256]> = (0..c)
        .map(|ch| {
            let (m, s) = (mean[ch % mean.len()], std[ch % std.len()]);
            std::array::from_fn(|p| (p as f32 / 255.0 - m) / s)
        })
        .collect();
    (0..order.len().div_ceil(bs)).map(move |b| {
        let batch = &order[b * bs..((b + 1) * bs).min(order.len())];
        let (lo, hi) = (batch.len() * rank / ranks, batch.len() * (rank + 1) / ranks);
        let idx = &batch[lo..hi];
        let mut x = vec![0.0f32; idx.len() * n];
        let mut target = noise.map(|_| vec![0.0f32; idx.len() * n]);
        // The shift and flip of each of this rank's images (augmentation).
        let mut shifts = Vec::with_capacity(idx.len());
        for (pos, &i) in batch.iter().enumerate() {
            let mine = (lo..hi).contains(&pos);
            let k = pos.wrapping_sub(lo);
            let img = &ds.images[i * n..(i + 1) * n];
            if let (Some(noise), Some(t)) = (noise, target.as_mut()) {
                if !mine {
                    // Another rank's image: only redrawn noise consumes the epoch stream.
                    if !opts.fixed_noise {
                        for _ in 0..n {
                            let _ = noise.sample(&mut rng);
                        }
                    }
                    continue;
                }
                let mut fixed = opts.fixed_noise.then(|| image_noise_rng(seed, i));
                let rng = fixed.as_mut().unwrap_or(&mut rng);
                let (m, s) = (mean[0], std[0]);
                let out = &mut x[k * n..(k + 1) * n];
                for ((o, tv), &p) in out.iter_mut().zip(&mut t[k * n..(k + 1) * n]).zip(img) {
                    let clean = p as f32 / 255.0;
                    *tv = clean;
                    *o = (clean + noise.sample(rng) - m) / s;
                }
                continue;
            }
            let shift = if opts.augment {
                (
                    rng.gen_range(0..9) as isize - 4,
                    rng.gen_range(0..9) as isize - 4,
                    rng.gen_bool(0.5),
                )
            } else {
                (0, 0, false)
            };
            if mine {
                shifts.push(shift);
            }
        }
        if target.is_none() && n > 0 {
            // The randomness is drawn (above, in batch order); the images are
            // independent of each other, so they are written in parallel, each
            // by one task: the same bits for any thread count.
            x.par_chunks_mut(n * IMAGES_PER_TASK)
                .zip(idx.par_chunks(IMAGES_PER_TASK))
                .zip(shifts.par_chunks(IMAGES_PER_TASK))
                .for_each(|((out, idx), shifts)| {
                    for (j, (out, &shift)) in out.chunks_exact_mut(n).zip(shifts).enumerate() {
                        // A shuffled batch reads its images from all over the
                        // data set: fetch the image after next while this one
                        // is normalised (the latency, not the bandwidth, bounds
                        // this loop).
                        if let Some(&ahead) = idx.get(j + 2) {
                            prefetch(&ds.images[ahead * n..(ahead + 1) * n]);
                        }
                        let img = &ds.images[idx[j] * n..(idx[j] + 1) * n];
                        for (ch, lut) in luts.iter().enumerate() {
                            let plane = &img[ch * h * w..(ch + 1) * h * w];
                            let out = &mut out[ch * h * w..(ch + 1) * h * w];
                            shifted_plane(plane, out, (h, w), shift, lut);
                        }
                    }
                });
        }
        let shape = [idx.len(), c, h, w];
        Batch {
            x: Tensor::from_vec(&shape, x).expect("batch size"),
            labels: idx.iter().map(|&i| ds.labels[i] as usize).collect(),
            target: target.map(|t| Tensor::from_vec(&shape, t).expect("batch size")),
        }
    })
}

/// One normalised image plane, shifted by `(dy, dx)` (then flipped
/// horizontally when `flip`): `out[y][x] = lut[plane[y + dy][x' + dx]]` with
/// `x' = w − 1 − x` when flipped, and `lut[0]` (a zero byte) outside the image —
/// zero padding of the raw image, as torchvision pads before normalising.
fn shifted_plane(
    plane: &[u8],
    out: &mut [f32],
    (h, w): (usize, usize),
    (dy, dx, flip): (isize, isize, bool),
    lut: &[f32; 256],
) {
    if (dy, dx, flip) == (0, 0, false) {
        // Rows are contiguous in both: one pass over the plane.
        lut_map(plane, out, lut);
        return;
    }
    for (y, row) in out.chunks_exact_mut(w).enumerate() {
        let sy = y as isize + dy;
        if sy < 0 || sy >= h as isize {
            row.fill(lut[0]);
            continue;
        }
        let src = &plane[sy as usize * w..(sy as usize + 1) * w];
        if dx == 0 && !flip {
            lut_map(src, row, lut);
            continue;
        }
        for (x, o) in row.iter_mut().enumerate() {
            let sx = if flip {
                (w - 1 - x) as isize
            } else {
                x as isize
            } + dx;
            *o = if (0..w as isize).contains(&sx) {
                lut[src[sx as usize] as usize]
            } else {
                lut[0]
            };
        }
    }
}

/// Asks the CPU to bring `bytes` into the cache (a hint: no effect on any
/// result, nothing on targets without a prefetch instruction here).
fn prefetch(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    for line in bytes.chunks(64) {
        // SAFETY: `prefetcht0` (SSE, part of x86-64) only hints; the address
        // is inside `bytes`.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                line.as_ptr().cast(),
            )
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

/// `out[i] = lut[bytes[i]]`: the normalisation of one unshifted image row,
/// 16 pixels per gather instruction where the CPU has AVX-512 (the same
/// table values, so the same bits as the scalar loop).
fn lut_map(bytes: &[u8], out: &mut [f32], lut: &[f32; 256]) {
    debug_assert_eq!(bytes.len(), out.len());
    // The engine's one instruction-set choice (detected once per process).
    #[cfg(target_arch = "x86_64")]
    if bregman_tensor::packed::Isa::detect() == bregman_tensor::packed::Isa::Avx512 {
        // SAFETY: AVX-512F is present (that is what `Isa::Avx512` means).
        unsafe { lut_map_avx512(bytes, out, lut) };
        return;
    }
    for (o, &p) in out.iter_mut().zip(bytes) {
        *o = lut[p as usize];
    }
}

/// [`lut_map`] with 512-bit gathers.
///
/// # Safety
/// The CPU supports AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn lut_map_avx512(bytes: &[u8], out: &mut [f32], lut: &[f32; 256]) {
    use std::arch::x86_64::*;
    let len = bytes.len().min(out.len());
    let mut i = 0;
    while i + 16 <= len {
        // SAFETY: `i + 16 ≤ len` for both slices; every index is a byte, so
        // below the table's 256 entries.
        unsafe {
            let b = _mm_loadu_si128(bytes.as_ptr().add(i).cast());
            let v = _mm512_i32gather_ps::<4>(_mm512_cvtepu8_epi32(b), lut.as_ptr());
            _mm512_storeu_ps(out.as_mut_ptr().add(i), v);
        }
        i += 16;
    }
    for (o, &p) in out[i..len].iter_mut().zip(&bytes[i..len]) {
        *o = lut[p as usize];
    }
}

/// The first of `names` (each tried with `.gz` first) that exists in `dir`.
fn find(dir: &Path, name: &str) -> Result<PathBuf, DataError> {
    for candidate in [format!("{name}.gz"), name.to_string()] {
        let p = dir.join(&candidate);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(DataError::Missing {
        dir: dir.to_path_buf(),
        what: name.to_string(),
        tried: format!("{name}.gz, {name}"),
    })
}

fn load_idx_pair(
    dir: &Path,
    images: &str,
    labels: &str,
    kind: DatasetKind,
) -> Result<Dataset, DataError> {
    let (ip, lp) = (find(dir, images)?, find(dir, labels)?);
    let img = read_idx(&ip)?;
    let lab = read_idx(&lp)?;
    if img.dims.len() != 3 {
        return Err(DataError::corrupt(
            &ip,
            format!("expected 3 dimensions [N, H, W], header has {:?}", img.dims),
        ));
    }
    if lab.dims.len() != 1 {
        return Err(DataError::corrupt(
            &lp,
            format!("expected 1 dimension [N], header has {:?}", lab.dims),
        ));
    }
    if img.dims[0] != lab.dims[0] {
        return Err(DataError::Mismatch(format!(
            "{} has {} images but {} has {} labels",
            ip.display(),
            img.dims[0],
            lp.display(),
            lab.dims[0]
        )));
    }
    if let Some((i, &l)) = lab.data.iter().enumerate().find(|(_, &l)| l >= 10) {
        return Err(DataError::corrupt(
            &lp,
            format!("label {l} at index {i} (must be < 10)"),
        ));
    }
    Ok(Dataset {
        images: img.data,
        labels: lab.data,
        shape: [1, img.dims[1], img.dims[2]],
        kind,
    })
}

/// Loads `(train, test)` of an IDX data set from `dir` (the files
/// `train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`,
/// `t10k-images-idx3-ubyte[.gz]`, `t10k-labels-idx1-ubyte[.gz]`).
///
/// **Errors** naming the file if one is missing, truncated or corrupt.
pub fn load_idx_dataset(dir: &Path, kind: DatasetKind) -> Result<(Dataset, Dataset), DataError> {
    let train = load_idx_pair(
        dir,
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        kind,
    )?;
    let test = load_idx_pair(
        dir,
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
        kind,
    )?;
    Ok((train, test))
}

/// Loads `(train, test)` of CIFAR-10 from `dir` (`data_batch_1.bin` …
/// `data_batch_5.bin`, `test_batch.bin`; the training batches present are used).
///
/// **Errors** naming the file if one is missing or corrupt.
pub fn load_cifar10(dir: &Path) -> Result<(Dataset, Dataset), DataError> {
    let train_files: Vec<PathBuf> = (1..=5)
        .map(|i| dir.join(format!("data_batch_{i}.bin")))
        .filter(|p| p.is_file())
        .collect();
    if train_files.is_empty() {
        return Err(DataError::Missing {
            dir: dir.to_path_buf(),
            what: "CIFAR-10 training batches".into(),
            tried: "data_batch_1.bin … data_batch_5.bin".into(),
        });
    }
    let test_file = dir.join("test_batch.bin");
    if !test_file.is_file() {
        return Err(DataError::Missing {
            dir: dir.to_path_buf(),
            what: "CIFAR-10 test batch".into(),
            tried: "test_batch.bin".into(),
        });
    }
    let (images, labels) = read_cifar_batches(&train_files)?;
    let train = Dataset {
        images,
        labels,
        shape: [3, 32, 32],
        kind: DatasetKind::Cifar10,
    };
    let (images, labels) = read_cifar_batches(&[test_file])?;
    let test = Dataset {
        images,
        labels,
        shape: [3, 32, 32],
        kind: DatasetKind::Cifar10,
    };
    Ok((train, test))
}

/// Loads `(train, test)` of `kind` from `data_dir/<kind's directory>`.
///
/// **Errors** as [`load_idx_dataset`] / [`load_cifar10`].
pub fn load(data_dir: &Path, kind: DatasetKind) -> Result<(Dataset, Dataset), DataError> {
    let dir = data_dir.join(kind.dir_name());
    match kind {
        DatasetKind::Cifar10 => load_cifar10(&dir),
        _ => load_idx_dataset(&dir, kind),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every byte value, at lengths around the 16-pixel vector step, reads
    /// its own table entry (the gather path and the scalar tail alike).
    #[test]
    fn lut_map_reads_each_byte_s_table_entry() {
        let lut: [f32; 256] = std::array::from_fn(|p| (p as f32 * 0.37).sin() - 0.5);
        for len in [0usize, 1, 15, 16, 17, 31, 256, 784, 1000] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 73 + 11) as u8).collect();
            let mut out = vec![f32::NAN; len];
            lut_map(&bytes, &mut out, &lut);
            for (i, (&o, &b)) in out.iter().zip(&bytes).enumerate() {
                assert_eq!(
                    o.to_bits(),
                    lut[b as usize].to_bits(),
                    "len {len}, pixel {i}"
                );
            }
        }
        // i·73 + 11 mod 256 visits every byte value (73 is odd).
        let all: std::collections::HashSet<u8> = (0..256).map(|i| (i * 73 + 11) as u8).collect();
        assert_eq!(all.len(), 256);
    }

    /// Every shift in [−4, 4]² with and without the flip, bitwise equal to the
    /// definition computed per pixel: `(byte/255 − mean)/std` of the source
    /// pixel, or of a zero byte outside the image.
    #[test]
    fn shifted_plane_is_the_shifted_normalised_image() {
        let (h, w, m, s) = (7usize, 9usize, 0.4914f32, 0.247f32);
        let plane: Vec<u8> = (0..h * w).map(|i| (i * 37 % 256) as u8).collect();
        let lut: [f32; 256] = std::array::from_fn(|p| (p as f32 / 255.0 - m) / s);
        for dy in -4..=4isize {
            for dx in -4..=4isize {
                for flip in [false, true] {
                    let mut out = vec![f32::NAN; h * w];
                    shifted_plane(&plane, &mut out, (h, w), (dy, dx, flip), &lut);
                    for y in 0..h {
                        for x in 0..w {
                            let (sy, sx0) = (y as isize + dy, if flip { w - 1 - x } else { x });
                            let sx = sx0 as isize + dx;
                            let inside =
                                (0..h as isize).contains(&sy) && (0..w as isize).contains(&sx);
                            let byte = if inside {
                                plane[sy as usize * w + sx as usize]
                            } else {
                                0
                            };
                            let want = (byte as f32 / 255.0 - m) / s;
                            assert_eq!(
                                out[y * w + x].to_bits(),
                                want.to_bits(),
                                "dy={dy} dx={dx} flip={flip} at ({y},{x})"
                            );
                        }
                    }
                }
            }
        }
    }
}
