//! One training batch's objective for each [`Method`]: crafting the adversarial examples with
//! attack-core (or TRADES' own KL maximization) and the method's loss on the autodiff graph.
//! Free-AT, which steps the optimizer inside its replays, lives in the training loop.

use bulwark_attack_core::rng::{SplitMix64, sample_seed};
use bulwark_attack_core::{
    Attack, AttackOptions, Bounds, Crafting, FgsmConfig, Interval, Network, Norm, PgdConfig,
    ThreatModel, TradesKlConfig,
};
use bulwark_reg_core::WeightPerturbation;
use burn::optim::GradientsParams;
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Int, Tensor, TensorData};

use crate::regularize::{MixDraw, Targets};
use crate::{Method, TrainError};

/// What the shared adversarial settings of a run say (from the config).
#[derive(Debug, Clone, Copy)]
pub(crate) struct AdvSettings {
    pub norm: Norm,
    pub adv_weight: f64,
    pub crafting: Crafting,
}

/// A batch's objective (without penalties) and the logits for the progress statistics.
pub(crate) struct BatchObjective {
    /// The loss to minimize, on the model's graph.
    pub loss: Tensor<1>,
    /// Clean logits (plain), when the objective computed them.
    pub clean_logits: Option<Tensor<2>>,
    /// Logits of the adversarial inputs (plain), for adversarial methods.
    pub adv_logits: Option<Tensor<2>>,
}

/// Per-sample `KL(softmax(p) ‖ softmax(q))` as `[B, 1]`.
pub(crate) fn kl_rows(p_logits: Tensor<2>, q_logits: Tensor<2>) -> Tensor<2> {
    let lp = log_softmax(p_logits, 1);
    let lq = log_softmax(q_logits, 1);
    (lp.clone().exp() * (lp - lq)).sum_dim(1)
}

/// TRADES' robust term: `Σ_i KL(softmax p_i ‖ softmax q_i) / B` over the batch (the reference
/// code's `KLDivLoss(reduction="sum") / B`), shared by the TRADES method and the benchmark's step.
pub(crate) fn trades_kl(clean_logits: Tensor<2>, adv_logits: Tensor<2>) -> Tensor<1> {
    let b = clean_logits.dims()[0].max(1) as f64;
    kl_rows(clean_logits, adv_logits).sum() / b
}

fn options(seed: u64, crafting: Crafting, random_start: bool) -> AttackOptions {
    AttackOptions::new()
        .with_seed(seed)
        .with_crafting(crafting)
        .with_random_start(random_start)
}

/// Adversarial examples for PGD-AT, FGSM-RS and MART (plain tensors in the box).
pub(crate) fn craft<M: Network>(
    method: &Method,
    model: &M,
    x: Tensor<4>,
    y: Tensor<1, Int>,
    eps: f64,
    s: AdvSettings,
    seed: u64,
) -> Result<Tensor<4>, TrainError> {
    let threat = ThreatModel::new(s.norm, eps);
    // During an eps ramp, explicit step sizes shrink with the radius, keeping the configured
    // step/radius ratio (a fixed 0.375 step at a small radius is the regime where FGSM training
    // overfits catastrophically).
    let scale = eps / method.eps().unwrap_or(eps);
    let step_size = |s: Option<f64>| s.map(|v| v * scale);
    // PGD-AT and MART (which always starts at random) share the PGD attack.
    let pgd = match *method {
        Method::PgdAt {
            steps,
            step_size: step,
            random_start,
            ..
        } => Some((steps, step, random_start)),
        Method::Mart {
            steps,
            step_size: step,
            ..
        } => Some((steps, step, true)),
        _ => None,
    };
    if let Some((steps, step, random_start)) = pgd {
        return Ok(PgdConfig::new(threat)
            .with_steps(steps)
            .with_step_size(step_size(step))
            .with_options(options(seed, s.crafting, random_start))
            .init()?
            .perturb(&model.classifier(), x, y)?);
    }
    let out = match *method {
        Method::FgsmRs {
            alpha,
            random_start,
            ..
        } if s.norm == Norm::Linf => fgsm_rs_linf(
            model,
            x,
            y,
            eps,
            step_size(alpha).unwrap_or(1.25 * eps),
            random_start,
            s.crafting,
            seed,
        ),
        Method::FgsmRs {
            alpha,
            random_start,
            ..
        } => FgsmConfig::new(threat)
            .with_step_size(Some(step_size(alpha).unwrap_or(1.25 * eps)))
            .with_options(options(seed, s.crafting, random_start))
            .init()?
            .perturb(&model.classifier(), x, y)?,
        Method::Standard
        | Method::FreeAt { .. }
        | Method::Trades { .. }
        | Method::PgdAt { .. }
        | Method::Mart { .. }
        | Method::Ibp { .. }
        | Method::GaussianNoise { .. } => {
            unreachable!("craft is only called for pgd-at, fgsm-rs and mart")
        }
    };
    Ok(out)
}

