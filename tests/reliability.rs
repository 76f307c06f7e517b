//! What the CLI guarantees against lost work and nonsense input
//! (docs/RELIABILITY.md): runs are never replaced unasked, a run directory
//! has one writer, a resumed run continues exactly what its checkpoint says
//! or refuses, and inputs no run can be measured on are errors.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bregman::data::idx::encode_idx;
use bregman::train::checkpoint;
use common::{bin, err, metrics, ok, tmp, wait_for_checkpoint, without_seconds};

fn train_1(out: &Path, extra: &[&str]) -> String {
    let mut args = vec!["train", "--epochs", "1", "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.push("--quiet");
    ok(&args)
}

#[test]
fn train_never_replaces_a_run_unasked_and_overwrite_leaves_nothing_of_the_old_one() {
    let d = tmp("overwrite");
    let out = d.join("run");
    ok(&[
        "train",
        "--epochs",
        "3",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    let before = std::fs::read(out.join("checkpoint.safetensors")).unwrap();
    let e = err(&["train", "--epochs", "1", "--out", out.to_str().unwrap()]);
    assert!(
        e.contains("holds a run already") && e.contains("--overwrite"),
        "{e}"
    );
    assert_eq!(
        std::fs::read(out.join("checkpoint.safetensors")).unwrap(),
        before,
        "the refused run touched the checkpoint"
    );
    // --overwrite: the new run alone (1 epoch, every file rewritten).
    std::fs::write(out.join("accuracy.svg"), "stale").unwrap();
    train_1(&out, &["--overwrite", "--optimizer", "sgd"]);
    assert_eq!(metrics(&out).len(), 1);
    let json = std::fs::read_to_string(out.join("metrics.json")).unwrap();
    assert_eq!(
        serde_json::from_str::<Vec<serde_json::Value>>(&json)
            .unwrap()
            .len(),
        1
    );
    assert_ne!(
        std::fs::read_to_string(out.join("accuracy.svg")).unwrap(),
        "stale"
    );
    let cfg = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(cfg.contains("optimizer = \"sgd\""), "{cfg}");
    // No temporary file is left behind.
    let leftovers: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Waits until the run in `dir` has written `epochs` rows of metrics.
fn wait_for_epochs(dir: &Path, epochs: usize) {
    let start = Instant::now();
    while std::fs::read_to_string(dir.join("metrics.csv"))
        .map_or(0, |t| t.lines().count().saturating_sub(1))
        < epochs
    {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "no epoch in 300 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_run_directory_has_one_writer_and_a_killed_writer_leaves_a_resumable_run() {
    let d = tmp("lock");
    let out = d.join("run");
    let mut first = bin()
        .args(["train", "--epochs", "400", "--out", out.to_str().unwrap()])
        .arg("--quiet")
        .env("RAYON_NUM_THREADS", "1")
        .spawn()
        .unwrap();
    wait_for_epochs(&out, 1);
    // The metrics of an epoch are written before its checkpoint: wait for
    // that too, so that the kill below always finds one whole checkpoint
    // (on a loaded machine the epoch's fsynced files can take longer than
    // the two refused commands; the kill was then earlier than the first
    // checkpoint, and this test failed on a correct run).
    wait_for_checkpoint(&out);
    let pid = first.id().to_string();
    // A second process gets a clear error naming the first, whatever it asks.
    for args in [
        vec!["train", "--resume", out.to_str().unwrap()],
        vec![
            "train",
            "--epochs",
            "1",
            "--overwrite",
            "--out",
            out.to_str().unwrap(),
        ],
    ] {
        let e = err(&args);
        assert!(
            e.contains("is in use") && e.contains(&format!("process {pid}")),
            "{e}"
        );
    }
    // SIGKILL at some moment of an epoch: the checkpoint is whole, the
    // stale lock is detected and taken over, and the run resumes.
    first.kill().unwrap();
    first.wait().unwrap();
    let ck = checkpoint::load(&out.join("checkpoint.safetensors")).unwrap();
    let done = ck.state.epoch;
    assert!(done >= 1);
    let o = bin()
        .args(["train", "--resume", out.to_str().unwrap()])
        .args(["--epochs", &(done + 1).to_string()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        stdout.contains(&format!("locked by process {pid}")) && stdout.contains("taking it over"),
        "{stdout}"
    );
    assert_eq!(metrics(&out).len(), done + 1);
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
}

/// A pruning run killed after its first prune round resumes with its masks
/// rebuilt from the zero weights: the pruned weights stay pruned, and the
/// run ends exactly as the uninterrupted one.
#[test]
fn a_killed_pruning_run_resumes_with_its_masks() {
    let d = tmp("prune-kill");
    let args = [
        "train",
        "--optimizer",
        "prune",
        "--prune-rounds",
        "2",
        "--prune-target",
        "0.1",
        "--epochs",
        "6",
        "--quiet",
    ];
    let (a, b) = (d.join("straight"), d.join("killed"));
    ok(&[&args[..], &["--out", a.to_str().unwrap()]].concat());
    let mut child = bin()
        .args(args)
        .args(["--out", b.to_str().unwrap()])
        .spawn()
        .unwrap();
    wait_for_epochs(&b, 3); // rounds end epochs 2 and 4
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run ended before it could be killed"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    ok(&["train", "--resume", b.to_str().unwrap(), "--quiet"]);
    assert_eq!(without_seconds(&a), without_seconds(&b));
}

#[test]
fn resume_takes_only_what_may_change_and_leaves_a_finished_run_alone() {
    let d = tmp("resume-flags");
    let out = d.join("run");
    train_1(&out, &[]);
    let o = out.to_str().unwrap();
    for (flag, value) in [
        ("--lr", "5"),
        ("--batch-size", "7"),
        ("--seed", "99"),
        ("--out", "elsewhere"),
        ("--lambda", "0.2"),
        ("--sparse-backprop", "4"),
        ("--early-stop", "3"),
    ] {
        let e = err(&["train", "--resume", o, flag, value]);
        assert!(
            e.contains("cannot be used with") && e.contains(flag),
            "{flag}: {e}"
        );
    }
    let config = std::fs::read(out.join("config.toml")).unwrap();
    let e = err(&["train", "--resume", o, "--epochs", "0"]);
    assert!(
        e.contains("--epochs 0: the run") && e.contains("already has 1 epochs"),
        "{e}"
    );
    // Nothing to train: exit 0, nothing rewritten.
    let said = ok(&["train", "--resume", o]);
    assert!(said.contains("nothing to train"), "{said}");
    assert_eq!(std::fs::read(out.join("config.toml")).unwrap(), config);
    // Extending is allowed and recorded.
    ok(&["train", "--resume", o, "--epochs", "2", "--quiet"]);
    assert_eq!(metrics(&out).len(), 2);
    let cfg = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(cfg.contains("epochs = 2"), "{cfg}");
}

/// Rewrites the checkpoint in `dir` with `edit` applied to its tensors.
fn edit_checkpoint(dir: &Path, edit: impl FnOnce(&mut HashMap<String, bregman::tensor::Tensor>)) {
    let path = dir.join("checkpoint.safetensors");
    let mut ck = checkpoint::load(&path).unwrap();
    edit(&mut ck.tensors);
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = ck
        .tensors
        .iter()
        .map(|(n, t)| {
            let bytes = t.data().iter().flat_map(|x| x.to_le_bytes()).collect();
            (n.clone(), t.shape().to_vec(), bytes)
        })
        .collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let meta = HashMap::from([
        ("format".to_string(), checkpoint::FORMAT.to_string()),
        ("config".to_string(), ck.config.to_toml()),
        (
            "state".to_string(),
            serde_json::to_string(&ck.state).unwrap(),
        ),
    ]);
    let bytes = checkpoint::to_safetensors(&tensors, Some(meta), &path).unwrap();
    std::fs::write(&path, bytes).unwrap();
}

fn copy_run(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn a_checkpoint_is_checked_against_itself_and_its_directory_on_resume() {
    let d = tmp("resume-checks");
    let base = d.join("base");
    train_1(&base, &["--optimizer", "adabreg"]);
    let resume =
        |dir: &PathBuf| err(&["train", "--resume", dir.to_str().unwrap(), "--epochs", "2"]);

    // A missing optimizer state tensor.
    let run = d.join("missing-state");
    copy_run(&base, &run);
    edit_checkpoint(&run, |t| {
        t.remove("optim.layers.0.weight.m2").unwrap();
    });
    let e = resume(&run);
    assert!(
        e.contains("'optim.layers.0.weight.m2' is missing") && e.contains("adabreg"),
        "{e}"
    );
    // A misshaped one.
    let run = d.join("short-state");
    copy_run(&base, &run);
    edit_checkpoint(&run, |t| {
        let v = t.get_mut("optim.layers.2.weight.v").unwrap();
        *v = bregman::tensor::Tensor::from_vec(&[3], vec![0.0; 3]).unwrap();
    });
    let e = resume(&run);
    assert!(e.contains("'optim.layers.2.weight.v' has 3 values"), "{e}");
    // A config.toml edited by hand.
    let run = d.join("edited");
    copy_run(&base, &run);
    let cfg = std::fs::read_to_string(run.join("config.toml")).unwrap();
    std::fs::write(
        run.join("config.toml"),
        cfg.replace("lambda = 0.1", "lambda = 0.3"),
    )
    .unwrap();
    let e = resume(&run);
    assert!(
        e.contains("config.toml") && e.contains("lambda = 0.3 in the file, 0.1 in the checkpoint"),
        "{e}"
    );
    std::fs::write(run.join("config.toml"), cfg).unwrap();
    ok(&[
        "train",
        "--resume",
        run.to_str().unwrap(),
        "--epochs",
        "2",
        "--quiet",
    ]);
    // export validates as eval does.
    let run = d.join("bad-model");
    copy_run(&base, &run);
    edit_checkpoint(&run, |t| {
        t.remove("model.layers.4.bias").unwrap();
    });
    let e = err(&[
        "export",
        "--checkpoint",
        run.to_str().unwrap(),
        "--out",
        d.join("w.safetensors").to_str().unwrap(),
    ]);
    assert!(e.contains("'model.layers.4.bias' is missing"), "{e}");
    assert!(!d.join("w.safetensors").exists());
}

#[test]
fn metrics_ahead_of_the_checkpoint_are_repaired_on_resume_and_reported() {
    let d = tmp("repair");
    let run = d.join("run");
    train_1(&run, &[]);
    let one = std::fs::read(run.join("checkpoint.safetensors")).unwrap();
    ok(&[
        "train",
        "--resume",
        run.to_str().unwrap(),
        "--epochs",
        "2",
        "--quiet",
    ]);
    // As if killed after writing epoch 2's metrics, before its checkpoint.
    std::fs::write(run.join("checkpoint.safetensors"), one).unwrap();
    let said = ok(&["train", "--resume", run.to_str().unwrap(), "--epochs", "1"]);
    assert!(
        said.contains("repaired")
            && said.contains("held 2 epochs")
            && said.contains("has 1 epochs"),
        "{said}"
    );
    assert_eq!(metrics(&run).len(), 1);
}

#[test]
fn export_and_plot_never_overwrite_unasked_nor_their_inputs() {
    let d = tmp("outputs");
    let run = d.join("run");
    train_1(&run, &[]);
    let r = run.to_str().unwrap();
    let ckpt = std::fs::read(run.join("checkpoint.safetensors")).unwrap();
    for target in ["checkpoint.safetensors", "metrics.csv"] {
        let t = run.join(target);
        for force in [false, true] {
            let mut args = vec!["export", "--checkpoint", r, "--out", t.to_str().unwrap()];
            if force {
                args.push("--force");
            }
            let e = err(&args);
            assert!(e.contains("is this command's input"), "{e}");
            let mut args = vec![
                "plot",
                "--metric",
                "val_acc",
                "--out",
                t.to_str().unwrap(),
                r,
            ];
            if force {
                args.push("--force");
            }
            let e = err(&args);
            assert!(e.contains("is this command's input"), "{e}");
        }
    }
    assert_eq!(
        std::fs::read(run.join("checkpoint.safetensors")).unwrap(),
        ckpt
    );
    let other = d.join("other.bin");
    std::fs::write(&other, "keep me").unwrap();
    let o = other.to_str().unwrap();
    let e = err(&["export", "--checkpoint", r, "--out", o]);
    assert!(e.contains("exists (pass --force"), "{e}");
    let e = err(&["plot", "--metric", "val_acc", "--out", o, r]);
    assert!(e.contains("exists (pass --force"), "{e}");
    assert_eq!(std::fs::read_to_string(&other).unwrap(), "keep me");
    ok(&["export", "--checkpoint", r, "--out", o, "--force"]);
    assert_ne!(std::fs::read(&other).unwrap(), b"keep me");
}

/// An MNIST-layout directory with `train` and `test` images of 28×28.
fn mnist_with(dir: &Path, train: usize, test: usize) -> PathBuf {
    let m = dir.join("mnist");
    std::fs::create_dir_all(&m).unwrap();
    for (prefix, n) in [("train", train), ("t10k", test)] {
        let pixels: Vec<u8> = (0..n * 784).map(|i| (i * 7 % 256) as u8).collect();
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        let images = encode_idx(&[n, 28, 28], &pixels);
        std::fs::write(m.join(format!("{prefix}-images-idx3-ubyte")), images).unwrap();
        let labels = encode_idx(&[n], &labels);
        std::fs::write(m.join(format!("{prefix}-labels-idx1-ubyte")), labels).unwrap();
    }
    dir.to_path_buf()
}

#[test]
fn splits_no_run_can_be_measured_on_are_refused_before_anything_is_written() {
    let d = tmp("splits");
    let cases: [(usize, usize, &[&str], &str); 4] = [
        (0, 10, &[], "no training images"),
        (40, 0, &[], "no test images"),
        (1, 10, &[], "leaves no validation images"),
        (
            200,
            10,
            &["--plateau-metric", "val-acc"],
            "needs at least 100",
        ),
    ];
    for (k, (train, test, extra, want)) in cases.into_iter().enumerate() {
        let data = mnist_with(&d.join(format!("data{k}")), train, test);
        let out = d.join(format!("out{k}"));
        let mut args = vec![
            "train",
            "--epochs",
            "1",
            "--data-dir",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let e = err(&args);
        assert!(e.contains(want), "{train}/{test} {extra:?}: {e}");
        assert!(!out.exists(), "{} was created", out.display());
    }
    // 200 images with the training-loss plateau rule train fine.
    let data = mnist_with(&d.join("ok"), 200, 10);
    ok(&[
        "train",
        "--epochs",
        "1",
        "--data-dir",
        data.to_str().unwrap(),
        "--out",
        d.join("ok-out").to_str().unwrap(),
        "--quiet",
    ]);
}

#[test]
fn divergence_is_caught_from_the_loss_itself_and_prune_schedules_must_fit() {
    let d = tmp("diverge");
    // Adam at τ = 1e6 gives finite but absurd losses (10²¹ and more).
    let e = err(&[
        "train",
        "--optimizer",
        "adam",
        "--lr",
        "1e6",
        "--epochs",
        "2",
        "--out",
        d.join("adam").to_str().unwrap(),
    ]);
    assert!(
        e.contains("diverged") && e.contains("1000× the") && e.contains("epoch 1, batch"),
        "{e}"
    );
    let e = err(&["train", "--optimizer", "prune", "--epochs", "3"]);
    assert!(
        e.contains("--epochs 3") && e.contains("needs --epochs ≥ 5"),
        "{e}"
    );
    let run = d.join("prune");
    ok(&[
        "train",
        "--optimizer",
        "prune",
        "--epochs",
        "2",
        "--prune-rounds",
        "1",
        "--out",
        run.to_str().unwrap(),
        "--quiet",
    ]);
    let e = err(&["train", "--resume", run.to_str().unwrap(), "--epochs", "4"]);
    assert!(e.contains("schedule is fixed by the 2 epochs"), "{e}");
}
