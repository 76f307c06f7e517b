//! IDX and CIFAR-10 readers on generated files, errors naming the file,
//! the seeded split, normalisation and reproducible batching.

use std::io::Write;
use std::path::{Path, PathBuf};

use bregman_data::idx::{encode_idx, parse_idx, read_idx};
use bregman_data::{batch_shares, batches, load, BatchOptions, DataError, DatasetKind};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("bregman-data-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn write_mnist(dir: &Path, n_train: usize, n_test: usize, side: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for (prefix, n) in [("train", n_train), ("t10k", n_test)] {
        let pixels: Vec<u8> = (0..n * side * side).map(|i| (i % 251) as u8).collect();
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        std::fs::write(
            dir.join(format!("{prefix}-images-idx3-ubyte.gz")),
            gzip(&encode_idx(&[n, side, side], &pixels)),
        )
        .unwrap();
        // Labels uncompressed: both forms must be accepted.
        std::fs::write(
            dir.join(format!("{prefix}-labels-idx1-ubyte")),
            encode_idx(&[n], &labels),
        )
        .unwrap();
    }
}

#[test]
fn idx_round_trip_raw_and_gzip() {
    let d = tmp("roundtrip");
    let bytes = encode_idx(&[3, 2, 2], &(0..12).collect::<Vec<u8>>());
    std::fs::write(d.join("raw.idx"), &bytes).unwrap();
    std::fs::write(d.join("packed.idx"), gzip(&bytes)).unwrap();
    let a = read_idx(&d.join("raw.idx")).unwrap();
    let b = read_idx(&d.join("packed.idx")).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.dims, vec![3, 2, 2]);
    assert_eq!(a.data[11], 11);
}

#[test]
fn corrupt_idx_errors_name_file_and_problem() {
    let p = Path::new("images.idx");
    let good = encode_idx(&[2, 3], &[0; 6]);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            good[..good.len() - 1].to_vec(),
            "truncated: dimensions [2, 3] need 6 data bytes, file has 5",
        ),
        ([good.clone(), vec![0]].concat(), "trailing bytes"),
        (vec![1, 0, 8, 1, 0, 0, 0, 0], "not an IDX file"),
        (vec![0, 0, 0x0d, 1, 0, 0, 0, 0], "type 0x0d unsupported"),
        (good[..6].to_vec(), "truncated header"),
        (vec![0, 0], "too short"),
    ];
    for (bytes, want) in cases {
        let err = parse_idx(&bytes, p).unwrap_err().to_string();
        assert!(
            err.starts_with("images.idx: ") && err.contains(want),
            "{err:?} should contain {want:?}"
        );
    }
    // A truncated gzip stream.
    let d = tmp("badgzip");
    let z = gzip(&good);
    std::fs::write(d.join("x.gz"), &z[..z.len() / 2]).unwrap();
    let err = read_idx(&d.join("x.gz")).unwrap_err().to_string();
    assert!(err.contains("x.gz") && err.contains("gzip"), "{err}");
    // A missing file.
    let err = read_idx(&d.join("nope")).unwrap_err();
    assert!(matches!(err, DataError::Io { .. }) && err.to_string().contains("nope"));
}

#[test]
fn gzip_is_inflated_no_further_than_the_header_declares() {
    let d = tmp("bomb");
    // A header for 10 images of 4×4 followed by 256 MiB of zeros: about
    // 250 KB compressed. The reader stops one byte past the declared 160.
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(&encode_idx(&[10, 4, 4], &[7; 160])).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..256 {
        e.write_all(&zeros).unwrap();
    }
    std::fs::write(d.join("bomb.gz"), e.finish().unwrap()).unwrap();
    let err = read_idx(&d.join("bomb.gz")).unwrap_err().to_string();
    assert!(
        err.contains("bomb.gz") && err.contains("trailing bytes") && err.contains("file has 161"),
        "{err}"
    );
    // A header declaring more than its gzip stream could hold (deflate
    // expands at most 1032×) is refused before inflating anything.
    let liar = gzip(&encode_idx(&[60000, 28, 28], &[0; 16]));
    std::fs::write(d.join("liar.gz"), &liar).unwrap();
    let err = read_idx(&d.join("liar.gz")).unwrap_err().to_string();
    assert!(
        err.contains("liar.gz") && err.contains("47040000 data bytes, more than a gzip stream"),
        "{err}"
    );
    // Truncated and malformed headers inside gzip still get the parser's errors.
    for (bytes, want) in [
        (vec![0u8, 0], "too short"),
        (vec![0, 0, 8, 3, 0, 0], "truncated header"),
        (vec![0, 0, 9, 1, 0, 0, 0, 1, 5], "type 0x09 unsupported"),
    ] {
        std::fs::write(d.join("h.gz"), gzip(&bytes)).unwrap();
        let err = read_idx(&d.join("h.gz")).unwrap_err().to_string();
        assert!(err.contains(want), "{err:?} should contain {want:?}");
    }
}

