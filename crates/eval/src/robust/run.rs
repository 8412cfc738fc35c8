//! [`evaluate_robustness`] and its steps: plan, first-batch checks, state, cascade, tally, black-box and eps-trend checks, headline, re-check, grid.

use std::path::{Path, PathBuf};
use std::time::Instant;

use bulwark_attack_core::sanity::{self, FlagStatus, SanityFlag};
use bulwark_attack_core::{
    ApgdConfig, AttackConfig, AttackOptions, BatchOutcome, Break, Classifier, Evaluator, LossKind,
    Norm, SquareConfig, ThreatModel,
};
use bulwark_data::{ImageDataset, epoch_batches};
use burn::tensor::Device;

use crate::error::EvalError;
use crate::grid::GridImage;
use crate::progress::bar;
use crate::run_lock::RunLock;

use crate::atomic::write_atomic;
use crate::robust::report::write_robust_report;
use crate::robust::saved::{broken_rows, recompute_correct, save_adversarial};
use crate::robust::state::{
    ChunkFile, count_robust, fingerprint, load_chunk, prepare_state_dir, save_chunk,
};
use crate::robust::{
    AttackAccuracy, RobustEvalConfig, RobustEvalOptions, RobustReport, StageReport, SweepPoint,
    VerifiedAccuracy, threat_name,
};
use crate::shard::{Shard, ShardManifest, read_shards};

/// Runs the cascade over every image of `data` (in order), saving each chunk to
/// `out_dir/eval-state/` as it finishes, then the probes and checks; writes the worst-case inputs
/// at the headline radius to `out_dir/adversarial.safetensors`. Write the report files with
/// [`write_robust_report`].
pub fn evaluate_robustness<C: Classifier<4> + ?Sized>(
    model: &C,
    data: &ImageDataset,
    config: &RobustEvalConfig,
    opts: &RobustEvalOptions,
    out_dir: &Path,
    device: &Device,
) -> Result<RobustReport, EvalError> {
    run_evaluation(model, data, config, opts, out_dir, device, None)
}

/// One shard of [`evaluate_robustness`]: the cascade over this shard's chunks only (the chunks
/// an unsharded run computes, [`Shard::range`] of them), saved to `out_dir/eval-state/` as they
/// finish (`opts.resume` continues a killed shard), then `shard.json` ([`ShardManifest`]) with the shard's own
/// numbers. [`merge_robustness`] combines the shards. `command` is recorded for the merge (the
/// CLI stores its settings there).
#[allow(clippy::too_many_arguments)]
pub fn evaluate_robustness_shard<C: Classifier<4> + ?Sized>(
    model: &C,
    data: &ImageDataset,
    config: &RobustEvalConfig,
    opts: &RobustEvalOptions,
    shard: Shard,
    command: serde_json::Value,
    out_dir: &Path,
    device: &Device,
) -> Result<ShardManifest, EvalError> {
    let device = device.clone().inner();
    let plan = Plan::new(config, opts, data)?;
    let started = Instant::now();
    // A model that cannot be evaluated fails here, in every shard, before anything is written.
    first_batch_flags(model, data, config, &device)?;
    let lock = RunLock::acquire(out_dir)?;
    let fp = open_state(out_dir, config, opts, data)?;
    let units = chunk_count(plan.n, config.chunk_size);
    let range = shard.range(units);
    let run = run_cascade(
        model,
        data,
        config,
        opts,
        &plan,
        out_dir,
        &fp,
        range.clone(),
        &device,
    )?;
    let images: usize = run.results.iter().map(|c| c.len).sum();
    let clean: usize = run
        .results
        .iter()
        .map(|c| c.clean_correct.iter().filter(|&&b| b).count())
        .sum();
    let robust: usize = run.results.iter().map(|c| count_robust(c, plan.main)).sum();
    let frac = |k: usize| {
        if images == 0 {
            0.0
        } else {
            k as f64 / images as f64
        }
    };
    let stages: Vec<serde_json::Value> = plan
        .evaluator
        .stages()
        .iter()
        .enumerate()
        .map(|(s, stage)| {
            let (attacked, broken) = run.results.iter().fold((0, 0), |acc, c| {
                let t = c.stage_totals[plan.main][s];
                (acc.0 + t.0, acc.1 + t.1)
            });
            serde_json::json!({ "name": stage.name, "attacked": attacked, "broken": broken })
        })
        .collect();
    let manifest = ShardManifest {
        kind: "eval".into(),
        shard,
        fingerprint: fp,
        units,
        range: range.clone(),
        seconds: started.elapsed().as_secs_f64(),
        bulwark_version: env!("CARGO_PKG_VERSION").into(),
        cwd: std::env::current_dir().map_err(EvalError::io("."))?,
        command,
        partial: serde_json::json!({
            "images": images,
            "first_image": (range.start * config.chunk_size).min(plan.n),
            "clean_acc": frac(clean),
            "cascade_robust_acc": frac(robust),
            "stages_at_eps": stages,
            "resumed_chunks": run.resumed,
        }),
    };
    manifest.write(out_dir)?;
    drop(lock);
    Ok(manifest)
}

