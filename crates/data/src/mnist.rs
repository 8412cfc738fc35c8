//! MNIST and Fashion-MNIST: dataset kinds, canonical file names and [`load_split`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::checksums::ExpectedFile;
use crate::dataset::ImageDataset;
use crate::error::{DataError, Result};
use crate::idx::{parse_idx, read_idx};

/// Canonical name of the training images file (uncompressed).
pub const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
/// Canonical name of the training labels file (uncompressed).
pub const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
/// Canonical name of the test images file (uncompressed).
pub const TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
/// Canonical name of the test labels file (uncompressed).
pub const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";
/// The four canonical file names, training files first.
pub const FILE_NAMES: [&str; 4] = [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS];

/// Image side length of both datasets.
const SIDE: usize = 28;
/// Number of classes of both datasets.
const CLASSES: usize = 10;

/// The IDX datasets this crate can load and fetch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DatasetKind {
    /// Handwritten digits (LeCun, Cortes, Burges).
    Mnist,
    /// Zalando article images (Xiao, Rasul, Vollgraf), a drop-in replacement for MNIST.
    FashionMnist,
}

impl DatasetKind {
    /// Every kind, in a fixed order.
    pub const ALL: [DatasetKind; 2] = [DatasetKind::Mnist, DatasetKind::FashionMnist];

    /// The short name used on the command line and for cache folders: `mnist`, `fashion-mnist`.
    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::Mnist => "mnist",
            DatasetKind::FashionMnist => "fashion-mnist",
        }
    }

    /// The name for humans: `MNIST`, `Fashion-MNIST`.
    pub fn display_name(self) -> &'static str {
        match self {
            DatasetKind::Mnist => "MNIST",
            DatasetKind::FashionMnist => "Fashion-MNIST",
        }
    }

    /// Number of classes (10 for both).
    pub fn num_classes(self) -> usize {
        CLASSES
    }
}

impl fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DatasetKind {
    type Err = DataError;

    /// Accepts `mnist` and `fashion-mnist` (case-insensitive; `fashion_mnist` and
    /// `fashionmnist` too).
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "mnist" => Ok(DatasetKind::Mnist),
            "fashion-mnist" | "fashion_mnist" | "fashionmnist" => Ok(DatasetKind::FashionMnist),
            _ => Err(DataError::UnknownDataset(s.to_string())),
        }
    }
}

/// Which half of a dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    /// The 60,000 training images.
    Train,
    /// The 10,000 test images (the `t10k` files).
    Test,
}

impl Split {
    /// `train` or `test`.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }

    /// Canonical (images, labels) file names of this split.
    pub fn file_names(self) -> (&'static str, &'static str) {
        match self {
            Split::Train => (TRAIN_IMAGES, TRAIN_LABELS),
            Split::Test => (TEST_IMAGES, TEST_LABELS),
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Split {
    type Err = DataError;

    /// Accepts `train` and `test` (case-insensitive).
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "train" => Ok(Split::Train),
            "test" => Ok(Split::Test),
            _ => Err(DataError::UnknownSplit(s.to_string())),
        }
    }
}

/// The names under which a canonical file may be stored, in order of preference: the canonical
/// name, gzipped, and the dotted spelling some archives use (`train-images.idx3-ubyte`).
pub(crate) fn candidate_names(canonical: &str) -> Vec<String> {
    let dotted = canonical.replacen("-idx", ".idx", 1);
    vec![
        canonical.to_string(),
        format!("{canonical}.gz"),
        dotted.clone(),
        format!("{dotted}.gz"),
    ]
}

/// The first existing file in `dir` under one of the names of `canonical`.
pub(crate) fn locate(dir: &Path, canonical: &str) -> Option<PathBuf> {
    candidate_names(canonical)
        .into_iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
}

/// Loads a split from a directory holding the standard files, raw or `.gz`.
///
/// Canonical names are `train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`,
/// `t10k-images-idx3-ubyte[.gz]` and `t10k-labels-idx1-ubyte[.gz]` (the dotted spelling
/// `train-images.idx3-ubyte` is accepted too). Checks that the images are `N x 28 x 28`, that
/// image and label counts agree and that every label is below 10. The files are not
/// checksummed here; [`crate::fetch`] does that.
pub fn load_split(kind: DatasetKind, split: Split, dir: &Path) -> Result<ImageDataset> {
    let (images_name, labels_name) = split.file_names();
    let images_path = locate(dir, images_name);
    let labels_path = locate(dir, labels_name);
    let (images_path, labels_path) = match (images_path, labels_path) {
        (Some(i), Some(l)) => (i, l),
        (i, l) => {
            let mut missing = Vec::new();
            if i.is_none() {
                missing.push(images_name.to_string());
            }
            if l.is_none() {
                missing.push(labels_name.to_string());
            }
            return Err(DataError::MissingFiles {
                dir: dir.to_path_buf(),
                missing,
                hint: Some(format!(
                    "raw or .gz IDX files of the {} {split} split are expected here; `bulwark data fetch {kind}` downloads them",
                    kind.display_name()
                )),
            });
        }
    };
    let images_label = images_path.display().to_string();
    let labels_label = labels_path.display().to_string();

    let images = read_idx(&images_path)?;
    images.check_rank(3, &images_label)?;
    if images.dims[1..] != [SIDE, SIDE] {
        return Err(DataError::format(
            &images_label,
            format!(
                "expected {SIDE}x{SIDE} {} images, found {}x{}",
                kind.display_name(),
                images.dims[1],
                images.dims[2]
            ),
        ));
    }
    let labels = read_idx(&labels_path)?;
    labels.check_rank(1, &labels_label)?;
    if images.dims[0] != labels.dims[0] {
        return Err(DataError::Mismatch {
            images: images_path,
            labels: labels_path,
            problem: format!(
                "count mismatch: {} images but {} labels",
                images.dims[0], labels.dims[0]
            ),
        });
    }
    if let Some(pos) = labels.data.iter().position(|&l| usize::from(l) >= CLASSES) {
        return Err(DataError::format(
            &labels_label,
            format!(
                "label {} at index {pos} is out of range: {} has {CLASSES} classes (0-9)",
                labels.data[pos],
                kind.display_name()
            ),
        ));
    }
    tracing::debug!(
        "loaded {} {split}: {} images from {}",
        kind.display_name(),
        labels.data.len(),
        dir.display()
    );
    Ok(ImageDataset {
        images: images.data,
        labels: labels.data,
        channels: 1,
        height: SIDE,
        width: SIDE,
        num_classes: CLASSES,
    })
}

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

    #[test]
    fn kind_names_round_trip() {
        for k in DatasetKind::ALL {
            assert_eq!(k.name().parse::<DatasetKind>().unwrap(), k);
            assert_eq!(k.to_string(), k.name());
        }
        assert_eq!(
            "Fashion_MNIST".parse::<DatasetKind>().unwrap(),
            DatasetKind::FashionMnist
        );
        let e = "cifar".parse::<DatasetKind>().unwrap_err().to_string();
        assert!(
            e.contains("\"cifar\"") && e.contains("fashion-mnist"),
            "{e}"
        );
        assert_eq!("TEST".parse::<Split>().unwrap(), Split::Test);
        assert!("valid".parse::<Split>().is_err());
    }

    #[test]
    fn candidates_include_dotted_names() {
        assert_eq!(
            candidate_names(TRAIN_IMAGES),
            vec![
                "train-images-idx3-ubyte",
                "train-images-idx3-ubyte.gz",
                "train-images.idx3-ubyte",
                "train-images.idx3-ubyte.gz"
            ]
        );
    }
}
