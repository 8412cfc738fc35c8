//! Behaviour every attack must have: eps = 0 is the identity, zero gradients give no NaN, batches
//! equal their samples, seeds reproduce, targeted attacks move toward the target, restarts and
//! early stopping keep what they promise, the model is left untouched, and bad input is refused.

use crate::common::*;
use bulwark_attack_core::*;
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

const N: usize = 12;
const K: usize = 5;

fn data(seed: u64, b: usize) -> (Vec<f32>, Vec<i64>) {
    random_data(seed, b, N, K)
}

/// Every registered attack and alias that supports `norm`, at a few steps: a new registry entry
/// joins these tests by itself.
fn all_attacks(norm: Norm, eps: f64) -> Vec<AttackConfig> {
    let given = |steps: Option<usize>| AttackOverrides {
        norm: Some(norm),
        eps: Some(eps),
        steps,
        ..AttackOverrides::NONE
    };
    ATTACKS
        .iter()
        .flat_map(AttackEntry::names)
        .filter_map(|name| {
            let steps = if name == "square" { 30 } else { 5 };
            let mut c = AttackConfig::from_overrides(name, &given(Some(steps)))
                .or_else(|_| AttackConfig::from_overrides(name, &given(None)))
                .ok()?;
            match &mut c {
                AttackConfig::Pgd(p) => p.options.restarts = 2,
                AttackConfig::Apgd(a) => a.large_reps = norm == Norm::L1,
                AttackConfig::CwL2(c) => c.binary_search_steps = 2,
                _ => {}
            }
            c.init().is_ok().then_some(c)
        })
        .collect()
}

#[test]
fn eps_zero_returns_the_input() {
    let dev = device();
    let model = random_mlp(&mut TestRng(1), N, 16, K, &dev);
    let (x, y) = data(2, 6);
    for norm in [Norm::Linf, Norm::L2, Norm::L1] {
        for config in all_attacks(norm, 0.0) {
            let attack = config.init().unwrap();
            let adv = attack
                .perturb(&model, matrix(x.clone(), 6, N, &dev), ints(y.clone(), &dev))
                .unwrap();
            assert_eq!(host(adv), x, "{} {norm}", attack.name());
        }
    }
}

#[test]
fn zero_gradients_give_no_nan() {
    let dev = device();
    // The logits do not depend on the input at all (but stay on its graph)...
    let flat = |x: Tensor<2>| x.clone().slice([0..x.dims()[0], 0..K]) * 0.0 + 1.0;
    // ...or depend on it through a threshold, which cuts the autodiff graph.
    let thresholded = |x: Tensor<2>| {
        let b = x.dims()[0];
        x.greater_elem(0.5).float().slice([0..b, 0..K]) * 0.0 + 1.0
    };
    let (x, y) = data(3, 4);
    let models: [&dyn Fn(Tensor<2>) -> Tensor<2>; 2] = [&flat, &thresholded];
    for (norm, flat) in [Norm::Linf, Norm::L2, Norm::L1]
        .into_iter()
        .flat_map(|n| models.iter().map(move |m| (n, m)))
    {
        for config in all_attacks(norm, 0.3) {
            let attack = config.init().unwrap();
            let adv = host(
                attack
                    .perturb(&flat, matrix(x.clone(), 4, N, &dev), ints(y.clone(), &dev))
                    .unwrap(),
            );
            assert!(
                adv.iter().all(|v| v.is_finite()),
                "{} {norm}: NaN",
                attack.name()
            );
            // Square needs no gradient: it searches at random by design.
            if !attack.options().random_start && !config.is_black_box() {
                assert_eq!(adv, x, "{} {norm}: moved without a gradient", attack.name());
            }
        }
    }
}