/// Combines the shards in `shard_dirs` ([`evaluate_robustness_shard`]) into the evaluation an
/// unsharded run writes into `out_dir`: their chunks are checked and gathered into
/// `out_dir/eval-state/`, then the probes, checks, headline, re-check from disk and report run
/// as in [`evaluate_robustness`] — the same counts, per-sample results and flags. `model`, `data`,
/// `config` and `opts.identity` must be those of the shards: refused otherwise, as are a missing,
/// duplicated or unfinished shard. The report's `seconds` adds the shards' times to the merge's.
pub fn merge_robustness<C: Classifier<4> + ?Sized>(
    model: &C,
    data: &ImageDataset,
    config: &RobustEvalConfig,
    opts: &RobustEvalOptions,
    shard_dirs: &[PathBuf],
    out_dir: &Path,
    device: &Device,
) -> Result<RobustReport, EvalError> {
    run_evaluation(model, data, config, opts, out_dir, device, Some(shard_dirs))
}

fn chunk_count(n: usize, chunk_size: usize) -> usize {
    n.div_ceil(chunk_size.max(1))
}

/// Checks the shards against this evaluation and copies their chunks into `out_dir/eval-state`
/// (already prepared for fingerprint `fp`); returns the number of shards and their seconds.
fn gather_shards(
    shard_dirs: &[PathBuf],
    out_dir: &Path,
    fp: &str,
    plan: &Plan,
    config: &RobustEvalConfig,
) -> Result<(usize, f64), EvalError> {
    let shards = read_shards(shard_dirs)?;
    let units = chunk_count(plan.n, config.chunk_size);
    let state_dir = out_dir.join("eval-state");
    let stages = plan.evaluator.stages().len();
    let mut seconds = 0.0;
    for (dir, m) in &shards {
        if m.kind != "eval" {
            return Err(EvalError::State {
                path: dir.clone(),
                reason: format!("a shard of `{}`, not of an evaluation", m.kind),
            });
        }
        if m.fingerprint != fp || m.units != units {
            return Err(EvalError::State {
                path: dir.clone(),
                reason: format!(
                    "the shards evaluated another model, weights, dataset, backend or \
                     configuration than this merge (fingerprint {} there, {fp} here)",
                    m.fingerprint
                ),
            });
        }
        seconds += m.seconds;
        for c in m.range.clone() {
            let start = c * config.chunk_size;
            let len = config.chunk_size.min(plan.n - start);
            let name = |ext: &str| format!("chunk-{c:05}.{ext}");
            let (json, bin) = (
                dir.join("eval-state").join(name("json")),
                dir.join("eval-state").join(name("f32")),
            );
            if load_chunk(
                &json,
                &bin,
                fp,
                start,
                len,
                plan.n_pixels,
                (plan.all_eps.len(), stages),
            )
            .is_none()
            {
                return Err(EvalError::State {
                    path: json,
                    reason: format!(
                        "chunk {c} of shard {} is missing or damaged; rerun that shard with \
                         --resume",
                        m.shard
                    ),
                });
            }
            for (from, ext) in [(&bin, "f32"), (&json, "json")] {
                let bytes = std::fs::read(from).map_err(EvalError::io(from))?;
                write_atomic(&state_dir.join(name(ext)), &bytes)?;
            }
        }
    }
    Ok((shards.len(), seconds))
}

