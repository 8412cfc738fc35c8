//! Square attack (Andriushchenko, Croce, Flammarion & Hein 2020, "Square Attack: a query-efficient
//! black-box adversarial attack via random search"), L-inf and L2: a score-based attack that
//! only calls the model's forward pass (no gradient is ever computed).
//!
//! Random search over square-shaped updates, as in the authors' AutoAttack code:
//! - **L-inf**: starts from vertical stripes (each column of each channel at `x0 ± eps`); a step
//!   sets one random `s × s` window, per channel, to `x0 + eps` or `x0 − eps` (redrawn while the
//!   window would not change).
//! - **L2**: starts from a grid of `⌊min(h, w)/5⌋`-sized blocks, each holding the "meta
//!   pseudo-Gaussian" pattern `η(s)` (two opposite-signed halves of concentric rings weighted
//!   `1/(k+1)²`) with a random sign, scaled to norm `eps`; a step moves the mass of one window into
//!   another random window, with a fresh `±η(s)` added and the result rescaled so the image stays
//!   on the sphere of radius `eps` (then clipped to the box).
//! - The side `s = round(√(p·h·w))` (L2: at least 3 and odd) shrinks with the share `p` of
//!   pixels changed: `p_init` for iterations 0–10, then halved after iterations 10, 50,
//!   200, 500, 1000, 2000, 4000, 6000 and 8000 (AutoAttack's schedule on raw iteration counts;
//!   `rescale_schedule` maps them onto the query budget instead, as the original paper does).
//! - A candidate replaces a sample's best point when the objective improves (default: the margin
//!   loss) or when it fools the model; a sample stops at its first success. Samples draw their own
//!   windows and signs from a generator seeded by the seed, the restart and the sample's values, so
//!   a batch gives the same result as its samples alone (the reference code shares one window per
//!   iteration across the batch).
//!
//! `queries` counts every model evaluation of a sample, the initial one included. Inputs are
//! treated as `[B, C, H, W]` images; `[B, N]` vectors as one channel of one row (`s = 1`).
//!
//! Host and device: proposals are drawn on the host, where each sample's generator and best point
//! live. Per query, the device is sent, in L-inf, only each sample's window (its `c·s²` new
//! values and its corner), which it writes into a copy of the best points it keeps, and which
//! proposals were taken (not after the last query, one where a sample stopped or one where no
//! proposal was taken); in L2, whole candidates (a step rescales every pixel). It sends back the
//! candidates' objectives and success flags. When a sample stops, the clean rows, labels, targets
//! and (L-inf) best points of those still attacked are uploaded once.

use burn::config::Config;
use burn::tensor::{Bool, Device, IndexingUpdateOp, Int, Tensor, TensorData};

use crate::attack::Attack;
use crate::batch::Batch;
use crate::classifier::Classifier;
use crate::error::AttackError;
use crate::geometry::{linf_bounds, project};
use crate::host::upload;
use crate::iterative::{StepObserver, best_over_restarts};
use crate::options::{AttackOptions, LossKind, Norm, ThreatModel};
use crate::overrides::set;
use crate::rng::{SplitMix64, sample_seed};

/// Configuration of [`Square`]. Defaults are AutoAttack's: 5,000 queries, `p_init = 0.8`, the
/// margin loss, one run.
#[derive(Config, Debug)]
pub struct SquareConfig {
    /// Norm (`linf` or `l2`) and radius.
    pub threat: ThreatModel,
    /// Model evaluations per sample and run, the initial one included.
    #[config(default = 5000)]
    pub queries: usize,
    /// Initial share of the image a square covers.
    #[config(default = 0.8)]
    pub p_init: f64,
    /// Map the schedule's iteration thresholds (stated for 10,000 queries) onto `queries`.
    #[config(default = false)]
    pub rescale_schedule: bool,
    /// Shared options (the margin loss by default; a sample always stops at its first success).
    #[config(default = "AttackOptions::new().with_loss(LossKind::CwMargin).with_early_stop(true)")]
    pub options: AttackOptions,
}

