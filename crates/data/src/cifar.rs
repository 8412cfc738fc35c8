//! CIFAR-10, binary version: reader and the (manual) way to provide it.
//!
//! A batch file is a sequence of 3073-byte records: one label byte (0-9), then 3072 pixel bytes,
//! the 1024 red values, then the 1024 green, then the 1024 blue, each plane row-major 32x32.
//! That is already CHW order, so records map directly onto [`ImageDataset`].
//!
//! CIFAR-10 is not available from the package registries this project can reach, so there is
//! no automatic download: [`fetch_cifar10`] only finds files the user placed.

use std::path::{Path, PathBuf};

use crate::dataset::ImageDataset;
use crate::error::{DataError, Result};
use crate::fetch::FetchOptions;
use crate::mnist::Split;

/// Pixels per image: 3 channels of 32x32.
const PIXELS: usize = 3 * 32 * 32;
/// Bytes per record: one label byte and the pixels.
pub const RECORD_BYTES: usize = 1 + PIXELS;
/// The training batch files of the binary version.
pub const TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
/// The test batch file of the binary version.
pub const TEST_FILE: &str = "test_batch.bin";
/// The folder the official archive extracts to.
pub const ARCHIVE_DIR: &str = "cifar-10-batches-bin";
/// Cache sub-folder where [`fetch_cifar10`] also looks for user-placed files.
pub const CACHE_NAME: &str = "cifar-10";

/// What the user has to do to get CIFAR-10, used in every "not found" error.
pub const CIFAR10_HELP: &str = "CIFAR-10 cannot be fetched automatically: it is not obtainable from the package registries this project can use. Download the CIFAR-10 binary version (cifar-10-binary.tar.gz, from https://www.cs.toronto.edu/~kriz/cifar.html), extract it, and pass the extracted folder (cifar-10-batches-bin, holding data_batch_1.bin to data_batch_5.bin and test_batch.bin) or its parent as the data directory (--data-dir or BULWARK_DATA_DIR).";

/// Parses an in-memory CIFAR-10 binary batch; `name` identifies it in error messages.
pub fn parse_cifar10_batch(bytes: &[u8], name: &str) -> Result<ImageDataset> {
    if bytes.is_empty() {
        return Err(DataError::format(
            name,
            "empty file: a CIFAR-10 batch holds 3073-byte records",
        ));
    }
    if !bytes.len().is_multiple_of(RECORD_BYTES) {
        return Err(DataError::format(
            name,
            format!(
                "length {} is not a multiple of the {RECORD_BYTES}-byte CIFAR-10 record (1 label byte + 3072 pixel bytes): {} whole records and {} extra bytes; the file is truncated or not a CIFAR-10 binary batch (the Python pickle version is not supported)",
                bytes.len(),
                bytes.len() / RECORD_BYTES,
                bytes.len() % RECORD_BYTES
            ),
        ));
    }
    let n = bytes.len() / RECORD_BYTES;
    let mut images = Vec::with_capacity(n * PIXELS);
    let mut labels = Vec::with_capacity(n);
    for (i, record) in bytes.chunks_exact(RECORD_BYTES).enumerate() {
        let label = record[0];
        if label >= 10 {
            return Err(DataError::format(
                name,
                format!(
                    "record {i} has label {label}, but CIFAR-10 labels are 0-9 (is this a CIFAR-100 file?)"
                ),
            ));
        }
        labels.push(label);
        images.extend_from_slice(&record[1..]);
    }
    Ok(ImageDataset {
        images,
        labels,
        channels: 3,
        height: 32,
        width: 32,
        num_classes: 10,
    })
}

/// Reads a CIFAR-10 binary batch file (e.g. `data_batch_1.bin`).
pub fn read_cifar10_batch(path: &Path) -> Result<ImageDataset> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, "read", e))?;
    parse_cifar10_batch(&bytes, &path.display().to_string())
}

/// The batch file names of a split.
pub fn split_files(split: Split) -> Vec<&'static str> {
    match split {
        Split::Train => TRAIN_FILES.to_vec(),
        Split::Test => vec![TEST_FILE],
    }
}

/// Files of `names` missing from `dir`.
fn missing_in(dir: &Path, names: &[&str]) -> Vec<String> {
    names
        .iter()
        .filter(|n| !dir.join(n).is_file())
        .map(|n| n.to_string())
        .collect()
}

/// `dir` or `dir/cifar-10-batches-bin`, whichever holds all of `names`.
fn resolve(dir: &Path, names: &[&str]) -> std::result::Result<PathBuf, Vec<String>> {
    let nested = dir.join(ARCHIVE_DIR);
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
    let names = split_files(split);
    let root = resolve(dir, &names).map_err(|missing| DataError::CifarUnavailable {
        dir: dir.to_path_buf(),
        split: split.name().to_string(),
        missing,
        help: CIFAR10_HELP.to_string(),
    })?;
    let mut all: Option<ImageDataset> = None;
    for name in names {
        let part = read_cifar10_batch(&root.join(name))?;
        all = Some(match all {
            None => part,
            Some(acc) => acc.concat(&part)?,
        });
    }
    // `names` is never empty, so `all` is set; the fallback only keeps this panic-free.
    all.ok_or_else(|| DataError::InvalidArgument("no CIFAR-10 batch files to load".into()))
}

/// Finds a user-provided CIFAR-10 binary version; it is never downloaded.
///
/// Looks in `opts.data_dir` (or its `cifar-10-batches-bin` sub-folder), then in
/// `<cache_dir>/cifar-10`. Returns the folder holding all six batch files, or an error that
/// lists the expected file names and says where to get them.
pub fn fetch_cifar10(opts: &FetchOptions) -> Result<PathBuf> {
    let all: Vec<&str> = TRAIN_FILES.iter().copied().chain([TEST_FILE]).collect();
    let dir = match &opts.data_dir {
        Some(d) => d.clone(),
        None => opts.cache_dir.join(CACHE_NAME),
    };
    match resolve(&dir, &all) {
        Ok(found) => {
            tracing::info!("CIFAR-10: using {}", found.display());
            Ok(found)
        }
        Err(missing) => Err(DataError::CifarUnavailable {
            dir,
            split: "train and test".to_string(),
            missing,
            help: CIFAR10_HELP.to_string(),
        }),
    }
}