fn run_evaluation<C: Classifier<4> + ?Sized>(
    model: &C,
    data: &ImageDataset,
    config: &RobustEvalConfig,
    opts: &RobustEvalOptions,
    out_dir: &Path,
    device: &Device,
    shard_dirs: Option<&[PathBuf]>,
) -> Result<RobustReport, EvalError> {
    let device = device.clone().inner();
    let plan = Plan::new(config, opts, data)?;
    let started = Instant::now();
    let mut flags = first_batch_flags(model, data, config, &device)?;
    // One evaluation per output directory at a time: two would mix their chunks. Held until the
    // report is written (`opts.report`).
    let lock = RunLock::acquire(out_dir)?;
    // A merge continues whatever an earlier merge into the same directory gathered.
    let state_opts = RobustEvalOptions {
        resume: opts.resume || shard_dirs.is_some(),
        ..opts.clone()
    };
    let fp = open_state(out_dir, config, &state_opts, data)?;
    let merged = match shard_dirs {
        Some(dirs) => Some(gather_shards(dirs, out_dir, &fp, &plan, config)?),
        None => None,
    };
    let units = chunk_count(plan.n, config.chunk_size);
    let mut run = run_cascade(
        model,
        data,
        config,
        opts,
        &plan,
        out_dir,
        &fp,
        0..units,
        &device,
    )?;
    if merged.is_some() {
        // Every chunk came from a shard (they were checked on the way in).
        run.resumed = 0;
    }
    let tally = Tally::new(&run.results, &plan);
    let probe_breaks = black_box_check(model, data, config, &plan, &tally, &mut flags, &device)?;
    eps_trend_checks(model, data, config, &plan, &tally, &mut flags, &device)?;
    let headline = headline(
        &plan,
        &tally,
        opts,
        &probe_breaks,
        &mut run.adversarial_main,
        &mut flags,
    );
    let adversarial_file = recheck_from_disk(
        model,
        data,
        config,
        &tally,
        &headline,
        &run.adversarial_main,
        out_dir,
        &mut flags,
        &device,
    )?;
    let report = RobustReport {
        threat_model: threat_name(config.norm).into(),
        eps: config.eps,
        n_examples: plan.n,
        clean_acc: tally.frac(tally.clean()),
        robust_acc: tally.frac(headline.robust),
        cascade_robust_acc: tally.frac(tally.robust_count(plan.main, None)),
        per_attack: headline.per_attack.clone(),
        verified: headline.verified.clone(),
        probe_broken: probe_breaks.len(),
        preset: config
            .preset
            .map_or("custom".to_string(), |p| p.to_string()),
        attacks: tally.stage_reports(&plan, config),
        sweep: tally.sweep(&plan),
        flags,
        config: config.clone(),
        broken_at_smaller_eps: tally.carried(plan.main),
        seconds: started.elapsed().as_secs_f64() + merged.map_or(0.0, |m| m.1),
        resumed_chunks: run.resumed,
        shards: merged.map(|m| m.0),
        adversarial_file,
        examples: grid_examples(data, &plan, &tally, &run, opts.examples),
    };
    if let Some(context) = &opts.report {
        write_robust_report(out_dir, context, &report)?;
    }
    drop(lock);
    Ok(report)
}

/// What an evaluation runs, checked before anything runs or is written: the cascade, the
/// headline's index among the radii, and the probes' attacks.
pub(super) struct Plan {
    evaluator: Evaluator,
    all_eps: Vec<f64>,
    /// Index of the headline radius in `all_eps`.
    main: usize,
    /// Images evaluated.
    n: usize,
    /// Values per image.
    n_pixels: usize,
    /// The radius at which robust accuracy must be near 0.
    large: f64,
    /// APGD at `large`.
    probe_apgd: AttackConfig,
    /// Square at the headline radius (none in L1).
    probe_square: Option<AttackConfig>,
}

