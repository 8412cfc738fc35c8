//! `bulwark text`: train and evaluate text classifiers with embedding-space adversarial training.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use bulwark_data::text::fetch_spam_assassin;
use bulwark_eval::write_atomic;
use bulwark_trainer::text::{
    TextData, TextRobustness, TextTrainConfig, fit_text, load_module, text_robustness,
};
use bulwark_trainer::{BackendKind, FitOptions, Keep};
use burn::tensor::Device;

use super::fetch_options;

/// `bulwark text train`.
pub(super) fn train(
    config: Option<PathBuf>,
    run_dir: PathBuf,
    resume: bool,
    data_dir: Option<PathBuf>,
    backend: BackendKind,
) -> Result<()> {
    let cfg = match (resume, &config) {
        (true, Some(_)) => bail!(
            "--resume continues the run with its own {}; drop --config",
            run_dir.join("config.toml").display()
        ),
        (true, None) => TextTrainConfig::from_toml_file(&run_dir.join("config.toml"))?,
        (false, Some(path)) => TextTrainConfig::from_toml_file(path)?,
        (false, None) => TextTrainConfig::new(),
    };
    cfg.validate()?;
    let device: Device = backend.device()?;
    let data = TextData::load(&cfg, &fetch_options(data_dir))?;
    tracing::info!(
        "SpamAssassin: {} train / {} valid / {} test texts, {} word ids, {} ids per text; method {}",
        data.train.len(),
        data.valid.len(),
        data.test.len(),
        data.vocab.len(),
        cfg.seq_len,
        cfg.method.name()
    );
    let opts = FitOptions {
        run_dir: run_dir.clone(),
        resume,
        progress: true,
        stop_after_epoch: None,
    };
    let started = Instant::now();
    let out = fit_text(&cfg, &data, &device, &opts)?;
    let train_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let e = &cfg.eval;
    tracing::info!(
        "evaluating on {} test texts: PGD-L2 {} steps x {} restarts and APGD-CE-L2 {} steps at eps {:?}",
        data.test.len(),
        e.steps,
        e.restarts,
        e.steps,
        e.eps
    );
    let r = text_robustness(
        &out.model,
        &data.test,
        e,
        cfg.eval_batch_size,
        cfg.seed,
        &device,
    )?;
    let eval_seconds = started.elapsed().as_secs_f64();
    let best = out.best.map(|(epoch, _)| epoch);
    write_outputs(&run_dir, &cfg, &r, best, train_seconds, eval_seconds)?;
    print!("{}", table(&r));
    println!("run directory: {}", run_dir.display());
    Ok(())
}

/// `bulwark text eval`.
pub(super) fn eval(
    run_dir: &Path,
    eps: Option<Vec<f64>>,
    steps: Option<usize>,
    restarts: Option<usize>,
    data_dir: Option<PathBuf>,
    backend: BackendKind,
) -> Result<()> {
    // Runs of a user's own network (`fit_text_network`) are evaluated by the user's program.
    if let Some(dir) = bulwark_trainer::Checkpoint::find(run_dir) {
        let state = bulwark_trainer::Checkpoint::read_state(&dir)?;
        if state.model != bulwark_trainer::text::TEXT_MODEL {
            bail!(
                "{} holds a run of `{}`, not of the CLI's {}: evaluate it with \
                 bulwark_trainer::text::text_robustness in the program that trained it",
                run_dir.display(),
                state.model,
                bulwark_trainer::text::TEXT_MODEL
            );
        }
    }
    let cfg = TextTrainConfig::from_toml_file(&run_dir.join("config.toml"))?;
    let device: Device = backend.device()?;
    let data = TextData::load(&cfg, &fetch_options(data_dir))?;
    let saved = bulwark_data::text::Vocabulary::load(&run_dir.join("vocab.json"))?;
    if saved != data.vocab {
        bail!(
            "{}: the vocabulary rebuilt from the corpus differs from the run's; the corpus or the \
             configuration changed",
            run_dir.join("vocab.json").display()
        );
    }
    let weights = run_dir.join("model.bpk");
    let model = load_module(cfg.model_config(data.vocab.len()).init(&device), &weights)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("loading {}", weights.display()))?;
    let eps = eps.unwrap_or_else(|| cfg.eval.eps.clone());
    if eps.is_empty() || eps.iter().any(|r| !(r.is_finite() && *r > 0.0)) {
        bail!("--eps must list radii > 0, got {eps:?}");
    }
    let steps = steps.unwrap_or(cfg.eval.steps);
    let restarts = restarts.unwrap_or(cfg.eval.restarts);
    if steps == 0 || restarts == 0 {
        bail!("--steps and --restarts must be at least 1");
    }
    let eval = cfg
        .eval
        .clone()
        .with_eps(eps)
        .with_steps(steps)
        .with_restarts(restarts);
    let r = text_robustness(
        &model,
        &data.test,
        &eval,
        cfg.eval_batch_size,
        cfg.seed,
        &device,
    )?;
    print!("{}", table(&r));
    Ok(())
}

/// `bulwark text fetch`.
pub(super) fn fetch(data_dir: Option<PathBuf>) -> Result<()> {
    let path = fetch_spam_assassin(&fetch_options(data_dir))?;
    println!("{}", path.display());
    Ok(())
}

/// The robustness table, as the terminal and report.md show it.
fn table(r: &TextRobustness) -> String {
    let mut s = format!(
        "clean accuracy {:.2} % on {} test texts; mean L2 norm of their embeddings {:.1}\n\n| L2 eps (embeddings) | PGD | APGD-CE | worst case |\n|---|---|---|---|\n",
        100.0 * r.clean_acc,
        r.texts,
        r.embedding_norm
    );
    for row in &r.rows {
        let _ = writeln!(
            s,
            "| {} | {:.2} % | {:.2} % | **{:.2} %** |",
            row.eps,
            100.0 * row.pgd_acc,
            100.0 * row.apgd_acc,
            100.0 * row.worst_acc
        );
    }
    s
}

/// `robustness.json` and `report.md` in the run directory.
fn write_outputs(
    run_dir: &Path,
    cfg: &TextTrainConfig,
    r: &TextRobustness,
    best_epoch: Option<usize>,
    train_seconds: f64,
    eval_seconds: f64,
) -> Result<()> {
    let json = serde_json::json!({
        "robustness": r,
        "best_epoch": best_epoch,
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
    });
    write_atomic(
        &run_dir.join("robustness.json"),
        serde_json::to_string_pretty(&json)?.as_bytes(),
    )?;
    let e = &cfg.eval;
    let report = format!(
        "# Text run: {} on SpamAssassin\n\n{}\nWorst case: correct on the clean text and under both attacks (the \
         headline). Attacks in the L2 ball around each text's clean embeddings (the whole {}x{} \
         sequence, padding included): PGD {} steps x {} restarts (step 2.5 eps/steps, random \
         start), APGD-CE {} steps. Weights: {}. Training {:.0} s, \
         evaluation {:.0} s.\n\nRepeat the evaluation: `bulwark text eval --run-dir {}`\n",
        cfg.method.name(),
        table(r),
        cfg.seq_len,
        cfg.embed_dim,
        e.steps,
        e.restarts,
        e.steps,
        match (cfg.keep, best_epoch) {
            (Keep::Best, Some(b)) => format!("the best validation epoch's ({b})"),
            _ => "the last epoch's".to_string(),
        },
        train_seconds,
        eval_seconds,
        run_dir.display()
    );
    write_atomic(&run_dir.join("report.md"), report.as_bytes())?;
    Ok(())
}
