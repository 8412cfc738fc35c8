//! The engine behind FGSM, FGSM with random start, BIM, PGD and MI-FGSM: gradient steps in the
//! geometry of the norm, projection around the **clean** input and clamping to the box after every
//! step, optional momentum, per-sample early stopping, and restarts that keep the best run per
//! sample.

use burn::tensor::{Int, Tensor};

use crate::ball::{Ball, exact};
use crate::batch::Batch;
use crate::classifier::Classifier;
use crate::error::AttackError;
use crate::geometry::{project, uniform_in_ball};
use crate::host::{host_f32, upload};
use crate::l1_ball::L1Ball;
use crate::options::{AttackOptions, LossKind, Norm, ThreatModel, check_positive, check_steps};
use crate::rng::{SplitMix64, sample_seed};

/// Called after the start point and after every step with the clean rows and the current
/// adversarial rows (both flat `[rows, N]`; during restarts only the rows still being attacked).
pub type StepObserver<'a> = dyn FnMut(&Tensor<2>, &Tensor<2>) + 'a;

/// A fully resolved iterative attack.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub norm: Norm,
    pub eps: f64,
    pub steps: usize,
    pub step_size: f64,
    pub random_start: bool,
    /// MI-FGSM decay factor; `None` for plain gradient steps.
    pub momentum: Option<f64>,
    /// Fraction of coordinates an L1 step moves (at least one).
    pub l1_sparsity: f64,
    pub loss: LossKind,
    pub restarts: usize,
    pub early_stop: bool,
    pub seed: u64,
}

/// Runs all restarts; per sample the first run that succeeds wins, otherwise the highest objective.
pub(crate) fn run<const D: usize, C: Classifier<D> + ?Sized>(
    batch: &Batch<'_, D, C>,
    spec: &Spec,
    observer: &mut StepObserver<'_>,
) -> Tensor<2> {
    if batch.b == 0 || spec.eps == 0.0 {
        observer(&batch.x0, &batch.x0);
        return batch.x0.clone();
    }
    if spec.restarts == 1 {
        return single_run(batch, spec, 0, observer);
    }
    let best = best_over_restarts(batch, spec.restarts, |view, restart| {
        let adv = single_run(view, spec, restart, observer);
        let (obj, ok) = view.judge(adv.clone(), spec.loss);
        (host_f32(adv), obj, ok)
    });
    upload(best, batch.b, batch.n, &batch.device)
}