impl SquareConfig {
    /// Validates the settings and builds the attack.
    pub fn init(&self) -> Result<Square, AttackError> {
        self.threat.validate()?;
        self.options.validate()?;
        if self.threat.norm == Norm::L1 {
            return Err(AttackError::Unsupported {
                attack: "square",
                reason: "supports the linf and l2 norms".into(),
            });
        }
        if self.queries == 0 {
            return Err(crate::error::invalid("queries", 0, "must be >= 1"));
        }
        if !(self.p_init > 0.0 && self.p_init <= 1.0) {
            return Err(crate::error::invalid(
                "p_init",
                self.p_init,
                "must be in (0, 1]",
            ));
        }
        Ok(Square {
            config: self.clone(),
        })
    }
}

/// The Square attack. Build with [`SquareConfig::init`].
#[derive(Debug, Clone)]
pub struct Square {
    config: SquareConfig,
}

/// The share of pixels a square covers at iteration `it` (AutoAttack's `p_selection`).
pub(crate) fn p_selection(p_init: f64, it: usize, queries: usize, rescale: bool) -> f64 {
    let it = if rescale {
        (it as f64 / queries as f64 * 10_000.0) as usize
    } else {
        it
    };
    let divisor = match it {
        0..=10 => 1.0,
        11..=50 => 2.0,
        51..=200 => 4.0,
        201..=500 => 8.0,
        501..=1000 => 16.0,
        1001..=2000 => 32.0,
        2001..=4000 => 64.0,
        4001..=6000 => 128.0,
        6001..=8000 => 256.0,
        _ => 512.0,
    };
    p_init / divisor
}

/// The `a × b` ring pattern: concentric rectangles around the centre, ring `k` weighted
/// `1/(k+1)²`, normalized to unit Frobenius norm (row-major).
fn eta_rect(a: usize, b: usize) -> Vec<f64> {
    let mut m = vec![0f64; a * b];
    if a == 0 || b == 0 {
        return m;
    }
    let (mut cx, mut cy) = ((a / 2) as i64, (b / 2) as i64);
    for k in 0..(a / 2 + 1).max(b / 2 + 1) as i64 {
        let (r0, r1) = (
            cx.max(0) as usize,
            ((cx + 2 * k + 1).min(a as i64)).max(0) as usize,
        );
        let (c0, c1) = (
            cy.max(0) as usize,
            ((cy + 2 * k + 1).min(b as i64)).max(0) as usize,
        );
        for r in r0..r1 {
            for c in c0..c1 {
                m[r * b + c] += 1.0 / ((k + 1) * (k + 1)) as f64;
            }
        }
        cx -= 1;
        cy -= 1;
    }
    normalize(&mut m);
    m
}

fn normalize(v: &mut [f64]) {
    let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// The `s × s` meta pseudo-Gaussian pattern: the top half rings, the bottom half negated rings,
/// unit norm, transposed with probability 1/2.
fn eta(s: usize, rng: &mut SplitMix64) -> Vec<f64> {
    let top = s / 2;
    let mut m = vec![0f64; s * s];
    m[..top * s].copy_from_slice(&eta_rect(top, s));
    for (dst, v) in m[top * s..].iter_mut().zip(eta_rect(s - top, s)) {
        *dst = -v;
    }
    normalize(&mut m);
    if rng.uniform() < 0.5 {
        let t = m.clone();
        for r in 0..s {
            for c in 0..s {
                m[r * s + c] = t[c * s + r];
            }
        }
    }
    m
}

fn sign(rng: &mut SplitMix64) -> f64 {
    if rng.uniform() < 0.5 { -1.0 } else { 1.0 }
}

/// The square a proposal changed: top-left corner and side, in every channel.
#[derive(Clone, Copy)]
struct Window {
    top: usize,
    left: usize,
    side: usize,
}

/// Image geometry of one sample: channels, height, width.
#[derive(Clone, Copy)]
struct Shape {
    c: usize,
    h: usize,
    w: usize,
}

impl Shape {
    fn at(&self, ch: usize, r: usize, col: usize) -> usize {
        (ch * self.h + r) * self.w + col
    }

    /// The flat index ranges of `window`'s rows in every channel (channel by channel, top to
    /// bottom): the one order in which a window's pixels are copied, listed and uploaded.
    fn runs(&self, window: Window) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
        let Window { top, left, side } = window;
        (0..self.c).flat_map(move |ch| {
            (top..top + side).map(move |r| self.at(ch, r, left)..self.at(ch, r, left + side))
        })
    }

    /// Copies the pixels of `window` (every channel; the whole sample without one) from `src`
    /// to `dst`, both one sample.
    fn copy(&self, window: Option<Window>, src: &[f32], dst: &mut [f32]) {
        let Some(window) = window else {
            dst.copy_from_slice(src);
            return;
        };
        for run in self.runs(window) {
            dst[run.clone()].copy_from_slice(&src[run]);
        }
    }

    /// A uniformly random top-left corner of an `s × s` window.
    fn window(&self, s: usize, rng: &mut SplitMix64) -> (usize, usize) {
        (rng.index(self.h - s + 1), rng.index(self.w - s + 1))
    }
}

