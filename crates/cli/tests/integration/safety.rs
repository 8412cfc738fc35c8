//! Nothing a user types loses their data, and the messages tell the truth.
//!
//! Each data-loss case here lost data before the guard it tests: an output that replaced the
//! weights, the configuration or a dataset file it was computed from, a finished attack replaced
//! without a word, two trainings interleaving in one run directory, a run name that escaped the
//! runs directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{bulwark, fails, mnist_dir, ok, read_json};
use bulwark_models::{Model, bpk};
use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::Tensor;

/// Untrained small-cnn weights in `dir` (safetensors), from the CLI itself.
fn weights(dir: &Path) -> PathBuf {
    let w = dir.join("w.safetensors");
    ok(&[
        "export",
        "--model",
        "small-cnn",
        "--init-seed",
        "0",
        "--to",
        w.to_str().unwrap(),
    ]);
    w
}

/// `eval` of `w` on 20 MNIST test images, plus `extra`.
fn eval_args<'a>(w: &'a str, data: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "eval",
        "--model",
        "small-cnn",
        "--weights",
        w,
        "--data-dir",
        data,
        "--limit",
        "20",
    ];
    v.extend(extra);
    v
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn no_output_replaces_the_weights_or_configuration_it_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let w = weights(tmp.path());
    let original = std::fs::read(&w).unwrap();
    let data = mnist_dir();
    let (ws, ds) = (s(&w), s(&data));

    // --predictions and --json naming the weights file, directly, through a symbolic link, and
    // through a hard link.
    let link = tmp.path().join("link.safetensors");
    std::os::unix::fs::symlink(&w, &link).unwrap();
    let hard = tmp.path().join("hard.safetensors");
    std::fs::hard_link(&w, &hard).unwrap();
    for (flag, target) in [
        ("--predictions", ws),
        ("--json", ws),
        ("--predictions", s(&link)),
        ("--json", s(&hard)),
    ] {
        let e = fails(&eval_args(ws, ds, &[flag, target]));
        assert!(
            e.contains("refusing to write") && e.contains("the weights file") && e.contains(flag),
            "{flag} {target}: {e}"
        );
        assert_eq!(std::fs::read(&w).unwrap(), original, "{flag} {target}");
    }
    // Two outputs of one command naming one file.
    let p = tmp.path().join("out.txt");
    let e = fails(&eval_args(
        ws,
        ds,
        &["--predictions", s(&p), "--json", s(&p)],
    ));
    assert!(e.contains("name the same file"), "{e}");
    // Allowed outputs are written.
    ok(&eval_args(ws, ds, &["--predictions", s(&p)]));
    assert_eq!(std::fs::read_to_string(&p).unwrap().lines().count(), 20);

    // A robust evaluation's output directory holding the weights under a name it writes.
    let out = tmp.path().join("eval");
    std::fs::create_dir(&out).unwrap();
    let inside = out.join("adversarial.safetensors");
    std::fs::copy(&w, &inside).unwrap();
    let e = fails(&eval_args(
        s(&inside),
        ds,
        &["--eps", "0.1", "--preset", "quick", "--out", s(&out)],
    ));
    assert!(
        e.contains("refusing to write") && e.contains("--out"),
        "{e}"
    );
    assert_eq!(std::fs::read(&inside).unwrap(), original);

    // export --to its own --from.
    let e = fails(&["export", "--model", "small-cnn", "--from", ws, "--to", ws]);
    assert!(e.contains("refusing to write") && e.contains("--to"), "{e}");
    assert_eq!(std::fs::read(&w).unwrap(), original);

    // train writing the run's config.toml over a different --config in the run directory.
    let run = tmp.path().join("run");
    std::fs::create_dir(&run).unwrap();
    let cfg = run.join("config.toml");
    std::fs::write(&cfg, "# my settings\nepochs = 3\n").unwrap();
    let e = fails(&[
        "train",
        "--config",
        s(&cfg),
        "--epochs",
        "1",
        "--run-dir",
        s(&run),
        "--data-dir",
        ds,
    ]);
    assert!(
        e.contains("refusing to write") && e.contains("the configuration file"),
        "{e}"
    );
    assert_eq!(
        std::fs::read_to_string(&cfg).unwrap(),
        "# my settings\nepochs = 3\n"
    );
}