impl Plan {
    fn new(
        config: &RobustEvalConfig,
        opts: &RobustEvalOptions,
        data: &ImageDataset,
    ) -> Result<Self, EvalError> {
        let settings = |problem: String| EvalError::Settings {
            what: "evaluation settings",
            problem,
        };
        let all_eps = config.all_eps();
        let evaluator =
            Evaluator::new(config.norm, &all_eps, config.stages.clone(), config.bounds)?;
        if config.batch_size == 0 || config.chunk_size == 0 {
            return Err(settings("batch_size and chunk_size must be >= 1".into()));
        }
        let main = all_eps
            .iter()
            .position(|&e| e == config.eps)
            .expect("the headline eps is in the list");
        let n = data.len();
        if n == 0 {
            return Err(settings("the dataset is empty".into()));
        }
        if let Some(other) = opts.others.iter().find(|o| o.robust.len() != n) {
            return Err(settings(format!(
                "the results of `{}` cover {} images, but {n} are evaluated",
                other.name,
                other.robust.len()
            )));
        }
        if let Some(v) = opts.verified.as_ref().filter(|v| v.verified.len() != n) {
            return Err(settings(format!(
                "{} verified {} images, but {n} are evaluated",
                v.method,
                v.verified.len()
            )));
        }
        let n_pixels = data.image_size();
        let large = sanity::large_eps(config.norm, config.bounds, n_pixels);
        let probe_apgd = AttackConfig::Apgd(
            ApgdConfig::new(ThreatModel::new(config.norm, large)).with_options(
                AttackOptions::new()
                    .with_bounds(config.bounds)
                    .with_random_start(true)
                    .with_early_stop(true)
                    .with_seed(config.seed),
            ),
        );
        probe_apgd.init()?;
        let probe_square = (config.norm != Norm::L1).then(|| {
            AttackConfig::Square(
                SquareConfig::new(ThreatModel::new(config.norm, config.eps))
                    .with_queries(config.probe_queries)
                    .with_options(
                        AttackOptions::new()
                            .with_bounds(config.bounds)
                            .with_loss(LossKind::CwMargin)
                            .with_seed(config.seed),
                    ),
            )
        });
        if let Some(sq) = &probe_square {
            sq.init()?;
        }
        Ok(Self {
            evaluator,
            all_eps,
            main,
            n,
            n_pixels,
            large,
            probe_apgd,
            probe_square,
        })
    }
}

/// Cheap checks on the first batch, run before the state directory exists: a model that cannot
/// be evaluated leaves nothing behind.
pub(super) fn first_batch_flags<C: Classifier<4> + ?Sized>(
    model: &C,
    data: &ImageDataset,
    config: &RobustEvalConfig,
    device: &Device,
) -> Result<Vec<SanityFlag>, EvalError> {
    let first: Vec<usize> = (0..data.len().min(config.batch_size)).collect();
    let (x, y) = data.batch(&first, device);
    Ok(vec![
        sanity::check_deterministic(model, x.clone()),
        sanity::check_logits(model, x.clone()),
        sanity::check_gradients(model, x, y, config.bounds)?,
        sanity::eps_box_flag(config.norm, config.eps, config.bounds, data.image_size()),
    ])
}

/// Prepares `out_dir/eval-state` for this evaluation (refusing a directory that holds another
/// kind of report) and returns the evaluation's fingerprint.
pub(super) fn open_state(
    out_dir: &Path,
    config: &RobustEvalConfig,
    opts: &RobustEvalOptions,
    data: &ImageDataset,
) -> Result<String, EvalError> {
    // A report beside no saved evaluation belongs to something else (a training run's report.md
    // and report.json have the same names).
    let state_dir = out_dir.join("eval-state");
    if !state_dir.is_dir()
        && let Some(path) = ["report.md", "report.json"]
            .map(|f| out_dir.join(f))
            .into_iter()
            .find(|p| p.exists())
    {
        return Err(EvalError::Occupied {
            path,
            holds: "a report that is not a saved evaluation (a training run's?)".into(),
        });
    }
    let fp = fingerprint(config, &opts.identity, data);
    prepare_state_dir(&state_dir, &fp, opts.resume)?;
    Ok(fp)
}

/// The cascade's results over the whole dataset, chunk by chunk.
pub(super) struct CascadeRun {
    results: Vec<ChunkFile>,
    /// The worst-case inputs at the headline radius, every image in order.
    adversarial_main: Vec<f32>,
    /// Chunks loaded from a previous run.
    resumed: usize,
}

