//! Evaluation benchmark (`bulwark bench eval`): the wall-clock time of the robust evaluation's
//! attacks on a trained model — APGD-CE, APGD-T, FAB-T, APGD-MT and Square each alone, and the
//! whole `standard` cascade — with the robust accuracy each reaches, so that speed and strength are
//! read side by side.
//!
//! A stage alone attacks every correctly classified image (in the cascade it sees only the images
//! the stages before it left robust), so its time is an upper bound of its share of the cascade.
//! The time of an evaluation depends on the model: a robust model keeps every stage busy for all
//! its iterations, an undefended one is broken in the first steps. Benchmark a trained model.

use std::time::Instant;

use bulwark_attack_core::{Evaluator, Norm, Preset, Stage, catalogue};
use bulwark_data::ImageDataset;
use bulwark_models::Model;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::error::TrainError;

/// The workloads of the evaluation benchmark: the standard preset's stages by name, and the
/// preset itself.
pub const EVAL_WORKLOADS: [&str; 6] = [
    "apgd-ce", "apgd-t", "fab-t", "apgd-mt", "square", "standard",
];

/// What to measure.
#[derive(Debug, Clone)]
pub struct EvalBenchPlan {
    /// Workloads from [`EVAL_WORKLOADS`].
    pub workloads: Vec<String>,
    /// Threat-model norm.
    pub norm: Norm,
    /// Radius.
    pub eps: f64,
    /// Images per evaluator batch.
    pub batch: usize,
    /// Timed repeats per workload.
    pub repeats: usize,
    /// Seed of the attacks' random draws.
    pub seed: u64,
}

/// One measured evaluation workload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalBenchRow {
    /// The workload's name.
    pub workload: String,
    /// Images evaluated.
    pub images: usize,
    /// Median seconds over the timed repeats.
    pub median_seconds: f64,
    /// Fastest repeat, seconds.
    pub min_seconds: f64,
    /// Slowest repeat, seconds.
    pub max_seconds: f64,
    /// Timed repeats.
    pub repeats: usize,
    /// Images per second at the median time.
    pub images_per_second: f64,
    /// Clean accuracy, percent.
    pub clean_accuracy: f64,
    /// Robust accuracy the workload leaves, percent (identical in every repeat: the attacks are
    /// seeded).
    pub robust_accuracy: f64,
}

/// The evaluator of one workload.
fn evaluator(name: &str, plan: &EvalBenchPlan) -> Result<Evaluator, TrainError> {
    let stages: Vec<Stage> = if name == "standard" {
        Preset::Standard.stages(plan.norm, plan.seed)
    } else {
        let all = catalogue(plan.norm, plan.seed);
        let stage = all.into_iter().find(|s| s.name == name);
        let Some(stage) = stage else {
            return Err(TrainError::Settings {
                what: "benchmark settings",
                problem: format!(
                    "unknown evaluation workload `{name}` for the {} norm; known: {}",
                    plan.norm,
                    EVAL_WORKLOADS.join(", ")
                ),
            });
        };
        vec![stage]
    };
    Ok(Evaluator::new(
        plan.norm,
        &[plan.eps],
        stages,
        Default::default(),
    )?)
}

/// Evaluates `images` once in batches of `plan.batch`: returns (clean correct, robust) counts.
fn evaluate_once(
    evaluator: &Evaluator,
    model: &Model,
    images: &ImageDataset,
    batch: usize,
    device: &Device,
) -> Result<(usize, usize), TrainError> {
    let (mut clean, mut robust) = (0, 0);
    let all: Vec<usize> = (0..images.len()).collect();
    for indices in all.chunks(batch.max(1)) {
        let (x, y) = images.batch(indices, device);
        let outcome = evaluator.run(model, x, y, &mut |_| {})?;
        clean += outcome.clean_correct.iter().filter(|&&c| c).count();
        robust += outcome.robust(0).iter().filter(|&&r| r).count();
    }
    Ok((clean, robust))
}

