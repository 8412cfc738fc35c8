//! APGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble of
//! diverse parameter-free attacks") in L-inf and L2, and L1-APGD (Croce & Hein 2021, "Mind the
//! box"), with the cross-entropy, CW-margin or DLR loss, untargeted or targeted.
//!
//! The L-inf/L2 schedule, as published:
//! - step size `η` starts at `2·eps` for every sample;
//! - the first step is a plain projected gradient step; every later step takes
//!   `z = P(x_k + η·s(∇f(x_k)))` (`s` = sign for L-inf, `g/‖g‖₂` for L2) and then the momentum
//!   step `x_{k+1} = P(x_k + α(z − x_k) + (1 − α)(x_k − x_{k−1}))` with `α = 0.75`;
//! - checkpoints at the fractions `p_0 = 0`, `p_1 = 0.22`,
//!   `p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)` of the `N` iterations (for `N = 100`:
//!   22, 41, 57, 70, 80, 87, 93, 99);
//! - at each checkpoint a sample's step is halved, and its search restarts from its best point so
//!   far, when (1) the objective increased in at most `ρ = 0.75` of the steps since the last
//!   checkpoint, or (2) its step was not halved at the last checkpoint and its best objective did
//!   not improve since (the reference code's reading: never at the first checkpoint).
//!
//! L1 (as in the authors' reference code):
//! - step size starts at `eps` (α = 1); no momentum;
//! - a step moves the `topk` share of coordinates with the largest `|g|` by `η / k` each; `topk`
//!   starts at 20 % (with `large_reps`, every stage starts from the share of non-zero coordinates
//!   of its start point divided by 1.5, as the reference passes each stage its start). One
//!   deliberate difference: the top-k are chosen among the coordinates the box lets move in the
//!   gradient's direction (the reference code ranks all coordinates, so part of its step can be
//!   lost to the box);
//! - every `max(⌊0.04·N⌋, 1)` iterations: `topk` becomes the best point's share of non-zero
//!   coordinates divided by 1.5; if the best point got sparser (its count fell below 95 % of the
//!   last checkpoint's) the step resets to `eps` and the search restarts from the best point,
//!   otherwise the step shrinks by 1.5, never below `eps/10`;
//! - `large_reps` (AutoAttack's L1 setting): 30 % of the iterations at `3·eps`, 30 % at `2·eps`
//!   and the rest at `eps`, each stage starting from the previous stage's highest-objective point
//!   projected into the smaller ball. Only the last stage's iterates are in the threat model: only
//!   they count as successes and reach the step observer.
//!
//! `P` is the exact projection onto the eps-ball around the clean input ∩ the box (see
//! `geometry` and `ball`). The L-inf and L2 searches run on the device with their whole state as
//! tensors (see `apgd_device`; an L2 result is projected once more on the host, exactly); L1 runs
//! the host loop below. The result per sample is the first iterate that fooled the model, else the
//! iterate with the highest objective. Restarts (with `random_start`) work as for PGD.

use burn::config::Config;
use burn::tensor::{Int, Tensor};

use crate::apgd_schedule::Found;
use crate::attack::Attack;
use crate::ball::{Ball, exact_rows};
use crate::batch::Batch;
use crate::classifier::Classifier;
use crate::error::AttackError;
use crate::geometry::{project, uniform_in_ball};
use crate::host::{host_f32, upload};
use crate::iterative::{StepObserver, best_over_restarts};
use crate::loss::objective;
use crate::options::{AttackOptions, Norm, ThreatModel, check_steps};
use crate::overrides::set;
use crate::rng::{SplitMix64, sample_seed};