/// Runs the cascade chunk by chunk, loading the chunks a previous run saved and saving each new
/// one as it finishes.
#[allow(clippy::too_many_arguments)]
pub(super) fn run_cascade<C: Classifier<4> + ?Sized>(
    model: &C,
    data: &ImageDataset,
    config: &RobustEvalConfig,
    opts: &RobustEvalOptions,
    plan: &Plan,
    out_dir: &Path,
    fp: &str,
    chunk_range: std::ops::Range<usize>,
    device: &Device,
) -> Result<CascadeRun, EvalError> {
    let (n, n_pixels, main) = (plan.n, plan.n_pixels, plan.main);
    let state_dir = out_dir.join("eval-state");
    let stages = plan.evaluator.stages().len();
    let chunks: Vec<(usize, usize)> = (0..n)
        .step_by(config.chunk_size)
        .map(|s| (s, config.chunk_size.min(n - s)))
        .collect();
    let todo: usize = chunks
        .get(chunk_range.clone())
        .unwrap_or_default()
        .iter()
        .map(|c| c.1)
        .sum();
    let progress = bar(todo, opts.progress, &format!("eval {}", config.norm));
    let mut run = CascadeRun {
        results: Vec::with_capacity(chunks.len()),
        adversarial_main: Vec::with_capacity(n * n_pixels),
        resumed: 0,
    };
    let mut robust_so_far = (0usize, 0usize);
    for (c, &(start, len)) in chunks.iter().enumerate() {
        if !chunk_range.contains(&c) {
            continue;
        }
        let json_path = state_dir.join(format!("chunk-{c:05}.json"));
        let bin_path = state_dir.join(format!("chunk-{c:05}.f32"));
        let loaded = load_chunk(
            &json_path,
            &bin_path,
            fp,
            start,
            len,
            n_pixels,
            (plan.all_eps.len(), stages),
        );
        if let Some((chunk, adv)) = loaded {
            progress.inc(len as u64);
            run.resumed += 1;
            robust_so_far.0 += count_robust(&chunk, main);
            robust_so_far.1 += len;
            run.results.push(chunk);
            run.adversarial_main.extend(adv);
            continue;
        }
        let mut chunk = ChunkFile {
            fingerprint: fp.to_string(),
            start,
            len,
            clean_correct: Vec::with_capacity(len),
            clean_predictions: Vec::with_capacity(len),
            broken: vec![Vec::with_capacity(len); plan.all_eps.len()],
            adversarial_predictions: vec![Vec::with_capacity(len); plan.all_eps.len()],
            stage_totals: vec![vec![(0, 0, 0, 0.0); stages]; plan.all_eps.len()],
        };
        let mut adv_chunk = Vec::with_capacity(len * n_pixels);
        for local in epoch_batches(len, config.batch_size, false, 0, 0) {
            let indices: Vec<usize> = local.iter().map(|&i| start + i).collect();
            let (x, y) = data.batch(&indices, device);
            let robust_text = if robust_so_far.1 > 0 {
                format!(
                    "robust {:.2} %",
                    100.0 * robust_so_far.0 as f64 / robust_so_far.1 as f64
                )
            } else {
                String::new()
            };
            let out: BatchOutcome = plan.evaluator.run(model, x, y, &mut |p| {
                let target = p
                    .target
                    .map(|(k, of)| format!(" target {k}/{of}"))
                    .unwrap_or_default();
                progress.set_message(format!(
                    "eps {} {}{target} on {} pts  {robust_text}",
                    p.eps, p.stage, p.attacked
                ));
            })?;
            chunk.clean_correct.extend(&out.clean_correct);
            chunk.clean_predictions.extend(&out.clean_predictions);
            for e in 0..plan.all_eps.len() {
                chunk.broken[e].extend(&out.broken[e]);
                chunk.adversarial_predictions[e].extend(&out.adversarial_predictions[e]);
            }
            for r in &out.records {
                let t = &mut chunk.stage_totals[r.eps_index][r.stage];
                t.0 += r.attacked;
                t.1 += r.broken;
                t.2 += r.rejected;
                t.3 += r.seconds;
            }
            adv_chunk.extend_from_slice(&out.adversarial[main]);
            let robust = out.robust(main).iter().filter(|&&r| r).count();
            robust_so_far.0 += robust;
            robust_so_far.1 += indices.len();
            progress.inc(indices.len() as u64);
        }
        save_chunk(&json_path, &bin_path, &chunk, &adv_chunk)?;
        run.results.push(chunk);
        run.adversarial_main.extend(adv_chunk);
    }
    progress.finish_and_clear();
    Ok(run)
}

/// The cascade's results over all chunks: which points were clean-correct, which broken (at which
/// radius and stage), and each stage's totals.
pub(super) struct Tally {
    n: usize,
    clean_correct: Vec<bool>,
    /// `[eps index][image]`.
    broken: Vec<Vec<Option<Break>>>,
    /// `[eps index][stage] = (attacked, broken, rejected, seconds)`.
    totals: Vec<Vec<(usize, usize, usize, f64)>>,
    /// Whether each stage is a black-box attack.
    black_box: Vec<bool>,
}

