//! APGD's L-inf and L2 search with its whole state on the device (the schedule is documented in
//! `apgd`).
//!
//! Every per-sample quantity — iterate and predecessor, objective, gradient, best point, first
//! fooling point, step size, the counts the checkpoints decide on — is a tensor, and a step is a
//! handful of batched operations: no row is read back or uploaded during the search. The step's
//! direction and the projection onto the ball ∩ box are `ball`'s: for L-inf a clamp to bounds
//! rounded inward, for L2 the exact projection by Newton's method on the active set.
//!
//! Device-to-host reads per batch and run: for L-inf none per step without early stopping; for
//! L2 one boolean per Newton iteration of each projection (two projections a step after the
//! first, each settling in a few iterations; see `ball`). With early stopping, one scalar per step
//! (how many samples are fooled, to decide whether the batch can shrink) and `B` booleans each
//! time that count changes. Then the result (best point, its objective, the found flags and the
//! first fooling points) once at the end.

use burn::tensor::{Bool, Int, Tensor};

use crate::apgd_schedule::{Found, checkpoints};
use crate::ball::Ball;
use crate::batch::Batch;
use crate::classifier::Classifier;
use crate::host::{host_bool, host_f32, host_i64, upload_int};
use crate::iterative::StepObserver;
use crate::loss::objective;
use crate::options::LossKind;

/// The settings of one search.
pub(crate) struct Settings {
    pub eps: f64,
    pub steps: usize,
    pub momentum: f64,
    pub rho: f64,
    pub loss: LossKind,
    pub early_stop: bool,
}

/// A `[B]` mask widened to the rows of a `[B, N]` tensor.
pub(crate) fn rows(mask: Tensor<1, Bool>, n: usize) -> Tensor<2, Bool> {
    let b = mask.dims()[0];
    mask.reshape([b, 1]).expand([b, n])
}

/// The samples still attacked when early stopping has frozen some: a sub-batch of them, their
/// indices, and for every sample its position in the sub-batch (any position for the others).
pub(crate) struct Active<'a, const D: usize, C: ?Sized> {
    view: Batch<'a, D, C>,
    idx: Tensor<1, Int>,
    pos: Tensor<1, Int>,
    mask: Tensor<1, Bool>,
}

impl<'a, const D: usize, C: Classifier<D> + ?Sized> Active<'a, D, C> {
    pub(crate) fn new(batch: &Batch<'a, D, C>, still: &[usize]) -> Self {
        let dev = &batch.device;
        let mut pos = vec![0i64; batch.b];
        let mut mask = vec![false; batch.b];
        for (j, &i) in still.iter().enumerate() {
            pos[i] = j as i64;
            mask[i] = true;
        }
        Self {
            view: batch.subset(still),
            idx: upload_int(still.iter().map(|&i| i as i64).collect(), dev),
            pos: upload_int(pos, dev),
            mask: Tensor::from_data(burn::tensor::TensorData::new(mask, [batch.b]), dev),
        }
    }
}

/// The search state, every field a tensor on the batch's device.
struct State {
    x: Tensor<2>,
    x_prev: Tensor<2>,
    f: Tensor<1>,
    g: Tensor<2>,
    best_f: Tensor<1>,
    best_x: Tensor<2>,
    best_g: Tensor<2>,
    found: Tensor<1, Bool>,
    found_x: Tensor<2>,
    /// `[B, 1]`, so that it scales the rows of a step.
    eta: Tensor<2>,
    /// Steps since the last checkpoint that increased the objective.
    improved: Tensor<1>,
    halved_last: Tensor<1, Bool>,
    best_at_ckpt: Tensor<1>,
}

/// Early stopping's bookkeeping: how many samples were fooled at the last look, and the
/// sub-batch of the others, rebuilt only when that count changes.
pub(crate) struct Shrinking<'a, const D: usize, C: ?Sized> {
    // Starting from 0, the first look drops the samples already fooled at the start.
    fooled: usize,
    active: Option<Active<'a, D, C>>,
}

