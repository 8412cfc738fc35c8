//! Property tests: after the start point and after every step, every sample is inside the eps-ball
//! around its clean input (`‖x_adv − x‖_p ≤ eps·(1 + 1e-6)`) and inside the box, for every attack,
//! norm, loss and targeting mode, over random models, inputs, boxes and radii.

use crate::common::*;
use bulwark_attack_core::*;
use burn::tensor::Tensor;
use proptest::prelude::*;

fn p_of(norm: Norm) -> u32 {
    match norm {
        Norm::Linf => 0,
        Norm::L1 => 1,
        Norm::L2 => 2,
    }
}

struct Violations(Vec<String>);

impl Violations {
    fn checker(
        &mut self,
        norm: Norm,
        eps: f64,
        lo: f64,
        hi: f64,
        n: usize,
    ) -> impl FnMut(&Tensor<2>, &Tensor<2>) + '_ {
        move |clean: &Tensor<2>, adv: &Tensor<2>| {
            let (c, a) = (host(clean.clone()), host(adv.clone()));
            for (i, d) in dists(&a, &c, n, p_of(norm)).into_iter().enumerate() {
                if d > eps * (1.0 + 1e-6) {
                    self.0
                        .push(format!("sample {i}: {norm} distance {d} > eps {eps}"));
                }
            }
            if let Some(v) = a
                .iter()
                .find(|&&v| !(f64::from(v) >= lo && f64::from(v) <= hi))
            {
                self.0.push(format!("value {v} outside [{lo}, {hi}]"));
            }
        }
    }
}

/// A random batch in the box, with some coordinates exactly on its faces.
fn batch(rng: &mut TestRng, b: usize, n: usize, lo: f64, hi: f64) -> Vec<f32> {
    (0..b * n)
        .map(|_| match rng.below(8) {
            0 => lo as f32,
            1 => hi as f32,
            _ => rng.range(lo, hi) as f32,
        })
        .collect()
}