/// Configuration of [`Apgd`]. Defaults are the paper's: 100 iterations, momentum 0.75, ρ = 0.75,
/// random start.
///
/// The random start is uniform in the ball (the reference code draws Gaussian noise, projected for
/// L1; the schedule after the start is the same).
#[derive(Config, Debug)]
pub struct ApgdConfig {
    /// Norm (`linf`, `l2` or `l1`) and radius.
    pub threat: ThreatModel,
    /// Number of iterations.
    #[config(default = 100)]
    pub steps: usize,
    /// Momentum weight α of the new step.
    #[config(default = 0.75)]
    pub momentum: f64,
    /// Share of improving steps below which a checkpoint halves the step.
    #[config(default = 0.75)]
    pub rho: f64,
    /// L1 only: warm-start at 3·eps and 2·eps before the last stage at eps (AutoAttack's
    /// `use_largereps`).
    #[config(default = false)]
    pub large_reps: bool,
    /// Shared options (random start on by default).
    #[config(default = "AttackOptions::new().with_random_start(true)")]
    pub options: AttackOptions,
}

impl ApgdConfig {
    /// Validates the settings and builds the attack.
    pub fn init(&self) -> Result<Apgd, AttackError> {
        self.threat.validate()?;
        self.options.validate()?;
        check_steps(self.steps)?;
        if self.large_reps && self.threat.norm != Norm::L1 {
            return Err(AttackError::Unsupported {
                attack: "apgd",
                reason: "large_reps is defined for the l1 norm only".into(),
            });
        }
        if self.large_reps && self.steps < 3 {
            return Err(crate::error::invalid(
                "steps",
                self.steps,
                "large_reps needs at least 3 (one per stage)",
            ));
        }
        for (name, v) in [("momentum", self.momentum), ("rho", self.rho)] {
            if !(0.0..=1.0).contains(&v) {
                return Err(crate::error::invalid(name, v, "must be in [0, 1]"));
            }
        }
        if self.options.restarts > 1 && !self.options.random_start {
            return Err(crate::error::invalid(
                "restarts",
                self.options.restarts,
                "more than one run needs random_start",
            ));
        }
        Ok(Apgd {
            config: self.clone(),
        })
    }
}

/// Auto-PGD. Build with [`ApgdConfig::init`].
#[derive(Debug, Clone)]
pub struct Apgd {
    config: ApgdConfig,
}

/// Objective, success and flat input gradient for the flat rows `x` of `view`.
fn eval_rows<const D: usize, C: Classifier<D> + ?Sized>(
    view: &Batch<'_, D, C>,
    x: Vec<f32>,
    loss: crate::options::LossKind,
) -> (Vec<f32>, Vec<bool>, Vec<f32>) {
    let (logits, g) = view.gradient(upload(x, view.b, view.n, &view.device), loss);
    let obj = host_f32(objective(
        loss,
        logits.clone(),
        &view.labels,
        view.targets.as_ref(),
    ));
    (obj, view.success_of(logits), host_f32(g))
}

/// Fraction of the L1 iterations after which the sparsity and step size adapt (every `0.04·N`).
const L1_CHECK_EVERY: f64 = 0.04;
/// L1: the step shrinks by this factor at a checkpoint where the sparsity did not drop...
const L1_STEP_SHRINK: f64 = 1.5;
/// ...but never below `eps / L1_MIN_STEP_DIVISOR`.
const L1_MIN_STEP_DIVISOR: f64 = 10.0;
/// L1: initial share of coordinates a step moves.
const L1_INITIAL_TOPK: f64 = 0.2;

