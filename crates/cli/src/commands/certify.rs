//! `bulwark certify`: certified L2 robustness of saved weights by randomized smoothing.

use anyhow::Result;
use bulwark_data::Split;
use bulwark_eval::smoothing::{
    CERTIFY_OUTPUTS, CertifyOptions, SmoothAttack, SmoothingConfig, certify_dataset,
};
use bulwark_models::Model;
use bulwark_trainer::{BackendKind, check_input_shape, dataset_dir, load_dataset_split};
use burn::tensor::Device;

use crate::args::CertifyArgs;
use crate::guard::Inputs;

use super::eval::run_identity;
use super::{fetch_options, load_weights};

pub(super) fn certify(a: CertifyArgs, backend: BackendKind) -> Result<()> {
    let device: Device = backend.device()?;
    let cfg = SmoothingConfig::new(a.sigma)
        .with_n0(a.n0 as usize)
        .with_n(a.n as usize)
        .with_alpha(a.alpha)
        .with_batch_size(a.batch_size as usize)
        .with_seed(a.seed);
    // Settings are checked before weights and data are touched.
    cfg.validate()?;
    let model = load_weights(Model::init(&a.model, &device)?, &a.weights)?;
    let dir = dataset_dir(&a.dataset, &fetch_options(a.data_dir.clone()))?;
    let mut test = load_dataset_split(&a.dataset, &dir, Split::Test)?;
    check_input_shape(&a.model, &test, &a.dataset)?;
    if let Some(n) = a.limit {
        test = test.take(n as usize);
    }
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| format!("runs/certify/{}-sigma{}", a.model, a.sigma).into());
    let mut inputs = Inputs::new();
    inputs.weights(&a.weights).data_dir(&dir);
    if let Some(d) = &a.data_dir {
        inputs.data_dir(d);
    }
    inputs.refuse_in(&out, &CERTIFY_OUTPUTS, "--out")?;
    // The weights' content (not their path), the data and the backend are what a resume must
    // match.
    let opts = CertifyOptions {
        resume: a.resume,
        progress: true,
        source: format!(
            "{} on the first {} {} test images [{}]",
            a.model,
            test.len(),
            a.dataset,
            run_identity(&a.model, &a.weights, &a.dataset, backend)?
        ),
        command: command_line(&a, &out, backend),
        attack: (a.attack_steps > 0).then_some(SmoothAttack {
            steps: a.attack_steps,
            noise_samples: a.attack_samples as usize,
            predict_n: a.predict_n as usize,
        }),
    };
    let report = certify_dataset(&model, &test, &cfg, &a.radii, &opts, &out, &device)?;
    println!(
        "{} on {} images, sigma {}: smoothed accuracy {:.2} %, abstained {:.2} %, average \
         certified radius {:.4}",
        a.model,
        report.n_examples,
        a.sigma,
        100.0 * report.smoothed_acc,
        100.0 * report.abstain_rate,
        report.average_radius
    );
    for row in &report.rows {
        let empirical = row
            .empirical_acc
            .map(|e| format!(", empirical (attacked) {:.2} %", 100.0 * e))
            .unwrap_or_default();
        println!(
            "  certified accuracy at L2 radius {}: {:.2} %{empirical}",
            row.radius,
            100.0 * row.certified_acc
        );
    }
    println!("report: {}", out.join("certify.md").display());
    Ok(())
}

/// The command that reproduces this certification.
fn command_line(a: &CertifyArgs, out: &std::path::Path, backend: BackendKind) -> String {
    let mut s = format!(
        "bulwark --backend {backend} certify --model {} --weights {} --dataset {} --sigma {} \
         --n0 {} --n {} --alpha {} --batch-size {} --seed {} --radii {} --out {}",
        a.model,
        a.weights.display(),
        a.dataset,
        a.sigma,
        a.n0,
        a.n,
        a.alpha,
        a.batch_size,
        a.seed,
        a.radii
            .iter()
            .map(f64::to_string)
            .collect::<Vec<_>>()
            .join(","),
        out.display()
    );
    if let Some(n) = a.limit {
        s.push_str(&format!(" --limit {n}"));
    }
    if a.attack_steps > 0 {
        s.push_str(&format!(
            " --attack-steps {} --attack-samples {} --predict-n {}",
            a.attack_steps, a.attack_samples, a.predict_n
        ));
    }
    s
}
