//! `bulwark attack`: one attack on a dataset, with resumable batches and examples.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use bulwark_attack_core::{Attack, AttackConfig, AttackOverrides};
use bulwark_data::Split;
use bulwark_eval::{
    AttackContext, AttackRunOptions, AttackState, RunLock, SHARD_FILE, Shard, attack_dataset,
    attack_dataset_shard, attack_shard_finished, write_attack_outputs,
};
use bulwark_models::Model;
use bulwark_trainer::{BackendKind, check_input_shape, dataset_dir, load_dataset_split};
use burn::tensor::Device;

use crate::args::AttackArgs;
use crate::guard::{ATTACK_OUTPUTS, Inputs};

use super::eval::run_identity;
use super::{fetch_options, load_weights, warn_eps_box};

/// The attack configuration the flags describe.
fn attack_config(a: &AttackArgs) -> Result<AttackConfig> {
    if let Some(path) = &a.config {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let value: Result<serde_json::Value> = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text).map_err(anyhow::Error::from)
        } else {
            toml::from_str(&text).map_err(anyhow::Error::from)
        };
        let config = value.and_then(|v| AttackConfig::from_partial(v).map_err(anyhow::Error::from));
        return config.with_context(|| format!("{}: not an attack configuration", path.display()));
    }
    // The flags overlay the attack's own defaults (the registry in bulwark-attack-core); the
    // only setting this command decides is early stopping, on unless --no-early-stop: an attack
    // run here measures robust accuracy, which counts a sample's first success.
    let overrides = AttackOverrides {
        norm: a.norm,
        eps: a.eps,
        steps: a.steps,
        step_size: a.step_size,
        decay: a.decay,
        restarts: a.restarts,
        loss: a.loss,
        targeting: a.targeted,
        random_start: a.no_random_start.then_some(false),
        early_stop: Some(!a.no_early_stop),
        seed: a.seed,
    };
    AttackConfig::from_overrides(&a.attack, &overrides)
        .with_context(|| format!("--attack {}", a.attack))
}

