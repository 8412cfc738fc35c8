//! `CERTIFY` over a dataset: per-sample certificates written as they are made (so an
//! interrupted run resumes), certified accuracy against radius, and the report (JSON, Markdown,
//! SVG plot).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use bulwark_attack_core::Classifier;
use bulwark_data::ImageDataset;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::attack::SmoothAttackConfig;
use super::smoothed::{Certificate, Smoothed, SmoothingConfig};
use crate::plot::{Series, line_plot_svg};
use crate::{EvalError, RunLock, progress, write_atomic};

/// The files a certification writes into its directory (the lock last).
pub const CERTIFY_OUTPUTS: [&str; 6] = [
    "certify-settings.json",
    "certify.jsonl",
    "certify.json",
    "certify.md",
    "certify.svg",
    RunLock::FILE,
];

/// One certified test input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CertifiedSample {
    /// Index in the dataset.
    pub index: usize,
    /// True class.
    pub label: usize,
    /// What `CERTIFY` said.
    #[serde(flatten)]
    pub certificate: Certificate,
    /// Whether the smoothed classifier is right (not abstaining, the true class).
    pub correct: bool,
    /// With [`CertifyOptions::attack`]: per radius of the table, what `PREDICT` says of the
    /// input after the attack on the smoothed classifier at that radius (the clean input at
    /// radius 0); `None` where it abstains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub under_attack: Vec<Option<usize>>,
    /// Seconds this input took.
    pub seconds: f64,
}

/// Certified accuracy at one radius.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RadiusRow {
    /// L2 radius.
    pub radius: f64,
    /// Share of inputs classified correctly with a certified radius of at least `radius`.
    pub certified_acc: f64,
    /// With [`CertifyOptions::attack`]: share of inputs that `PREDICT` still classifies
    /// correctly after the attack at `radius`, the empirical robust accuracy of the smoothed
    /// classifier (an upper bound; certified ≤ empirical up to the two tests' error rates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empirical_acc: Option<f64>,
    /// With the attack: inputs certified correct at `radius` or beyond that `PREDICT` puts in
    /// another class after the attack (each has probability at most about `2·alpha`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contradicted: Option<usize>,
}

/// The result of [`certify_dataset`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CertifyReport {
    /// The smoothing settings.
    pub config: SmoothingConfig,
    /// What was certified (model, weights, data), as the caller described it.
    pub source: String,
    /// The command that reproduces the run, as the caller gave it.
    pub command: String,
    /// Inputs certified.
    pub n_examples: usize,
    /// Share classified correctly by the smoothed classifier (certified accuracy at radius 0).
    pub smoothed_acc: f64,
    /// Share on which `CERTIFY` abstained.
    pub abstain_rate: f64,
    /// Average certified radius over all inputs, 0 for wrong or abstained ones (MACER's ACR).
    pub average_radius: f64,
    /// The largest radius these settings can certify (`σ·Φ⁻¹(alpha^(1/n))`).
    pub max_radius: f64,
    /// Certified accuracy at the requested radii.
    pub rows: Vec<RadiusRow>,
    /// Seconds spent certifying (over all resumed parts).
    pub seconds: f64,
    /// Every input's certificate.
    pub samples: Vec<CertifiedSample>,
}

impl CertifyReport {
    /// Certified accuracy at `radius`: correct, with a radius of at least `radius`.
    pub fn certified_acc(&self, radius: f64) -> f64 {
        certified_acc(&self.samples, radius)
    }
}

fn certified_acc(samples: &[CertifiedSample], radius: f64) -> f64 {
    let held = samples
        .iter()
        .filter(|s| s.correct && s.certificate.radius >= radius)
        .count();
    held as f64 / samples.len().max(1) as f64
}

/// How [`certify_dataset`] runs.
#[derive(Debug, Clone, Default)]
pub struct CertifyOptions {
    /// Continue the certification saved in the directory (same settings and source).
    pub resume: bool,
    /// Show a progress bar.
    pub progress: bool,
    /// What is certified (model, weights, data): recorded, and checked on resume.
    pub source: String,
    /// The command line that reproduces the run, for the report.
    pub command: String,
    /// Also attack the smoothed classifier at every radius of the table
    /// ([`Smoothed::attack`], its `eps` replaced by each radius) and report its empirical
    /// robust accuracy beside the certified one.
    pub attack: Option<SmoothAttack>,
}

