//! The GPU path against the CPU (built with the `wgpu` feature; CI runs it on Mesa's lavapipe):
//! the same fixed weights and inputs on `wgpu` and `flex` give close forward passes and input
//! gradients for the zoo models, one step of every attack in every norm lands inside the ball
//! and the box and near flex's, one training step of every method gives near weights, a
//! checkpoint written on one backend resumes on the other, and the evaluator agrees on a handful
//! of images. The tolerances and why they are what they are: docs/backends.md.
#![cfg(feature = "wgpu")]

use std::path::Path;

use bulwark_attack_core::{
    ATTACKS, Attack, AttackConfig, AttackOverrides, Norm, Preset, within_threat,
};
use bulwark_data::{DatasetKind, ImageDataset, Split, load_split};
use bulwark_eval::{RobustEvalConfig, RobustEvalOptions, evaluate_robustness};
use bulwark_models::{Model, model_info, torch};
use bulwark_trainer::{
    BackendKind, DeviceSet, FitOptions, Keep, Method, OptimizerKind, TrainConfig, fit_network,
};
use burn::module::Module;
use burn::prelude::*;
use burn::tensor::TensorData;

/// The GPU device: a missing adapter fails the test set (it never skips).
fn gpu() -> Device {
    BackendKind::Wgpu.device().unwrap_or_else(|e| {
        panic!(
            "the GPU test set needs a wgpu adapter (in CI: Mesa's lavapipe, packages \
             mesa-vulkan-drivers and libvulkan1): {e}"
        )
    })
}

fn cpu() -> Device {
    Device::flex()
}

/// The committed real MNIST slice.
fn images(n: usize) -> ImageDataset {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/tests/fixtures/mnist");
    load_split(DatasetKind::Mnist, Split::Test, Path::new(dir))
        .unwrap()
        .take(n)
}

/// `name` with the weights drawn on flex from `seed`, loaded on `device`: bit-identical
/// parameters on both backends.
fn model_on(name: &str, seed: u64, device: &Device) -> Model {
    let bytes = torch::to_safetensors_bytes(&Model::init_seeded(name, &cpu(), seed).unwrap());
    torch::from_safetensors_bytes(
        Model::init(name, device).unwrap(),
        &bytes,
        Path::new("fixed.safetensors"),
    )
    .unwrap()
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.try_into_vec_as::<f32>().unwrap()
}