#[test]
fn loads_mnist_layout_and_checks_consistency() {
    let d = tmp("mnist");
    write_mnist(&d.join("mnist"), 50, 20, 28);
    let (train, test) = load(&d, DatasetKind::Mnist).unwrap();
    assert_eq!(
        (train.len(), test.len(), train.shape),
        (50, 20, [1, 28, 28])
    );
    // Label count disagreeing with the image count.
    std::fs::write(
        d.join("mnist/t10k-labels-idx1-ubyte"),
        encode_idx(&[19], &[0; 19]),
    )
    .unwrap();
    let err = load(&d, DatasetKind::Mnist).unwrap_err().to_string();
    assert!(
        err.contains("20 images") && err.contains("19 labels"),
        "{err}"
    );
    // A label out of range.
    std::fs::write(
        d.join("mnist/t10k-labels-idx1-ubyte"),
        encode_idx(&[20], &[12; 20]),
    )
    .unwrap();
    let err = load(&d, DatasetKind::Mnist).unwrap_err().to_string();
    assert!(err.contains("label 12"), "{err}");
    // A missing directory.
    let err = load(&d, DatasetKind::FashionMnist).unwrap_err().to_string();
    assert!(
        err.contains("fashion-mnist") && err.contains("train-images-idx3-ubyte"),
        "{err}"
    );
}

#[test]
fn cifar_binary_reader() {
    let d = tmp("cifar").join("cifar-10");
    std::fs::create_dir_all(&d).unwrap();
    let record = |label: u8, fill: u8| {
        let mut r = vec![label];
        r.extend(std::iter::repeat_n(fill, 3072));
        r
    };
    std::fs::write(
        d.join("data_batch_1.bin"),
        [record(3, 10), record(7, 20)].concat(),
    )
    .unwrap();
    std::fs::write(d.join("data_batch_2.bin"), record(1, 30)).unwrap();
    std::fs::write(d.join("test_batch.bin"), record(9, 40)).unwrap();
    let (train, test) = load(d.parent().unwrap(), DatasetKind::Cifar10).unwrap();
    assert_eq!(train.labels, vec![3, 7, 1]);
    assert_eq!(train.shape, [3, 32, 32]);
    assert_eq!(train.images[3072], 20);
    assert_eq!(test.labels, vec![9]);
    std::fs::write(d.join("test_batch.bin"), &record(9, 40)[..3000]).unwrap();
    let err = load(d.parent().unwrap(), DatasetKind::Cifar10)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("test_batch.bin") && err.contains("3073-byte"),
        "{err}"
    );
    std::fs::write(d.join("test_batch.bin"), record(11, 0)).unwrap();
    let err = load(d.parent().unwrap(), DatasetKind::Cifar10)
        .unwrap_err()
        .to_string();
    assert!(err.contains("label 11"), "{err}");
}

#[test]
fn split_is_seeded_and_disjoint() {
    let d = tmp("split");
    write_mnist(&d.join("mnist"), 200, 10, 4);
    let (train, _) = load(&d, DatasetKind::Mnist).unwrap();
    let (a, va) = train.split(0.05, 7);
    let (b, vb) = train.split(0.05, 7);
    let (_, vc) = train.split(0.05, 8);
    assert_eq!((a.len(), va.len()), (190, 10));
    assert_eq!(va, vb);
    assert_eq!(a, b);
    assert_ne!(va, vc);
    // Disjoint and complete: every image (named by its first pixel, unique
    // here: image k starts at 16k mod 251) in exactly one part, with its label.
    let key = |ds: &bregman_data::Dataset| -> Vec<(u8, u8)> {
        (0..ds.len())
            .map(|i| (ds.images[i * 16], ds.labels[i]))
            .collect()
    };
    let mut parts = [key(&a), key(&va)].concat();
    parts.sort_unstable();
    let mut all = key(&train);
    all.sort_unstable();
    assert_eq!(parts, all);
}