/// The attack [`certify_dataset`] runs beside the certificates ([`CertifyOptions::attack`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SmoothAttack {
    /// PGD steps.
    pub steps: usize,
    /// Noisy copies per step.
    pub noise_samples: usize,
    /// Noisy copies of `PREDICT` on each attacked input.
    pub predict_n: usize,
}

/// The settings a directory's saved certificates were made with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Settings {
    config: SmoothingConfig,
    source: String,
    n_examples: usize,
    /// With an attack, the radii it ran at and its settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    attack: Option<(Vec<f64>, SmoothAttack)>,
}

/// Certifies every image of `data` with `model` smoothed as `cfg` says, writing each
/// certificate to `out/certify.jsonl` as it is made, then `certify.json`, `certify.md` and
/// `certify.svg` (certified accuracy against radius); `radii` are the table's radii.
///
/// With `opts.resume` it continues a run in `out` that was interrupted, provided the settings,
/// the source and the number of images are the same; without it, a directory that holds
/// certificates is refused. The directory is locked while the run writes it ([`RunLock`]).
pub fn certify_dataset<C: Classifier<4>>(
    model: &C,
    data: &ImageDataset,
    cfg: &SmoothingConfig,
    radii: &[f64],
    opts: &CertifyOptions,
    out: &Path,
    device: &Device,
) -> Result<CertifyReport, EvalError> {
    let smoothed = Smoothed::new(model, cfg.clone())?;
    if let Some(r) = radii.iter().find(|r| !(r.is_finite() && **r >= 0.0)) {
        return Err(EvalError::Settings {
            what: "certification settings",
            problem: format!("radii must be finite and >= 0, got {r}"),
        });
    }
    std::fs::create_dir_all(out).map_err(EvalError::io(out))?;
    let _lock = RunLock::acquire(out)?;
    // The noise batch size does not change the draws: a resume may use another.
    let settings = Settings {
        config: cfg.clone().with_batch_size(1),
        source: opts.source.clone(),
        n_examples: data.len(),
        attack: opts.attack.clone().map(|a| (radii.to_vec(), a)),
    };
    if let Some(a) = &opts.attack
        && (a.steps == 0 || a.noise_samples == 0 || a.predict_n == 0)
    {
        return Err(EvalError::Settings {
            what: "certification settings",
            problem: "the attack's steps, noise samples and PREDICT copies must be at least 1"
                .into(),
        });
    }
    let settings_path = out.join(CERTIFY_OUTPUTS[0]);
    let log_path = out.join(CERTIFY_OUTPUTS[1]);
    let mut samples = if opts.resume {
        if !settings_path.is_file() {
            return Err(EvalError::State {
                path: settings_path,
                reason: "nothing to resume: no certification was started in this directory; \
                         start it without --resume"
                    .into(),
            });
        }
        let saved: Settings = read_json(&settings_path)?;
        if saved != settings {
            return Err(EvalError::State {
                path: settings_path,
                reason: "it was written by a certification with other settings, another model \
                         or other data; resume with the same ones, or certify into another \
                         directory"
                    .into(),
            });
        }
        read_samples(&log_path)?
    } else {
        if log_path.exists() || settings_path.exists() {
            return Err(EvalError::Occupied {
                path: log_path,
                holds: "a certification's results (continue it with --resume)".into(),
            });
        }
        write_atomic(&settings_path, &to_json(&settings, "settings")?)?;
        Vec::new()
    };
    if samples.len() > data.len() || samples.iter().enumerate().any(|(i, s)| s.index != i) {
        return Err(EvalError::State {
            path: log_path,
            reason: "the saved certificates are not the first images in order".into(),
        });
    }
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(EvalError::io(&log_path))?;
    let bar = progress::bar(data.len(), opts.progress, "certify");
    bar.set_position(samples.len() as u64);
    for index in samples.len()..data.len() {
        let started = Instant::now();
        let (x, _) = data.batch(&[index], device);
        let certificate = smoothed.certify(x.clone())?[0];
        let label = usize::from(data.labels[index]);
        let mut under_attack = Vec::new();
        if let Some(a) = &opts.attack {
            for &r in radii {
                let attacked = if r > 0.0 {
                    let cfg = SmoothAttackConfig::new(r)
                        .with_steps(a.steps)
                        .with_noise_samples(a.noise_samples);
                    smoothed.attack(x.clone(), &[label], &cfg)?
                } else {
                    x.clone()
                };
                under_attack.push(smoothed.predict(attacked, a.predict_n)?[0]);
            }
        }
        let sample = CertifiedSample {
            index,
            label,
            certificate,
            correct: certificate.class == Some(label),
            under_attack,
            seconds: started.elapsed().as_secs_f64(),
        };
        let mut line = serde_json::to_string(&sample).map_err(|e| EvalError::Serialize {
            what: "certificate",
            reason: e.to_string(),
        })?;
        line.push('\n');
        log.write_all(line.as_bytes())
            .and_then(|()| log.flush())
            .map_err(EvalError::io(&log_path))?;
        samples.push(sample);
        bar.inc(1);
        bar.set_message(format!(
            "certified acc at 0: {:.1}%",
            100.0 * certified_acc(&samples, 0.0)
        ));
    }
    bar.finish_and_clear();
    let report = summarize(cfg, opts, radii, samples);
    write_certify_report(&report, out)?;
    Ok(report)
}

