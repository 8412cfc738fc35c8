//! L1-APGD's search (Croce & Hein 2021; the schedule is documented in `apgd`) with its whole
//! state on the device: iterate, objective, gradient, best point, first fooling point, step size,
//! sparsity `k` and the last checkpoint's non-zero count are tensors, and a step is the sparse step
//! and projection of `l1_ball`.
//!
//! Device-to-host reads per batch and run: per step, the booleans of `l1_ball` (the top-k
//! threshold's bisection every second halving, the projection's Newton iterations); with early
//! stopping, one scalar per step (how many samples are fooled) and `B` booleans each time that
//! count changes; then the result once at the end.

use burn::tensor::{Bool, Tensor};

use crate::apgd_device::{Kept, Shrinking, evaluate, rows};
use crate::apgd_schedule::Found;
use crate::batch::Batch;
use crate::classifier::Classifier;
use crate::host::{host_bool, host_f32};
use crate::iterative::StepObserver;
use crate::l1_ball::L1Ball;
use crate::loss::objective;
use crate::options::LossKind;

/// Fraction of the iterations after which the sparsity and step size adapt (every `0.04·N`).
const CHECK_EVERY: f64 = 0.04;
/// The step shrinks by this factor at a checkpoint where the sparsity did not drop...
const STEP_SHRINK: f64 = 1.5;
/// ...but never below `eps / MIN_STEP_DIVISOR`.
const MIN_STEP_DIVISOR: f64 = 10.0;
/// Initial share of coordinates a step moves.
const INITIAL_TOPK: f64 = 0.2;

/// The settings of one search.
pub(crate) struct Settings {
    /// `(radius, iterations)` per stage: one stage, or `large_reps`' three.
    pub stages: Vec<(f64, usize)>,
    pub large_reps: bool,
    pub loss: LossKind,
    pub early_stop: bool,
}

/// The search state of one stage.
struct State {
    x: Tensor<2>,
    f: Tensor<1>,
    g: Tensor<2>,
    best_f: Tensor<1>,
    best_x: Tensor<2>,
    best_g: Tensor<2>,
    found: Tensor<1, Bool>,
    found_x: Tensor<2>,
    /// `[B, 1]` each: the step size, how many coordinates a step moves, and the best point's
    /// non-zero count at the last checkpoint.
    eta: Tensor<2>,
    k: Tensor<2>,
    sp_old: Tensor<2>,
}

/// Coordinates of each row of `x` that differ from the clean row, as `[B, 1]` counts.
fn nonzero(x: &Tensor<2>, x0: &Tensor<2>) -> Tensor<2> {
    x.clone().not_equal(x0.clone()).float().sum_dim(1)
}

/// How many coordinates a step moves when the best point has `sp` non-zero ones: the reference's
/// share `sp/N/1.5` of the `N` coordinates, `⌈2·sp/3⌉`, at least one. `2·sp/3` is a whole number
/// or a third or two thirds above one, so `⌈2·sp/3 − 1/6⌉` is the same number and survives a
/// division that is not correctly rounded (WGSL allows 2.5 ulps).
fn moved_for(sp: Tensor<2>, n: usize) -> Tensor<2> {
    (sp * 2.0 / 3.0 - 1.0 / 6.0).ceil().clamp(1.0, n as f64)
}

/// The L1-APGD stages from `start` (in the first stage's ball and the box), each stage starting
/// from the previous one's highest-objective point projected into its ball. Only the last stage's
/// iterates are in the threat model: only they reach `observer` and count as successes.
pub(crate) fn search<const D: usize, C: Classifier<D> + ?Sized>(
    batch: &Batch<'_, D, C>,
    start: Tensor<2>,
    s: &Settings,
    observer: &mut StepObserver<'_>,
) -> Found {
    let last = s.stages.len() - 1;
    let mut x = start;
    let mut result = None;
    for (i, &(eps, steps)) in s.stages.iter().enumerate() {
        let ball = L1Ball::new(batch, eps);
        if i > 0 {
            x = ball.project(x);
        }
        let mut silent = |_: &Tensor<2>, _: &Tensor<2>| {};
        let obs: &mut StepObserver<'_> = if i == last { observer } else { &mut silent };
        // The reference code gives every large_reps stage its start point (`x_init`), so only a
        // plain run starts with the initial sparsity.
        let fresh = i == 0 && !s.large_reps;
        let st = stage(batch, &ball, x, eps, steps, fresh, i == last, s, obs);
        x = st.best_x.clone();
        result = Some(st);
    }
    let st = result.expect("at least one stage");
    Found {
        best_x: host_f32(st.best_x),
        best_f: host_f32(st.best_f),
        found: host_bool(st.found),
        found_x: host_f32(st.found_x),
    }
}

