//! The run report: `report.md`, `report.json` and SVG training curves.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::{EpochMetrics, StopReason, TrainConfig, TrainError};
use bulwark_eval::write_atomic;
use bulwark_eval::{AttackSummary, EvalResult, RobustReport, Series, line_plot_svg};

/// Everything the report shows.
#[derive(Debug, Clone, Serialize)]
pub struct ReportInputs {
    /// The command that produced the run.
    pub command: String,
    /// Bulwark version.
    pub bulwark_version: String,
    /// Backend used.
    pub backend: String,
    /// Where the dataset files came from (the directory the user named, and the verified copy
    /// used when it differs).
    pub data_source: String,
    /// The configuration.
    pub config: TrainConfig,
    /// Per-epoch metrics.
    pub history: Vec<EpochMetrics>,
    /// Best validation epoch and accuracy.
    pub best: Option<(usize, f64)>,
    /// Clean accuracy on the test set with the final model.
    pub test: EvalResult,
    /// Number of training images.
    pub n_train: usize,
    /// Number of validation images.
    pub n_valid: usize,
    /// Total training seconds (all epochs, including those before a resume).
    pub train_seconds: f64,
    /// The epoch a resume continued from, if any.
    pub resumed_from: Option<usize>,
    /// Why training ended before its last epoch, if it did.
    pub stopped: Option<StopReason>,
    /// PGD-with-restarts test accuracy of the final model, when measured.
    pub robust_test: Option<AttackSummary>,
    /// The evaluator's result, when run (its own report is in `eval/`).
    #[serde(skip)]
    pub robust_eval: Option<RobustReport>,
    /// Exactly-zero entries per weight `(path, zeros, total)`, for runs with L1-type penalties
    /// or proximal L1.
    pub sparsity: Option<Vec<(String, usize, usize)>>,
}

impl ReportInputs {
    /// Whether the run measured robust validation accuracy (an adversarial method).
    fn adversarial(&self) -> bool {
        self.history.iter().any(|m| m.valid_robust_acc.is_some())
    }

    /// The robust accuracy to quote, with what it is: the per-sample worst case over every
    /// attack the final evaluation ran (the evaluator's report already folds PGD into it), or
    /// PGD's alone when only PGD ran.
    pub fn headline(&self) -> Option<(f64, String)> {
        match (&self.robust_eval, &self.robust_test) {
            (Some(e), _) => {
                let mut parts: Vec<String> = e
                    .per_attack
                    .iter()
                    .map(|a| {
                        if a.name == "cascade" {
                            format!("the `{}` cascade", e.preset)
                        } else {
                            a.name.clone()
                        }
                    })
                    .collect();
                if e.probe_broken > 0 {
                    parts.push("the Square probe".into());
                }
                Some((
                    e.robust_acc,
                    format!(
                        "{} eps {}, {} images; per-sample worst case over {}",
                        e.threat_model,
                        e.eps,
                        e.n_examples,
                        parts.join(", ")
                    ),
                ))
            }
            (None, Some(a)) => Some((
                a.robust_accuracy,
                format!(
                    "{}, eps {}, {} images",
                    a.label(),
                    a.eps.unwrap_or_default(),
                    a.n
                ),
            )),
            (None, None) => None,
        }
    }
}

/// Writes `report.md`, `report.json`, `accuracy.svg` and `loss.svg` into `run_dir`; returns the
/// path of `report.md`.
pub fn write_report(run_dir: &Path, r: &ReportInputs) -> Result<PathBuf, TrainError> {
    write_plots(run_dir, r)?;
    write_atomic(
        &run_dir.join("report.json"),
        serde_json::to_string_pretty(&report_json(r))
            .expect("report serializes")
            .as_bytes(),
    )?;
    let md = [
        md_header(r),
        md_results(r),
        md_method(r),
        md_eps_table(r),
        md_epochs(r),
        md_sparsity(r),
        md_per_class(r),
    ]
    .concat();
    let path = run_dir.join("report.md");
    write_atomic(&path, md.as_bytes())?;
    Ok(path)
}

