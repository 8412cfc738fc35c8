//! `bulwark merge`: the shards of an evaluation, attack or sweep combined into the report an
//! unsharded run writes.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use bulwark_eval::{RunLock, common_parent, merge_attack, read_shards, write_attack_outputs};
use bulwark_trainer::{BackendKind, merge_sweep};
use serde::Deserialize;

use crate::args::{EvalArgs, MergeArgs};

/// What an evaluation shard records for its merge.
#[derive(Deserialize)]
struct EvalCommand {
    args: EvalArgs,
    backend: String,
}

pub(super) fn merge(a: MergeArgs) -> Result<()> {
    let absolute =
        |p: &PathBuf| std::path::absolute(p).with_context(|| format!("resolving {}", p.display()));
    let dirs: Vec<PathBuf> = a.dirs.iter().map(absolute).collect::<Result<_>>()?;
    let out = match &a.out {
        Some(o) => absolute(o)?,
        None => common_parent(&dirs).context(
            "the shard directories are not all in one directory; say where the merged report \
             goes with --out",
        )?,
    };
    if let Some(d) = dirs.iter().find(|d| **d == out) {
        bail!(
            "--out {} is one of the shard directories; the merged report goes beside them",
            d.display()
        );
    }
    // Every shard of one job, once, finished: checked before anything is loaded or written.
    let shards = read_shards(&dirs)?;
    let (first_dir, first) = &shards[0];
    match first.kind.as_str() {
        "eval" => {
            let cmd: EvalCommand = first.command(first_dir)?;
            let backend: BackendKind = cmd.backend.parse().map_err(anyhow::Error::msg)?;
            let mut args = cmd.args;
            args.shard = None;
            args.resume = false;
            args.out = Some(out);
            args.no_progress = a.no_progress;
            // The shards' weights, data and configuration files are found as they found them:
            // relative paths in their settings are relative to the directory they ran in.
            if first.cwd.is_dir() {
                std::env::set_current_dir(&first.cwd)
                    .with_context(|| format!("entering {}", first.cwd.display()))?;
            } else {
                tracing::warn!(
                    "the shards ran in {}, which is not here: their relative paths (weights, \
                     data) are taken from the current directory",
                    first.cwd.display()
                );
            }
            super::eval::run_eval(args, backend, Some(dirs))
        }
        "attack" => {
            let (context, summary) = merge_attack(&dirs)?;
            let _lock = RunLock::acquire(&out)?;
            let (json, png) = write_attack_outputs(&out, &context, &summary)?;
            println!(
                "{} {} merged from {} shards on {} {} images: clean {:.2} %, adversarial {:.2} %, \
                 robust {:.2} %",
                context.model,
                summary.attack,
                shards.len(),
                summary.n,
                context.dataset,
                100.0 * summary.clean_accuracy,
                100.0 * summary.adversarial_accuracy,
                100.0 * summary.robust_accuracy
            );
            println!("summary: {}", json.display());
            if !summary.examples.is_empty() {
                println!("examples: {}", png.display());
            }
            Ok(())
        }
        "sweep" => {
            let report = merge_sweep(&dirs, &out)?;
            print!(
                "{}",
                std::fs::read_to_string(out.join("sweep.md")).context("reading sweep.md")?
            );
            println!(
                "\nSweep of {} runs merged from {} shards: {} (table), {} (plot)",
                report.points.len(),
                shards.len(),
                out.join("sweep.md").display(),
                out.join("sweep.svg").display()
            );
            Ok(())
        }
        other => bail!(
            "{}: a shard of `{other}`, which this version cannot merge",
            first_dir.display()
        ),
    }
}
