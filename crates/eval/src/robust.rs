//! Robustness evaluation of a dataset with the attack-core [`Evaluator`]: the cascade in chunks
//! that are saved as they finish (a killed evaluation resumes where it stopped), the sanity checks
//! with their evidence, the worst-case inputs saved and re-checked from disk, and the report
//! (`report.json`, `report.md`, `robust_vs_eps.svg`, `examples.png`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use bulwark_attack_core::sanity::{self, FlagStatus, SanityFlag};
use bulwark_attack_core::{
    ApgdConfig, Attack, AttackConfig, AttackOptions, BatchOutcome, Bounds, Break, Classifier,
    Evaluator, LossKind, Norm, Preset, SquareConfig, Stage, ThreatModel, within_threat,
};
use bulwark_data::{ImageDataset, epoch_batches};
use burn::tensor::{Device, Tensor, TensorData};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use crate::atomic::write_atomic;
use crate::attack_run::data_fingerprint;
use crate::error::EvalError;
use crate::grid::{GridImage, write_png_grid};
use crate::plot::{Series, line_plot_svg};
use crate::progress::bar;
use crate::run_lock::RunLock;

/// What to evaluate: threat model, radii, attack list, seed and sizes. Recorded in the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RobustEvalConfig {
    /// Threat-model norm.
    pub norm: Norm,
    /// The radius the headline robust accuracy is reported at.
    pub eps: f64,
    /// Further radii for the robust-accuracy-against-eps curve (the headline radius is added).
    pub eps_sweep: Vec<f64>,
    /// The preset the stages come from, if any (`None`: a custom list).
    pub preset: Option<Preset>,
    /// The attack list, run as a cascade.
    pub stages: Vec<Stage>,
    /// Seed of every random draw (recorded in each stage's options too).
    pub seed: u64,
    /// The valid input box.
    pub bounds: Bounds,
    /// Images per attack batch.
    pub batch_size: usize,
    /// Images per saved chunk (the resume granularity).
    pub chunk_size: usize,
    /// Correctly classified points probed at a large radius (and, when the list has no
    /// black-box attack, by a Square probe).
    pub probe_size: usize,
    /// Queries of the Square probe.
    pub probe_queries: usize,
}

impl RobustEvalConfig {
    /// A preset's attack list at radius `eps` in `norm`, with the defaults: batches of 500,
    /// chunks of 1,000, 100 probed points, a 1,000-query Square probe, the box [0, 1].
    pub fn preset(preset: Preset, norm: Norm, eps: f64, seed: u64) -> Self {
        Self {
            norm,
            eps,
            eps_sweep: Vec::new(),
            preset: Some(preset),
            stages: preset.stages(norm, seed),
            seed,
            bounds: Bounds::new(),
            batch_size: 500,
            chunk_size: 1000,
            probe_size: 100,
            probe_queries: 1000,
        }
    }

    /// All radii, ascending, the headline one included.
    pub fn all_eps(&self) -> Vec<f64> {
        let mut e = self.eps_sweep.clone();
        e.push(self.eps);
        e.sort_by(f64::total_cmp);
        e.dedup();
        e
    }
}

/// How to run [`evaluate_robustness`].
#[derive(Debug, Clone, Default)]
pub struct RobustEvalOptions {
    /// Show progress bars.
    pub progress: bool,
    /// Continue the evaluation saved in the output directory (otherwise an existing one is an
    /// error).
    pub resume: bool,
    /// Identifies the model and data (e.g. model name, weights hash, dataset): a saved evaluation
    /// resumes only with the same identity and configuration.
    pub identity: String,
    /// Number of adversarial examples in the image grid.
    pub examples: usize,
    /// Attacks run on the same images outside the cascade (a training job's PGD with restarts):
    /// their per-image results join the headline's per-sample worst case, their own robust
    /// accuracies are reported beside it, and the `cascade-above-simpler-attack` check compares
    /// the cascade with each.
    pub others: Vec<OtherAttack>,
    /// When set, the report files ([`write_robust_report`]) are written into the output
    /// directory before its lock is released, so that no other writer can come between the
    /// evaluation and its report.
    pub report: Option<EvalContext>,
}