/// `accuracy.svg` and `loss.svg`: the training curves (with the adversarial ones when the run
/// measured them).
fn write_plots(run_dir: &Path, r: &ReportInputs) -> Result<(), TrainError> {
    let epochs = |f: fn(&EpochMetrics) -> f64| -> Vec<(f64, f64)> {
        r.history.iter().map(|m| (m.epoch as f64, f(m))).collect()
    };
    let mut acc_series = vec![
        Series {
            name: "train".into(),
            points: epochs(|m| 100.0 * m.train_acc),
        },
        Series {
            name: "validation".into(),
            points: epochs(|m| 100.0 * m.valid_acc),
        },
    ];
    if r.adversarial() {
        acc_series.push(Series {
            name: "train (adversarial)".into(),
            points: epochs(|m| 100.0 * m.train_adv_acc.unwrap_or(f64::NAN)),
        });
        acc_series.push(Series {
            name: "validation (PGD)".into(),
            points: epochs(|m| 100.0 * m.valid_robust_acc.unwrap_or(f64::NAN)),
        });
    }
    let acc_svg = line_plot_svg(
        &format!("{} on {}: accuracy", r.config.model, r.config.dataset),
        "epoch",
        "accuracy (%)",
        &acc_series,
    );
    let loss_svg = line_plot_svg(
        &format!("{} on {}: cross-entropy", r.config.model, r.config.dataset),
        "epoch",
        "loss",
        &[
            Series {
                name: "train".into(),
                points: epochs(|m| m.train_loss),
            },
            Series {
                name: "validation".into(),
                points: epochs(|m| m.valid_loss),
            },
        ],
    );
    write_atomic(&run_dir.join("accuracy.svg"), acc_svg.as_bytes())?;
    write_atomic(&run_dir.join("loss.svg"), loss_svg.as_bytes())?;

    Ok(())
}

/// `report.json`: the run's results, settings and every epoch's metrics.
fn report_json(r: &ReportInputs) -> serde_json::Value {
    serde_json::json!({
        "bulwark_version": r.bulwark_version,
        "command": r.command,
        "model": r.config.model,
        "dataset": r.config.dataset,
        "backend": r.backend,
        "data_source": r.data_source,
        "method": r.config.method.name(),
        "awp_gamma": r.config.awp.as_ref().map(|a| a.gamma),
        "threat_model": match r.config.method.eps() {
            Some(eps) => format!("{:?} eps {eps} (training)", r.config.norm),
            None => "none (clean training)".to_string(),
        },
        "clean_acc": r.test.accuracy,
        "robust_acc": r.headline().map(|(acc, _)| acc),
        "robust_acc_is": r.headline().map(|(_, what)| what),
        "robust_test": r.robust_test,
        "robust_eval": r.robust_eval.as_ref().map(|e| serde_json::json!({
            "report": "eval/report.json",
            "preset": e.preset,
            "threat_model": e.threat_model,
            "eps": e.eps,
            "n_examples": e.n_examples,
            "clean_acc": e.clean_acc,
            "robust_acc": e.robust_acc,
            "cascade_robust_acc": e.cascade_robust_acc,
            "per_attack": e.per_attack,
            "verified": e.verified,
            "probe_broken": e.probe_broken,
            "sweep": e.sweep,
            "flags_raised": e.raised().map(|f| f.check.clone()).collect::<Vec<_>>(),
        })),
        "stopped": r.stopped,
        "sparsity": r.sparsity.as_ref().map(|v| v.iter().map(|(path, zeros, total)| serde_json::json!({
            "param": path, "zeros": zeros, "total": total,
            "share": if *total == 0 { 0.0 } else { *zeros as f64 / *total as f64 },
        })).collect::<Vec<_>>()),
        "test": r.test,
        "best_valid": r.best.map(|(epoch, acc)| serde_json::json!({"epoch": epoch, "accuracy": acc})),
        "n_train": r.n_train,
        "n_valid": r.n_valid,
        "train_seconds": r.train_seconds,
        "resumed_from_epoch": r.resumed_from,
        "config": r.config,
        "epochs": r.history,
    })
}