#[test]
fn a_batch_equals_its_samples_attacked_alone_and_seeds_reproduce() {
    let dev = device();
    let model = random_linear(&mut TestRng(4), N, K, &dev);
    let (x, y) = data(5, 6);
    let options = AttackOptions::new()
        .with_random_start(true)
        .with_restarts(3)
        .with_seed(9);
    let cases = [Norm::Linf, Norm::L2, Norm::L1]
        .into_iter()
        .flat_map(|norm| {
            let t = ThreatModel::new(norm, 0.2 * if norm == Norm::L1 { 5.0 } else { 1.0 });
            let mut v = vec![
                (
                    norm,
                    AttackConfig::Pgd(PgdConfig::new(t).with_steps(5).with_options(options)),
                ),
                (
                    norm,
                    AttackConfig::Apgd(
                        ApgdConfig::new(t)
                            .with_steps(8)
                            .with_large_reps(norm == Norm::L1)
                            .with_options(options),
                    ),
                ),
            ];
            if norm != Norm::L1 {
                v.push((
                    norm,
                    AttackConfig::Square(
                        SquareConfig::new(t)
                            .with_queries(40)
                            .with_options(options.with_loss(LossKind::CwMargin)),
                    ),
                ));
            }
            v
        });
    for (norm, config) in cases {
        let attack = config.init().unwrap();
        let whole = host(
            attack
                .perturb(&model, matrix(x.clone(), 6, N, &dev), ints(y.clone(), &dev))
                .unwrap(),
        );
        let again = host(
            attack
                .perturb(&model, matrix(x.clone(), 6, N, &dev), ints(y.clone(), &dev))
                .unwrap(),
        );
        assert_eq!(whole, again, "{norm}: same seed, different result");
        for i in (0..6).rev() {
            let one = attack
                .perturb(
                    &model,
                    matrix(x[i * N..(i + 1) * N].to_vec(), 1, N, &dev),
                    ints(vec![y[i]], &dev),
                )
                .unwrap();
            let one = host(one);
            for (a, b) in one.iter().zip(&whole[i * N..(i + 1) * N]) {
                assert!(
                    (a - b).abs() <= 1e-6,
                    "{norm}: sample {i} alone differs: {a} vs {b}"
                );
            }
        }
        let other_seed = PgdConfig::new(ThreatModel::new(norm, 0.2))
            .with_steps(1)
            .with_step_size(Some(1e-9))
            .with_options(AttackOptions::new().with_random_start(true).with_seed(10))
            .init()
            .unwrap();
        let different = host(
            other_seed
                .perturb(&model, matrix(x.clone(), 6, N, &dev), ints(y.clone(), &dev))
                .unwrap(),
        );
        assert_ne!(
            different, whole,
            "{norm}: another seed gave the same random start"
        );
    }
}

#[test]
fn targeted_attacks_move_toward_the_target() {
    let dev = device();
    let model = random_linear(&mut TestRng(6), N, K, &dev);
    let (x, y) = data(7, 8);
    let targets: Vec<i64> = y.iter().map(|&l| (l + 1) % K as i64).collect();
    let logit_gap = |x: &[f32]| -> Vec<f32> {
        let z = host(model(matrix(x.to_vec(), 8, N, &dev)));
        (0..8)
            .map(|i| z[i * K + targets[i] as usize] - z[i * K + y[i] as usize])
            .collect()
    };
    let before = logit_gap(&x);
    for norm in [Norm::Linf, Norm::L2, Norm::L1] {
        for loss in [LossKind::CrossEntropy, LossKind::CwMargin, LossKind::Dlr] {
            let eps = match norm {
                Norm::Linf => 0.05,
                Norm::L2 => 0.2,
                Norm::L1 => 0.5,
            };
            let options = AttackOptions::new()
                .with_targeting(Targeting::Given)
                .with_loss(loss);
            let attack = PgdConfig::new(ThreatModel::new(norm, eps))
                .with_steps(10)
                .with_options(options)
                .init()
                .unwrap();
            let adv = attack
                .perturb_targeted(
                    &model,
                    matrix(x.clone(), 8, N, &dev),
                    ints(y.clone(), &dev),
                    ints(targets.clone(), &dev),
                )
                .unwrap();
            let after = logit_gap(&host(adv));
            for i in 0..8 {
                assert!(
                    after[i] > before[i],
                    "{norm} {loss:?}: sample {i} moved away from its target"
                );
            }
        }
    }
    // With a large eps every targeted attack reaches its target.
    for targeting in [Targeting::Random, Targeting::LeastLikely] {
        let options = AttackOptions::new().with_targeting(targeting);
        let attack = PgdConfig::new(ThreatModel::linf(1.0))
            .with_steps(20)
            .with_options(options)
            .init()
            .unwrap();
        let adv = host(
            attack
                .perturb(&model, matrix(x.clone(), 8, N, &dev), ints(y.clone(), &dev))
                .unwrap(),
        );
        let z = host(model(matrix(adv, 8, N, &dev)));
        let clean = host(model(matrix(x.clone(), 8, N, &dev)));
        let pred = argmax(&z, K);
        for i in 0..8 {
            assert_ne!(
                pred[i] as i64, y[i],
                "{targeting:?}: sample {i} still has its label"
            );
            if targeting == Targeting::LeastLikely {
                let row = &clean[i * K..(i + 1) * K];
                let ll = (0..K)
                    .filter(|&c| c as i64 != y[i])
                    .min_by(|&a, &b| row[a].total_cmp(&row[b]))
                    .unwrap();
                assert_eq!(
                    pred[i], ll,
                    "sample {i} did not reach the least likely class"
                );
            }
        }
    }
}