impl Tally {
    fn new(results: &[ChunkFile], plan: &Plan) -> Self {
        let stages = plan.evaluator.stages().len();
        let mut totals = vec![vec![(0usize, 0usize, 0usize, 0f64); stages]; plan.all_eps.len()];
        for chunk in results {
            for (e, row) in chunk.stage_totals.iter().enumerate() {
                for (s, t) in row.iter().enumerate() {
                    let acc = &mut totals[e][s];
                    acc.0 += t.0;
                    acc.1 += t.1;
                    acc.2 += t.2;
                    acc.3 += t.3;
                }
            }
        }
        Self {
            n: plan.n,
            clean_correct: results
                .iter()
                .flat_map(|c| c.clean_correct.clone())
                .collect(),
            broken: (0..plan.all_eps.len())
                .map(|e| results.iter().flat_map(|c| c.broken[e].clone()).collect())
                .collect(),
            totals,
            black_box: plan
                .evaluator
                .stages()
                .iter()
                .map(|s| s.attack.is_black_box())
                .collect(),
        }
    }

    fn frac(&self, k: usize) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            k as f64 / self.n as f64
        }
    }

    fn clean(&self) -> usize {
        self.clean_correct.iter().filter(|&&c| c).count()
    }

    /// Robust at radius `e`: clean-correct and unbroken, or (`upto = Some(s)`) broken only by a
    /// stage after `s` at that radius.
    fn robust_count(&self, e: usize, upto: Option<usize>) -> usize {
        (0..self.n)
            .filter(|&i| {
                self.clean_correct[i]
                    && match self.broken[e][i] {
                        None => true,
                        Some(b) => upto.is_some_and(|s| b.eps_index == e && b.stage > s),
                    }
            })
            .count()
    }

    /// Clean-correct and unbroken at the headline radius.
    fn robust_at(&self, main: usize, i: usize) -> bool {
        self.clean_correct[i] && self.broken[main][i].is_none()
    }

    /// Points broken at a smaller radius whose example counts at the headline radius.
    fn carried(&self, main: usize) -> usize {
        self.broken[main]
            .iter()
            .filter(|b| b.is_some_and(|b| b.eps_index < main))
            .count()
    }

    fn stage_reports(&self, plan: &Plan, config: &RobustEvalConfig) -> Vec<StageReport> {
        let main = plan.main;
        plan.evaluator
            .stages()
            .iter()
            .enumerate()
            .map(|(s, stage)| StageReport {
                name: stage.name.clone(),
                attack: stage.attack.with_eps(config.eps),
                target_classes: stage.target_classes,
                robust_acc_after: self.frac(self.robust_count(main, Some(s))),
                attacked: self.totals[main][s].0,
                broken: self.totals[main][s].1,
                rejected: self.totals[main][s].2,
                seconds: self.totals[main][s].3,
            })
            .collect()
    }

    fn sweep(&self, plan: &Plan) -> Vec<SweepPoint> {
        let stages = plan.evaluator.stages().len();
        plan.all_eps
            .iter()
            .enumerate()
            .map(|(e, &eps)| SweepPoint {
                eps,
                robust_acc: self.frac(self.robust_count(e, None)),
                robust_acc_after: (0..stages)
                    .map(|s| self.frac(self.robust_count(e, Some(s))))
                    .collect(),
            })
            .collect()
    }
}