/// L-inf: the best points of the samples still attacked, kept on the device, so that a proposal
/// sends it only its window (one `s × s` square per channel: `c·s²` new values and the square's
/// corner) instead of the whole image. The window's flat indices are one pattern per side (the
/// window at the corner (0, 0), cached) plus each sample's corner offset, added on the device.
/// `s` shrinks with the schedule (28×28 MNIST: 25 for the first 11 proposals, 6 after iteration
/// 500, 2 after 4,000). The copy is updated from the candidates that were taken, so whenever
/// [`DeviceBest::candidates`] reads it, it equals the host's best points bit for bit: values are
/// only copied, never computed on the device. (After the last query, or one where a sample
/// stopped, it is left stale: the next query resets it.)
struct DeviceBest {
    shape: Shape,
    /// Values per sample.
    n: usize,
    device: Device,
    /// `[rows, n]`: the best points of the samples attacked.
    best: Option<Tensor<2>>,
    /// The side of the cached pattern and its `[1, c·s²]` indices.
    pattern: Option<(usize, Tensor<2, Int>)>,
}

impl DeviceBest {
    fn new(shape: Shape, n: usize, device: &Device) -> Self {
        Self {
            shape,
            n,
            device: device.clone(),
            best: None,
            pattern: None,
        }
    }

    /// Starts over with `best` (`[rows, n]`), when the samples attacked change.
    fn reset(&mut self, best: Tensor<2>) {
        self.best = Some(best);
    }

    /// The candidates (`[rows, n]`): each sample's best point with its window's pixels taken from
    /// its host candidate `cand` (row `j` is `windows[j]`'s sample). Every window of an iteration
    /// has the same side, since it depends on the iteration alone.
    fn candidates(&mut self, windows: &[Option<Window>], cand: &[f32]) -> Tensor<2> {
        let best = self.best.as_ref().expect("reset before the first proposal");
        let (rows, n, shape) = (windows.len(), self.n, self.shape);
        let side = windows[0].expect("L-inf proposals change one window").side;
        if self.pattern.as_ref().is_none_or(|(s, _)| *s != side) {
            let origin = Window {
                top: 0,
                left: 0,
                side,
            };
            let idx: Vec<i64> = shape.runs(origin).flatten().map(|q| q as i64).collect();
            let k = idx.len();
            let at = Tensor::<2, Int>::from_data(TensorData::new(idx, [1, k]), &self.device);
            self.pattern = Some((side, at));
        }
        let (_, pattern) = self.pattern.as_ref().expect("built above");
        let k = pattern.dims()[1];
        // Fresh vectors, moved into the upload (a reused buffer would be cloned into it).
        let mut vals = Vec::with_capacity(rows * k);
        let mut corners = Vec::with_capacity(rows);
        for (j, window) in windows.iter().enumerate() {
            let window = window.expect("L-inf proposals change one window");
            let sample = &cand[j * n..(j + 1) * n];
            for run in shape.runs(window) {
                vals.extend_from_slice(&sample[run]);
            }
            corners.push((window.top * shape.w + window.left) as i64);
        }
        let corner = Tensor::<2, Int>::from_data(TensorData::new(corners, [rows, 1]), &self.device);
        let at = pattern.clone().expand([rows, k]) + corner.expand([rows, k]);
        let values = upload(vals, rows, k, &self.device);
        best.clone()
            .scatter(1, at, values, IndexingUpdateOp::Assign)
    }

