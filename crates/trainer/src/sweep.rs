//! Regularization trade-off sweeps: one training run per strength, then a table and a plot of
//! train, test and (with an adversarial method) robust accuracy against the strength.
//!
//! Each run lives in its own directory under the sweep's and is an ordinary run: a killed sweep
//! continues where it stopped (finished runs are read back from their `sweep-point.json`, an
//! interrupted one resumes from its checkpoint).

use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use bulwark_reg_core::{Constraint, ConstraintKind, Penalty, PenaltyKind};
use serde::{Deserialize, Serialize};

use crate::{Checkpoint, DeviceSet, JobOptions, Mixing, TrainConfig, TrainError, run_job};
use bulwark_eval::write_atomic;
use bulwark_eval::{RunLock, Shard, ShardManifest, read_shards};
use bulwark_eval::{Series, labelled_plot_svg};

/// The regularizer a sweep varies; the swept value is its strength.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SweepReg {
    /// L1 penalty `λ·Σ|w|` on every weight.
    L1,
    /// L2 penalty `λ·Σw²` on every weight.
    L2,
    /// Group lasso over output units.
    GroupLasso,
    /// Orthogonality penalty.
    Orthogonality,
    /// Decoupled weight decay `w ← (1 − lr·λ)·w`.
    WeightDecay,
    /// Proximal L1 (soft-thresholding by `lr·λ`).
    ProxL1,
    /// Label smoothing `ε = λ`.
    LabelSmoothing,
    /// Mixup with `α = λ`.
    Mixup,
    /// CutMix with `α = λ`.
    Cutmix,
}

impl SweepReg {
    /// Every name `FromStr` accepts.
    pub const NAMES: &'static str = "l1, l2, group-lasso, orthogonality, weight-decay, prox-l1, \
                                     label-smoothing, mixup, cutmix";

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            SweepReg::L1 => "l1",
            SweepReg::L2 => "l2",
            SweepReg::GroupLasso => "group-lasso",
            SweepReg::Orthogonality => "orthogonality",
            SweepReg::WeightDecay => "weight-decay",
            SweepReg::ProxL1 => "prox-l1",
            SweepReg::LabelSmoothing => "label-smoothing",
            SweepReg::Mixup => "mixup",
            SweepReg::Cutmix => "cutmix",
        }
    }

    /// `base` with this regularizer at strength `value` (0: the regularizer is left out, the
    /// sweep's baseline).
    pub fn apply(self, base: &TrainConfig, value: f64) -> Result<TrainConfig, TrainError> {
        if !(value.is_finite() && value >= 0.0) {
            return Err(TrainError::Settings {
                what: "sweep settings",
                problem: format!("sweep values must be finite and >= 0, got {value}"),
            });
        }
        let mut cfg = base.clone();
        if value == 0.0 {
            cfg.validate()?;
            return Ok(cfg);
        }
        let penalty = |kind| Penalty::new(kind, value);
        match self {
            SweepReg::L1 => cfg.penalties.push(penalty(PenaltyKind::L1)),
            SweepReg::L2 => cfg.penalties.push(penalty(PenaltyKind::L2)),
            SweepReg::GroupLasso => cfg.penalties.push(penalty(PenaltyKind::GroupLasso)),
            SweepReg::Orthogonality => cfg.penalties.push(penalty(PenaltyKind::Orthogonality)),
            SweepReg::WeightDecay => {
                cfg.constraints
                    .push(Constraint::new(ConstraintKind::DecoupledDecay {
                        weight_decay: value,
                    }))
            }
            SweepReg::ProxL1 => cfg
                .constraints
                .push(Constraint::new(ConstraintKind::ProxL1 { lambda: value })),
            SweepReg::LabelSmoothing => cfg.label_smoothing = value,
            SweepReg::Mixup => cfg.mixing = Mixing::Mixup { alpha: value },
            SweepReg::Cutmix => cfg.mixing = Mixing::Cutmix { alpha: value },
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

impl FromStr for SweepReg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "l1" => SweepReg::L1,
            "l2" => SweepReg::L2,
            "group-lasso" => SweepReg::GroupLasso,
            "orthogonality" => SweepReg::Orthogonality,
            "weight-decay" => SweepReg::WeightDecay,
            "prox-l1" => SweepReg::ProxL1,
            "label-smoothing" => SweepReg::LabelSmoothing,
            "mixup" => SweepReg::Mixup,
            "cutmix" => SweepReg::Cutmix,
            other => {
                return Err(format!(
                    "unknown regularizer `{other}`; known: {}",
                    Self::NAMES
                ));
            }
        })
    }
}