/// A training run's report and an evaluation's report share their file names: neither replaces
/// the other.
#[test]
fn an_evaluation_and_a_run_do_not_replace_each_others_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let data = mnist_dir();
    let run = tmp.path().join("run");
    ok(&[
        "train",
        "--epochs",
        "1",
        "--train-limit",
        "1500",
        "--valid-size",
        "500",
        "--test-limit",
        "100",
        "--run-dir",
        s(&run),
        "--data-dir",
        s(&data),
        "--no-progress",
    ]);
    let report = std::fs::read(run.join("report.md")).unwrap();
    let quick = [
        "--eps",
        "0.1",
        "--preset",
        "quick",
        "--probe-size",
        "5",
        "--no-progress",
    ];
    let mut into_run = quick.to_vec();
    into_run.extend(["--out", s(&run)]);
    let e = fails(&eval_args(s(&run), s(&data), &into_run));
    assert!(
        e.contains("holds a report that is not a saved evaluation"),
        "{e}"
    );
    assert_eq!(std::fs::read(run.join("report.md")).unwrap(), report);

    let eval = tmp.path().join("eval");
    let mut into_eval = quick.to_vec();
    into_eval.extend(["--out", s(&eval)]);
    ok(&eval_args(s(&run), s(&data), &into_eval));
    let eval_report = std::fs::read(eval.join("report.json")).unwrap();
    let e = fails(&["train", "--run-dir", s(&eval), "--data-dir", s(&data)]);
    assert!(
        e.contains("the report of an earlier run or evaluation"),
        "{e}"
    );
    assert_eq!(
        std::fs::read(eval.join("report.json")).unwrap(),
        eval_report
    );
}

#[test]
fn no_output_replaces_a_dataset_file() {
    // A copy of the dataset, so that a failing guard cannot damage the shared cache.
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("mnist");
    std::fs::create_dir(&data).unwrap();
    for f in bulwark_data::FILE_NAMES {
        std::fs::copy(mnist_dir().join(f), data.join(f)).unwrap();
    }
    let labels = data.join("t10k-labels-idx1-ubyte");
    let original = std::fs::read(&labels).unwrap();
    let w = weights(tmp.path());
    for flag in ["--predictions", "--json"] {
        let e = fails(&eval_args(s(&w), s(&data), &[flag, s(&labels)]));
        assert!(
            e.contains("refusing to write") && e.contains("the data file"),
            "{flag}: {e}"
        );
    }
    assert_eq!(std::fs::read(&labels).unwrap(), original);
    let e = fails(&[
        "bench",
        "throughput",
        "--repeats",
        "1",
        "--batch",
        "2",
        "--models",
        "mlp",
        "--workloads",
        "clean",
        "--matmul",
        "0",
        "--data-dir",
        s(&data),
        "--json",
        s(&labels),
    ]);
    assert!(e.contains("refusing to write"), "{e}");
    assert_eq!(std::fs::read(&labels).unwrap(), original);
}

#[test]
fn a_finished_attack_is_not_replaced_without_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let w = weights(tmp.path());
    let data = mnist_dir();
    let out = tmp.path().join("attack");
    let args = |extra: &[&'static str]| {
        let mut v: Vec<String> = [
            "attack",
            "--model",
            "small-cnn",
            "--weights",
            s(&w),
            "--attack",
            "fgsm",
            "--eps",
            "0.1",
            "--limit",
            "10",
            "--data-dir",
            s(&data),
            "--out",
            s(&out),
            "--no-progress",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        v.extend(extra.iter().map(|a| a.to_string()));
        v
    };
    let run = |extra: &[&'static str]| {
        let v = args(extra);
        bulwark(&v.iter().map(String::as_str).collect::<Vec<_>>())
    };
    assert!(run(&[]).status.success());
    let summary = out.join("summary.json");
    let first = std::fs::read(&summary).unwrap();
    for extra in [&[][..], &["--resume"][..]] {
        let again = run(extra);
        assert!(!again.status.success(), "{extra:?}");
        let e = String::from_utf8_lossy(&again.stderr);
        assert!(
            e.contains("holds a finished attack") && e.contains("--overwrite"),
            "{extra:?}: {e}"
        );
        assert_eq!(std::fs::read(&summary).unwrap(), first);
    }
    let replaced = run(&["--overwrite"]);
    assert!(replaced.status.success(), "{replaced:?}");
    assert!(summary.is_file());
}

/// A training run that holds its directory for several seconds (8 epochs of 11,000 images).
fn slow_training(run: &Path, data: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_bulwark"))
        .args([
            "train",
            "--epochs",
            "8",
            "--train-limit",
            "12000",
            "--test-limit",
            "100",
            "--run-dir",
            s(run),
            "--data-dir",
            s(data),
            "--no-progress",
        ])
        .env("BULWARK_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start bulwark train")
}