/// The restart bookkeeping shared by the iterative attacks and APGD: `run(view, restart)` attacks
/// the rows not yet fooled and returns their flat results, objectives and successes. Per sample
/// the first run that succeeds wins, otherwise the highest objective (the first run always
/// counts, even with a NaN objective). Returns the flat `[B·N]` result.
pub(crate) fn best_over_restarts<const D: usize, C: Classifier<D> + ?Sized>(
    batch: &Batch<'_, D, C>,
    restarts: usize,
    mut run: impl FnMut(&Batch<'_, D, C>, u64) -> (Vec<f32>, Vec<f32>, Vec<bool>),
) -> Vec<f32> {
    let (b, n) = (batch.b, batch.n);
    let mut best = batch.x0_host.clone();
    let mut best_obj = vec![f32::NEG_INFINITY; b];
    let mut done = vec![false; b];
    for restart in 0..restarts {
        let rows: Vec<usize> = (0..b).filter(|&i| !done[i]).collect();
        if rows.is_empty() {
            break;
        }
        let sub;
        let view = if rows.len() == b {
            batch
        } else {
            sub = batch.subset(&rows);
            &sub
        };
        let (adv, obj, ok) = run(view, restart as u64);
        for (j, &i) in rows.iter().enumerate() {
            if restart == 0 || ok[j] || obj[j] > best_obj[i] {
                best[i * n..(i + 1) * n].copy_from_slice(&adv[j * n..(j + 1) * n]);
                best_obj[i] = obj[j];
                done[i] = ok[j];
            }
        }
    }
    best
}

/// How a step moves: along a direction of the ball (L-inf, L2), or L1's sparse step of `eta`
/// over the top `k` coordinates (`[B, 1]` each).
enum Stepper {
    Direction(Ball),
    Sparse(Box<SparseStep>),
}

struct SparseStep {
    ball: L1Ball,
    k: Tensor<2>,
    eta: Tensor<2>,
}

fn single_run<const D: usize, C: Classifier<D> + ?Sized>(
    batch: &Batch<'_, D, C>,
    spec: &Spec,
    restart: u64,
    observer: &mut StepObserver<'_>,
) -> Tensor<2> {
    let (b, n) = (batch.b, batch.n);
    let (lo, hi) = batch.bounds();
    let x0 = &batch.x0_host;
    let mut x = if spec.random_start {
        let mut start = vec![0f32; b * n];
        for i in 0..b {
            let row = &x0[i * n..(i + 1) * n];
            let mut rng = SplitMix64::new(sample_seed(spec.seed, restart, row));
            let delta = uniform_in_ball(spec.norm, n, spec.eps, &mut rng);
            let t: Vec<f64> = row
                .iter()
                .zip(&delta)
                .map(|(&c, d)| f64::from(c) + d)
                .collect();
            project(
                spec.norm,
                row,
                &t,
                spec.eps,
                lo,
                hi,
                &mut start[i * n..(i + 1) * n],
            );
        }
        upload(start, b, n, &batch.device)
    } else {
        batch.x0.clone()
    };
    observer(&batch.x0, &x);

    // Every norm steps and projects on the device: L-inf and L2 in `ball`, L1 in `l1_ball`.
    let stepper = match Ball::new(batch, spec.norm, spec.eps) {
        Some(ball) => Stepper::Direction(ball),
        None => {
            let k = ((spec.l1_sparsity * n as f64).ceil() as usize).max(1);
            Stepper::Sparse(Box::new(SparseStep {
                ball: L1Ball::new(batch, spec.eps),
                k: Tensor::full([b, 1], k as f64, &batch.device),
                eta: Tensor::full([b, 1], spec.step_size, &batch.device),
            }))
        }
    };
    let mut momentum: Option<Tensor<2>> = None;
    let mut frozen = vec![false; b];

    for _ in 0..spec.steps {
        let (logits, mut g) = batch.gradient(x.clone(), spec.loss);
        if spec.early_stop {
            for (f, ok) in frozen.iter_mut().zip(batch.success_of(logits)) {
                *f |= ok;
            }
            if frozen.iter().all(|&f| f) {
                break;
            }
        }
        if let Some(decay) = spec.momentum {
            // MI-FGSM: accumulate the L1-normalized gradient (a zero gradient adds nothing).
            let unit = g.clone() / g.abs().sum_dim(1).clamp_min(f32::MIN_POSITIVE);
            let m = match momentum.take() {
                Some(m) => m * decay + unit,
                None => unit,
            };
            momentum = Some(m.clone());
            g = m;
        }
        let next = match &stepper {
            Stepper::Direction(ball) => {
                ball.project(x.clone() + ball.direction(g) * spec.step_size)
            }
            Stepper::Sparse(s) => {
                s.ball
                    .project(s.ball.sparse_step(x.clone(), g, s.eta.clone(), s.k.clone()))
            }
        };
        x = if frozen.iter().any(|&f| f) {
            // Frozen rows keep the iterate that first succeeded; blending with an exact 0/1 mask
            // reproduces either row bit for bit.
            let keep: Vec<f32> = frozen.iter().map(|&f| if f { 0.0 } else { 1.0 }).collect();
            let m = upload(keep, b, 1, &batch.device);
            next * m.clone() + x * (m.neg() + 1.0)
        } else {
            next
        };
        observer(&batch.x0, &x);
    }
    // The device's L2 and L1 iterates are in the ball up to f32 rounding; the result is exactly.
    exact(batch, spec.norm, spec.eps, x)
}

impl Spec {
    /// Resolves a spec from an attack's settings; the caller has validated them.
    pub(crate) fn new(
        threat: ThreatModel,
        steps: usize,
        step_size: f64,
        options: &AttackOptions,
    ) -> Self {
        Spec {
            norm: threat.norm,
            eps: threat.eps,
            steps,
            step_size,
            random_start: options.random_start,
            momentum: None,
            l1_sparsity: DEFAULT_L1_SPARSITY,
            loss: options.loss,
            restarts: options.restarts,
            early_stop: options.early_stop,
            seed: options.seed,
        }
    }
}

/// Share of coordinates an L1 step moves by default: the top 1 % of |gradient|, the 99th
/// percentile of Tramèr & Boneh's SLIDE.
pub const DEFAULT_L1_SPARSITY: f64 = 0.01;

/// Validates the batch and runs the iterative engine on it.
pub(crate) fn attack<const D: usize, C: Classifier<D> + ?Sized>(
    model: &C,
    x: Tensor<D>,
    labels: Tensor<1, Int>,
    targets: Option<Tensor<1, Int>>,
    options: &AttackOptions,
    spec: &Spec,
    observer: &mut StepObserver<'_>,
) -> Result<Tensor<D>, AttackError> {
    let batch = Batch::new(model, x, labels, targets, options)?;
    batch.check_loss(spec.loss)?;
    let adv = run(&batch, spec, observer);
    Ok(batch.unflatten(adv))
}

/// Checks the settings every iterative attack has.
pub(crate) fn validate(
    threat: &ThreatModel,
    steps: usize,
    step_size: f64,
    l1_sparsity: f64,
    options: &AttackOptions,
) -> Result<(), AttackError> {
    threat.validate()?;
    options.validate()?;
    check_steps(steps)?;
    if options.restarts > 1 && !options.random_start {
        return Err(crate::error::invalid(
            "restarts",
            options.restarts,
            "more than one run needs random_start (without it every run is the same)",
        ));
    }
    if threat.eps > 0.0 {
        check_positive("step_size", step_size)?;
    }
    if !(0.0..=1.0).contains(&l1_sparsity) {
        return Err(crate::error::invalid(
            "l1_sparsity",
            l1_sparsity,
            "must be in [0, 1]",
        ));
    }
    Ok(())
}
