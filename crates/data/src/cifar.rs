//! CIFAR-10 and CIFAR-100, binary versions: readers and the (manual) way to provide them.
//!
//! A CIFAR-10 batch file is a sequence of 3073-byte records: one label byte (0-9), then 3072
//! pixel bytes, the 1024 red values, then the 1024 green, then the 1024 blue, each plane row-major
//! 32x32. A CIFAR-100 record has two label bytes, the coarse (20 superclasses) then the fine
//! label (100 classes), then the same 3072 pixel bytes; Bulwark uses the fine label, as the
//! robustness literature does. The pixels are already in CHW order, so records map directly onto
//! [`ImageDataset`].
//!
//! Neither is available from the package registries this project can reach, so there is no
//! automatic download: [`fetch_cifar`] only finds files the user placed.

use std::path::{Path, PathBuf};

use crate::dataset::ImageDataset;
use crate::error::{DataError, Result};
use crate::fetch::FetchOptions;
use crate::mnist::Split;

/// Pixels per image: 3 channels of 32x32.
const PIXELS: usize = 3 * 32 * 32;
/// Bytes per CIFAR-10 record: one label byte and the pixels.
pub const RECORD_BYTES: usize = 1 + PIXELS;
/// The training batch files of the CIFAR-10 binary version.
pub const TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
/// The test batch file of the CIFAR-10 binary version.
pub const TEST_FILE: &str = "test_batch.bin";
/// The folder the official CIFAR-10 archive extracts to.
pub const ARCHIVE_DIR: &str = "cifar-10-batches-bin";
/// Cache sub-folder where [`fetch_cifar10`] also looks for user-placed files.
pub const CACHE_NAME: &str = "cifar-10";

/// What the user has to do to get CIFAR-10, used in every "not found" error.
pub const CIFAR10_HELP: &str = "CIFAR-10 cannot be fetched automatically: it is not obtainable from the package registries this project can use. Download the CIFAR-10 binary version (cifar-10-binary.tar.gz, from https://www.cs.toronto.edu/~kriz/cifar.html), extract it, and pass the extracted folder (cifar-10-batches-bin, holding data_batch_1.bin to data_batch_5.bin and test_batch.bin) or its parent as the data directory (--data-dir or BULWARK_DATA_DIR).";

/// What the user has to do to get CIFAR-100, used in every "not found" error.
pub const CIFAR100_HELP: &str = "CIFAR-100 cannot be fetched automatically: it is not obtainable from the package registries this project can use. Download the CIFAR-100 binary version (cifar-100-binary.tar.gz, from https://www.cs.toronto.edu/~kriz/cifar.html), extract it, and pass the extracted folder (cifar-100-binary, holding train.bin and test.bin) or its parent as the data directory (--data-dir or BULWARK_DATA_DIR).";

/// Which CIFAR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cifar {
    /// CIFAR-10: 10 classes, five training batches and a test batch.
    Ten,
    /// CIFAR-100: 100 fine classes, `train.bin` and `test.bin`.
    Hundred,
}

impl Cifar {
    /// `CIFAR-10` or `CIFAR-100`.
    pub fn name(self) -> &'static str {
        match self {
            Cifar::Ten => "CIFAR-10",
            Cifar::Hundred => "CIFAR-100",
        }
    }

    /// Number of classes (CIFAR-100: the fine labels).
    pub fn num_classes(self) -> usize {
        match self {
            Cifar::Ten => 10,
            Cifar::Hundred => 100,
        }
    }

    /// Label bytes before each record's pixels.
    fn label_bytes(self) -> usize {
        match self {
            Cifar::Ten => 1,
            Cifar::Hundred => 2,
        }
    }

    /// Bytes per record.
    pub fn record_bytes(self) -> usize {
        self.label_bytes() + PIXELS
    }

    /// The batch file names of a split.
    pub fn files(self, split: Split) -> Vec<&'static str> {
        match (self, split) {
            (Cifar::Ten, Split::Train) => TRAIN_FILES.to_vec(),
            (Cifar::Ten, Split::Test) => vec![TEST_FILE],
            (Cifar::Hundred, Split::Train) => vec!["train.bin"],
            (Cifar::Hundred, Split::Test) => vec!["test.bin"],
        }
    }

    /// The folder the official archive extracts to.
    pub fn archive_dir(self) -> &'static str {
        match self {
            Cifar::Ten => ARCHIVE_DIR,
            Cifar::Hundred => "cifar-100-binary",
        }
    }

    /// Cache sub-folder where [`fetch_cifar`] also looks for user-placed files.
    pub fn cache_name(self) -> &'static str {
        match self {
            Cifar::Ten => CACHE_NAME,
            Cifar::Hundred => "cifar-100",
        }
    }

    fn help(self) -> &'static str {
        match self {
            Cifar::Ten => CIFAR10_HELP,
            Cifar::Hundred => CIFAR100_HELP,
        }
    }
}

/// Parses an in-memory CIFAR-10 binary batch; `name` identifies it in error messages.
pub fn parse_cifar10_batch(bytes: &[u8], name: &str) -> Result<ImageDataset> {
    parse_cifar_batch(Cifar::Ten, bytes, name)
}

