//! The `bulwark` binary end to end.
//!
//! Tests that train need the full MNIST files; they obtain them through the project's fetch
//! chain ([`mnist_dir`]) and fail with the fetch error when that is impossible.

use crate::common::{exit_code, fails, fails_on_missing_weights, mnist_dir, ok, read_json};

#[test]
fn models_list_shows_every_model_with_its_parameter_count() {
    let out = ok(&["models", "list"]);
    for (name, shape, params) in [
        ("seed-mlp", "10", "1060"),
        ("seed-net", "3x32x32", "62006"),
        ("mlp", "1x28x28", "269322"),
        ("small-cnn", "1x28x28", "166406"),
        ("madry-cnn", "1x28x28", "3274634"),
        ("preact-resnet18", "3x32x32", "11172170"),
        // PyTorch's counts of RobustBench's WideResNet (scripts/wrn_fixtures.py).
        ("wrn-28-10", "3x32x32", "36479194"),
        ("wrn-34-10", "3x32x32", "46160474"),
    ] {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing:\n{out}"));
        assert!(line.contains(shape) && line.contains(params), "{line}");
    }
}

#[test]
fn help_shows_examples() {
    for cmd in ["train", "eval", "export"] {
        let out = ok(&[cmd, "--help"]);
        assert!(out.contains("Examples:"), "{cmd}: {out}");
    }
}

#[test]
fn every_registered_attack_is_offered_by_the_command_line() {
    // The CLI's attack names are the registry's: each name and alias is in --help and parses.
    let help = ok(&["attack", "--help"]);
    for entry in bulwark_attack_core::ATTACKS {
        for name in entry.names() {
            assert!(
                help.contains(name),
                "`{name}` missing from attack --help:\n{help}"
            );
            let e = fails_on_missing_weights("attack", &["--attack", name, "--eps", "0.1"]);
            assert!(
                e.contains("/nonexistent"),
                "{name} did not get as far as the weights: {e}"
            );
        }
    }
}

#[test]
fn exit_codes_are_0_ok_1_failure_2_usage() {
    assert_eq!(exit_code(&["models", "list"]).0, 0);
    let (code, e) = exit_code(&[
        "attack",
        "--model",
        "small-cnn",
        "--weights",
        "/nonexistent/w",
        "--eps",
        "0.1",
    ]);
    assert_eq!(code, 1, "{e}");
    for usage in [
        &["--no-such-flag"][..],
        &[
            "attack",
            "--model",
            "small-cnn",
            "--weights",
            "w",
            "--attack",
            "nope",
        ],
        &[
            "eval",
            "--model",
            "small-cnn",
            "--weights",
            "w",
            "--eps",
            "0.1",
            "--norm",
            "l3",
        ],
    ] {
        let (code, e) = exit_code(usage);
        assert_eq!(code, 2, "{usage:?}: {e}");
    }
}

#[test]
fn unknown_or_missing_backends_are_clear_errors() {
    let e = fails(&["--backend", "tpu", "models", "list"]);
    assert!(
        e.contains("invalid value 'tpu'") && e.contains("ndarray"),
        "{e}"
    );
    if !cfg!(feature = "wgpu") {
        let e = fails(&["--backend", "wgpu", "models", "list"]);
        assert!(e.contains("rebuild with the `wgpu` feature"), "{e}");
    }
}

#[test]
fn bad_weight_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.safetensors");
    std::fs::write(&garbage, b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":").unwrap();
    let g = garbage.to_str().unwrap();
    let e = fails(&[
        "export",
        "--model",
        "small-cnn",
        "--from",
        g,
        "--to",
        "out.bpk",
    ]);
    assert!(
        e.contains("garbage.safetensors") && e.contains("not a valid safetensors file"),
        "{e}"
    );
    let e = fails(&["eval", "--model", "small-cnn", "--weights", g]);
    assert!(e.contains("not a valid safetensors file"), "{e}");
    let e = fails(&[
        "export",
        "--model",
        "small-cnn",
        "--from",
        "weights.onnx",
        "--to",
        "x.bpk",
    ]);
    assert!(e.contains("unknown weights format"), "{e}");
    let bpk = dir.path().join("broken.bpk");
    std::fs::write(&bpk, b"not a burnpack").unwrap();
    let e = fails(&[
        "export",
        "--model",
        "small-cnn",
        "--from",
        bpk.to_str().unwrap(),
        "--to",
        "x.safetensors",
    ]);
    assert!(
        e.contains("broken.bpk") && e.contains("does not load into model `small-cnn`"),
        "{e}"
    );
    let e = fails(&["export", "--model", "resnet", "--from", g, "--to", "x.bpk"]);
    assert!(
        e.contains("invalid value 'resnet'") && e.contains("preact-resnet18"),
        "{e}"
    );
}

