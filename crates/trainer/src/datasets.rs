//! Datasets by name: the named ones (`mnist`, `fashion-mnist`, `cifar10`, `cifar100`) and image
//! folders (`folder:PATH`), where their files come from, and how a split is read.

use std::path::{Path, PathBuf};

use bulwark_data::{
    Cifar, DatasetKind, FetchOptions, ImageDataset, Split, fetch, fetch_cifar, load_cifar,
    load_folder_split, load_split,
};
use bulwark_models::model_info;

use crate::TrainError;

pub use bulwark_data::{DATASETS, FOLDER_PREFIX};

/// The folder of a `folder:PATH` dataset name.
pub fn dataset_folder(dataset: &str) -> Option<&Path> {
    dataset.strip_prefix(FOLDER_PREFIX).map(Path::new)
}

/// A name for `dataset` that can be part of a file name: the dataset's own name, or
/// `folder-<last path component>` for `folder:PATH`.
pub fn dataset_label(dataset: &str) -> String {
    match dataset_folder(dataset) {
        Some(path) => {
            let base = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let clean: String = base
                .chars()
                .map(|c| {
                    if c.is_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            format!("folder-{clean}")
        }
        None => dataset.to_string(),
    }
}

fn cifar_kind(dataset: &str) -> Option<Cifar> {
    match dataset {
        "cifar10" => Some(Cifar::Ten),
        "cifar100" => Some(Cifar::Hundred),
        _ => None,
    }
}

/// Fails unless the dataset's images have the shape the model takes.
pub fn check_input_shape(
    model: &str,
    data: &ImageDataset,
    dataset: &str,
) -> Result<(), TrainError> {
    let info = model_info(model)?;
    let have = [data.channels, data.height, data.width];
    if info.input_shape != have {
        return Err(TrainError::Input(format!(
            "model `{model}` takes inputs of shape {:?}, but {dataset} images are {:?}",
            info.input_shape, have
        )));
    }
    Ok(())
}

/// Fails unless `dataset` is one of [`DATASETS`] or `folder:PATH` with a non-empty path.
pub fn check_dataset_name(dataset: &str) -> Result<(), TrainError> {
    match dataset_folder(dataset) {
        Some(path) if path.as_os_str().is_empty() => Err(TrainError::Input(format!(
            "dataset `{dataset}` names no folder: write {FOLDER_PREFIX}PATH"
        ))),
        Some(_) => Ok(()),
        None if cifar_kind(dataset).is_some() => Ok(()),
        None => dataset_kind(dataset).map(|_| ()),
    }
}

fn dataset_kind(dataset: &str) -> Result<DatasetKind, TrainError> {
    dataset.parse().map_err(|_| {
        TrainError::Input(format!(
            "unknown dataset `{dataset}`; known: {}, or {FOLDER_PREFIX}PATH for an image folder",
            DATASETS.join(", ")
        ))
    })
}

/// The verified directory of `dataset`: `mnist` and `fashion-mnist` are fetched (see
/// `bulwark_data::fetch`), `cifar10` and `cifar100` are looked up in the folder the user
/// provides, `folder:PATH` is `PATH`.
pub fn dataset_dir(dataset: &str, fetch_opts: &FetchOptions) -> Result<PathBuf, TrainError> {
    if let Some(path) = dataset_folder(dataset) {
        check_dataset_name(dataset)?;
        if !path.is_dir() {
            return Err(TrainError::Input(format!(
                "dataset `{dataset}`: {} is not a folder",
                path.display()
            )));
        }
        return Ok(path.to_path_buf());
    }
    if let Some(kind) = cifar_kind(dataset) {
        return Ok(fetch_cifar(kind, fetch_opts)?);
    }
    Ok(fetch(dataset_kind(dataset)?, fetch_opts)?)
}

/// One split of `dataset` from the directory [`dataset_dir`] returned.
pub fn load_dataset_split(
    dataset: &str,
    dir: &Path,
    split: Split,
) -> Result<ImageDataset, TrainError> {
    if dataset_folder(dataset).is_some() {
        let folder = load_folder_split(dir, split)?;
        tracing::info!(
            "{} {}: {} images of {} classes ({})",
            dataset,
            split.name(),
            folder.dataset.len(),
            folder.classes.len(),
            folder.classes.join(", ")
        );
        return Ok(folder.dataset);
    }
    if let Some(kind) = cifar_kind(dataset) {
        return Ok(load_cifar(kind, dir, split)?);
    }
    Ok(load_split(dataset_kind(dataset)?, split, dir)?)
}

/// The training and test splits of `dataset`, with the directory they came from.
pub fn load_dataset(
    dataset: &str,
    fetch_opts: &FetchOptions,
) -> Result<(PathBuf, ImageDataset, ImageDataset), TrainError> {
    let dir = dataset_dir(dataset, fetch_opts)?;
    let train = load_dataset_split(dataset, &dir, Split::Train)?;
    let test = load_dataset_split(dataset, &dir, Split::Test)?;
    Ok((dir, train, test))
}