/// Parses an in-memory CIFAR-10 or CIFAR-100 binary batch; `name` identifies it in error
/// messages.
pub fn parse_cifar_batch(kind: Cifar, bytes: &[u8], name: &str) -> Result<ImageDataset> {
    let (record_bytes, label_bytes) = (kind.record_bytes(), kind.label_bytes());
    let dataset = kind.name();
    if bytes.is_empty() {
        return Err(DataError::format(
            name,
            format!("empty file: a {dataset} batch holds {record_bytes}-byte records"),
        ));
    }
    if !bytes.len().is_multiple_of(record_bytes) {
        return Err(DataError::format(
            name,
            format!(
                "length {} is not a multiple of the {record_bytes}-byte {dataset} record ({label_bytes} label byte(s) + 3072 pixel bytes): {} whole records and {} extra bytes; the file is truncated or not a {dataset} binary batch (the Python pickle version is not supported)",
                bytes.len(),
                bytes.len() / record_bytes,
                bytes.len() % record_bytes
            ),
        ));
    }
    let n = bytes.len() / record_bytes;
    let mut images = Vec::with_capacity(n * PIXELS);
    let mut labels = Vec::with_capacity(n);
    for (i, record) in bytes.chunks_exact(record_bytes).enumerate() {
        // CIFAR-100: the fine label is the second byte.
        let label = record[label_bytes - 1];
        if usize::from(label) >= kind.num_classes() {
            let hint = match kind {
                Cifar::Ten => " (is this a CIFAR-100 file?)",
                Cifar::Hundred => "",
            };
            return Err(DataError::format(
                name,
                format!(
                    "record {i} has label {label}, but {dataset} labels are 0-{}{hint}",
                    kind.num_classes() - 1
                ),
            ));
        }
        labels.push(label);
        images.extend_from_slice(&record[label_bytes..]);
    }
    ImageDataset::new(images, labels, 3, 32, 32, kind.num_classes())
}

/// Reads a CIFAR-10 binary batch file (e.g. `data_batch_1.bin`).
pub fn read_cifar10_batch(path: &Path) -> Result<ImageDataset> {
    read_cifar_batch(Cifar::Ten, path)
}

/// Reads a CIFAR-10 or CIFAR-100 binary batch file.
pub fn read_cifar_batch(kind: Cifar, path: &Path) -> Result<ImageDataset> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, "read", e))?;
    parse_cifar_batch(kind, &bytes, &path.display().to_string())
}

/// The CIFAR-10 batch file names of a split.
pub fn split_files(split: Split) -> Vec<&'static str> {
    Cifar::Ten.files(split)
}

/// Files of `names` missing from `dir`.
fn missing_in(dir: &Path, names: &[&str]) -> Vec<String> {
    names
        .iter()
        .filter(|n| !dir.join(n).is_file())
        .map(|n| n.to_string())
        .collect()
}

/// `dir` or `dir/<archive dir>`, whichever holds all of `names`.
fn resolve(kind: Cifar, dir: &Path, names: &[&str]) -> std::result::Result<PathBuf, Vec<String>> {
    let nested = dir.join(kind.archive_dir());
    let missing = missing_in(dir, names);
    if missing.is_empty() {
        return Ok(dir.to_path_buf());
    }
    if missing_in(&nested, names).is_empty() {
        return Ok(nested);
    }
    Err(missing)
}

/// Loads a CIFAR-10 split from `dir` or `dir/cifar-10-batches-bin`: the five
/// `data_batch_N.bin` files for [`Split::Train`], `test_batch.bin` for [`Split::Test`].
pub fn load_cifar10(dir: &Path, split: Split) -> Result<ImageDataset> {
    load_cifar(Cifar::Ten, dir, split)
}

/// Loads a split of CIFAR-10 or CIFAR-100 from `dir` or the archive's folder inside it
/// (`cifar-10-batches-bin`, `cifar-100-binary`).
pub fn load_cifar(kind: Cifar, dir: &Path, split: Split) -> Result<ImageDataset> {
    let names = kind.files(split);
    let root = resolve(kind, dir, &names).map_err(|missing| DataError::CifarUnavailable {
        dataset: kind.name().to_string(),
        dir: dir.to_path_buf(),
        split: split.name().to_string(),
        missing,
        help: kind.help().to_string(),
    })?;
    let mut all: Option<ImageDataset> = None;
    for name in names {
        let part = read_cifar_batch(kind, &root.join(name))?;
        all = Some(match all {
            None => part,
            Some(acc) => acc.concat(&part)?,
        });
    }
    // `names` is never empty, so `all` is set; the fallback only keeps this panic-free.
    all.ok_or_else(|| DataError::InvalidArgument(format!("no {} batch files to load", kind.name())))
}

/// Finds a user-provided CIFAR-10 binary version; it is never downloaded. See [`fetch_cifar`].
pub fn fetch_cifar10(opts: &FetchOptions) -> Result<PathBuf> {
    fetch_cifar(Cifar::Ten, opts)
}

/// Finds a user-provided CIFAR-10 or CIFAR-100 binary version; it is never downloaded.
///
/// Looks in `opts.data_dir` (or the archive's folder inside it), then in
/// `<cache_dir>/cifar-10` (`cifar-100`). Returns the folder holding all batch files, or an error
/// that lists the expected file names and says where to get them.
pub fn fetch_cifar(kind: Cifar, opts: &FetchOptions) -> Result<PathBuf> {
    let all: Vec<&str> = kind
        .files(Split::Train)
        .into_iter()
        .chain(kind.files(Split::Test))
        .collect();
    let dir = match &opts.data_dir {
        Some(d) => d.clone(),
        None => opts.cache_dir.join(kind.cache_name()),
    };
    match resolve(kind, &dir, &all) {
        Ok(found) => {
            tracing::info!("{}: using {}", kind.name(), found.display());
            Ok(found)
        }
        Err(missing) => Err(DataError::CifarUnavailable {
            dataset: kind.name().to_string(),
            dir,
            split: "train and test".to_string(),
            missing,
            help: kind.help().to_string(),
        }),
    }
}