#[test]
fn bad_attack_settings_are_clear_errors_before_anything_is_loaded() {
    let with = |extra: &[&str]| fails_on_missing_weights("attack", extra);
    assert!(with(&["--attack", "pgd"]).contains("--eps"));
    assert!(with(&["--attack", "pgd", "--eps", "-0.1"]).contains("`eps` = -0.1"));
    assert!(with(&["--attack", "pgd", "--eps", "0.3", "--steps", "0"]).contains("`steps` = 0"));
    assert!(with(&["--attack", "nope", "--eps", "0.3"]).contains("invalid value 'nope'"));
    assert!(
        with(&["--attack", "pgd", "--norm", "l3", "--eps", "0.3"]).contains("invalid value 'l3'")
    );
    assert!(
        with(&["--attack", "apgd", "--eps", "0.3", "--step-size", "0.1"]).contains("step-size")
    );
    assert!(with(&["--attack", "deepfool", "--norm", "l1"]).contains("l2 or linf"));
    assert!(
        with(&["--attack", "pgd", "--eps", "0.3", "--targeted", "given"])
            .contains("[possible values: random, least-likely]")
    );
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("attack.toml");
    std::fs::write(&cfg, "attack = \"pgd\"\nsteps = 5\n").unwrap();
    let e = fails(&[
        "attack",
        "--model",
        "small-cnn",
        "--weights",
        "/nonexistent",
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert!(e.contains("not an attack configuration"), "{e}");
    std::fs::write(
        &cfg,
        "attack = \"pgd\"\nsteps = 5\n[threat]\nnorm = \"l2\"\neps = 1.5\n",
    )
    .unwrap();
    let out = tmp.path().join("out");
    let e = fails(&[
        "attack",
        "--model",
        "small-cnn",
        "--weights",
        "/nonexistent",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        e.contains("/nonexistent"),
        "a valid config must get as far as the weights: {e}"
    );
}

#[test]
fn bad_evaluation_settings_are_clear_errors_before_anything_is_loaded() {
    let with = |extra: &[&str]| fails_on_missing_weights("eval", extra);
    assert!(with(&["--eps", "-0.1"]).contains("`eps` = -0.1"));
    assert!(with(&["--eps", "0.3", "--eps-sweep", "0.1,-1"]).contains("`eps` = -1"));
    assert!(with(&["--eps", "0.3", "--preset", "full"]).contains("invalid value 'full'"));
    let e = with(&["--eps", "0.3", "--attacks", "apgd-ce,fab"]);
    assert!(
        e.contains("unknown attack `fab`") && e.contains("fab-t") && e.contains("apgd-mt"),
        "{e}"
    );
    assert!(
        with(&["--eps", "1", "--norm", "l1", "--attacks", "square"])
            .contains("unknown attack `square`")
    );
    assert!(with(&["--eps", "0.3", "--norm", "l3"]).contains("invalid value 'l3'"));
    // Radii need --eps.
    assert!(with(&["--eps-sweep", "0.1"]).contains("--eps"));
    // Valid settings get as far as the weights.
    assert!(with(&["--eps", "0.3"]).contains("/nonexistent"));
}

#[test]
fn the_throughput_benchmark_writes_its_table_and_json() {
    let e = fails(&["bench", "throughput", "--workloads", "pgd-20"]);
    assert!(
        e.contains("invalid value 'pgd-20'") && e.contains("pgd-10"),
        "{e}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("bench.json");
    let out = ok(&[
        "bench",
        "throughput",
        "--repeats",
        "1",
        "--batch",
        "16",
        "--models",
        "mlp",
        "--matmul",
        "128",
        "--backend-list",
        "flex",
        "--data-dir",
        concat!(env!("CARGO_MANIFEST_DIR"), "/../data/tests/fixtures/mnist"),
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(
        out.contains("pgd-at-step") && out.contains("matmul-128"),
        "{out}"
    );
    let rows = read_json(&json);
    let rows = rows.as_array().unwrap();
    // The matrix multiply, then six workloads.
    assert_eq!(rows.len(), 7);
    assert_eq!(rows[0]["workload"], "matmul-128");
    assert!(out.contains("trades-step"), "{out}");
    for row in &rows[1..] {
        assert_eq!(row["model"], "mlp");
        assert_eq!(row["inputs"], "images");
        assert!(row["median_images_per_second"].as_f64().unwrap() > 0.0);
        assert!(row["gflops_per_second"].as_f64().unwrap() > 0.0);
    }
    // The old name still runs the same benchmark.
    let out = ok(&[
        "bench",
        "attacks",
        "--repeats",
        "1",
        "--batch",
        "4",
        "--models",
        "mlp",
        "--workloads",
        "fgsm",
        "--matmul",
        "0",
        "--backend-list",
        "flex",
        "--data-dir",
        concat!(env!("CARGO_MANIFEST_DIR"), "/../data/tests/fixtures/mnist"),
    ]);
    assert!(out.contains("fgsm") && !out.contains("matmul"), "{out}");
}

/// From a directory that is not the repository's (an installed `bulwark`), without --data-dir:
/// MNIST-shaped models time real images built into the binary, CIFAR-shaped ones seeded uniform
/// inputs of their own shape, every workload included.
#[test]
fn the_throughput_benchmark_runs_every_shape_from_any_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bulwark"))
        .args([
            "bench",
            "throughput",
            "--repeats",
            "1",
            "--batch",
            "2",
            "--models",
            "small-cnn,seed-net",
            "--workloads",
            "clean,trades-step",
            "--matmul",
            "0",
            "--backend-list",
            "flex",
            "--json",
            "rows.json",
        ])
        .current_dir(tmp.path())
        .env("BULWARK_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = read_json(&tmp.path().join("rows.json"));
    let got: Vec<(&str, &str, &str)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["model"].as_str().unwrap(),
                r["workload"].as_str().unwrap(),
                r["inputs"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("small-cnn", "clean", "images"),
            ("small-cnn", "trades-step", "images"),
            ("seed-net", "clean", "uniform"),
            ("seed-net", "trades-step", "uniform"),
        ]
    );
    // TRADES' step counts 27 forward passes: its attack's 20 and its clean one, and two batches
    // trained.
    let r = &rows[3];
    let per_forward = rows[2]["flops_per_image"].as_f64().unwrap();
    assert_eq!(r["flops_per_image"].as_f64().unwrap(), 27.0 * per_forward);
    assert!(r["median_images_per_second"].as_f64().unwrap() > 0.0);
    // A vector model cannot be timed on images: a clear error, not a panic.
    let e = fails(&[
        "bench",
        "throughput",
        "--models",
        "seed-mlp",
        "--matmul",
        "0",
        "--backend-list",
        "flex",
    ]);
    assert!(e.contains("seed-mlp") && e.contains("vectors"), "{e}");
}

#[test]
fn the_layer_benchmark_times_every_convolution_in_three_directions() {
    let tmp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bulwark"))
        .args([
            "bench",
            "layers",
            "--models",
            "madry-cnn",
            "--batch",
            "2",
            "--repeats",
            "1",
            "--backend-list",
            "flex",
            "--json",
            "layers.json",
        ])
        .current_dir(tmp.path())
        .env("BULWARK_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = read_json(&tmp.path().join("layers.json"));
    let rows = doc["layers"].as_array().unwrap();
    let got: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["layer"].as_str().unwrap(),
                r["direction"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("1>32 5x5 s1 28x28", "forward"),
            ("1>32 5x5 s1 28x28", "input-grad"),
            ("1>32 5x5 s1 28x28", "weight-grad"),
            ("32>64 5x5 s1 14x14", "forward"),
            ("32>64 5x5 s1 14x14", "input-grad"),
            ("32>64 5x5 s1 14x14", "weight-grad"),
        ]
    );
    // madry-cnn's second layer: 64·14²·800 multiply-adds per image, 2 images.
    assert_eq!(
        rows[3]["flops"].as_f64().unwrap(),
        2.0 * 2.0 * 64.0 * 196.0 * 800.0
    );
    // On an x86-64 CPU with AVX-512F, or AVX2 and FMA, the peak is measured and printed with
    // each layer's share.
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f")
        || (std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma"))
    {
        assert!(
            doc["fma_peak"]["gflops_per_second"].as_f64().unwrap() > 0.0,
            "{doc}"
        );
        assert!(
            stdout.contains("FMA peak") && stdout.contains("% peak"),
            "{stdout}"
        );
    }
    // A model without convolutions has no layers to time: a clear error, before anything is
    // timed (here after a model that would take minutes).
    let e = fails(&[
        "bench",
        "layers",
        "--models",
        "wrn-28-10,mlp",
        "--backend-list",
        "flex",
    ]);
    assert!(e.contains("mlp") && e.contains("no convolutions"), "{e}");
}

#[test]
fn a_data_dir_without_the_files_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let e = fails(&[
        "data",
        "fetch",
        "mnist",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(e.contains("train-images-idx3-ubyte"), "{e}");
}

/// Train (interrupted and resumed), evaluate, export, re-import: the numbers agree everywhere.
#[test]
fn train_resume_eval_and_export_agree() {
    let data = mnist_dir();
    let data = data.to_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let run_s = run.to_str().unwrap();
    let common = [
        "--data-dir",
        data,
        "--train-limit",
        "4000",
        "--valid-size",
        "500",
        "--test-limit",
        "2000",
        "--epochs",
        "2",
        "--batch-size",
        "64",
        "--lr",
        "0.003",
        "--no-progress",
        "--run-dir",
        run_s,
    ];
    let mut first: Vec<&str> = vec!["train"];
    first.extend(common);
    first.extend(["--stop-after-epoch", "1"]);
    let out = ok(&first);
    assert!(out.contains("--resume"), "{out}");
    // Starting again into the same directory without --resume must not overwrite it.
    let mut again: Vec<&str> = vec!["train"];
    again.extend(common);
    let e = fails(&again);
    assert!(e.contains("already holds a run"), "{e}");
    let e = fails(&["train", "--resume", "--run-dir", run_s, "--epochs", "3"]);
    assert!(e.contains("drop the configuration flags"), "{e}");
    let out = ok(&[
        "train",
        "--resume",
        "--run-dir",
        run_s,
        "--data-dir",
        data,
        "--no-progress",
    ]);
    assert!(out.contains("clean test accuracy"), "{out}");

    for f in [
        "config.toml",
        "metrics.jsonl",
        "checkpoint/model.bpk",
        "model.safetensors",
        "model.bpk",
        "report.md",
        "report.json",
        "accuracy.svg",
        "loss.svg",
    ] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    let report = read_json(&run.join("report.json"));
    let acc = report["clean_acc"].as_f64().unwrap();
    assert!(acc > 0.8, "accuracy {acc}");
    assert_eq!(report["test"]["n"], 2000);
    assert_eq!(report["resumed_from_epoch"], 1);
    let source = report["data_source"].as_str().unwrap();
    assert!(source.starts_with(data), "{source}");
    assert_eq!(
        std::fs::read_to_string(run.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .count(),
        2
    );
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(md.contains(&format!("{:.2} %", 100.0 * acc)), "{md}");

    // eval on the exported PyTorch-layout weights reproduces the report's accuracy exactly.
    let json = tmp.path().join("eval.json");
    ok(&[
        "eval",
        "--model",
        "small-cnn",
        "--weights",
        run.join("model.safetensors").to_str().unwrap(),
        "--data-dir",
        data,
        "--limit",
        "2000",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(read_json(&json)["accuracy"].as_f64().unwrap(), acc);

    // attack: PGD breaks the model; the summary and the example grid are written.
    let attack_out = tmp.path().join("attack");
    let attack_args = [
        "attack",
        "--model",
        "small-cnn",
        "--weights",
        run_s,
        "--data-dir",
        data,
        "--attack",
        "pgd",
        "--eps",
        "0.3",
        "--steps",
        "10",
        "--limit",
        "200",
        "--no-progress",
        "--out",
        attack_out.to_str().unwrap(),
    ];
    let out = ok(&attack_args);
    assert!(out.contains("robust"), "{out}");
    let summary = read_json(&attack_out.join("summary.json"));
    // A finished attack leaves no state behind; one that was killed does, and a rerun into its
    // directory must say --resume. A state file that is not of this attack is ignored on resume
    // (crates/trainer/tests/integration/attacks.rs checks the resumed batches themselves), and the summary
    // comes out the same.
    let state = attack_out.join("attack-state.json");
    assert!(!state.exists());
    // What a kill leaves: a state (here of another attack) and no summary yet.
    std::fs::remove_file(attack_out.join("summary.json")).unwrap();
    std::fs::write(&state, b"{\"fingerprint\": \"0\", \"batches\": []}").unwrap();
    let e = fails(&attack_args);
    assert!(
        e.contains("interrupted attack") && e.contains("--resume"),
        "{e}"
    );
    let resume: Vec<&str> = attack_args.iter().copied().chain(["--resume"]).collect();
    ok(&resume);
    assert!(!state.exists());
    let again = read_json(&attack_out.join("summary.json"));
    assert_eq!(
        again["adversarial_accuracy"],
        summary["adversarial_accuracy"]
    );
    assert_eq!(again["resumed_batches"], 0);
    assert_eq!(summary["n"], 200);
    assert_eq!(summary["config"]["options"]["early_stop"], true);
    assert!(
        summary["adversarial_accuracy"].as_f64().unwrap() < 0.05,
        "{summary}"
    );
    assert!(summary["max_perturbation"].as_f64().unwrap() <= 0.3 + 1e-6);
    assert!(attack_out.join("examples.png").is_file());

    // eval --eps: the quick cascade with a sweep, its report files, and a resume that reuses the
    // saved chunks and reports the same numbers.
    let eval_out = tmp.path().join("robust");
    let args = [
        "eval",
        "--model",
        "small-cnn",
        "--weights",
        run_s,
        "--data-dir",
        data,
        "--preset",
        "quick",
        "--eps",
        "0.3",
        "--eps-sweep",
        "0.05",
        "--limit",
        "60",
        "--chunk-size",
        "30",
        "--probe-size",
        "10",
        "--no-progress",
        "--out",
        eval_out.to_str().unwrap(),
    ];
    let out = ok(&args);
    assert!(
        out.contains("robust") && out.contains("after apgd-t"),
        "{out}"
    );
    let report = read_json(&eval_out.join("report.json"));
    assert_eq!(report["n_examples"], 60);
    assert_eq!(report["threat_model"], "Linf");
    assert_eq!(report["preset"], "quick");
    assert!(report["robust_acc"].as_f64().unwrap() < 0.05, "{report}");
    assert_eq!(report["sweep"].as_array().unwrap().len(), 2);
    for f in [
        "report.md",
        "robust_vs_eps.svg",
        "examples.png",
        "adversarial.safetensors",
    ] {
        assert!(eval_out.join(f).is_file(), "{f} missing");
    }
    let e = fails(&args);
    assert!(e.contains("--resume"), "{e}");
    let mut again: Vec<&str> = args.to_vec();
    again.push("--resume");
    ok(&again);
    let resumed = read_json(&eval_out.join("report.json"));
    assert_eq!(resumed["resumed_chunks"], 2);
    assert_eq!(resumed["robust_acc"], report["robust_acc"]);
    assert_eq!(resumed["sweep"], report["sweep"]);

    // export from the run directory (burn record) and from safetensors back to burn.
    let exported = tmp.path().join("exported.safetensors");
    ok(&[
        "export",
        "--model",
        "small-cnn",
        "--from",
        run_s,
        "--to",
        exported.to_str().unwrap(),
    ]);
    let back = tmp.path().join("back.bpk");
    ok(&[
        "export",
        "--model",
        "small-cnn",
        "--from",
        exported.to_str().unwrap(),
        "--to",
        back.to_str().unwrap(),
    ]);
    let json2 = tmp.path().join("eval2.json");
    ok(&[
        "eval",
        "--model",
        "small-cnn",
        "--weights",
        back.to_str().unwrap(),
        "--data-dir",
        data,
        "--limit",
        "2000",
        "--json",
        json2.to_str().unwrap(),
    ]);
    assert_eq!(read_json(&json2)["accuracy"].as_f64().unwrap(), acc);

    // Weights of another architecture name the first mismatching tensor.
    let e = fails(&[
        "eval",
        "--model",
        "madry-cnn",
        "--weights",
        exported.to_str().unwrap(),
        "--data-dir",
        data,
    ]);
    assert!(
        e.contains("`0.weight` has shape [16, 1, 4, 4], expected [32, 1, 5, 5]"),
        "{e}"
    );
    let e = fails(&[
        "export",
        "--model",
        "mlp",
        "--from",
        run_s,
        "--to",
        "x.safetensors",
    ]);
    assert!(e.contains("does not load into model `mlp`"), "{e}");
}

/// Adversarial training from flags and a config with a final robust evaluation: the report holds
/// the robust numbers and links the evaluator's report; bad method settings fail up front.
#[test]
fn adversarial_training_writes_robust_numbers_into_the_report() {
    let e = fails(&["train", "--method", "pgd", "--eps", "0.1"]);
    assert!(
        e.contains("invalid value 'pgd'") && e.contains("pgd-at"),
        "{e}"
    );
    let e = fails(&["train", "--method", "trades"]);
    assert!(e.contains("needs a radius"), "{e}");
    let e = fails(&["train", "--eps", "0.1"]);
    assert!(e.contains("adversarial --method"), "{e}");
    let e = fails(&[
        "train", "--mixup", "0.2", "--method", "mart", "--eps", "0.1",
    ]);
    assert!(e.contains("do not combine with mart"), "{e}");
    let e = fails(&["train", "--awp", "0.01"]);
    assert!(
        e.contains("awp is an add-on to adversarial training"),
        "{e}"
    );
    let e = fails(&["train", "--awp", "2", "--method", "pgd-at", "--eps", "0.1"]);
    assert!(e.contains("gamma") && e.contains("(0, 1]"), "{e}");
    let e = fails(&["train", "--dropout", "0.3"]);
    assert!(
        e.contains("small-cnn") && e.contains("no dropout layers") && e.contains("wrn-28-10"),
        "{e}"
    );
    let e = fails(&["train", "--input-gradient", "0"]);
    assert!(e.contains("input_gradient lambda must be > 0"), "{e}");
    let e = fails(&["train", "--input-gradient-h", "0.1"]);
    assert!(e.contains("--input-gradient"), "{e}");
    let data = mnist_dir();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("adv.toml");
    std::fs::write(
        &cfg,
        r#"
epochs = 1
batch_size = 64
train_limit = 2500
valid_size = 500
test_limit = 300
robust_valid_size = 200
lr = 0.003
label_smoothing = 0.1

[method]
kind = "fgsm-rs"
eps = 0.1

[awp]
gamma = 0.005

[[penalties]]
kind = "l2"
lambda = 1e-5

[[constraints]]
kind = "prox-l1"
lambda = 0.3
select = { include = ["fc1.weight"] }

[final_eval]
pgd_steps = 10
pgd_restarts = 2
preset = "quick"
eps_sweep = [0.05]
"#,
    )
    .unwrap();
    let run = tmp.path().join("run");
    let out = ok(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--run-dir",
        run.to_str().unwrap(),
        "--input-gradient",
        "0.05",
        "--no-progress",
    ]);
    assert!(out.contains("best robust validation acc"), "{out}");
    // The input-gradient penalty from the command line: in the saved configuration and measured
    // in the metrics.
    let saved = bulwark_trainer::TrainConfig::from_toml_file(&run.join("config.toml")).unwrap();
    assert_eq!(
        saved.input_gradient,
        Some(bulwark_trainer::InputGradientSpec::new(0.05))
    );
    let report = read_json(&run.join("report.json"));
    assert_eq!(report["method"], "fgsm-rs");
    assert_eq!(report["awp_gamma"], 0.005);
    let pgd = report["robust_test"]["robust_accuracy"].as_f64().unwrap();
    let quick = report["robust_eval"]["cascade_robust_acc"]
        .as_f64()
        .unwrap();
    let headline = report["robust_acc"].as_f64().unwrap();
    let clean = report["clean_acc"].as_f64().unwrap();
    assert_eq!(report["robust_test"]["n"], 300);
    assert_eq!(report["robust_eval"]["robust_acc"].as_f64(), Some(headline));
    // The headline is the per-sample worst case over PGD and the cascade: at most either, and at
    // least what a union of their breaks leaves.
    assert!(
        headline <= quick.min(pgd) + 1e-9 && headline >= quick + pgd - clean - 1e-9,
        "{headline} {quick} {pgd} {clean}"
    );
    assert!(pgd <= clean && quick <= clean, "{quick} {pgd} {clean}");
    let per_attack = report["robust_eval"]["per_attack"].as_array().unwrap();
    assert_eq!(per_attack[0]["name"], "cascade");
    assert_eq!(per_attack[1]["name"], "PGD-10 x2");
    assert_eq!(per_attack[1]["robust_acc"].as_f64(), Some(pgd));
    assert!(
        pgd > 0.3,
        "one epoch of fgsm-rs at eps 0.1 should resist PGD somewhat: {pgd}"
    );
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(
        md.contains("eval/report.md")
            && md.contains("| PGD-10 x2 alone (eps 0.1, 300 images) |")
            && md.contains("**robust test accuracy** (Linf eps 0.1, 300 images; per-sample worst case over the `quick` cascade, PGD-10 x2")
            && md.contains("adversarial weight perturbation (γ = 0.005, from epoch 1)"),
        "{md}"
    );
    assert!(run.join("eval/report.json").is_file() && run.join("eval/robust_vs_eps.svg").is_file());
    // The final PGD saved its batches for a resume: together they cover the 300 test images.
    let state = read_json(&run.join("final-pgd-state.json"));
    let covered: u64 = state["batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["len"].as_u64().unwrap())
        .sum();
    assert_eq!(covered, 300, "{state}");
    // Proximal L1 on fc1.weight: the report counts its exact zeros; other weights have none.
    let sparsity = report["sparsity"].as_array().unwrap();
    let share = |name: &str| {
        sparsity.iter().find(|e| e["param"] == name).unwrap()["share"]
            .as_f64()
            .unwrap()
    };
    assert!(share("fc1.weight") > 0.05, "{sparsity:?}");
    assert_eq!(share("conv1.weight"), 0.0);
    assert!(md.contains("## Sparsity"), "{md}");
    let line = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let m: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    assert!(m["input_gradient"].as_f64().is_some_and(|v| v > 0.0), "{m}");
    assert!(
        m["valid_robust_acc"].as_f64().is_some() && m["penalty"].as_f64().is_some(),
        "{m}"
    );
}

/// A sweep trains one run per value, writes its table and plot, and a second invocation reuses the
/// finished runs instead of training again.
#[test]
fn a_sweep_tabulates_each_strength_and_continues_instead_of_retraining() {
    let e = fails(&["sweep", "--reg", "l3", "--lambda", "0,1"]);
    assert!(
        e.contains("invalid value 'l3'") && e.contains("group-lasso"),
        "{e}"
    );
    let e = fails(&["sweep", "--reg", "l2", "--lambda", "0,-1"]);
    assert!(e.contains(">= 0"), "{e}");
    let data = mnist_dir();
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("sweep");
    let args = [
        "sweep",
        "--reg",
        "l2",
        "--lambda",
        "0,0.01",
        "--epochs",
        "1",
        "--train-limit",
        "15000",
        "--data-dir",
        data.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        "--no-progress",
    ];
    let out = ok(&args);
    assert!(out.contains("| l2 | train acc | test acc |"), "{out}");
    let sweep = read_json(&out_dir.join("sweep.json"));
    let points = sweep["points"].as_array().unwrap();
    assert_eq!(points.len(), 2);
    for p in points {
        assert!(
            p["train_acc"].as_f64().unwrap() > 0.8 && p["robust_acc"].is_null(),
            "{p}"
        );
    }
    assert!(out_dir.join("sweep.svg").is_file() && out_dir.join("l2-0.01/report.md").is_file());
    let finished = std::fs::metadata(out_dir.join("l2-0/model.bpk"))
        .unwrap()
        .modified()
        .unwrap();
    ok(&args);
    let again = std::fs::metadata(out_dir.join("l2-0/model.bpk"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(finished, again, "a finished run was trained again");
    assert_eq!(
        read_json(&out_dir.join("sweep.json"))["points"],
        sweep["points"]
    );
}

#[test]
fn aliases_of_one_attack_get_their_own_default_directory() {
    // Without --out, the directory is named by the attack as asked for: `apgd-t` (targeted DLR)
    // and `apgd` must not share saved batches. The directory is claimed before the weights are
    // read, so a missing weights file still shows where the run would have written.
    let cwd = tempfile::tempdir().unwrap();
    for name in ["apgd", "apgd-t"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_bulwark"))
            .args([
                "attack",
                "--model",
                "small-cnn",
                "--weights",
                "/nonexistent/w",
            ])
            .args(["--attack", name, "--eps", "0.1"])
            .current_dir(cwd.path())
            .env("BULWARK_LOG", "warn")
            .output()
            .unwrap();
        assert!(!out.status.success());
        let dir = cwd
            .path()
            .join(format!("runs/attacks/small-cnn-{name}-linf-0.1"));
        assert!(dir.is_dir(), "{} missing", dir.display());
    }
}

#[test]
fn gaussian_noise_training_then_certification_with_resume() {
    let data = mnist_dir();
    let data = data.to_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let run_s = run.to_str().unwrap();
    let e = fails(&["train", "--method", "gaussian-noise", "--run-dir", run_s]);
    assert!(e.contains("--sigma"), "{e}");
    let e = fails(&[
        "train", "--method", "pgd-at", "--eps", "0.3", "--sigma", "0.25",
    ]);
    assert!(e.contains("--sigma is the noise level"), "{e}");
    ok(&[
        "train",
        "--data-dir",
        data,
        "--method",
        "gaussian-noise",
        "--sigma",
        "0.25",
        "--train-limit",
        "4000",
        "--valid-size",
        "500",
        "--test-limit",
        "500",
        "--epochs",
        "2",
        "--batch-size",
        "64",
        "--lr",
        "0.003",
        "--no-progress",
        "--run-dir",
        run_s,
    ]);
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(
        config.contains("gaussian-noise") && config.contains("sigma = 0.25"),
        "{config}"
    );

    let out = tmp.path().join("certify");
    let out_s = out.to_str().unwrap();
    let certify = |extra: &[&'static str]| -> Vec<&str> {
        let mut v = vec![
            "certify",
            "--model",
            "small-cnn",
            "--weights",
            run_s,
            "--data-dir",
            data,
            "--sigma",
            "0.25",
            "--n0",
            "50",
            "--n",
            "400",
            "--batch-size",
            "200",
            "--limit",
            "20",
            "--radii",
            "0,0.25,0.5",
            "--out",
            out_s,
        ];
        v.extend(extra);
        v
    };
    // Bad settings are refused before weights or data are read.
    let e = fails_on_missing_weights("certify", &["--sigma", "0"]);
    assert!(e.contains("sigma must be > 0"), "{e}");
    let e = fails(&certify(&["--resume"]));
    assert!(e.contains("nothing to resume"), "{e}");
    let printed = ok(&certify(&[]));
    assert!(
        printed.contains("certified accuracy at L2 radius 0.25"),
        "{printed}"
    );
    for f in ["certify.json", "certify.md", "certify.svg", "certify.jsonl"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let report = read_json(&out.join("certify.json"));
    assert_eq!(report["n_examples"], 20);
    // Two epochs under noise already classify most noisy MNIST digits.
    let smoothed = report["smoothed_acc"].as_f64().unwrap();
    assert!(smoothed > 0.7, "smoothed accuracy {smoothed}");
    let md = std::fs::read_to_string(out.join("certify.md")).unwrap();
    assert!(md.contains("bulwark --backend flex certify"), "{md}");
    // Again into the same directory: refused without --resume, unchanged with it.
    let e = fails(&certify(&[]));
    assert!(e.contains("--resume"), "{e}");
    ok(&certify(&["--resume"]));
    assert_eq!(read_json(&out.join("certify.json"))["rows"], report["rows"]);
    // An attack on the smoothed classifier beside the certificates: not a resume of a run
    // without one.
    let e = fails(&certify(&["--resume", "--attack-steps", "5"]));
    assert!(e.contains("other settings"), "{e}");
    let attacked = tmp.path().join("attacked");
    let mut with_attack = certify(&[
        "--attack-steps",
        "5",
        "--attack-samples",
        "8",
        "--predict-n",
        "200",
    ]);
    let at = with_attack.iter().position(|a| *a == out_s).unwrap();
    with_attack[at] = attacked.to_str().unwrap();
    let printed = ok(&with_attack);
    assert!(printed.contains("empirical (attacked)"), "{printed}");
    let rows = read_json(&attacked.join("certify.json"))["rows"].clone();
    for row in rows.as_array().unwrap() {
        let (c, e) = (
            row["certified_acc"].as_f64().unwrap(),
            row["empirical_acc"].as_f64().unwrap(),
        );
        // Certified points are not flipped, and the attack's accuracy is not far below the
        // certified one (both are estimates: PREDICT may abstain).
        assert_eq!(row["contradicted"], 0, "{row}");
        assert!(e >= c - 0.15, "{row}");
    }
    let md = std::fs::read_to_string(attacked.join("certify.md")).unwrap();
    assert!(
        md.contains("empirical accuracy") && md.contains("--attack-steps 5"),
        "{md}"
    );
    // Another sigma does not continue it.
    let mut other = certify(&["--resume"]);
    let at = other.iter().position(|a| *a == "0.25").unwrap();
    other[at] = "0.5";
    let e = fails(&other);
    assert!(e.contains("other settings"), "{e}");
}

#[test]
fn ibp_training_and_the_verified_row_of_an_evaluation() {
    let data = mnist_dir();
    let data = data.to_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let run_s = run.to_str().unwrap();
    let config = tmp.path().join("ibp.toml");
    let text =
        "model = \"small-cnn\"\neps_warmup_epochs = 1.5\n[method]\nkind = \"ibp\"\neps = 0.11\n";
    std::fs::write(&config, format!("norm = \"l2\"\n{text}")).unwrap();
    let e = fails(&["train", "--config", config.to_str().unwrap()]);
    assert!(e.contains("L-inf"), "{e}");
    std::fs::write(&config, text).unwrap();
    ok(&[
        "train",
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        data,
        "--train-limit",
        "6000",
        "--valid-size",
        "500",
        "--test-limit",
        "200",
        "--epochs",
        "3",
        "--batch-size",
        "50",
        "--lr",
        "0.001",
        "--no-progress",
        "--run-dir",
        run_s,
    ]);
    let out = tmp.path().join("eval");
    let printed = ok(&[
        "eval",
        "--model",
        "small-cnn",
        "--weights",
        run_s,
        "--data-dir",
        data,
        "--eps",
        "0.1",
        "--preset",
        "quick",
        "--limit",
        "100",
        "--probe-size",
        "20",
        "--probe-queries",
        "200",
        "--no-progress",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(printed.contains("verified (IBP)"), "{printed}");
    let report = read_json(&out.join("report.json"));
    let verified = report["verified"]["verified_acc"].as_f64().unwrap();
    let robust = report["robust_acc"].as_f64().unwrap();
    assert!(
        verified > 0.3 && verified <= robust,
        "verified {verified}, robust {robust}"
    );
    assert_eq!(report["verified"]["contradicted"], 0);
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("verified robust accuracy"), "{md}");
    // An L2 evaluation has no IBP row (the bounds are for L-inf boxes).
    let l2 = tmp.path().join("eval-l2");
    ok(&[
        "eval",
        "--model",
        "small-cnn",
        "--weights",
        run_s,
        "--data-dir",
        data,
        "--eps",
        "1",
        "--norm",
        "l2",
        "--preset",
        "quick",
        "--limit",
        "20",
        "--probe-size",
        "10",
        "--probe-queries",
        "100",
        "--no-progress",
        "--out",
        l2.to_str().unwrap(),
    ]);
    assert!(read_json(&l2.join("report.json"))["verified"].is_null());
}