    /// Keeps the rows of `candidates` (from [`DeviceBest::candidates`]) that were `taken`.
    fn take(&mut self, taken: Vec<bool>, candidates: Tensor<2>) {
        if !taken.contains(&true) {
            return;
        }
        let best = self.best.as_mut().expect("reset before the first proposal");
        let (rows, n) = (taken.len(), self.n);
        let taken = Tensor::<1, Bool>::from_data(TensorData::new(taken, [rows]), &self.device)
            .reshape([rows, 1])
            .expand([rows, n]);
        *best = best.clone().mask_where(taken, candidates);
    }
}

impl Square {
    /// The first point of a run for one sample (`x0` flat, in the box).
    fn init_point(
        &self,
        x0: &[f32],
        shape: Shape,
        bounds: (f64, f64),
        rng: &mut SplitMix64,
    ) -> Vec<f32> {
        let (eps, (lo, hi)) = (self.config.threat.eps, bounds);
        let Shape { c, h, w } = shape;
        let mut out = vec![0f32; x0.len()];
        match self.config.threat.norm {
            Norm::L2 => {
                let s = (h.min(w) / 5).max(1);
                let (rows, cols) = (h / s, w / s);
                let (sh, sw) = ((h - rows * s) / 2, (w - cols * s) / 2);
                let mut delta = vec![0f64; x0.len()];
                for br in 0..rows {
                    for bc in 0..cols {
                        for ch in 0..c {
                            let pattern = eta(s, rng);
                            let sg = sign(rng);
                            for r in 0..s {
                                for col in 0..s {
                                    let j = shape.at(ch, sh + br * s + r, sw + bc * s + col);
                                    delta[j] += sg * pattern[r * s + col];
                                }
                            }
                        }
                    }
                }
                self.on_sphere(x0, &delta, bounds, &mut out);
            }
            _ => {
                let (lower, upper) = linf_bounds(x0, eps, lo, hi);
                for ch in 0..c {
                    for col in 0..w {
                        let up = sign(rng) > 0.0;
                        for r in 0..h {
                            let j = shape.at(ch, r, col);
                            out[j] = if up { upper[j] } else { lower[j] };
                        }
                    }
                }
            }
        }
        out
    }

    /// `x0 + eps·δ/‖δ‖₂`, clipped to the box (which only shrinks the perturbation), rounded into
    /// the ball exactly.
    fn on_sphere(&self, x0: &[f32], delta: &[f64], (lo, hi): (f64, f64), out: &mut [f32]) {
        let eps = self.config.threat.eps;
        let len = delta.iter().map(|d| d * d).sum::<f64>().sqrt();
        let scale = if len > 0.0 { eps / len } else { 0.0 };
        let t: Vec<f64> = x0
            .iter()
            .zip(delta)
            .map(|(&v, d)| (f64::from(v) + scale * d).clamp(lo, hi))
            .collect();
        project(Norm::L2, x0, &t, eps, lo, hi, out);
    }

