//! Running an attack over a dataset: clean, adversarial and robust accuracy, perturbation sizes,
//! throughput, a JSON summary and a PNG grid of examples.

use std::path::{Path, PathBuf};
use std::time::Instant;

use bulwark_attack_core::{Attack, AttackConfig, Classifier, Norm, within_threat};
use bulwark_data::{ImageDataset, content_hash, epoch_batches};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::atomic::write_atomic;
use crate::error::EvalError;
use crate::grid::{GridImage, write_png_grid};
use crate::progress::bar;
use crate::shard::{SHARD_FILE, Shard, ShardManifest, read_shards};

/// How to run [`attack_dataset`].
#[derive(Debug, Clone)]
pub struct AttackRunOptions {
    /// Images per attack batch.
    pub batch_size: usize,
    /// Show a progress bar.
    pub progress: bool,
    /// Number of examples kept for the image grid (the first ones the attack fooled, then others).
    /// A resumed run keeps examples from the batches it attacks itself.
    pub examples: usize,
    /// Where to save each finished batch's counts, so that a killed run resumes where it stopped
    /// (`None`: nothing is saved).
    pub state: Option<AttackState>,
}

/// A file of finished batches ([`AttackRunOptions::state`]). Batches recorded there by a run of
/// the same attack configuration, batch size, images, labels and `identity` are not attacked
/// again; a file of anything else, or one that does not parse, is ignored with a warning and
/// rewritten. The summary of a resumed run is the one an uninterrupted run gives (the counts are
/// summed batch by batch in both).
#[derive(Debug, Clone)]
pub struct AttackState {
    /// The JSON file, rewritten atomically after each batch.
    pub path: PathBuf,
    /// What else the result depends on and the data does not show (model, weights).
    pub identity: String,
}

/// The counts of one finished batch, as saved in the state file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct BatchTally {
    start: usize,
    len: usize,
    clean_ok: usize,
    adv_ok: usize,
    robust_ok: usize,
    fooled: usize,
    max_perturbation: f64,
    sum_fooled_perturbation: f64,
    seconds: f64,
    /// Misclassified outputs outside the threat model or the box: not counted as fooled.
    #[serde(default)]
    rejected: usize,
    /// Per image of the batch: classified correctly clean and not fooled. (A state file
    /// written before this field existed has none, and its batches are attacked again.)
    #[serde(default)]
    robust_rows: Vec<bool>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StateFile {
    fingerprint: String,
    batches: Vec<BatchTally>,
}

impl AttackState {
    /// The batches saved for this run, or none (with a warning when the file is unusable).
    fn load(&self, fingerprint: &str) -> Vec<BatchTally> {
        let Ok(bytes) = std::fs::read(&self.path) else {
            return Vec::new();
        };
        match serde_json::from_slice::<StateFile>(&bytes) {
            Ok(file) if file.fingerprint == fingerprint => file.batches,
            Ok(_) => {
                tracing::warn!(
                    "{}: saved batches of another attack, model or dataset; attacking every batch",
                    self.path.display()
                );
                Vec::new()
            }
            Err(e) => {
                tracing::warn!(
                    "{}: unreadable ({e}); attacking every batch",
                    self.path.display()
                );
                Vec::new()
            }
        }
    }

    fn save(&self, fingerprint: &str, batches: &[BatchTally]) -> Result<(), EvalError> {
        let json = serde_json::to_vec(&StateFile {
            fingerprint: fingerprint.to_string(),
            batches: batches.to_vec(),
        })
        .map_err(|e| EvalError::Serialize {
            what: "the attack state",
            reason: e.to_string(),
        })?;
        write_atomic(&self.path, &json)
    }
}

/// One kept example: clean and adversarial image with the label and both predictions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttackExample {
    /// The clean image.
    pub clean: GridImage,
    /// The adversarial image.
    pub adversarial: GridImage,
    /// True label.
    pub label: usize,
    /// Prediction on the clean image.
    pub clean_prediction: usize,
    /// Prediction on the adversarial image.
    pub adversarial_prediction: usize,
}

