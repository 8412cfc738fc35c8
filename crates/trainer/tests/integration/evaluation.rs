//! The robustness evaluation on real MNIST with a standard-trained small-cnn: the cascade against
//! PGD-40, every sanity flag on a model built to trigger it (and quiet on the plain model), the
//! saved evaluation resuming after a kill, and the report files. On the full MNIST, obtained
//! through the fetch chain (`crate::common::mnist_dir`).

use std::cell::Cell;

use bulwark_attack_core::sanity::{FlagStatus, SanityFlag};
use bulwark_attack_core::{
    AttackConfig, AttackOptions, Classifier, Norm, PgdConfig, Preset, ThreatModel,
};
use bulwark_data::ImageDataset;
use bulwark_eval::{
    AttackRunOptions, EvalContext, OtherAttack, RobustEvalConfig, RobustEvalOptions, RobustReport,
    attack_dataset, evaluate_robustness, write_robust_report,
};
use bulwark_models::Model;
use bulwark_trainer::{BackendKind, DeviceSet, FitOptions, OptimizerKind, TrainConfig, fit};
use burn::tensor::activation::softmax;
use burn::tensor::{Distribution, Tensor};

fn data() -> (ImageDataset, ImageDataset, ImageDataset) {
    crate::common::mnist(7_000, 200)
}

fn trained() -> (Model, ImageDataset, DeviceSet) {
    let (train, valid, test) = data();
    let cfg = TrainConfig::new()
        .with_model("small-cnn".into())
        .with_epochs(2)
        .with_batch_size(50)
        .with_optimizer(OptimizerKind::Adam)
        .with_lr(2e-3)
        .with_seed(3);
    let run = tempfile::tempdir().unwrap();
    let devices = DeviceSet::single(BackendKind::Flex).unwrap();
    let opts = FitOptions {
        run_dir: run.path().to_path_buf(),
        resume: false,
        progress: false,
        stop_after_epoch: None,
    };
    let model = fit(&cfg, &train, &valid, &devices, &opts).unwrap().model;
    (model, test, devices)
}

fn options(identity: &str) -> RobustEvalOptions {
    RobustEvalOptions {
        progress: false,
        resume: false,
        identity: identity.into(),
        examples: 8,
        others: Vec::new(),
        report: None,
        verified: None,
    }
}

/// A cheaper cascade for tests: the standard list with fewer iterations, targets and queries.
pub(crate) fn light(eps: f64, sweep: &[f64]) -> RobustEvalConfig {
    let mut c = RobustEvalConfig::preset(Preset::Standard, Norm::Linf, eps, 0);
    for s in &mut c.stages {
        match &mut s.attack {
            AttackConfig::Apgd(a) => a.steps = 30,
            AttackConfig::Square(a) => a.queries = 300,
            _ => {}
        }
        if s.target_classes.is_some() {
            s.target_classes = Some(2);
        }
    }
    c.eps_sweep = sweep.to_vec();
    c.batch_size = 100;
    c.chunk_size = 100;
    c.probe_size = 40;
    c
}

fn flag<'a>(r: &'a RobustReport, check: &str) -> &'a SanityFlag {
    r.flags
        .iter()
        .find(|f| f.check == check)
        .unwrap_or_else(|| panic!("no flag {check} in {:?}", r.flags))
}