/// The title and where the run came from.
fn md_header(r: &ReportInputs) -> String {
    let mut md = String::new();
    let c = &r.config;
    let _ = writeln!(md, "# Bulwark run: {} on {}\n", c.model, c.dataset);
    let _ = writeln!(md, "Command: `{}`  ", r.command);
    let _ = writeln!(
        md,
        "Bulwark {}, backend `{}`, data from {}.\n",
        r.bulwark_version, r.backend, r.data_source
    );
    md
}

/// The results table: clean accuracy, the headline robust accuracy, each attack's own number, the best epoch, how the run ended.
fn md_results(r: &ReportInputs) -> String {
    let mut md = String::new();
    let adversarial = r.adversarial();
    let _ = writeln!(md, "## Result\n");
    let _ = writeln!(md, "| metric | value |\n|---|---|");
    let _ = writeln!(
        md,
        "| clean test accuracy | **{:.2} %** ({} / {}) |",
        100.0 * r.test.accuracy,
        r.test.correct,
        r.test.n
    );
    let _ = writeln!(md, "| test cross-entropy | {:.4} |", r.test.loss);
    if let Some((acc, what)) = r.headline() {
        let _ = writeln!(
            md,
            "| **robust test accuracy** ({what}) | **{:.2} %** |",
            100.0 * acc
        );
    }
    if let Some(a) = &r.robust_test {
        let _ = writeln!(
            md,
            "| {} alone (eps {}, {} images) | {:.2} % |",
            a.label(),
            a.eps.unwrap_or_default(),
            a.n,
            100.0 * a.robust_accuracy
        );
    }
    if let Some(e) = &r.robust_eval {
        let raised: Vec<String> = e.raised().map(|f| f.check.clone()).collect();
        let _ = writeln!(
            md,
            "| evaluator `{}` cascade alone ({}, {} images){} | {:.2} % — [eval/report.md](eval/report.md); sanity flags raised: {} |",
            e.preset,
            e.threat_model,
            e.n_examples,
            if e.preset == "quick" {
                ", a cheaper upper bound than `standard`"
            } else {
                ""
            },
            100.0 * e.cascade_robust_acc,
            if raised.is_empty() {
                "none".to_string()
            } else {
                raised.join(", ")
            }
        );
        if let Some(v) = &e.verified {
            let _ = writeln!(
                md,
                "| verified robust accuracy ({}, {} eps {}: certified, a lower bound) | {:.2} % |",
                v.method,
                e.threat_model,
                e.eps,
                100.0 * v.verified_acc
            );
        }
        let _ = writeln!(
            md,
            "| evaluator attacks and AutoAttack | {} |",
            e.relation_to_autoattack()
        );
        if e.probe_broken > 0 {
            let _ = writeln!(
                md,
                "| Square probe of the sanity checks | broke {} more point(s) |",
                e.probe_broken
            );
        }
    }
    if let Some((epoch, acc)) = r.best {
        let what = if adversarial {
            "best robust validation accuracy (PGD)"
        } else {
            "best validation accuracy"
        };
        let _ = writeln!(md, "| {what} | {:.2} % (epoch {epoch}) |", 100.0 * acc);
    }
    if let Some(reason) = &r.stopped {
        let _ = writeln!(md, "| stopped early | {reason} |");
    }
    let _ = writeln!(
        md,
        "| training images / validation images | {} / {} |",
        r.n_train, r.n_valid
    );
    let _ = writeln!(
        md,
        "| training time (training steps, without evaluation) | {:.1} s over {} epochs |",
        r.train_seconds,
        r.history.len()
    );
    if let Some(e) = r.resumed_from {
        let _ = writeln!(md, "| resumed | after epoch {e} |");
    }
    md
}