/// A sweep: the base configuration, the regularizer and its values.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepSpec {
    /// Everything but the swept regularizer (method, epochs, ...).
    pub base: TrainConfig,
    /// The regularizer.
    pub reg: SweepReg,
    /// Its strengths, in the order they are run and plotted.
    pub values: Vec<f64>,
    /// PGD steps of the robust test evaluation (adversarial methods; step `2.5·eps/steps`,
    /// random start).
    pub robust_steps: usize,
    /// Test images attacked for robust accuracy (all when `None`).
    pub robust_limit: Option<usize>,
}

/// One run's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepPointResult {
    /// The strength.
    pub value: f64,
    /// The run directory.
    pub run_dir: PathBuf,
    /// Accuracy on the training images (final model, inference mode).
    pub train_acc: f64,
    /// Clean test accuracy.
    pub test_acc: f64,
    /// PGD test accuracy at the method's radius (adversarial methods).
    pub robust_acc: Option<f64>,
    /// Epochs trained.
    pub epochs: usize,
    /// Training seconds.
    pub train_seconds: f64,
    /// The run's configuration (TOML), which identifies it on a later sweep.
    pub config_toml: String,
}

/// The sweep's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepReport {
    /// The regularizer.
    pub reg: SweepReg,
    /// The training method.
    pub method: String,
    /// Model and dataset.
    pub model: String,
    /// Dataset.
    pub dataset: String,
    /// One entry per value.
    pub points: Vec<SweepPointResult>,
}

impl SweepReport {
    /// The report of `spec` with these points.
    fn of(spec: &SweepSpec, points: Vec<SweepPointResult>) -> Self {
        Self {
            reg: spec.reg,
            method: spec.base.method.name().into(),
            model: spec.base.model.clone(),
            dataset: spec.base.dataset.clone(),
            points,
        }
    }
}

/// How [`run_sweep`] runs besides the spec.
#[derive(Debug, Clone)]
pub struct SweepOptions {
    /// The sweep directory: one sub-directory per value, and the table and plot.
    pub out_dir: PathBuf,
    /// Template for each run's job options (`run_dir` and `resume` are set per run).
    pub job: JobOptions,
    /// Run only this shard's strengths ([`Shard::range`] of the values, in order) and leave
    /// `shard.json` for [`merge_sweep`] instead of the table and plot. `out_dir` is then the
    /// shard's own directory.
    pub shard: Option<Shard>,
}

fn value_label(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if (1e-3..1e3).contains(&v.abs()) {
        format!("{v}")
    } else {
        format!("{v:e}")
    }
}

/// What a sweep writes into its directory besides one run directory per strength.
pub const SWEEP_OUTPUTS: [&str; 4] = ["sweep.json", "sweep.md", "sweep.svg", RunLock::FILE];