fn summarize(
    cfg: &SmoothingConfig,
    opts: &CertifyOptions,
    radii: &[f64],
    samples: Vec<CertifiedSample>,
) -> CertifyReport {
    let n = samples.len().max(1) as f64;
    CertifyReport {
        config: cfg.clone(),
        source: opts.source.clone(),
        command: opts.command.clone(),
        n_examples: samples.len(),
        smoothed_acc: certified_acc(&samples, 0.0),
        abstain_rate: samples
            .iter()
            .filter(|s| s.certificate.class.is_none())
            .count() as f64
            / n,
        average_radius: samples
            .iter()
            .filter(|s| s.correct)
            .map(|s| s.certificate.radius)
            .sum::<f64>()
            / n,
        max_radius: cfg.max_radius(),
        rows: radii
            .iter()
            .enumerate()
            .map(|(k, &radius)| {
                let attacked = opts.attack.is_some();
                let held = samples
                    .iter()
                    .filter(|s| s.under_attack.get(k) == Some(&Some(s.label)))
                    .count();
                let contradicted = samples
                    .iter()
                    .filter(|s| {
                        s.correct
                            && s.certificate.radius >= radius
                            && matches!(s.under_attack.get(k), Some(Some(c)) if *c != s.label)
                    })
                    .count();
                RadiusRow {
                    radius,
                    certified_acc: certified_acc(&samples, radius),
                    empirical_acc: attacked.then(|| held as f64 / n),
                    contradicted: attacked.then_some(contradicted),
                }
            })
            .collect(),
        seconds: samples.iter().map(|s| s.seconds).sum(),
        samples,
    }
}

/// Writes `certify.json`, `certify.md` and `certify.svg` for `report` into `out`.
pub fn write_certify_report(report: &CertifyReport, out: &Path) -> Result<(), EvalError> {
    write_atomic(&out.join("certify.json"), &to_json(report, "report")?)?;
    write_atomic(&out.join("certify.md"), markdown(report).as_bytes())?;
    // The curve is a step function of the radius: sampled finely up to the largest radius.
    let top = report
        .max_radius
        .max(report.rows.iter().map(|r| r.radius).fold(0.0, f64::max));
    let points = (0..=200)
        .map(|i| {
            let r = top * i as f64 / 200.0;
            (r, 100.0 * report.certified_acc(r))
        })
        .collect();
    let svg = line_plot_svg(
        &format!(
            "Certified accuracy, Gaussian smoothing sigma = {}",
            report.config.sigma
        ),
        "L2 radius",
        "certified accuracy (%)",
        &[Series {
            name: format!("sigma {}", report.config.sigma),
            points,
        }],
    );
    write_atomic(&out.join("certify.svg"), svg.as_bytes())
}