#[test]
fn restarts_and_early_stop_never_lose_a_success() {
    let dev = device();
    let model = random_mlp(&mut TestRng(8), N, 24, K, &dev);
    let (x, y) = data(9, 32);
    let fooled = |adv: Vec<f32>| -> Vec<bool> {
        let pred = argmax(&host(model(matrix(adv, 32, N, &dev))), K);
        pred.iter().zip(&y).map(|(&p, &l)| p as i64 != l).collect()
    };
    let pgd = |restarts: usize, early_stop: bool| {
        PgdConfig::new(ThreatModel::linf(0.08))
            .with_steps(10)
            .with_options(
                AttackOptions::new()
                    .with_random_start(true)
                    .with_restarts(restarts)
                    .with_early_stop(early_stop)
                    .with_seed(3),
            )
            .init()
            .unwrap()
    };
    let one = fooled(host(
        pgd(1, false)
            .perturb(
                &model,
                matrix(x.clone(), 32, N, &dev),
                ints(y.clone(), &dev),
            )
            .unwrap(),
    ));
    let five = fooled(host(
        pgd(5, false)
            .perturb(
                &model,
                matrix(x.clone(), 32, N, &dev),
                ints(y.clone(), &dev),
            )
            .unwrap(),
    ));
    for i in 0..32 {
        assert!(
            !one[i] || five[i],
            "sample {i}: fooled with 1 restart but not with 5"
        );
    }
    // With early stop, any sample fooled at some step is fooled by the result.
    let mut ever = [false; 32];
    let attack = pgd(1, true);
    let adv = {
        let mut observe = |_: &Tensor<2>, a: &Tensor<2>| {
            for (e, f) in ever.iter_mut().zip(fooled(host(a.clone()))) {
                *e |= f;
            }
        };
        attack
            .run(
                &model,
                matrix(x.clone(), 32, N, &dev),
                ints(y.clone(), &dev),
                None,
                &mut observe,
            )
            .unwrap()
    };
    let last = fooled(host(adv));
    assert!(ever.iter().any(|&e| e), "the test needs some successes");
    for i in 0..32 {
        assert!(
            !ever[i] || last[i],
            "sample {i} was fooled during the run but not by the result"
        );
    }
}

/// Collects every float parameter's values.
struct Snapshot(Vec<Vec<f32>>);

impl ModuleVisitor for Snapshot {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push(param.val().try_into_vec_as::<f32>().unwrap());
    }
}

