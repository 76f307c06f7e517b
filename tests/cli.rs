//! End-to-end tests of the `bregman` binary on the shipped MNIST sample:
//! training, reproducibility (resume, thread count), errors, export.

mod common;

use std::path::Path;

use common::{bin, err, metrics, num, ok, tmp, without_seconds};

/// `bregman train --out DIR ARGS… --quiet` with `RAYON_NUM_THREADS` set; panics on failure.
fn train_with_threads(dir: &Path, threads: &str, args: &[&str]) {
    let out = bin()
        .arg("train")
        .args(args)
        .args(["--out", dir.to_str().unwrap(), "--quiet"])
        .env("RAYON_NUM_THREADS", threads)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn linbreg_grows_from_sparse_init_and_learns() {
    let out = tmp("linbreg");
    ok(&[
        "train",
        "--epochs",
        "2",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    let rows = metrics(&out);
    assert_eq!(rows.len(), 2);
    let (n1, n2) = (num(&rows[0], "n_total"), num(&rows[1], "n_total"));
    assert!(
        n1 > 0.005 && n1 < 0.03,
        "N_total after epoch 1 should be near r = 1%: {n1}"
    );
    assert!(n2 > n1, "N_total should grow: {n1} → {n2}");
    assert!(
        num(&rows[1], "test_acc") > 0.4,
        "test accuracy {}",
        num(&rows[1], "test_acc")
    );
    for f in [
        "config.toml",
        "metrics.json",
        "accuracy.svg",
        "nonzeros.svg",
        "loss.svg",
        "neurons.svg",
        "checkpoint.safetensors",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    assert!(!out.join("checkpoint.tmp").exists());
    let cfg = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(
        cfg.contains("optimizer = \"linbreg\"") && cfg.contains("lambda = 0.1"),
        "{cfg}"
    );
}

#[test]
fn sgd_trains_dense() {
    let out = tmp("sgd");
    ok(&[
        "train",
        "--optimizer",
        "sgd",
        "--epochs",
        "1",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    let rows = metrics(&out);
    assert!(num(&rows[0], "test_acc") > 0.5);
    assert!(
        num(&rows[0], "n_total") > 0.99,
        "SGD from a dense init stays dense"
    );
}

#[test]
fn resume_reproduces_the_uninterrupted_run() {
    let (a, b) = (tmp("resume-a"), tmp("resume-b"));
    ok(&[
        "train",
        "--epochs",
        "3",
        "--seed",
        "5",
        "--out",
        a.to_str().unwrap(),
        "--quiet",
    ]);
    ok(&[
        "train",
        "--epochs",
        "1",
        "--seed",
        "5",
        "--out",
        b.to_str().unwrap(),
        "--quiet",
    ]);
    ok(&[
        "train",
        "--resume",
        b.to_str().unwrap(),
        "--epochs",
        "3",
        "--quiet",
    ]);
    assert_eq!(without_seconds(&a), without_seconds(&b));
}

/// Trains `epochs` straight into one directory, and `split` then the rest
/// through `--resume` into another; the metrics must be identical.
fn assert_resume_is_exact(name: &str, args: &[&str], split: usize, epochs: usize) {
    let (a, b) = (tmp(&format!("{name}-a")), tmp(&format!("{name}-b")));
    let (all, first) = (epochs.to_string(), split.to_string());
    train_with_threads(&a, "2", &[args, &["--epochs", &all]].concat());
    train_with_threads(&b, "2", &[args, &["--epochs", &first]].concat());
    ok(&[
        "train",
        "--resume",
        b.to_str().unwrap(),
        "--epochs",
        &all,
        "--quiet",
    ]);
    assert_eq!(without_seconds(&a), without_seconds(&b), "{name}");
}

/// Resuming restores what a plain LinBreg run does not have: Adam's and
/// AdaBreg's moment buffers (AdaBreg's also `v`) and batchnorm's running
/// statistics (ResNet-18). (Pruning masks: `tests/reliability.rs`, through
/// a killed run, since a pruning run's schedule is fixed by its epochs.)
#[test]
fn resume_restores_moments_and_batchnorm_statistics() {
    assert_resume_is_exact("resume-adam", &["--optimizer", "adam"], 1, 2);
    assert_resume_is_exact("resume-adabreg", &["--optimizer", "adabreg"], 1, 2);
    let d = tmp("resume-bn-data");
    let dir = d.join("cifar-10");
    std::fs::create_dir_all(&dir).unwrap();
    let records = |n: usize, seed: u8| -> Vec<u8> {
        (0..n)
            .flat_map(|i| {
                let label = (i % 10) as u8;
                std::iter::once(label)
                    .chain((0..3072).map(move |p| ((p * 13 + i * 5) as u8).wrapping_add(seed)))
            })
            .collect()
    };
    std::fs::write(dir.join("data_batch_1.bin"), records(20, 3)).unwrap();
    std::fs::write(dir.join("test_batch.bin"), records(4, 4)).unwrap();
    let data = d.to_str().unwrap();
    assert_resume_is_exact(
        "resume-bn",
        &[
            "--experiment",
            "cifar-resnet18",
            "--batch-size",
            "10",
            "--data-dir",
            data,
        ],
        1,
        2,
    );
}

#[test]
fn one_and_two_threads_give_identical_metrics() {
    let (a, b) = (tmp("threads-1"), tmp("threads-2"));
    train_with_threads(&a, "1", &["--epochs", "2"]);
    train_with_threads(&b, "2", &["--epochs", "2"]);
    assert_eq!(without_seconds(&a), without_seconds(&b));
}

/// Three epochs with the sparse kernels (the main job's weights are 1–3%
/// dense, so every layer runs them) against `--dense-kernels`: accuracies
/// within 0.1 pp, losses within 1e-4 relative (only the summation order
/// differs), the same sparsity.
#[test]
fn sparse_kernels_train_like_dense_kernels() {
    let (a, b) = (tmp("kernels-sparse"), tmp("kernels-dense"));
    for (dir, extra) in [(&a, None), (&b, Some("--dense-kernels"))] {
        let mut args = vec![
            "train",
            "--epochs",
            "3",
            "--out",
            dir.to_str().unwrap(),
            "--quiet",
        ];
        args.extend(extra);
        ok(&args);
    }
    let (ma, mb) = (metrics(&a), metrics(&b));
    assert_eq!(ma.len(), 3);
    for (ra, rb) in ma.iter().zip(&mb) {
        for key in ["train_loss", "val_loss", "test_loss"] {
            let (x, y): (f64, f64) = (ra[key].parse().unwrap(), rb[key].parse().unwrap());
            assert!((x - y).abs() <= 1e-4 * y.abs(), "{key}: {x} vs {y}");
        }
        for key in ["train_acc", "val_acc", "test_acc"] {
            let (x, y): (f64, f64) = (ra[key].parse().unwrap(), rb[key].parse().unwrap());
            assert!((x - y).abs() <= 0.001, "{key}: {x} vs {y}");
        }
        assert_eq!(ra["n_total"], rb["n_total"]);
    }
}

/// Sparse backpropagation (`--sparse-backprop 4`): the same bits with one
/// and two threads, a resumed run equal to the uninterrupted one (every
/// epoch ends with a full step, so no run of masked steps straddles a
/// checkpoint), the support growing from the sparse start, and K = 1 the
/// exact training bit for bit.
#[test]
fn sparse_backprop_is_reproducible_resumable_and_grows_the_support() {
    let train = |dir: &Path, threads: &str, extra: &[&str]| {
        let mut args = vec!["--seed", "5"];
        args.extend_from_slice(extra);
        train_with_threads(dir, threads, &args);
    };
    let k4 = ["--sparse-backprop", "4", "--epochs", "3"];
    let (a, b, c) = (tmp("sbp-1"), tmp("sbp-2"), tmp("sbp-resume"));
    train(&a, "1", &k4);
    train(&b, "2", &k4);
    assert_eq!(without_seconds(&a), without_seconds(&b), "thread count");
    train(&c, "2", &["--sparse-backprop", "4", "--epochs", "1"]);
    ok(&[
        "train",
        "--resume",
        c.to_str().unwrap(),
        "--epochs",
        "3",
        "--quiet",
    ]);
    assert_eq!(without_seconds(&a), without_seconds(&c), "resume");
    let m = metrics(&a);
    let n: Vec<f64> = m.iter().map(|r| num(r, "n_total")).collect();
    assert!(
        n[2] > n[0] && n[0] > 0.01,
        "the support should grow from r = 1%: {n:?}"
    );
    assert!(
        num(&m[2], "test_acc") > 0.5,
        "it should learn: {}",
        m[2]["test_acc"]
    );
    let (e, k1) = (tmp("sbp-exact"), tmp("sbp-k1"));
    train(&e, "2", &["--epochs", "2"]);
    train(&k1, "2", &["--epochs", "2", "--sparse-backprop", "1"]);
    assert_eq!(
        without_seconds(&e),
        without_seconds(&k1),
        "K = 1 is exact training"
    );
}

#[test]
fn invalid_flags_give_one_line_errors() {
    let cases: &[(&[&str], &str)] = &[
        (&["--lr", "0"], "--lr 0: must be > 0"),
        (&["--lr", "-1"], "--lr -1: must be > 0"),
        (&["--delta", "0"], "--delta 0: must be > 0"),
        (
            &["--sparse-init", "0"],
            "--sparse-init 0: must be in (0, 1]",
        ),
        (
            &["--sparse-init", "1.5"],
            "--sparse-init 1.5: must be in (0, 1]",
        ),
        (&["--lambda", "-0.5"], "--lambda -0.5: must be ≥ 0"),
        (&["--momentum", "1"], "--momentum 1: must be in [0, 1)"),
        (&["--epochs", "0"], "--epochs 0: must be ≥ 1"),
        (
            &["--experiment", "imagenet"],
            "unknown experiment 'imagenet'",
        ),
        (&["--optimizer", "lbfgs"], "unknown optimizer 'lbfgs'"),
        (
            &["--sparse-backprop", "0"],
            "--sparse-backprop 0: must be ≥ 1",
        ),
        (
            &["--sparse-backprop", "4", "--optimizer", "sgd"],
            "--sparse-backprop 4: needs a Bregman optimizer",
        ),
        (
            &["--sparse-backprop-catch-up", "cubic"],
            "--sparse-backprop-catch-up cubic: unknown",
        ),
    ];
    for (flags, want) in cases {
        let mut args = vec!["train"];
        args.extend_from_slice(flags);
        let e = err(&args);
        assert!(
            e.contains(want),
            "bregman {args:?}: {e:?} should contain {want:?}"
        );
        assert_eq!(
            e.trim().lines().count(),
            1,
            "one-line error expected: {e:?}"
        );
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn idx(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 8, dims.len() as u8];
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

fn fake_mnist(dir: &Path, side: usize) {
    let m = dir.join("mnist");
    std::fs::create_dir_all(&m).unwrap();
    for (p, n) in [("train", 40), ("t10k", 10)] {
        std::fs::write(
            m.join(format!("{p}-images-idx3-ubyte.gz")),
            gzip(&idx(&[n, side, side], &vec![7; n * side * side])),
        )
        .unwrap();
        std::fs::write(
            m.join(format!("{p}-labels-idx1-ubyte.gz")),
            gzip(&idx(&[n], &vec![1; n])),
        )
        .unwrap();
    }
}

#[test]
fn corrupt_and_missing_data_are_reported_with_the_file() {
    let d = tmp("corrupt");
    fake_mnist(&d, 28);
    let file = d.join("mnist/t10k-images-idx3-ubyte.gz");
    let full = idx(&[10, 28, 28], &[7; 7840]);
    std::fs::write(&file, gzip(&full[..full.len() - 100])).unwrap();
    let e = err(&[
        "train",
        "--epochs",
        "1",
        "--data-dir",
        d.to_str().unwrap(),
        "--out",
        d.join("o").to_str().unwrap(),
    ]);
    assert!(
        e.contains("t10k-images-idx3-ubyte.gz") && e.contains("truncated"),
        "{e}"
    );
    std::fs::write(&file, b"this is not idx").unwrap();
    let e = err(&["train", "--epochs", "1", "--data-dir", d.to_str().unwrap()]);
    assert!(
        e.contains("t10k-images-idx3-ubyte.gz") && e.contains("not an IDX file"),
        "{e}"
    );
    let e = err(&[
        "train",
        "--epochs",
        "1",
        "--data-dir",
        d.join("nowhere").to_str().unwrap(),
    ]);
    assert!(e.contains("train-images-idx3-ubyte"), "{e}");
}

#[test]
fn wrong_image_size_for_the_model() {
    let d = tmp("wrongsize");
    fake_mnist(&d, 32);
    let e = err(&[
        "train",
        "--epochs",
        "1",
        "--data-dir",
        d.to_str().unwrap(),
        "--out",
        d.join("o").to_str().unwrap(),
    ]);
    assert!(
        e.contains("do not fit") && e.contains("layers.0") && e.contains("1024"),
        "{e}"
    );
}

#[test]
fn diverging_loss_stops_with_epoch_and_batch() {
    let out = tmp("nan");
    let e = err(&[
        "train",
        "--epochs",
        "2",
        "--lr",
        "1e30",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(e.contains("at epoch 1, batch"), "{e}");
    assert!(
        !out.join("checkpoint.safetensors").exists(),
        "no checkpoint of a diverged epoch"
    );
}

/// `export --sparse` writes each weight as the CSR triplet of
/// `torch.sparse_csr_tensor` (int32 indices), biases dense; the triplets
/// rebuild the checkpoint's weights exactly, and the file of a ~1%-dense
/// MLP is over 10× smaller than the dense export.
#[test]
fn sparse_export_rebuilds_the_weights_and_is_small() {
    let out = tmp("export-sparse");
    ok(&[
        "train",
        "--epochs",
        "1",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    let ckpt = out.join("checkpoint.safetensors");
    let (dense_file, sparse_file) = (
        out.join("dense.safetensors"),
        out.join("sparse.safetensors"),
    );
    ok(&[
        "export",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--out",
        dense_file.to_str().unwrap(),
    ]);
    let msg = ok(&[
        "export",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--out",
        sparse_file.to_str().unwrap(),
        "--sparse",
    ]);
    assert!(msg.contains("wrote 12 tensors"), "{msg}");
    let exported = bregman::train::export::read_exported(&sparse_file).unwrap();
    let get = |n: &str| &exported.iter().find(|(name, _)| name == n).unwrap().1;
    let ck = bregman::train::checkpoint::load(&ckpt).unwrap();
    for layer in ["layers.0", "layers.2", "layers.4"] {
        let w = &ck.tensors[&format!("model.{layer}.weight")];
        let (rows, cols) = (w.dim(0), w.dim(1));
        let crow = get(&format!("{layer}.weight.crow_indices"));
        let col = get(&format!("{layer}.weight.col_indices"));
        let val = get(&format!("{layer}.weight.values"));
        assert_eq!(crow.len(), rows + 1);
        let mut rebuilt = vec![0.0f32; rows * cols];
        for r in 0..rows {
            for k in crow.data()[r] as usize..crow.data()[r + 1] as usize {
                rebuilt[r * cols + col.data()[k] as usize] = val.data()[k];
            }
        }
        assert_eq!(rebuilt, w.data(), "{layer}");
        assert_eq!(
            get(&format!("{layer}.bias")).data(),
            ck.tensors[&format!("model.{layer}.bias")].data()
        );
    }
    let size = |p: &std::path::Path| std::fs::metadata(p).unwrap().len();
    assert!(
        size(&sparse_file) * 10 < size(&dense_file),
        "sparse export {} bytes vs dense {}",
        size(&sparse_file),
        size(&dense_file)
    );
}

#[test]
fn export_round_trips_names_shapes_values() {
    let out = tmp("export");
    ok(&[
        "train",
        "--epochs",
        "1",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    let file = out.join("model.safetensors");
    let msg = ok(&[
        "export",
        "--checkpoint",
        out.join("checkpoint.safetensors").to_str().unwrap(),
        "--out",
        file.to_str().unwrap(),
    ]);
    assert!(msg.contains("wrote 6 tensors"), "{msg}");
    let exported = bregman::train::export::read_exported(&file).unwrap();
    let names: Vec<&str> = exported.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "layers.0.bias",
            "layers.0.weight",
            "layers.2.bias",
            "layers.2.weight",
            "layers.4.bias",
            "layers.4.weight"
        ]
    );
    let ck = bregman::train::checkpoint::load(&out.join("checkpoint.safetensors")).unwrap();
    for (name, t) in &exported {
        let orig = &ck.tensors[&format!("model.{name}")];
        assert_eq!(orig.shape(), t.shape());
        assert_eq!(orig.data(), t.data(), "{name}");
    }
    assert_eq!(exported[1].1.shape(), [200, 784]);
    // inspect and eval read the same checkpoint.
    let inspect = ok(&["inspect", out.to_str().unwrap()]);
    assert!(
        inspect.contains("layers.0.weight") && inspect.contains("/156800"),
        "{inspect}"
    );
    let eval = ok(&["eval", "--checkpoint", out.to_str().unwrap()]);
    let acc = metrics(&out)[0]["test_acc"].parse::<f64>().unwrap();
    assert!(
        eval.contains(&format!("test accuracy {:.2}%", 100.0 * acc)),
        "{eval} vs {acc}"
    );
    let e = err(&["inspect", file.to_str().unwrap()]);
    assert!(e.contains("not a bregman checkpoint"), "{e}");
}

#[test]
fn denoiser_reports_ssim_psnr_and_neurons() {
    let out = tmp("denoise");
    ok(&[
        "train",
        "--experiment",
        "mnist-denoiser",
        "--epochs",
        "1",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    let rows = metrics(&out);
    let ssim = num(&rows[0], "test_ssim");
    let psnr = num(&rows[0], "test_psnr");
    assert!(
        ssim > 0.0 && ssim <= 1.0 && psnr > 5.0,
        "SSIM {ssim}, PSNR {psnr}"
    );
    assert_eq!(rows[0]["test_acc"], "", "no accuracy for denoising");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    let neurons = json[0]["neurons"].as_array().unwrap();
    assert_eq!(neurons.len(), 6);
    // Row-sparse init: about r = 1% of the 784 rows of each layer start active (bounded above).
    let active = neurons[0][1].as_u64().unwrap();
    assert!(active < 784, "row sparsity: {active} of 784 rows active");
}

#[test]
fn resnet18_runs_end_to_end_on_generated_cifar_files() {
    let d = tmp("cifar");
    let dir = d.join("cifar-10");
    std::fs::create_dir_all(&dir).unwrap();
    let records = |n: usize, seed: u8| -> Vec<u8> {
        (0..n)
            .flat_map(|i| {
                let label = (i % 10) as u8;
                std::iter::once(label).chain(
                    (0..3072)
                        .map(move |p| ((p * 31 + i * 7) as u8).wrapping_add(seed) ^ (label * 25)),
                )
            })
            .collect()
    };
    std::fs::write(dir.join("data_batch_1.bin"), records(24, 1)).unwrap();
    std::fs::write(dir.join("test_batch.bin"), records(8, 2)).unwrap();
    let out = d.join("run");
    ok(&[
        "train",
        "--experiment",
        "cifar-resnet18",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--data-dir",
        d.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    let rows = metrics(&out);
    let n_conv = num(&rows[0], "n_conv");
    assert!(
        n_conv > 0.0 && n_conv < 0.05,
        "kernel-sparse ResNet: N_conv {n_conv}"
    );
    assert!(num(&rows[0], "train_loss").is_finite());
}

#[test]
fn config_file_sets_fields_and_flags_override_it() {
    let d = tmp("config");
    std::fs::create_dir_all(&d).unwrap();
    let cfg = d.join("run.toml");
    std::fs::write(
        &cfg,
        "optimizer = \"linbreg-momentum\"\nlambda = 0.05\nepochs = 1\n",
    )
    .unwrap();
    let out = d.join("run");
    ok(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--seed",
        "3",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    let written = std::fs::read_to_string(out.join("config.toml")).unwrap();
    for want in [
        "optimizer = \"linbreg-momentum\"",
        "lambda = 0.05",
        "momentum = 0.9",
        "epochs = 1",
        "seed = 3",
    ] {
        assert!(written.contains(want), "{want} missing from\n{written}");
    }
    std::fs::write(&cfg, "learning_rate = 0.1\n").unwrap();
    let e = err(&["train", "--config", cfg.to_str().unwrap()]);
    assert!(e.contains("run.toml") && e.contains("learning_rate"), "{e}");
    // A config file without data_dir still honours $BREGMAN_DATA.
    std::fs::write(&cfg, "epochs = 1\n").unwrap();
    let missing = d.join("no-data-here");
    let out = bin()
        .env("BREGMAN_DATA", &missing)
        .args(["train", "--config", cfg.to_str().unwrap(), "--quiet"])
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && e.contains("no-data-here"), "{e}");
}

#[test]
fn plot_compares_runs() {
    let (a, b) = (tmp("plot-a"), tmp("plot-b"));
    ok(&[
        "train",
        "--epochs",
        "2",
        "--out",
        a.to_str().unwrap(),
        "--quiet",
    ]);
    ok(&[
        "train",
        "--epochs",
        "2",
        "--optimizer",
        "sgd",
        "--out",
        b.to_str().unwrap(),
        "--quiet",
    ]);
    let svg = a.join("cmp.svg");
    ok(&[
        "plot",
        "--metric",
        "n_total",
        "--out",
        svg.to_str().unwrap(),
        a.to_str().unwrap(),
        b.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(
        text.starts_with("<svg") && text.matches("<polyline").count() == 2,
        "{text}"
    );
    assert!(text.contains("bregman-test-") && text.contains("n_total (%)"));
    // Against training time: the x axis is the running sum of `seconds`.
    let by_time = a.join("time.svg");
    ok(&[
        "plot",
        "--metric",
        "test_acc",
        "--against",
        "time",
        "--out",
        by_time.to_str().unwrap(),
        a.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&by_time).unwrap();
    assert!(text.contains("training time (s)") && text.matches("<polyline").count() == 1);
    let e = err(&[
        "plot",
        "--metric",
        "test_acc",
        "--against",
        "cost",
        "--out",
        "x.svg",
        a.to_str().unwrap(),
    ]);
    assert!(e.contains("--against cost: unknown"), "{e}");
    // Two runs with the same directory name are told apart by their parents.
    let twin = tmp("plot-twin").join(a.file_name().unwrap());
    std::fs::create_dir_all(&twin).unwrap();
    std::fs::copy(a.join("metrics.csv"), twin.join("metrics.csv")).unwrap();
    let (pa, pt) = (a.parent().unwrap(), twin.parent().unwrap());
    ok(&[
        "plot",
        "--metric",
        "val_acc",
        "--out",
        svg.to_str().unwrap(),
        a.to_str().unwrap(),
        twin.to_str().unwrap(),
        "--force",
    ]);
    let text = std::fs::read_to_string(&svg).unwrap();
    let name = a.file_name().unwrap().to_string_lossy().into_owned();
    for parent in [pa, pt] {
        let label = format!("{}/{name}", parent.file_name().unwrap().to_string_lossy());
        assert!(text.contains(&label), "{label} missing");
    }
    let e = err(&[
        "plot",
        "--metric",
        "accuracy",
        "--out",
        a.join("none.svg").to_str().unwrap(),
        a.to_str().unwrap(),
    ]);
    assert!(
        e.contains("no column 'accuracy'") && e.contains("val_acc"),
        "{e}"
    );
}

#[test]
fn pruning_baseline_reaches_its_target_density_and_keeps_it() {
    let out = tmp("prune");
    ok(&[
        "train",
        "--optimizer",
        "prune",
        "--epochs",
        "6",
        "--prune-rounds",
        "2",
        "--prune-target",
        "0.1",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    let n: Vec<f64> = metrics(&out).iter().map(|r| num(r, "n_total")).collect();
    // Phases of 2 epochs; the net is pruned at the end of epochs 2 and 4 (before that
    // epoch's evaluation) to √0.1 ≈ 31.6% and then 10% of each layer, and retrained.
    assert!(n[0] > 0.99, "{n:?}");
    assert!(
        (n[1] - 0.316).abs() < 0.01 && (n[2] - 0.316).abs() < 0.01,
        "{n:?}"
    );
    assert!(n[3..].iter().all(|d| (d - 0.1).abs() < 0.01), "{n:?}");
    assert!(num(&metrics(&out)[5], "test_acc") > 0.6);
}

#[test]
fn lasso_baseline_thresholds_small_weights() {
    let out = tmp("lasso");
    ok(&[
        "train",
        "--optimizer",
        "lasso",
        "--lambda",
        "0.01",
        "--epochs",
        "2",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    let rows = metrics(&out);
    let n = num(&rows[1], "n_total");
    assert!(n < 0.9 && n > 0.01, "thresholded density {n}");
    assert!(num(&rows[1], "test_acc") > 0.5);
    let cfg = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(
        cfg.contains("linear_regularizer = \"l1\"") && cfg.contains("sparse_init = 1.0"),
        "{cfg}"
    );
}

#[test]
fn lambda_scheduler_raises_lambda_towards_the_target_density_and_resumes() {
    let (a, b) = (tmp("lsched-a"), tmp("lsched-b"));
    let flags = ["--lambda-target", "0.005", "--seed", "2", "--quiet"];
    let mut args = vec!["train", "--epochs", "9", "--out", a.to_str().unwrap()];
    args.extend(flags);
    ok(&args);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("metrics.json")).unwrap()).unwrap();
    let lambdas: Vec<f64> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["lambda"].as_f64().unwrap())
        .collect();
    // Warm-up of 5 epochs, then +0.01 at most every 2 epochs while the density is above 0.5%.
    assert!(
        lambdas[..6].iter().all(|&l| (l - 0.1).abs() < 1e-6),
        "{lambdas:?}"
    );
    assert!(
        (lambdas[6] - 0.11).abs() < 1e-6 && (lambdas[8] - 0.12).abs() < 1e-6,
        "{lambdas:?}"
    );
    // A resumed run continues the schedule exactly.
    let mut args = vec!["train", "--epochs", "7", "--out", b.to_str().unwrap()];
    args.extend(flags);
    ok(&args);
    ok(&[
        "train",
        "--resume",
        b.to_str().unwrap(),
        "--epochs",
        "9",
        "--quiet",
    ]);
    assert_eq!(without_seconds(&a), without_seconds(&b));
    let e = err(&["train", "--lambda-target", "2"]);
    assert!(e.contains("--lambda-target 2: must be in (0, 1]"), "{e}");
}

/// Replays PyTorch's `ReduceLROnPlateau` (factor 0.5, patience 5, rel. threshold 1%)
/// on a column of metrics.csv: the learning rate each epoch should have started with.
fn expected_lrs(metric: &[f64], lr0: f64, higher_is_better: bool) -> Vec<f64> {
    let (mut best, mut bad, mut lr) = (None::<f64>, 0, lr0);
    let mut out = Vec::new();
    for &m in metric {
        out.push(lr);
        let improved = match best {
            None => true,
            Some(b) if higher_is_better => m > b * 1.01,
            Some(b) => m < b * 0.99,
        };
        if improved {
            best = Some(m);
            bad = 0;
        } else {
            bad += 1;
            if bad > 5 {
                lr *= 0.5;
                bad = 0;
            }
        }
    }
    out
}

#[test]
fn plateau_scheduler_watches_the_chosen_metric() {
    let column = |dir: &Path, name: &str| -> Vec<f64> {
        let text = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let i = header.iter().position(|h| *h == name).unwrap();
        lines
            .map(|l| l.split(',').nth(i).unwrap().parse().unwrap())
            .collect()
    };
    let mut last = Vec::new();
    for (metric, col, higher) in [
        ("val-acc", "val_acc", true),
        ("train-loss", "train_loss", false),
    ] {
        let d = tmp(&format!("plateau-{metric}"));
        ok(&[
            "train",
            "--epochs",
            "30",
            "--lr",
            "0.05",
            "--plateau-metric",
            metric,
            "--out",
            d.to_str().unwrap(),
            "--quiet",
        ]);
        let lrs = column(&d, "lr");
        let expected = expected_lrs(&column(&d, col), 0.05, higher);
        for (a, e) in lrs.iter().zip(&expected) {
            assert!(
                (a - e).abs() < 1e-7,
                "{metric}: lr {lrs:?}, expected {expected:?}"
            );
        }
        last.push(*lrs.last().unwrap());
    }
    // On the sample, validation accuracy stalls by 1% long before the training
    // loss does: the two schedules differ (the MNIST reproduction's point).
    assert!(
        last[0] < last[1],
        "final lr val-acc {} vs train-loss {}",
        last[0],
        last[1]
    );
    let e = err(&["train", "--plateau-metric", "val-loss"]);
    assert!(
        e.contains("--plateau-metric val-loss: unknown (choose from val-acc, train-loss)"),
        "{e}"
    );
}

#[test]
fn paper_defaults_init_gain_follows_r_and_runs_record_bregman_data() {
    let d = tmp("defaults");
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
    let out = d.join("run");
    let o = bin()
        .env("BREGMAN_DATA", &data)
        .args(["train", "--epochs", "1", "--sparse-init", "0.04"])
        .args(["--out", out.to_str().unwrap(), "--quiet"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let written = std::fs::read_to_string(out.join("config.toml")).unwrap();
    // The authors' plateau rule; gain 0.7/√r at r = 0.04; the data directory
    // recorded as the variable, not as this machine's path.
    for want in [
        "plateau_metric = \"train-loss\"",
        "init_gain = 3.5",
        "data_dir = \"$BREGMAN_DATA\"",
    ] {
        assert!(written.contains(want), "{want} missing from\n{written}");
    }
    // Resuming expands the variable; without it the error says what to set.
    let o = bin()
        .env("BREGMAN_DATA", &data)
        .args(["train", "--resume", out.to_str().unwrap(), "--epochs", "2"])
        .arg("--quiet")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(metrics(&out).len(), 2);
    let e = err(&["train", "--resume", out.to_str().unwrap(), "--epochs", "3"]);
    assert!(e.contains("BREGMAN_DATA is not set"), "{e}");
    // --init-gain overrides the rule.
    let out2 = d.join("gain");
    ok(&[
        "train",
        "--epochs",
        "1",
        "--sparse-init",
        "0.04",
        "--init-gain",
        "2",
        "--out",
        out2.to_str().unwrap(),
        "--quiet",
    ]);
    let written = std::fs::read_to_string(out2.join("config.toml")).unwrap();
    assert!(written.contains("init_gain = 2.0"), "{written}");
    // The denoiser's preset is the authors' notebook: std 0.05, drawn once.
    let out3 = d.join("denoise");
    ok(&[
        "train",
        "--experiment",
        "mnist-denoiser",
        "--epochs",
        "1",
        "--out",
        out3.to_str().unwrap(),
        "--quiet",
    ]);
    let written = std::fs::read_to_string(out3.join("config.toml")).unwrap();
    for want in ["noise_std = 0.05", "noise_fixed = true"] {
        assert!(written.contains(want), "{want} missing from\n{written}");
    }
    let e = err(&["train", "--experiment", "mnist-denoiser", "--noise", "once"]);
    assert!(e.contains("--noise once: unknown"), "{e}");
}

#[test]
fn early_stopping_ends_the_run_and_a_resumed_run_stays_stopped() {
    let d = tmp("early");
    // No epoch can beat the first by 70 pp of validation accuracy (the first
    // is above 30% on the sample), so the run stops after 1 + 2 epochs.
    ok(&[
        "train",
        "--epochs",
        "10",
        "--early-stop",
        "2",
        "--early-stop-delta",
        "0.7",
        "--out",
        d.to_str().unwrap(),
        "--quiet",
    ]);
    let rows = metrics(&d);
    assert!(num(&rows[0], "val_acc") > 0.3, "first epoch {:?}", rows[0]);
    assert_eq!(rows.len(), 3);
    ok(&["train", "--resume", d.to_str().unwrap(), "--quiet"]);
    assert_eq!(
        metrics(&d).len(),
        3,
        "a stopped run trained on when resumed"
    );
    let e = err(&["train", "--early-stop", "0"]);
    assert!(e.contains("--early-stop 0: must be ≥ 1"), "{e}");
}

/// `eval` against an evaluation that shares nothing with the trainer but the
/// checkpoint's bytes: the shipped test images read and normalised here, the
/// MLP's forward pass written out in `f64` loops, accuracy and mean
/// cross-entropy counted here.
#[test]
fn eval_agrees_with_an_independent_forward_pass() {
    let run = tmp("eval-independent");
    ok(&[
        "train",
        "--epochs",
        "2",
        "--out",
        run.to_str().unwrap(),
        "--quiet",
    ]);
    let printed = ok(&["eval", "--checkpoint", run.to_str().unwrap()]);
    let field = |name: &str| -> f64 {
        let line = printed.lines().find(|l| l.contains(name)).unwrap();
        let v = line
            .split_whitespace()
            .last()
            .unwrap()
            .trim_end_matches('%');
        v.parse().unwrap()
    };
    let (acc, loss) = (field("test accuracy"), field("test loss"));

    let ck = bregman::train::checkpoint::load(&run.join("checkpoint.safetensors")).unwrap();
    let tensor = |n: &str| ck.tensors[&format!("model.layers.{n}")].data().to_vec();
    let layers: Vec<(Vec<f32>, Vec<f32>)> = ["0", "2", "4"]
        .iter()
        .map(|l| (tensor(&format!("{l}.weight")), tensor(&format!("{l}.bias"))))
        .collect();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist");
    let images = bregman::data::idx::read_idx(&data.join("t10k-images-idx3-ubyte.gz")).unwrap();
    let labels = bregman::data::idx::read_idx(&data.join("t10k-labels-idx1-ubyte.gz")).unwrap();
    let n = labels.data.len();
    let (mut correct, mut ce) = (0usize, 0.0f64);
    for k in 0..n {
        let mut h: Vec<f64> = images.data[k * 784..(k + 1) * 784]
            .iter()
            .map(|&p| (p as f64 / 255.0 - 0.1307) / 0.3081)
            .collect();
        for (li, (w, b)) in layers.iter().enumerate() {
            let out = b.len();
            let inp = h.len();
            let z: Vec<f64> = (0..out)
                .map(|o| {
                    let dot: f64 = (0..inp).map(|i| w[o * inp + i] as f64 * h[i]).sum();
                    dot + b[o] as f64
                })
                .collect();
            h = if li < 2 {
                z.into_iter().map(|v| v.max(0.0)).collect()
            } else {
                z
            };
        }
        let label = labels.data[k] as usize;
        let max = h.iter().cloned().fold(f64::MIN, f64::max);
        let lse = max + h.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
        ce += lse - h[label];
        let pred = (0..10).max_by(|&a, &b| h[a].total_cmp(&h[b])).unwrap();
        correct += usize::from(pred == label);
    }
    let ind_acc = 100.0 * correct as f64 / n as f64;
    let ind_loss = ce / n as f64;
    assert!(
        (acc - ind_acc).abs() <= 0.1,
        "eval {acc}% vs independent {ind_acc}%"
    );
    assert!(
        (loss - ind_loss).abs() <= 1e-3,
        "eval loss {loss} vs independent {ind_loss}"
    );
}
