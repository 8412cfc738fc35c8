//! The input-gradient penalty and the architecture options, from the training configuration: a
//! network with BatchNorm and dropout trained with `[input_gradient]` ends with a much flatter
//! loss around its inputs than the same run without it, and resumes exactly; the options a
//! network cannot take are refused before anything is written.

use crate::common::{devices, opts};
use std::path::Path;

use bulwark_attack_core::Network;
use bulwark_data::ImageDataset;
use bulwark_trainer::{InputGradientSpec, OptimizerKind, TrainConfig, fit_network};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::Device;

use crate::custom_network::BnNet;

fn config() -> TrainConfig {
    TrainConfig::new()
        .with_model("bn-net".into())
        .with_epochs(2)
        .with_batch_size(50)
        .with_eval_batch_size(500)
        .with_optimizer(OptimizerKind::Adam)
        .with_lr(2e-3)
        .with_seed(3)
}

/// The exact `mean_b ‖∇ₓ ℓ(x_b)‖²` of the cross-entropy (summed over the batch, so that each
/// sample's gradient is its own) in inference mode, by autodiff, on `data`.
fn mean_input_gradient_sq<M: Network>(model: &M, data: &ImageDataset, device: &Device) -> f64 {
    let eval = model.valid();
    let indices: Vec<usize> = (0..data.len()).collect();
    let mut total = 0.0;
    for chunk in indices.chunks(250) {
        let (x, y) = data.batch(chunk, device);
        let x = x.autodiff().require_grad();
        let logits = eval.forward(x.clone());
        let loss = CrossEntropyLossConfig::new()
            .init(device)
            .forward(logits, y.autodiff())
            * chunk.len() as f32;
        let g = x.grad(&loss.backward()).unwrap();
        total += f64::from(g.square().sum().into_scalar::<f32>());
    }
    total / data.len() as f64
}

#[test]
fn the_penalty_flattens_the_loss_around_the_inputs_and_resumes_exactly() {
    let (train, valid, test) = crate::common::mnist(3_000, 500);
    let device = devices().main().clone().inner();
    let plain = config();
    let penalized = config().with_input_gradient(Some(InputGradientSpec::new(2.0)));
    let run = |cfg: &TrainConfig, dir: &Path, resume: bool, stop: Option<usize>| {
        fit_network(
            cfg,
            &BnNet::new,
            &train,
            &valid,
            &devices(),
            &opts(dir, resume, stop),
        )
        .unwrap()
    };
    let (d0, d1, d2) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let a = run(&plain, d0.path(), false, None);
    let b = run(&penalized, d1.path(), false, None);
    // Both learn; the penalized network's loss is much flatter around unseen inputs (the exact
    // gradient, not the finite difference it trained with).
    for (name, out) in [("plain", &a), ("penalized", &b)] {
        let acc = out.history.last().unwrap().valid_acc;
        assert!(acc > 0.85, "{name}: validation accuracy {acc}");
    }
    let (ga, gb) = (
        mean_input_gradient_sq(&a.model, &test, &device),
        mean_input_gradient_sq(&b.model, &test, &device),
    );
    eprintln!(
        "mean |grad_x loss|^2 on {} test images: {gb:.4e} with the penalty, {ga:.4e} without",
        test.len()
    );
    assert!(
        gb < 0.5 * ga,
        "mean |grad_x loss|^2: {gb} with the penalty, {ga} without"
    );
    // The metrics record the penalty's value (before lambda) only when it is on.
    assert!(a.history.iter().all(|m| m.input_gradient.is_none()));
    assert!(
        b.history
            .iter()
            .all(|m| m.input_gradient.is_some_and(|v| v > 0.0 && v.is_finite())),
        "{:?}",
        b.history
    );
    // Killed after the first epoch and resumed: the same run.
    run(&penalized, d2.path(), false, Some(1));
    let c = run(&penalized, d2.path(), true, None);
    assert_eq!(c.resumed_from, Some(1));
    let key = |h: &[bulwark_trainer::EpochMetrics]| {
        h.iter()
            .map(|m| (m.train_loss, m.valid_acc, m.input_gradient))
            .collect::<Vec<_>>()
    };
    assert_eq!(key(&b.history), key(&c.history));
}

#[test]
fn options_a_network_cannot_take_are_refused_before_anything_is_written() {
    let (train, valid, _) = crate::common::mnist(1_100, 0);
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let fit = |cfg: TrainConfig| {
        fit_network(
            &cfg,
            &BnNet::new,
            &train,
            &valid,
            &devices(),
            &opts(&run_dir, false, None),
        )
        .unwrap_err()
        .to_string()
    };
    // A user's network builds its own dropout layers.
    let e = fit(config().with_dropout(0.2));
    assert!(e.contains("dropout") && e.contains("fit_network"), "{e}");
    let e = fit(config().with_input_gradient(Some(InputGradientSpec {
        lambda: 1.0,
        h: 0.0,
    })));
    assert!(e.contains("input_gradient h must be > 0"), "{e}");
    let e = fit(config().with_input_gradient(Some(InputGradientSpec::new(-1.0))));
    assert!(e.contains("input_gradient lambda must be > 0"), "{e}");
    assert!(!run_dir.exists(), "nothing written");
}

#[test]
fn the_configuration_file_takes_the_penalty_and_the_options() {
    let cfg = TrainConfig::from_toml_str(
        "model = \"wrn-34-10\"\ndataset = \"cifar10\"\ndropout = 0.3\ndrop_path = 0.1\n\
         [input_gradient]\nlambda = 0.5\n",
        Path::new("c.toml"),
    )
    .unwrap();
    cfg.validate().unwrap();
    assert_eq!((cfg.dropout, cfg.drop_path), (0.3, 0.1));
    assert_eq!(cfg.input_gradient, Some(InputGradientSpec::new(0.5)));
    // The saved configuration reads back the same.
    let back = TrainConfig::from_toml_str(&cfg.to_toml(), Path::new("config.toml")).unwrap();
    assert_eq!(back.input_gradient, cfg.input_gradient);
    assert_eq!((back.dropout, back.drop_path), (0.3, 0.1));
    for (text, wanted) in [
        ("[input_gradient]\nlamda = 0.5\n", "lamda"),
        ("dropout = 0.2\n", "small-cnn"),
        (
            "model = \"wrn-28-10\"\ndrop_path = 1.0\n",
            "drop_path must be in [0, 1)",
        ),
    ] {
        let e = TrainConfig::from_toml_str(text, Path::new("c.toml"))
            .and_then(|c| c.validate())
            .unwrap_err()
            .to_string();
        assert!(e.contains(wanted), "{text}: {e}");
    }
}