/// Times every workload of `plan` on `images` with `model`: one warm-up evaluation of the first
/// few images (GPU kernels are compiled on first use), then `plan.repeats` timed evaluations of all
/// of them. `report` is called after each row.
pub fn bench_evaluation(
    model: &Model,
    images: &ImageDataset,
    plan: &EvalBenchPlan,
    device: &Device,
    mut report: impl FnMut(&EvalBenchRow),
) -> Result<Vec<EvalBenchRow>, TrainError> {
    if images.is_empty() {
        return Err(TrainError::Settings {
            what: "benchmark settings",
            problem: "no benchmark images".into(),
        });
    }
    // Every workload is checked before any is run.
    let evaluators = plan
        .workloads
        .iter()
        .map(|w| Ok((w.clone(), evaluator(w, plan)?)))
        .collect::<Result<Vec<_>, TrainError>>()?;
    let warm_up = images.take(images.len().min(8));
    let mut rows = Vec::new();
    for (name, evaluator) in evaluators {
        evaluate_once(&evaluator, model, &warm_up, plan.batch, device)?;
        let mut seconds = Vec::new();
        let mut counts = (0, 0);
        for _ in 0..plan.repeats.max(1) {
            let started = Instant::now();
            counts = evaluate_once(&evaluator, model, images, plan.batch, device)?;
            seconds.push(started.elapsed().as_secs_f64());
        }
        seconds.sort_by(f64::total_cmp);
        let median = seconds[seconds.len() / 2];
        let n = images.len();
        let row = EvalBenchRow {
            workload: name,
            images: n,
            median_seconds: median,
            min_seconds: seconds[0],
            max_seconds: seconds[seconds.len() - 1],
            repeats: seconds.len(),
            images_per_second: n as f64 / median,
            clean_accuracy: 100.0 * counts.0 as f64 / n as f64,
            robust_accuracy: 100.0 * counts.1 as f64 / n as f64,
        };
        report(&row);
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images() -> ImageDataset {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/tests/fixtures/mnist");
        bulwark_data::load_split(
            bulwark_data::DatasetKind::Mnist,
            bulwark_data::Split::Test,
            &dir,
        )
        .unwrap()
        .take(6)
    }

    #[test]
    fn every_evaluation_workload_runs_and_the_cascade_is_the_strongest() {
        let device = Device::flex();
        let model = Model::init_seeded("small-cnn", &device, 0).unwrap();
        let plan = EvalBenchPlan {
            workloads: EVAL_WORKLOADS.iter().map(|w| w.to_string()).collect(),
            norm: Norm::Linf,
            eps: 0.02,
            batch: 4,
            repeats: 1,
            seed: 0,
        };
        let mut reported = 0;
        let rows = bench_evaluation(&model, &images(), &plan, &device, |_| reported += 1).unwrap();
        assert_eq!((rows.len(), reported), (6, 6));
        for r in &rows {
            assert_eq!(r.images, 6);
            assert!(r.min_seconds <= r.median_seconds && r.median_seconds <= r.max_seconds);
            assert!(r.robust_accuracy <= r.clean_accuracy, "{r:?}");
        }
        // The cascade's per-sample worst case is at most every stage's robust accuracy.
        let standard = rows.last().unwrap().robust_accuracy;
        assert!(
            rows.iter().all(|r| standard <= r.robust_accuracy),
            "{rows:?}"
        );
    }

    #[test]
    fn an_unknown_workload_is_refused_before_anything_runs() {
        let device = Device::flex();
        let model = Model::init_seeded("small-cnn", &device, 0).unwrap();
        let plan = EvalBenchPlan {
            workloads: vec!["apgd-ce".into(), "fab".into()],
            norm: Norm::Linf,
            eps: 0.3,
            batch: 4,
            repeats: 1,
            seed: 0,
        };
        let mut reported = 0;
        let e = bench_evaluation(&model, &images(), &plan, &device, |_| reported += 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown evaluation workload `fab`"), "{e}");
        assert_eq!(reported, 0);
    }
}
