//! `cargo xtask gpu-check`: the `wgpu` backend on this machine's first adapter, in one report.
//!
//! Three steps, each logged to its own file and run even when an earlier one failed:
//! 1. the GPU test set (`crates/trainer/tests/integration/gpu.rs`, wgpu against flex; the CIFAR
//!    models included, as in CI);
//! 2. the throughput benchmark on wgpu (clean, PGD-10 and the PGD-AT step of small-cnn and
//!    madry-cnn at batch 128 with the matrix-multiply rate, and PGD-10 and the PGD-AT step at
//!    batch 1024);
//! 3. a short adversarial training with its final evaluation (`docs/performance/gpu-smoke.toml`:
//!    PGD-AT on small-cnn, 2 epochs on 20,000 MNIST images, PGD-20 and the quick cascade on 2,000
//!    test images).
//!
//! `report.md` in the output directory gathers the machine, the commit, each step's status and
//! time, the test set's measured gaps, the benchmark's table and the training's results. The task
//! fails when a step failed, after writing the report. `--quick` makes every step small enough
//! for a software GPU (Mesa's lavapipe), which is how this task itself is checked without a GPU.

use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::{bulwark, cargo, features, root, shared_data, timestamp, vulkan_available};

/// One step's outcome.
struct Step {
    title: &'static str,
    command: String,
    log: PathBuf,
    passed: bool,
    seconds: f64,
}

/// Runs `cmd` with its output in `log`, saying what it runs and where its output goes.
fn step(title: &'static str, mut cmd: Command, log: PathBuf) -> Result<Step> {
    let command = format!("{cmd:?}");
    eprintln!("== {title}\n+ {command}\n  (output: {})", log.display());
    let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    cmd.stdout(Stdio::from(out.try_clone()?))
        .stderr(Stdio::from(out));
    let start = Instant::now();
    let status = cmd
        .status()
        .with_context(|| format!("starting {command}"))?;
    let step = Step {
        title,
        command,
        log,
        passed: status.success(),
        seconds: start.elapsed().as_secs_f64(),
    };
    eprintln!(
        "   {} in {:.0} s",
        if step.passed { "passed" } else { "FAILED" },
        step.seconds
    );
    Ok(step)
}