#[test]
fn quick_preset_is_at_least_as_strong_as_pgd40_and_the_cascade_beats_each_attack() {
    let (model, test, devices) = trained();
    let device = devices.main().clone();
    let eps = 0.1;
    let pgd = AttackConfig::Pgd(
        PgdConfig::new(ThreatModel::linf(eps))
            .with_steps(40)
            .with_options(
                AttackOptions::new()
                    .with_random_start(true)
                    .with_early_stop(true),
            ),
    );
    let run_opts = AttackRunOptions {
        batch_size: 200,
        progress: false,
        examples: 0,
        state: None,
    };
    let pgd = attack_dataset(&model, &test, &pgd, &run_opts, &device).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut quick = RobustEvalConfig::preset(Preset::Quick, Norm::Linf, eps, 0);
    quick.probe_size = 20;
    let report = evaluate_robustness(
        &model,
        &test,
        &quick,
        &options("quick"),
        dir.path(),
        &device,
    )
    .unwrap();
    eprintln!(
        "eps {eps}: PGD-40 {} quick {} clean {}",
        pgd.robust_accuracy, report.robust_acc, report.clean_acc
    );
    assert!(report.clean_acc > 0.9, "the model did not learn");
    assert!(
        report.robust_acc <= pgd.robust_accuracy,
        "quick {} weaker than PGD-40 {}",
        report.robust_acc,
        pgd.robust_accuracy
    );
    assert!(
        pgd.robust_accuracy < report.clean_acc,
        "PGD-40 broke nothing"
    );
    // The cascade is at least as strong as each of its stages alone.
    for stage in &quick.stages {
        let mut alone = quick.clone();
        alone.stages = vec![stage.clone()];
        alone.preset = None;
        let d = tempfile::tempdir().unwrap();
        let r = evaluate_robustness(&model, &test, &alone, &options("alone"), d.path(), &device)
            .unwrap();
        assert!(
            report.robust_acc <= r.robust_acc,
            "cascade {} vs {} alone {}",
            report.robust_acc,
            stage.name,
            r.robust_acc
        );
    }
    // Robust accuracy after each stage only falls.
    let after: Vec<f64> = report.attacks.iter().map(|a| a.robust_acc_after).collect();
    assert!(after.windows(2).all(|w| w[1] <= w[0]), "{after:?}");
    assert_eq!(*after.last().unwrap(), report.cascade_robust_acc);
    // The headline also counts what the sanity checks' Square probe broke.
    let n = report.n_examples as f64;
    let count = |acc: f64| (acc * n).round() as usize;
    assert_eq!(
        count(report.robust_acc),
        count(report.cascade_robust_acc) - report.probe_broken
    );
}

#[test]
fn every_sanity_flag_fires_on_its_model_and_stays_quiet_on_a_normal_one() {
    let (model, test, devices) = trained();
    let device = devices.main().clone();
    let test = test.take(100);
    let run = |m: &dyn Fn(Tensor<4>) -> Tensor<2>, config: &RobustEvalConfig| {
        let dir = tempfile::tempdir().unwrap();
        let r =
            evaluate_robustness(&m, &test, config, &options("flags"), dir.path(), &device).unwrap();
        for f in &r.flags {
            eprintln!("  {} {:?}: {}", f.check, f.status, f.evidence);
        }
        r
    };
    let config = light(0.2, &[0.1]);

    eprintln!("normal model");
    let normal = run(&|x| model.logits(x), &config);
    for f in &normal.flags {
        assert_ne!(f.status, FlagStatus::Raised, "{}: {}", f.check, f.evidence);
    }
    assert_eq!(normal.flags.len(), 9);

    // An eps as large as the box: every input is inside every ball.
    eprintln!("eps covering the box");
    let huge = run(&|x| model.logits(x), &light(1.0, &[]));
    assert!(flag(&huge, "eps-covers-box").raised());
    assert!(
        flag(&huge, "eps-covers-box")
            .evidence
            .contains("wrong units")
    );

    eprintln!("softmax output");
    let probs = run(&|x| softmax(model.logits(x), 1), &config);
    assert!(flag(&probs, "probability-outputs").raised());

    eprintln!("noisy output");
    // Fresh noise at every call, drawn under the zoo's generator lock: other tests of this binary
    // (custom_network) train with dropout and need the generator undisturbed during their steps.
    let calls = std::sync::atomic::AtomicU64::new(0);
    let noisy = run(
        &|x| {
            let z = model.logits(x);
            let call = calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let noise = bulwark_models::with_seeded_device(&z.device(), call, || {
                Tensor::<2>::random(z.dims(), Distribution::Normal(0.0, 0.05), &z.device())
                    .into_data()
            });
            z.clone() + Tensor::from_data(noise, &z.device())
        },
        &config,
    );
    assert!(flag(&noisy, "nondeterministic").raised());

    // Binarizing the input masks every gradient, and random noise within eps = 0.5 cannot flip a
    // pixel at 0 or 1: no attack without gradients gets anywhere at the large radius.
    eprintln!("binarized input");
    let binary = run(&|x| model.logits(x.greater_elem(0.5).float()), &config);
    assert!(flag(&binary, "zero-gradients").raised());
    assert!(flag(&binary, "large-eps-not-broken").raised());
    assert!(flag(&binary, "robust-accuracy-not-decreasing").raised());

    // Quantizing to 5 levels also masks the gradients, but Square's ±eps windows move pixels
    // across levels: the black-box attack breaks what the white-box ones cannot.
    eprintln!("quantized input");
    let quantized = run(&|x| model.logits((x * 4.0).round() / 4.0), &config);
    assert!(flag(&quantized, "black-box-beats-white-box").raised());

    // A stateful model that changes its mind after the evaluation: its last call — the re-check
    // of the saved inputs — shifts every prediction by one class. (A first run counts the calls.)
    eprintln!("model that changes after the evaluation");
    let calls = Cell::new(0usize);
    let change_at = Cell::new(usize::MAX);
    let changing = |x: Tensor<4>| {
        calls.set(calls.get() + 1);
        let z = model.logits(x);
        if calls.get() < change_at.get() {
            return z;
        }
        let [b, k] = z.dims();
        Tensor::cat(
            vec![z.clone().slice([0..b, 1..k]), z.slice([0..b, 0..1])],
            1,
        )
    };
    let small = light(0.05, &[]);
    let before = run(&changing, &small);
    assert!(!flag(&before, "recomputed-accuracy-differs").raised());
    assert!(before.robust_acc > 0.0, "nothing robust at eps 0.05");
    change_at.set(calls.get());
    calls.set(0);
    let after = run(&changing, &small);
    assert_eq!(after.robust_acc, before.robust_acc);
    assert!(flag(&after, "recomputed-accuracy-differs").raised());
}

