//! Expected SHA-256 digests and the hashing helpers that check them.
//!
//! Digests are of the DECOMPRESSED files: mirrors re-compress the `.gz` wrappers, so only the
//! raw IDX bytes have a stable hash.

use std::io::{Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{DataError, Result};
use crate::mnist::{DatasetKind, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS};

/// One file a fetch must produce: its canonical (uncompressed) name and the SHA-256 of its
/// uncompressed bytes, lowercase hex.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectedFile {
    /// Canonical name, e.g. `t10k-labels-idx1-ubyte`.
    pub name: String,
    /// Lowercase hex SHA-256 of the uncompressed content.
    pub sha256: String,
    /// How many images or labels the file holds, when known (the official files): lets a
    /// checksum mismatch say that a file is short or long ([`crate::diagnose`]).
    pub items: Option<usize>,
}

/// The set of files a fetch must produce, with their digests.
///
/// [`ExpectedFiles::official`] is the table of the published datasets. Other tables (a subset
/// of the files, or slices with their own digests) are for tests and custom mirrors; see
/// [`crate::fetch_with`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectedFiles {
    /// The files, in the order they are fetched.
    pub files: Vec<ExpectedFile>,
}

const MNIST_SHA256: [(&str, &str); 4] = [
    (
        TRAIN_IMAGES,
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    ),
    (
        TRAIN_LABELS,
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    ),
    (
        TEST_IMAGES,
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    ),
    (
        TEST_LABELS,
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    ),
];

const FASHION_MNIST_SHA256: [(&str, &str); 4] = [
    (
        TRAIN_IMAGES,
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    ),
    (
        TRAIN_LABELS,
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    ),
    (
        TEST_IMAGES,
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    ),
    (
        TEST_LABELS,
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    ),
];

impl ExpectedFiles {
    /// The four files of the published dataset and their SHA-256 digests.
    pub fn official(kind: DatasetKind) -> Self {
        let table = match kind {
            DatasetKind::Mnist => &MNIST_SHA256,
            DatasetKind::FashionMnist => &FASHION_MNIST_SHA256,
        };
        let mut files = Self::new(table);
        for f in &mut files.files {
            f.items = Some(if f.name.starts_with("train") {
                60_000
            } else {
                10_000
            });
        }
        files
    }

    /// A table from `(canonical name, sha256 hex)` pairs.
    pub fn new(pairs: &[(&str, &str)]) -> Self {
        Self {
            files: pairs
                .iter()
                .map(|(name, sha)| ExpectedFile {
                    name: name.to_string(),
                    sha256: sha.to_ascii_lowercase(),
                    items: None,
                })
                .collect(),
        }
    }

    /// The canonical names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.files.iter().map(|f| f.name.as_str()).collect()
    }
}

/// Lowercase hex of a digest.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of a byte slice, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The workspace's content hash: SHA-256 over `parts` in order, lowercase hex. Run identities,
/// resume keys and data fingerprints use it (include separators in the parts where two
/// different splits of the same bytes must differ).
///
/// ```
/// use bulwark_data::{content_hash, sha256_hex};
/// assert_eq!(content_hash([&b"ab"[..], b"c"]), sha256_hex(b"abc"));
/// ```
pub fn content_hash<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hex(&hasher.finalize())
}

/// SHA-256 of a file's bytes as stored (no decompression), lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| DataError::io(path, "open", e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| DataError::io(path, "read", e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// A writer that hashes and counts everything written through it.
pub(crate) struct HashingWriter<W: Write> {
    pub(crate) inner: W,
    pub(crate) hasher: Sha256,
    pub(crate) written: u64,
    /// Set when the inner writer failed, so callers can tell write errors from read errors.
    pub(crate) write_failed: bool,
}

impl<W: Write> HashingWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            written: 0,
            write_failed: false,
        }
    }

    /// The hex digest of everything written so far.
    pub(crate) fn hex_digest(&self) -> String {
        hex(&self.hasher.clone().finalize())
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self
            .inner
            .write(buf)
            .inspect_err(|_| self.write_failed = true)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush().inspect_err(|_| self.write_failed = true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digest() {
        // SHA-256("abc") from FIPS 180-2.
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"ab").unwrap();
        w.write_all(b"c").unwrap();
        assert_eq!(w.hex_digest(), sha256_hex(b"abc"));
        assert_eq!(w.written, 3);
    }

    #[test]
    fn official_tables_are_complete() {
        for kind in DatasetKind::ALL {
            let t = ExpectedFiles::official(kind);
            assert_eq!(t.names(), crate::mnist::FILE_NAMES.to_vec());
            assert!(t.files.iter().all(|f| f.sha256.len() == 64));
        }
    }
}
