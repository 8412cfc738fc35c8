//! A network defined here, as a user defines one, through the public API: trained with PGD-AT and
//! with TRADES (a regularizer and AWP selected by its own parameter paths), killed and resumed
//! exactly, evaluated by the evaluator, and run as a whole job with a report.

use crate::common::{devices, opts};

use bulwark_attack_core::{Network, Norm, Preset};
use bulwark_data::ImageDataset;
use bulwark_eval::{RobustEvalConfig, RobustEvalOptions, evaluate, evaluate_robustness};
use bulwark_models::{bpk, init_seeded_with};
use bulwark_reg_core::{ParamSelection, Penalty, PenaltyKind};
use bulwark_trainer::{
    AwpSpec, FitOptions, FitOutcome, JobData, JobOptions, Method, OptimizerKind, TrainConfig,
    TrainError, fit_network, run_network_job,
};
use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d, Relu,
};
use burn::tensor::{Device, Tensor};

/// A small MNIST network with BatchNorm and dropout, so that training and inference behave
/// differently and the trainer must switch modes right.
#[derive(Module, Debug)]
pub(crate) struct BnNet {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    dropout: Dropout,
    head: Linear,
    relu: Relu,
}

impl BnNet {
    pub(crate) fn new(device: &Device) -> Self {
        let conv = |i, o| {
            Conv2dConfig::new([i, o], [3, 3])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device)
        };
        Self {
            conv1: conv(1, 8),
            bn1: BatchNormConfig::new(8).init(device),
            conv2: conv(8, 16),
            dropout: DropoutConfig::new(0.2).init(),
            head: LinearConfig::new(16 * 7 * 7, 10).init(device),
            relu: Relu::new(),
        }
    }
}

impl Network for BnNet {
    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.relu.forward(self.bn1.forward(self.conv1.forward(x)));
        let x = self.relu.forward(self.conv2.forward(x));
        self.head
            .forward(self.dropout.forward(x.flatten::<2>(1, 3)))
    }
}

fn config(method: Method) -> TrainConfig {
    TrainConfig::new()
        .with_model("bn-net".into())
        .with_epochs(3)
        .with_batch_size(50)
        .with_eval_batch_size(500)
        .with_optimizer(OptimizerKind::Adam)
        .with_lr(2e-3)
        .with_method(method)
        .with_robust_valid_size(200)
        // By the network's own parameter paths.
        .with_penalties(vec![
            Penalty::new(PenaltyKind::L2, 1e-4).on(ParamSelection::paths(["head.weight"])),
        ])
        .with_seed(5)
}

fn fit_bn(
    cfg: &TrainConfig,
    train: &ImageDataset,
    valid: &ImageDataset,
    o: &FitOptions,
) -> Result<FitOutcome<BnNet>, TrainError> {
    fit_network(cfg, &BnNet::new, train, valid, &devices(), o)
}

/// Every float tensor (parameters and BatchNorm statistics), in module order.
fn tensors(model: &BnNet) -> Vec<f32> {
    struct Collect(Vec<f32>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            self.0.extend(
                p.val()
                    .inner()
                    .into_data()
                    .convert::<f32>()
                    .try_to_vec::<f32>()
                    .unwrap(),
            );
        }
    }
    let mut c = Collect(Vec::new());
    model.visit(&mut c);
    c.0
}

