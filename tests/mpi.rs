//! Data-parallel training under `mpirun` (build with `--features mpi`; run
//! with `cargo test --features mpi --test mpi`). These tests need OpenMPI's
//! `mpirun` on the PATH and fail, never skip, without it.
#![cfg(feature = "mpi")]

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{metrics, num, ok, tmp, wait_for_checkpoint};

/// The command `mpirun -np N bregman ARGS…`, one rayon thread per rank.
fn mpirun_command(np: usize, args: &[&str]) -> Command {
    let mut c = Command::new("mpirun");
    c.args(["--oversubscribe", "-np", &np.to_string()])
        .arg(env!("CARGO_BIN_EXE_bregman"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("BREGMAN_DATA")
        .env("RAYON_NUM_THREADS", "1")
        // Containers and CI run as root; OpenMPI refuses that unless told.
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
    c
}

const NO_MPIRUN: &str =
    "mpirun must be installed (OpenMPI: apt-get install openmpi-bin libopenmpi-dev)";

/// Runs `mpirun -np N bregman ARGS…` to the end.
fn mpirun(np: usize, args: &[&str]) -> Output {
    mpirun_command(np, args).output().expect(NO_MPIRUN)
}

fn mpi_ok(np: usize, args: &[&str]) -> String {
    let out = mpirun(np, args);
    assert!(
        out.status.success(),
        "mpirun -np {np} bregman {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn train_args(out: &Path, epochs: &str) -> Vec<String> {
    [
        "train",
        "--epochs",
        epochs,
        "--batch-size",
        "256",
        "--quiet",
        "--out",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([out.to_str().unwrap().to_string()])
    .collect()
}

fn fingerprint(stdout: &str) -> String {
    let line = stdout
        .lines()
        .find(|l| l.contains("parameter fingerprint"))
        .unwrap_or_else(|| panic!("no fingerprint in\n{stdout}"));
    line.split_whitespace().last().unwrap().to_string()
}

/// Every column of every epoch agrees to relative `tol` (accuracies exactly
/// to the 6 printed digits may move by one image; allow 1e-3 absolute there).
fn assert_close(a: &Path, b: &Path, tol: f64) {
    let (ra, rb) = (metrics(a), metrics(b));
    assert_eq!(ra.len(), rb.len());
    for (x, y) in ra.iter().zip(&rb) {
        for col in ["train_loss", "val_loss", "test_loss"] {
            let (u, v) = (num(x, col), num(y, col));
            assert!(
                (u - v).abs() <= tol * u.abs(),
                "{col}: {u} vs {v} ({} vs {})",
                a.display(),
                b.display()
            );
        }
        for col in ["train_acc", "val_acc", "test_acc", "n_total"] {
            assert!(
                (num(x, col) - num(y, col)).abs() <= 1e-3,
                "{col}: {x:?} vs {y:?}"
            );
        }
    }
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn two_and_three_ranks_train_like_one_and_the_same_ranks_give_the_same_bits() {
    let d = tmp("mpi-equiv");
    let (one, two, two_again, three) = (d.join("1"), d.join("2"), d.join("2b"), d.join("3"));
    // 2 epochs of 19 steps (4750 images in global batches of 256).
    ok(&strs(&train_args(&one, "2")));
    let f2 = fingerprint(&mpi_ok(2, &strs(&train_args(&two, "2"))));
    let f2b = fingerprint(&mpi_ok(2, &strs(&train_args(&two_again, "2"))));
    assert_eq!(
        f2, f2b,
        "two runs on 2 ranks ended with different parameters"
    );
    assert_eq!(
        std::fs::read_to_string(two.join("metrics.json"))
            .unwrap()
            .lines()
            .filter(|l| !l.contains("seconds"))
            .collect::<Vec<_>>(),
        std::fs::read_to_string(two_again.join("metrics.json"))
            .unwrap()
            .lines()
            .filter(|l| !l.contains("seconds"))
            .collect::<Vec<_>>()
    );
    // Uneven shares (256 = 85 + 85 + 86; the last batch of 142 = 47 + 47 + 48).
    mpi_ok(3, &strs(&train_args(&three, "2")));
    // The summation order differs, nothing else.
    assert_close(&one, &two, 1e-5);
    assert_close(&one, &three, 1e-5);
}

#[test]
fn a_run_resumes_under_another_number_of_ranks() {
    let d = tmp("mpi-resume");
    let (straight, split) = (d.join("straight"), d.join("split"));
    ok(&strs(&train_args(&straight, "3")));
    mpi_ok(2, &strs(&train_args(&split, "1")));
    let s = split.to_str().unwrap();
    mpi_ok(3, &["train", "--resume", s, "--epochs", "2", "--quiet"]);
    ok(&["train", "--resume", s, "--epochs", "3", "--quiet"]);
    assert_close(&straight, &split, 1e-5);
}

#[test]
fn a_batch_smaller_than_the_ranks_is_refused() {
    let d = tmp("mpi-small-batch");
    let out = mpirun(
        3,
        &[
            "train",
            "--epochs",
            "1",
            "--batch-size",
            "2",
            "--out",
            d.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("--batch-size 2: the global batch is split over 3 ranks"),
        "{stderr}"
    );
}

/// Starts a long two-rank run into `run` (with `env` set), waits for its
/// first checkpoint and returns the job and its ranks' PIDs (mpirun's children).
fn start_and_find_ranks(run: &Path, env: &[(&str, &str)]) -> (std::process::Child, Vec<String>) {
    let mut cmd = mpirun_command(2, &strs(&train_args(run, "500")));
    cmd.envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let job = cmd.spawn().expect(NO_MPIRUN);
    wait_for_checkpoint(run);
    let children = Command::new("pgrep")
        .args(["-P", &job.id().to_string()])
        .output()
        .unwrap();
    let pids: Vec<String> = String::from_utf8_lossy(&children.stdout)
        .split_whitespace()
        .map(String::from)
        .collect();
    assert!(pids.len() >= 2, "ranks of mpirun: {pids:?}");
    (job, pids)
}

/// A rank killed mid-run ends the whole job (mpirun reports it and stops the
/// other ranks: no hang), and the last checkpoint stays whole and resumable.
#[test]
fn a_rank_that_dies_ends_the_job_and_leaves_the_checkpoint_intact() {
    let d = tmp("mpi-kill");
    let run = d.join("run");
    let (mut job, pids) = start_and_find_ranks(&run, &[]);
    Command::new("kill")
        .args(["-9", &pids[1]])
        .status()
        .unwrap();
    let killed = Instant::now();
    let status = loop {
        if let Some(s) = job.try_wait().unwrap() {
            break s;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "the job hung for 60 s after a rank died"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut job.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains("signal 9") || stderr.contains("Killed") || stderr.contains("exited"),
        "mpirun said: {stderr}"
    );
    let ck = bregman::train::checkpoint::load(&run.join("checkpoint.safetensors")).unwrap();
    let epochs = ck.state.epoch;
    assert!(epochs >= 1);
    let r = run.to_str().unwrap();
    ok(&[
        "train",
        "--resume",
        r,
        "--epochs",
        &(epochs + 1).to_string(),
        "--quiet",
    ]);
    assert_eq!(metrics(&run).len(), epochs + 1);
}

/// A rank that hangs (stopped with SIGSTOP: it neither answers nor dies)
/// ends the job once the others have waited `BREGMAN_MPI_TIMEOUT` seconds in
/// a collective, with a message naming the wait; the checkpoint stays whole.
#[test]
fn a_rank_that_hangs_ends_the_job_after_the_collective_timeout() {
    let d = tmp("mpi-hang");
    let run = d.join("run");
    let (mut job, pids) = start_and_find_ranks(&run, &[("BREGMAN_MPI_TIMEOUT", "5")]);
    let signal = |sig: &str| Command::new("kill").args([sig, &pids[1]]).status();
    signal("-STOP").unwrap();
    let stopped = Instant::now();
    let status = loop {
        if let Some(s) = job.try_wait().unwrap() {
            break Some(s);
        }
        if stopped.elapsed() > Duration::from_secs(90) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // Never leave a stopped process behind, whatever happened.
    let _ = signal("-KILL");
    let Some(status) = status else {
        let _ = job.kill();
        panic!("the job still waited 90 s after a rank hung");
    };
    assert!(!status.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut job.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains("rank 0 of 2 has waited") && stderr.contains("BREGMAN_MPI_TIMEOUT=5"),
        "mpirun said: {stderr}"
    );
    let ck = bregman::train::checkpoint::load(&run.join("checkpoint.safetensors")).unwrap();
    assert!(ck.state.epoch >= 1);
}

/// A timeout that is not a positive whole number of seconds is refused.
#[test]
fn a_bad_collective_timeout_is_an_error() {
    let d = tmp("mpi-bad-timeout");
    let out = mpirun_command(2, &strs(&train_args(&d.join("run"), "1")))
        .env("BREGMAN_MPI_TIMEOUT", "0")
        .output()
        .expect(NO_MPIRUN);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("BREGMAN_MPI_TIMEOUT=0: expected a whole number of seconds > 0"),
        "{stderr}"
    );
}