fn markdown(r: &CertifyReport) -> String {
    let c = &r.config;
    let mut s = String::new();
    let _ = writeln!(s, "# Certified robustness: randomized smoothing\n");
    let _ = writeln!(
        s,
        "Gaussian smoothing (Cohen, Rosenfeld & Kolter 2019), sigma = {}; `CERTIFY` with n0 = {}, \
         n = {}, alpha = {} (each certificate is wrong with probability at most alpha), seed {}.\n",
        c.sigma, c.n0, c.n, c.alpha, c.seed
    );
    let _ = writeln!(s, "- What: {}", r.source);
    let _ = writeln!(s, "- Inputs: {}", r.n_examples);
    let _ = writeln!(
        s,
        "- Smoothed classifier's accuracy (certified at radius 0): {:.2} %",
        100.0 * r.smoothed_acc
    );
    let _ = writeln!(s, "- Abstained: {:.2} %", 100.0 * r.abstain_rate);
    let _ = writeln!(s, "- Average certified radius: {:.4}", r.average_radius);
    let _ = writeln!(
        s,
        "- Largest radius these settings can certify: {:.4}",
        r.max_radius
    );
    let _ = writeln!(s, "- Time: {:.0} s\n", r.seconds);
    let attacked = r.rows.iter().any(|row| row.empirical_acc.is_some());
    if attacked {
        let _ = writeln!(
            s,
            "| L2 radius | certified accuracy | empirical accuracy (attack on the smoothed \
             classifier, then PREDICT) | certified but flipped |\n|---|---|---|---|"
        );
    } else {
        let _ = writeln!(s, "| L2 radius | certified accuracy |\n|---|---|");
    }
    for row in &r.rows {
        match (row.empirical_acc, row.contradicted) {
            (Some(e), Some(c)) => {
                let _ = writeln!(
                    s,
                    "| {} | {:.2} % | {:.2} % | {c} |",
                    row.radius,
                    100.0 * row.certified_acc,
                    100.0 * e
                );
            }
            _ => {
                let _ = writeln!(s, "| {} | {:.2} % |", row.radius, 100.0 * row.certified_acc);
            }
        }
    }
    let _ = writeln!(
        s,
        "\nA certificate is a statistical guarantee about the smoothed classifier (the noisy \
         vote), not about the base network on its own. Plot: `certify.svg`; per input: \
         `certify.json`.\n"
    );
    if !r.command.is_empty() {
        let _ = writeln!(s, "Reproduce:\n\n```sh\n{}\n```", r.command);
    }
    s
}

fn to_json<T: Serialize>(value: &T, what: &'static str) -> Result<Vec<u8>, EvalError> {
    serde_json::to_vec_pretty(value).map_err(|e| EvalError::Serialize {
        what,
        reason: e.to_string(),
    })
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, EvalError> {
    let bytes = std::fs::read(path).map_err(EvalError::io(path))?;
    serde_json::from_slice(&bytes).map_err(|e| EvalError::State {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// The certificates saved in `path`; a last line cut off by a kill is dropped (and cut from the
/// file), any other damage is an error.
fn read_samples(path: &PathBuf) -> Result<Vec<CertifiedSample>, EvalError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(EvalError::io(path)(e)),
    };
    let mut samples = Vec::new();
    let mut good = 0;
    for line in text.split_inclusive('\n') {
        if !line.ends_with('\n') {
            break;
        }
        let sample = serde_json::from_str(line.trim_end()).map_err(|e| EvalError::State {
            path: path.clone(),
            reason: format!("line {}: {e}", samples.len() + 1),
        })?;
        samples.push(sample);
        good += line.len();
    }
    if good < text.len() {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(EvalError::io(path))?;
        f.set_len(good as u64).map_err(EvalError::io(path))?;
    }
    Ok(samples)
}