/// The model's logits while crafting: inference behaviour, or training behaviour with untracked
/// parameters.
fn crafting_forward<M: Network>(model: &M, crafting: Crafting, x: Tensor<4>) -> Tensor<2> {
    match crafting {
        Crafting::Inference => model.valid().forward(x),
        Crafting::Train => model.clone().train().no_grad().forward(x),
    }
}

/// FGSM-RS as in Wong, Rice & Kolter's code: `δ ~ U(−eps, eps)` (0 without a random start), the
/// gradient taken at the *unclipped* start `x + δ`, `δ ← clip(δ + α·sign(g), −eps, eps)`, and the
/// example `clip(x + δ, 0, 1)`. (Their code crafts with the model in training mode; here `crafting`
/// decides, inference by default — the same for models without BatchNorm or dropout.) Clipping
/// the start into the box first (as attack-core's general FGSM does) leaves most MNIST background
/// pixels at exactly 0; on MNIST at eps 0.3 that version overfitted catastrophically within two
/// epochs in our runs.
#[allow(clippy::too_many_arguments)]
fn fgsm_rs_linf<M: Network>(
    model: &M,
    x: Tensor<4>,
    y: Tensor<1, Int>,
    eps: f64,
    alpha: f64,
    random_start: bool,
    crafting: Crafting,
    seed: u64,
) -> Tensor<4> {
    let bounds = Bounds::new();
    let dims = x.dims();
    let delta = if random_start {
        let n: usize = dims.iter().product();
        let mut rng = SplitMix64::new(seed);
        let u: Vec<f32> = (0..n)
            .map(|_| ((2.0 * rng.uniform() - 1.0) * eps) as f32)
            .collect();
        Tensor::<4>::from_data(TensorData::new(u, dims), &x.device())
    } else {
        x.zeros_like()
    };
    let leaf = (x.clone() + delta.clone()).autodiff().require_grad();
    let loss = burn::nn::loss::CrossEntropyLossConfig::new()
        .init(&leaf.device())
        .forward(
            crafting_forward(model, crafting, leaf.clone()),
            y.autodiff(),
        );
    let g = leaf
        .grad(&loss.backward())
        .unwrap_or_else(|| x.zeros_like());
    let delta = (delta + g.sign() * alpha).clamp(-eps, eps);
    (x + delta).clamp(bounds.lo, bounds.hi)
}

/// TRADES' inner maximization: attack-core's [`TradesKl`] (`steps` signed-gradient steps on
/// `KL(f(x) ‖ f(x'))` from `x + 0.001·N(0, I)`, in the L-inf ball around `x` and the box), with
/// the batch's seed. At radius 0 (the start of an eps ramp) the example is the input.
#[allow(clippy::too_many_arguments)]
pub(crate) fn trades_craft<M: Network>(
    model: &M,
    x: Tensor<4>,
    y: Tensor<1, Int>,
    eps: f64,
    steps: usize,
    step: f64,
    crafting: Crafting,
    seed: u64,
) -> Result<Tensor<4>, TrainError> {
    if eps == 0.0 || step == 0.0 {
        return Ok(x);
    }
    let attack = TradesKlConfig::new(ThreatModel::linf(eps))
        .with_steps(steps)
        .with_step_size(Some(step))
        .with_options(options(seed, crafting, true))
        .init()?;
    Ok(attack.perturb(&model.classifier(), x, y)?)
}

