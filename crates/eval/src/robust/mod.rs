//! Robustness evaluation of a dataset with the attack-core [`Evaluator`]: the cascade in chunks
//! that are saved as they finish (a killed evaluation resumes where it stopped), the sanity checks
//! with their evidence, the worst-case inputs saved and re-checked from disk, and the report
//! (`report.json`, `report.md`, `robust_vs_eps.svg`, `examples.png`).

use std::path::PathBuf;

use bulwark_attack_core::sanity::SanityFlag;
use bulwark_attack_core::{AttackConfig, Bounds, Norm, Preset, Stage, catalogue};
use serde::{Deserialize, Serialize};

use crate::error::EvalError;
use crate::grid::GridImage;

mod report;
mod run;
mod saved;
mod state;

pub use report::{EvalContext, write_robust_report};
pub use run::{evaluate_robustness, evaluate_robustness_shard, merge_robustness};
pub use state::saved_evaluation_matches;

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
    /// Correctly classified points probed at a large radius, and (when the list has no black-box
    /// attack) points still robust after the cascade probed by Square.
    pub probe_size: usize,
    /// Queries of the Square probe: by default the `standard` preset's 5,000, so that a probed
    /// point is attacked as hard as the full Square stage would attack it.
    pub probe_queries: usize,
}

impl RobustEvalConfig {
    /// A preset's attack list at radius `eps` in `norm`, with the defaults: batches of 500,
    /// chunks of 1,000, 500 probed points, a 5,000-query Square probe (the `standard` preset's
    /// Square stage on a sample of the points; sized in `sanity::PROBE_FLAG_SHARE`), the box
    /// [0, 1].
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
            probe_size: 500,
            probe_queries: 5000,
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
    /// Per image, in the evaluated order, whether a verifier proved it robust at the headline
    /// radius ([`verify_ibp`]): reported beside the attacks as certified robust accuracy, and
    /// checked against them (`verified-not-robust`: an attack that breaks a verified point, or a
    /// verified point classified wrongly, means a bug in the bounds or the attack).
    pub verified: Option<Verified>,
}

/// Images a verifier proved robust ([`RobustEvalOptions::verified`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Verified {
    /// The verifier, e.g. `IBP`.
    pub method: String,
    /// Per image: proved robust at the headline radius.
    pub verified: Vec<bool>,
}

/// Certified robust accuracy beside the attacks ([`RobustReport::verified`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifiedAccuracy {
    /// The verifier.
    pub method: String,
    /// Share of images proved robust: a lower bound on the true robust accuracy, as the attacks'
    /// headline is an upper bound.
    pub verified_acc: f64,
    /// Verified images that an attack broke or that are misclassified clean (0 unless something
    /// is wrong; raises `verified-not-robust`).
    pub contradicted: usize,
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
    /// Certified robust accuracy at `eps` when a verifier ran ([`RobustEvalOptions::verified`]):
    /// verified ≤ robust ≤ clean.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<VerifiedAccuracy>,
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
    /// For a merge of shards ([`merge_robustness`]): how many; `seconds` then adds their times.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<usize>,
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

    /// How the attack list relates to AutoAttack's `standard` evaluation, in words: the preset's
    /// [`Preset::relation_to_autoattack`] when its stages are the preset's own, else what the
    /// list is.
    pub fn relation_to_autoattack(&self) -> String {
        match (self.config.preset, self.command_line_list()) {
            (Some(p), Some(_)) => format!("`{p}`: {}", p.relation_to_autoattack(self.config.norm)),
            (Some(p), None) => format!(
                "the `{p}` list with settings changed in code ({}; see `config` in report.json), \
                 not AutoAttack's published settings",
                report::names(self)
            ),
            (None, _) => format!(
                "a custom list ({}), not AutoAttack's composition",
                report::names(self)
            ),
        }
    }

    /// The `bulwark eval` flags that give this attack list: `--preset P` when the stages are the
    /// preset's own, `--attacks a,b` when each is its catalogue entry, `None` when settings were
    /// changed in code (the command line cannot repeat it).
    pub fn command_line_list(&self) -> Option<String> {
        let c = &self.config;
        let json = |stages: &[Stage]| serde_json::to_value(stages).ok();
        if let Some(p) = c.preset {
            return (json(&c.stages) == json(&p.stages(c.norm, c.seed)))
                .then(|| format!("--preset {p}"));
        }
        let all = catalogue(c.norm, c.seed);
        let as_catalogued = c.stages.iter().all(|s| {
            all.iter()
                .find(|a| a.name == s.name)
                .is_some_and(|a| json(std::slice::from_ref(a)) == json(std::slice::from_ref(s)))
        });
        as_catalogued.then(|| {
            let names: Vec<&str> = c.stages.iter().map(|s| s.name.as_str()).collect();
            format!("--attacks {}", names.join(","))
        })
    }
}

pub(super) fn threat_name(norm: Norm) -> &'static str {
    match norm {
        Norm::Linf => "Linf",
        Norm::L2 => "L2",
        Norm::L1 => "L1",
    }
}

/// Builds the cascade for the command line: a preset, or a comma-separated list of stage names
/// (`apgd-ce`, `apgd-t`, `fab-t`, `apgd-mt`, `square`) from [`catalogue`].
pub fn stages_from_names(names: &str, norm: Norm, seed: u64) -> Result<Vec<Stage>, EvalError> {
    let all = catalogue(norm, seed);
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