#[test]
fn batches_normalise_and_are_reproducible() {
    let d = tmp("batches");
    write_mnist(&d.join("mnist"), 10, 10, 4);
    let (train, _) = load(&d, DatasetKind::Mnist).unwrap();
    let opts = BatchOptions {
        batch_size: 4,
        shuffle: false,
        augment: false,
        noise_std: None,
        fixed_noise: false,
    };
    let bs: Vec<_> = batches(&train, opts, 0, 1).collect();
    assert_eq!(bs.len(), 3);
    assert_eq!(bs[2].x.shape(), [2, 1, 4, 4]);
    // Pixel 0 of image 0 is 0 → (0 − 0.1307)/0.3081.
    assert!((bs[0].x.data()[0] - (-0.1307 / 0.3081)).abs() < 1e-6);
    assert_eq!(bs[0].labels, vec![0, 1, 2, 3]);
    // Shuffled batches: the same for the same (seed, epoch), different across epochs.
    let sh = BatchOptions {
        shuffle: true,
        ..opts
    };
    let e1: Vec<_> = batches(&train, sh, 3, 1).map(|b| b.labels).collect();
    let e1b: Vec<_> = batches(&train, sh, 3, 1).map(|b| b.labels).collect();
    let e2: Vec<_> = batches(&train, sh, 3, 2).map(|b| b.labels).collect();
    assert_eq!(e1, e1b);
    assert_ne!(e1, e2);
    // Denoising: target is the clean image in [0, 1]; the input is the noisy
    // image normalised with the MNIST mean/std, so un-normalising it leaves
    // noise of the given std.
    let dn = BatchOptions {
        noise_std: Some(0.1),
        fixed_noise: false,
        ..opts
    };
    let b = batches(&train, dn, 0, 1).next().unwrap();
    let t = b.target.unwrap();
    assert!(t.data().iter().all(|&v| (0.0..=1.0).contains(&v)));
    let diff: Vec<f32> =
        b.x.data()
            .iter()
            .zip(t.data())
            .map(|(a, b)| (a * 0.3081 + 0.1307) - b)
            .collect();
    let std = (diff.iter().map(|v| v * v).sum::<f32>() / diff.len() as f32).sqrt();
    assert!((std - 0.1).abs() < 0.03, "noise std {std}");
}