impl Apgd {
    /// One independent run (a restart): a random or clean start, then either the plain schedule or,
    /// with `large_reps`, the three stages at 3·eps, 2·eps and eps.
    fn single_run<const D: usize, C: Classifier<D> + ?Sized>(
        &self,
        batch: &Batch<'_, D, C>,
        restart: u64,
        observer: &mut StepObserver<'_>,
    ) -> (Vec<f32>, Vec<f32>, Vec<bool>) {
        let c = &self.config;
        let (b, n, norm, eps) = (batch.b, batch.n, c.threat.norm, c.threat.eps);
        let (lo, hi) = batch.bounds();
        let x0 = &batch.x0_host;
        let row = |i: usize| i * n..(i + 1) * n;
        // Stages: (radius, iterations). The large-radius stages only warm-start the last one.
        let stages: Vec<(f64, usize)> = if c.large_reps {
            let first = (0.3 * c.steps as f64).ceil() as usize;
            let last = c.steps.saturating_sub(2 * first).max(1);
            vec![
                (3.0 * eps, first.max(1)),
                (2.0 * eps, first.max(1)),
                (eps, last),
            ]
        } else {
            vec![(eps, c.steps)]
        };
        let start_eps = stages[0].0;
        let mut x = x0.clone();
        if c.options.random_start {
            for i in 0..b {
                let mut rng = SplitMix64::new(sample_seed(c.options.seed, restart, &x0[row(i)]));
                let delta = uniform_in_ball(norm, n, start_eps, &mut rng);
                let t: Vec<f64> = x0[row(i)]
                    .iter()
                    .zip(&delta)
                    .map(|(&v, d)| f64::from(v) + d)
                    .collect();
                project(norm, &x0[row(i)], &t, start_eps, lo, hi, &mut x[row(i)]);
            }
        }
        let (found, exact) = match Ball::new(batch, norm, eps) {
            // L-inf and L2 have one stage, and run on the device (see `apgd_device`).
            Some(ball) => {
                let settings = crate::apgd_device::Settings {
                    eps,
                    steps: c.steps,
                    momentum: c.momentum,
                    rho: c.rho,
                    loss: c.options.loss,
                    early_stop: c.options.early_stop,
                };
                let start = upload(x, b, n, &batch.device);
                let found = crate::apgd_device::search(batch, &ball, start, &settings, observer);
                (found, norm == Norm::L2)
            }
            None => (self.stages(batch, x, &stages, observer), false),
        };
        let Found {
            best_x,
            best_f,
            found,
            found_x,
        } = found;
        let mut out = best_x;
        let mut objective_out = best_f;
        for i in (0..b).filter(|&i| found[i]) {
            out[row(i)].copy_from_slice(&found_x[row(i)]);
            objective_out[i] = f32::INFINITY;
        }
        let mut found = found;
        if exact {
            // The device's L2 iterates aim inside the ball; the result is in it exactly. A row the
            // exact projection moved is judged again, so that its flag and objective describe
            // the point returned.
            let moved = exact_rows(norm, x0, &mut out, eps, (lo, hi), n);
            if !moved.is_empty() {
                let (obj, ok) =
                    batch.judge(upload(out.clone(), b, n, &batch.device), c.options.loss);
                for i in moved {
                    found[i] = ok[i];
                    objective_out[i] = if ok[i] { f32::INFINITY } else { obj[i] };
                }
            }
        }
        (out, objective_out, found)
    }

    /// The host loop (L1) over the stages `(radius, iterations)` from `x`, each stage starting
    /// from the previous one's highest-objective point projected into its ball.
    fn stages<const D: usize, C: Classifier<D> + ?Sized>(
        &self,
        batch: &Batch<'_, D, C>,
        mut x: Vec<f32>,
        stages: &[(f64, usize)],
        observer: &mut StepObserver<'_>,
    ) -> Found {
        let c = &self.config;
        let (b, n, norm) = (batch.b, batch.n, c.threat.norm);
        let (lo, hi) = batch.bounds();
        let x0 = &batch.x0_host;
        let row = |i: usize| i * n..(i + 1) * n;
        let last = stages.len() - 1;
        let mut result = None;
        for (s, &(stage_eps, steps)) in stages.iter().enumerate() {
            if s > 0 {
                // Carry the highest-objective point into the smaller ball.
                let prev = x.clone();
                for i in 0..b {
                    let t: Vec<f64> = prev[row(i)].iter().map(|&v| f64::from(v)).collect();
                    project(norm, &x0[row(i)], &t, stage_eps, lo, hi, &mut x[row(i)]);
                }
            }
            // Only the last stage's iterates are in the threat model: the observer sees those, and
            // only they can count as successes.
            let mut silent = |_: &Tensor<2>, _: &Tensor<2>| {};
            let obs: &mut StepObserver<'_> = if s == last { observer } else { &mut silent };
            // The reference code gives every large_reps stage its start point (`x_init`), so only
            // a plain run starts with the initial sparsity.
            let fresh = s == 0 && !c.large_reps;
            let found = self.stage(batch, x.clone(), stage_eps, steps, fresh, s == last, obs);
            x = found.best_x.clone();
            result = Some(found);
        }
        result.expect("at least one stage")
    }