/// Runs (or continues) the sweep and writes `sweep.json`, `sweep.md` and `sweep.svg` into the
/// sweep directory.
pub fn run_sweep(
    spec: &SweepSpec,
    devices: &DeviceSet,
    opts: &SweepOptions,
) -> Result<SweepReport, TrainError> {
    if spec.values.is_empty() {
        return Err(TrainError::Settings {
            what: "sweep settings",
            problem: "a sweep needs at least one value".into(),
        });
    }
    // Every configuration is checked before the first run starts.
    let mut base = spec.base.clone();
    if base.method.is_adversarial() {
        // The robust column: PGD at the method's radius on the test images.
        base.final_eval.pgd_steps = spec.robust_steps;
        base.final_eval.limit = spec.robust_limit;
    }
    let configs: Vec<TrainConfig> = spec
        .values
        .iter()
        .map(|&v| spec.reg.apply(&base, v))
        .collect::<Result<_, _>>()?;
    // One sweep per directory at a time (each run also locks its own sub-directory).
    let _lock = RunLock::acquire(&opts.out_dir)?;
    let started = std::time::Instant::now();
    let mut points = Vec::new();
    let range = opts
        .shard
        .map_or(0..spec.values.len(), |s| s.range(spec.values.len()));
    for (&value, cfg) in spec.values[range.clone()]
        .iter()
        .zip(&configs[range.clone()])
    {
        let run_dir = opts
            .out_dir
            .join(format!("{}-{}", spec.reg.name(), value_label(value)));
        let done = run_dir.join("sweep-point.json");
        if let Some(p) = read_point(&done)
            && cfg.is_described_by(&p.config_toml)
        {
            tracing::info!("{}: already done", run_dir.display());
            points.push(p);
            continue;
        }
        let mut job = opts.job.clone();
        job.run_dir = run_dir.clone();
        job.resume = match Checkpoint::find(&run_dir) {
            Some(dir) => {
                let state = Checkpoint::read_state(&dir)?;
                if !cfg.is_described_by(&state.config_toml) {
                    return Err(TrainError::Checkpoint {
                        path: dir,
                        reason: format!(
                            "{} holds a run with another configuration (an earlier sweep with \
                             other settings); sweep into another directory (--out) or remove it",
                            run_dir.display()
                        ),
                    });
                }
                true
            }
            None => false,
        };
        job.evaluate_train = true;
        job.stop_after_epoch = None;
        tracing::info!(
            "sweep {} = {}: {}",
            spec.reg.name(),
            value_label(value),
            run_dir.display()
        );
        let out = run_job(cfg, devices, &job)?;
        let (Some(test), Some(train)) = (out.test, out.train_eval) else {
            return Err(TrainError::Settings {
                what: "sweep settings",
                problem: format!(
                    "{}: the run ended without its evaluation",
                    run_dir.display()
                ),
            });
        };
        let p = SweepPointResult {
            value,
            run_dir: run_dir.clone(),
            train_acc: train.accuracy,
            test_acc: test.accuracy,
            // The run's headline: with an evaluator preset configured, the per-sample worst case
            // over PGD and the cascade; else PGD's.
            robust_acc: out
                .robust_eval
                .map(|e| e.robust_acc)
                .or(out.robust_test.map(|r| r.robust_accuracy)),
            epochs: out.history.len(),
            train_seconds: out.history.iter().map(|m| m.seconds).sum(),
            config_toml: cfg.to_toml(),
        };
        write_atomic(
            &done,
            serde_json::to_string_pretty(&p)
                .expect("point serializes")
                .as_bytes(),
        )?;
        points.push(p);
    }
    let report = SweepReport::of(spec, points);
    match opts.shard {
        Some(shard) => {
            let to_json = |what: &'static str, v: serde_json::Result<serde_json::Value>| {
                v.map_err(|e| TrainError::Settings {
                    what: "sweep settings",
                    problem: format!("cannot serialize the {what}: {e}"),
                })
            };
            ShardManifest {
                kind: "sweep".into(),
                shard,
                fingerprint: sweep_fingerprint(spec, &opts.job.backend),
                units: spec.values.len(),
                range,
                seconds: started.elapsed().as_secs_f64(),
                bulwark_version: env!("CARGO_PKG_VERSION").into(),
                cwd: std::env::current_dir().map_err(TrainError::io("."))?,
                command: to_json("sweep", serde_json::to_value(spec))?,
                partial: to_json("sweep points", serde_json::to_value(&report.points))?,
            }
            .write(&opts.out_dir)?;
        }
        None => write_sweep(&opts.out_dir, &report, spec)?,
    }
    Ok(report)
}

/// What identifies a sweep across its shards: every setting of every run, and the backend.
fn sweep_fingerprint(spec: &SweepSpec, backend: &str) -> String {
    let text = format!(
        "{}|{backend}|{}",
        serde_json::to_string(spec).unwrap_or_default(),
        env!("CARGO_PKG_VERSION")
    );
    bulwark_data::content_hash([text.as_bytes()])
}

/// Combines the shards of one sweep ([`SweepOptions::shard`]) into the table, plot and
/// `sweep.json` an unsharded sweep writes, in `out_dir`; each point's `run_dir` is where its
/// shard trained it. Refuses shards of different sweeps (any setting, or the backend), and a
/// missing, duplicated or unfinished shard.
pub fn merge_sweep(shard_dirs: &[PathBuf], out_dir: &Path) -> Result<SweepReport, TrainError> {
    let shards = read_shards(shard_dirs)?;
    let (first_dir, first) = &shards[0];
    let foreign = |dir: &Path, reason: String| TrainError::Checkpoint {
        path: dir.to_path_buf(),
        reason,
    };
    if first.kind != "sweep" {
        return Err(foreign(
            first_dir,
            format!("a shard of `{}`, not of a sweep", first.kind),
        ));
    }
    let spec: SweepSpec = first.command(first_dir)?;
    let mut points = Vec::new();
    for (dir, m) in &shards {
        let part: Vec<SweepPointResult> = m.partial(dir)?;
        if part.len() != m.range.len() {
            return Err(foreign(
                dir,
                format!(
                    "shard {} holds {} of its {} strengths",
                    m.shard,
                    part.len(),
                    m.range.len()
                ),
            ));
        }
        points.extend(part);
    }
    std::fs::create_dir_all(out_dir).map_err(TrainError::io(out_dir))?;
    let _lock = RunLock::acquire(out_dir)?;
    let report = SweepReport::of(&spec, points);
    write_sweep(out_dir, &report, &spec)?;
    Ok(report)
}