/// Noise of each image in a batch, by label (the inputs un-normalised minus
/// the clean targets).
fn noise_by_label(b: &bregman_data::Batch) -> Vec<(usize, Vec<f32>)> {
    let t = b.target.as_ref().unwrap();
    let n = t.len() / b.labels.len();
    b.labels
        .iter()
        .enumerate()
        .map(|(k, &l)| {
            let x = &b.x.data()[k * n..(k + 1) * n];
            let c = &t.data()[k * n..(k + 1) * n];
            (
                l,
                x.iter()
                    .zip(c)
                    .map(|(a, c)| a * 0.3081 + 0.1307 - c)
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn fixed_noise_is_the_same_for_an_image_every_epoch_and_redrawn_noise_is_not() {
    let d = tmp("fixed_noise");
    write_mnist(&d.join("mnist"), 8, 2, 4);
    let (train, _) = load(&d, DatasetKind::Mnist).unwrap();
    let fixed = BatchOptions {
        batch_size: 8,
        shuffle: true,
        augment: false,
        noise_std: Some(0.05),
        fixed_noise: true,
    };
    // Labels are 0..8, one per image, so they name the image whatever the order.
    let sorted = |opts, epoch| {
        let mut v = noise_by_label(&batches(&train, opts, 5, epoch).next().unwrap());
        v.sort_by_key(|(l, _)| *l);
        v
    };
    let (e1, e2) = (sorted(fixed, 1), sorted(fixed, 2));
    assert_eq!(e1, e2, "fixed noise changed between epochs");
    // Different images get different noise, of the given std.
    assert_ne!(e1[0].1, e1[1].1);
    let all: Vec<f32> = e1.iter().flat_map(|(_, v)| v.clone()).collect();
    let std = (all.iter().map(|v| v * v).sum::<f32>() / all.len() as f32).sqrt();
    assert!((std - 0.05).abs() < 0.01, "noise std {std}");
    // Another seed, other noise; redrawn noise differs between epochs.
    let other = {
        let mut v = noise_by_label(&batches(&train, fixed, 6, 1).next().unwrap());
        v.sort_by_key(|(l, _)| *l);
        v
    };
    assert_ne!(e1, other);
    let redrawn = BatchOptions {
        fixed_noise: false,
        ..fixed
    };
    assert_ne!(sorted(redrawn, 1), sorted(redrawn, 2));
}

#[test]
fn cifar_augmentation_crops_and_flips_deterministically() {
    let d = tmp("aug").join("cifar-10");
    std::fs::create_dir_all(&d).unwrap();
    let mut rec = vec![0u8];
    rec.extend((0..3072).map(|i| (i % 32) as u8 * 8));
    std::fs::write(d.join("data_batch_1.bin"), rec.repeat(8)).unwrap();
    std::fs::write(d.join("test_batch.bin"), &rec).unwrap();
    let (train, _) = load(d.parent().unwrap(), DatasetKind::Cifar10).unwrap();
    let plain = BatchOptions {
        batch_size: 8,
        shuffle: false,
        augment: false,
        noise_std: None,
        fixed_noise: false,
    };
    let aug = BatchOptions {
        augment: true,
        ..plain
    };
    let x0 = batches(&train, plain, 1, 1).next().unwrap().x;
    let x1 = batches(&train, aug, 1, 1).next().unwrap().x;
    let x2 = batches(&train, aug, 1, 1).next().unwrap().x;
    assert_eq!(x1, x2);
    assert_ne!(x0, x1);
    assert_eq!(x1.shape(), [8, 3, 32, 32]);
}

/// The batches are gathered in parallel, image by image: 1 and 2 threads give
/// the same bits, with and without augmentation.
#[test]
fn batches_do_not_depend_on_the_thread_count() {
    let d = tmp("threads").join("cifar-10");
    std::fs::create_dir_all(&d).unwrap();
    let mut recs = Vec::new();
    for r in 0..40u32 {
        recs.push((r % 10) as u8);
        recs.extend((0..3072u32).map(|i| ((i * 31 + r * 17) % 256) as u8));
    }
    std::fs::write(d.join("data_batch_1.bin"), &recs).unwrap();
    std::fs::write(d.join("test_batch.bin"), &recs[..3073]).unwrap();
    let (train, _) = load(d.parent().unwrap(), DatasetKind::Cifar10).unwrap();
    for augment in [false, true] {
        let opts = BatchOptions {
            batch_size: 33,
            shuffle: true,
            augment,
            noise_std: None,
            fixed_noise: false,
        };
        let on = |threads: usize| -> Vec<Vec<u32>> {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                batches(&train, opts, 5, 2)
                    .map(|b| b.x.data().iter().map(|v| v.to_bits()).collect())
                    .collect()
            })
        };
        let one = on(1);
        assert_eq!(one.len(), 2);
        assert_eq!(one, on(2), "augment {augment}");
    }
}

/// Every augmented image is the original shifted by some (dy, dx) in
/// [−4, 4]² with zero padding, then possibly flipped horizontally, and
/// normalised; over many images every kind of shift and both flips occur.
#[test]
fn cifar_augmentation_is_a_shift_and_flip_of_the_original() {
    let d = tmp("aug-shift").join("cifar-10");
    std::fs::create_dir_all(&d).unwrap();
    let n = 64;
    let mut bytes = Vec::new();
    let mut s = 12345u32;
    for i in 0..n {
        bytes.push((i % 10) as u8);
        bytes.extend((0..3072).map(|_| {
            s = s.wrapping_mul(1_103_515_245).wrapping_add(12345);
            1 + (s >> 16) as u8 % 255 // never 0, so padding is visible
        }));
    }
    std::fs::write(d.join("data_batch_1.bin"), &bytes).unwrap();
    std::fs::write(d.join("test_batch.bin"), &bytes[..3073]).unwrap();
    let (train, _) = load(d.parent().unwrap(), DatasetKind::Cifar10).unwrap();
    let aug = BatchOptions {
        batch_size: n,
        shuffle: false,
        augment: true,
        noise_std: None,
        fixed_noise: false,
    };
    let x = batches(&train, aug, 3, 1).next().unwrap().x;
    let (mean, std) = DatasetKind::Cifar10.normalization();
    let mut seen = std::collections::HashSet::new();
    for k in 0..n {
        let img = &train.images[k * 3072..(k + 1) * 3072];
        let out = &x.data()[k * 3072..(k + 1) * 3072];
        let expected = |dy: isize, dx: isize, flip: bool| -> Vec<f32> {
            (0..3072)
                .map(|i| {
                    let (c, y, xx) = (i / 1024, (i / 32) % 32, i % 32);
                    let xs = if flip { 31 - xx } else { xx } as isize + dx;
                    let ys = y as isize + dy;
                    let p = if (0..32).contains(&ys) && (0..32).contains(&xs) {
                        img[c * 1024 + ys as usize * 32 + xs as usize]
                    } else {
                        0
                    };
                    (p as f32 / 255.0 - mean[c]) / std[c]
                })
                .collect()
        };
        let found = (-4..=4)
            .flat_map(|dy| (-4..=4).flat_map(move |dx| [(dy, dx, false), (dy, dx, true)]))
            .find(|&(dy, dx, f)| expected(dy, dx, f) == out);
        let Some(t) = found else {
            panic!("augmented image {k} is no shift in [-4, 4]² (or flip) of the original");
        };
        seen.insert((t.0.signum(), t.1.signum(), t.2));
    }
    assert!(
        seen.len() >= 12,
        "only {seen:?} kinds of shift in {n} images"
    );
}

/// The shares of ranks 0..N, put together, are the batches of one process,
/// bit for bit: with shuffling, CIFAR augmentation, and redrawn or fixed noise.
#[test]
fn batch_shares_put_together_are_the_batches() {
    let d = tmp("shares");
    write_mnist(&d.join("mnist"), 23, 2, 4);
    let (mnist, _) = load(&d, DatasetKind::Mnist).unwrap();
    let c = d.join("cifar").join("cifar-10");
    std::fs::create_dir_all(&c).unwrap();
    let rec: Vec<u8> = (0..11)
        .flat_map(|i| {
            std::iter::once(i % 10)
                .chain((0..3072).map(move |p| ((p * 3 + i as usize * 11) % 256) as u8))
        })
        .collect();
    std::fs::write(c.join("data_batch_1.bin"), &rec).unwrap();
    std::fs::write(c.join("test_batch.bin"), &rec[..3073]).unwrap();
    let (cifar, _) = load(c.parent().unwrap(), DatasetKind::Cifar10).unwrap();
    let base = BatchOptions {
        batch_size: 5,
        shuffle: true,
        augment: false,
        noise_std: None,
        fixed_noise: false,
    };
    let cases = [
        (
            &mnist,
            BatchOptions {
                noise_std: Some(0.1),
                ..base
            },
        ),
        (
            &mnist,
            BatchOptions {
                noise_std: Some(0.1),
                fixed_noise: true,
                ..base
            },
        ),
        (
            &cifar,
            BatchOptions {
                augment: true,
                ..base
            },
        ),
    ];
    for (ds, opts) in cases {
        let whole: Vec<_> = batches(ds, opts, 9, 2).collect();
        for ranks in 1..=6 {
            let parts: Vec<Vec<_>> = (0..ranks)
                .map(|r| batch_shares(ds, opts, 9, 2, r, ranks).collect())
                .collect();
            for (b, w) in whole.iter().enumerate() {
                let x: Vec<f32> = parts.iter().flat_map(|p| p[b].x.data().to_vec()).collect();
                let labels: Vec<usize> = parts.iter().flat_map(|p| p[b].labels.clone()).collect();
                assert_eq!(x, w.x.data(), "{ranks} ranks, batch {b}");
                assert_eq!(labels, w.labels);
                if let Some(t) = &w.target {
                    let tp: Vec<f32> = parts
                        .iter()
                        .flat_map(|p| p[b].target.as_ref().unwrap().data().to_vec())
                        .collect();
                    assert_eq!(tp, t.data());
                }
            }
        }
    }
}
