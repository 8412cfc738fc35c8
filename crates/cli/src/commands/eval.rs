//! `bulwark eval`: clean accuracy, and the robustness evaluation with `--eps`.

use std::path::{Path, PathBuf};

use anyhow::Result;
use bulwark_attack_core::{Evaluator, Norm, Preset};
use bulwark_data::Split;
use bulwark_eval::{
    EvalContext, RobustEvalConfig, RobustEvalOptions, RunLock, SHARD_FILE, Shard, Verified,
    evaluate, evaluate_robustness, evaluate_robustness_shard, merge_robustness, stages_from_names,
    write_atomic,
};
use bulwark_models::Model;
use bulwark_trainer::{BackendKind, check_input_shape, dataset_dir, load_dataset_split};
use burn::tensor::Device;

use crate::args::EvalArgs;
use crate::guard::{self, EVAL_OUTPUTS, Inputs};

use super::{fetch_options, file_hash, load_weights};

pub(super) fn eval(a: EvalArgs, backend: BackendKind) -> Result<()> {
    run_eval(a, backend, None)
}

/// `bulwark eval`, or (`merge`: the shard directories) the merge of a sharded robust evaluation
/// with the shards' own settings.
pub(super) fn run_eval(
    a: EvalArgs,
    backend: BackendKind,
    merge: Option<Vec<PathBuf>>,
) -> Result<()> {
    let device: Device = backend.device()?;
    let shard = a.shard.as_deref().map(Shard::parse).transpose()?;
    // Robust-evaluation settings are checked before weights and data are touched.
    let robust = robust_config(&a)?;
    // Weights first: a bad file is reported before any data is fetched.
    let model = load_weights(Model::init(&a.model, &device)?, &a.weights)?;
    let dir = dataset_dir(&a.dataset, &fetch_options(a.data_dir.clone()))?;
    let mut test = load_dataset_split(&a.dataset, &dir, Split::Test)?;
    check_input_shape(&a.model, &test, &a.dataset)?;
    if let Some(n) = a.limit {
        test = test.take(n as usize);
    }
    // Every output is checked against every input before the evaluation runs.
    let mut inputs = Inputs::new();
    inputs.weights(&a.weights).data_dir(&dir);
    if let Some(d) = &a.data_dir {
        inputs.data_dir(d);
    }
    if let Some(config) = robust {
        let out = robust_out_dir(&a, &config);
        let out = match shard {
            Some(s) => out.join(s.dir_name()),
            None => out,
        };
        inputs.refuse_in(&out, &EVAL_OUTPUTS, "--out")?;
        // `<run>/eval` of a live training run is that run's own final evaluation.
        if let Some(parent) = out.parent()
            && parent.join(RunLock::FILE).is_file()
        {
            drop(RunLock::acquire(parent)?);
        }
        let mode = match (shard, merge) {
            (Some(s), _) => Mode::Shard(s),
            (None, Some(dirs)) => Mode::Merge(dirs),
            (None, None) => Mode::Whole,
        };
        return robust_eval(&a, config, &out, &model, &test, backend, &device, mode);
    }
    if let Some(path) = &a.predictions {
        inputs.refuse(path, "--predictions")?;
    }
    if let Some(path) = &a.json {
        inputs.refuse(path, "--json")?;
    }
    if let (Some(p), Some(j)) = (&a.predictions, &a.json) {
        guard::distinct((p, "--predictions"), (j, "--json"))?;
    }
    let r = evaluate(&model, &test, a.batch_size as usize, &device);
    println!(
        "{} on {} test ({} images): clean accuracy {:.2} %, cross-entropy {:.4}",
        a.model,
        a.dataset,
        r.n,
        100.0 * r.accuracy,
        r.loss
    );
    if let Some(path) = &a.predictions {
        let text: String = r.predictions.iter().map(|p| format!("{p}\n")).collect();
        write_atomic(path, text.as_bytes())?;
    }
    if let Some(path) = &a.json {
        write_atomic(path, &serde_json::to_vec_pretty(&r)?)?;
    }
    Ok(())
}

/// The content hash (SHA-256) of a file's bytes: identifies the weights a saved evaluation
/// belongs to.
/// What a saved evaluation or attack of `model` with these weights depends on besides its own
/// configuration and the data: the key `eval --resume` and `attack --resume` check.
pub(super) fn run_identity(
    model: &str,
    weights: &Path,
    dataset: &str,
    backend: BackendKind,
) -> Result<String> {
    Ok(format!(
        "{model}|{}|{dataset}|{backend}",
        file_hash(weights)?
    ))
}

/// The robust-evaluation configuration the flags describe (`None` without `--eps`), validated.
fn robust_config(a: &EvalArgs) -> Result<Option<RobustEvalConfig>> {
    let Some(eps) = a.eps else {
        return Ok(None);
    };
    let norm: Norm = a.norm;
    let preset: Preset = a.preset;
    let mut config = RobustEvalConfig::preset(preset, norm, eps, a.seed);
    if let Some(list) = &a.attacks {
        config.stages = stages_from_names(list, norm, a.seed)?;
        config.preset = None;
    }
    config.eps_sweep = a.eps_sweep.clone();
    config.batch_size = a.batch_size as usize;
    config.chunk_size = a.chunk_size as usize;
    config.probe_size = a.probe_size;
    config.probe_queries = a.probe_queries as usize;
    Evaluator::new(
        norm,
        &config.all_eps(),
        config.stages.clone(),
        config.bounds,
    )?;
    Ok(Some(config))
}