/// A batch's inputs after crafting (plain tensors in the box): what the method's loss is
/// evaluated on. Kept apart from the loss so that the loss can be evaluated again at other
/// weights on the same examples (adversarial weight perturbation).
pub(crate) struct Prepared {
    /// Clean inputs (mixed, under mixing).
    clean: Tensor<4>,
    /// Adversarial inputs, for adversarial methods (for pgd-at and fgsm-rs mixed with the same
    /// draw as `clean`; TRADES crafts from the mixed clean inputs).
    adv: Option<Tensor<4>>,
    /// Targets of both (the mixed ones under mixing).
    targets: Targets,
    /// The batch's radius (ramped): IBP bounds the box of this radius around `clean`.
    eps: f64,
}

/// Crafts the inputs of `method` (not Free-AT) for the plain batch `x`, `targets` at radius
/// `eps`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn prepare<M: Network>(
    method: &Method,
    model: &M,
    x: Tensor<4>,
    targets: &Targets,
    mixing: Option<&MixDraw>,
    eps: f64,
    s: AdvSettings,
    seed: u64,
) -> Result<Prepared, TrainError> {
    let mixed = |x: Tensor<4>| -> Result<(Tensor<4>, Targets), TrainError> {
        match mixing {
            Some(d) => d.apply(x, targets),
            None => Ok((x, targets.clone())),
        }
    };
    match *method {
        Method::Standard => {
            let (clean, targets) = mixed(x)?;
            Ok(Prepared {
                clean,
                adv: None,
                targets,
                eps,
            })
        }
        Method::GaussianNoise { sigma } => {
            // The noise goes on what the loss sees: the mixed images under mixup.
            let (clean, targets) = mixed(x)?;
            Ok(Prepared {
                clean: gaussian_noise(clean, sigma, seed),
                adv: None,
                targets,
                eps,
            })
        }
        // IBP bounds the box around the clean (mixed) inputs in the loss itself.
        Method::Ibp { .. } => {
            let (clean, targets) = mixed(x)?;
            Ok(Prepared {
                clean,
                adv: None,
                targets,
                eps,
            })
        }
        Method::PgdAt { .. } | Method::FgsmRs { .. } | Method::Mart { .. } => {
            // MART refuses mixing (config validation), so `mixed` is the identity for it.
            let x_adv = craft(method, model, x.clone(), targets.hard.clone(), eps, s, seed)?;
            let (adv, _) = mixed(x_adv)?;
            let (clean, targets) = mixed(x)?;
            Ok(Prepared {
                clean,
                adv: Some(adv),
                targets,
                eps,
            })
        }
        Method::Trades {
            steps, step_size, ..
        } => {
            let (clean, targets) = mixed(x)?;
            // Scaled with the radius during an eps ramp, as in `craft`.
            let scale = eps / method.eps().unwrap_or(eps);
            let step = step_size.map_or(2.5 * eps / steps as f64, |s| s * scale);
            let adv = trades_craft(
                model,
                clean.clone(),
                targets.hard.clone(),
                eps,
                steps,
                step,
                s.crafting,
                seed,
            )?;
            Ok(Prepared {
                clean,
                adv: Some(adv),
                targets,
                eps,
            })
        }
        Method::FreeAt { .. } => unreachable!("free-at runs in the training loop"),
    }
}

/// The random stream of Gaussian noise augmentation's draws.
const NOISE_STREAM: u64 = 0x6a05;

/// `x + σ·ε`, `ε ~ N(0, I)` drawn per image from `seed` and the image itself (so a batch draws
/// what its images would alone), not clipped.
pub(crate) fn gaussian_noise(x: Tensor<4>, sigma: f64, seed: u64) -> Tensor<4> {
    let dims = x.dims();
    let device = x.device();
    let values: Vec<f32> = x
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("images are floats");
    let per = (values.len() / dims[0].max(1)).max(1);
    let mut out = Vec::with_capacity(values.len());
    for image in values.chunks(per) {
        let mut rng = SplitMix64::new(sample_seed(seed, NOISE_STREAM, image));
        out.extend(
            image
                .iter()
                .map(|&v| (f64::from(v) + sigma * rng.normal()) as f32),
        );
    }
    Tensor::from_data(TensorData::new(out, dims), &device)
}