/// Waits until `file` in the run directory holds `text`.
fn wait_for(run: &Path, file: &str, text: &str) {
    let started = Instant::now();
    while std::fs::read_to_string(run.join(file)).map_or(true, |t| !t.contains(text)) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the run never wrote {text:?} into {file}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the run's lock file names its holder, i.e. the lock is taken.
fn wait_for_lock(run: &Path) {
    wait_for(run, "run.lock", "pid");
}

#[test]
fn one_run_directory_has_one_writer() {
    let tmp = tempfile::tempdir().unwrap();
    let data = mnist_dir();
    let run = tmp.path().join("run");

    let mut first = slow_training(&run, &data);
    wait_for_lock(&run);
    // A second training, or a resume, into the live run is refused and writes nothing.
    for extra in [&[][..], &["--resume"][..]] {
        let mut args = vec!["train", "--run-dir", s(&run), "--data-dir", s(&data)];
        args.extend(extra);
        let e = fails(&args);
        assert!(
            e.contains("is in use by another process") && e.contains("pid"),
            "{extra:?}: {e}"
        );
    }
    // Its `eval/` is its own final evaluation's directory.
    let w = weights(tmp.path());
    let e = fails(&eval_args(
        s(&w),
        s(&data),
        &["--eps", "0.1", "--out", s(&run.join("eval"))],
    ));
    assert!(e.contains("is in use by another process"), "{e}");
    let status = first.wait().unwrap();
    assert!(status.success(), "the first run failed: {status}");
    // Its results are whole: one metrics line per epoch, and its report.
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 8, "{metrics}");
    assert!(run.join("report.md").is_file());

    // The operating system releases the lock of a killed process: the run can be resumed.
    let killed = tmp.path().join("killed");
    let mut child = slow_training(&killed, &data);
    // Killed once it is training (its config.toml is written when training starts).
    wait_for(&killed, "config.toml", "epochs");
    child.kill().unwrap();
    child.wait().unwrap();
    let out = bulwark(&[
        "train",
        "--resume",
        "--run-dir",
        s(&killed),
        "--data-dir",
        s(&data),
        "--no-progress",
    ]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        !e.contains("in use"),
        "a dead process still holds the lock: {e}"
    );
    // Killed before its first checkpoint: the message says to start again, and how.
    if !out.status.success() {
        assert!(
            e.contains("nothing to resume")
                && e.contains("Start it again without --resume")
                && e.contains("--config"),
            "{e}"
        );
    }
}

#[test]
fn run_names_stay_inside_the_runs_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    for name in ["../escape", "a/b", "/abs", "", ".", ".."] {
        let e = fails(&["train", "--runs-dir", s(&runs), "--name", name]);
        assert!(e.contains("is not a plain run name"), "{name:?}: {e}");
    }
    assert!(!tmp.path().join("escape").exists());
    let e = fails(&["train", "--name", "x", "--run-dir", s(&runs)]);
    assert!(e.contains("cannot be used with"), "{e}");
}

