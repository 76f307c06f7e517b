//! The `bregman` command-line tool: `train`, `eval`, `export`, `inspect`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[cfg(feature = "mpi")]
mod mpi_comm;

use bregman::layers::{Kernels, Module};
use bregman::train::comm::{Comm, Single};
use bregman::train::run_dir::{check_output, RunLock};
use bregman::train::{
    checkpoint, evaluate, export, inference_rate, metrics, Run, TrainConfig, TrainError,
};
use clap::{Args, Parser, Subcommand};

/// Sparse neural networks trained with Bregman iterations, on the CPU.
#[derive(Parser)]
#[command(name = "bregman", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model (default: MNIST MLP with LinBreg on the shipped sample).
    Train(Box<TrainArgs>),
    /// Evaluate a checkpoint on its test set.
    Eval {
        /// A `checkpoint.safetensors` (or the run directory holding it).
        #[arg(long)]
        checkpoint: PathBuf,
        /// Data directory (default: the one the run used).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Dense products everywhere (by default sparse weights run sparse kernels).
        #[arg(long)]
        dense_kernels: bool,
        /// Also time inference over the test set (images/s, best of 3 passes),
        /// at the evaluation batch size and with single images.
        #[arg(long)]
        timing: bool,
    },
    /// Export the weights of a checkpoint as safetensors with PyTorch names.
    Export {
        /// A `checkpoint.safetensors` (or the run directory holding it).
        #[arg(long)]
        checkpoint: PathBuf,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// Write each weight as CSR tensors (`<name>.crow_indices`,
        /// `<name>.col_indices`, `<name>.values`) instead of a dense one.
        #[arg(long)]
        sparse: bool,
        /// Overwrite `--out` if it exists (never the checkpoint read).
        #[arg(long)]
        force: bool,
    },
    /// Plot one metric of several runs over epochs as an SVG (e.g. to compare optimizers).
    Plot {
        /// A column of metrics.csv (val_acc, test_acc, n_total, train_loss, ...).
        #[arg(long)]
        metric: String,
        /// Output SVG file.
        #[arg(long)]
        out: PathBuf,
        /// Title (default: the metric).
        #[arg(long)]
        title: Option<String>,
        /// The x axis: epoch (default) | time (cumulative wall time in
        /// seconds, the `seconds` column summed: e.g. accuracy against
        /// training time).
        #[arg(long, default_value = "epoch")]
        against: String,
        /// Run directories (each with a metrics.csv); the legend uses their names.
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// Overwrite `--out` if it exists (never a run's metrics.csv).
        #[arg(long)]
        force: bool,
    },
    /// Print per-layer non-zeros, active neurons and non-zero kernels of a checkpoint.
    Inspect {
        /// A `checkpoint.safetensors` (or the run directory holding it).
        checkpoint: PathBuf,
    },
}

/// The `train` flags that `--resume` refuses: a resumed run continues with
/// the settings its checkpoint holds, so any of these would be ignored.
const RESUME_CONFLICTS: &[&str] = &[
    "experiment",
    "optimizer",
    "config",
    "lr",
    "lambda",
    "delta",
    "momentum",
    "sparse_init",
    "init_gain",
    "batch_size",
    "seed",
    "out",
    "overwrite",
    "prune_target",
    "prune_rounds",
    "lasso_threshold",
    "lambda_target",
    "plateau_metric",
    "noise_std",
    "noise",
    "early_stop",
    "early_stop_delta",
    "sparse_backprop",
    "sparse_backprop_catch_up",
];