#[test]
fn a_users_network_trains_adversarially_resumes_exactly_and_is_evaluated() {
    let (train, valid, test) = crate::common::mnist(2_000, 200);
    let pgd_at = Method::PgdAt {
        eps: 0.1,
        steps: 5,
        step_size: None,
        random_start: true,
    };
    let trades = Method::Trades {
        eps: 0.1,
        steps: 3,
        step_size: None,
        beta: 3.0,
    };
    let device = devices().main().clone().inner();
    let fresh = init_seeded_with(&device, 5, BnNet::new);
    for method in [pgd_at, trades] {
        let mut cfg = config(method);
        if matches!(cfg.method, Method::Trades { .. }) {
            cfg = cfg.with_awp(Some(AwpSpec {
                gamma: 0.005,
                warmup_epochs: 1,
                select: ParamSelection::paths(["conv*.weight", "head.weight"]),
            }));
        }
        let name = cfg.method.name();
        let whole = tempfile::tempdir().unwrap();
        let a = fit_bn(&cfg, &train, &valid, &opts(whole.path(), false, None)).unwrap();
        assert!(a.finished && a.history.len() == 3, "{name}");
        // Killed after its first epoch's checkpoint, then resumed: the same run, to the bit,
        // while another thread keeps re-seeding and drawing from the process's shared generator
        // (dropout draws from it) the way Bulwark's own code does, under its lock.
        let stop = std::sync::atomic::AtomicBool::new(false);
        let (part, b) = std::thread::scope(|scope| {
            scope.spawn(|| {
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    bulwark_models::with_seeded_device(&device, i, || {
                        Tensor::<1>::random([64], burn::tensor::Distribution::Default, &device)
                            .sum()
                            .into_scalar::<f32>()
                    });
                    i += 1;
                }
            });
            let killed = tempfile::tempdir().unwrap();
            let part = fit_bn(&cfg, &train, &valid, &opts(killed.path(), false, Some(1)));
            let b = fit_bn(&cfg, &train, &valid, &opts(killed.path(), true, None));
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            (part.unwrap(), b.unwrap())
        });
        assert!(!part.finished, "{name}");
        assert_eq!(b.resumed_from, Some(1), "{name}");
        let json = |h: &[bulwark_trainer::EpochMetrics]| {
            h.iter()
                .map(|m| (m.train_loss, m.valid_acc, m.valid_robust_acc, m.penalty))
                .collect::<Vec<_>>()
        };
        assert_eq!(json(&a.history), json(&b.history), "{name}");
        assert_eq!(tensors(&a.model), tensors(&b.model), "{name}");
        // Training ran BatchNorm in training mode (its running statistics moved from their
        // initial values) and the returned model is in inference mode (dropout off: two
        // evaluations agree, and agree with the best epoch's saved weights).
        let mean = a
            .model
            .bn1
            .running_mean
            .value()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert!(
            mean.iter().any(|&m| m != 0.0),
            "{name}: running statistics never updated"
        );
        let first = evaluate(&a.model.classifier(), &test, 100, &device);
        let again = evaluate(&a.model.classifier(), &test, 100, &device);
        assert_eq!(first.predictions, again.predictions);
        assert!(
            first.accuracy > 0.7,
            "{name}: clean accuracy {}",
            first.accuracy
        );
        let best = bpk::load_bpk(BnNet::new(&device), &whole.path().join("best.bpk")).unwrap();
        assert_eq!(tensors(&best), tensors(&a.model), "{name}: best.bpk");
        assert_ne!(
            tensors(&fresh),
            tensors(&a.model),
            "{name}: nothing was learned"
        );

        // The evaluator, on the user's network.
        let out = tempfile::tempdir().unwrap();
        let mut quick = RobustEvalConfig::preset(Preset::Quick, Norm::Linf, 0.1, 0);
        quick.probe_size = 20;
        let report = evaluate_robustness(
            &a.model.classifier(),
            &test,
            &quick,
            &RobustEvalOptions {
                progress: false,
                resume: false,
                identity: format!("bn-net {name}"),
                examples: 0,
                others: Vec::new(),
                report: None,
                verified: None,
            },
            out.path(),
            &device,
        )
        .unwrap();
        eprintln!(
            "{name}: clean {:.3} robust {:.3} (quick, eps 0.1, {} images)",
            report.clean_acc, report.robust_acc, report.n_examples
        );
        assert_eq!(report.clean_acc, first.accuracy, "{name}");
        assert!(
            report.robust_acc > 0.4 && report.robust_acc < report.clean_acc,
            "{name}: robust accuracy {} (clean {})",
            report.robust_acc,
            report.clean_acc
        );
    }
}

#[test]
fn a_checkpoint_of_another_network_name_is_refused() {
    let (train, valid, _) = crate::common::mnist(1_200, 10);
    let cfg = config(Method::Standard).with_epochs(2);
    let dir = tempfile::tempdir().unwrap();
    fit_bn(&cfg, &train, &valid, &opts(dir.path(), false, Some(1))).unwrap();
    let renamed = cfg.clone().with_model("other-net".into());
    let e = fit_bn(&renamed, &train, &valid, &opts(dir.path(), true, None)).unwrap_err();
    assert!(e.to_string().contains("holds model `bn-net`"), "{e}");
}

#[test]
fn a_users_network_runs_as_a_whole_job_with_a_report() {
    let (train, valid, test) = crate::common::mnist(3_000, 100);
    let train = train.concat(&valid).unwrap();
    let cfg = config(Method::Standard)
        .with_epochs(2)
        .with_valid_size(500)
        .with_dataset("mnist-subset".into());
    let dir = tempfile::tempdir().unwrap();
    let mut job = JobOptions::new(dir.path().to_path_buf());
    job.progress = false;
    let outcome = run_network_job(
        &cfg,
        &BnNet::new,
        JobData {
            train,
            test,
            source: "the first 3,000 MNIST training images".into(),
        },
        &devices(),
        &job,
    )
    .unwrap();
    let accuracy = outcome.test.unwrap().accuracy;
    assert!(accuracy > 0.8, "test accuracy {accuracy}");
    let report = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(
        report.contains("bn-net") && report.contains("mnist-subset"),
        "{report}"
    );
    // The exports load back: burnpack into the network, safetensors with PyTorch's names.
    let device = devices().main().clone().inner();
    let back = bpk::load_bpk(BnNet::new(&device), &dir.path().join("model.bpk")).unwrap();
    let st = std::fs::read(dir.path().join("model.safetensors")).unwrap();
    let keys = safetensors::SafeTensors::deserialize(&st)
        .unwrap()
        .names()
        .into_iter()
        .cloned()
        .collect::<std::collections::BTreeSet<_>>();
    for key in [
        "conv1.weight",
        "bn1.weight",
        "bn1.bias",
        "bn1.running_mean",
        "bn1.num_batches_tracked",
        "head.weight",
    ] {
        assert!(keys.contains(key), "{key} missing from {keys:?}");
    }
    let reread = bulwark_models::torch::load_safetensors(
        BnNet::new(&device),
        &dir.path().join("model.safetensors"),
    )
    .unwrap();
    assert_eq!(tensors(&reread), tensors(&back));
}
