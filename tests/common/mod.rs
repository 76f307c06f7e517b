//! Helpers shared by the end-to-end tests: the `bregman` binary run on the
//! shipped sample, its outputs read back.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bregman"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c.env_remove("BREGMAN_DATA");
    c
}

/// Waits (at most 300 s) until the run in `dir` has written its first
/// checkpoint: an epoch's metrics are written before its checkpoint, so a
/// test that kills a run must wait for this, not for the metrics.
pub fn wait_for_checkpoint(dir: &Path) {
    let start = std::time::Instant::now();
    while !dir.join("checkpoint.safetensors").exists() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(300),
            "no checkpoint in {} after 300 s",
            dir.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

pub fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("bregman-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

pub fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run bregman")
}

pub fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "bregman {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The error line of a failing run; also checks it is a clean error, not a panic.
pub fn err(args: &[&str]) -> String {
    let out = run(args);
    assert!(!out.status.success(), "bregman {args:?} should fail");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stderr.contains("panicked"),
        "bregman {args:?} panicked:\n{stderr}"
    );
    stderr
}

/// Rows of metrics.csv as maps column → value.
pub fn metrics(dir: &Path) -> Vec<std::collections::HashMap<String, String>> {
    let text = std::fs::read_to_string(dir.join("metrics.csv")).expect("metrics.csv");
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(String::from).collect();
    lines
        .map(|l| {
            header
                .iter()
                .cloned()
                .zip(l.split(',').map(String::from))
                .collect()
        })
        .collect()
}

pub fn num(row: &std::collections::HashMap<String, String>, col: &str) -> f64 {
    row[col]
        .parse()
        .unwrap_or_else(|_| panic!("{col} = {:?}", row[col]))
}

/// metrics.csv without the wall-time column.
pub fn without_seconds(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("metrics.csv"))
        .unwrap()
        .lines()
        .map(|l| l.rsplit_once(',').unwrap().0.to_string())
        .collect()
}
