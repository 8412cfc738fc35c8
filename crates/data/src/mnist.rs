//! MNIST and Fashion-MNIST: dataset kinds, canonical file names and [`load_split`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::dataset::ImageDataset;
use crate::error::{DataError, Result};
use crate::idx::read_idx;

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
pub(crate) const SIDE: usize = 28;
/// Number of classes of both datasets.
pub(crate) const CLASSES: usize = 10;

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

#[cfg(test)]
mod tests {
    use super::*;

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