/// `--out`, or `runs/eval/<model>-<preset>-<norm>-<eps>`.
fn robust_out_dir(a: &EvalArgs, config: &RobustEvalConfig) -> PathBuf {
    a.out.clone().unwrap_or_else(|| {
        let name = config
            .preset
            .map_or("custom".to_string(), |p| p.to_string());
        PathBuf::from("runs/eval")
            .join(format!("{}-{name}-{}-{}", a.model, config.norm, config.eps))
    })
}

/// A whole robust evaluation, one shard of it, or the merge of its shards.
enum Mode {
    Whole,
    Shard(Shard),
    Merge(Vec<PathBuf>),
}

#[allow(clippy::too_many_arguments)]
fn robust_eval(
    a: &EvalArgs,
    config: RobustEvalConfig,
    out: &Path,
    model: &Model,
    test: &bulwark_data::ImageDataset,
    backend: BackendKind,
    device: &Device,
    mode: Mode,
) -> Result<()> {
    let eps = config.eps;
    let out = out.to_path_buf();
    let opts = RobustEvalOptions {
        progress: !a.no_progress,
        resume: a.resume,
        identity: run_identity(&a.model, &a.weights, &a.dataset, backend)?,
        examples: 8,
        others: Vec::new(),
        report: Some(EvalContext {
            model: a.model.clone(),
            weights: a.weights.clone(),
            dataset: format!("{}/test", a.dataset),
            backend: backend.to_string(),
            bulwark_version: env!("CARGO_PKG_VERSION").to_string(),
        }),
        // Certified robustness beside the attacks (L-inf, models IBP bounds; a whole run or the
        // merge of its shards, which covers the whole test set: a shard holds a part of it).
        verified: match (&mode, config.norm) {
            (Mode::Whole | Mode::Merge(_), Norm::Linf) => {
                Verified::ibp(model, test, eps, config.bounds, config.batch_size, device)
            }
            _ => None,
        },
    };
    let report = match mode {
        Mode::Whole => evaluate_robustness(model, test, &config, &opts, &out, device)?,
        Mode::Merge(dirs) => merge_robustness(model, test, &config, &opts, &dirs, &out, device)?,
        Mode::Shard(shard) => {
            let command = serde_json::json!({ "args": a, "backend": backend.to_string() });
            let m = evaluate_robustness_shard(
                model, test, &config, &opts, shard, command, &out, device,
            )?;
            let p = &m.partial;
            println!(
                "{} shard {shard} ({} of {} test images from image {}), {} eps {eps}: clean \
                 {:.2} %, cascade robust {:.2} % on this shard's images ({:.1} s)",
                a.model,
                p["images"],
                test.len(),
                p["first_image"],
                config.norm,
                100.0 * p["clean_acc"].as_f64().unwrap_or_default(),
                100.0 * p["cascade_robust_acc"].as_f64().unwrap_or_default(),
                m.seconds
            );
            println!(
                "shard: {}; when every shard has run: bulwark merge {}",
                out.join(SHARD_FILE).display(),
                out.parent()
                    .map_or_else(|| ".".into(), |p| p.join("shard-*").display().to_string())
            );
            return Ok(());
        }
    };
    println!(
        "{} on {} {} test images, {} eps {}: clean {:.2} %, robust {:.2} % ({}; {:.1} s)",
        a.model,
        report.n_examples,
        a.dataset,
        report.threat_model,
        eps,
        100.0 * report.clean_acc,
        100.0 * report.robust_acc,
        report.preset,
        report.seconds
    );
    for stage in &report.attacks {
        println!(
            "  after {:<8} {:.2} %",
            stage.name,
            100.0 * stage.robust_acc_after
        );
    }
    if let Some(v) = &report.verified {
        println!(
            "  verified ({}): {:.2} % certified robust (a lower bound; the attacks give an upper \
             bound)",
            v.method,
            100.0 * v.verified_acc
        );
    }
    if report.probe_broken > 0 {
        println!(
            "  the sanity checks' Square probe broke {} more point(s): robust {:.2} % is the \
             per-sample worst case over both (cascade alone {:.2} %)",
            report.probe_broken,
            100.0 * report.robust_acc,
            100.0 * report.cascade_robust_acc
        );
    }
    if report.sweep.len() > 1 {
        for p in &report.sweep {
            println!("  eps {:<8} robust {:.2} %", p.eps, 100.0 * p.robust_acc);
        }
    }
    for flag in report.raised() {
        println!("  WARNING {}: {}", flag.check, flag.evidence);
    }
    println!("report: {}", out.join("report.md").display());
    Ok(())
}