    /// One random-search proposal from the current best point `best` of one sample, written into
    /// `out`, which holds `best` on entry. Returns the window it changed (L-inf), or `None` when
    /// the whole sample may have changed (L2 rescales every pixel).
    #[allow(clippy::too_many_arguments)]
    fn propose(
        &self,
        x0: &[f32],
        best: &[f32],
        out: &mut [f32],
        shape: Shape,
        p: f64,
        bounds: (f64, f64),
        linf: Option<&(Vec<f32>, Vec<f32>)>,
        rng: &mut SplitMix64,
    ) -> Option<Window> {
        let Shape { c, h, w } = shape;
        let side = (p * (h * w) as f64).sqrt().round() as usize;
        match linf {
            Some((lower, upper)) => {
                let s = side.max(1).min(h.min(w));
                let (vh, vw) = shape.window(s, rng);
                // Redraw the signs (a few times) while the window would not change.
                for _ in 0..10 {
                    let mut changed = false;
                    for ch in 0..c {
                        let up = sign(rng) > 0.0;
                        for r in vh..vh + s {
                            for col in vw..vw + s {
                                let j = shape.at(ch, r, col);
                                let v = if up { upper[j] } else { lower[j] };
                                changed |= v != best[j];
                                out[j] = v;
                            }
                        }
                    }
                    if changed {
                        break;
                    }
                }
                Some(Window {
                    top: vh,
                    left: vw,
                    side: s,
                })
            }
            None => {
                let eps = self.config.threat.eps;
                let mut s = side.max(3);
                if s.is_multiple_of(2) {
                    s += 1;
                }
                let s = s.min(h.min(w));
                let (vh, vw) = shape.window(s, rng);
                let (vh2, vw2) = shape.window(s, rng);
                let mut delta: Vec<f64> = best
                    .iter()
                    .zip(x0)
                    .map(|(&a, &b)| f64::from(a) - f64::from(b))
                    .collect();
                let in_w1 =
                    |r: usize, col: usize| (vh..vh + s).contains(&r) && (vw..vw + s).contains(&col);
                let in_w2 = |r: usize, col: usize| {
                    (vh2..vh2 + s).contains(&r) && (vw2..vw2 + s).contains(&col)
                };
                let norm_img = delta.iter().map(|d| d * d).sum::<f64>();
                for ch in 0..c {
                    let (mut n_w1, mut n_ws) = (0f64, 0f64);
                    for r in 0..h {
                        for col in 0..w {
                            let d = delta[shape.at(ch, r, col)];
                            if in_w1(r, col) {
                                n_w1 += d * d;
                            }
                            if in_w1(r, col) || in_w2(r, col) {
                                n_ws += d * d;
                            }
                        }
                    }
                    let pattern = eta(s, rng);
                    let sg = sign(rng);
                    let n_w1 = n_w1.sqrt();
                    let mut new: Vec<f64> = (0..s * s)
                        .map(|q| {
                            let j = shape.at(ch, vh + q / s, vw + q % s);
                            sg * pattern[q] + delta[j] / (1e-12 + n_w1)
                        })
                        .collect();
                    let len = new.iter().map(|v| v * v).sum::<f64>().sqrt();
                    let target = ((eps * eps - norm_img).max(0.0) / c as f64 + n_ws).sqrt();
                    new.iter_mut()
                        .for_each(|v| *v = *v / (1e-12 + len) * target);
                    for r in vh2..vh2 + s {
                        for col in vw2..vw2 + s {
                            delta[shape.at(ch, r, col)] = 0.0;
                        }
                    }
                    for (q, v) in new.into_iter().enumerate() {
                        delta[shape.at(ch, vh + q / s, vw + q % s)] = v;
                    }
                }
                self.on_sphere(x0, &delta, bounds, out);
                None
            }
        }
    }