/// Black-box versus white-box. When the list runs a black-box stage after every gradient stage,
/// its extra breaks are the evidence; when it has no black-box stage, a Square probe of points
/// still robust after the cascade is, and its breaks (valid examples at `eps`) are returned to
/// join the headline. Points a black-box stage broke at a smaller radius count too.
pub(super) fn black_box_check<C: Classifier<4> + ?Sized>(
    model: &C,
    data: &ImageDataset,
    config: &RobustEvalConfig,
    plan: &Plan,
    tally: &Tally,
    flags: &mut Vec<SanityFlag>,
    device: &Device,
) -> Result<Vec<(usize, Vec<f32>)>, EvalError> {
    const NAME: &str = "black-box-beats-white-box";
    let black_box = &tally.black_box;
    let last_white = black_box.iter().rposition(|&b| !b);
    let black_after_white = match last_white {
        Some(w) => black_box.iter().any(|&b| b) && black_box[..w].iter().all(|&b| !b),
        None => false,
    };
    if black_after_white {
        let extra = tally.broken[plan.main]
            .iter()
            .filter(|b| b.is_some_and(|b| black_box[b.stage]))
            .count();
        flags.push(sanity::black_box_flag(extra, plan.n));
        return Ok(Vec::new());
    }
    let not_checked = |why: &str| SanityFlag::not_checked(NAME, why);
    if black_box.iter().any(|&b| b) {
        flags.push(not_checked(
            "the black-box attack does not run after every gradient attack in this list",
        ));
        return Ok(Vec::new());
    }
    if last_white.is_none() {
        flags.push(not_checked("no gradient attack in the list"));
        return Ok(Vec::new());
    }
    let Some(square) = &plan.probe_square else {
        flags.push(not_checked(
            "no black-box attack in the list, and Square has no L1 version",
        ));
        return Ok(Vec::new());
    };
    let probe: Vec<usize> = (0..plan.n)
        .filter(|&i| tally.robust_at(plan.main, i))
        .take(config.probe_size)
        .collect();
    if probe.is_empty() {
        flags.push(not_checked(if config.probe_size == 0 {
            "no black-box attack in the list, and the probe size is 0"
        } else {
            "no black-box attack in the list, and no point left robust to probe with one"
        }));
        return Ok(Vec::new());
    }
    let found = broken_rows(model, data, &probe, square, config, device)?;
    flags.push(sanity::black_box_probe_flag(
        found.len(),
        probe.len(),
        config.probe_queries,
    ));
    Ok(found)
}

/// Robust accuracy against eps must fall, and at a radius where it must be near 0 (APGD at the
/// box's size) a probe must break nearly everything.
pub(super) fn eps_trend_checks<C: Classifier<4> + ?Sized>(
    model: &C,
    data: &ImageDataset,
    config: &RobustEvalConfig,
    plan: &Plan,
    tally: &Tally,
    flags: &mut Vec<SanityFlag>,
    device: &Device,
) -> Result<(), EvalError> {
    let probe: Vec<usize> = (0..plan.n)
        .filter(|&i| tally.clean_correct[i])
        .take(config.probe_size)
        .collect();
    let broken_large = broken_rows(model, data, &probe, &plan.probe_apgd, config, device)?.len();
    let survived = probe.len() - broken_large;
    flags.push(sanity::large_eps_flag(plan.large, survived, probe.len()));
    let points: Vec<(f64, usize)> = plan
        .all_eps
        .iter()
        .enumerate()
        .map(|(e, &eps)| (eps, tally.robust_count(e, None)))
        .collect();
    let sweep_trend = sanity::eps_trend_flag(&points, plan.n, 2.0);
    let probe_main = probe
        .iter()
        .filter(|&&i| tally.broken[plan.main][i].is_none())
        .count();
    let probe_trend = sanity::eps_trend_flag(
        &[(config.eps, probe_main), (plan.large, survived)],
        probe.len(),
        1.0,
    );
    // Raised if either comparison fires; otherwise the sweep's verdict, else the probe's.
    let trend = match (sweep_trend.status, probe_trend.status) {
        (_, FlagStatus::Raised) if !sweep_trend.raised() => SanityFlag {
            evidence: format!("probe: {}", probe_trend.evidence),
            ..probe_trend
        },
        (FlagStatus::NotChecked, _) => SanityFlag {
            evidence: format!("probe: {}", probe_trend.evidence),
            ..probe_trend
        },
        _ => SanityFlag {
            evidence: format!("{}; probe: {}", sweep_trend.evidence, probe_trend.evidence),
            ..sweep_trend
        },
    };
    flags.push(trend);
    Ok(())
}

/// The headline and each attack's own number.
pub(super) struct Headline {
    /// Robust after the cascade and the probe (what the saved inputs must confirm).
    robust_saved: usize,
    /// Robust after everything run: the headline count.
    robust: usize,
    per_attack: Vec<AttackAccuracy>,
    verified: Option<VerifiedAccuracy>,
}