/// One stage at radius `eps` for `steps` iterations. `fresh` says the start is a random or clean
/// point (initial sparsity 20 %), not one carried from a larger stage; `track` says successes
/// count (and early stopping applies).
#[allow(clippy::too_many_arguments)]
fn stage<const D: usize, C: Classifier<D> + ?Sized>(
    batch: &Batch<'_, D, C>,
    ball: &L1Ball,
    start: Tensor<2>,
    eps: f64,
    steps: usize,
    fresh: bool,
    track: bool,
    s: &Settings,
    observer: &mut StepObserver<'_>,
) -> State {
    let (b, n, dev) = (batch.b, batch.n, &batch.device);
    observer(&batch.x0, &start);
    let (logits, g) = batch.gradient(start.clone(), s.loss);
    let f = objective(
        s.loss,
        logits.clone(),
        &batch.labels,
        batch.targets.as_ref(),
    );
    // Only the last stage's successes count.
    let found = if track {
        batch.success_mask(logits)
    } else {
        Tensor::<1>::zeros([b], dev).equal_elem(1.0)
    };
    let (k, sp_old) = if fresh {
        // The reference's threshold index `⌊(1 − topk)·N⌋` (at most N − 1) from the top.
        let below = ((1.0 - INITIAL_TOPK) * n as f64)
            .floor()
            .clamp(0.0, n as f64 - 1.0);
        (
            Tensor::full([b, 1], n as f64 - below, dev),
            Tensor::full([b, 1], n as f64, dev),
        )
    } else {
        let sp = nonzero(&start, &batch.x0);
        (moved_for(sp.clone(), n), sp)
    };
    let mut st = State {
        x: start.clone(),
        f: f.clone(),
        g: g.clone(),
        best_f: f,
        best_x: start.clone(),
        best_g: g,
        found,
        found_x: start,
        eta: Tensor::full([b, 1], eps, dev),
        k,
        sp_old,
    };
    let every = ((CHECK_EVERY * steps as f64) as usize).max(1);
    let mut shrinking = Shrinking::new();
    for k in 0..steps {
        let target = ball.sparse_step(st.x.clone(), st.g.clone(), st.eta.clone(), st.k.clone());
        let mut next = ball.project(target);
        if s.early_stop {
            // Fooled samples keep the point that first fooled the model.
            next = next.mask_where(rows(st.found.clone(), n), st.found_x.clone());
        }
        st.x = next;
        observer(&batch.x0, &st.x);
        if s.early_stop && track && !shrinking.update(batch, &st.found) {
            break;
        }
        let keep = Kept {
            f: &st.f,
            found: &st.found,
            g: &st.g,
        };
        let (f_new, ok_new, g_new) = evaluate(batch, shrinking.active(), &st.x, s.loss, keep);
        record(&mut st, f_new, ok_new, g_new, n, track);
        if (k + 1) % every == 0 {
            adapt_sparsity(&mut st, &batch.x0, eps, n);
        }
    }
    st
}

/// Takes in the objective, success and gradient at the new iterate: keeps the best point and
/// (when successes count) the first fooling point.
fn record(
    st: &mut State,
    f_new: Tensor<1>,
    ok_new: Tensor<1, Bool>,
    g_new: Tensor<2>,
    n: usize,
    track: bool,
) {
    let better = f_new.clone().greater(st.best_f.clone());
    st.best_f = st.best_f.clone().mask_where(better.clone(), f_new.clone());
    st.best_x = st
        .best_x
        .clone()
        .mask_where(rows(better.clone(), n), st.x.clone());
    st.best_g = st.best_g.clone().mask_where(rows(better, n), g_new.clone());
    if track {
        let newly = ok_new.bool_and(st.found.clone().bool_not());
        st.found = st.found.clone().bool_or(newly.clone());
        st.found_x = st.found_x.clone().mask_where(rows(newly, n), st.x.clone());
    }
    st.f = f_new;
    st.g = g_new;
}

/// The checkpoint (Croce & Hein 2021): move as many coordinates as the best point uses, divided
/// by 1.5; where the best point got sparser (its count fell below 95 % of the last checkpoint's)
/// reset the step to eps and restart from the best point, otherwise shrink the step by 1.5, never
/// below eps/10.
fn adapt_sparsity(st: &mut State, x0: &Tensor<2>, eps: f64, n: usize) {
    let sp = nonzero(&st.best_x, x0);
    // sp < 0.95·sp_old, in whole numbers (exact in f32).
    let sparser = (sp.clone() * 20.0).lower(st.sp_old.clone() * 19.0);
    st.k = moved_for(sp.clone(), n);
    st.eta = (st.eta.clone() / STEP_SHRINK)
        .mask_fill(sparser.clone(), eps)
        .clamp(eps / MIN_STEP_DIVISOR, eps);
    st.sp_old = sp;
    let b = sparser.dims()[0];
    let wide = sparser.expand([b, n]);
    st.x = st.x.clone().mask_where(wide.clone(), st.best_x.clone());
    st.g = st.g.clone().mask_where(wide, st.best_g.clone());
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Tensor, TensorData};

    use super::moved_for;

    #[test]
    fn moved_coordinates_are_two_thirds_of_the_non_zero_ones_rounded_up_and_at_least_one() {
        let sp: Vec<f32> = (0..=3072u32).map(|v| v as f32).collect();
        let len = sp.len();
        let got = moved_for(
            Tensor::from_data(TensorData::new(sp, [len, 1]), &Device::flex()),
            3072,
        )
        .try_into_vec_as::<f32>()
        .unwrap();
        for (sp, k) in got.into_iter().enumerate() {
            assert_eq!(k as usize, (2 * sp).div_ceil(3).max(1), "sp {sp}");
        }
    }
}