/// Result of an attack over a dataset.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttackSummary {
    /// The attack's short name.
    pub attack: String,
    /// The full attack configuration (reproduces the run).
    pub config: AttackConfig,
    /// The norm perturbations are measured in.
    pub norm: Norm,
    /// Radius of the threat model.
    pub eps: Option<f64>,
    /// Number of images attacked.
    pub n: usize,
    /// Accuracy on the clean images.
    pub clean_accuracy: f64,
    /// Accuracy on the adversarial images.
    pub adversarial_accuracy: f64,
    /// Share of images classified correctly both clean and adversarially (RobustBench's robust
    /// accuracy).
    pub robust_accuracy: f64,
    /// Among clean-correct images, the share the attack turned into errors.
    pub attack_success_rate: f64,
    /// Largest per-sample perturbation, in the attack's norm (the threat model's, or the norm a
    /// minimal-perturbation attack minimizes).
    pub max_perturbation: f64,
    /// Mean perturbation of the images the attack fooled (same norm), if any.
    pub mean_perturbation_fooled: Option<f64>,
    /// Wall-clock seconds of the attack loop (those of batches resumed from a state file
    /// included).
    pub seconds: f64,
    /// Attacked images per second.
    pub images_per_second: f64,
    /// Batches taken from the state file instead of attacked ([`AttackRunOptions::state`]).
    #[serde(default)]
    pub resumed_batches: usize,
    /// Misclassified outputs outside the threat model or the box (the evaluator's test, distance
    /// in f64 `≤ eps·(1 + 1e-12)`): not counted as fooled, so those images count as robust.
    #[serde(default)]
    pub rejected: usize,
    /// Per image, in order: classified correctly clean, and no misclassified output inside the
    /// threat model was found. What a per-sample
    /// worst case over several attacks combines (not serialized; `robust_accuracy` is its mean).
    #[serde(skip)]
    pub robust_per_sample: Vec<bool>,
    /// Examples for the grid (not serialized).
    #[serde(skip)]
    pub examples: Vec<AttackExample>,
}

impl AttackSummary {
    /// The name the attack goes by in reports: `PGD-<steps> x<restarts>` for PGD, else its
    /// short name.
    pub fn label(&self) -> String {
        match &self.config {
            AttackConfig::Pgd(p) => format!("PGD-{} x{}", p.steps, p.options.restarts),
            _ => self.attack.clone(),
        }
    }
}

fn predictions(logits: Tensor<2>) -> Vec<usize> {
    let b = logits.dims()[0];
    logits
        .argmax(1)
        .reshape([b])
        .try_into_vec_as::<i64>()
        .expect("argmax reads back as i64")
        .into_iter()
        .map(|p| p as usize)
        .collect()
}

/// Attacks every image of `data` (in order) and measures clean, adversarial and robust accuracy.
/// The model is evaluated in inference mode; the attack crafts as its options say.
pub fn attack_dataset<C: Classifier<4> + ?Sized>(
    model: &C,
    data: &ImageDataset,
    config: &AttackConfig,
    opts: &AttackRunOptions,
    device: &Device,
) -> Result<AttackSummary, EvalError> {
    let batches = data.len().div_ceil(opts.batch_size.max(1));
    let part = attack_batches(model, data, config, opts, 0..batches, device)?;
    summarize(config, data.len(), opts.examples, part)
}

