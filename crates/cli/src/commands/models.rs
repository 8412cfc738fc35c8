//! `bulwark models list`.

use anyhow::Result;
use bulwark_models::{Model, models, torch};
use bulwark_trainer::BackendKind;

pub(super) fn models_list(backend: BackendKind) -> Result<()> {
    // Parameter counts come from building each model, so they cannot drift from the code.
    let device = backend.device()?;
    println!(
        "{:<16} {:<12} {:>12}  description",
        "name", "input", "parameters"
    );
    for info in models() {
        // Built lazily: the counts are read from the shapes, without drawing the WideResNets'
        // tens of millions of weights.
        let model = Model::build(info.name, &device)?;
        let shape = info
            .input_shape
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("x");
        let options = match (info.dropout, info.drop_path) {
            (true, true) => " [--dropout, --drop-path]",
            (true, false) => " [--dropout]",
            (false, true) => " [--drop-path]",
            (false, false) => "",
        };
        println!(
            "{:<16} {:<12} {:>12}  {}{options}",
            info.name,
            shape,
            torch::trainable_parameter_count(&model),
            info.summary
        );
    }
    Ok(())
}
