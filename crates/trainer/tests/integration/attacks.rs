//! Attacks against a standard-trained small-cnn on real MNIST: PGD-40 at eps 0.3 must drive
//! accuracy below 1 % and FGSM at eps 0.1 must lower it substantially. Trains on 12,000 images of
//! the full MNIST (obtained through the fetch chain, `crate::common::mnist_dir`) and attacks 500 test
//! images.

use bulwark_attack_core::{
    ApgdConfig, AttackConfig, AttackOptions, FgsmConfig, PgdConfig, ThreatModel,
};
use bulwark_data::ImageDataset;
use bulwark_eval::{
    AttackContext, AttackRunOptions, AttackState, attack_dataset, write_attack_outputs,
};
use bulwark_trainer::{
    BackendKind, DeviceSet, FitOptions, OptimizerKind, Schedule, TrainConfig, fit,
};

fn data() -> (ImageDataset, ImageDataset, ImageDataset) {
    crate::common::mnist(13_000, 500)
}

#[test]
fn pgd_and_fgsm_break_a_standard_trained_small_cnn() {
    let (train, valid, test) = data();
    let cfg = TrainConfig::new()
        .with_model("small-cnn".into())
        .with_epochs(2)
        .with_batch_size(50)
        .with_optimizer(OptimizerKind::Adam)
        .with_lr(2e-3)
        .with_schedule(Schedule::Cosine {
            warmup_epochs: 0.0,
            min_lr: 0.0,
        })
        .with_seed(1);
    let run = tempfile::tempdir().unwrap();
    let devices = DeviceSet::single(BackendKind::Flex).unwrap();
    let opts = FitOptions {
        run_dir: run.path().to_path_buf(),
        resume: false,
        progress: false,
        stop_after_epoch: None,
    };
    let model = fit(&cfg, &train, &valid, &devices, &opts).unwrap().model;
    let device = devices.main().clone();
    let run_opts = AttackRunOptions {
        batch_size: 256,
        progress: false,
        examples: 8,
        state: None,
    };

    // The library's PGD defaults: random start, last iterate (no early stop), 40 steps of 2.5·eps/40.
    let pgd = AttackConfig::Pgd(PgdConfig::new(ThreatModel::linf(0.3)).with_steps(40));
    let pgd = attack_dataset(&model, &test, &pgd, &run_opts, &device).unwrap();
    assert!(
        pgd.clean_accuracy >= 0.8,
        "the model did not learn: clean accuracy {}",
        pgd.clean_accuracy
    );
    assert!(
        pgd.adversarial_accuracy < 0.01,
        "PGD-40 at eps 0.3 left {} accuracy",
        pgd.adversarial_accuracy
    );
    assert!(
        pgd.max_perturbation <= 0.3 * (1.0 + 1e-6),
        "perturbation {} > eps",
        pgd.max_perturbation
    );

    let fgsm = AttackConfig::Fgsm(
        FgsmConfig::new(ThreatModel::linf(0.1)).with_options(AttackOptions::new()),
    );
    let fgsm = attack_dataset(&model, &test, &fgsm, &run_opts, &device).unwrap();
    assert_eq!(fgsm.clean_accuracy, pgd.clean_accuracy);
    assert!(
        fgsm.adversarial_accuracy <= fgsm.clean_accuracy - 0.2,
        "FGSM at eps 0.1: {} -> {}",
        fgsm.clean_accuracy,
        fgsm.adversarial_accuracy
    );
    assert!(fgsm.adversarial_accuracy > pgd.adversarial_accuracy);

    // APGD (100 iterations, no restart) is at least as strong as PGD-40 where PGD leaves some
    // accuracy: L-inf eps 0.1, both counting the first success.
    let eps = ThreatModel::linf(0.1);
    let first_success = AttackOptions::new()
        .with_random_start(true)
        .with_early_stop(true);
    let pgd_small = AttackConfig::Pgd(
        PgdConfig::new(eps)
            .with_steps(40)
            .with_options(first_success),
    );
    let apgd = AttackConfig::Apgd(ApgdConfig::new(eps).with_options(first_success));
    let pgd_small = attack_dataset(&model, &test, &pgd_small, &run_opts, &device).unwrap();
    let apgd = attack_dataset(&model, &test, &apgd, &run_opts, &device).unwrap();
    eprintln!(
        "eps 0.1: PGD-40 {} APGD-100 {}",
        pgd_small.adversarial_accuracy, apgd.adversarial_accuracy
    );
    assert!(
        apgd.adversarial_accuracy <= pgd_small.adversarial_accuracy,
        "APGD weaker than PGD-40"
    );
    assert!(apgd.max_perturbation <= 0.1 * (1.0 + 1e-6));

    // The outputs: a parseable summary and a real PNG grid.
    let out = tempfile::tempdir().unwrap();
    let context = AttackContext {
        model: "small-cnn".into(),
        weights: "memory".into(),
        dataset: "mnist/test".into(),
        backend: "flex".into(),
        bulwark_version: "test".into(),
    };
    let (json, png) = write_attack_outputs(out.path(), &context, &pgd).unwrap();
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
    assert_eq!(summary["attack"], "pgd");
    assert_eq!(summary["config"]["steps"], 40);
    assert_eq!(summary["n"], test.len());
    let columns = summary["grid_columns"].as_array().unwrap();
    assert_eq!(columns.len(), 8);
    for c in columns {
        // PGD broke every image, so each column shows a change of prediction.
        assert_ne!(c["label"], c["adversarial_prediction"], "{c}");
    }
    let png = std::fs::read(png).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
}

