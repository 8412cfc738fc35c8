//! Interval bound propagation end to end on real MNIST: IBP training verifies test points at
//! eps 0.1 that no attack of the `standard` cascade breaks, the evaluation reports verified ≤
//! robust ≤ clean, the `verified-not-robust` check fires on a false claim, and a network that
//! does not bound itself is refused.

use bulwark_attack_core::sanity::FlagStatus;
use bulwark_attack_core::{Bounds, Interval, Network};
use bulwark_eval::{RobustEvalOptions, Verified, evaluate_robustness, verify_ibp};
use bulwark_trainer::{
    BackendKind, DeviceSet, FitOptions, Method, OptimizerKind, Schedule, TrainConfig, fit,
    fit_network,
};
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::{Device, Int, Tensor};

fn options(verified: Option<Verified>) -> RobustEvalOptions {
    RobustEvalOptions {
        progress: false,
        resume: false,
        identity: "ibp".into(),
        examples: 0,
        others: Vec::new(),
        report: None,
        verified,
    }
}

#[test]
fn ibp_training_verifies_points_no_attack_breaks() {
    let (train, valid, test) = crate::common::mnist(8_000, 200);
    let eps = 0.1;
    let cfg = TrainConfig::new()
        .with_model("small-cnn".into())
        .with_epochs(4)
        .with_batch_size(50)
        .with_optimizer(OptimizerKind::Adam)
        .with_lr(1e-3)
        .with_schedule(Schedule::Constant)
        .with_method(Method::Ibp {
            eps: 1.1 * eps,
            kappa_end: 0.5,
        })
        .with_eps_warmup_epochs(2.0)
        .with_robust_valid_size(200)
        .with_seed(1);
    let devices = DeviceSet::single(BackendKind::Flex).unwrap();
    let device = devices.main().clone();
    let run = tempfile::tempdir().unwrap();
    let opts = FitOptions {
        run_dir: run.path().to_path_buf(),
        resume: false,
        progress: false,
        stop_after_epoch: None,
    };
    let out = fit(&cfg, &train, &valid, &devices, &opts).unwrap();
    // The training batches' verified share (worst-case logits' class = label) is recorded.
    let last = out.history.last().unwrap();
    assert!(last.train_adv_acc.is_some_and(|a| a > 0.5), "{last:?}");

    let proved = verify_ibp(&out.model, &test, eps, Bounds::new(), 100, &device).unwrap();
    let verified_share = proved.iter().filter(|&&p| p).count() as f64 / test.len() as f64;
    assert!(verified_share > 0.5, "verified {verified_share}");
    let dir = tempfile::tempdir().unwrap();
    let report = evaluate_robustness(
        &out.model.classifier(),
        &test,
        &crate::evaluation::light(eps, &[]),
        &options(Some(Verified {
            method: "IBP".into(),
            verified: proved.clone(),
        })),
        dir.path(),
        &device,
    )
    .unwrap();
    let v = report.verified.as_ref().unwrap();
    assert_eq!(v.contradicted, 0, "{report:?}");
    assert!((v.verified_acc - verified_share).abs() < 1e-12);
    assert!(v.verified_acc <= report.robust_acc && report.robust_acc <= report.clean_acc);
    let flag = report
        .flags
        .iter()
        .find(|f| f.check == "verified-not-robust")
        .unwrap();
    assert_eq!(flag.status, FlagStatus::Ok, "{flag:?}");

    // A false claim (every point "verified") is caught: some are misclassified or broken.
    let dir = tempfile::tempdir().unwrap();
    let lie = evaluate_robustness(
        &out.model.classifier(),
        &test,
        &crate::evaluation::light(eps, &[]),
        &options(Some(Verified {
            method: "a wrong verifier".into(),
            verified: vec![true; test.len()],
        })),
        dir.path(),
        &device,
    )
    .unwrap();
    let flag = lie
        .flags
        .iter()
        .find(|f| f.check == "verified-not-robust")
        .unwrap();
    assert_eq!(flag.status, FlagStatus::Raised, "{flag:?}");
    assert!(lie.verified.unwrap().contradicted > 0);
}

/// A network that does not implement `margin_bounds`.
#[derive(Module, Debug)]
struct Opaque {
    fc: Linear,
}

impl Network for Opaque {
    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.fc.forward(x.flatten::<2>(1, 3))
    }
}

#[test]
fn ibp_refuses_a_network_that_does_not_bound_itself() {
    let (train, valid, _) = crate::common::mnist(1_200, 10);
    let cfg = TrainConfig::new()
        .with_model("opaque".into())
        .with_epochs(1)
        .with_method(Method::Ibp {
            eps: 0.1,
            kappa_end: 0.5,
        });
    let devices = DeviceSet::single(BackendKind::Flex).unwrap();
    let run = tempfile::tempdir().unwrap();
    let opts = FitOptions {
        run_dir: run.path().to_path_buf(),
        resume: false,
        progress: false,
        stop_after_epoch: None,
    };
    let build = |d: &Device| Opaque {
        fc: LinearConfig::new(784, 10).init(d),
    };
    let e = fit_network(&cfg, &build, &train, &valid, &devices, &opts)
        .unwrap_err()
        .to_string();
    assert!(e.contains("margin_bounds") && e.contains("Opaque"), "{e}");

    // A network that bounds itself but computes differently in training (dropout): its IBP
    // loss would bound another network than the one trained.
    let build = |d: &Device| Dropped {
        fc: LinearConfig::new(784, 10).init(d),
        dropout: DropoutConfig::new(0.5).init(),
    };
    let e = fit_network(&cfg, &build, &train, &valid, &devices, &opts)
        .unwrap_err()
        .to_string();
    assert!(e.contains("computes differently in training"), "{e}");

    // Mixing is refused with IBP: the margins it bounds are the label's.
    let mixed = cfg
        .clone()
        .with_model("small-cnn".into())
        .with_mixing(bulwark_trainer::Mixing::Mixup { alpha: 0.2 });
    let e = mixed.validate().unwrap_err().to_string();
    assert!(e.contains("do not combine with ibp"), "{e}");
}

/// Bounds itself (a linear layer) but applies dropout in training.
#[derive(Module, Debug)]
struct Dropped {
    fc: Linear,
    dropout: Dropout,
}

impl Network for Dropped {
    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.fc.forward(self.dropout.forward(x.flatten::<2>(1, 3)))
    }

    fn margin_bounds(&self, x: Interval<4>, y: Tensor<1, Int>) -> Option<Tensor<2>> {
        Some(x.flatten::<2>(1, 3).margins(&self.fc, y))
    }
}
