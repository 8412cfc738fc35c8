//! `bulwark sweep`: a regularization-strength sweep.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use bulwark_trainer::{
    BackendKind, DeviceSet, JobOptions, SWEEP_OUTPUTS, SweepOptions, SweepReg, SweepSpec,
    TrainConfig, run_sweep,
};

use bulwark_eval::Shard;

use crate::args::SweepArgs;
use crate::guard::Inputs;

use super::train::method_from_flags;
use super::{fetch_options, overlay};

pub(super) fn sweep(a: SweepArgs, backend: BackendKind) -> Result<()> {
    let devices = DeviceSet::single(backend)?;
    let reg: SweepReg = a.reg.parse().map_err(anyhow::Error::msg)?;
    let mut base = match &a.config {
        Some(p) => TrainConfig::from_toml_file(p)?,
        None => TrainConfig::new(),
    };
    base = overlay(base, &a.set)?;
    base.method = method_from_flags(a.method.as_deref(), a.eps, &base.method)?;
    base.validate()?;
    if a.robust_steps == 0 && base.method.is_adversarial() {
        bail!("--robust-steps must be at least 1");
    }
    let out = a.out.unwrap_or_else(|| {
        let method = match base.method.eps() {
            Some(eps) => format!("-{}-eps{eps}", base.method.name()),
            None => String::new(),
        };
        PathBuf::from("runs").join(format!(
            "sweep-{}-{}-{}{method}",
            base.model,
            bulwark_trainer::dataset_label(&base.dataset),
            reg.name()
        ))
    });
    let shard = a.shard.as_deref().map(Shard::parse).transpose()?;
    let base_out = out.clone();
    let out = match shard {
        Some(s) => out.join(s.dir_name()),
        None => out,
    };
    if let Some(config) = &a.config {
        let mut inputs = Inputs::new();
        inputs.file("the configuration file", config);
        inputs.refuse_in(&out, &SWEEP_OUTPUTS, "--out")?;
        // Every sub-directory of a sweep is one of its runs, whose files it writes.
        if let (Ok(c), Ok(o)) = (config.canonicalize(), out.canonicalize())
            && c.starts_with(&o)
            && c.parent() != Some(o.as_path())
        {
            bail!(
                "refusing to sweep into {}: the configuration file {} lies in one of its run \
                 directories, whose files the sweep writes; choose another --out",
                out.display(),
                config.display()
            );
        }
    }
    let mut job = JobOptions::new(out.clone());
    job.progress = !a.no_progress;
    job.fetch = fetch_options(a.data_dir);
    job.backend = backend.to_string();
    job.command = std::env::args().collect::<Vec<_>>().join(" ");
    let report = run_sweep(
        &SweepSpec {
            base,
            reg,
            values: a.lambda,
            robust_steps: a.robust_steps,
            robust_limit: a.robust_limit,
        },
        &devices,
        &SweepOptions {
            out_dir: out.clone(),
            job,
            shard,
        },
    )?;
    if let Some(shard) = shard {
        for p in &report.points {
            println!(
                "{} = {}: train {:.2} %, test {:.2} %{}  ({})",
                reg.name(),
                p.value,
                100.0 * p.train_acc,
                100.0 * p.test_acc,
                p.robust_acc
                    .map(|r| format!(", robust {:.2} %", 100.0 * r))
                    .unwrap_or_default(),
                p.run_dir.display()
            );
        }
        println!(
            "shard {shard}: {} of the strengths; when every shard has run: bulwark merge {}",
            report.points.len(),
            base_out.join("shard-*").display()
        );
        return Ok(());
    }
    println!();
    print!(
        "{}",
        std::fs::read_to_string(out.join("sweep.md")).context("reading sweep.md")?
    );
    println!();
    println!(
        "Sweep of {} runs: {} (table), {} (plot)",
        report.points.len(),
        out.join("sweep.md").display(),
        out.join("sweep.svg").display()
    );
    Ok(())
}
