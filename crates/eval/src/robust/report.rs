//! The evaluation's report: `report.json`, `report.md`, `robust_vs_eps.svg`, `examples.png`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bulwark_attack_core::sanity::SanityFlag;
use serde::Serialize;

use crate::atomic::write_atomic;
use crate::error::EvalError;
use crate::grid::{GridImage, write_png_grid};
use crate::plot::{Series, line_plot_svg};
use crate::robust::RobustReport;

/// What was evaluated (model, weights, dataset, backend, version), recorded in the report: the
/// same record as an attack run's.
pub type EvalContext = crate::attack_run::AttackContext;

#[derive(Serialize)]
pub(super) struct ReportFile<'a> {
    #[serde(flatten)]
    context: &'a EvalContext,
    #[serde(flatten)]
    report: &'a RobustReport,
    software: BTreeMap<&'static str, String>,
}

/// Writes `report.json`, `report.md`, `robust_vs_eps.svg` and `examples.png` into `dir`
/// (atomically). Returns the Markdown report's path.
pub fn write_robust_report(
    dir: &Path,
    context: &EvalContext,
    report: &RobustReport,
) -> Result<PathBuf, EvalError> {
    std::fs::create_dir_all(dir).map_err(EvalError::io(dir))?;
    let mut software = BTreeMap::new();
    software.insert("bulwark", context.bulwark_version.clone());
    software.insert("burn", "0.22.1".to_string());
    let json = serde_json::to_vec_pretty(&ReportFile {
        context,
        report,
        software,
    })
    .map_err(|e| EvalError::Serialize {
        what: "the evaluation report",
        reason: e.to_string(),
    })?;
    write_atomic(&dir.join("report.json"), &json)?;

    let mut series = vec![Series {
        name: "cascade".into(),
        points: report
            .sweep
            .iter()
            .map(|p| (p.eps, 100.0 * p.robust_acc))
            .collect(),
    }];
    if report.sweep.len() > 1 {
        for (s, stage) in report.attacks.iter().enumerate().take(5) {
            series.push(Series {
                name: format!("after {}", stage.name),
                points: report
                    .sweep
                    .iter()
                    .map(|p| (p.eps, 100.0 * p.robust_acc_after[s]))
                    .collect(),
            });
        }
    }
    let svg = line_plot_svg(
        &format!(
            "{} robust accuracy, {} ({} images)",
            context.model, report.threat_model, report.n_examples
        ),
        "eps",
        "robust accuracy (%)",
        &series,
    );
    write_atomic(&dir.join("robust_vs_eps.svg"), svg.as_bytes())?;
    if !report.examples.is_empty() {
        let rows = vec![
            report.examples.iter().map(|e| e.0.clone()).collect(),
            report.examples.iter().map(|e| e.1.clone()).collect(),
            report
                .examples
                .iter()
                .map(|e| GridImage::amplified_difference(&e.0, &e.1))
                .collect::<Vec<_>>(),
        ];
        write_png_grid(&dir.join("examples.png"), &rows, 3)?;
    }
    let md = markdown(context, report);
    let path = dir.join("report.md");
    write_atomic(&path, md.as_bytes())?;
    Ok(path)
}

