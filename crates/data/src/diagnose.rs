//! [`diagnose`]: why a dataset file is not the one expected.

use crate::checksums::ExpectedFile;
use crate::error::DataError;
use crate::idx::parse_idx;
use crate::mnist::{CLASSES, SIDE};

/// Why a file that should be `expected` (decompressed `bytes`) is not, as far as its structure
/// tells: empty, not an IDX file (and why), the wrong rank or image size, labels out of range, a
/// count other than the official file's; or, when the structure is right, that the content
/// differs (it was modified, or it is the same-shaped file of the other dataset). Explains a
/// checksum mismatch.
///
/// ```
/// use bulwark_data::{ExpectedFiles, DatasetKind, diagnose, idx::encode_idx_u8};
/// let table = ExpectedFiles::official(DatasetKind::Mnist);
/// let labels = table.files.iter().find(|f| f.name == "t10k-labels-idx1-ubyte").unwrap();
/// let short = encode_idx_u8(&[9_999], &vec![0; 9_999]).unwrap();
/// assert_eq!(diagnose(labels, &short), "holds 9999 labels; the official file holds 10000");
/// ```
pub fn diagnose(expected: &ExpectedFile, bytes: &[u8]) -> String {
    let canonical = expected.name.as_str();
    if bytes.is_empty() {
        return "the file is empty".into();
    }
    let array = match parse_idx(bytes, canonical) {
        Ok(a) => a,
        Err(DataError::Format { problem, .. }) => {
            return format!("not a valid IDX file: {problem}");
        }
        Err(e) => return e.to_string(),
    };
    let images = canonical.contains("-images");
    let (rank, what) = if images { (3, "images") } else { (1, "labels") };
    if array.rank() != rank {
        return format!(
            "an IDX file of rank {} (dims {:?}), but {what} files have rank {rank}",
            array.rank(),
            array.dims
        );
    }
    if images && array.dims[1..] != [SIDE, SIDE] {
        return format!(
            "holds {}x{} images; the dataset's images are {SIDE}x{SIDE}",
            array.dims[1], array.dims[2]
        );
    }
    if !images && let Some(pos) = array.data.iter().position(|&l| usize::from(l) >= CLASSES) {
        return format!(
            "label {} at index {pos} is out of range (the classes are 0-9)",
            array.data[pos]
        );
    }
    match expected.items {
        Some(official) if array.dims[0] != official => format!(
            "holds {} {what}; the official file holds {official}",
            array.dims[0]
        ),
        _ => format!(
            "a well-formed file of {} {what}, but not the expected one: its content was changed, \
             or it is the same-shaped file of the other dataset (MNIST and Fashion-MNIST use the \
             same file names)",
            array.dims[0]
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mnist::{DatasetKind, TEST_IMAGES, TEST_LABELS};

    #[test]
    fn diagnosis_names_what_is_wrong() {
        let labels = |n: usize, v: u8| crate::idx::encode_idx_u8(&[n], &vec![v; n]).unwrap();
        let official = crate::ExpectedFiles::official(DatasetKind::Mnist);
        let file = |name: &str| official.files.iter().find(|f| f.name == name).unwrap();
        let name = file(TEST_LABELS);
        assert_eq!(diagnose(name, &[]), "the file is empty");
        assert!(diagnose(name, &[0, 0, 8]).contains("not a valid IDX file: truncated"));
        assert!(diagnose(name, &[1, 2, 3, 4]).contains("bad IDX magic"));
        let mut short = labels(10_000, 1);
        short.truncate(5_000);
        assert!(diagnose(name, &short).contains("truncated: expected 10000 bytes of data"));
        assert!(diagnose(name, &labels(9_999, 1)).contains("holds 9999 labels"));
        assert!(diagnose(name, &labels(10_000, 10)).contains("label 10 at index 0"));
        assert!(diagnose(name, &labels(10_000, 3)).contains("not the expected one"));
        let images = crate::idx::encode_idx_u8(&[2, 28, 27], &[0; 2 * 28 * 27]).unwrap();
        assert!(diagnose(file(TEST_IMAGES), &images).contains("holds 28x27 images"));
        assert!(diagnose(file(TEST_IMAGES), &labels(4, 0)).contains("rank 1"));
        // Without an official count (a slice's table), the count is not blamed.
        let slice = crate::ExpectedFiles::new(&[(TEST_LABELS, "00")]);
        assert!(diagnose(&slice.files[0], &labels(256, 1)).contains("256 labels, but not"));
    }
}