    fn single_run<const D: usize, C: Classifier<D> + ?Sized>(
        &self,
        batch: &Batch<'_, D, C>,
        shape: Shape,
        restart: u64,
        observer: &mut StepObserver<'_>,
    ) -> (Vec<f32>, Vec<f32>, Vec<bool>) {
        let c = &self.config;
        let (b, n) = (batch.b, batch.n);
        let bounds = batch.bounds();
        let x0 = &batch.x0_host;
        let row = |i: usize| i * n..(i + 1) * n;
        let mut rngs: Vec<SplitMix64> = (0..b)
            .map(|i| SplitMix64::new(sample_seed(c.options.seed, restart, &x0[row(i)])))
            .collect();
        let linf: Vec<Option<(Vec<f32>, Vec<f32>)>> = (0..b)
            .map(|i| {
                (c.threat.norm == Norm::Linf)
                    .then(|| linf_bounds(&x0[row(i)], c.threat.eps, bounds.0, bounds.1))
            })
            .collect();
        let mut best = vec![0f32; b * n];
        for i in 0..b {
            let p = self.init_point(&x0[row(i)], shape, bounds, &mut rngs[i]);
            best[row(i)].copy_from_slice(&p);
        }
        let dev = &batch.device;
        let best_t = upload(best.clone(), b, n, dev);
        observer(&batch.x0, &best_t);
        let (mut best_f, mut done) = batch.judge(best_t.clone(), c.options.loss);
        // L-inf: the starting points are on the device already, so the first device copy of the
        // best points is that upload, unless a sample stopped at its starting point.
        let mut start_upload = (c.threat.norm == Norm::Linf).then_some(best_t);
        // The samples still attacked, as a batch of their own (clean rows, labels and targets on
        // the device), rebuilt only when a sample stops. Their candidates live in `cand`, which
        // holds their best points between iterations: a proposal changes one window in place, and
        // the window is copied into the best point if it is taken, back from it if not, instead of
        // rebuilding whole samples for every proposal.
        let mut active: Vec<usize> = Vec::new();
        let mut sub: Option<Batch<'_, D, C>> = None;
        let mut cand: Vec<f32> = Vec::new();
        let mut windows: Vec<Option<Window>> = Vec::new();
        // L-inf: the active samples' best points are also kept on the device, and a proposal
        // sends it only its window (see `DeviceBest`); L2 proposals rescale the whole image, so
        // they are uploaded whole.
        let mut on_device = (c.threat.norm == Norm::Linf).then(|| DeviceBest::new(shape, n, dev));
        let last = c.queries.saturating_sub(2);
        for it in 0..c.queries.saturating_sub(1) {
            let still: Vec<usize> = (0..b).filter(|&i| !done[i]).collect();
            if still.is_empty() {
                break;
            }
            if still != active {
                sub = (still.len() < b).then(|| batch.subset(&still));
                active = still;
                cand.clear();
                cand.extend(active.iter().flat_map(|&i| best[row(i)].iter().copied()));
                if let Some(kept) = on_device.as_mut() {
                    let uploaded = start_upload.take().filter(|_| active.len() == b);
                    kept.reset(
                        uploaded.unwrap_or_else(|| upload(cand.clone(), active.len(), n, dev)),
                    );
                }
            }
            let view = sub.as_ref().unwrap_or(batch);
            let p = p_selection(c.p_init, it, c.queries, c.rescale_schedule);
            windows.clear();
            for (j, &i) in active.iter().enumerate() {
                windows.push(self.propose(
                    &x0[row(i)],
                    &best[row(i)],
                    &mut cand[row(j)],
                    shape,
                    p,
                    bounds,
                    linf[i].as_ref(),
                    &mut rngs[i],
                ));
            }
            let cand_t = match on_device.as_mut() {
                Some(kept) => kept.candidates(&windows, &cand),
                None => upload(cand.clone(), active.len(), n, dev),
            };
            observer(&view.x0, &cand_t);
            let (f, ok) = view.judge(cand_t.clone(), c.options.loss);
            let mut taken = vec![false; active.len()];
            for (j, &i) in active.iter().enumerate() {
                if f[j] > best_f[i] || ok[j] {
                    best_f[i] = f[j];
                    shape.copy(windows[j], &cand[row(j)], &mut best[row(i)]);
                    done[i] = ok[j];
                    taken[j] = true;
                } else {
                    shape.copy(windows[j], &best[row(i)], &mut cand[row(j)]);
                }
            }
            // Not needed after the last query, nor when a sample stopped: the next iteration
            // uploads the best points of the samples left.
            let stopping = active.iter().any(|&i| done[i]);
            if let Some(kept) = on_device.as_mut()
                && !stopping
                && it < last
            {
                kept.take(taken, cand_t);
            }
        }
        for i in (0..b).filter(|&i| done[i]) {
            best_f[i] = f32::INFINITY;
        }
        (best, best_f, done)
    }
}