#[derive(Args)]
struct TrainArgs {
    /// mnist-mlp | fashion-convnet | fashion-convnet-group | cifar-resnet18 | mnist-denoiser
    #[arg(long)]
    experiment: Option<String>,
    /// sgd | adam | proxgd | linbreg | linbreg-momentum | adabreg | lasso | prune
    #[arg(long)]
    optimizer: Option<String>,
    /// Learning rate τ.
    #[arg(long, allow_negative_numbers = true)]
    lr: Option<f32>,
    /// Regularization strength λ.
    #[arg(long, allow_negative_numbers = true)]
    lambda: Option<f32>,
    /// Elastic-net scale δ.
    #[arg(long, allow_negative_numbers = true)]
    delta: Option<f32>,
    /// Momentum β.
    #[arg(long, allow_negative_numbers = true)]
    momentum: Option<f32>,
    /// Initial density r of non-zero weights, in (0, 1]; the initialisation
    /// gain scales as 1/√r with it (SPEC §3: Var = α/r).
    #[arg(long, allow_negative_numbers = true)]
    sparse_init: Option<f32>,
    /// Gain of the Kaiming-normal initial weights (default: the preset's, scaled
    /// for --sparse-init); overrides that rule.
    #[arg(long, allow_negative_numbers = true)]
    init_gain: Option<f32>,
    /// Number of epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Training batch size.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Random seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Data directory (default: $BREGMAN_DATA, else the shipped `data/`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Output directory (default: runs/<experiment>-<optimizer>-<timestamp>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// A TOML file with any subset of the configuration (flags override it).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Continue the run in this directory from its checkpoint. Only
    /// --epochs (to extend it), --data-dir, --dense-kernels and --quiet may
    /// go with it: the rest of the run is what its checkpoint says.
    #[arg(long, conflicts_with_all = RESUME_CONFLICTS)]
    resume: Option<PathBuf>,
    /// Replace the run that --out already holds (its checkpoint, metrics,
    /// config and plots are removed first).
    #[arg(long)]
    overwrite: bool,
    /// Pruning baseline (`--optimizer prune`): final density of the weights.
    #[arg(long, allow_negative_numbers = true)]
    prune_target: Option<f32>,
    /// Pruning baseline: number of prune-and-retrain rounds.
    #[arg(long)]
    prune_rounds: Option<usize>,
    /// Lasso baseline (`--optimizer lasso`): weights below this magnitude count as zero.
    #[arg(long, allow_negative_numbers = true)]
    lasso_threshold: Option<f32>,
    /// Target density of non-zero weights for the λ scheduler (off by default).
    #[arg(long, allow_negative_numbers = true)]
    lambda_target: Option<f32>,
    /// What the learning-rate plateau scheduler watches: train-loss (default;
    /// the authors' code) | val-acc (SPEC §5; the validation loss for the denoiser).
    #[arg(long)]
    plateau_metric: Option<String>,
    /// Denoiser: standard deviation of the input noise (default 0.05).
    #[arg(long, allow_negative_numbers = true)]
    noise_std: Option<f32>,
    /// Denoiser: fixed (default: each image's noise drawn once, the same every
    /// epoch, as the authors' notebook) | redrawn (new noise every epoch).
    #[arg(long, value_name = "fixed|redrawn")]
    noise: Option<String>,
    /// Early stopping: end the run when the validation accuracy (SSIM for the
    /// denoiser) has not improved by --early-stop-delta for this many epochs.
    #[arg(long, value_name = "EPOCHS")]
    early_stop: Option<usize>,
    /// The improvement that counts for --early-stop, a fraction (default
    /// 0.001: 0.1 percentage points of accuracy, or 0.001 of SSIM).
    #[arg(long, allow_negative_numbers = true)]
    early_stop_delta: Option<f64>,
    /// Sparse backpropagation: a full Bregman step every K steps, masked
    /// steps between (weight gradient and update on the support only).
    /// Bregman optimizers only; 1 (default) trains exactly.
    #[arg(long, value_name = "K")]
    sparse_backprop: Option<usize>,
    /// With --sparse-backprop: how each full step catches up with the masked
    /// steps before it: auto (default: linear for LinBreg, sqrt for
    /// LinBreg-momentum and AdaBreg) | none | linear | sqrt (docs/BREGMAN.md).
    #[arg(long, value_name = "RULE")]
    sparse_backprop_catch_up: Option<String>,
    /// Dense products everywhere (by default weights sparse enough run
    /// sparse kernels for the forward pass and the input gradient).
    #[arg(long)]
    dense_kernels: bool,
    /// Print only the summary.
    #[arg(long)]
    quiet: bool,
}