/// A point is robust only if nothing run at `eps` broke it. The probe's examples replace the
/// clean image in the saved worst-case inputs, so the re-check from disk covers them; the other
/// attacks' results join per sample, each compared with the cascade.
pub(super) fn headline(
    plan: &Plan,
    tally: &Tally,
    opts: &RobustEvalOptions,
    probe_breaks: &[(usize, Vec<f32>)],
    adversarial_main: &mut [f32],
    flags: &mut Vec<SanityFlag>,
) -> Headline {
    let (n, n_pixels, main) = (plan.n, plan.n_pixels, plan.main);
    let mut robust_rows: Vec<bool> = (0..n).map(|i| tally.robust_at(main, i)).collect();
    for (i, adv) in probe_breaks {
        robust_rows[*i] = false;
        adversarial_main[i * n_pixels..(i + 1) * n_pixels].copy_from_slice(adv);
    }
    let robust_saved = robust_rows.iter().filter(|&&r| r).count();
    let cascade = tally.robust_count(main, None);
    let mut per_attack = vec![AttackAccuracy {
        name: "cascade".into(),
        robust_acc: tally.frac(cascade),
    }];
    for other in &opts.others {
        let own = other.robust.iter().filter(|&&r| r).count();
        let only_other = (0..n)
            .filter(|&i| tally.robust_at(main, i) && !other.robust[i])
            .count();
        flags.push(sanity::cascade_vs_attack_flag(
            &other.name,
            cascade,
            own,
            only_other,
            n,
        ));
        for (r, &o) in robust_rows.iter_mut().zip(&other.robust) {
            *r = *r && o;
        }
        per_attack.push(AttackAccuracy {
            name: other.name.clone(),
            robust_acc: tally.frac(own),
        });
    }
    let verified = opts.verified.as_ref().map(|v| {
        let proved = v.verified.iter().filter(|&&p| p).count();
        // `robust_rows` are clean-correct and unbroken by everything run.
        let contradicted = (0..n).filter(|&i| v.verified[i] && !robust_rows[i]).count();
        flags.push(sanity::verified_flag(&v.method, proved, contradicted, n));
        VerifiedAccuracy {
            method: v.method.clone(),
            verified_acc: tally.frac(proved),
            contradicted,
        }
    });
    Headline {
        robust_saved,
        robust: robust_rows.iter().filter(|&&r| r).count(),
        per_attack,
        verified,
    }
}

/// Saves the worst-case inputs to `out_dir/adversarial.safetensors`, reads them back and
/// re-classifies them (the recompute flag), and adds the threat-model flag; returns the file.
#[allow(clippy::too_many_arguments)]
pub(super) fn recheck_from_disk<C: Classifier<4> + ?Sized>(
    model: &C,
    data: &ImageDataset,
    config: &RobustEvalConfig,
    tally: &Tally,
    headline: &Headline,
    adversarial_main: &[f32],
    out_dir: &Path,
    flags: &mut Vec<SanityFlag>,
    device: &Device,
) -> Result<PathBuf, EvalError> {
    std::fs::create_dir_all(out_dir).map_err(EvalError::io(out_dir))?;
    let adversarial_file = out_dir.join("adversarial.safetensors");
    let labels: Vec<i64> = data.labels.iter().map(|&l| i64::from(l)).collect();
    save_adversarial(&adversarial_file, adversarial_main, &labels, data)?;
    let recomputed = recompute_correct(model, &adversarial_file, config.batch_size, device)?;
    flags.push(sanity::recompute_flag(
        headline.robust_saved,
        recomputed,
        tally.n,
    ));
    let rejected: usize = tally.totals.iter().flatten().map(|t| t.2).sum();
    flags.push(sanity::threat_flag(rejected));
    Ok(adversarial_file)
}

/// The grid: the first `limit` adversarial examples at the headline radius, with their clean
/// images, labels and predictions.
pub(super) fn grid_examples(
    data: &ImageDataset,
    plan: &Plan,
    tally: &Tally,
    run: &CascadeRun,
    limit: usize,
) -> Vec<(GridImage, GridImage, usize, usize)> {
    let (n_pixels, main) = (plan.n_pixels, plan.main);
    let predictions: Vec<usize> = run
        .results
        .iter()
        .flat_map(|chunk| chunk.adversarial_predictions[main].iter().copied())
        .collect();
    let img = |v: &[f32]| GridImage {
        channels: data.channels,
        height: data.height,
        width: data.width,
        pixels: v.to_vec(),
    };
    (0..plan.n)
        .filter(|&i| tally.broken[main][i].is_some())
        .take(limit)
        .map(|i| {
            let clean_px: Vec<f32> = data.images[i * n_pixels..(i + 1) * n_pixels]
                .iter()
                .map(|&p| f32::from(p) / 255.0)
                .collect();
            (
                img(&clean_px),
                img(&run.adversarial_main[i * n_pixels..(i + 1) * n_pixels]),
                usize::from(data.labels[i]),
                predictions[i],
            )
        })
        .collect()
}
