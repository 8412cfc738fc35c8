//! The Square probe of a preset without a black-box stage (`quick`), on a real robust model: the
//! main job's small-cnn (`tests/fixtures/main-job`), on the first 256 MNIST test images. At eps
//! 0.3 the `standard` preset's Square stage breaks 8 of the 217 points the gradient attacks left
//! (3.7 %, measured for issue 30): the probe must raise `black-box-beats-white-box` and its breaks
//! must join the headline. At eps 0.15 Square breaks none of 249: the probe must stay quiet.

use std::path::Path;

use bulwark_attack_core::sanity::FlagStatus;
use bulwark_attack_core::{Norm, Preset};
use bulwark_data::{DatasetKind, Split, load_split};
use bulwark_eval::{
    EvalContext, RobustEvalConfig, RobustEvalOptions, evaluate_robustness, write_robust_report,
};
use bulwark_models::{Model, torch};
use burn::tensor::Device;

fn main_job_model(device: &Device) -> Model {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/main-job/small-cnn.safetensors");
    torch::load_safetensors(Model::init("small-cnn", device).unwrap(), &path).unwrap()
}

#[test]
fn the_quick_presets_square_probe_sees_the_gap_the_full_square_stage_finds() {
    let device = Device::flex();
    let model = main_job_model(&device);
    let test = load_split(DatasetKind::Mnist, Split::Test, &crate::common::mnist_dir())
        .unwrap()
        .take(256);
    for (eps, raised) in [(0.3, true), (0.15, false)] {
        // The defaults: up to 500 probed points, 5,000 queries (the standard preset's Square).
        let config = RobustEvalConfig::preset(Preset::Quick, Norm::Linf, eps, 0);
        let dir = tempfile::tempdir().unwrap();
        let options = RobustEvalOptions {
            progress: false,
            resume: false,
            identity: format!("probe-{eps}"),
            examples: 0,
            others: Vec::new(),
            report: None,
            verified: None,
        };
        let report =
            evaluate_robustness(&model, &test, &config, &options, dir.path(), &device).unwrap();
        let flag = report
            .flags
            .iter()
            .find(|f| f.check == "black-box-beats-white-box")
            .unwrap();
        eprintln!(
            "eps {eps}: cascade {} headline {} probe broke {}: {}",
            report.cascade_robust_acc, report.robust_acc, report.probe_broken, flag.evidence
        );
        let want = if raised {
            FlagStatus::Raised
        } else {
            FlagStatus::Ok
        };
        assert_eq!(flag.status, want, "eps {eps}: {}", flag.evidence);
        // The probe attacks every point the cascade left (fewer than 500 here) as hard as the
        // standard preset's Square stage would.
        let left = (report.cascade_robust_acc * report.n_examples as f64).round() as usize;
        assert!(
            flag.evidence.starts_with("a 5000-query Square probe")
                && flag.evidence.contains(&format!(" of {left} points")),
            "{}",
            flag.evidence
        );
        // The report says what the list is to AutoAttack, and how to repeat the number.
        let context = EvalContext {
            model: "small-cnn".into(),
            weights: "main-job.safetensors".into(),
            dataset: "mnist/test".into(),
            backend: "flex".into(),
            bulwark_version: "test".into(),
        };
        let md =
            std::fs::read_to_string(write_robust_report(dir.path(), &context, &report).unwrap())
                .unwrap();
        assert!(
            md.contains("`quick`: a cheaper part of AutoAttack's `standard` composition")
                && md.contains(&format!(
                    "`bulwark eval --model small-cnn --weights main-job.safetensors --dataset mnist \
                     --backend flex --norm linf --eps {eps} --preset quick --limit 256 --seed 0 \
                     --batch-size 500 --probe-size 500 --probe-queries 5000`"
                )),
            "{md}"
        );
        if raised {
            // The probe's breaks are real examples: they lower the headline below the cascade.
            assert!(report.probe_broken >= 2, "{}", report.probe_broken);
            let n = report.n_examples as f64;
            let gap = (report.cascade_robust_acc - report.robust_acc) * n;
            assert_eq!(gap.round() as usize, report.probe_broken);
        } else {
            assert_eq!(report.probe_broken, 0);
        }
    }
}