#[test]
fn attacks_leave_the_model_untouched_and_build_no_parameter_gradients() {
    // A BatchNorm model on an autodiff device, in training mode: the attack must still use the
    // running statistics and must not update them or the weights.
    let dev = device().autodiff();
    let model = BnCnn::new(3, 32, 1, &dev);
    let snapshot = |m: &BnCnn| {
        let mut s = Snapshot(Vec::new());
        m.visit(&mut s);
        s.0.push(
            m.bn.running_mean
                .value_sync()
                .try_into_vec_as::<f32>()
                .unwrap(),
        );
        s.0.push(
            m.bn.running_var
                .value_sync()
                .try_into_vec_as::<f32>()
                .unwrap(),
        );
        s.0
    };
    let before = snapshot(&model);
    let mut rng = TestRng(5);
    let x: Vec<f32> = (0..2 * 3 * 32 * 32).map(|_| rng.uniform() as f32).collect();
    let x = matrix(x, 2, 3 * 32 * 32, &dev.clone().inner()).reshape([2, 3, 32, 32]);
    let attack = PgdConfig::new(ThreatModel::linf(8.0 / 255.0))
        .with_steps(2)
        .init()
        .unwrap();
    attack
        .perturb(&model, x.clone(), ints(vec![1, 2], &dev.clone().inner()))
        .unwrap();
    assert_eq!(
        snapshot(&model),
        before,
        "the attack changed the model's parameters or statistics"
    );

    // The classifier path yields an input gradient and no parameter gradient.
    let xa = x.autodiff().require_grad();
    let logits = Classifier::logits(&model, xa.clone());
    let grads = logits.sum().backward();
    assert!(xa.grad(&grads).is_some());
    assert_eq!(GradientsParams::from_grads(grads, &model).len(), 0);
}

#[test]
fn bad_input_is_refused_with_a_clear_error() {
    let dev = device();
    let model = random_linear(&mut TestRng(1), N, K, &dev);
    let (x, y) = data(2, 3);
    let pgd = PgdConfig::new(ThreatModel::linf(0.1)).init().unwrap();
    let run = |x: Vec<f32>, y: Vec<i64>| pgd.perturb(&model, matrix(x, 3, N, &dev), ints(y, &dev));

    assert!(matches!(
        PgdConfig::new(ThreatModel::linf(-0.1)).init(),
        Err(AttackError::InvalidSetting { name: "eps", .. })
    ));
    assert!(matches!(
        PgdConfig::new(ThreatModel::l2(f64::NAN)).init(),
        Err(AttackError::InvalidSetting { name: "eps", .. })
    ));
    assert!(matches!(
        PgdConfig::new(ThreatModel::linf(0.1)).with_steps(0).init(),
        Err(AttackError::InvalidSetting { name: "steps", .. })
    ));
    let mut nan = x.clone();
    nan[N + 4] = f32::NAN;
    assert!(matches!(
        run(nan, y.clone()),
        Err(AttackError::NonFiniteInput {
            sample: 1,
            position: 4,
            ..
        })
    ));
    let mut outside = x.clone();
    outside[2] = 1.5;
    let err = run(outside, y.clone()).unwrap_err();
    assert!(matches!(
        err,
        AttackError::OutsideBox {
            sample: 0,
            position: 2,
            ..
        }
    ));
    assert!(err.to_string().contains("outside the valid box"), "{err}");
    assert!(matches!(
        run(x.clone(), vec![0, 1]),
        Err(AttackError::CountMismatch {
            what: "labels",
            got: 2,
            batch: 3
        })
    ));
    assert!(matches!(
        run(x.clone(), vec![0, 1, 7]),
        Err(AttackError::ClassOutOfRange {
            sample: 2,
            value: 7,
            ..
        })
    ));
    let given = PgdConfig::new(ThreatModel::linf(0.1))
        .with_options(AttackOptions::new().with_targeting(Targeting::Given))
        .init()
        .unwrap();
    assert!(matches!(
        given.perturb(&model, matrix(x.clone(), 3, N, &dev), ints(y.clone(), &dev)),
        Err(AttackError::Targeting(_))
    ));
    assert!(matches!(
        given.perturb_targeted(
            &model,
            matrix(x.clone(), 3, N, &dev),
            ints(y.clone(), &dev),
            ints(y.clone(), &dev)
        ),
        Err(AttackError::TargetIsLabel { sample: 0, .. })
    ));
    assert!(matches!(
        pgd.perturb_targeted(
            &model,
            matrix(x.clone(), 3, N, &dev),
            ints(y.clone(), &dev),
            ints(vec![0, 0, 0], &dev)
        ),
        Err(AttackError::Targeting(_))
    ));
    let two_classes = random_linear(&mut TestRng(3), N, 2, &dev);
    let dlr = PgdConfig::new(ThreatModel::linf(0.1))
        .with_options(AttackOptions::new().with_loss(LossKind::Dlr))
        .init()
        .unwrap();
    assert!(matches!(
        dlr.perturb(
            &two_classes,
            matrix(x.clone(), 3, N, &dev),
            ints(vec![0, 1, 0], &dev)
        ),
        Err(AttackError::TooFewClasses {
            needed: 3,
            num_classes: 2,
            ..
        })
    ));
    assert!(matches!(
        CwL2Config::new().with_options(AttackOptions::new()).init(),
        Err(AttackError::Unsupported { .. })
    ));
    assert!(matches!(
        DeepFoolConfig::new().with_norm(Norm::L1).init(),
        Err(AttackError::Unsupported { .. })
    ));
    let same_runs = AttackOptions::new().with_restarts(3);
    assert!(matches!(
        BimConfig::new(ThreatModel::linf(0.1))
            .with_options(same_runs)
            .init(),
        Err(AttackError::InvalidSetting {
            name: "restarts",
            ..
        })
    ));
    let bad_box = AttackOptions::new().with_bounds(Bounds::new().with_lo(1.0).with_hi(0.0));
    assert!(matches!(
        PgdConfig::new(ThreatModel::linf(0.1))
            .with_options(bad_box)
            .init(),
        Err(AttackError::InvalidSetting { name: "bounds", .. })
    ));
}

