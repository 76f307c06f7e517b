//! One training epoch through the trainer's own path: shuffle and gather the
//! batches, forward, backward and the LinBreg step for every batch, then the
//! validation and the test evaluation (`Run::train_epoch` + `evaluate`, what
//! `bregman train` does per epoch, less the per-epoch files).
//!
//! `cargo bench --bench epoch` (`-- mlp` or `-- convnet` for one model).
//! Data: `$BREGMAN_DATA` when it holds the set (the full MNIST / Fashion-MNIST,
//! e.g. `BREGMAN_DATA=../shared/data`), else the MNIST sample shipped in
//! `data/` (for the ConvNet too, copied as its set: same image size and classes). The benchmark
//! id names which (`full` or `sample`). Compare with
//! `../shared/bench/pytorch/job.py --model mlp|convnet --opt linbreg`.
//! A full Fashion-MNIST ConvNet epoch takes about a minute, and criterion
//! takes at least 10 samples: that bench runs for about ten minutes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bregman::train::{evaluate, Run, TrainConfig};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use indicatif::ProgressBar;

/// The data directory for `set` and whether it is the full set or the sample.
/// For a set other than MNIST without full data, a folder in `scratch` whose
/// `set` entry is a copy of the shipped MNIST sample (four files, ~1 MB).
fn data_dir(set: &str, scratch: &Path) -> (PathBuf, &'static str) {
    if let Some(dir) = std::env::var_os("BREGMAN_DATA").map(PathBuf::from) {
        let images = dir.join(set).join("train-images-idx3-ubyte.gz");
        if images.exists() || images.with_extension("").exists() {
            return (dir, "full");
        }
    }
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
    if set == "mnist" {
        return (sample, "sample");
    }
    let dir = scratch.join("data");
    std::fs::create_dir_all(&dir).expect("scratch data dir");
    let copy = dir.join(set);
    std::fs::create_dir_all(&copy).expect("scratch data dir");
    for entry in std::fs::read_dir(sample.join("mnist")).expect("the shipped sample") {
        let file = entry.expect("a sample file").path();
        if let Some(name) = file.file_name() {
            std::fs::copy(&file, copy.join(name)).expect("copy the sample");
        }
    }
    (dir, "sample")
}

fn bench_epoch(c: &mut Criterion, name: &str, experiment: &str, set: &str) {
    let scratch = std::env::temp_dir().join(format!("bregman-epoch-bench-{}", std::process::id()));
    let (data, source) = data_dir(set, &scratch);
    let mut cfg = TrainConfig::preset(experiment, Some("linbreg")).expect("preset");
    cfg.data_dir = data;
    cfg.out = scratch.join("run");
    cfg.epochs = 1;
    let mut run = Run::new(cfg).expect("load the data and build the model");
    let images = run.train.len() + run.val.len() + run.test.len();
    let bar = ProgressBar::hidden();
    let mut group = c.benchmark_group("epoch");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(1));
    group.throughput(Throughput::Elements(images as u64));
    group.bench_function(format!("{name}_linbreg_{source}"), |b| {
        b.iter(|| {
            run.train_epoch(&bar).expect("train epoch");
            let val = evaluate(&mut run.model, &run.cfg, &run.val).expect("validation");
            let test = evaluate(&mut run.model, &run.cfg, &run.test).expect("test");
            (val.loss, test.loss)
        })
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&scratch);
}

fn epoch(c: &mut Criterion) {
    bregman::tune_allocator();
    bench_epoch(c, "mlp", "mnist-mlp", "mnist");
    bench_epoch(c, "convnet", "fashion-convnet", "fashion-mnist");
}

criterion_group!(benches, epoch);
criterion_main!(benches);
