//! CIFAR-10 binary batches: layout, errors, and the "not fetchable" message.

use std::path::Path;

use bulwark_data::cifar::{
    RECORD_BYTES, TEST_FILE, TRAIN_FILES, fetch_cifar10, parse_cifar10_batch,
};
use bulwark_data::{FetchOptions, Split, load_cifar10, read_cifar10_batch};

/// Record `i`: label `(i * 3) % 10`; pixel `p` of channel `c` is `(i + 7c + p) % 256`.
fn record(i: usize) -> Vec<u8> {
    let mut r = vec![((i * 3) % 10) as u8];
    for c in 0..3 {
        r.extend((0..1024).map(|p| ((i + 7 * c + p) % 256) as u8));
    }
    r
}

fn batch(range: std::ops::Range<usize>) -> Vec<u8> {
    range.flat_map(record).collect()
}

#[test]
fn reads_records_as_chw_planes() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("data_batch_1.bin");
    std::fs::write(&p, batch(0..5)).unwrap();
    let d = read_cifar10_batch(&p).unwrap();
    assert_eq!(d.len(), 5);
    assert_eq!(
        (d.channels, d.height, d.width, d.num_classes),
        (3, 32, 32, 10)
    );
    assert_eq!(d.labels, vec![0, 3, 6, 9, 2]);
    for i in 0..5 {
        let img = d.image(i);
        assert_eq!(
            img,
            &record(i)[1..],
            "image {i} is its record minus the label"
        );
        // Green plane, row 2, column 5.
        assert_eq!(img[1024 + 2 * 32 + 5], ((i + 7 + 2 * 32 + 5) % 256) as u8);
    }
}

#[test]
fn bad_length_and_bad_label() {
    let mut bytes = batch(0..2);
    bytes.push(0);
    let e = parse_cifar10_batch(&bytes, "b.bin")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("b.bin: length 6147 is not a multiple of the 3073-byte"),
        "{e}"
    );
    assert!(e.contains("2 whole records and 1 extra bytes"), "{e}");
    let mut bytes = batch(0..3);
    bytes[2 * RECORD_BYTES] = 10;
    let e = parse_cifar10_batch(&bytes, "c.bin")
        .unwrap_err()
        .to_string();
    assert!(e.contains("c.bin: record 2 has label 10"), "{e}");
    let e = parse_cifar10_batch(&[], "empty.bin")
        .unwrap_err()
        .to_string();
    assert!(e.contains("empty.bin: empty file"), "{e}");
}

fn write_all_batches(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for (k, name) in TRAIN_FILES.iter().enumerate() {
        std::fs::write(dir.join(name), batch(k * 2..k * 2 + 2)).unwrap();
    }
    std::fs::write(dir.join(TEST_FILE), batch(100..103)).unwrap();
}

#[test]
fn loads_splits_from_the_extracted_archive() {
    let root = tempfile::tempdir().unwrap();
    write_all_batches(&root.path().join("cifar-10-batches-bin"));
    let train = load_cifar10(root.path(), Split::Train).unwrap();
    assert_eq!(train.len(), 10);
    assert_eq!(
        train.image(9),
        &record(9)[1..],
        "batches are concatenated in order"
    );
    let test = load_cifar10(root.path(), Split::Test).unwrap();
    assert_eq!(test.labels, vec![0, 3, 6]);

    let mut opts = FetchOptions::new(root.path().join("cache"));
    opts.data_dir = Some(root.path().to_path_buf());
    assert_eq!(
        fetch_cifar10(&opts).unwrap(),
        root.path().join("cifar-10-batches-bin")
    );
}

#[test]
fn missing_files_explain_that_cifar_is_not_fetchable() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("data_batch_1.bin"), batch(0..1)).unwrap();
    let e = load_cifar10(root.path(), Split::Train)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(
            "missing data_batch_2.bin, data_batch_3.bin, data_batch_4.bin, data_batch_5.bin"
        ),
        "{e}"
    );
    assert!(
        e.contains("not obtainable from the package registries"),
        "{e}"
    );

    let opts = FetchOptions::new(root.path().join("cache"));
    let e = fetch_cifar10(&opts).unwrap_err().to_string();
    assert!(
        e.contains("data_batch_1.bin") && e.contains("test_batch.bin"),
        "{e}"
    );
    assert!(e.contains("cifar-10-binary.tar.gz"), "{e}");
    assert!(e.contains("--data-dir"), "{e}");
}

#[test]
fn bad_batch_file_names_the_path() {
    let root = tempfile::tempdir().unwrap();
    write_all_batches(root.path());
    let bad = root.path().join(TRAIN_FILES[3]);
    std::fs::write(&bad, vec![1u8; 100]).unwrap();
    let e = load_cifar10(root.path(), Split::Train)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with(&bad.display().to_string()), "{e}");
}

/// CIFAR-100 record `i`: coarse label `i % 20`, fine label `(i * 7) % 100`, pixels as [`record`].
fn record100(i: usize) -> Vec<u8> {
    let mut r = vec![(i % 20) as u8, ((i * 7) % 100) as u8];
    r.extend_from_slice(&record(i)[1..]);
    r
}

#[test]
fn cifar100_reads_the_fine_label_and_its_files() {
    use bulwark_data::{Cifar, fetch_cifar, load_cifar};
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("cifar-100-binary");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("train.bin"),
        (0..15).flat_map(record100).collect::<Vec<_>>(),
    )
    .unwrap();
    std::fs::write(
        dir.join("test.bin"),
        (20..23).flat_map(record100).collect::<Vec<_>>(),
    )
    .unwrap();
    let train = load_cifar(Cifar::Hundred, root.path(), Split::Train).unwrap();
    assert_eq!(
        (train.len(), train.num_classes, train.channels),
        (15, 100, 3)
    );
    assert_eq!(train.labels[14], 98, "the fine label, not the coarse one");
    assert_eq!(train.image(3), &record(3)[1..]);
    let test = load_cifar(Cifar::Hundred, root.path(), Split::Test).unwrap();
    assert_eq!(test.labels, vec![40, 47, 54]);
    let mut opts = FetchOptions::new(root.path().join("cache"));
    opts.data_dir = Some(root.path().to_path_buf());
    assert_eq!(fetch_cifar(Cifar::Hundred, &opts).unwrap(), dir);
    // A CIFAR-10 file is not a CIFAR-100 one: 3073-byte records do not divide evenly.
    std::fs::write(dir.join("test.bin"), batch(0..2)).unwrap();
    let e = load_cifar(Cifar::Hundred, root.path(), Split::Test)
        .unwrap_err()
        .to_string();
    assert!(e.contains("3074-byte CIFAR-100 record"), "{e}");
    // A fine label past 99 is refused.
    let mut bad = record100(0);
    bad[1] = 100;
    std::fs::write(dir.join("test.bin"), bad).unwrap();
    let e = load_cifar(Cifar::Hundred, root.path(), Split::Test)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("record 0 has label 100, but CIFAR-100 labels are 0-99"),
        "{e}"
    );
    let e = fetch_cifar(Cifar::Hundred, &FetchOptions::new(root.path().join("none")))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("CIFAR-100 train and test files not found") && e.contains("cifar-100-binary"),
        "{e}"
    );
}
