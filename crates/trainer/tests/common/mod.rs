//! Data shared by the trainer's MNIST tests.
#![allow(dead_code)]

use std::path::Path;

use bulwark_data::{DatasetKind, ImageDataset, Split, load_split};

/// Train (first `train_n` − 1,000 images), validation (the next 1,000) and test (first `test_n`)
/// sets from the full MNIST in `../shared/data/mnist` when present; else the committed 256-image
/// test slice split into 200 training and 56 test images (validation = test).
pub fn mnist(train_n: usize, test_n: usize) -> (ImageDataset, ImageDataset, ImageDataset) {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/mnist");
    if shared.join("train-images-idx3-ubyte.gz").is_file() {
        let train = load_split(DatasetKind::Mnist, Split::Train, &shared)
            .unwrap()
            .take(train_n);
        let (train, valid) = train.split(1_000, 0).unwrap();
        let test = load_split(DatasetKind::Mnist, Split::Test, &shared)
            .unwrap()
            .take(test_n);
        (train, valid, test)
    } else {
        eprintln!("note: ../shared/data/mnist not found; using the committed 256-image slice");
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/tests/fixtures/mnist");
        let all = load_split(DatasetKind::Mnist, Split::Test, &dir).unwrap();
        let (train, test) = all.split(56, 1).unwrap();
        (train.clone(), test.clone(), test)
    }
}