#[test]
fn configs_round_trip_through_json_by_name() {
    let config = AttackConfig::Pgd(PgdConfig::new(ThreatModel::l2(0.5)).with_steps(7));
    let json = serde_json::to_string(&config).unwrap();
    assert!(json.contains("\"attack\":\"pgd\""), "{json}");
    let back: AttackConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back.init().unwrap().threat(), Some(ThreatModel::l2(0.5)));

    // A partial configuration takes every unnamed field from the attack's defaults.
    let partial = serde_json::json!({"attack": "pgd", "steps": 7, "threat": {"norm": "l2", "eps": 0.5},
                                     "options": {"restarts": 3}});
    let full = AttackConfig::from_partial(partial).unwrap();
    let AttackConfig::Pgd(pgd) = &full else {
        panic!("not pgd: {full:?}")
    };
    assert_eq!(
        (pgd.steps, pgd.options.restarts, pgd.options.random_start),
        (7, 3, true)
    );
    let unknown =
        serde_json::json!({"attack": "pgd", "threat": {"norm": "l2", "eps": 0.5}, "stpes": 7});
    let e = AttackConfig::from_partial(unknown).unwrap_err();
    assert!(e.to_string().contains("unknown field `stpes`"), "{e}");
    let e = AttackConfig::from_partial(serde_json::json!({"attack": "pgd"})).unwrap_err();
    assert!(e.to_string().contains("needs `threat"), "{e}");
}

/// Inference logits from a linear model; train-mode logits add a large constant to class 0, so a
/// success test that used train-mode logits would call every sample with a label ≠ 0 "fooled"
/// before any step. (Carlini-Wagner cannot be told apart here: its train-mode objective is
/// already met at the start, so it returns the clean input either way.)
struct TwoFaced<F>(F, Tensor<2>);

impl<F: Fn(Tensor<2>) -> Tensor<2>> Classifier<2> for TwoFaced<F> {
    fn logits(&self, x: Tensor<2>) -> Tensor<2> {
        (self.0)(x)
    }
    fn logits_train_mode(&self, x: Tensor<2>) -> Tensor<2> {
        (self.0)(x) + self.1.clone()
    }
}