pub(super) fn markdown(ctx: &EvalContext, r: &RobustReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let pct = |v: f64| format!("{:.2} %", 100.0 * v);
    let _ = writeln!(
        s,
        "# Robustness evaluation: {} on {}\n",
        ctx.model, ctx.dataset
    );
    let _ = writeln!(
        s,
        "Weights `{}`, backend {}, Bulwark {}.\n",
        ctx.weights.display(),
        ctx.backend,
        ctx.bulwark_version
    );
    let raised: Vec<&SanityFlag> = r.raised().collect();
    if !raised.is_empty() {
        let _ = writeln!(
            s,
            "**Warning: {} sanity check(s) raised — the robust accuracy below may be \
             overestimated.** See the flags at the end.\n",
            raised.len()
        );
    }
    let _ = writeln!(s, "| | |\n|---|---|");
    let _ = writeln!(s, "| threat model | {} eps = {} |", r.threat_model, r.eps);
    let _ = writeln!(s, "| images | {} |", r.n_examples);
    let _ = writeln!(s, "| clean accuracy | {} |", pct(r.clean_acc));
    let _ = writeln!(
        s,
        "| **robust accuracy** (per-sample worst case over every attack below) | **{}** |",
        pct(r.robust_acc)
    );
    for a in &r.per_attack {
        let what = if a.name == "cascade" {
            format!("cascade alone ({}: {})", r.preset, names(r))
        } else {
            format!("{} alone", a.name)
        };
        let _ = writeln!(s, "| {what} | {} |", pct(a.robust_acc));
    }
    if let Some(v) = &r.verified {
        let _ = writeln!(
            s,
            "| **verified robust accuracy** ({}: certified, a lower bound; the attacks' headline is an upper bound) | **{}** |",
            v.method,
            pct(v.verified_acc)
        );
    }
    if r.probe_broken > 0 {
        let _ = writeln!(
            s,
            "| Square probe of the sanity checks | broke {} more point(s) |",
            r.probe_broken
        );
    }
    let _ = writeln!(
        s,
        "| attacks and AutoAttack | {} |",
        r.relation_to_autoattack()
    );
    // Attacks the caller ran (a training run's final PGD) are not part of `bulwark eval`.
    let others = r.per_attack.iter().any(|a| a.name != "cascade");
    match command(ctx, r) {
        Some(cmd) => {
            let _ = writeln!(
                s,
                "| reproduce{} | `{cmd}` |",
                if others {
                    " (the cascade and the probe; the other attacks above are the caller's)"
                } else {
                    ""
                }
            );
        }
        None => {
            let _ = writeln!(
                s,
                "| reproduce | through the library only: the model, dataset, box or attack settings come from code (`config` in report.json) |"
            );
        }
    }
    let _ = writeln!(s, "| seed | {} |", r.config.seed);
    let _ = writeln!(
        s,
        "| time | {:.1} s{} |\n",
        r.seconds,
        match (r.shards, r.resumed_chunks) {
            (Some(k), _) => format!(" (summed over {k} shards and their merge)"),
            (None, 0) => String::new(),
            (None, c) => format!(" (this run; {c} chunks resumed)"),
        }
    );
    let _ = writeln!(s, "## Cascade at eps = {}\n", r.eps);
    let _ = writeln!(
        s,
        "Each attack runs only on the points still robust; robust accuracy is cumulative.{}\n",
        if r.broken_at_smaller_eps > 0 {
            format!(
                " {} points were already broken at a smaller eps of the sweep (their example \
                 lies inside this ball too) and were not attacked again.",
                r.broken_at_smaller_eps
            )
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        s,
        "| attack | targets | restarts | attacked | broken | robust accuracy after | seconds |\n|---|---|---|---|---|---|---|"
    );
    for a in &r.attacks {
        let mut attack = a.attack.clone();
        let restarts = attack.options_mut().restarts;
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {:.1} |",
            a.name,
            a.target_classes.map_or("—".to_string(), |t| t.to_string()),
            restarts,
            a.attacked,
            a.broken,
            pct(a.robust_acc_after),
            a.seconds
        );
    }
    if r.sweep.len() > 1 {
        let _ = writeln!(s, "\n## Robust accuracy against eps (cascade)\n");
        let _ = writeln!(s, "![robust accuracy against eps](robust_vs_eps.svg)\n");
        let _ = writeln!(s, "| eps | robust accuracy |\n|---|---|");
        for p in &r.sweep {
            let _ = writeln!(s, "| {} | {} |", p.eps, pct(p.robust_acc));
        }
    }
    let _ = writeln!(s, "\n## Sanity checks\n");
    let _ = writeln!(s, "| check | status | evidence |\n|---|---|---|");
    for f in &r.flags {
        let status = match f.status {
            bulwark_attack_core::sanity::FlagStatus::Ok => "ok",
            bulwark_attack_core::sanity::FlagStatus::Raised => "**RAISED**",
            bulwark_attack_core::sanity::FlagStatus::NotChecked => "not checked",
        };
        let _ = writeln!(s, "| {} | {status} | {} |", f.check, f.evidence);
    }
    if !r.examples.is_empty() {
        let _ = writeln!(
            s,
            "\n## Examples\n\n![clean, adversarial, perturbation](examples.png)\n\nRows: clean, \
             adversarial, perturbation (amplified). Label → adversarial prediction: {}.",
            r.examples
                .iter()
                .map(|e| format!("{}→{}", e.2, e.3))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let _ = writeln!(
        s,
        "\nWorst-case inputs at eps = {}: `{}` (`x_adv`, `labels`).",
        r.eps,
        r.adversarial_file.display()
    );
    s
}

/// The `bulwark eval` command that repeats this evaluation (data from the fetch chain), when the
/// command line can: a zoo model, a dataset `bulwark eval` can name, a known backend, the
/// default box, and an attack list the flags can give.
pub(super) fn command(ctx: &EvalContext, r: &RobustReport) -> Option<String> {
    let c = &r.config;
    // Evaluations record `<name>/test`; a folder's name holds slashes itself.
    let dataset = ctx.dataset.strip_suffix("/test").unwrap_or(&ctx.dataset);
    let zoo = bulwark_models::models().iter().any(|m| m.name == ctx.model);
    let default_box = c.bounds.lo == 0.0 && c.bounds.hi == 1.0;
    if !zoo || !bulwark_data::is_dataset_name(dataset) || ctx.backend.is_empty() || !default_box {
        return None;
    }
    let list = r.command_line_list()?;
    let sweep = if c.eps_sweep.is_empty() {
        String::new()
    } else {
        let radii: Vec<String> = c.eps_sweep.iter().map(|e| e.to_string()).collect();
        format!(" --eps-sweep {}", radii.join(","))
    };
    Some(format!(
        "bulwark eval --model {} --weights {} --dataset {} --backend {} --norm {} --eps {} \
         {list}{sweep} --limit {} --seed {} --batch-size {} --probe-size {} --probe-queries {}",
        ctx.model,
        shell_word(&ctx.weights.display().to_string()),
        shell_word(dataset),
        ctx.backend,
        r.threat_model.to_ascii_lowercase(),
        r.eps,
        r.n_examples,
        c.seed,
        c.batch_size,
        c.probe_size,
        c.probe_queries
    ))
}

/// `word`, single-quoted when a shell would split or expand it.
fn shell_word(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+:=,@%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

pub(super) fn names(r: &RobustReport) -> String {
    r.attacks
        .iter()
        .map(|a| a.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::shell_word;

    #[test]
    fn shell_words_are_quoted_only_when_a_shell_would_split_them() {
        assert_eq!(
            shell_word("runs/a-1/model.safetensors"),
            "runs/a-1/model.safetensors"
        );
        assert_eq!(shell_word("folder:/data/pets"), "folder:/data/pets");
        assert_eq!(shell_word("my runs/w.bpk"), "'my runs/w.bpk'");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
    }
}