/// The output of an informational command, or why there is none.
fn probe(program: &str, args: &[&str]) -> String {
    match Command::new(program).args(args).output() {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        Ok(o) => format!(
            "`{program}` failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => format!("`{program}` is not available ({e})"),
    }
}

/// The lines of `log` that hold a measurement or a verdict: the test set's gaps and results, the
/// benchmark's table, the run's final numbers.
fn measured_lines(log: &Path, keep: impl Fn(&str) -> bool) -> String {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| keep(l))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs the three steps into `out` and writes `out/report.md`.
pub(crate) fn run(out: Option<PathBuf>, quick: bool) -> Result<()> {
    if !vulkan_available() {
        bail!(
            "the GPU check needs the Vulkan loader and a Vulkan driver (a GPU vendor's, or Mesa's \
             lavapipe: Debian `apt-get install libvulkan1 mesa-vulkan-drivers`)"
        );
    }
    // SAFETY: xtask is single-threaded; cargo processes started below read it.
    unsafe { std::env::set_var("BULWARK_WGPU", "1") };
    // The GPU backends are built without burn's autotuning; should a dependency turn it on
    // (features unify), on a software GPU it would cost more than the work it tunes, in the
    // tests, the benchmark and the training alike; on a real one it is left to cubecl's default.
    if quick && std::env::var_os("CUBECL_AUTOTUNE_LEVEL").is_none() {
        // SAFETY: as above.
        unsafe { std::env::set_var("CUBECL_AUTOTUNE_LEVEL", "minimal") };
    }
    let out = out.unwrap_or_else(|| root().join("target/gpu-check"));
    let stamp = timestamp();
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let out = out.canonicalize()?;
    let features = features();
    let mut steps = Vec::new();

    // 1. The GPU test set.
    let mut tests = cargo();
    tests
        .args(["test", "--workspace", "--features", &features])
        .args(["--test", "integration", "gpu::", "--"])
        .args(["--test-threads", "1", "--nocapture"]);
    steps.push(step(
        "GPU test set (wgpu against flex)",
        tests,
        out.join("tests.log"),
    )?);

    // 2. The throughput benchmark.
    let mut bench = bulwark()?;
    bench.args(["bench", "throughput", "--backend-list", "wgpu", "--json"]);
    if quick {
        bench
            .arg(out.join(format!("bench-b32-{stamp}.json")))
            .args(["--batch", "32", "--repeats", "1", "--models", "small-cnn"])
            .args(["--workloads", "clean,pgd-10,pgd-at-step", "--matmul", "512"]);
    } else {
        bench
            .arg(out.join(format!("bench-b128-{stamp}.json")))
            .args(["--models", "small-cnn,madry-cnn", "--repeats", "3"])
            .args(["--workloads", "clean,pgd-10,pgd-at-step"]);
    }
    let title = if quick {
        "throughput, batch 32"
    } else {
        "throughput, batch 128"
    };
    steps.push(step(title, bench, out.join("bench.log"))?);
    if !quick {
        let mut large = bulwark()?;
        large
            .args(["bench", "throughput", "--backend-list", "wgpu", "--json"])
            .arg(out.join(format!("bench-b1024-{stamp}.json")))
            .args(["--batch", "1024", "--models", "small-cnn,madry-cnn"])
            .args([
                "--workloads",
                "pgd-10,pgd-at-step",
                "--repeats",
                "3",
                "--matmul",
                "0",
            ]);
        steps.push(step(
            "throughput, batch 1024",
            large,
            out.join("bench-1024.log"),
        )?);
    }

    // 3. A short adversarial training with its final evaluation.
    let name = format!("gpu-check-{stamp}");
    let mut train = bulwark()?;
    train
        .args([
            "--backend",
            "wgpu",
            "train",
            "--config",
            "docs/performance/gpu-smoke.toml",
        ])
        .args(["--name", &name, "--no-progress", "--runs-dir"])
        .arg(out.join("runs"));
    if quick {
        train.args([
            "--train-limit",
            "1500",
            "--valid-size",
            "500",
            "--test-limit",
            "200",
        ]);
        train.args(["--epochs", "1"]);
    } else {
        train.args(["--train-limit", "21000"]);
    }
    if std::env::var_os("BULWARK_DATA_DIR").is_none()
        && let Some(dir) = shared_data("mnist")
    {
        train.arg("--data-dir").arg(dir);
    }
    steps.push(step(
        "PGD-AT training and evaluation on wgpu",
        train,
        out.join("train.log"),
    )?);

    let report = report(&out, &name, &steps, quick)?;
    let path = out.join("report.md");
    std::fs::write(&path, report).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("report: {}", path.display());
    let failed: Vec<_> = steps
        .iter()
        .filter(|s| !s.passed)
        .map(|s| s.title)
        .collect();
    if !failed.is_empty() {
        bail!("the GPU check failed: {}", failed.join("; "));
    }
    Ok(())
}

/// The report: machine, commit, steps, and each step's measurements.
fn report(out: &Path, run_name: &str, steps: &[Step], quick: bool) -> Result<String> {
    let git = |args: &[&str]| {
        let mut c = Command::new("git");
        c.current_dir(root()).args(args);
        c.output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "(not a git checkout)".into())
    };
    let dirty = !git(&["status", "--porcelain", "--untracked-files=no"]).is_empty();
    let mut r = String::new();
    writeln!(r, "# GPU check{}\n", if quick { " (quick)" } else { "" })?;
    writeln!(r, "- date (UTC): {}", timestamp())?;
    writeln!(
        r,
        "- commit: {}{}",
        git(&["rev-parse", "HEAD"]),
        if dirty {
            " with uncommitted changes"
        } else {
            ""
        }
    )?;
    writeln!(
        r,
        "- command: `cargo xtask gpu-check{}`",
        if quick { " --quick" } else { "" }
    )?;
    writeln!(
        r,
        "- CPU: {} logical cores",
        std::thread::available_parallelism()?
    )?;
    writeln!(
        r,
        "\nGPUs (`nvidia-smi -L`):\n\n```text\n{}\n```",
        probe("nvidia-smi", &["-L"])
    )?;
    writeln!(
        r,
        "\nVulkan devices (`vulkaninfo --summary`, the first is the one used):\n\n```text\n{}\n```",
        vulkan_devices(&probe("vulkaninfo", &["--summary"]))
    )?;
    writeln!(
        r,
        "\n## Steps\n\n| step | result | seconds | log |\n|---|---|---|---|"
    )?;
    for s in steps {
        writeln!(
            r,
            "| {} | {} | {:.0} | {} |",
            s.title,
            if s.passed { "passed" } else { "**FAILED**" },
            s.seconds,
            s.log.strip_prefix(out).unwrap_or(&s.log).display()
        )?;
    }
    for s in steps {
        writeln!(r, "\n## {}\n\n`{}`\n", s.title, s.command)?;
        let lines = if s.title.starts_with("GPU test set") {
            measured_lines(&s.log, |l| {
                l.contains(" differ")
                    || l.contains("logits")
                    || l.contains("weights")
                    || l.starts_with("test ")
                    || l.starts_with("test result")
            })
        } else if s.title.starts_with("throughput") {
            measured_lines(&s.log, |l| {
                l.starts_with("backend") || l.starts_with("wgpu") || l.starts_with("results")
            })
        } else {
            let report = out.join("runs").join(run_name).join("report.md");
            writeln!(r, "The run's report: `{}`\n", report.display())?;
            let all = measured_lines(&s.log, |l| !l.trim().is_empty());
            let lines: Vec<&str> = all.lines().collect();
            lines[lines.len().saturating_sub(40)..].join("\n")
        };
        writeln!(r, "```text\n{lines}\n```")?;
    }
    Ok(r)
}

/// `vulkaninfo --summary` without its long header: the devices' names, types and drivers.
fn vulkan_devices(summary: &str) -> String {
    let keep = [
        "GPU",
        "deviceName",
        "deviceType",
        "driverName",
        "driverInfo",
        "apiVersion",
    ];
    let lines: Vec<&str> = summary
        .lines()
        .filter(|l| keep.iter().any(|k| l.trim_start().starts_with(k)))
        .collect();
    if lines.is_empty() {
        summary.to_string()
    } else {
        lines.join("\n")
    }
}