/// Removes the saved batches of a finished attack (its results are saved elsewhere).
fn remove_state(path: &std::path::Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// The file in an attack's output directory that holds its finished batches until it completes.
const ATTACK_STATE: &str = "attack-state.json";

pub(super) fn attack(a: AttackArgs, backend: BackendKind) -> Result<()> {
    let device: Device = backend.device()?;
    let config = attack_config(&a)?;
    // Settings are checked before weights and data are touched.
    let checked = config.init()?;
    let out = a.out.clone().unwrap_or_else(|| {
        let eps = checked
            .threat()
            .map_or("min".to_string(), |t| format!("{}", t.eps));
        // The name asked for (an alias such as `apgd-t` sets other defaults than `apgd`), so
        // that two aliases of one attack do not share a directory.
        let name = if a.config.is_some() {
            checked.name()
        } else {
            a.attack.as_str()
        };
        PathBuf::from("runs/attacks").join(format!("{}-{name}-{}-{eps}", a.model, checked.norm()))
    });
    let shard = a.shard.as_deref().map(Shard::parse).transpose()?;
    let base_out = out.clone();
    let out = match shard {
        Some(s) => out.join(s.dir_name()),
        None => out,
    };
    // One attack per output directory at a time: two would mix their saved batches. Taken before
    // the directory's contents are looked at, so that what they say stays true.
    let _lock = RunLock::acquire(&out)?;
    let state_path = out.join(ATTACK_STATE);
    if state_path.exists() && !a.resume && !a.overwrite {
        bail!(
            "{}: an interrupted attack is saved there; pass --resume to continue it, or choose \
             another --out",
            state_path.display()
        );
    }
    // A shard's finished result is its manifest; a whole attack's, its summary.
    let summary_path = out.join(if shard.is_some() {
        SHARD_FILE
    } else {
        "summary.json"
    });
    // A finished shard rerun with --resume (a requeued array task) is checked once its data is
    // loaded: it has nothing left to do when it is this very shard.
    let finished_shard = shard.is_some() && a.resume && summary_path.is_file();
    if summary_path.is_file() && !a.overwrite && !finished_shard {
        bail!(
            "{} holds a finished attack ({}); choose another --out, or pass --overwrite to \
             replace it{}",
            out.display(),
            summary_path.display(),
            if a.resume {
                " (there is nothing left to resume)"
            } else {
                ""
            }
        );
    }
    let model = load_weights(Model::init(&a.model, &device)?, &a.weights)?;
    let dir = dataset_dir(&a.dataset, &fetch_options(a.data_dir.clone()))?;
    let mut test = load_dataset_split(&a.dataset, &dir, Split::Test)?;
    check_input_shape(&a.model, &test, &a.dataset)?;
    if let Some(n) = a.limit {
        test = test.take(n as usize);
    }
    let mut inputs = Inputs::new();
    inputs.weights(&a.weights).data_dir(&dir);
    if let Some(d) = &a.data_dir {
        inputs.data_dir(d);
    }
    if let Some(c) = &a.config {
        inputs.file("the attack configuration", c);
    }
    inputs.refuse_in(&out, &ATTACK_OUTPUTS, "--out")?;
    if let Some(t) = checked.threat() {
        warn_eps_box(t.norm, t.eps, test.image_size(), "--eps");
    }
    if a.overwrite {
        // The finished results go first, so that a killed rerun cannot leave them beside a state
        // of the new attack; a leftover state of another attack must not be resumed either.
        for f in [&summary_path, &state_path, &out.join("examples.png")] {
            match std::fs::remove_file(f) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("removing {}", f.display()));
                }
                _ => {}
            }
        }
    }
    let context = AttackContext {
        model: a.model.clone(),
        weights: a.weights.clone(),
        dataset: format!("{}/test", a.dataset),
        backend: backend.to_string(),
        bulwark_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let opts = AttackRunOptions {
        batch_size: a.batch_size as usize,
        progress: !a.no_progress,
        examples: 8,
        state: Some(AttackState {
            path: state_path.clone(),
            identity: run_identity(&a.model, &a.weights, &a.dataset, backend)?,
        }),
    };
    if let Some(shard) = shard {
        if finished_shard {
            if attack_shard_finished(&out, &config, &opts, &test, shard) {
                println!(
                    "shard {shard} is finished ({}); nothing to resume",
                    summary_path.display()
                );
                return Ok(());
            }
            bail!(
                "{} holds a finished shard of another attack, model or dataset; choose another \
                 --out, or pass --overwrite to replace it",
                out.display()
            );
        }
        let part = attack_dataset_shard(
            &model, &test, &config, &opts, shard, &context, &out, &device,
        )?;
        remove_state(&state_path)?;
        println!(
            "{} {} shard {shard}: {} of {} images: clean {:.2} %, robust {:.2} % on this shard's \
             images ({:.1} s)",
            a.model,
            part.attack,
            part.n,
            test.len(),
            100.0 * part.clean_accuracy,
            100.0 * part.robust_accuracy,
            part.seconds
        );
        println!(
            "shard: {}; when every shard has run: bulwark merge {}",
            out.join(SHARD_FILE).display(),
            base_out.join("shard-*").display()
        );
        return Ok(());
    }
    let summary = attack_dataset(&model, &test, &config, &opts, &device)?;
    let threat = match summary.eps {
        Some(eps) => format!("{} eps {eps}", summary.norm),
        None => format!("{}, unbounded", summary.norm),
    };
    println!(
        "{} {} ({threat}) on {} {} test images: clean {:.2} %, adversarial {:.2} %, robust {:.2} % \
         ({:.1} s, {:.0} img/s)",
        a.model,
        summary.attack,
        summary.n,
        a.dataset,
        100.0 * summary.clean_accuracy,
        100.0 * summary.adversarial_accuracy,
        100.0 * summary.robust_accuracy,
        summary.seconds,
        summary.images_per_second
    );
    let (json, png) = write_attack_outputs(&out, &context, &summary)?;
    // The attack is complete and its summary saved: a later run starts afresh.
    remove_state(&state_path)?;
    if summary.resumed_batches > 0 {
        println!(
            "resumed: {} finished batch(es) from {ATTACK_STATE}",
            summary.resumed_batches
        );
    }
    println!("summary: {}", json.display());
    if !summary.examples.is_empty() {
        println!("examples: {}", png.display());
    }
    Ok(())
}