#[test]
fn a_killed_evaluation_resumes_with_the_same_results_and_writes_its_report() {
    let (model, test, devices) = trained();
    let device = devices.main().clone();
    let test = test.take(120);
    let mut config = light(0.1, &[0.05]);
    config.chunk_size = 50;
    config.probe_size = 10;
    let dir = tempfile::tempdir().unwrap();
    let full =
        evaluate_robustness(&model, &test, &config, &options("m"), dir.path(), &device).unwrap();
    assert_eq!(full.resumed_chunks, 0);

    // Running again into the same directory without resume is refused, touching nothing.
    let err = evaluate_robustness(&model, &test, &config, &options("m"), dir.path(), &device)
        .unwrap_err();
    assert!(err.to_string().contains("--resume"), "{err}");
    // Another configuration or model cannot resume it.
    let mut other = config.clone();
    other.seed = 1;
    let resume = RobustEvalOptions {
        resume: true,
        ..options("m")
    };
    let err = evaluate_robustness(&model, &test, &other, &resume, dir.path(), &device).unwrap_err();
    assert!(err.to_string().contains("another model"), "{err}");
    let err = evaluate_robustness(
        &model,
        &test,
        &config,
        &RobustEvalOptions {
            resume: true,
            ..options("another weights file")
        },
        dir.path(),
        &device,
    )
    .unwrap_err();
    assert!(err.to_string().contains("another model"), "{err}");

    // A kill during chunk 2 leaves chunks 0 and 1 saved and chunk 2 without its results; chunk 1
    // is also damaged (truncated), so it must be recomputed rather than trusted.
    let state = dir.path().join("eval-state");
    std::fs::remove_file(state.join("chunk-00002.json")).unwrap();
    let json1 = std::fs::read(state.join("chunk-00001.json")).unwrap();
    std::fs::write(state.join("chunk-00001.json"), &json1[..json1.len() / 2]).unwrap();
    let resumed =
        evaluate_robustness(&model, &test, &config, &resume, dir.path(), &device).unwrap();
    assert_eq!(resumed.resumed_chunks, 1);
    assert_eq!(resumed.clean_acc, full.clean_acc);
    assert_eq!(resumed.robust_acc, full.robust_acc);
    for (a, b) in resumed.sweep.iter().zip(&full.sweep) {
        assert_eq!(a.robust_acc_after, b.robust_acc_after, "eps {}", a.eps);
    }
    let after = |r: &RobustReport| -> Vec<(usize, f64)> {
        r.attacks
            .iter()
            .map(|a| (a.broken, a.robust_acc_after))
            .collect()
    };
    assert_eq!(after(&resumed), after(&full));
    // The saved worst-case inputs: one per image, in the eps-ball around the clean image.
    let bytes = std::fs::read(&resumed.adversarial_file).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let x = st.tensor("x_adv").unwrap();
    assert_eq!(x.shape(), &[120, 1, 28, 28]);
    let adv: Vec<f32> = x
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    for (a, &c) in adv.iter().zip(&test.images) {
        assert!((f64::from(*a) - f64::from(c) / 255.0).abs() <= 0.1 * (1.0 + 1e-6));
    }

    // The report files.
    let context = EvalContext {
        model: "small-cnn".into(),
        weights: "memory".into(),
        dataset: "mnist/test".into(),
        backend: "flex".into(),
        bulwark_version: "test".into(),
    };
    let md = write_robust_report(dir.path(), &context, &resumed).unwrap();
    let text = std::fs::read_to_string(md).unwrap();
    assert!(text.contains("robust accuracy"), "{text}");
    // The list is the standard one with fewer iterations: the report must not call it AutoAttack's
    // published composition, nor offer a command that would run something else.
    assert!(
        text.contains("the `standard` list with settings changed in code")
            && text.contains("| reproduce | through the library"),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).unwrap()).unwrap();
    for key in [
        "clean_acc",
        "robust_acc",
        "threat_model",
        "eps",
        "n_examples",
        "flags",
        "attacks",
        "sweep",
        "software",
    ] {
        assert!(json.get(key).is_some(), "report.json lacks {key}");
    }
    assert_eq!(json["threat_model"], "Linf");
    assert_eq!(json["n_examples"], 120);
    assert_eq!(json["flags"].as_array().unwrap().len(), 9);
    assert_eq!(json["config"]["seed"], 0);
    let svg = std::fs::read_to_string(dir.path().join("robust_vs_eps.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("polyline"));
    if resumed.robust_acc < resumed.clean_acc {
        let png = std::fs::read(dir.path().join("examples.png")).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    }
}

/// The headline robust accuracy is the per-sample worst case over the cascade and every other
/// attack run on the same points, each attack's own number is reported beside it, and a cascade
/// that ends above a simpler attack raises a flag.
#[test]
fn the_headline_is_the_per_sample_worst_case_over_every_attack() {
    let (model, test, devices) = trained();
    let device = devices.main().clone();
    let test = test.take(60);
    let config = light(0.05, &[]);
    let eval = |others: Vec<OtherAttack>| {
        let dir = tempfile::tempdir().unwrap();
        let opts = RobustEvalOptions {
            others,
            ..options("headline")
        };
        let r = evaluate_robustness(&model, &test, &config, &opts, dir.path(), &device);
        (r, dir)
    };
    let other = |name: &str, robust: Vec<bool>| OtherAttack {
        name: name.into(),
        robust,
    };
    // The standard list runs Square as a stage, so there is no probe to add.
    let (alone, dir) = eval(vec![]);
    let alone = alone.unwrap();
    assert_eq!(alone.probe_broken, 0);
    assert_eq!(alone.robust_acc, alone.cascade_robust_acc);
    assert!(alone.robust_acc > 0.0 && alone.robust_acc < alone.clean_acc);
    // The cascade's verdict per point, from its saved worst-case inputs.
    let bytes = std::fs::read(&alone.adversarial_file).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let x: Vec<f32> = st
        .tensor("x_adv")
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let x = Tensor::<4>::from_data(
        burn::tensor::TensorData::new(x, [60, 1, 28, 28]),
        &device.clone().inner(),
    );
    let pred: Vec<i64> = model
        .logits(x)
        .argmax(1)
        .flatten::<1>(0, 1)
        .try_into_vec_as::<i64>()
        .unwrap();
    let cascade: Vec<bool> = pred
        .iter()
        .zip(&test.labels)
        .map(|(&p, &l)| p == i64::from(l))
        .collect();
    drop(dir);

    // An attack that broke every other point: the headline keeps only the points both left.
    let every_other: Vec<bool> = (0..60).map(|i| i % 2 == 0).collect();
    let (half, _d) = eval(vec![other("every other", every_other.clone())]);
    let half = half.unwrap();
    let both = (0..60).filter(|&i| cascade[i] && every_other[i]).count();
    assert_eq!(half.robust_acc, both as f64 / 60.0);
    assert_eq!(half.cascade_robust_acc, alone.cascade_robust_acc);
    let names: Vec<(&str, f64)> = half
        .per_attack
        .iter()
        .map(|a| (a.name.as_str(), a.robust_acc))
        .collect();
    assert_eq!(
        names,
        vec![("cascade", alone.cascade_robust_acc), ("every other", 0.5)]
    );
    // The cascade (above 50 %?) against an attack that leaves 50 %.
    assert_eq!(
        flag(&half, "cascade-above-simpler-attack").raised(),
        alone.cascade_robust_acc > 0.5
    );

    // An attack that broke nothing changes nothing and raises nothing.
    let (none, _d) = eval(vec![other("nothing", vec![true; 60])]);
    let none = none.unwrap();
    assert_eq!(none.robust_acc, alone.robust_acc);
    assert!(!flag(&none, "cascade-above-simpler-attack").raised());
    // One that broke everything: the headline is 0, and the cascade ended above it.
    let (all, _d) = eval(vec![other("everything", vec![false; 60])]);
    let all = all.unwrap();
    assert_eq!(all.robust_acc, 0.0);
    assert!(flag(&all, "cascade-above-simpler-attack").raised());

    // Results of another set of images are refused.
    let (wrong, _d) = eval(vec![other("short", vec![true; 59])]);
    let e = wrong.unwrap_err().to_string();
    assert!(e.contains("cover 59 images, but 60"), "{e}");
}
