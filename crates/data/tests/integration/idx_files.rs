//! IDX files on disk: valid raw and gzipped files, and each kind of damage, which must give a
//! clear error naming the file and the problem.

use std::path::{Path, PathBuf};

use bulwark_data::idx::{encode_idx_u8, read_idx, read_maybe_gz, write_idx_u8};
use bulwark_data::{DataError, DatasetKind, Split, load_split};

use crate::common::{T10K_IMAGES, T10K_LABELS};

/// A test split directory with `n` images (pixel = index) and labels `i % 10`.
fn write_split(dir: &Path, n: usize, gz: bool) -> (PathBuf, PathBuf) {
    let ext = if gz { ".gz" } else { "" };
    let images: Vec<u8> = (0..n * 784).map(|i| (i / 784) as u8).collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    let ip = dir.join(format!("{T10K_IMAGES}{ext}"));
    let lp = dir.join(format!("{T10K_LABELS}{ext}"));
    write_idx_u8(&ip, &[n, 28, 28], &images).unwrap();
    write_idx_u8(&lp, &[n], &labels).unwrap();
    (ip, lp)
}

fn load_err(dir: &Path) -> String {
    match load_split(DatasetKind::Mnist, Split::Test, dir) {
        Ok(d) => panic!("expected an error, loaded {} images", d.len()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn valid_raw_and_gz() {
    for gz in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (ip, _) = write_split(dir.path(), 12, gz);
        let bytes = std::fs::read(&ip).unwrap();
        assert_eq!(
            bytes.starts_with(&[0x1f, 0x8b]),
            gz,
            "written compressed iff .gz"
        );
        let d = load_split(DatasetKind::Mnist, Split::Test, dir.path()).unwrap();
        assert_eq!(d.len(), 12);
        assert_eq!(d.image(11), &[11u8; 784][..]);
        assert_eq!(d.labels[11], 1);
    }
}

#[test]
fn truncated_file() {
    let dir = tempfile::tempdir().unwrap();
    let (ip, _) = write_split(dir.path(), 3, false);
    let bytes = std::fs::read(&ip).unwrap();
    std::fs::write(&ip, &bytes[..bytes.len() - 100]).unwrap();
    let e = load_err(dir.path());
    assert!(e.contains(&ip.display().to_string()), "{e}");
    assert!(
        e.contains("truncated: expected 2352 bytes of data, found 2252"),
        "{e}"
    );
    // A header cut short.
    std::fs::write(&ip, &bytes[..10]).unwrap();
    let e = read_idx(&ip).unwrap_err().to_string();
    assert!(
        e.contains("truncated: the IDX header of rank 3 needs 16 bytes, found 10"),
        "{e}"
    );
}

#[test]
fn wrong_magic() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.idx");
    let mut bytes = encode_idx_u8(&[2], &[1, 2]).unwrap();
    bytes[0] = 0x12;
    std::fs::write(&p, &bytes).unwrap();
    let e = read_idx(&p).unwrap_err().to_string();
    assert!(e.starts_with(&p.display().to_string()), "{e}");
    assert!(e.contains("bad IDX magic number 0x12000801"), "{e}");
}

#[test]
fn wrong_type_code() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("floats.idx");
    let mut bytes = encode_idx_u8(&[2], &[1, 2]).unwrap();
    bytes[2] = 0x0c;
    std::fs::write(&p, &bytes).unwrap();
    let e = read_idx(&p).unwrap_err().to_string();
    assert!(e.contains("floats.idx"), "{e}");
    assert!(e.contains("unsupported IDX type code 0x0c (i32)"), "{e}");
}

#[test]
fn wrong_rank() {
    let dir = tempfile::tempdir().unwrap();
    let (_, lp) = write_split(dir.path(), 4, false);
    // Labels stored as a 4x1 matrix instead of a vector.
    write_idx_u8(&lp, &[4, 1], &[0, 1, 2, 3]).unwrap();
    let e = load_err(dir.path());
    assert!(e.contains(&lp.display().to_string()), "{e}");
    assert!(
        e.contains("wrong IDX rank: expected rank 1, found rank 2"),
        "{e}"
    );
    // Images that are not 28x28.
    let (ip, _) = write_split(dir.path(), 4, false);
    write_idx_u8(&ip, &[4, 14, 56], &[0; 4 * 784]).unwrap();
    let e = load_err(dir.path());
    assert!(
        e.contains("expected 28x28 MNIST images, found 14x56"),
        "{e}"
    );
}