/// An attack run on the evaluated images outside the cascade ([`RobustEvalOptions::others`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OtherAttack {
    /// Its name in the report, e.g. `PGD-50 x10`.
    pub name: String,
    /// Per image, in the evaluated order: classified correctly clean and not broken by this attack
    /// (no misclassified example inside the threat model and the box).
    pub robust: Vec<bool>,
}

/// One attack's own robust accuracy on the evaluated images.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttackAccuracy {
    /// The attack (`cascade`, `PGD-50 x10`, ...).
    pub name: String,
    /// Robust accuracy under this attack alone.
    pub robust_acc: f64,
}

/// One stage's results at the headline radius.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageReport {
    /// The stage's name.
    pub name: String,
    /// Its attack configuration at the headline radius (restarts and seed included).
    pub attack: AttackConfig,
    /// Target classes tried in turn, for targeted stages.
    pub target_classes: Option<usize>,
    /// Robust accuracy after this stage (cumulative, as AutoAttack prints it).
    pub robust_acc_after: f64,
    /// Points attacked (summed over target classes).
    pub attacked: usize,
    /// Points this stage broke.
    pub broken: usize,
    /// Misclassified outputs outside the threat model (not counted).
    pub rejected: usize,
    /// Seconds spent in this stage, summed over chunks (those of a resumed earlier run included).
    pub seconds: f64,
}

/// Robust accuracy at one radius.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepPoint {
    /// The radius.
    pub eps: f64,
    /// Robust accuracy after the whole cascade.
    pub robust_acc: f64,
    /// Robust accuracy after each stage, in order.
    pub robust_acc_after: Vec<f64>,
}

/// Everything an evaluation measured. Field names follow RobustBench's model cards where one
/// exists (`clean_acc`, `threat_model`, `eps`, `n_examples`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RobustReport {
    /// `Linf`, `L2` or `L1`, as RobustBench writes it.
    pub threat_model: String,
    /// The headline radius.
    pub eps: f64,
    /// Number of evaluated images.
    pub n_examples: usize,
    /// Clean accuracy.
    pub clean_acc: f64,
    /// The headline: robust accuracy at `eps`, the per-sample worst case over everything run at
    /// that radius — the cascade, the Square probe of the sanity checks and the
    /// [`RobustEvalOptions::others`]. A point counts as robust only if no attack broke it.
    pub robust_acc: f64,
    /// Robust accuracy after the cascade alone (per-sample worst case over its stages).
    pub cascade_robust_acc: f64,
    /// Each attack's own robust accuracy: the cascade, then the others; the Square probe's
    /// extra breaks are in `probe_broken`.
    pub per_attack: Vec<AttackAccuracy>,
    /// Points the Square probe broke that the cascade had not (counted in `robust_acc`).
    pub probe_broken: usize,
    /// The preset, or `custom`.
    pub preset: String,
    /// Per stage, at the headline radius.
    pub attacks: Vec<StageReport>,
    /// Robust accuracy at every evaluated radius.
    pub sweep: Vec<SweepPoint>,
    /// Points broken at a smaller radius of the sweep, whose example also counts at `eps` (the
    /// stages at `eps` did not need to attack them).
    pub broken_at_smaller_eps: usize,
    /// Every sanity check, raised or not, with its evidence.
    pub flags: Vec<SanityFlag>,
    /// The full configuration (seed and sizes).
    pub config: RobustEvalConfig,
    /// Wall-clock seconds of this run (a resumed run counts only its own time).
    pub seconds: f64,
    /// Chunks loaded from a previous run instead of computed.
    pub resumed_chunks: usize,
    /// The saved worst-case inputs at the headline radius.
    pub adversarial_file: PathBuf,
    /// Examples for the grid (not serialized).
    #[serde(skip)]
    pub examples: Vec<(GridImage, GridImage, usize, usize)>,
}