/// One shard of [`attack_dataset`]: the batches [`Shard::range`] gives of those an unsharded run
/// attacks (the same images in the same batches), resumable through `opts.state`; writes
/// `shard.json` ([`ShardManifest`]) with the finished batches' counts and the shard's example
/// candidates into `out_dir`, for [`merge_attack`]. `context` is recorded for the merged summary.
/// Returns the shard's own summary (over its images).
#[allow(clippy::too_many_arguments)]
pub fn attack_dataset_shard<C: Classifier<4> + ?Sized>(
    model: &C,
    data: &ImageDataset,
    config: &AttackConfig,
    opts: &AttackRunOptions,
    shard: Shard,
    context: &AttackContext,
    out_dir: &Path,
    device: &Device,
) -> Result<AttackSummary, EvalError> {
    let started = Instant::now();
    let batch_size = opts.batch_size.max(1);
    let units = data.len().div_ceil(batch_size);
    let range = shard.range(units);
    let part = attack_batches(model, data, config, opts, range.clone(), device)?;
    let images = part.tallies.iter().map(|t| t.len).sum();
    let manifest = ShardManifest {
        kind: "attack".into(),
        shard,
        fingerprint: attack_fingerprint(config, opts, data),
        units,
        range,
        seconds: started.elapsed().as_secs_f64(),
        bulwark_version: env!("CARGO_PKG_VERSION").into(),
        cwd: std::env::current_dir().map_err(EvalError::io("."))?,
        command: serde_json::json!({
            "context": context,
            "n": data.len(),
            "examples": opts.examples,
            "config": config,
        }),
        partial: serde_json::to_value(&part).map_err(|e| EvalError::Serialize {
            what: "the attack shard",
            reason: e.to_string(),
        })?,
    };
    manifest.write(out_dir)?;
    summarize(config, images, opts.examples, part)
}

/// Combines the shards of one attack ([`attack_dataset_shard`]) into the summary an unsharded
/// run gives (the same counts, per-sample results and examples; `seconds` sums the batches'),
/// with the context the shards recorded. Refuses shards of different attacks, weights or data,
/// and a missing, duplicated or unfinished shard.
pub fn merge_attack(shard_dirs: &[PathBuf]) -> Result<(AttackContext, AttackSummary), EvalError> {
    #[derive(Deserialize)]
    struct Command {
        context: AttackContext,
        n: usize,
        examples: usize,
        config: AttackConfig,
    }
    let shards = read_shards(shard_dirs)?;
    let (first_dir, first) = &shards[0];
    if first.kind != "attack" {
        return Err(EvalError::State {
            path: first_dir.clone(),
            reason: format!("a shard of `{}`, not of an attack", first.kind),
        });
    }
    let command: Command = first.command(first_dir)?;
    let mut whole = AttackPart::default();
    for (dir, m) in &shards {
        let part: AttackPart = m.partial(dir)?;
        let expected = m.range.len();
        if part.tallies.len() != expected {
            return Err(EvalError::State {
                path: dir.join(SHARD_FILE),
                reason: format!(
                    "shard {} holds {} of its {expected} batches",
                    m.shard,
                    part.tallies.len()
                ),
            });
        }
        whole.tallies.extend(part.tallies);
        whole.fooled.extend(part.fooled);
        whole.others.extend(part.others);
        whole.resumed += part.resumed;
    }
    let n: usize = whole.tallies.iter().map(|t| t.len).sum();
    if n != command.n {
        return Err(EvalError::State {
            path: first_dir.join(SHARD_FILE),
            reason: format!("the shards cover {n} of the attack's {} images", command.n),
        });
    }
    let summary = summarize(&command.config, n, command.examples, whole)?;
    Ok((command.context, summary))
}

/// Whether `dir` holds the finished shard `shard` of this attack (the same configuration,
/// identity, batch size and data): a rerun of that shard (a requeued array task) has nothing left
/// to do.
pub fn attack_shard_finished(
    dir: &Path,
    config: &AttackConfig,
    opts: &AttackRunOptions,
    data: &ImageDataset,
    shard: Shard,
) -> bool {
    ShardManifest::read(dir).is_ok_and(|m| {
        m.kind == "attack"
            && m.shard == shard
            && m.fingerprint == attack_fingerprint(config, opts, data)
    })
}