/// The objective of `method` (not Free-AT) on the prepared batch `p`, on `model`'s graph.
pub(crate) fn batch_loss<M: Network>(
    method: &Method,
    model: &M,
    p: &Prepared,
    s: AdvSettings,
) -> BatchObjective {
    let t = &p.targets;
    let forward = |x: &Tensor<4>| model.forward(x.clone().autodiff());
    let adv_input = || {
        p.adv
            .as_ref()
            .expect("adversarial methods prepare adversarial inputs")
    };
    match *method {
        Method::Ibp {
            eps: full,
            kappa_end,
            ..
        } => {
            // κ falls from 1 to kappa_end as the radius ramps up (Gowal et al.'s schedules run
            // together).
            let kappa = 1.0 - (1.0 - kappa_end) * (p.eps / full).clamp(0.0, 1.0);
            let logits = forward(&p.clean);
            let bounds = Interval::around(p.clean.clone().autodiff(), p.eps, Bounds::new());
            let worst = model
                .margin_bounds(bounds, t.hard.clone())
                .expect("ibp runs on networks that bound themselves (checked before training)")
                .neg();
            // The worst case is the label's (Gowal et al.): plain cross-entropy on the hard
            // labels; label smoothing applies to the clean term only.
            let hard = Targets {
                hard: t.hard.clone(),
                soft: None,
            };
            BatchObjective {
                loss: t.cross_entropy(logits.clone()) * kappa
                    + hard.cross_entropy(worst.clone()) * (1.0 - kappa),
                clean_logits: Some(logits.inner()),
                // The worst-case logits' class is the label exactly where the box is verified.
                adv_logits: Some(worst.inner()),
            }
        }
        // Gaussian noise augmentation prepared the noisy images as the batch's inputs.
        Method::Standard | Method::GaussianNoise { .. } => {
            let logits = forward(&p.clean);
            BatchObjective {
                loss: t.cross_entropy(logits.clone()),
                clean_logits: Some(logits.inner()),
                adv_logits: None,
            }
        }
        Method::PgdAt { .. } | Method::FgsmRs { .. } => {
            let adv = forward(adv_input());
            let mut loss = t.cross_entropy(adv.clone());
            let mut clean_logits = None;
            if s.adv_weight < 1.0 {
                let clean = forward(&p.clean);
                loss = loss * s.adv_weight + t.cross_entropy(clean.clone()) * (1.0 - s.adv_weight);
                clean_logits = Some(clean.inner());
            }
            BatchObjective {
                loss,
                clean_logits,
                adv_logits: Some(adv.inner()),
            }
        }
        Method::Trades { beta, .. } => {
            let clean = forward(&p.clean);
            let adv = forward(adv_input());
            let kl = trades_kl(clean.clone(), adv.clone());
            BatchObjective {
                loss: t.cross_entropy(clean.clone()) + kl * beta,
                clean_logits: Some(clean.inner()),
                adv_logits: Some(adv.inner()),
            }
        }
        Method::Mart { beta, .. } => {
            let clean = forward(&p.clean);
            let adv = forward(adv_input());
            let [b, k] = adv.dims();
            let onehot = t.hard.clone().one_hot::<2>(k).float();
            // max_{k≠y} p_k(x'): the label's entry pushed below every probability first.
            let worst_wrong = (softmax(adv.clone(), 1) - onehot.clone() * 2.0).max_dim(1);
            let boost = -(worst_wrong.neg() + 1.0001).log().mean();
            let bce = t.cross_entropy(adv.clone()) + boost;
            let true_probs = (softmax(clean.clone(), 1) * onehot).sum_dim(1);
            let kl = kl_rows(clean.clone(), adv.clone());
            let robust = (kl * (true_probs.neg() + 1.000_000_1)).sum() / b.max(1) as f64;
            BatchObjective {
                loss: bce + robust * beta,
                clean_logits: Some(clean.inner()),
                adv_logits: Some(adv.inner()),
            }
        }
        Method::FreeAt { .. } => unreachable!("free-at runs in the training loop"),
    }
}