impl<'a, const D: usize, C: Classifier<D> + ?Sized> Shrinking<'a, D, C> {
    pub(crate) fn new() -> Self {
        Self {
            fooled: 0,
            active: None,
        }
    }

    /// Looks at the found flags after a step (one scalar read, and `B` booleans when the count
    /// changed): `false` when every sample is fooled and the search can stop.
    pub(crate) fn update(&mut self, batch: &Batch<'a, D, C>, found: &Tensor<1, Bool>) -> bool {
        let now = host_i64(found.clone().int().sum())[0] as usize;
        if now == batch.b {
            return false;
        }
        if now != self.fooled {
            let flags = host_bool(found.clone());
            let still: Vec<usize> = (0..batch.b).filter(|&i| !flags[i]).collect();
            self.active = Some(Active::new(batch, &still));
            self.fooled = now;
        }
        true
    }

    /// The samples still attacked, once some are fooled.
    pub(crate) fn active(&self) -> Option<&Active<'a, D, C>> {
        self.active.as_ref()
    }
}

/// The objective, success flags and gradient a search keeps for the samples it no longer
/// evaluates.
pub(crate) struct Kept<'s> {
    pub f: &'s Tensor<1>,
    pub found: &'s Tensor<1, Bool>,
    pub g: &'s Tensor<2>,
}

/// Objective, success and input gradient at `x`, for the whole batch or (early stop) only the
/// active samples, the others keeping `keep`'s values.
pub(crate) fn evaluate<const D: usize, C: Classifier<D> + ?Sized>(
    batch: &Batch<'_, D, C>,
    active: Option<&Active<'_, D, C>>,
    x: &Tensor<2>,
    loss: LossKind,
    keep: Kept<'_>,
) -> (Tensor<1>, Tensor<1, Bool>, Tensor<2>) {
    let judge = |view: &Batch<'_, D, C>, x: Tensor<2>| {
        let (logits, g) = view.gradient(x, loss);
        let f = objective(loss, logits.clone(), &view.labels, view.targets.as_ref());
        (f, view.success_mask(logits), g)
    };
    let Some(a) = active else {
        return judge(batch, x.clone());
    };
    let (f, ok, g) = judge(&a.view, x.clone().select(0, a.idx.clone()));
    // Spread the sub-batch back by gathering (exact, and supported by every backend).
    let f = keep
        .f
        .clone()
        .mask_where(a.mask.clone(), f.select(0, a.pos.clone()));
    let ok = ok.int().select(0, a.pos.clone()).equal_elem(1);
    let ok = a
        .mask
        .clone()
        .bool_and(ok)
        .bool_or(a.mask.clone().bool_not().bool_and(keep.found.clone()));
    let g = keep
        .g
        .clone()
        .mask_where(rows(a.mask.clone(), batch.n), g.select(0, a.pos.clone()));
    (f, ok, g)
}