/// The key of an attack's saved batches and of its shards.
fn attack_fingerprint(
    config: &AttackConfig,
    opts: &AttackRunOptions,
    data: &ImageDataset,
) -> String {
    let text = format!(
        "{}|{}|{}",
        serde_json::to_string(config).unwrap_or_default(),
        opts.state.as_ref().map_or("", |s| s.identity.as_str()),
        opts.batch_size.max(1)
    );
    data_fingerprint(&text, data)
}

/// What attacking some of the batches gives: their counts in order, and the first `examples`
/// fooled and not-fooled images among them (examples are kept from the batches attacked here).
#[derive(Debug, Default, Serialize, Deserialize)]
struct AttackPart {
    tallies: Vec<BatchTally>,
    fooled: Vec<AttackExample>,
    others: Vec<AttackExample>,
    resumed: usize,
}

fn attack_batches<C: Classifier<4> + ?Sized>(
    model: &C,
    data: &ImageDataset,
    config: &AttackConfig,
    opts: &AttackRunOptions,
    batch_range: std::ops::Range<usize>,
    device: &Device,
) -> Result<AttackPart, EvalError> {
    let attack = config.init()?;
    let threat = attack.threat();
    let bounds = attack.options().bounds;
    let norm = attack.norm();
    let device = device.clone().inner();
    let (c, h, w) = (data.channels, data.height, data.width);
    let n_pixels = c * h * w;
    let batch_size = opts.batch_size.max(1);
    let fingerprint = opts
        .state
        .as_ref()
        .map(|_| attack_fingerprint(config, opts, data));
    let saved = match (&opts.state, &fingerprint) {
        (Some(state), Some(fp)) => state.load(fp),
        _ => Vec::new(),
    };
    let mut tallies: Vec<BatchTally> = Vec::new();
    let mut examples: Vec<AttackExample> = Vec::new();
    let mut others: Vec<AttackExample> = Vec::new();
    let mut resumed_batches = 0;
    let todo: usize = batch_range
        .clone()
        .map(|b| batch_size.min(data.len() - b * batch_size))
        .sum();
    let bar = bar(todo, opts.progress, attack.name());
    for (b, indices) in epoch_batches(data.len(), batch_size, false, 0, 0)
        .into_iter()
        .enumerate()
    {
        if !batch_range.contains(&b) {
            continue;
        }
        let (start, len) = (b * batch_size, indices.len());
        if let Some(t) = saved.iter().find(|t| (t.start, t.len) == (start, len)) {
            // Counts that no batch of `len` images can give mean a damaged file: the clean-correct
            // images are the robust ones and the fooled ones; the adversarially correct ones are
            // the robust ones and some clean errors; the per-image flags add up to the count.
            if t.robust_ok + t.fooled == t.clean_ok
                && t.robust_ok <= t.adv_ok + t.rejected
                && t.adv_ok + t.fooled <= len
                && t.robust_rows.len() == len
                && t.robust_rows.iter().filter(|&&r| r).count() == t.robust_ok
            {
                tallies.push(t.clone());
                resumed_batches += 1;
                bar.inc(len as u64);
                continue;
            }
        }
        let batch_start = Instant::now();
        let mut t = BatchTally {
            start,
            len,
            robust_rows: Vec::with_capacity(len),
            ..BatchTally::default()
        };
        let (x, y) = data.batch(&indices, &device);
        let clean_pred = predictions(model.logits(x.clone()));
        let adv = attack.perturb(model, x.clone(), y)?;
        let adv_pred = predictions(model.logits(adv.clone()));
        let xs = x.try_into_vec_as::<f32>().expect("f32 images");
        let advs = adv.try_into_vec_as::<f32>().expect("f32 images");
        for (j, &i) in indices.iter().enumerate() {
            let label = usize::from(data.labels[i]);
            let r = j * n_pixels..(j + 1) * n_pixels;
            let d = norm.of(advs[r.clone()]
                .iter()
                .zip(&xs[r.clone()])
                .map(|(&a, &b)| f64::from(a) - f64::from(b)));
            t.max_perturbation = t.max_perturbation.max(d);
            let (ok_c, ok_a) = (clean_pred[j] == label, adv_pred[j] == label);
            // An output outside the ball or the box is not an adversarial example of this threat
            // model: the evaluator's test, so that PGD's breaks can join its worst case.
            let inside = threat.is_none_or(|th| {
                within_threat(
                    th.norm,
                    th.eps,
                    (bounds.lo, bounds.hi),
                    &xs[r.clone()],
                    &advs[r.clone()],
                )
            });
            let fooled = ok_c && !ok_a && inside;
            t.rejected += usize::from(ok_c && !ok_a && !inside);
            t.clean_ok += usize::from(ok_c);
            t.adv_ok += usize::from(ok_a);
            t.robust_ok += usize::from(ok_c && !fooled);
            t.robust_rows.push(ok_c && !fooled);
            if fooled {
                t.fooled += 1;
                t.sum_fooled_perturbation += d;
            }
            let keep = if fooled { &mut examples } else { &mut others };
            if keep.len() < opts.examples {
                let img = |v: &[f32]| GridImage {
                    channels: c,
                    height: h,
                    width: w,
                    pixels: v.to_vec(),
                };
                keep.push(AttackExample {
                    clean: img(&xs[r.clone()]),
                    adversarial: img(&advs[r]),
                    label,
                    clean_prediction: clean_pred[j],
                    adversarial_prediction: adv_pred[j],
                });
            }
        }
        t.seconds = batch_start.elapsed().as_secs_f64();
        tallies.push(t);
        if let (Some(state), Some(fp)) = (&opts.state, &fingerprint) {
            state.save(fp, &tallies)?;
        }
        bar.inc(indices.len() as u64);
        let seen = bar.position().max(1) as f64;
        let sum = |f: fn(&BatchTally) -> usize| tallies.iter().map(f).sum::<usize>() as f64;
        bar.set_message(format!(
            "clean {:.1} %  adversarial {:.1} %",
            100.0 * sum(|t| t.clean_ok) / seen,
            100.0 * sum(|t| t.adv_ok) / seen
        ));
    }
    bar.finish_and_clear();
    if let (Some(state), true) = (&opts.state, resumed_batches > 0) {
        tracing::info!(
            "{} of {} batches resumed from {}",
            resumed_batches,
            tallies.len(),
            state.path.display()
        );
    }
    Ok(AttackPart {
        tallies,
        fooled: examples,
        others,
        resumed: resumed_batches,
    })
}

