//! The run report: `report.md`, `report.json` and SVG training curves.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::checkpoint::write_atomic;
use crate::{EpochMetrics, EvalResult, Series, TrainConfig, TrainError, line_plot_svg};

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
}

/// Writes `report.md`, `report.json`, `accuracy.svg` and `loss.svg` into `run_dir`; returns the
/// path of `report.md`.
pub fn write_report(run_dir: &Path, r: &ReportInputs) -> Result<PathBuf, TrainError> {
    let epochs = |f: fn(&EpochMetrics) -> f64| -> Vec<(f64, f64)> {
        r.history.iter().map(|m| (m.epoch as f64, f(m))).collect()
    };
    let acc_svg = line_plot_svg(
        &format!("{} on {}: accuracy", r.config.model, r.config.dataset),
        "epoch",
        "accuracy (%)",
        &[
            Series {
                name: "train".into(),
                points: epochs(|m| 100.0 * m.train_acc),
            },
            Series {
                name: "validation".into(),
                points: epochs(|m| 100.0 * m.valid_acc),
            },
        ],
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

    let json = serde_json::json!({
        "bulwark_version": r.bulwark_version,
        "command": r.command,
        "model": r.config.model,
        "dataset": r.config.dataset,
        "backend": r.backend,
        "data_source": r.data_source,
        "threat_model": "none (clean training)",
        "clean_acc": r.test.accuracy,
        "test": r.test,
        "best_valid": r.best.map(|(epoch, acc)| serde_json::json!({"epoch": epoch, "accuracy": acc})),
        "n_train": r.n_train,
        "n_valid": r.n_valid,
        "train_seconds": r.train_seconds,
        "resumed_from_epoch": r.resumed_from,
        "config": r.config,
        "epochs": r.history,
    });
    write_atomic(
        &run_dir.join("report.json"),
        serde_json::to_string_pretty(&json)
            .expect("report serializes")
            .as_bytes(),
    )?;

    let mut md = String::new();
    let c = &r.config;
    let _ = writeln!(md, "# Bulwark run: {} on {}\n", c.model, c.dataset);
    let _ = writeln!(md, "Command: `{}`  ", r.command);
    let _ = writeln!(
        md,
        "Bulwark {}, backend `{}`, data from {}.\n",
        r.bulwark_version, r.backend, r.data_source
    );
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
    if let Some((epoch, acc)) = r.best {
        let _ = writeln!(
            md,
            "| best validation accuracy | {:.2} % (epoch {epoch}) |",
            100.0 * acc
        );
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
    let _ = writeln!(
        md,
        "\nThis run trains without adversarial examples and measures clean accuracy only.\n"
    );
    let _ = writeln!(md, "## Training curves\n");
    let _ = writeln!(md, "![accuracy](accuracy.svg)\n\n![loss](loss.svg)\n");
    let _ = writeln!(md, "## Epochs\n");
    let _ = writeln!(
        md,
        "| epoch | lr | train loss | train acc | valid loss | valid acc | seconds | img/s |\n|---|---|---|---|---|---|---|---|"
    );
    for m in &r.history {
        let _ = writeln!(
            md,
            "| {} | {:.2e} | {:.4} | {:.2} % | {:.4} | {:.2} % | {:.1} | {:.0} |",
            m.epoch,
            m.lr,
            m.train_loss,
            100.0 * m.train_acc,
            m.valid_loss,
            100.0 * m.valid_acc,
            m.seconds,
            m.images_per_sec
        );
    }
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
    let path = run_dir.join("report.md");
    write_atomic(&path, md.as_bytes())?;
    Ok(path)
}