fn read_point(path: &Path) -> Option<SweepPointResult> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

fn write_sweep(dir: &Path, r: &SweepReport, spec: &SweepSpec) -> Result<(), TrainError> {
    write_atomic(
        &dir.join("sweep.json"),
        serde_json::to_string_pretty(r)
            .expect("sweep serializes")
            .as_bytes(),
    )?;
    let at = |f: &dyn Fn(&SweepPointResult) -> Option<f64>| -> Vec<(f64, f64)> {
        r.points
            .iter()
            .enumerate()
            .filter_map(|(i, p)| f(p).map(|v| (i as f64, 100.0 * v)))
            .collect()
    };
    let mut series = vec![
        Series {
            name: "train".into(),
            points: at(&|p| Some(p.train_acc)),
        },
        Series {
            name: "test".into(),
            points: at(&|p| Some(p.test_acc)),
        },
    ];
    let eps = spec.base.final_eps().unwrap_or_default();
    let robust_name = match spec.base.final_eval.preset {
        Some(preset) => format!(
            "worst case of PGD-{} and the {preset} cascade",
            spec.robust_steps
        ),
        None => format!("PGD-{}", spec.robust_steps),
    };
    if r.points.iter().any(|p| p.robust_acc.is_some()) {
        series.push(Series {
            name: format!("test, {robust_name} eps {eps}"),
            points: at(&|p| p.robust_acc),
        });
    }
    let ticks: Vec<(f64, String)> = r
        .points
        .iter()
        .enumerate()
        .map(|(i, p)| (i as f64, value_label(p.value)))
        .collect();
    let svg = labelled_plot_svg(
        &format!(
            "{} on {} ({}): accuracy against {}",
            r.model,
            r.dataset,
            r.method,
            r.reg.name()
        ),
        &format!("{} strength", r.reg.name()),
        "accuracy (%)",
        &ticks,
        &series,
    );
    write_atomic(&dir.join("sweep.svg"), svg.as_bytes())?;

    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Sweep: {} on {} ({}), {} strength\n",
        r.model,
        r.dataset,
        r.method,
        r.reg.name()
    );
    let robust = r.points.iter().any(|p| p.robust_acc.is_some());
    let _ = writeln!(
        md,
        "| {} | train acc | test acc |{} epochs | train s | run |\n|---|---|---|{}---|---|---|",
        r.reg.name(),
        if robust {
            format!(" {robust_name} acc (eps {eps}) |")
        } else {
            String::new()
        },
        if robust { "---|" } else { "" }
    );
    for p in &r.points {
        let _ = writeln!(
            md,
            "| {} | {:.2} % | {:.2} % |{} {} | {:.0} | `{}` |",
            value_label(p.value),
            100.0 * p.train_acc,
            100.0 * p.test_acc,
            match (robust, p.robust_acc) {
                (true, Some(a)) => format!(" {:.2} % |", 100.0 * a),
                (true, None) => " – |".to_string(),
                (false, _) => String::new(),
            },
            p.epochs,
            p.train_seconds,
            p.run_dir.display()
        );
    }
    let _ = writeln!(md, "\n![accuracy against strength](sweep.svg)");
    Ok(write_atomic(&dir.join("sweep.md"), md.as_bytes())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_regularizer_lands_in_the_config_and_zero_is_the_baseline() {
        let base = TrainConfig::new();
        assert_eq!(
            SweepReg::L2.apply(&base, 0.0).unwrap().to_toml(),
            base.to_toml()
        );
        let c = SweepReg::L2.apply(&base, 1e-4).unwrap();
        assert_eq!(c.penalties, vec![Penalty::new(PenaltyKind::L2, 1e-4)]);
        let c = SweepReg::WeightDecay.apply(&base, 0.1).unwrap();
        assert_eq!(
            c.constraints[0].kind,
            ConstraintKind::DecoupledDecay { weight_decay: 0.1 }
        );
        assert_eq!(
            SweepReg::Mixup.apply(&base, 0.2).unwrap().mixing,
            Mixing::Mixup { alpha: 0.2 }
        );
        assert!(SweepReg::LabelSmoothing.apply(&base, 1.5).is_err());
        assert!(SweepReg::L1.apply(&base, -1.0).is_err());
        assert!("l3".parse::<SweepReg>().unwrap_err().contains("known: l1"));
        for name in SweepReg::NAMES.split(", ") {
            assert_eq!(name.parse::<SweepReg>().unwrap().name(), name);
        }
        assert_eq!(value_label(1e-5), "1e-5");
        assert_eq!(value_label(0.01), "0.01");
    }
}
