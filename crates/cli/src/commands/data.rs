//! `bulwark data fetch`.

use std::path::PathBuf;

use anyhow::Result;
use bulwark_data::{DatasetKind, fetch};

use super::fetch_options;

pub(super) fn data_fetch(dataset: &str, data_dir: Option<PathBuf>, offline: bool) -> Result<()> {
    let mut opts = fetch_options(data_dir);
    if offline {
        // The package registries are reached over the network too.
        opts.use_network = false;
        opts.use_registries = false;
    }
    let cifar = match dataset {
        "cifar10" => Some(bulwark_data::Cifar::Ten),
        "cifar100" => Some(bulwark_data::Cifar::Hundred),
        _ => None,
    };
    if let Some(kind) = cifar {
        let dir = bulwark_data::fetch_cifar(kind, &opts)?;
        println!("{}", dir.display());
        return Ok(());
    }
    let kind: DatasetKind = dataset.parse()?;
    let dir = fetch(kind, &opts)?;
    println!("{}", dir.display());
    Ok(())
}