/// The summary of `part`'s batches (`n` images).
fn summarize(
    config: &AttackConfig,
    n: usize,
    keep: usize,
    part: AttackPart,
) -> Result<AttackSummary, EvalError> {
    let attack = config.init()?;
    let threat = attack.threat();
    let norm = attack.norm();
    let AttackPart {
        tallies,
        fooled: mut examples,
        others,
        resumed: resumed_batches,
    } = part;
    // Summed batch by batch, so that a resumed run adds exactly what an uninterrupted one does.
    let count = |f: fn(&BatchTally) -> usize| tallies.iter().map(f).sum::<usize>();
    let (clean_ok, adv_ok, robust_ok, fooled) = (
        count(|t| t.clean_ok),
        count(|t| t.adv_ok),
        count(|t| t.robust_ok),
        count(|t| t.fooled),
    );
    let max_pert = tallies.iter().fold(0f64, |m, t| m.max(t.max_perturbation));
    let sum_fooled_pert: f64 = tallies.iter().map(|t| t.sum_fooled_perturbation).sum();
    let seconds: f64 = tallies.iter().map(|t| t.seconds).sum();
    let frac = |k: usize, of: usize| if of == 0 { 0.0 } else { k as f64 / of as f64 };
    // The first `keep` fooled images, then the first others (in image order: shards are merged
    // in order, each keeping its first ones).
    examples.truncate(keep);
    examples.extend(others);
    examples.truncate(keep);
    Ok(AttackSummary {
        attack: attack.name().to_string(),
        config: config.clone(),
        norm,
        eps: threat.map(|t| t.eps),
        n,
        clean_accuracy: frac(clean_ok, n),
        adversarial_accuracy: frac(adv_ok, n),
        robust_accuracy: frac(robust_ok, n),
        attack_success_rate: frac(fooled, clean_ok),
        max_perturbation: max_pert,
        mean_perturbation_fooled: (fooled > 0).then(|| sum_fooled_pert / fooled as f64),
        seconds,
        images_per_second: if seconds > 0.0 {
            n as f64 / seconds
        } else {
            0.0
        },
        resumed_batches,
        rejected: count(|t| t.rejected),
        robust_per_sample: tallies
            .iter()
            .flat_map(|t| t.robust_rows.iter().copied())
            .collect(),
        examples,
    })
}