    /// The APGD loop at radius `eps` for `steps` iterations from `start` (already in the ball).
    /// `fresh` says the start is a random or clean point (L1: initial sparsity 20 %), not a point
    /// carried from a larger stage; `track` says successes count.
    #[allow(clippy::too_many_arguments)]
    fn stage<const D: usize, C: Classifier<D> + ?Sized>(
        &self,
        batch: &Batch<'_, D, C>,
        start: Vec<f32>,
        eps: f64,
        steps: usize,
        fresh: bool,
        track: bool,
        observer: &mut StepObserver<'_>,
    ) -> Found {
        let c = &self.config;
        let (b, n) = (batch.b, batch.n);
        let geo = Geometry::new(batch, eps);
        let dev = &batch.device;
        observer(&batch.x0, &upload(start.clone(), b, n, dev));
        let eval = |x: &[f32]| eval_rows(batch, x.to_vec(), c.options.loss);
        let first = eval(&start);
        let mut s = Search::new(&geo, start, first, fresh, track);
        let every = ((L1_CHECK_EVERY * steps as f64) as usize).max(1);
        let checkpoints: Vec<usize> = (1..=steps / every).map(|j| j * every).collect();
        let mut next = vec![0f32; b * n];
        let mut active: Vec<usize> = (0..b).collect();
        let mut sub: Option<Batch<'_, D, C>> = None;
        for k in 0..steps {
            geo.step(&s.x, &s.g, &s.eta, &s.topk, &mut next);
            if c.options.early_stop {
                s.freeze_found(&geo, &mut next);
            }
            s.x.copy_from_slice(&next);
            observer(&batch.x0, &upload(s.x.clone(), b, n, dev));
            // With early stop, fooled samples are frozen: only the others need a gradient (the
            // sub-batch is rebuilt only when that set changes).
            if c.options.early_stop && track {
                let still: Vec<usize> = (0..b).filter(|&i| !s.found[i]).collect();
                if still.is_empty() {
                    break;
                }
                if still.len() != active.len() {
                    sub = (still.len() < b).then(|| batch.subset(&still));
                    active = still;
                }
            }
            let evaluated = match &sub {
                None => eval(&s.x),
                Some(view) => s.evaluate_rows(&geo, view, &active, c.options.loss),
            };
            s.record(&geo, evaluated, track);
            if checkpoints.contains(&(k + 1)) {
                s.adapt_sparsity(&geo);
            }
        }
        s.into_found()
    }
}

/// The geometry of one L1-APGD stage: the batch's clean rows, the radius and the box.
struct Geometry<'a> {
    x0: &'a [f32],
    eps: f64,
    lo: f64,
    hi: f64,
    b: usize,
    n: usize,
    /// The initial step size (`α·eps` with α = 1).
    eta0: f64,
}

impl<'a> Geometry<'a> {
    fn new<const D: usize, C: Classifier<D> + ?Sized>(
        batch: &'a Batch<'_, D, C>,
        eps: f64,
    ) -> Self {
        let (lo, hi) = batch.bounds();
        Self {
            x0: &batch.x0_host,
            eps,
            lo,
            hi,
            b: batch.b,
            n: batch.n,
            eta0: eps,
        }
    }

    fn row(&self, i: usize) -> std::ops::Range<usize> {
        i * self.n..(i + 1) * self.n
    }

    /// Projects the target `t` of sample `i` onto the ball ∩ box.
    fn project(&self, i: usize, t: &[f64], out: &mut [f32]) {
        project(
            Norm::L1,
            &self.x0[self.row(i)],
            t,
            self.eps,
            self.lo,
            self.hi,
            out,
        )
    }

