//! The dataset readers on damaged files: the IDX reader (raw and gzipped), a split's loader, and
//! the CIFAR-10 binary reader.

use std::path::Path;

use bulwark_data::cifar::{RECORD_BYTES, parse_cifar10_batch};
use bulwark_data::idx::{
    MAX_DECOMPRESSED_BYTES, encode_idx_u8, parse_idx, read_idx, read_maybe_gz,
};
use bulwark_data::{DataError, DatasetKind, IdxArray, Split, TEST_IMAGES, TEST_LABELS, load_split};
use proptest::prelude::*;

use crate::alloc::peak;
use crate::mutate::{apply, config, mutation};

/// The committed slice of the real MNIST test set (256 images).
fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../data/tests/fixtures/mnist")
        .join(format!("{name}.gz"));
    read_maybe_gz(&path).unwrap()
}

/// Valid IDX files: the slice's first 16 labels and first 16 images (small, so that thousands of
/// variants run quickly).
fn seeds() -> [Vec<u8>; 2] {
    let labels = parse_idx(&fixture(TEST_LABELS), "labels").unwrap();
    let labels = encode_idx_u8(&[16], &labels.data[..16]).unwrap();
    let images = parse_idx(&fixture(TEST_IMAGES), "images").unwrap();
    let images = encode_idx_u8(&[16, 28, 28], &images.data[..16 * 784]).unwrap();
    [labels, images]
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// A correct read is self-consistent; an error names the file and says something.
fn check_idx(result: &Result<IdxArray, DataError>, name: &str) -> Result<(), TestCaseError> {
    match result {
        Ok(a) => {
            prop_assert!((1..=4).contains(&a.dims.len()));
            prop_assert_eq!(a.data.len(), a.dims.iter().product::<usize>());
        }
        Err(e) => {
            let m = e.to_string();
            prop_assert!(m.starts_with(name) && m.len() > name.len() + 10, "{}", m);
        }
    }
    Ok(())
}

/// Decompressed size a gzip file of `len` bytes can reach: DEFLATE expands at most about
/// 1032:1, and the reader stops at its cap.
fn gz_bound(len: usize) -> usize {
    (len.saturating_mul(1032)).min(MAX_DECOMPRESSED_BYTES as usize)
}

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn idx_parser(which in 0usize..2, m in mutation()) {
        let bytes = apply(&seeds()[which], &m);
        let (result, used) = peak(|| parse_idx(&bytes, "damaged.idx"));
        check_idx(&result, "damaged.idx")?;
        // At most one copy of the array, which is never larger than the file.
        prop_assert!(used <= bytes.len() + 4096, "{} bytes for a {}-byte file", used, bytes.len());
    }

    #[test]
    fn cifar10_parser(m in mutation()) {
        // Eight records of the binary format (label byte, then 3072 pixel bytes): a format test
        // input, not a dataset.
        let valid: Vec<u8> = (0..8usize)
            .flat_map(|r| std::iter::once(r as u8).chain((0..3072).map(move |p| (r * 31 + p) as u8)))
            .collect();
        let bytes = apply(&valid, &m);
        let (result, used) = peak(|| parse_cifar10_batch(&bytes, "batch.bin"));
        match &result {
            Ok(d) => {
                prop_assert_eq!(d.labels.len() * RECORD_BYTES, bytes.len());
                prop_assert_eq!(d.images.len(), d.labels.len() * 3072);
                prop_assert!(d.labels.iter().all(|&l| l < 10));
            }
            Err(e) => prop_assert!(e.to_string().starts_with("batch.bin: "), "{}", e),
        }
        prop_assert!(used <= bytes.len() + 4096, "{} bytes for a {}-byte file", used, bytes.len());
    }
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn idx_reader_of_gzipped_files(which in 0usize..2, m in mutation()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("damaged.idx.gz");
        let bytes = apply(&gzip(&seeds()[which]), &m);
        std::fs::write(&path, &bytes).unwrap();
        let name = path.display().to_string();
        let (result, used) = peak(|| read_idx(&path));
        check_idx(&result, &name)?;
        // The file, the decompressed bytes (a growing buffer: up to twice them), one copy, and
        // the decoder's own state (its 32 KiB window and buffers: about 76 KiB).
        let bound = bytes.len() + 3 * gz_bound(bytes.len()) + (256 << 10);
        prop_assert!(used <= bound, "{} bytes for a {}-byte file", used, bytes.len());
    }

    #[test]
    fn split_loader(damage_images in any::<bool>(), m in mutation()) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let [labels, images] = seeds();
        let (labels, images) = if damage_images {
            (labels, apply(&images, &m))
        } else {
            (apply(&labels, &m), images)
        };
        std::fs::write(dir.join(TEST_LABELS), &labels).unwrap();
        std::fs::write(dir.join(TEST_IMAGES), &images).unwrap();
        let (result, used) = peak(|| load_split(DatasetKind::Mnist, Split::Test, dir));
        match &result {
            Ok(d) => {
                prop_assert_eq!(d.images.len(), d.labels.len() * 784);
                prop_assert!(d.labels.iter().all(|&l| l < 10));
            }
            Err(e) => {
                let m = e.to_string();
                prop_assert!(m.contains(&dir.display().to_string()), "{}", m);
            }
        }
        prop_assert!(used <= 3 * (labels.len() + images.len()) + 65_536, "{}", used);
    }
}

/// The seeds themselves read correctly: every damaged variant starts from a valid pair.
#[test]
fn the_seeds_are_valid() {
    let tmp = tempfile::tempdir().unwrap();
    let [labels, images] = seeds();
    std::fs::write(tmp.path().join(TEST_LABELS), &labels).unwrap();
    std::fs::write(tmp.path().join(TEST_IMAGES), &images).unwrap();
    let d = load_split(DatasetKind::Mnist, Split::Test, tmp.path()).unwrap();
    assert_eq!(d.len(), 16);
}