#[test]
fn messages_tell_the_truth() {
    let tmp = tempfile::tempdir().unwrap();
    let data = mnist_dir();
    let run = tmp.path().join("run");

    // --stop-after-epoch 0 would stop before any checkpoint exists.
    let e = fails(&[
        "train",
        "--stop-after-epoch",
        "0",
        "--run-dir",
        s(&run),
        "--data-dir",
        s(&data),
    ]);
    assert!(e.contains("must be at least 1"), "{e}");
    assert!(!run.join("config.toml").exists(), "nothing written");

    // A run killed during epoch 1 left its configuration and no checkpoint.
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(run.join("config.toml"), "epochs = 1\n").unwrap();
    let e = fails(&["train", "--resume", "--run-dir", s(&run)]);
    assert!(
        e.contains("nothing to resume")
            && e.contains("Start it again without --resume")
            && e.contains(&format!("--config {}", run.join("config.toml").display())),
        "{e}"
    );

    // Each cause once: `path: No such file or directory` used to be followed by the same text.
    let e = fails(&[
        "eval",
        "--model",
        "small-cnn",
        "--weights",
        "/nonexistent/w.bpk",
    ]);
    assert_eq!(e.matches("No such file or directory").count(), 1, "{e}");

    // Evaluation and attack settings are not called a training configuration.
    let w = weights(tmp.path());
    for command in ["eval", "attack"] {
        let mut args = vec![
            command,
            "--model",
            "small-cnn",
            "--weights",
            s(&w),
            "--dataset",
            "imagenet",
        ];
        if command == "attack" {
            args.extend(["--eps", "0.1"]);
        }
        let e = fails(&args);
        assert!(
            e.contains("invalid value 'imagenet'") && e.contains("fashion-mnist"),
            "{command}: {e}"
        );
    }

    // Flags that would be ignored are refused.
    let w_s = s(&w);
    let e = fails(&eval_args(
        w_s,
        s(&data),
        &["--eps", "0.1", "--preset", "quick", "--attacks", "apgd-ce"],
    ));
    assert!(e.contains("cannot be used with"), "{e}");
    let e = fails(&eval_args(w_s, s(&data), &["--resume"]));
    assert!(e.contains("--eps"), "{e}");
    let e = fails(&eval_args(
        w_s,
        s(&data),
        &["--eps", "0.1", "--json", "x.json"],
    ));
    assert!(e.contains("cannot be used with"), "{e}");

    // An eps that covers the whole box gets a warning.
    let out = bulwark(&[
        "attack",
        "--model",
        "small-cnn",
        "--weights",
        w_s,
        "--attack",
        "fgsm",
        "--eps",
        "1e9",
        "--limit",
        "4",
        "--data-dir",
        s(&data),
        "--out",
        s(&tmp.path().join("huge")),
        "--no-progress",
    ]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{e}");
    assert!(
        e.contains("WARN") && e.contains("says nothing about robustness"),
        "{e}"
    );
}

#[test]
fn offline_fetch_runs_no_package_manager() {
    let tmp = tempfile::tempdir().unwrap();
    // Stand-ins for the package managers that record being run.
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let marker = tmp.path().join("ran");
    for tool in ["apt-get", "pip", "python3"] {
        let path = bin.join(tool);
        std::fs::write(
            &path,
            format!("#!/bin/sh\necho \"$0\" >> {}\nexit 1\n", marker.display()),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out = Command::new(env!("CARGO_BIN_EXE_bulwark"))
        .args(["data", "fetch", "fashion-mnist", "--offline"])
        .env("BULWARK_LOG", "warn")
        .env("BULWARK_CACHE_DIR", tmp.path().join("cache"))
        .env_remove("BULWARK_DATA_DIR")
        .env("PATH", &bin)
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{e}");
    assert!(
        e.contains("download: disabled") && e.contains("package registries: disabled"),
        "{e}"
    );
    assert!(!marker.exists(), "a package manager ran");
}

#[test]
fn non_finite_weights_are_refused_in_every_format() {
    let tmp = tempfile::tempdir().unwrap();
    let device = burn::tensor::Device::flex();
    struct Poison;
    impl ModuleMapper for Poison {
        fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
            p.map(|t| t.mul_scalar(f32::NAN))
        }
    }
    let nan = Model::init_seeded("small-cnn", &device, 0)
        .unwrap()
        .map(&mut Poison);
    let path = tmp.path().join("nan.bpk");
    nan.save_file(&path).unwrap();
    let e = bpk::load_bpk(Model::init("small-cnn", &device).unwrap(), &path)
        .unwrap_err()
        .to_string();
    assert!(e.contains("non-finite"), "{e}");
    let data = mnist_dir();
    let e = fails(&eval_args(s(&path), s(&data), &[]));
    assert!(e.contains("non-finite") && e.contains("nan.bpk"), "{e}");
}

#[test]
fn export_writes_the_same_bytes_for_the_same_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let w = weights(tmp.path());
    for ext in ["safetensors", "bpk"] {
        let out = |name: &str| {
            let to = tmp.path().join(format!("{name}.{ext}"));
            ok(&[
                "export",
                "--model",
                "small-cnn",
                "--from",
                s(&w),
                "--to",
                s(&to),
            ]);
            std::fs::read(to).unwrap()
        };
        let (a, b) = (out("a"), out("b"));
        assert!(a == b, "two exports to .{ext} differ");
    }
}

/// The same configuration on the same machine with the same thread count gives bit-identical
/// weights and metrics (docs/training.md states what varies across machines).
#[test]
fn training_is_bit_identical_on_one_machine_and_thread_count() {
    let tmp = tempfile::tempdir().unwrap();
    let data = mnist_dir();
    let train = |name: &str| {
        let run = tmp.path().join(name);
        let out = Command::new(env!("CARGO_BIN_EXE_bulwark"))
            .args([
                "train",
                "--method",
                "fgsm-rs",
                "--eps",
                "0.1",
                "--epochs",
                "2",
                "--train-limit",
                "3000",
                "--valid-size",
                "500",
                "--test-limit",
                "200",
                "--run-dir",
                s(&run),
                "--data-dir",
                s(&data),
                "--no-progress",
            ])
            .env("BULWARK_LOG", "warn")
            .env("RAYON_NUM_THREADS", "2")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let weights = std::fs::read(run.join("model.safetensors")).unwrap();
        let report = read_json(&run.join("report.json"));
        // Everything but the wall-clock and memory readings.
        let metrics: Vec<serde_json::Value> = report["epochs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let mut e = e.clone();
                for k in ["seconds", "images_per_sec", "rss_mib"] {
                    e.as_object_mut().unwrap().remove(k);
                }
                e
            })
            .collect();
        (weights, metrics)
    };
    let (w1, m1) = train("first");
    let (w2, m2) = train("second");
    assert_eq!(m1, m2);
    assert!(w1 == w2, "the two runs' weights differ");
}