    /// Coordinates of sample `i` of `x` that differ from the clean input.
    fn nonzero(&self, x: &[f32], i: usize) -> usize {
        x[self.row(i)]
            .iter()
            .zip(&self.x0[self.row(i)])
            .filter(|(a, b)| a != b)
            .count()
    }

    /// A sparse step of size `eta[i]` on the `topk[i]` share of coordinates, then the
    /// projection (L1 has no momentum).
    fn step(&self, x: &[f32], g: &[f32], eta: &[f64], topk: &[f64], out: &mut [f32]) {
        let n = self.n;
        for i in 0..self.b {
            let (xr, gr) = (&x[self.row(i)], &g[self.row(i)]);
            // The reference selects |g| at or above the ⌊(1 − topk)·N⌋-th smallest.
            let below = ((1.0 - topk[i]) * n as f64)
                .floor()
                .clamp(0.0, n as f64 - 1.0);
            let k = n - below as usize;
            let t = crate::geometry::l1_step(xr, gr, eta[i], k, self.lo, self.hi);
            self.project(i, &t, &mut out[self.row(i)]);
        }
    }
}

/// The per-sample state of one L1-APGD stage: the iterate, its objective and gradient; the best
/// point so far; the first fooling point; the step sizes and sparsities.
struct Search {
    x: Vec<f32>,
    f: Vec<f32>,
    g: Vec<f32>,
    best_f: Vec<f32>,
    best_x: Vec<f32>,
    best_g: Vec<f32>,
    found: Vec<bool>,
    found_x: Vec<f32>,
    eta: Vec<f64>,
    /// L1: the share of coordinates a step moves, per sample.
    topk: Vec<f64>,
    /// L1: the best point's non-zero count at the last checkpoint.
    sp_old: Vec<usize>,
}

impl Search {
    fn new(
        geo: &Geometry<'_>,
        x: Vec<f32>,
        (f, ok, g): (Vec<f32>, Vec<bool>, Vec<f32>),
        fresh: bool,
        track: bool,
    ) -> Self {
        let (b, n) = (geo.b, geo.n);
        let topk = (0..b)
            .map(|i| {
                if fresh {
                    L1_INITIAL_TOPK
                } else {
                    geo.nonzero(&x, i) as f64 / n as f64 / L1_STEP_SHRINK
                }
            })
            .collect();
        let sp_old = (0..b)
            .map(|i| if fresh { n } else { geo.nonzero(&x, i) })
            .collect();
        Self {
            best_f: f.clone(),
            best_x: x.clone(),
            best_g: g.clone(),
            found: ok.iter().map(|&o| o && track).collect(),
            found_x: x.clone(),
            eta: vec![geo.eta0; b],
            topk,
            sp_old,
            x,
            f,
            g,
        }
    }

    /// Early stop: fooled samples keep the point that first fooled the model.
    fn freeze_found(&self, geo: &Geometry<'_>, next: &mut [f32]) {
        for i in (0..geo.b).filter(|&i| self.found[i]) {
            next[geo.row(i)].copy_from_slice(&self.found_x[geo.row(i)]);
        }
    }

    /// Objective, success and gradient of the `active` rows through the sub-batch `view`, spread
    /// over the full batch (the other rows keep their current values).
    fn evaluate_rows<const D: usize, C: Classifier<D> + ?Sized>(
        &self,
        geo: &Geometry<'_>,
        view: &Batch<'_, D, C>,
        active: &[usize],
        loss: crate::options::LossKind,
    ) -> (Vec<f32>, Vec<bool>, Vec<f32>) {
        let n = geo.n;
        let rows: Vec<f32> = active
            .iter()
            .flat_map(|&i| self.x[geo.row(i)].to_vec())
            .collect();
        let (fp, okp, gp) = eval_rows(view, rows, loss);
        let (mut f_full, mut ok_full, mut g_full) =
            (self.f.clone(), self.found.clone(), self.g.clone());
        for (j, &i) in active.iter().enumerate() {
            f_full[i] = fp[j];
            ok_full[i] = okp[j];
            g_full[geo.row(i)].copy_from_slice(&gp[j * n..(j + 1) * n]);
        }
        (f_full, ok_full, g_full)
    }