/// A run with a state file saves every finished batch; a rerun after a kill (here: the file cut
/// back to its first two batches) attacks only the rest and reports what an uninterrupted run
/// does. The saved counts are really used (a doctored one shows in the result), a batch with
/// impossible counts is attacked again, and a state file of another run, or an unreadable one, is
/// ignored.
#[test]
fn a_killed_attack_run_resumes_from_its_saved_batches() {
    let (train, valid, test) = crate::common::mnist(1_500, 100);
    let cfg = TrainConfig::new()
        .with_model("small-cnn".into())
        .with_epochs(1)
        .with_batch_size(50)
        .with_seed(3);
    let run = tempfile::tempdir().unwrap();
    let devices = DeviceSet::single(BackendKind::Flex).unwrap();
    let fit_opts = FitOptions {
        run_dir: run.path().to_path_buf(),
        resume: false,
        progress: false,
        stop_after_epoch: None,
    };
    let model = fit(&cfg, &train, &valid, &devices, &fit_opts)
        .unwrap()
        .model;
    let device = devices.main().clone();
    let pgd = AttackConfig::Pgd(
        PgdConfig::new(ThreatModel::linf(0.1))
            .with_steps(5)
            .with_options(
                AttackOptions::new()
                    .with_random_start(true)
                    .with_restarts(2)
                    .with_early_stop(true),
            ),
    );
    let path = run.path().join("pgd-state.json");
    let with_state = |identity: &str| AttackRunOptions {
        batch_size: 16,
        progress: false,
        examples: 0,
        state: Some(AttackState {
            path: path.clone(),
            identity: identity.into(),
        }),
    };
    let attack =
        |opts: &AttackRunOptions| attack_dataset(&model, &test, &pgd, opts, &device).unwrap();
    let counts = |s: &bulwark_eval::AttackSummary| {
        (
            s.clean_accuracy,
            s.adversarial_accuracy,
            s.robust_accuracy,
            s.max_perturbation,
            s.mean_perturbation_fooled,
        )
    };
    let plain = attack(&AttackRunOptions {
        state: None,
        ..with_state("")
    });
    let batches = test.len().div_ceil(16);

    let first = attack(&with_state("model a"));
    assert_eq!(counts(&first), counts(&plain));
    assert_eq!(first.resumed_batches, 0);
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(saved["batches"].as_array().unwrap().len(), batches);

    // Killed after two batches.
    let mut cut = saved.clone();
    cut["batches"].as_array_mut().unwrap().truncate(2);
    std::fs::write(&path, serde_json::to_vec(&cut).unwrap()).unwrap();
    let resumed = attack(&with_state("model a"));
    assert_eq!(resumed.resumed_batches, 2);
    assert_eq!(counts(&resumed), counts(&plain));
    let saved_again: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(saved_again["batches"].as_array().unwrap().len(), batches);

    // The saved counts are what the result is made of: a doctored largest perturbation in the
    // first batch comes out as the run's.
    let mut doctored = saved.clone();
    doctored["batches"][0]["max_perturbation"] = 0.123.into();
    std::fs::write(&path, serde_json::to_vec(&doctored).unwrap()).unwrap();
    let from_file = attack(&with_state("model a"));
    assert_eq!(from_file.resumed_batches, batches);
    assert_eq!(from_file.max_perturbation, 0.123);
    // Counts no batch can have (more robust images than clean-correct ones): recomputed.
    let mut damaged = saved.clone();
    let clean_ok = damaged["batches"][1]["clean_ok"].as_u64().unwrap();
    damaged["batches"][1]["robust_ok"] = (clean_ok + 1).into();
    std::fs::write(&path, serde_json::to_vec(&damaged).unwrap()).unwrap();
    let repaired = attack(&with_state("model a"));
    assert_eq!(repaired.resumed_batches, batches - 1);
    assert_eq!(counts(&repaired), counts(&plain));

    // Another model's state, and an unreadable file: every batch is attacked again.
    std::fs::write(&path, serde_json::to_vec(&saved).unwrap()).unwrap();
    let other = attack(&with_state("model b"));
    assert_eq!(other.resumed_batches, 0);
    assert_eq!(counts(&other), counts(&plain));
    std::fs::write(&path, b"{\"fingerprint\": \"trunc").unwrap();
    let unreadable = attack(&with_state("model b"));
    assert_eq!(unreadable.resumed_batches, 0);
    assert_eq!(counts(&unreadable), counts(&plain));
}
