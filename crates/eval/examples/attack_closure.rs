//! Attacking a model that is not a burn module at all: any closure `Fn(Tensor<4>) -> Tensor<2>`
//! that maps images to logits with differentiable burn operations is a `Classifier`.
//!
//! The model here is a nearest-class-mean template matcher built from real MNIST training
//! images: the logit of class `k` is `-‖x − μ_k‖² / 2`, with `μ_k` the mean of the class's
//! training images. It is attacked with FGSM and PGD-20 (L-inf eps 0.1) on the first 1,000 test
//! images through `attack_dataset`, the same runner `bulwark attack` uses.
//!
//! Run: `cargo run -p bulwark-eval --example attack_closure`

use anyhow::Result;
use bulwark_attack_core::{AttackConfig, AttackOptions, FgsmConfig, PgdConfig, ThreatModel};
use bulwark_data::{DatasetKind, FetchOptions, Split, fetch, load_split};
use bulwark_eval::{AttackRunOptions, attack_dataset, evaluate};
use burn::tensor::{Device, Tensor, TensorData};

fn main() -> Result<()> {
    let device = Device::flex();
    let dir = fetch(DatasetKind::Mnist, &FetchOptions::from_env())?;
    let train = load_split(DatasetKind::Mnist, Split::Train, &dir)?;
    let test = load_split(DatasetKind::Mnist, Split::Test, &dir)?.take(1_000);

    // Class means of all 60,000 training images, as a [784, 10] matrix.
    let pixels = train.image_size();
    let mut sums = vec![0f64; pixels * 10];
    let mut counts = [0usize; 10];
    for i in 0..train.len() {
        let k = usize::from(train.labels[i]);
        counts[k] += 1;
        for (p, &v) in train.image(i).iter().enumerate() {
            sums[p * 10 + k] += f64::from(v) / 255.0;
        }
    }
    let means: Vec<f32> = sums
        .iter()
        .enumerate()
        .map(|(j, s)| (s / counts[j % 10] as f64) as f32)
        .collect();
    let mu = Tensor::<2>::from_data(TensorData::new(means, [pixels, 10]), &device);
    let mu_sq = mu.clone().powf_scalar(2.0).sum_dim(0); // [1, 10]

    // -‖x − μ_k‖²/2 = x·μ_k − ‖μ_k‖²/2 − ‖x‖²/2; the last term is the same for every class.
    let model = move |x: Tensor<4>| -> Tensor<2> {
        let flat = x.flatten::<2>(1, 3);
        let mu = if flat.is_autodiff() {
            mu.clone().autodiff()
        } else {
            mu.clone()
        };
        let mu_sq = if flat.is_autodiff() {
            mu_sq.clone().autodiff()
        } else {
            mu_sq.clone()
        };
        flat.matmul(mu) - mu_sq / 2.0
    };

    let clean = evaluate(&model, &test, 500, &device);
    println!(
        "nearest-class-mean classifier on the first {} MNIST test images: {:.2}% clean",
        test.len(),
        100.0 * clean.accuracy
    );
    let threat = ThreatModel::linf(0.1);
    let attacks = [
        AttackConfig::Fgsm(FgsmConfig::new(threat)),
        AttackConfig::Pgd(
            PgdConfig::new(threat)
                .with_steps(20)
                .with_options(AttackOptions::new().with_random_start(true).with_seed(0)),
        ),
    ];
    let opts = AttackRunOptions {
        batch_size: 500,
        progress: false,
        examples: 0,
        state: None,
    };
    for attack in &attacks {
        let s = attack_dataset(&model, &test, attack, &opts, &device)?;
        println!(
            "{:<8} eps 0.1: robust accuracy {:.2}% of {} images (attack success rate {:.2}%)",
            s.label(),
            100.0 * s.robust_accuracy,
            s.n,
            100.0 * s.attack_success_rate
        );
    }
    Ok(())
}