    /// Takes in the objective, success and gradient at the new iterate: counts increases, keeps
    /// the best point and (when successes count) the first fooling point.
    fn record(
        &mut self,
        geo: &Geometry<'_>,
        (f_new, ok_new, g_new): (Vec<f32>, Vec<bool>, Vec<f32>),
        track: bool,
    ) {
        for i in 0..geo.b {
            if f_new[i] > self.best_f[i] {
                self.best_f[i] = f_new[i];
                self.best_x[geo.row(i)].copy_from_slice(&self.x[geo.row(i)]);
                self.best_g[geo.row(i)].copy_from_slice(&g_new[geo.row(i)]);
            }
            if track && ok_new[i] && !self.found[i] {
                self.found[i] = true;
                self.found_x[geo.row(i)].copy_from_slice(&self.x[geo.row(i)]);
            }
        }
        (self.f, self.g) = (f_new, g_new);
    }

    /// L1 checkpoint (Croce & Hein 2021): move as many coordinates as the best point uses,
    /// divided by 1.5; reset the step when the best point got sparser, otherwise shrink it.
    fn adapt_sparsity(&mut self, geo: &Geometry<'_>) {
        let (n, eta0) = (geo.n, geo.eta0);
        for i in 0..geo.b {
            let sp = geo.nonzero(&self.best_x, i);
            let sparser = (sp as f64) < 0.95 * self.sp_old[i] as f64;
            self.topk[i] = sp as f64 / n as f64 / L1_STEP_SHRINK;
            self.eta[i] = if sparser {
                eta0
            } else {
                self.eta[i] / L1_STEP_SHRINK
            }
            .clamp(eta0 / L1_MIN_STEP_DIVISOR, eta0);
            self.sp_old[i] = sp;
            if sparser {
                self.x[geo.row(i)].copy_from_slice(&self.best_x[geo.row(i)]);
                self.g[geo.row(i)].copy_from_slice(&self.best_g[geo.row(i)]);
            }
        }
    }

    fn into_found(self) -> Found {
        Found {
            best_x: self.best_x,
            best_f: self.best_f,
            found: self.found,
            found_x: self.found_x,
        }
    }
}

impl Attack for Apgd {
    fn name(&self) -> &'static str {
        if self.config.options.targeting.is_targeted() {
            "apgd-t"
        } else {
            "apgd"
        }
    }

    fn options(&self) -> &AttackOptions {
        &self.config.options
    }

    fn threat(&self) -> Option<ThreatModel> {
        Some(self.config.threat)
    }

    fn run<const D: usize, C: Classifier<D> + ?Sized>(
        &self,
        model: &C,
        x: Tensor<D>,
        labels: Tensor<1, Int>,
        targets: Option<Tensor<1, Int>>,
        observer: &mut StepObserver<'_>,
    ) -> Result<Tensor<D>, AttackError> {
        let c = &self.config;
        let batch = Batch::new(model, x, labels, targets, &c.options)?;
        batch.check_loss(c.options.loss)?;
        if batch.b == 0 || c.threat.eps == 0.0 {
            observer(&batch.x0, &batch.x0);
            return Ok(batch.unflatten(batch.x0.clone()));
        }
        let best = best_over_restarts(&batch, c.options.restarts, |view, restart| {
            self.single_run(view, restart, observer)
        });
        Ok(batch.unflatten(upload(best, batch.b, batch.n, &batch.device)))
    }
}

crate::attack::settings!(fixed_budget ApgdConfig => Apgd, "apgd", |c, o| {
    o.refuse("apgd", &["step_size", "decay"])?;
    set(&mut c.steps, o.steps);
});