/// What was attacked, recorded next to the summary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttackContext {
    /// Zoo model name.
    pub model: String,
    /// Weights file.
    pub weights: PathBuf,
    /// Dataset name and split, e.g. `mnist/test`.
    pub dataset: String,
    /// Backend the attack ran on.
    pub backend: String,
    /// Bulwark's version.
    pub bulwark_version: String,
}

#[derive(Serialize)]
struct AttackReportFile<'a> {
    #[serde(flatten)]
    context: &'a AttackContext,
    #[serde(flatten)]
    summary: &'a AttackSummary,
    /// Per column of `examples.png`, left to right.
    grid_columns: Vec<GridColumn>,
}

#[derive(Serialize)]
struct GridColumn {
    label: usize,
    clean_prediction: usize,
    adversarial_prediction: usize,
}

/// Writes `summary.json` and `examples.png` (rows: clean, adversarial, perturbation amplified to
/// the full grey range) into `dir`, atomically. Returns both paths.
pub fn write_attack_outputs(
    dir: &Path,
    context: &AttackContext,
    summary: &AttackSummary,
) -> Result<(PathBuf, PathBuf), EvalError> {
    std::fs::create_dir_all(dir).map_err(|source| EvalError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let json_path = dir.join("summary.json");
    let grid_columns = summary
        .examples
        .iter()
        .map(|e| GridColumn {
            label: e.label,
            clean_prediction: e.clean_prediction,
            adversarial_prediction: e.adversarial_prediction,
        })
        .collect();
    let json = serde_json::to_vec_pretty(&AttackReportFile {
        context,
        summary,
        grid_columns,
    })
    .map_err(|e| EvalError::Serialize {
        what: "the attack summary",
        reason: e.to_string(),
    })?;
    write_atomic(&json_path, &json)?;
    let png_path = dir.join("examples.png");
    let rows = vec![
        summary.examples.iter().map(|e| e.clean.clone()).collect(),
        summary
            .examples
            .iter()
            .map(|e| e.adversarial.clone())
            .collect(),
        summary
            .examples
            .iter()
            .map(|e| GridImage::amplified_difference(&e.clean, &e.adversarial))
            .collect::<Vec<_>>(),
    ];
    if !summary.examples.is_empty() {
        write_png_grid(&png_path, &rows, 3)?;
    }
    Ok((json_path, png_path))
}

/// The key under which resumable evaluations and attacks save their progress: the content hash
/// of `text`, this crate's version, the images' shape, the images and the labels.
pub(crate) fn data_fingerprint(text: &str, data: &ImageDataset) -> String {
    let text = format!(
        "{text}|{}|{}x{}x{}|",
        env!("CARGO_PKG_VERSION"),
        data.channels,
        data.height,
        data.width
    );
    content_hash([text.as_bytes(), &data.images, &data.labels])
}
