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
        let model = Model::init(info.name, &device)?;
        let shape = info
            .input_shape
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("x");
        println!(
            "{:<16} {:<12} {:>12}  {}",
            info.name,
            shape,
            torch::trainable_parameter_count(&model),
            info.summary
        );
    }
    Ok(())
}