impl RobustReport {
    /// The raised flags.
    pub fn raised(&self) -> impl Iterator<Item = &SanityFlag> {
        self.flags.iter().filter(|f| f.raised())
    }
}

/// A chunk's saved results (`chunk-NNNNN.json`; its worst-case inputs at the headline radius are
/// in `chunk-NNNNN.f32`, little-endian).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ChunkFile {
    fingerprint: String,
    start: usize,
    len: usize,
    clean_correct: Vec<bool>,
    clean_predictions: Vec<usize>,
    broken: Vec<Vec<Option<Break>>>,
    adversarial_predictions: Vec<Vec<usize>>,
    /// `[eps index][stage] = (attacked, broken, rejected, seconds)`.
    stage_totals: Vec<Vec<(usize, usize, usize, f64)>>,
}

fn threat_name(norm: Norm) -> &'static str {
    match norm {
        Norm::Linf => "Linf",
        Norm::L2 => "L2",
        Norm::L1 => "L1",
    }
}

/// A stable fingerprint of what is evaluated: FNV-1a over the configuration JSON, the caller's
/// identity (model, weights, backend), this crate's version, and the images and labels.
fn fingerprint(config: &RobustEvalConfig, identity: &str, data: &ImageDataset) -> String {
    let text = format!(
        "{}|{identity}",
        serde_json::to_string(config).unwrap_or_default()
    );
    data_fingerprint(&text, data)
}

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
    let device = device.clone().inner();
    let plan = Plan::new(config, opts, data)?;
    let started = Instant::now();
    let mut flags = first_batch_flags(model, data, config, &device)?;
    // One evaluation per output directory at a time: two would mix their chunks. Held until the
    // report is written (`opts.report`).
    let lock = RunLock::acquire(out_dir)?;
    let fp = open_state(out_dir, config, opts, data)?;
    let mut run = run_cascade(model, data, config, opts, &plan, out_dir, &fp, &device)?;
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
        per_attack: headline.per_attack,
        probe_broken: probe_breaks.len(),
        preset: config
            .preset
            .map_or("custom".to_string(), |p| p.to_string()),
        attacks: tally.stage_reports(&plan, config),
        sweep: tally.sweep(&plan),
        flags,
        config: config.clone(),
        broken_at_smaller_eps: tally.carried(plan.main),
        seconds: started.elapsed().as_secs_f64(),
        resumed_chunks: run.resumed,
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
struct Plan {
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
fn first_batch_flags<C: Classifier<4> + ?Sized>(
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
fn open_state(
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
struct CascadeRun {
    results: Vec<ChunkFile>,
    /// The worst-case inputs at the headline radius, every image in order.
    adversarial_main: Vec<f32>,
    /// Chunks loaded from a previous run.
    resumed: usize,
}

/// Runs the cascade chunk by chunk, loading the chunks a previous run saved and saving each new
/// one as it finishes.
#[allow(clippy::too_many_arguments)]
fn run_cascade<C: Classifier<4> + ?Sized>(
    model: &C,
    data: &ImageDataset,
    config: &RobustEvalConfig,
    opts: &RobustEvalOptions,
    plan: &Plan,
    out_dir: &Path,
    fp: &str,
    device: &Device,
) -> Result<CascadeRun, EvalError> {
    let (n, n_pixels, main) = (plan.n, plan.n_pixels, plan.main);
    let state_dir = out_dir.join("eval-state");
    let stages = plan.evaluator.stages().len();
    let chunks: Vec<(usize, usize)> = (0..n)
        .step_by(config.chunk_size)
        .map(|s| (s, config.chunk_size.min(n - s)))
        .collect();
    let progress = bar(n, opts.progress, &format!("eval {}", config.norm));
    let mut run = CascadeRun {
        results: Vec::with_capacity(chunks.len()),
        adversarial_main: Vec::with_capacity(n * n_pixels),
        resumed: 0,
    };
    let mut robust_so_far = (0usize, 0usize);
    for (c, &(start, len)) in chunks.iter().enumerate() {
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
struct Tally {
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
fn black_box_check<C: Classifier<4> + ?Sized>(
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
        flags.push(not_checked(
            "no black-box attack in the list, and no point left robust to probe with one",
        ));
        return Ok(Vec::new());
    }
    let found = broken_rows(model, data, &probe, square, config, device)?;
    let mut flag = sanity::black_box_flag(found.len(), plan.n);
    flag.evidence = format!(
        "{} (a {}-query Square probe of {} points still robust after the cascade)",
        flag.evidence,
        config.probe_queries,
        probe.len()
    );
    flags.push(flag);
    Ok(found)
}

/// Robust accuracy against eps must fall, and at a radius where it must be near 0 (APGD at the
/// box's size) a probe must break nearly everything.
fn eps_trend_checks<C: Classifier<4> + ?Sized>(
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
struct Headline {
    /// Robust after the cascade and the probe (what the saved inputs must confirm).
    robust_saved: usize,
    /// Robust after everything run: the headline count.
    robust: usize,
    per_attack: Vec<AttackAccuracy>,
}

/// A point is robust only if nothing run at `eps` broke it. The probe's examples replace the
/// clean image in the saved worst-case inputs, so the re-check from disk covers them; the other
/// attacks' results join per sample, each compared with the cascade.
fn headline(
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
    Headline {
        robust_saved,
        robust: robust_rows.iter().filter(|&&r| r).count(),
        per_attack,
    }
}

/// Saves the worst-case inputs to `out_dir/adversarial.safetensors`, reads them back and
/// re-classifies them (the recompute flag), and adds the threat-model flag; returns the file.
#[allow(clippy::too_many_arguments)]
fn recheck_from_disk<C: Classifier<4> + ?Sized>(
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
fn grid_examples(
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

fn count_robust(chunk: &ChunkFile, main: usize) -> usize {
    chunk
        .clean_correct
        .iter()
        .zip(&chunk.broken[main])
        .filter(|(c, b)| **c && b.is_none())
        .count()
}

/// Creates the state directory, or checks that the one there belongs to this evaluation.
fn prepare_state_dir(dir: &Path, fp: &str, resume: bool) -> Result<(), EvalError> {
    let meta = dir.join("fingerprint");
    if dir.exists() {
        if !resume {
            return Err(EvalError::State {
                path: dir.to_path_buf(),
                reason: "a saved evaluation is already there; pass --resume to continue it, or \
                         choose another output directory"
                    .into(),
            });
        }
        let found = std::fs::read_to_string(&meta).unwrap_or_default();
        if found.trim() != fp {
            return Err(EvalError::State {
                path: dir.to_path_buf(),
                reason: format!(
                    "the saved evaluation is of another model, dataset or configuration \
                     (fingerprint {} here, {fp} now); choose another output directory",
                    if found.trim().is_empty() {
                        "missing"
                    } else {
                        found.trim()
                    }
                ),
            });
        }
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(EvalError::io(dir))?;
    write_atomic(&meta, fp.as_bytes())
}

/// A saved chunk, if it is complete and of this evaluation; anything else is recomputed.
fn load_chunk(
    json: &Path,
    bin: &Path,
    fp: &str,
    start: usize,
    len: usize,
    n_pixels: usize,
    shape: (usize, usize),
) -> Option<(ChunkFile, Vec<f32>)> {
    let chunk: ChunkFile = serde_json::from_slice(&std::fs::read(json).ok()?).ok()?;
    let bytes = std::fs::read(bin).ok()?;
    let (radii, stages) = shape;
    let breaks_valid = chunk.broken.iter().enumerate().all(|(e, row)| {
        row.len() == len
            && row
                .iter()
                .flatten()
                .all(|b| b.stage < stages && b.eps_index <= e)
    });
    let ok = chunk.fingerprint == fp
        && chunk.start == start
        && chunk.len == len
        && chunk.clean_correct.len() == len
        && chunk.clean_predictions.len() == len
        && chunk.broken.len() == radii
        && breaks_valid
        && chunk.adversarial_predictions.len() == radii
        && chunk.adversarial_predictions.iter().all(|p| p.len() == len)
        && chunk.stage_totals.len() == radii
        && chunk.stage_totals.iter().all(|t| t.len() == stages)
        && bytes.len() == len * n_pixels * 4;
    if !ok {
        tracing::warn!(
            "{}: incomplete or foreign chunk, recomputing it",
            json.display()
        );
        return None;
    }
    let adv = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Some((chunk, adv))
}

/// Writes the inputs first and the JSON last: a chunk counts only once both are complete.
fn save_chunk(json: &Path, bin: &Path, chunk: &ChunkFile, adv: &[f32]) -> Result<(), EvalError> {
    let bytes: Vec<u8> = adv.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_atomic(bin, &bytes)?;
    let text = serde_json::to_vec(chunk).map_err(|e| EvalError::Serialize {
        what: "an evaluation chunk",
        reason: e.to_string(),
    })?;
    write_atomic(json, &text)
}

/// Attacks the rows `rows` of `data` with `attack`; returns each row whose result the model
/// misclassifies and that lies inside the attack's threat model and the box, with that result.
fn broken_rows<C: Classifier<4> + ?Sized>(
    model: &C,
    data: &ImageDataset,
    rows: &[usize],
    attack: &AttackConfig,
    config: &RobustEvalConfig,
    device: &Device,
) -> Result<Vec<(usize, Vec<f32>)>, EvalError> {
    let attack = attack.init()?;
    let threat = attack.threat();
    let n_pixels = data.image_size();
    let mut broken = Vec::new();
    for part in rows.chunks(config.batch_size.max(1)) {
        let (x, y) = data.batch(part, device);
        let labels: Vec<i64> = y.clone().try_into_vec_as::<i64>().expect("int labels");
        let clean: Vec<f32> = x.clone().try_into_vec_as::<f32>().expect("f32 images");
        let adv = attack.perturb(model, x, y)?;
        let b = part.len();
        let adv_host: Vec<f32> = adv.clone().try_into_vec_as::<f32>().expect("f32 images");
        let pred: Vec<i64> = model
            .logits(adv)
            .argmax(1)
            .reshape([b])
            .try_into_vec_as::<i64>()
            .expect("argmax reads back as i64");
        for (j, &row) in part.iter().enumerate() {
            let r = j * n_pixels..(j + 1) * n_pixels;
            let inside = threat.is_none_or(|t| {
                within_threat(
                    t.norm,
                    t.eps,
                    (config.bounds.lo, config.bounds.hi),
                    &clean[r.clone()],
                    &adv_host[r.clone()],
                )
            });
            if pred[j] != labels[j] && inside {
                broken.push((row, adv_host[r].to_vec()));
            }
        }
    }
    Ok(broken)
}

/// `adversarial.safetensors`: `x_adv` `[N, C, H, W]` f32 (the worst case per image; the clean
/// image where the model is robust) and `labels` `[N]` i64.
fn save_adversarial(
    path: &Path,
    adv: &[f32],
    labels: &[i64],
    data: &ImageDataset,
) -> Result<(), EvalError> {
    let n = labels.len();
    let x_bytes: Vec<u8> = adv.iter().flat_map(|v| v.to_le_bytes()).collect();
    let y_bytes: Vec<u8> = labels.iter().flat_map(|v| v.to_le_bytes()).collect();
    let err = |e: safetensors::SafeTensorError| EvalError::Image {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let x = TensorView::new(
        Dtype::F32,
        vec![n, data.channels, data.height, data.width],
        &x_bytes,
    )
    .map_err(err)?;
    let y = TensorView::new(Dtype::I64, vec![n], &y_bytes).map_err(err)?;
    let bytes = safetensors::serialize([("x_adv", x), ("labels", y)], &None).map_err(err)?;
    write_atomic(path, &bytes)
}

/// Reloads `adversarial.safetensors` and counts the inputs the model classifies correctly.
fn recompute_correct<C: Classifier<4> + ?Sized>(
    model: &C,
    path: &Path,
    batch_size: usize,
    device: &Device,
) -> Result<usize, EvalError> {
    let bytes = std::fs::read(path).map_err(EvalError::io(path))?;
    let bad = |reason: String| EvalError::State {
        path: path.to_path_buf(),
        reason,
    };
    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
    let x = st.tensor("x_adv").map_err(|e| bad(e.to_string()))?;
    let y = st.tensor("labels").map_err(|e| bad(e.to_string()))?;
    let shape = x.shape().to_vec();
    if shape.len() != 4 || x.dtype() != Dtype::F32 || y.dtype() != Dtype::I64 {
        return Err(bad("unexpected tensor layout".into()));
    }
    let n = shape[0];
    let per = shape[1] * shape[2] * shape[3];
    let xs: Vec<f32> = x
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let ys: Vec<i64> = y
        .data()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
        .collect();
    let mut correct = 0;
    for start in (0..n).step_by(batch_size.max(1)) {
        let b = batch_size.min(n - start);
        let t: Tensor<4> = Tensor::from_data(
            TensorData::new(
                xs[start * per..(start + b) * per].to_vec(),
                [b, shape[1], shape[2], shape[3]],
            ),
            device,
        );
        let pred: Vec<i64> = model
            .logits(t)
            .argmax(1)
            .reshape([b])
            .try_into_vec_as::<i64>()
            .expect("argmax reads back as i64");
        correct += pred
            .iter()
            .zip(&ys[start..start + b])
            .filter(|(p, y)| p == y)
            .count();
    }
    Ok(correct)
}

/// What was evaluated (model, weights, dataset, backend, version), recorded in the report: the
/// same record as an attack run's.
pub type EvalContext = crate::attack_run::AttackContext;

#[derive(Serialize)]
struct ReportFile<'a> {
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

fn markdown(ctx: &EvalContext, r: &RobustReport) -> String {
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
    if r.probe_broken > 0 {
        let _ = writeln!(
            s,
            "| Square probe of the sanity checks | broke {} more point(s) |",
            r.probe_broken
        );
    }
    if r.preset == "quick" {
        let _ = writeln!(
            s,
            "| note | `quick` is a cheaper upper bound; `standard` is AutoAttack's composition |"
        );
    }
    let _ = writeln!(s, "| seed | {} |", r.config.seed);
    let _ = writeln!(
        s,
        "| time | {:.1} s{} |\n",
        r.seconds,
        if r.resumed_chunks > 0 {
            format!(" (this run; {} chunks resumed)", r.resumed_chunks)
        } else {
            String::new()
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

fn names(r: &RobustReport) -> String {
    r.attacks
        .iter()
        .map(|a| a.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Builds the cascade for the command line: a preset, or a comma-separated list of stage names
/// (`apgd-ce`, `apgd-t`, `apgd-mt`, `square`) taken from the standard preset.
pub fn stages_from_names(names: &str, norm: Norm, seed: u64) -> Result<Vec<Stage>, EvalError> {
    let all = Preset::Standard.stages(norm, seed);
    names
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|name| {
            all.iter()
                .find(|s| s.name == name)
                .cloned()
                .ok_or_else(|| EvalError::Settings {
                    what: "evaluation settings",
                    problem: format!(
                        "unknown attack `{name}` for {norm}; known: {}",
                        all.iter()
                            .map(|s| s.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                })
        })
        .collect()
}
