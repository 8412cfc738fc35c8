//! The dataset names that runs and evaluations accept: the named datasets and image folders.

/// The datasets a run or an evaluation can name: MNIST and Fashion-MNIST through the fetch chain,
/// CIFAR-10's and CIFAR-100's binary versions from a data directory. Besides these,
/// `folder:PATH` names an image folder ([`FOLDER_PREFIX`]).
pub const DATASETS: [&str; 4] = ["mnist", "fashion-mnist", "cifar10", "cifar100"];

/// `folder:PATH` names an image folder dataset: `PATH/train/<class>/*.png|jpg` and
/// `PATH/test/<class>/...` (or `val/`); evaluations also take `PATH/<class>/...` alone (see
/// [`crate::folder`]).
pub const FOLDER_PREFIX: &str = "folder:";

/// Whether `name` is one a run or `bulwark eval --dataset` accepts.
///
/// ```
/// assert!(bulwark_data::is_dataset_name("mnist"));
/// assert!(bulwark_data::is_dataset_name("folder:/data/pets"));
/// assert!(!bulwark_data::is_dataset_name("folder:"));
/// assert!(!bulwark_data::is_dataset_name("my-subset"));
/// ```
pub fn is_dataset_name(name: &str) -> bool {
    DATASETS.contains(&name)
        || name
            .strip_prefix(FOLDER_PREFIX)
            .is_some_and(|p| !p.is_empty())
}