#[test]
fn trailing_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (_, lp) = write_split(dir.path(), 5, false);
    let mut bytes = std::fs::read(&lp).unwrap();
    bytes.extend_from_slice(b"junk");
    std::fs::write(&lp, &bytes).unwrap();
    let e = load_err(dir.path());
    assert!(e.contains(&lp.display().to_string()), "{e}");
    assert!(
        e.contains("trailing garbage: expected 5 bytes of data, found 9"),
        "{e}"
    );
}

#[test]
fn corrupt_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let (ip, _) = write_split(dir.path(), 20, true);
    let mut bytes = std::fs::read(&ip).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 8] {
        *b ^= 0xa5;
    }
    std::fs::write(&ip, &bytes).unwrap();
    let e = load_split(DatasetKind::Mnist, Split::Test, dir.path()).unwrap_err();
    assert!(matches!(e, DataError::Gzip { .. }), "{e}");
    let e = e.to_string();
    assert!(e.starts_with(&ip.display().to_string()), "{e}");
    assert!(e.contains("corrupt or invalid gzip data"), "{e}");
    // A truncated gzip stream.
    std::fs::write(&ip, &bytes[..mid]).unwrap();
    let e = read_maybe_gz(&ip).unwrap_err().to_string();
    assert!(e.contains("corrupt or invalid gzip data"), "{e}");
    // A .gz name on data that is not gzip.
    std::fs::write(&ip, encode_idx_u8(&[1], &[0]).unwrap()).unwrap();
    let e = read_maybe_gz(&ip).unwrap_err().to_string();
    assert!(
        e.contains("does not start with the gzip magic bytes"),
        "{e}"
    );
}

#[test]
fn image_label_count_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let (ip, lp) = write_split(dir.path(), 6, false);
    write_idx_u8(&lp, &[5], &[0, 1, 2, 3, 4]).unwrap();
    let e = load_split(DatasetKind::Mnist, Split::Test, dir.path()).unwrap_err();
    assert!(matches!(e, DataError::Mismatch { .. }), "{e}");
    let e = e.to_string();
    assert!(e.contains(&ip.display().to_string()) && e.contains(&lp.display().to_string()));
    assert!(e.contains("count mismatch: 6 images but 5 labels"), "{e}");
}

#[test]
fn label_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let (_, lp) = write_split(dir.path(), 3, false);
    write_idx_u8(&lp, &[3], &[0, 10, 2]).unwrap();
    let e = load_err(dir.path());
    assert!(e.contains(&lp.display().to_string()), "{e}");
    assert!(e.contains("label 10 at index 1 is out of range"), "{e}");
}

#[test]
fn missing_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    write_split(dir.path(), 2, false);
    std::fs::remove_file(dir.path().join(T10K_LABELS)).unwrap();
    let e = load_err(dir.path());
    assert!(e.contains(&format!("missing {T10K_LABELS}")), "{e}");
    assert!(!e.contains(T10K_IMAGES), "{e}");
    let e = load_split(DatasetKind::Mnist, Split::Train, dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("train-images-idx3-ubyte, train-labels-idx1-ubyte"),
        "{e}"
    );
}

#[test]
fn dotted_names_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let (ip, lp) = write_split(dir.path(), 2, true);
    std::fs::rename(&ip, dir.path().join("t10k-images.idx3-ubyte.gz")).unwrap();
    std::fs::rename(&lp, dir.path().join("t10k-labels.idx1-ubyte")).unwrap();
    // The labels file is gzipped content under a name without .gz: sniffed by magic bytes.
    let d = load_split(DatasetKind::Mnist, Split::Test, dir.path()).unwrap();
    assert_eq!(d.len(), 2);
}