#[test]
fn train_mode_crafting_judges_success_with_inference_behaviour() {
    let dev = device();
    let mut offset = vec![0f32; K];
    offset[0] = 100.0;
    let model = TwoFaced(
        random_linear(&mut TestRng(12), N, K, &dev),
        matrix(offset, 1, K, &dev),
    );
    // Samples the model classifies as a class other than 0, labelled with that class.
    let (pool, _) = data(13, 64);
    let clean = argmax(&host(model.logits(matrix(pool.clone(), 64, N, &dev))), K);
    let keep: Vec<usize> = (0..64).filter(|&i| clean[i] != 0).take(8).collect();
    assert_eq!(keep.len(), 8);
    let x: Vec<f32> = keep
        .iter()
        .flat_map(|&i| pool[i * N..(i + 1) * N].to_vec())
        .collect();
    let y: Vec<i64> = keep.iter().map(|&i| clean[i] as i64).collect();
    let train = AttackOptions::new().with_crafting(Crafting::Train);
    let attacks = [
        AttackConfig::Pgd(
            PgdConfig::new(ThreatModel::linf(1.0))
                .with_steps(10)
                .with_options(train.with_early_stop(true)),
        ),
        AttackConfig::DeepFool(DeepFoolConfig::new().with_options(train)),
    ];
    for config in attacks {
        let attack = config.init().unwrap();
        let adv = host(
            attack
                .perturb(&model, matrix(x.clone(), 8, N, &dev), ints(y.clone(), &dev))
                .unwrap(),
        );
        let pred = argmax(&host(model.logits(matrix(adv, 8, N, &dev))), K);
        for i in 0..8 {
            assert_ne!(
                pred[i] as i64,
                y[i],
                "{}: sample {i} counted as fooled on train-mode logits",
                attack.name()
            );
        }
    }
}

#[test]
fn the_registry_is_the_single_list_of_attacks() {
    let mut seen = std::collections::BTreeSet::new();
    for entry in ATTACKS {
        for name in entry.names() {
            assert!(seen.insert(name), "`{name}` is registered twice");
            // Every name and alias builds its attack, with the attack's own defaults.
            let given = AttackOverrides {
                eps: Some(0.25),
                ..AttackOverrides::NONE
            };
            let config = AttackConfig::from_overrides(name, &given)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(config.name(), entry.name, "{name}");
            assert_eq!(config.is_black_box(), entry.black_box, "{name}");
            let attack = config.init().unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(
                entry.names().any(|n| n == attack.name()),
                "{name}: the attack reports the unregistered name {}",
                attack.name()
            );
            // Round trip: JSON by name, and the partial form from a file.
            let json = serde_json::to_value(&config).unwrap();
            assert_eq!(json["attack"], entry.name, "{name}");
            let back: AttackConfig = serde_json::from_value(json.clone()).unwrap();
            assert_eq!(serde_json::to_value(&back).unwrap(), json, "{name}");
            let partial = AttackConfig::from_partial(json.clone()).unwrap();
            assert_eq!(serde_json::to_value(&partial).unwrap(), json, "{name}");
            assert_eq!(lookup(name).map(|(e, _)| e.name), Some(entry.name));
        }
    }
    // Every entry is exercised by the behaviour and property tests, which take the registry's
    // attacks that build for a norm: each must build for at least one.
    for entry in ATTACKS {
        let usable = [Norm::Linf, Norm::L2, Norm::L1].into_iter().any(|norm| {
            all_attacks(norm, 0.1)
                .iter()
                .any(|c| c.name() == entry.name)
        });
        assert!(usable, "{} builds for no norm", entry.name);
    }
    // An alias's preset applies; the user's own settings win over it.
    let AttackConfig::Fgsm(rs) = AttackConfig::from_overrides(
        "fgsm-rs",
        &AttackOverrides {
            eps: Some(0.1),
            ..AttackOverrides::NONE
        },
    )
    .unwrap() else {
        panic!("fgsm-rs is not FGSM")
    };
    assert!(rs.options.random_start);
    // Unknown names and settings an attack does not have are errors naming them.
    let err = AttackConfig::from_overrides("pgd2", &AttackOverrides::NONE).unwrap_err();
    assert!(
        err.to_string().contains("pgd2") && err.to_string().contains("deepfool"),
        "{err}"
    );
    let err = AttackConfig::from_overrides(
        "square",
        &AttackOverrides {
            eps: Some(0.1),
            step_size: Some(0.01),
            ..AttackOverrides::NONE
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("step-size"), "{err}");
    let err = AttackConfig::from_overrides("pgd", &AttackOverrides::NONE).unwrap_err();
    assert!(err.to_string().contains("threat"), "{err}");
}