/// What the method was and what the weights are.
fn md_method(r: &ReportInputs) -> String {
    let mut md = String::new();
    let c = &r.config;
    let adversarial = r.adversarial();
    if adversarial {
        let _ = writeln!(
            md,
            "\nMethod `{}`{}; the weights are those of the {} epoch. Robust validation accuracy is \
             PGD-{} on {} validation images at the training radius: a training signal, not an \
             evaluation (use `bulwark eval --eps` for that).\n",
            c.method.name(),
            match &c.awp {
                Some(a) => format!(
                    " with adversarial weight perturbation (γ = {}, from epoch {})",
                    a.gamma,
                    a.warmup_epochs + 1
                ),
                None => String::new(),
            },
            match c.keep {
                crate::Keep::Best => "best robust-validation",
                crate::Keep::Last => "last",
            },
            c.robust_valid_steps,
            c.robust_valid_size.min(r.n_valid)
        );
    } else {
        let _ = writeln!(md, "\nThis run trains without adversarial examples.\n");
    }
    md
}

/// Robust accuracy against eps from the final evaluation.
fn md_eps_table(r: &ReportInputs) -> String {
    let mut md = String::new();
    if let Some(e) = &r.robust_eval
        && !e.sweep.is_empty()
    {
        let _ = writeln!(md, "## Robust accuracy against eps (evaluator cascade)\n");
        let _ = writeln!(md, "| eps | robust accuracy |\n|---|---|");
        for p in &e.sweep {
            let _ = writeln!(md, "| {} | {:.2} % |", p.eps, 100.0 * p.robust_acc);
        }
        let _ = writeln!(
            md,
            "\n![robust accuracy against eps](eval/robust_vs_eps.svg)\n"
        );
    }
    md
}

/// The training curves and the per-epoch table.
fn md_epochs(r: &ReportInputs) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "## Training curves\n");
    let _ = writeln!(md, "![accuracy](accuracy.svg)\n\n![loss](loss.svg)\n");
    let _ = writeln!(md, "## Epochs\n");
    let _ = writeln!(
        md,
        "| epoch | lr | train loss | train acc | train adv acc | valid loss | valid acc | valid PGD acc | seconds | img/s | RSS (MiB) |\n|---|---|---|---|---|---|---|---|---|---|---|"
    );
    let pct = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{:.2} %", 100.0 * v));
    for m in &r.history {
        let _ = writeln!(
            md,
            "| {} | {:.2e} | {:.4} | {:.2} % | {} | {:.4} | {:.2} % | {} | {:.1} | {:.0} | {} |",
            m.epoch,
            m.lr,
            m.train_loss,
            100.0 * m.train_acc,
            pct(m.train_adv_acc),
            m.valid_loss,
            100.0 * m.valid_acc,
            pct(m.valid_robust_acc),
            m.seconds,
            m.images_per_sec,
            m.rss_mib.map_or("–".to_string(), |v| format!("{v:.0}"))
        );
    }
    md
}

/// Exactly-zero weights of the final model, when measured.
fn md_sparsity(r: &ReportInputs) -> String {
    let mut md = String::new();
    if let Some(sp) = &r.sparsity {
        let _ = writeln!(
            md,
            "\n## Sparsity (exactly-zero weights of the final model)\n"
        );
        let _ = writeln!(
            md,
            "| weight | zeros | entries | share |\n|---|---|---|---|"
        );
        for (path, zeros, total) in sp {
            let share = if *total == 0 {
                0.0
            } else {
                *zeros as f64 / *total as f64
            };
            let _ = writeln!(
                md,
                "| `{path}` | {zeros} | {total} | {:.2} % |",
                100.0 * share
            );
        }
    }
    md
}

/// Per-class test accuracy and the configuration.
fn md_per_class(r: &ReportInputs) -> String {
    let mut md = String::new();
    let c = &r.config;
    let _ = writeln!(md, "\n## Per-class test accuracy\n");
    let _ = writeln!(
        md,
        "| class | correct | total | accuracy |\n|---|---|---|---|"
    );
    for (class, (ok, total)) in r.test.per_class.iter().enumerate() {
        let acc = if *total == 0 {
            0.0
        } else {
            *ok as f64 / *total as f64
        };
        let _ = writeln!(md, "| {class} | {ok} | {total} | {:.2} % |", 100.0 * acc);
    }
    let _ = writeln!(md, "\n## Configuration\n\n```toml\n{}```", c.to_toml());
    md
}