impl Attack for Square {
    fn name(&self) -> &'static str {
        "square"
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
        let dims = x.dims();
        let shape = match D {
            4 => Shape {
                c: dims[1],
                h: dims[2],
                w: dims[3],
            },
            3 => Shape {
                c: 1,
                h: dims[1],
                w: dims[2],
            },
            _ => Shape {
                c: 1,
                h: 1,
                w: dims[1..].iter().product(),
            },
        };
        let batch = Batch::new(model, x, labels, targets, &c.options)?;
        batch.check_loss(c.options.loss)?;
        if batch.b == 0 || c.threat.eps == 0.0 || batch.n == 0 {
            observer(&batch.x0, &batch.x0);
            return Ok(batch.unflatten(batch.x0.clone()));
        }
        let best = best_over_restarts(&batch, c.options.restarts, |view, restart| {
            self.single_run(view, shape, restart, observer)
        });
        Ok(batch.unflatten(upload(best, batch.b, batch.n, &batch.device)))
    }
}

crate::attack::settings!(fixed_budget SquareConfig => Square, "square", black_box = true, |c, o| {
    o.refuse("square", &["step_size", "decay"])?;
    set(&mut c.queries, o.steps);
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_halves_at_the_published_iterations() {
        let p = |it| p_selection(0.8, it, 5000, false);
        assert_eq!(p(0), 0.8);
        assert_eq!(p(10), 0.8);
        assert_eq!(p(11), 0.4);
        assert_eq!(p(50), 0.4);
        assert_eq!(p(51), 0.2);
        assert_eq!(p(4999), 0.8 / 128.0);
        assert_eq!(p(9000), 0.8 / 512.0);
        // Rescaled: iteration 1000 of 2000 queries is iteration 5000 of 10,000.
        assert_eq!(p_selection(0.8, 1000, 2000, true), 0.8 / 128.0);
    }

    #[test]
    fn copying_a_window_moves_exactly_its_pixels_in_every_channel() {
        // A 3-channel 4×5 image; windows at the corners and the right and bottom edges.
        let shape = Shape { c: 3, h: 4, w: 5 };
        let n = 3 * 4 * 5;
        let src: Vec<f32> = (0..n).map(|v| v as f32).collect();
        for (top, left, side) in [(0, 0, 1), (2, 3, 2), (0, 1, 4), (3, 4, 1), (1, 2, 3)] {
            let mut dst = vec![-1f32; n];
            let window = Window { top, left, side };
            shape.copy(Some(window), &src, &mut dst);
            for ch in 0..3 {
                for r in 0..4 {
                    for col in 0..5 {
                        let j = shape.at(ch, r, col);
                        let inside =
                            (top..top + side).contains(&r) && (left..left + side).contains(&col);
                        let want = if inside { src[j] } else { -1.0 };
                        assert_eq!(dst[j], want, "window {top},{left},{side} at {ch},{r},{col}");
                    }
                }
            }
        }
        // Without a window the whole sample is copied.
        let mut dst = vec![-1f32; n];
        shape.copy(None, &src, &mut dst);
        assert_eq!(dst, src);
    }

    #[test]
    fn eta_is_a_unit_pattern_with_opposite_halves() {
        let mut rng = SplitMix64::new(3);
        for s in [1, 3, 5, 7] {
            let m = eta(s, &mut rng);
            let norm: f64 = m.iter().map(|v| v * v).sum::<f64>().sqrt();
            assert!((norm - 1.0).abs() < 1e-12, "s = {s}: norm {norm}");
            if s > 1 {
                // Positive and negative halves, both present.
                assert!(m.iter().any(|&v| v > 0.0) && m.iter().any(|&v| v < 0.0));
            }
        }
        // The ring weights fall with the distance to the centre: in a 1×5 row, 1 + 1/4 + 1/9 in the
        // middle, 1/4 + 1/9 next to it, 1/9 at the ends (before normalization).
        let r = eta_rect(1, 5);
        let ratio = |a: usize, b: usize| r[a] / r[b];
        assert!((ratio(2, 4) - (1.0 + 0.25 + 1.0 / 9.0) / (1.0 / 9.0)).abs() < 1e-9);
        assert!((ratio(1, 4) - (0.25 + 1.0 / 9.0) / (1.0 / 9.0)).abs() < 1e-9);
    }
}
