//! `bulwark export`: weights between burn's format and PyTorch's safetensors.

use anyhow::{Result, bail};
use bulwark_models::{Model, bpk, torch};
use bulwark_trainer::{BackendKind, save_bpk_atomic};

use crate::args::ExportArgs;
use crate::guard::Inputs;

use super::load_weights;

pub(super) fn export(a: ExportArgs, backend: BackendKind) -> Result<()> {
    let device = backend.device()?;
    let out_ext = a.to.extension().and_then(|e| e.to_str());
    if !matches!(out_ext, Some("safetensors" | "bpk")) {
        bail!(
            "{}: choose a .safetensors or .bpk output file",
            a.to.display()
        );
    }
    if let Some(from) = &a.from {
        Inputs::new().weights(from).refuse(&a.to, "--to")?;
    }
    let model = match (&a.from, a.init_seed) {
        (Some(from), _) => load_weights(Model::init(&a.model, &device)?, from)?,
        (None, Some(seed)) => Model::init_seeded(&a.model, &device, seed)?,
        (None, None) => bail!("give --from or --init-seed"),
    };
    if out_ext == Some("bpk") {
        // Parameter ids numbered in order: the same weights always give the same bytes.
        save_bpk_atomic(&bpk::with_ordinal_ids(model), &a.to)?;
    } else {
        torch::save_safetensors(&model, &a.to)?;
    }
    println!("wrote {}", a.to.display());
    Ok(())
}