/// Largest difference relative to the largest magnitude of `a`; infinite where either side holds
/// a NaN or an infinity.
fn relative_gap(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    // `f32::max` passes over a NaN, so a NaN on either side would vanish from the gap: a
    // non-finite value anywhere is an infinite gap.
    if a.iter().chain(b).any(|v| !v.is_finite()) {
        return f32::INFINITY;
    }
    let scale = a.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// Seeded inputs in [0, 1] of `shape`.
fn inputs(shape: [usize; 4]) -> Vec<f32> {
    let n: usize = shape.iter().product();
    (0..n)
        .map(|i| ((i * 7919 % 1009) as f32) / 1008.0)
        .collect()
}

/// Logits and the input gradient of `sum(logits · r)` (inference behaviour).
fn forward_backward(name: &str, device: &Device) -> (Vec<f32>, Vec<f32>) {
    let info = model_info(name).unwrap();
    let shape = [
        2,
        info.input_shape[0],
        info.input_shape[1],
        info.input_shape[2],
    ];
    let model = model_on(name, 1, device).valid();
    let ad = device.clone().autodiff();
    let x = Tensor::<4>::from_data(TensorData::new(inputs(shape), shape), &ad).require_grad();
    let logits = model.forward(x.clone());
    let k = logits.dims()[1];
    let r: Vec<f32> = (0..2 * k).map(|i| (i % 3) as f32 - 1.0).collect();
    let r = Tensor::<2>::from_data(TensorData::new(r, [2, k]), device);
    let grads = (logits.clone() * r).sum().backward();
    let g = x.grad(&grads).expect("input gradient");
    (values(logits.inner()), values(g))
}

/// `models`' forward passes and input gradients on the GPU against flex's. The logits agree within
/// 1e-3 of their largest magnitude (f32 sums in another order over up to a few thousand terms
/// per output: a few units in 1e-7 measured, docs/backends.md). The input gradient is piecewise
/// constant in the input (ReLU masks, max-pool choices): where a pre-activation lies within
/// rounding of zero the two backends can take different pieces, and the gradient jumps over that
/// unit's receptive field. So, as for the attacks' steps, at most 1 % of the gradient's values
/// may be more than 1e-3 of its largest magnitude apart (wrn-28-10 on lavapipe: 13 of 6,144, the
/// same jump flex makes itself when the input moves by one ulp; docs/backends.md), and none more
/// than 5e-2.
fn models_agree_with_flex(models: &[&str]) {
    let gpu = gpu();
    for name in models {
        let (l_cpu, g_cpu) = forward_backward(name, &cpu());
        let (l_gpu, g_gpu) = forward_backward(name, &gpu);
        // The gaps below pass over a NaN (comparisons with it are false): rule them out first.
        assert!(
            l_gpu.iter().chain(&g_gpu).all(|v| v.is_finite()),
            "{name}: the GPU's logits or input gradient hold a NaN or an infinity"
        );
        let (dl, dg) = (relative_gap(&l_cpu, &l_gpu), relative_gap(&g_cpu, &g_gpu));
        let scale = g_cpu.iter().fold(0f32, |m, v| m.max(v.abs()));
        let far = g_cpu
            .iter()
            .zip(&g_gpu)
            .filter(|(a, b)| (*a - *b).abs() > 1e-3 * scale)
            .count();
        eprintln!(
            "{name}: logits {dl:.2e}, input gradient {dg:.2e} ({far} of {} values more than 1e-3 \
             apart)",
            g_cpu.len()
        );
        assert!(dl <= 1e-3, "{name}: logits differ by {dl:e} (relative)");
        assert!(
            far * 100 <= g_cpu.len(),
            "{name}: {far} of {} input-gradient values differ by more than 1e-3 of the largest \
             (largest gap {dg:e})",
            g_cpu.len()
        );
        // One unit's piece is a small part of the whole gradient (3.5e-3 measured); a wrong value
        // confined to a few pixels, which the count lets through, is not.
        assert!(
            dg <= 5e-2,
            "{name}: input gradients differ by {dg:e} of the largest somewhere"
        );
    }
}

/// The MNIST-sized zoo models.
#[test]
fn zoo_models_agree_with_flex_on_forward_and_input_gradient() {
    models_agree_with_flex(&["seed-net", "mlp", "small-cnn", "madry-cnn"]);
}

/// The CIFAR-sized zoo models, at their real channel counts (wrn-28-10: 36.5 million parameters,
/// 26 s on lavapipe on a 2-core machine).
#[test]
fn cifar_zoo_models_agree_with_flex_on_forward_and_input_gradient() {
    models_agree_with_flex(&["preact-resnet18", "wrn-28-10"]);
}

/// The radius each norm is attacked at.
fn eps_of(norm: Norm) -> f64 {
    match norm {
        Norm::Linf => 0.3,
        Norm::L2 => 2.0,
        Norm::L1 => 10.0,
    }
}

/// One step of `name` in `norm` (None: the combination is refused, on every backend alike).
fn one_step(name: &str, norm: Norm, device: &Device) -> Option<(Vec<f32>, Vec<f32>, AttackConfig)> {
    let overrides = AttackOverrides {
        norm: Some(norm),
        eps: Some(eps_of(norm)),
        steps: Some(1),
        restarts: Some(1),
        seed: Some(5),
        ..AttackOverrides::NONE
    };
    let config = AttackConfig::from_overrides(name, &overrides).ok()?;
    let attack = config.init().ok()?;
    let data = images(8);
    let indices: Vec<usize> = (0..8).collect();
    let (x, y) = data.batch(&indices, device);
    let model = model_on("small-cnn", 2, device).valid();
    let adv = attack.perturb(&model, x.clone(), y).unwrap();
    Some((values(x), values(adv), config))
}

/// Every attack, by every name the registry knows, one step in every norm it accepts: inside
/// the threat model's ball around the clean input and inside the box on the GPU, and near flex's
/// step. A signed-gradient step flips where a gradient component is within rounding of zero, so
/// at most 1 % of the values may differ by more than 1e-3 (measured: docs/backends.md).
#[test]
fn one_step_of_every_attack_in_every_norm_agrees_with_flex() {
    let gpu = gpu();
    let mut checked = 0;
    for name in ATTACKS.iter().flat_map(|e| e.names()) {
        for norm in [Norm::Linf, Norm::L2, Norm::L1] {
            let Some((x, cpu_adv, config)) = one_step(name, norm, &cpu()) else {
                continue;
            };
            let (_, gpu_adv, _) = one_step(name, norm, &gpu).expect("accepted on flex");
            let threat = config.init().unwrap().threat();
            let n_pixels = x.len() / 8;
            for j in 0..8 {
                let r = j * n_pixels..(j + 1) * n_pixels;
                assert!(
                    gpu_adv[r.clone()].iter().all(|v| (0.0..=1.0).contains(v)),
                    "{name} {norm}: sample {j} leaves the box"
                );
                if let Some(t) = threat.filter(|_| !matches!(name, "cw-l2" | "cw" | "deepfool")) {
                    assert!(
                        within_threat(t.norm, t.eps, (0.0, 1.0), &x[r.clone()], &gpu_adv[r]),
                        "{name} {norm}: sample {j} leaves the eps-ball"
                    );
                }
            }
            let far = cpu_adv
                .iter()
                .zip(&gpu_adv)
                .filter(|(a, b)| (*a - *b).abs() > 1e-3)
                .count();
            eprintln!(
                "{name} {norm}: {far} of {} values differ by > 1e-3",
                x.len()
            );
            assert!(
                far * 100 <= x.len(),
                "{name} {norm}: {far} of {} values differ from flex's by more than 1e-3",
                x.len()
            );
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} attack/norm pairs ran");
}

fn method_config(method: Method) -> TrainConfig {
    TrainConfig::new()
        .with_model("small-cnn".into())
        .with_epochs(1)
        .with_batch_size(16)
        .with_eval_batch_size(16)
        .with_optimizer(OptimizerKind::Sgd)
        .with_lr(0.05)
        .with_robust_valid_size(8)
        .with_seed(4)
        .with_method(method)
}

fn train_on(
    cfg: &TrainConfig,
    kind: BackendKind,
    dir: &Path,
    resume: bool,
    stop: Option<usize>,
) -> Model {
    let data = images(48);
    let (train, valid) = data.split(16, 0).unwrap();
    let devices = DeviceSet::new(vec![match kind {
        BackendKind::Wgpu => gpu(),
        _ => cpu(),
    }])
    .unwrap();
    // The backends' own generators draw different initial weights from one seed (burn promises
    // a seed's stream per backend, not across them), so both runs start from flex's draw.
    let bytes =
        torch::to_safetensors_bytes(&Model::init_seeded(&cfg.model, &cpu(), cfg.seed).unwrap());
    let build = move |device: &Device| {
        torch::from_safetensors_bytes(
            Model::init(&cfg.model, device).unwrap(),
            &bytes,
            Path::new("fixed.safetensors"),
        )
        .unwrap()
    };
    fit_network(
        cfg,
        &build,
        &train,
        &valid,
        &devices,
        &FitOptions {
            run_dir: dir.to_path_buf(),
            resume,
            progress: false,
            stop_after_epoch: stop,
        },
    )
    .unwrap()
    .model
}

/// The change training made to the weights: `trained` minus `cfg`'s initial weights (flex's draw,
/// which both backends start from), per parameter (PyTorch key, module order). Compared instead of
/// the weights themselves, in which a wrong step would hide: two SGD steps move the weights by a
/// few percent of their magnitude.
fn named_update(cfg: &TrainConfig, trained: &Model) -> Vec<(String, Vec<f32>)> {
    let init = torch::state_dict(&Model::init_seeded(&cfg.model, &cpu(), cfg.seed).unwrap());
    torch::state_dict(trained)
        .into_iter()
        .zip(init)
        .map(|(w, w0)| {
            let delta = w.data.iter().zip(&w0.data).map(|(w, w0)| w - w0).collect();
            (w.key, delta)
        })
        .collect()
}

/// [`named_update`], all parameters in one vector.
fn flat(update: &[(String, Vec<f32>)]) -> Vec<f32> {
    update.iter().flat_map(|(_, u)| u.iter().copied()).collect()
}

fn update(cfg: &TrainConfig, trained: &Model) -> Vec<f32> {
    flat(&named_update(cfg, trained))
}

/// Each parameter's largest difference between two updates, relative to that parameter's own
/// largest update in `a`, by name.
fn update_gaps(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> Vec<(String, f32)> {
    a.iter()
        .zip(b)
        .map(|((name, ua), (_, ub))| (name.clone(), relative_gap(ua, ub)))
        .collect()
}

fn show(gaps: &[(String, f32)]) -> String {
    gaps.iter()
        .map(|(name, gap)| format!("{name} {gap:.1e}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One epoch of two SGD steps of every training method on both backends: the weight updates agree
/// to `tolerance` of their largest magnitude. Standard training sums the same gradients in
/// another order (1e-3); the adversarial methods' crafted examples take signed steps, which flip
/// where an input-gradient component is within rounding of zero, moving that pixel by twice the
/// step, so their updates may differ more (measured in docs/backends.md). A wrong step (a sign, a
/// missing term) differs by the order of the update itself. Every method runs before the test
/// fails, and a failure names each parameter's own gap (its largest difference relative to its
/// largest update), which says where a wrong step entered.
#[test]
fn a_training_step_of_every_method_agrees_with_flex() {
    let eps = 0.3;
    let mut failures = Vec::new();
    for (method, tolerance) in [
        (Method::Standard, 1e-3),
        (Method::from_name("pgd-at", Some(eps)).unwrap(), 0.05),
        (Method::from_name("fgsm-rs", Some(eps)).unwrap(), 0.05),
        (Method::from_name("free-at", Some(eps)).unwrap(), 0.05),
        (Method::from_name("trades", Some(eps)).unwrap(), 0.05),
        (Method::from_name("mart", Some(eps)).unwrap(), 0.05),
    ] {
        let cfg = method_config(method.clone());
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let on_cpu = named_update(
            &cfg,
            &train_on(&cfg, BackendKind::Flex, a.path(), false, None),
        );
        let on_gpu = named_update(
            &cfg,
            &train_on(&cfg, BackendKind::Wgpu, b.path(), false, None),
        );
        let gap = relative_gap(&flat(&on_cpu), &flat(&on_gpu));
        let per_parameter = show(&update_gaps(&on_cpu, &on_gpu));
        eprintln!(
            "{}: weight updates {gap:.2e} ({per_parameter})",
            method.name()
        );
        if gap > tolerance {
            failures.push(format!(
                "{}: weight updates differ by {gap:e} of their largest (tolerance {tolerance}); \
                 per parameter: {per_parameter}",
                method.name()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A checkpoint written on the GPU resumes on the CPU and the other way round, and each run's
/// weight update ends within 1e-3 of the one that never changed backend's.
#[test]
fn a_checkpoint_resumes_on_the_other_backend() {
    // The last epoch's weights, so the result is the resumed epoch's (the best epoch could be the
    // first, trained before the switch).
    let cfg = method_config(Method::Standard)
        .with_epochs(2)
        .with_keep(Keep::Last);
    let whole = tempfile::tempdir().unwrap();
    let reference = update(
        &cfg,
        &train_on(&cfg, BackendKind::Flex, whole.path(), false, None),
    );
    for (first, then) in [
        (BackendKind::Wgpu, BackendKind::Flex),
        (BackendKind::Flex, BackendKind::Wgpu),
    ] {
        let dir = tempfile::tempdir().unwrap();
        train_on(&cfg, first, dir.path(), false, Some(1));
        let resumed = update(&cfg, &train_on(&cfg, then, dir.path(), true, None));
        let gap = relative_gap(&reference, &resumed);
        eprintln!("{first} then {then}: weight updates {gap:.2e}");
        assert!(
            gap <= 1e-3,
            "{first} then {then}: weight updates differ by {gap:e} of their largest"
        );
    }
}

/// The evaluator's quick cascade on eight images: the same clean predictions, robust accuracy
/// within one image.
#[test]
fn the_evaluator_agrees_with_flex_on_a_handful_of_images() {
    let data = images(8);
    let run = |device: &Device| {
        let model = model_on("small-cnn", 2, device);
        let mut config = RobustEvalConfig::preset(Preset::Quick, Norm::Linf, 0.1, 0);
        (config.probe_size, config.probe_queries) = (4, 20);
        let out = tempfile::tempdir().unwrap();
        evaluate_robustness(
            &model,
            &data,
            &config,
            &RobustEvalOptions::default(),
            out.path(),
            device,
        )
        .unwrap()
    };
    let (c, g) = (run(&cpu()), run(&gpu()));
    assert_eq!(c.clean_acc, g.clean_acc);
    assert!(
        (c.robust_acc - g.robust_acc).abs() <= 1.0 / 8.0 + 1e-12,
        "robust {} on flex, {} on wgpu",
        c.robust_acc,
        g.robust_acc
    );
}
