//! The committed MNIST test slice (the first 256 test images, `tests/fixtures/mnist`), built into
//! the library so that a program needs no data directory to have real images at hand: `bulwark
//! bench throughput` times its MNIST-shaped models on them from any working directory.
//!
//! MNIST is by Yann LeCun and Corinna Cortes, under CC BY-SA 3.0 (`tests/fixtures/mnist/LICENSE`).

use std::path::Path;

use crate::checksums::sha256_hex;
use crate::dataset::ImageDataset;
use crate::error::{DataError, Result};
use crate::idx::{gunzip, parse_idx};

const IMAGES_GZ: &[u8] = include_bytes!("../tests/fixtures/mnist/t10k-images-idx3-ubyte.gz");
const LABELS_GZ: &[u8] = include_bytes!("../tests/fixtures/mnist/t10k-labels-idx1-ubyte.gz");

/// SHA-256 of the decompressed slice files (tests/fixtures/README.md).
const IMAGES_SHA256: &str = "d13186a8171483437b6a936d3a0131b2bb83cc7008923c4be04f42b173a18935";
const LABELS_SHA256: &str = "7b7f0b73a7c9b36bc8377eb426dd6f4a2b668c90185f8f8f4175105f0d84fb0f";

/// Images in [`mnist_test_slice`].
pub const MNIST_TEST_SLICE_LEN: usize = 256;

/// The first 256 images and labels of MNIST's test split, from the copy built into the library
/// (checksummed on every call).
///
/// ```
/// let slice = bulwark_data::mnist_test_slice().unwrap();
/// assert_eq!(slice.len(), bulwark_data::MNIST_TEST_SLICE_LEN);
/// assert_eq!((slice.channels, slice.height, slice.width), (1, 28, 28));
/// assert_eq!(slice.labels[..3], [7, 2, 1]);
/// ```
pub fn mnist_test_slice() -> Result<ImageDataset> {
    let read = |gz: &[u8], name: &str, sha: &str| -> Result<Vec<u8>> {
        let bytes = gunzip(gz, Path::new(name))?;
        if sha256_hex(&bytes) != sha {
            return Err(DataError::format(
                name,
                "the built-in MNIST test slice does not match its checksum",
            ));
        }
        Ok(bytes)
    };
    let images = parse_idx(
        &read(
            IMAGES_GZ,
            "t10k-images-idx3-ubyte (built in)",
            IMAGES_SHA256,
        )?,
        "t10k-images-idx3-ubyte (built in)",
    )?;
    let labels = parse_idx(
        &read(
            LABELS_GZ,
            "t10k-labels-idx1-ubyte (built in)",
            LABELS_SHA256,
        )?,
        "t10k-labels-idx1-ubyte (built in)",
    )?;
    ImageDataset::new(images.data, labels.data, 1, 28, 28, 10)
}