/// The registry's fixed-budget attacks (every name and alias that needs a threat model), those
/// that support `threat.norm`, with `steps` and the test's `options` (each attack's own random
/// start kept; more than one run only where runs differ: a random start, or Square). A new
/// registry entry joins this property by itself; `kind` picks one.
fn attack_config(
    kind: usize,
    threat: ThreatModel,
    options: AttackOptions,
    steps: usize,
) -> AttackConfig {
    let given = |steps: Option<usize>| AttackOverrides {
        norm: Some(threat.norm),
        eps: Some(threat.eps),
        steps,
        ..AttackOverrides::NONE
    };
    let candidates: Vec<AttackConfig> = ATTACKS
        .iter()
        .flat_map(AttackEntry::names)
        .filter_map(|name| {
            // Minimal-perturbation attacks need no threat model; their property is below.
            if AttackConfig::from_overrides(name, &AttackOverrides::NONE).is_ok() {
                return None;
            }
            let mut c = AttackConfig::from_overrides(name, &given(Some(steps)))
                .or_else(|_| AttackConfig::from_overrides(name, &given(None)))
                .ok()?;
            let own = *c.options_mut();
            let runs = if own.random_start || c.is_black_box() {
                options.restarts
            } else {
                1
            };
            *c.options_mut() = options
                .with_random_start(own.random_start)
                .with_restarts(runs);
            match &mut c {
                // Square has no L1 version (refused by `init` below); L1-APGD with the
                // large-radius warm start is tested there too.
                AttackConfig::Apgd(a) => {
                    a.steps = 4 * steps;
                    a.large_reps = threat.norm == Norm::L1 && steps.is_multiple_of(2);
                }
                AttackConfig::Square(s) => s.queries = 10 * steps,
                _ => {}
            }
            c.init().is_ok().then_some(c)
        })
        .collect();
    candidates[kind % candidates.len()].clone()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn gradient_attacks_stay_in_ball_and_box_after_every_step(
        seed in any::<u64>(),
        norm in prop_oneof![Just(Norm::Linf), Just(Norm::L2), Just(Norm::L1)],
        kind in 0usize..64,
        eps_fraction in 0.0f64..1.0,
        wide_box in any::<bool>(),
        loss in prop_oneof![Just(LossKind::CrossEntropy), Just(LossKind::CwMargin), Just(LossKind::Dlr)],
        targeting in prop_oneof![Just(Targeting::Untargeted), Just(Targeting::Random), Just(Targeting::LeastLikely)],
        restarts in 1usize..3,
        early_stop in any::<bool>(),
        mlp in any::<bool>(),
    ) {
        let dev = device();
        let mut rng = TestRng(seed);
        let (b, n, k) = (1 + rng.below(5), 2 + rng.below(24), 4 + rng.below(4));
        let (lo, hi) = if wide_box { (-1.0, 2.0) } else { (0.0, 1.0) };
        let max_eps = match norm { Norm::Linf => 0.6, Norm::L2 => 3.0, Norm::L1 => 8.0 };
        let eps = eps_fraction * max_eps;
        let x = batch(&mut rng, b, n, lo, hi);
        let y: Vec<i64> = (0..b).map(|_| rng.below(k) as i64).collect();
        let options = AttackOptions::new()
            .with_bounds(Bounds::new().with_lo(lo).with_hi(hi))
            .with_loss(loss)
            .with_targeting(targeting)
            .with_restarts(restarts)
            .with_early_stop(early_stop)
            .with_seed(seed);
        let attack = attack_config(kind, ThreatModel::new(norm, eps), options, 1 + rng.below(6)).init().unwrap();
        let mut violations = Violations(Vec::new());
        let steps_seen;
        {
            let mut count = 0usize;
            let mut check = violations.checker(norm, eps, lo, hi, n);
            let mut observer = |c: &Tensor<2>, a: &Tensor<2>| { count += 1; check(c, a) };
            let x_t = matrix(x.clone(), b, n, &dev);
            let adv = if mlp {
                let model = random_mlp(&mut rng, n, 16, k, &dev);
                attack.run(&model, x_t.clone(), ints(y.clone(), &dev), None, &mut observer).unwrap()
            } else {
                let model = random_linear(&mut rng, n, k, &dev);
                attack.run(&model, x_t.clone(), ints(y.clone(), &dev), None, &mut observer).unwrap()
            };
            observer(&x_t, &adv);
            steps_seen = count;
        }
        prop_assert!(steps_seen >= 2, "the observer must see the start and the steps");
        prop_assert!(violations.0.is_empty(), "{:?}", &violations.0[..violations.0.len().min(5)]);
    }

    #[test]
    fn minimal_perturbation_attacks_respect_their_eps(
        seed in any::<u64>(),
        linf in any::<bool>(),
        cw in any::<bool>(),
        eps_fraction in 0.0f64..1.0,
    ) {
        let dev = device();
        let mut rng = TestRng(seed);
        let (b, n, k) = (1 + rng.below(4), 2 + rng.below(12), 3 + rng.below(4));
        let x = batch(&mut rng, b, n, 0.0, 1.0);
        let y: Vec<i64> = (0..b).map(|_| rng.below(k) as i64).collect();
        let model = random_mlp(&mut rng, n, 12, k, &dev);
        let (norm, eps) = if cw || !linf { (Norm::L2, eps_fraction * 2.0) } else { (Norm::Linf, eps_fraction * 0.5) };
        let attack = if cw {
            AttackConfig::CwL2(CwL2Config::new().with_steps(30).with_binary_search_steps(3).with_initial_const(1.0).with_eps(Some(eps)))
        } else {
            AttackConfig::DeepFool(DeepFoolConfig::new().with_norm(norm).with_steps(20).with_eps(Some(eps)))
        };
        let attack = attack.init().unwrap();
        let mut violations = Violations(Vec::new());
        {
            let mut check = violations.checker(norm, eps, 0.0, 1.0, n);
            attack.run(&model, matrix(x, b, n, &dev), ints(y, &dev), None, &mut check).unwrap();
        }
        prop_assert!(violations.0.is_empty(), "{:?}", violations.0);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, failure_persistence: None, ..ProptestConfig::default() })]

    /// The same property on a convolutional network with BatchNorm with image-shaped (4-D) inputs.
    #[test]
    fn attacks_on_small_cnn_stay_in_ball_and_box(
        seed in any::<u64>(),
        norm in prop_oneof![Just(Norm::Linf), Just(Norm::L2), Just(Norm::L1)],
        eps_fraction in 0.0f64..1.0,
    ) {
        let dev = device();
        let model = BnCnn::new(1, 28, seed, &dev);
        let mut rng = TestRng(seed);
        let (b, n) = (2, 28 * 28);
        let x = batch(&mut rng, b, n, 0.0, 1.0);
        let eps = eps_fraction * match norm { Norm::Linf => 0.3, Norm::L2 => 3.0, Norm::L1 => 15.0 };
        let threat = ThreatModel::new(norm, eps);
        // PGD, APGD and (L-inf/L2) Square, whose windows use the image layout.
        let mut attacks = vec![
            AttackConfig::Pgd(PgdConfig::new(threat).with_steps(4)),
            AttackConfig::Apgd(ApgdConfig::new(threat).with_steps(4).with_large_reps(norm == Norm::L1)),
        ];
        if norm != Norm::L1 {
            attacks.push(AttackConfig::Square(SquareConfig::new(threat).with_queries(40)));
        }
        for config in attacks {
            let attack = config.init().unwrap();
            let mut violations = Violations(Vec::new());
            {
                let mut check = violations.checker(norm, eps, 0.0, 1.0, n);
                let x = matrix(x.clone(), b, n, &dev).reshape([b, 1, 28, 28]);
                let adv = attack.run(&model, x, ints(vec![3, 7], &dev), None, &mut check).unwrap();
                prop_assert_eq!(adv.dims(), [b, 1, 28, 28]);
            }
            prop_assert!(violations.0.is_empty(), "{}: {:?}", attack.name(), violations.0);
        }
    }
}
