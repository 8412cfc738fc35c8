//! One module per subcommand; this one dispatches and holds what several commands share.

mod attack;
mod bench;
mod certify;
mod data;
mod eval;
mod export;
mod merge;
mod models;
mod sweep;
mod text;
mod train;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use bulwark_attack_core::{Bounds, Norm};
use bulwark_data::FetchOptions;
use bulwark_models::{Model, bpk, torch};
use bulwark_trainer::{BackendKind, BenchPlan, EvalBenchPlan, TrainConfig, Workload};

use crate::args::{BenchCommand, Cli, Command, DataCommand, ModelsCommand, TextCommand};
use crate::guard::RUN_DIR_WEIGHTS;

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let backend = cli.backend;
    match cli.command {
        Command::Train(args) => train::train(*args, backend),
        Command::Eval(args) => eval::eval(*args, backend),
        Command::Sweep(args) => sweep::sweep(*args, backend),
        Command::Attack(args) => attack::attack(*args, backend),
        Command::Certify(args) => certify::certify(*args, backend),
        Command::Bench {
            command:
                BenchCommand::Throughput {
                    repeats,
                    batch,
                    models,
                    workloads,
                    matmul,
                    backend_list,
                    data_dir,
                    json,
                },
        } => {
            let workloads = workloads
                .iter()
                .map(|w| Workload::parse(w))
                .collect::<Result<Vec<_>, _>>()?;
            let plan = BenchPlan {
                models,
                backends: backend_list.unwrap_or_else(BackendKind::compiled),
                workloads,
                batch: batch as usize,
                repeats: repeats as usize,
                matmul: matmul as usize,
            };
            bench::bench(&plan, data_dir, json)
        }
        Command::Bench {
            command:
                BenchCommand::Layers {
                    models,
                    batch,
                    repeats,
                    backend_list,
                    json,
                },
        } => {
            // One backend unless asked: the deprecated ndarray backend, compiled into the tasks'
            // build, takes many minutes per ResNet layer set.
            let backends = backend_list
                .unwrap_or_else(|| BackendKind::compiled().into_iter().take(1).collect());
            bench::bench_layers(&models, &backends, batch as usize, repeats as usize, json)
        }
        Command::Bench {
            command:
                BenchCommand::Eval {
                    model,
                    weights,
                    dataset,
                    data_dir,
                    limit,
                    workloads,
                    eps,
                    norm,
                    batch,
                    repeats,
                    seed,
                    json,
                },
        } => {
            let plan = EvalBenchPlan {
                workloads,
                norm,
                eps,
                batch: batch as usize,
                repeats: repeats as usize,
                seed,
            };
            let data = bench::EvalData {
                model,
                weights,
                dataset,
                data_dir,
                limit: limit as usize,
            };
            bench::bench_eval(&plan, &data, backend, json)
        }
        Command::Data {
            command:
                DataCommand::Fetch {
                    dataset,
                    data_dir,
                    offline,
                },
        } => data::data_fetch(&dataset, data_dir, offline),
        Command::Text { command } => match command {
            TextCommand::Train {
                config,
                run_dir,
                resume,
                data_dir,
            } => text::train(config, run_dir, resume, data_dir, backend),
            TextCommand::Eval {
                run_dir,
                eps,
                steps,
                restarts,
                data_dir,
            } => text::eval(&run_dir, eps, steps, restarts, data_dir, backend),
            TextCommand::Fetch { data_dir } => text::fetch(data_dir),
        },
        Command::Models {
            command: ModelsCommand::List,
        } => models::models_list(backend),
        Command::Export(args) => export::export(args, backend),
        Command::Merge(args) => merge::merge(args),
    }
}

/// A run name as `--name` gives it: one plain path component, so that the run directory stays
/// inside `--runs-dir` (`../x`, `a/b`, `/abs` and the empty name are refused).
pub(super) fn run_name(name: &str) -> Result<&str> {
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\'])
        && !name.chars().any(char::is_control);
    if !plain {
        bail!(
            "--name {name:?} is not a plain run name: it must be non-empty, not `.` or `..`, and \
             hold no `/`, `\\` or control characters (use --run-dir for a directory elsewhere)"
        );
    }
    Ok(name)
}

/// Warns when `eps` reaches the diameter of the input box (see `sanity::eps_box_flag`).
pub(super) fn warn_eps_box(norm: Norm, eps: f64, n_values: usize, flag: &str) {
    let check = bulwark_attack_core::sanity::eps_box_flag(norm, eps, Bounds::new(), n_values);
    if check.raised() {
        tracing::warn!("{flag}: {}", check.evidence);
    }
}

pub(super) fn fetch_options(data_dir: Option<PathBuf>) -> FetchOptions {
    let mut opts = FetchOptions::from_env();
    if data_dir.is_some() {
        opts.data_dir = data_dir;
    }
    opts
}

/// The weights a run directory given as `--weights` stands for: its final `model.bpk`, else its
/// checkpoint's (see [`RUN_DIR_WEIGHTS`]).
pub(super) fn run_dir_weights(dir: &Path) -> Option<PathBuf> {
    RUN_DIR_WEIGHTS
        .iter()
        .map(|c| dir.join(c))
        .find(|p| p.is_file())
}

/// Loads weights into a freshly built `model`, by file type.
pub(super) fn load_weights(model: Model, path: &Path) -> Result<Model> {
    if path.is_dir() {
        if let Some(p) = run_dir_weights(path) {
            return load_weights(model, &p);
        }
        bail!(
            "{}: no model.bpk or checkpoint/model.bpk in this directory",
            path.display()
        );
    }
    match path.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => Ok(torch::load_safetensors(model, path)?),
        Some("bpk") => Ok(bpk::load_bpk(model, path)?),
        _ => bail!(
            "{}: unknown weights format; expected a .safetensors (PyTorch layout) or .bpk (burn) file",
            path.display()
        ),
    }
}

/// The content hash (SHA-256) of the weights `path` names (a file, or a run directory's weights).
pub(super) fn file_hash(path: &Path) -> Result<String> {
    let file = if path.is_dir() {
        run_dir_weights(path).unwrap_or_else(|| path.to_path_buf())
    } else {
        path.to_path_buf()
    };
    bulwark_data::sha256_file(&file).with_context(|| format!("hashing {}", file.display()))
}

/// The flags of `flags` that are given, as a TOML table keyed by field name.
pub(super) fn flag_table(flags: &impl serde::Serialize) -> Result<toml::Table> {
    toml::Table::try_from(flags).context("command-line flags")
}

/// `cfg` with the given `flags` set, through serde: the configuration's fields keep their values
/// (or the library's defaults) where no flag is given.
pub(super) fn overlay(cfg: TrainConfig, flags: &impl serde::Serialize) -> Result<TrainConfig> {
    let mut table = toml::Table::try_from(&cfg).context("the configuration")?;
    table.extend(flag_table(flags)?);
    table
        .try_into()
        .map_err(|e: toml::de::Error| anyhow::anyhow!("configuration flags: {}", e.message()))
}