/// Restores the default SIGPIPE action (Rust ignores it, so `println!` into
/// a closed pipe panics): `bregman inspect RUN | head` ends quietly, as
/// every Unix tool does.
fn quiet_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: sets a signal disposition to its default, before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    quiet_on_closed_pipe();
    bregman::tune_allocator();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(args) => train(*args),
        Command::Eval {
            checkpoint,
            data_dir,
            dense_kernels,
            timing,
        } => eval(&checkpoint, data_dir, dense_kernels, timing),
        Command::Export {
            checkpoint,
            out,
            sparse,
            force,
        } => export_cmd(&checkpoint, &out, sparse, force),
        Command::Inspect { checkpoint } => inspect(&checkpoint),
        Command::Plot {
            metric,
            out,
            title,
            against,
            runs,
            force,
        } => plot(&metric, &out, title.as_deref(), &against, &runs, force),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--data-dir`, else `$BREGMAN_DATA`, else `data/` here, else the repository's `data/`.
fn data_dir(flag: Option<PathBuf>) -> PathBuf {
    if let Some(d) = flag {
        return d;
    }
    if std::env::var_os("BREGMAN_DATA").is_some() {
        // Recorded as the variable, expanded by `TrainConfig::data_path`.
        return PathBuf::from(bregman::train::DATA_ENV_PLACEHOLDER);
    }
    let here = PathBuf::from("data");
    if here.is_dir() {
        here
    } else {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/data"))
    }
}

/// UTC `YYYYMMDD-HHMMSS` (days-to-civil conversion, no time-zone crate).
fn timestamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn resolve_config(args: &TrainArgs) -> Result<TrainConfig, TrainError> {
    // Experiment and optimizer pick the preset; a config file may name them too.
    let file: Option<toml::Table> = match &args.config {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|source| TrainError::Io {
                path: p.clone(),
                source,
            })?;
            Some(toml::from_str(&text).map_err(|e| TrainError::Format {
                path: p.clone(),
                what: e.to_string(),
            })?)
        }
        None => None,
    };
    let from_file = |key: &str| {
        file.as_ref()
            .and_then(|t| t.get(key))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let experiment = args
        .experiment
        .clone()
        .or_else(|| from_file("experiment"))
        .unwrap_or_else(|| "mnist-mlp".into());
    let optimizer = args.optimizer.clone().or_else(|| from_file("optimizer"));
    let mut cfg = TrainConfig::preset(&experiment, optimizer.as_deref())?;
    if let Some(p) = &args.config {
        cfg = cfg.merge_file(p)?;
    }
    macro_rules! set {
        ($($field:ident),*) => { $( if let Some(v) = args.$field.clone() { cfg.$field = v; } )* };
    }
    set!(
        lr,
        lambda,
        delta,
        momentum,
        epochs,
        batch_size,
        seed,
        prune_target,
        prune_rounds,
        lasso_threshold,
        plateau_metric,
        noise_std,
        early_stop_delta,
        sparse_backprop,
        sparse_backprop_catch_up
    );
    if let Some(r) = args.sparse_init {
        cfg.set_sparse_init(r);
    }
    if let Some(g) = args.init_gain {
        cfg.init_gain = g;
    }
    if args.lambda_target.is_some() {
        cfg.lambda_target = args.lambda_target;
    }
    if args.early_stop.is_some() {
        cfg.early_stop = args.early_stop;
    }
    if let Some(n) = &args.noise {
        cfg.noise_fixed = match n.as_str() {
            "fixed" => true,
            "redrawn" => false,
            other => {
                return Err(TrainError::Config(format!(
                    "--noise {other}: unknown (choose from fixed, redrawn)"
                )))
            }
        };
    }
    // --data-dir, else the config file's data_dir, else $BREGMAN_DATA or data/.
    if args.data_dir.is_some() || from_file("data_dir").is_none() {
        cfg.data_dir = data_dir(args.data_dir.clone());
    }
    cfg.out = match &args.out {
        Some(o) => o.clone(),
        None if cfg.out.as_os_str().is_empty() => {
            // A fresh name: two runs started in the same second get -2, -3, ...
            let base = format!("{}-{}-{}", cfg.experiment, cfg.optimizer, timestamp());
            (1..)
                .map(|k| match k {
                    1 => PathBuf::from("runs").join(&base),
                    k => PathBuf::from("runs").join(format!("{base}-{k}")),
                })
                .find(|p| !p.exists())
                .unwrap_or_default()
        }
        None => cfg.out.clone(),
    };
    cfg.validate()?;
    Ok(cfg)
}

/// The processes of this run: MPI's world when built with `--features mpi`
/// and started by `mpirun` with more than one rank, else this process alone.
fn processes() -> Result<Box<dyn Comm>, TrainError> {
    #[cfg(feature = "mpi")]
    {
        let world = mpi_comm::MpiComm::init().map_err(TrainError::Config)?;
        if world.size() > 1 {
            return Ok(Box::new(world));
        }
    }
    Ok(Box::new(Single))
}

fn train(args: TrainArgs) -> Result<(), TrainError> {
    let comm = processes()?;
    // Rank 0 alone speaks, locks, checks and writes the run directory.
    let writer = comm.rank() == 0;
    let say = |msg: String| {
        if !args.quiet && writer {
            println!("{msg}");
        }
    };
    let lock_if_writer = |dir: &Path| writer.then(|| lock_run_dir(dir, &say)).transpose();
    let (mut run, _lock) = match &args.resume {
        Some(dir) => {
            // Read the checkpoint first (a mistyped directory is an error, not
            // a new directory with a lock file), then lock before repairing.
            let mut run = Run::resume(dir, args.data_dir.clone())?;
            let lock = lock_if_writer(dir)?;
            say(format!(
                "resuming {} after epoch {}",
                dir.display(),
                run.epoch()
            ));
            if writer {
                if let Some(note) = run.repair_outputs()? {
                    say(note);
                }
            }
            if let Some(e) = args.epochs {
                if e < run.epoch() {
                    return Err(TrainError::Config(format!(
                        "--epochs {e}: the run in {} already has {} epochs (give more to extend it)",
                        dir.display(),
                        run.epoch()
                    )));
                }
                if run.cfg.optimizer == "prune" && e != run.cfg.epochs {
                    return Err(TrainError::Config(format!(
                        "--epochs {e}: a pruning run's schedule is fixed by the {} epochs it \
                         started with",
                        run.cfg.epochs
                    )));
                }
                run.cfg.epochs = e;
            }
            (run, lock)
        }
        None => {
            let cfg = resolve_config(&args)?;
            // Refuse before loading any data, and again under the lock.
            if writer {
                check_fresh_out(&cfg.out, args.overwrite)?;
            }
            let run = Run::new(cfg)?;
            let lock = lock_if_writer(&run.cfg.out)?;
            if writer {
                check_fresh_out(&run.cfg.out, args.overwrite)?;
                bregman::train::run_dir::clear_run(&run.cfg.out)?;
            }
            (run, lock)
        }
    };
    if comm.size() > run.cfg.batch_size {
        return Err(TrainError::Config(format!(
            "--batch-size {}: the global batch is split over {} ranks, so it needs at least {} images",
            run.cfg.batch_size,
            comm.size(),
            comm.size()
        )));
    }
    let ranks = comm.size();
    run.comm = comm;
    if run.epoch() >= run.cfg.epochs || run.stopped_early() {
        let why = if run.stopped_early() {
            "it stopped early"
        } else {
            "it has all its epochs"
        };
        say(format!(
            "nothing to train: {} has {} epochs and {why} (give a larger --epochs to extend it)",
            run.cfg.out.display(),
            run.epoch()
        ));
        if writer {
            print_summary(&run.cfg, &run.history);
        }
        return Ok(());
    }
    run.verbose = !args.quiet && writer;
    if args.dense_kernels {
        run.model.set_kernels(Kernels::Dense);
    }
    let c = &run.cfg;
    if ranks > 1 {
        say(format!(
            "data-parallel over {ranks} ranks: each takes a contiguous share of every batch of {}",
            c.batch_size
        ));
    }
    if !args.quiet && writer {
        println!(
            "{} | {} | lr {} λ {} δ {} β {} | r {} | {} train / {} val / {} test images from {} | output {}",
            c.experiment,
            c.optimizer,
            c.lr,
            c.lambda,
            c.delta,
            c.momentum,
            c.sparse_init,
            run.train.len(),
            run.val.len(),
            run.test.len(),
            c.data_path()?.display(),
            c.out.display()
        );
    }
    let history = run.run()?.to_vec();
    if writer {
        print_summary(&run.cfg, &history);
        println!(
            "  {:<22} {:016x}",
            "parameter fingerprint",
            run.fingerprint()
        );
    }
    Ok(())
}

/// The files of the run in `dir`: no command writes over them but `train`.
fn run_files(dir: &Path) -> Vec<PathBuf> {
    bregman::train::run_dir::RUN_FILES
        .iter()
        .map(|f| dir.join(f))
        .collect()
}

/// Locks a run directory for this process, reporting a stale lock taken over.
fn lock_run_dir(dir: &Path, say: &dyn Fn(String)) -> Result<RunLock, TrainError> {
    let lock = RunLock::acquire(dir)?;
    if let Some(pid) = lock.stale_pid {
        say(format!(
            "note: {} was locked by process {pid}, which ended without releasing it (killed?); \
             taking it over",
            dir.display()
        ));
    }
    Ok(lock)
}

/// `train` never replaces a run unasked.
fn check_fresh_out(out: &Path, overwrite: bool) -> Result<(), TrainError> {
    if !overwrite && bregman::train::run_dir::holds_run(out) {
        return Err(TrainError::Config(format!(
            "--out {}: holds a run already; pass --overwrite to replace it, --resume {} to \
             continue it, or choose another directory",
            out.display(),
            out.display()
        )));
    }
    Ok(())
}

fn print_summary(cfg: &TrainConfig, history: &[bregman::train::EpochMetrics]) {
    let Some(last) = history.last() else { return };
    let pct = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{:.2}%", 100.0 * v));
    let best = history
        .iter()
        .filter_map(|m| m.val_acc.map(|a| (m.epoch, a)))
        .fold(None, |b: Option<(usize, f64)>, (e, a)| {
            if b.is_none_or(|(_, ba)| a > ba) {
                Some((e, a))
            } else {
                b
            }
        });
    println!();
    println!(
        "summary ({} epochs, {:.1}s)",
        last.epoch,
        history.iter().map(|m| m.seconds).sum::<f64>()
    );
    println!("  {:<22} {}", "final test accuracy", pct(last.test_acc));
    println!("  {:<22} {}", "final val accuracy", pct(last.val_acc));
    if let Some((e, a)) = best {
        println!("  {:<22} {} (epoch {e})", "best val accuracy", pct(Some(a)));
    }
    if let (Some(s), Some(p)) = (last.test_ssim, last.test_psnr) {
        println!("  {:<22} {s:.4} / {p:.2} dB", "test SSIM / PSNR");
    }
    println!("  {:<22} {:.2}%", "N_total", 100.0 * last.n_total);
    if let Some(v) = last.n_linear {
        println!("  {:<22} {:.2}%", "N_linear", 100.0 * v);
    }
    if let Some(v) = last.n_conv {
        println!("  {:<22} {:.2}%", "N_conv (kernels)", 100.0 * v);
    }
    let neurons: Vec<String> = last
        .neurons
        .iter()
        .map(|(_, a, t)| format!("{a}/{t}"))
        .collect();
    println!("  {:<22} {}", "active neurons", neurons.join(" "));
    println!("  {:<22} {}", "outputs", cfg.out.display());
}

fn checkpoint_path(p: &Path) -> PathBuf {
    if p.is_dir() {
        p.join("checkpoint.safetensors")
    } else {
        p.to_path_buf()
    }
}

fn eval(
    ckpt: &Path,
    data: Option<PathBuf>,
    dense_kernels: bool,
    timing: bool,
) -> Result<(), TrainError> {
    let path = checkpoint_path(ckpt);
    let ck = checkpoint::load(&path)?;
    let mut cfg = ck.config.clone();
    if let Some(d) = data {
        cfg.data_dir = d;
    }
    let mut model = bregman::train::build_model(&cfg)?;
    ck.restore_model(&mut model, &path)?;
    if dense_kernels {
        model.set_kernels(Kernels::Dense);
    }
    let (_, test) = bregman::data::load(
        &cfg.data_path()?,
        bregman::train::dataset_kind(&cfg.experiment),
    )?;
    let e = evaluate(&mut model, &cfg, &test)?;
    let sp = metrics::sparsity(&model.params());
    println!(
        "{} after epoch {}: {} test images",
        cfg.experiment,
        ck.state.epoch,
        test.len()
    );
    println!("  test loss     {:.4}", e.loss);
    if let Some(a) = e.acc {
        println!("  test accuracy {:.2}%", 100.0 * a);
    }
    if let (Some(s), Some(p)) = (e.ssim, e.psnr) {
        println!("  test SSIM     {s:.4}\n  test PSNR     {p:.2} dB");
    }
    println!("  N_total       {:.2}%", 100.0 * sp.n_total);
    if timing {
        let kernels = if dense_kernels { "dense" } else { "auto" };
        let batch = cfg.eval_batch_size;
        let rate = inference_rate(&mut model, &cfg, &test, batch, test.len(), 3)?;
        println!("  inference     {rate:.0} images/s (batch {batch}, {kernels} kernels)");
        let single = inference_rate(&mut model, &cfg, &test, 1, test.len().min(2000), 3)?;
        println!("  inference     {single:.0} images/s (batch 1, {kernels} kernels)");
    }
    Ok(())
}

fn export_cmd(ckpt: &Path, out: &Path, sparse: bool, force: bool) -> Result<(), TrainError> {
    let path = checkpoint_path(ckpt);
    let mut inputs = run_files(path.parent().unwrap_or(Path::new(".")));
    inputs.push(path.clone());
    check_output(out, &inputs, force)?;
    let n = export::export(&path, out, sparse)?;
    println!("wrote {n} tensors to {}", out.display());
    Ok(())
}

fn inspect(ckpt: &Path) -> Result<(), TrainError> {
    let path = checkpoint_path(ckpt);
    let ck = checkpoint::load(&path)?;
    let mut model = bregman::train::build_model(&ck.config)?;
    ck.restore_model(&mut model, &path)?;
    let sp = metrics::sparsity(&model.params());
    println!(
        "{} ({}), epoch {}",
        ck.config.experiment, ck.config.optimizer, ck.state.epoch
    );
    println!(
        "{:<32} {:>12} {:>9} {:>15} {:>15}",
        "weight", "non-zeros", "%", "active rows", "non-zero kernels"
    );
    for l in &sp.layers {
        let kernels = if l.kernels > 0 {
            format!("{}/{}", l.nonzero_kernels, l.kernels)
        } else {
            "-".into()
        };
        println!(
            "{:<32} {:>12} {:>8.2}% {:>15} {:>15}",
            l.name,
            format!("{}/{}", l.nonzero, l.total),
            100.0 * l.nonzero as f64 / l.total.max(1) as f64,
            format!("{}/{}", l.active_rows, l.rows),
            kernels
        );
    }
    let pct = |x: f64| {
        if x.is_finite() {
            format!("{:.2}%", 100.0 * x)
        } else {
            "-".into()
        }
    };
    println!(
        "N_total {}  N_linear {}  N_conv {}",
        pct(sp.n_total),
        pct(sp.n_linear),
        pct(sp.n_conv)
    );
    Ok(())
}

fn plot(
    metric: &str,
    out: &Path,
    title: Option<&str>,
    against: &str,
    runs: &[PathBuf],
    force: bool,
) -> Result<(), TrainError> {
    let inputs: Vec<PathBuf> = runs.iter().flat_map(|d| run_files(d)).collect();
    check_output(out, &inputs, force)?;
    if against != "epoch" && against != "time" {
        return Err(TrainError::Config(format!(
            "--against {against}: unknown (choose from epoch, time)"
        )));
    }
    let mut series = Vec::new();
    for dir in runs {
        let path = dir.join("metrics.csv");
        let text = std::fs::read_to_string(&path).map_err(|source| TrainError::Io {
            path: path.clone(),
            source,
        })?;
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap_or("").split(',').collect();
        let col = header
            .iter()
            .position(|h| *h == metric)
            .ok_or_else(|| TrainError::Format {
                path: path.clone(),
                what: format!("no column '{metric}' (columns: {})", header.join(", ")),
            })?;
        let scale = if metric.ends_with("_acc") || metric.starts_with("n_") {
            100.0
        } else {
            1.0
        };
        let x_col =
            match against {
                "time" => header.iter().position(|h| *h == "seconds").ok_or_else(|| {
                    TrainError::Format {
                        path: path.clone(),
                        what: "no column 'seconds' to plot against time".into(),
                    }
                })?,
                _ => 0,
            };
        let mut elapsed = 0.0;
        let points = lines
            .filter_map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                let x = f.get(x_col)?.parse::<f64>().ok()?;
                let y = f.get(col)?.parse::<f64>().ok()? * scale;
                elapsed += x;
                Some((if against == "time" { elapsed } else { x }, y))
            })
            .collect();
        let name = dir.file_name().map_or_else(
            || dir.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        series.push(bregman::train::plot::Series { name, points });
    }
    // Runs with the same directory name (e.g. one setting under two result
    // trees) are labelled with their parent directory too.
    let names: Vec<String> = series.iter().map(|s| s.name.clone()).collect();
    for (s, dir) in series.iter_mut().zip(runs) {
        if names.iter().filter(|n| **n == s.name).count() > 1 {
            if let Some(parent) = dir.parent().and_then(|p| p.file_name()) {
                s.name = format!("{}/{}", parent.to_string_lossy(), s.name);
            }
        }
    }
    let unit = if metric.ends_with("_acc") || metric.starts_with("n_") {
        format!("{metric} (%)")
    } else {
        metric.to_string()
    };
    let x_label = if against == "time" {
        "training time (s)"
    } else {
        "epoch"
    };
    let svg = bregman::train::plot::line_chart(title.unwrap_or(metric), x_label, &unit, &series);
    checkpoint::write_atomic(out, svg.as_bytes())?;
    println!("wrote {}", out.display());
    Ok(())
}
