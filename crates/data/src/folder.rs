//! Image folders: one sub-folder per class, PNG or JPEG files inside (torchvision's
//! `ImageFolder` layout), read into an [`ImageDataset`].
//!
//! ```text
//! root/
//!   train/cat/001.png  train/cat/002.jpg  train/dog/001.png ...
//!   test/cat/...       test/dog/...
//! ```
//!
//! Classes are the sub-folder names in sorted (byte) order, so label `i` is `classes[i]`, as in
//! torchvision. Files are read in sorted order within each class; files with other extensions
//! are skipped, hidden entries (names starting with `.`) too. Every image must have the same
//! size (resize beforehand: Bulwark does not resample, since resampling changes what an attack's
//! radius means). Images are stored with one channel when every file is greyscale, with three
//! (RGB) otherwise; alpha is dropped.

use std::path::{Path, PathBuf};

use image::DynamicImage;

use crate::dataset::ImageDataset;
use crate::error::{DataError, Result};
use crate::mnist::Split;

/// The file extensions read (compared without case).
pub const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// An image folder in memory: its images and its class names (`classes[label]`).
#[derive(Debug, Clone)]
pub struct ImageFolder {
    /// The images, labels `0..classes.len()`.
    pub dataset: ImageDataset,
    /// The class (sub-folder) names, sorted; label `i` is `classes[i]`.
    pub classes: Vec<String>,
}

/// The sorted class sub-folders of `root`.
pub fn folder_classes(root: &Path) -> Result<Vec<String>> {
    let entries = std::fs::read_dir(root).map_err(|e| DataError::io(root, "read the folder", e))?;
    let mut classes = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| DataError::io(root, "read the folder", e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && entry.path().is_dir() {
            classes.push(name);
        }
    }
    classes.sort();
    Ok(classes)
}

/// Reads an image folder: classes from its sub-folders (see the module docs).
///
/// Fails, naming the file or folder, when `root` has no class sub-folders, a class holds no
/// images, a file does not decode, or sizes differ; and when there are more than 256 classes
/// (labels are stored as bytes).
pub fn load_image_folder(root: &Path) -> Result<ImageFolder> {
    let classes = folder_classes(root)?;
    let dataset = load_image_folder_with_classes(root, &classes)?;
    Ok(ImageFolder { dataset, classes })
}

/// Reads an image folder whose sub-folders must be exactly `classes` (in that order of labels):
/// the test split of a folder dataset, read with the training split's classes.
pub fn load_image_folder_with_classes(root: &Path, classes: &[String]) -> Result<ImageDataset> {
    let found = folder_classes(root)?;
    if found.is_empty() {
        return Err(DataError::InvalidArgument(format!(
            "{}: no class sub-folders; an image folder holds one sub-folder per class with PNG \
             or JPEG files in it",
            root.display()
        )));
    }
    if found != classes {
        return Err(DataError::InvalidArgument(format!(
            "{}: its class sub-folders [{}] differ from the expected classes [{}]",
            root.display(),
            found.join(", "),
            classes.join(", ")
        )));
    }
    if classes.len() > 256 {
        return Err(DataError::InvalidArgument(format!(
            "{}: {} classes; at most 256 are supported (labels are stored as bytes)",
            root.display(),
            classes.len()
        )));
    }
    let mut decoded: Vec<(PathBuf, DynamicImage, u8)> = Vec::new();
    for (label, class) in classes.iter().enumerate() {
        let dir = root.join(class);
        let files = image_files(&dir)?;
        if files.is_empty() {
            return Err(DataError::InvalidArgument(format!(
                "{}: class `{class}` holds no PNG or JPEG files",
                dir.display()
            )));
        }
        for path in files {
            let img = image::ImageReader::open(&path)
                .map_err(|e| DataError::io(&path, "open", e))?
                .with_guessed_format()
                .map_err(|e| DataError::io(&path, "read", e))?
                .decode()
                .map_err(|e| DataError::format(path.display().to_string(), e.to_string()))?;
            decoded.push((path, img, label as u8));
        }
    }
    let (w, h) = (
        decoded[0].1.width() as usize,
        decoded[0].1.height() as usize,
    );
    if let Some((path, img, _)) = decoded
        .iter()
        .find(|(_, img, _)| (img.width() as usize, img.height() as usize) != (w, h))
    {
        return Err(DataError::format(
            path.display().to_string(),
            format!(
                "the image is {}x{} pixels, but {} is {w}x{h}; every image of a folder dataset \
                 must have the same size (resize them beforehand)",
                img.width(),
                img.height(),
                decoded[0].0.display()
            ),
        ));
    }
    let colour = decoded.iter().any(|(_, img, _)| img.color().has_color());
    let channels = if colour { 3 } else { 1 };
    let mut images = Vec::with_capacity(decoded.len() * channels * h * w);
    let mut labels = Vec::with_capacity(decoded.len());
    for (_, img, label) in decoded {
        if colour {
            // HWC as decoded; the dataset wants CHW planes.
            let rgb = img.into_rgb8();
            for c in 0..3 {
                images.extend(rgb.pixels().map(|p| p.0[c]));
            }
        } else {
            images.extend_from_slice(img.into_luma8().as_raw());
        }
        labels.push(label);
    }
    ImageDataset::new(images, labels, channels, h, w, classes.len())
}

/// The image files in `dir`, sorted.
fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, "read the folder", e))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| DataError::io(dir, "read the folder", e))?
            .path();
        let hidden = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        let known = path.extension().is_some_and(|e| {
            IMAGE_EXTENSIONS
                .iter()
                .any(|k| e.to_string_lossy().eq_ignore_ascii_case(k))
        });
        if path.is_file() && known && !hidden {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The folder of `split` in a folder dataset rooted at `root`: `root/train` for training;
/// `root/test`, else `root/val`, for testing, and `root` itself when it has neither (a folder of
/// classes to evaluate).
pub fn folder_split_dir(root: &Path, split: Split) -> Result<PathBuf> {
    if !root.is_dir() {
        return Err(DataError::InvalidArgument(format!(
            "{}: not a folder; a folder dataset is a folder with train/ and test/ sub-folders, \
             each holding one sub-folder per class",
            root.display()
        )));
    }
    let sub = |name: &str| Some(root.join(name)).filter(|p| p.is_dir());
    match split {
        Split::Train => sub("train").ok_or_else(|| {
            DataError::InvalidArgument(format!(
                "{}: no train/ sub-folder; training on a folder dataset needs train/ and test/ \
                 (or val/) sub-folders, each holding one sub-folder per class",
                root.display()
            ))
        }),
        Split::Test => Ok(sub("test")
            .or_else(|| sub("val"))
            .unwrap_or_else(|| root.to_path_buf())),
    }
}

/// Loads a split of a folder dataset (see [`folder_split_dir`]); the test split of a dataset
/// with a `train/` folder must have the training split's classes.
pub fn load_folder_split(root: &Path, split: Split) -> Result<ImageFolder> {
    let dir = folder_split_dir(root, split)?;
    match split {
        Split::Test if dir != root => {
            let classes = match root.join("train") {
                train if train.is_dir() => folder_classes(&train)?,
                _ => folder_classes(&dir)?,
            };
            let dataset = load_image_folder_with_classes(&dir, &classes)?;
            Ok(ImageFolder { dataset, classes })
        }
        _ => load_image_folder(&dir),
    }
}
