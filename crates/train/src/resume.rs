//! What `--resume` checks before it continues a run: that the checkpoint's
//! parts agree with each other and with the run directory, so that a run
//! never silently continues from something other than what it saved.

use std::path::Path;

use bregman_layers::Module;
use bregman_optim::GroupedOptimizer;

use crate::{TrainConfig, TrainError};

/// Fields a resumed run may legitimately change (`--epochs`, `--data-dir`)
/// or that name the machine (`out`), left out of the comparison.
const MAY_DIFFER: &[&str] = &["epochs", "data_dir", "out"];

/// The run directory's `config.toml`, when present, must say what the
/// checkpoint's configuration says: a file edited by hand after the run
/// started no longer describes the run, and is refused rather than either
/// applied half-way or overwritten unseen.
///
/// **Errors** naming each field that differs, with both values.
pub fn check_config_file(dir: &Path, saved: &TrainConfig) -> Result<(), TrainError> {
    let path = dir.join("config.toml");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(()); // absent: the checkpoint alone describes the run
    };
    let ours = |e: &dyn std::fmt::Display| {
        TrainError::format(
            &path,
            format!(
                "{e} (the run's settings are in its checkpoint; restore config.toml or delete it)"
            ),
        )
    };
    let on_disk: TrainConfig = toml::from_str(&text).map_err(|e| ours(&e))?;
    let table = |c: &TrainConfig| toml::Table::try_from(c).map_err(|e| ours(&e));
    let (a, b) = (table(&on_disk)?, table(saved)?);
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    let differ: Vec<String> = keys
        .into_iter()
        .filter(|k| !MAY_DIFFER.contains(&k.as_str()) && a.get(*k) != b.get(*k))
        .map(|k| {
            // Floats are f32 in the configuration: print them as such.
            let show = |t: &toml::Table| match t.get(k) {
                None => "(absent)".to_string(),
                Some(toml::Value::Float(f)) => (*f as f32).to_string(),
                Some(v) => v.to_string(),
            };
            format!(
                "{k} = {} in the file, {} in the checkpoint",
                show(&a),
                show(&b)
            )
        })
        .collect();
    if differ.is_empty() {
        return Ok(());
    }
    Err(TrainError::format(
        &path,
        format!(
            "differs from the checkpoint's configuration: {} — the checkpoint is what the run \
             trained with; restore config.toml, or start a new run with the new settings",
            differ.join("; ")
        ),
    ))
}

/// Every parameter has the optimizer state its method keeps once a step has
/// been taken (`v` for the Bregman methods, Adam's moments, momentum), of
/// the parameter's size: a checkpoint missing one would otherwise resume
/// with fresh state and silently change the run.
///
/// **Errors** naming the parameter and the buffer.
pub fn check_optimizer_state(
    cfg: &TrainConfig,
    model: &dyn Module,
    opt: &GroupedOptimizer,
    path: &Path,
) -> Result<(), TrainError> {
    let momentum = cfg.momentum > 0.0;
    let (v, m1, m2) = match cfg.optimizer.as_str() {
        "adam" => (false, true, true),
        "adabreg" => (true, true, true),
        "linbreg" | "linbreg-momentum" => (true, momentum, false),
        "proxgd" => (false, false, false),
        _ => (false, momentum, false), // SGD and the SGD-based baselines
    };
    let stepped = opt.steps() > 0;
    for (p, s) in model.params().iter().zip(opt.param_states()) {
        for (name, needed, buf) in [("v", v, &s.v), ("m1", m1, &s.m1), ("m2", m2, &s.m2)] {
            match buf {
                None if needed && stepped => {
                    return Err(TrainError::format(
                        path,
                        format!(
                            "optimizer state 'optim.{}.{name}' is missing ({} keeps it after \
                             {} steps)",
                            p.name,
                            cfg.optimizer,
                            opt.steps()
                        ),
                    ))
                }
                Some(b) if b.len() != p.value.len() => {
                    return Err(TrainError::format(
                        path,
                        format!(
                            "optimizer state 'optim.{}.{name}' has {} values, the parameter {}",
                            p.name,
                            b.len(),
                            p.value.len()
                        ),
                    ))
                }
                _ => {}
            }
        }
    }
    Ok(())
}