/// The APGD loop in `ball` (L-inf or L2, of radius `s.eps` around `batch`'s clean rows) from
/// `start` (in the ball and box). Successes count from the start point on.
pub(crate) fn search<const D: usize, C: Classifier<D> + ?Sized>(
    batch: &Batch<'_, D, C>,
    ball: &Ball,
    start: Tensor<2>,
    s: &Settings,
    observer: &mut StepObserver<'_>,
) -> Found {
    let (b, n, dev) = (batch.b, batch.n, &batch.device);
    let project = |t: Tensor<2>| ball.project(t);

    observer(&batch.x0, &start);
    let (logits, g) = batch.gradient(start.clone(), s.loss);
    let f = objective(
        s.loss,
        logits.clone(),
        &batch.labels,
        batch.targets.as_ref(),
    );
    let found = batch.success_mask(logits);
    let mut st = State {
        x: start.clone(),
        x_prev: start.clone(),
        f: f.clone(),
        g: g.clone(),
        best_f: f.clone(),
        best_x: start.clone(),
        best_g: g,
        found,
        found_x: start,
        eta: Tensor::full([b, 1], 2.0 * s.eps, dev),
        improved: Tensor::zeros([b], dev),
        halved_last: Tensor::<1>::ones([b], dev).equal_elem(1.0),
        best_at_ckpt: f,
    };
    let ckpts = checkpoints(s.steps);
    let mut last_ckpt = 0usize;
    let mut shrinking = Shrinking::new();
    for k in 0..s.steps {
        // z = P(x + η·s(g)); the first step is z, later ones add momentum.
        let z = project(st.x.clone() + ball.direction(st.g.clone()) * st.eta.clone());
        let mut next = if k == 0 {
            z
        } else {
            let x = st.x.clone();
            project(
                x.clone()
                    + (z - x.clone()) * s.momentum
                    + (x - st.x_prev.clone()) * (1.0 - s.momentum),
            )
        };
        if s.early_stop {
            // Fooled samples keep the point that first fooled the model.
            next = next.mask_where(rows(st.found.clone(), n), st.found_x.clone());
        }
        st.x_prev = std::mem::replace(&mut st.x, next);
        observer(&batch.x0, &st.x);
        if s.early_stop && !shrinking.update(batch, &st.found) {
            break;
        }
        let keep = Kept {
            f: &st.f,
            found: &st.found,
            g: &st.g,
        };
        let (f_new, ok_new, g_new) = evaluate(batch, shrinking.active(), &st.x, s.loss, keep);
        record(&mut st, f_new, ok_new, g_new, n);
        if ckpts.contains(&(k + 1)) {
            halve_stalled(&mut st, s.rho * (k + 1 - last_ckpt) as f64, n);
            last_ckpt = k + 1;
        }
    }
    Found {
        best_x: host_f32(st.best_x),
        best_f: host_f32(st.best_f),
        found: host_bool(st.found),
        found_x: host_f32(st.found_x),
    }
}

/// Takes in the objective, success and gradient at the new iterate: counts increases, keeps the
/// best point and the first fooling point.
fn record(st: &mut State, f_new: Tensor<1>, ok_new: Tensor<1, Bool>, g_new: Tensor<2>, n: usize) {
    st.improved = st.improved.clone() + f_new.clone().greater(st.f.clone()).float();
    let better = f_new.clone().greater(st.best_f.clone());
    st.best_f = st.best_f.clone().mask_where(better.clone(), f_new.clone());
    st.best_x = st
        .best_x
        .clone()
        .mask_where(rows(better.clone(), n), st.x.clone());
    st.best_g = st.best_g.clone().mask_where(rows(better, n), g_new.clone());
    let newly = ok_new.bool_and(st.found.clone().bool_not());
    st.found = st.found.clone().bool_or(newly.clone());
    st.found_x = st.found_x.clone().mask_where(rows(newly, n), st.x.clone());
    st.f = f_new;
    st.g = g_new;
}

/// A checkpoint: halve the step, and restart from the best point with its gradient, where at
/// most `allowed` (ρ times the steps since the last checkpoint) steps increased the objective, or
/// where the step was not halved at the last checkpoint and the best objective did not improve.
fn halve_stalled(st: &mut State, allowed: f64, n: usize) {
    let b = st.f.dims()[0];
    let too_few = st.improved.clone().lower_equal_elem(allowed);
    let stalled = st
        .halved_last
        .clone()
        .bool_not()
        .bool_and(st.best_at_ckpt.clone().greater_equal(st.best_f.clone()));
    let reduce = too_few.bool_or(stalled);
    st.best_at_ckpt = st.best_f.clone();
    st.halved_last = reduce.clone();
    st.eta = st
        .eta
        .clone()
        .mask_where(reduce.clone().reshape([b, 1]), st.eta.clone() * 0.5);
    let wide = rows(reduce.clone(), n);
    st.x = st.x.clone().mask_where(wide.clone(), st.best_x.clone());
    st.x_prev = st
        .x_prev
        .clone()
        .mask_where(wide.clone(), st.best_x.clone());
    st.g = st.g.clone().mask_where(wide, st.best_g.clone());
    st.f = st.f.clone().mask_where(reduce, st.best_f.clone());
    st.improved = st.improved.zeros_like();
}
