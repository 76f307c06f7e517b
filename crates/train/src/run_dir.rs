//! A run directory and what protects it: the lock held while a process
//! trains into it, the check that `--out` does not already hold a run, and
//! the rule that `export` and `plot` never overwrite a file unasked or
//! write over their own inputs.
//!
//! The lock is an advisory OS lock (`flock` on Unix, `LockFileEx` on
//! Windows) on `DIR/.bregman.lock`, which also records the holder's PID for
//! the error message. The OS releases it when the process ends in any way,
//! so a lock file left by a killed process is stale by construction: the
//! next process takes it over (and says so). The file itself stays in the
//! directory, emptied on a clean exit.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::TrainError;

/// The lock file's name inside a run directory.
pub const LOCK_FILE: &str = ".bregman.lock";

/// The files a training run writes into its directory.
pub const RUN_FILES: &[&str] = &[
    "checkpoint.safetensors",
    "config.toml",
    "metrics.csv",
    "metrics.json",
    "accuracy.svg",
    "nonzeros.svg",
    "loss.svg",
    "neurons.svg",
];

/// The lock on a run directory; released when dropped (or when the process
/// ends, however it ends).
#[derive(Debug)]
pub struct RunLock {
    file: File,
    /// The PID recorded by a process that ended without releasing the lock
    /// file (it was killed): the caller may report the takeover.
    pub stale_pid: Option<u32>,
}

impl RunLock {
    /// Locks `dir` (creating it) for this process, and removes temporary
    /// files a killed writer may have left there.
    ///
    /// **Errors** if another live process holds the lock, naming its PID, or
    /// on an I/O failure.
    pub fn acquire(dir: &Path) -> Result<RunLock, TrainError> {
        std::fs::create_dir_all(dir).map_err(TrainError::io(dir))?;
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(TrainError::io(&path))?;
        let mut recorded = String::new();
        // A lock file that cannot be read as text only loses the PID in a message.
        let _ = file.read_to_string(&mut recorded);
        let holder = recorded.trim().parse::<u32>().ok();
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let who = holder.map_or("another process".to_string(), |p| format!("process {p}"));
                return Err(TrainError::Config(format!(
                    "{} is in use: {who} is training into it (lock file {}); wait for it to \
                     finish or stop it",
                    dir.display(),
                    path.display()
                )));
            }
            Err(TryLockError::Error(e)) => return Err(TrainError::io(&path)(e)),
        }
        let me = std::process::id();
        file.set_len(0).map_err(TrainError::io(&path))?;
        file.rewind().map_err(TrainError::io(&path))?;
        writeln!(file, "{me}").map_err(TrainError::io(&path))?;
        file.sync_all().map_err(TrainError::io(&path))?;
        remove_temporaries(dir)?;
        Ok(RunLock {
            file,
            stale_pid: holder.filter(|&p| p != me),
        })
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // The file stays (removing it would let two later processes lock two
        // different files of the same name); it is emptied, so that a PID
        // found in it later means its writer was killed. Best effort: the
        // OS releases the lock at exit anyway.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

/// Temporary files of [`crate::checkpoint::write_atomic`] (`.NAME.PID.tmp`)
/// left in `dir` by a writer that was killed. Only the lock holder calls
/// this, so no live writer owns them.
fn remove_temporaries(dir: &Path) -> Result<(), TrainError> {
    let entries = std::fs::read_dir(dir).map_err(TrainError::io(dir))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.ends_with(".tmp") {
            let p = entry.path();
            std::fs::remove_file(&p).map_err(TrainError::io(&p))?;
        }
    }
    Ok(())
}

/// Whether `dir` holds (part of) a run: any of [`RUN_FILES`].
pub fn holds_run(dir: &Path) -> bool {
    RUN_FILES.iter().any(|f| dir.join(f).exists())
}

/// Removes a previous run's files from `dir` (for `train --overwrite`), so
/// that no file of the old run survives beside the new one.
///
/// **Errors** naming the file that could not be removed.
pub fn clear_run(dir: &Path) -> Result<(), TrainError> {
    for f in RUN_FILES {
        let p = dir.join(f);
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(TrainError::io(&p)(e)),
        }
    }
    Ok(())
}

/// Checks that a command may write `out`: never over one of its `inputs`
/// (compared as canonical paths), and over an existing file only with
/// `force` (`--force`).
///
/// **Errors** saying which rule `out` breaks.
pub fn check_output(out: &Path, inputs: &[PathBuf], force: bool) -> Result<(), TrainError> {
    if out.is_dir() {
        return Err(TrainError::Config(format!(
            "--out {}: is a directory (name the file to write)",
            out.display()
        )));
    }
    if let Ok(canonical) = out.canonicalize() {
        for input in inputs {
            if input.canonicalize().is_ok_and(|i| i == canonical) {
                return Err(TrainError::Config(format!(
                    "--out {}: is this command's input or a file of the run it reads; \
                     choose another file",
                    out.display()
                )));
            }
        }
        if !force {
            return Err(TrainError::Config(format!(
                "--out {}: exists (pass --force to overwrite it)",
                out.display()
            )));
        }
    }
    Ok(())
}