/// AWP (`bulwark_reg_core::WeightPerturbation`): `model` with its selected weights moved up the
/// gradient of the method's own loss on the prepared batch `p`. The ascent pass runs on a proxy
/// with its own BatchNorm running statistics (`valid().train()` gives fresh buffers; the reference
/// code keeps a proxy model for the same reason), so that only the training pass at the perturbed
/// weights updates the model's statistics. Parameter ids are kept.
pub(crate) fn perturbed_weights<M: Network>(
    method: &Method,
    model: &M,
    p: &Prepared,
    s: AdvSettings,
    awp: &WeightPerturbation,
) -> Result<M, TrainError> {
    let proxy = model.valid().train();
    let ascent = batch_loss(method, &proxy, p, s).loss;
    let grads = GradientsParams::from_grads(ascent.backward(), &proxy);
    awp.perturb(model.clone(), &grads)
        .map_err(|e| TrainError::Config(format!("awp: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulwark_models::Model;
    use burn::module::Module;
    use burn::tensor::Device;

    #[test]
    fn gaussian_noise_has_the_asked_spread_is_not_clipped_and_a_batch_draws_as_its_images() {
        let device = Device::flex();
        // Four different constant images of 28 x 28.
        let v: Vec<f32> = (0..4)
            .flat_map(|i| std::iter::repeat_n(0.2 * i as f32, 784))
            .collect();
        let x = Tensor::<4>::from_data(TensorData::new(v, [4, 1, 28, 28]), &device);
        let sigma = 0.5;
        let noisy = gaussian_noise(x.clone(), sigma, 7);
        let d: Vec<f32> = (noisy.clone() - x.clone())
            .into_data()
            .convert::<f32>()
            .try_into_vec()
            .unwrap();
        let n = d.len() as f64;
        let mean = d.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let sd = (d
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n)
            .sqrt();
        // 3,136 draws: the mean within 4 standard errors of 0, the spread within 5 % of sigma.
        assert!(mean.abs() < 4.0 * sigma / n.sqrt(), "mean {mean}");
        assert!((sd / sigma - 1.0).abs() < 0.05, "sd {sd}");
        // Not clipped to the box: about half the noise on black pixels is negative.
        let below = noisy
            .clone()
            .lower_elem(0.0)
            .int()
            .sum()
            .into_scalar::<i64>();
        assert!(below > 300, "{below} values below 0");
        for i in 0..4 {
            let alone = gaussian_noise(x.clone().narrow(0, i, 1), sigma, 7);
            alone
                .to_data()
                .assert_eq(&noisy.clone().narrow(0, i, 1).to_data(), true);
        }
        let other = gaussian_noise(x, sigma, 8);
        assert!(other.to_data() != noisy.to_data());
    }

    fn setup() -> (Model, Tensor<4>, Tensor<1, Int>) {
        let device = Device::flex();
        let model = Model::init_seeded("small-cnn", &device.clone().autodiff(), 1).unwrap();
        // Mostly-black images with a few bright pixels, like MNIST: both box faces are active.
        let n = 4 * 28 * 28;
        let v: Vec<f32> = (0..n)
            .map(|i| {
                if i % 7 == 0 {
                    1.0
                } else if i % 11 == 0 {
                    0.5
                } else {
                    0.0
                }
            })
            .collect();
        let x = Tensor::<4>::from_data(TensorData::new(v, [4, 1, 28, 28]), &device);
        let y = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 3, 5, 9], [4]), &device);
        (model, x, y)
    }

    fn check_ball_and_box(x: &Tensor<4>, xa: &Tensor<4>, eps: f64) {
        let a = x.clone().try_into_vec_as::<f32>().unwrap();
        let b = xa.clone().try_into_vec_as::<f32>().unwrap();
        for (p, q) in a.iter().zip(&b) {
            assert!((0.0..=1.0).contains(q), "outside the box: {q}");
            assert!(
                f64::from((q - p).abs()) <= eps + 1e-6,
                "outside the ball: {p} -> {q}"
            );
        }
    }

    #[test]
    fn fgsm_rs_and_trades_examples_stay_in_the_ball_and_box() {
        let (model, x, y) = setup();
        for (eps, alpha, rs) in [(0.3, 0.375, true), (0.1, 0.125, true), (0.3, 0.3, false)] {
            let xa = fgsm_rs_linf(
                &model,
                x.clone(),
                y.clone(),
                eps,
                alpha,
                rs,
                Crafting::Inference,
                5,
            );
            check_ball_and_box(&x, &xa, eps);
            // A step larger than eps from a start inside the ball ends on the ball's faces
            // wherever the box allows.
            let moved = (xa - x.clone()).abs().max().into_scalar::<f32>();
            assert!((f64::from(moved) - eps).abs() < 1e-6, "{moved}");
        }
        let xt = trades_craft(
            &model,
            x.clone(),
            y.clone(),
            0.3,
            5,
            0.1,
            Crafting::Inference,
            5,
        )
        .unwrap();
        check_ball_and_box(&x, &xt, 0.3);
        // Same seed, same example; another seed, another start.
        let a = fgsm_rs_linf(
            &model,
            x.clone(),
            y.clone(),
            0.3,
            0.375,
            true,
            Crafting::Inference,
            5,
        );
        let b = fgsm_rs_linf(
            &model,
            x.clone(),
            y.clone(),
            0.3,
            0.375,
            true,
            Crafting::Inference,
            5,
        );
        let c = fgsm_rs_linf(
            &model,
            x.clone(),
            y.clone(),
            0.3,
            0.375,
            true,
            Crafting::Inference,
            6,
        );
        let v = |t: Tensor<4>| t.try_into_vec_as::<f32>().unwrap();
        assert_eq!(v(a.clone()), v(b));
        assert_ne!(v(a), v(c));
    }

    #[test]
    fn kl_rows_is_zero_for_equal_outputs_and_matches_a_hand_computation() {
        let device = Device::flex();
        let p = Tensor::<2>::from_data(
            TensorData::new(vec![0.0f32, 0.0, 1.0, 2.0], [2, 2]),
            &device,
        );
        let q = Tensor::<2>::from_data(
            TensorData::new(vec![0.0f32, 0.0, 2.0, 1.0], [2, 2]),
            &device,
        );
        let kl = kl_rows(p, q).try_into_vec_as::<f32>().unwrap();
        assert!(kl[0].abs() < 1e-7);
        // softmax(1, 2) = (a, b); KL((a, b) ‖ (b, a)) = (b − a)·ln(b/a).
        let (a, b) = (1.0 / (1.0 + 1f64.exp()), 1f64.exp() / (1.0 + 1f64.exp()));
        assert!(
            (f64::from(kl[1]) - (b - a) * (b / a).ln()).abs() < 1e-6,
            "{kl:?}"
        );
    }

    /// Every one-dimensional float of the model (biases, BatchNorm scales and running statistics).
    fn buffers(model: &Model) -> Vec<f32> {
        struct Collect(Vec<f32>);
        impl burn::module::ModuleVisitor for Collect {
            fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<Tensor<D>>) {
                if D == 1 {
                    self.0
                        .extend(p.val().inner().try_into_vec_as::<f32>().unwrap());
                }
            }
        }
        let mut c = Collect(Vec::new());
        // `valid()` first: running statistics updated in training passes are synced into the
        // value a visitor reads only then.
        model.valid().visit(&mut c);
        c.0
    }

    #[test]
    fn the_awp_ascent_leaves_batchnorm_statistics_alone() {
        let plain = Device::flex();
        let model = Model::init_seeded("preact-resnet18", &plain.clone().autodiff(), 2).unwrap();
        let n = 2 * 3 * 32 * 32;
        let v: Vec<f32> = (0..n).map(|i| ((i * 37) % 101) as f32 / 100.0).collect();
        let x = Tensor::<4>::from_data(TensorData::new(v, [2, 3, 32, 32]), &plain);
        let y = Tensor::<1, Int>::from_data(TensorData::new(vec![1i64, 7], [2]), &plain);
        let targets = Targets {
            hard: y,
            soft: None,
        };
        let method = Method::PgdAt {
            eps: 8.0 / 255.0,
            steps: 1,
            step_size: None,
            random_start: true,
        };
        let s = AdvSettings {
            norm: Norm::Linf,
            adv_weight: 1.0,
            crafting: Crafting::Inference,
        };
        let p = prepare(&method, &model, x, &targets, None, 8.0 / 255.0, s, 5).unwrap();
        let before = buffers(&model);
        let at = perturbed_weights(&method, &model, &p, s, &WeightPerturbation::new(0.01)).unwrap();
        assert_eq!(
            before,
            buffers(&model),
            "the ascent pass moved the model's buffers"
        );
        // The training pass at the perturbed weights does update them (shared with `at`): the
        // comparison above can fail.
        let _ = batch_loss(&method, &at, &p, s);
        assert_ne!(before, buffers(&model));
    }
}
