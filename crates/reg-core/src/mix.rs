//! Training-time regularizers on the data side: label smoothing, mixup and cutmix, with the
//! soft-target cross-entropy they need.
//!
//! - **Label smoothing** (Szegedy et al. 2016): targets `(1 − ε)·onehot(y) + ε/K`.
//! - **Mixup** (Zhang et al. 2018): `x̃ = λ·x + (1 − λ)·x[π]`, `ỹ = λ·y + (1 − λ)·y[π]` with
//!   `λ ~ Beta(α, α)` and `π` a random permutation of the batch.
//! - **CutMix** (Yun et al. 2019): a box of area `(1 − λ)·H·W` (centre uniform, clipped to the
//!   image) is pasted from `x[π]`; the targets mix with the *actual* kept area `λ' = 1 − box/HW`.
//!
//! Randomness comes from a [`MixSampler`] seeded by the caller, so a run is reproducible; the mixing
//! functions themselves are deterministic given `λ`, `π` and the box.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};

use bulwark_attack_core::rng::SplitMix64;

use crate::error::{RegError, invalid};

/// Soft targets `(1 − ε)·onehot(y) + ε/K` for labels `[B]`: `[B, K]`.
pub fn smooth_labels(
    labels: Tensor<1, Int>,
    classes: usize,
    epsilon: f64,
) -> Result<Tensor<2>, RegError> {
    if !(0.0..=1.0).contains(&epsilon) {
        return Err(invalid("epsilon", epsilon, "must be in [0, 1]"));
    }
    if classes == 0 {
        return Err(invalid("classes", 0, "must be >= 1"));
    }
    let onehot: Tensor<2> = labels.one_hot::<2>(classes).float();
    Ok(onehot * (1.0 - epsilon) + epsilon / classes as f64)
}

/// Mean cross-entropy of `logits` `[B, K]` against soft targets `[B, K]` (rows summing to 1):
/// `−mean_b Σ_k t_bk·log softmax(z_b)_k`. Equals the usual cross-entropy for one-hot targets.
pub fn soft_cross_entropy(logits: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
    let b = logits.dims()[0].max(1);
    -(log_softmax(logits, 1) * targets).sum() / b as f64
}

fn check_perm(perm: &[usize], batch: usize) -> Result<(), RegError> {
    let mut seen = vec![false; batch];
    let bad = perm.len() != batch
        || perm
            .iter()
            .any(|&i| i >= batch || std::mem::replace(&mut seen[i], true));
    if bad {
        return Err(RegError::Shape(format!(
            "{perm:?} is not a permutation of a batch of {batch}"
        )));
    }
    Ok(())
}

/// `λ·a + (1 − λ)·a[perm]` along the batch dimension. Errors when `perm` is not a permutation of
/// the batch.
pub fn mix<const D: usize>(
    a: Tensor<D>,
    lambda: f64,
    perm: &[usize],
) -> Result<Tensor<D>, RegError> {
    check_perm(perm, a.dims()[0])?;
    Ok(mix_unchecked(a, lambda, perm))
}

fn mix_unchecked<const D: usize>(a: Tensor<D>, lambda: f64, perm: &[usize]) -> Tensor<D> {
    let device = a.device();
    let idx = Tensor::<1, Int>::from_data(
        TensorData::new(
            perm.iter().map(|&i| i as i64).collect::<Vec<_>>(),
            [perm.len()],
        ),
        &device,
    );
    let shuffled = a.clone().select(0, idx);
    a * lambda + shuffled * (1.0 - lambda)
}

/// A box `[top, bottom) × [left, right)` inside an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CutBox {
    /// First row.
    pub top: usize,
    /// One past the last row.
    pub bottom: usize,
    /// First column.
    pub left: usize,
    /// One past the last column.
    pub right: usize,
}

/// CutMix of images `[B, C, H, W]` and soft targets `[B, K]`: the box is taken from `x[perm]`;
/// returns the mixed images, the mixed targets and the kept share `λ' = 1 − box area / (H·W)`.
/// Errors when `perm` is not a permutation of the batch or the target rows differ.
pub fn cutmix(
    x: Tensor<4>,
    targets: Tensor<2>,
    perm: &[usize],
    cut: CutBox,
) -> Result<(Tensor<4>, Tensor<2>, f64), RegError> {
    let [b, c, h, w] = x.dims();
    check_perm(perm, b)?;
    if targets.dims()[0] != b {
        return Err(RegError::Shape(format!(
            "{} target rows for a batch of {b}",
            targets.dims()[0]
        )));
    }
    if h * w == 0 {
        return Ok((x, targets, 1.0));
    }
    let (top, bottom) = (cut.top.min(h), cut.bottom.min(h).max(cut.top.min(h)));
    let (left, right) = (cut.left.min(w), cut.right.min(w).max(cut.left.min(w)));
    let device = x.device();
    let mut mask = vec![0f32; h * w];
    for r in top..bottom {
        for col in left..right {
            mask[r * w + col] = 1.0;
        }
    }
    let area = ((bottom - top) * (right - left)) as f64;
    let kept = 1.0 - area / (h * w) as f64;
    let m = Tensor::<4>::from_data(TensorData::new(mask, [1, 1, h, w]), &device)
        .repeat_dim(0, b)
        .repeat_dim(1, c);
    let idx = Tensor::<1, Int>::from_data(
        TensorData::new(
            perm.iter().map(|&i| i as i64).collect::<Vec<_>>(),
            [perm.len()],
        ),
        &device,
    );
    let other = x.clone().select(0, idx);
    let mixed = x * (m.clone().neg() + 1.0) + other * m;
    Ok((mixed, mix_unchecked(targets, kept, perm), kept))
}

/// Seeded draws for mixup and cutmix: `λ ~ Beta(α, α)`, permutations and boxes.
#[derive(Debug, Clone)]
pub struct MixSampler {
    alpha: f64,
    rng: SplitMix64,
}

impl MixSampler {
    /// A sampler for `Beta(alpha, alpha)` (`alpha > 0`; 1 is uniform, 0.2 the mixup paper's
    /// ImageNet setting) seeded by `seed`.
    pub fn new(alpha: f64, seed: u64) -> Result<Self, RegError> {
        if !(alpha.is_finite() && alpha > 0.0) {
            return Err(invalid("alpha", alpha, "must be finite and > 0"));
        }
        Ok(Self {
            alpha,
            rng: SplitMix64::new(seed),
        })
    }

    fn uniform(&mut self) -> f64 {
        self.rng.uniform()
    }

    fn normal(&mut self) -> f64 {
        self.rng.normal()
    }

    /// Gamma(k, 1) by Marsaglia & Tsang (2000), with the `k < 1` boost `Gamma(k+1)·U^(1/k)`.
    fn gamma(&mut self, k: f64) -> f64 {
        if k < 1.0 {
            let u = 1.0 - self.uniform();
            return self.gamma(k + 1.0) * u.powf(1.0 / k);
        }
        let d = k - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = (1.0 + c * x).powi(3);
            if v <= 0.0 {
                continue;
            }
            let u = 1.0 - self.uniform();
            if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                return d * v;
            }
        }
    }

    /// `λ ~ Beta(α, α)`.
    pub fn lambda(&mut self) -> f64 {
        let (a, b) = (self.gamma(self.alpha), self.gamma(self.alpha));
        if a + b > 0.0 { a / (a + b) } else { 0.5 }
    }

    /// A uniformly random permutation of `0..n` (Fisher-Yates, one multiply-shift draw per
    /// element: [`SplitMix64::index`]).
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            p.swap(i, self.rng.index(i + 1));
        }
        p
    }

    /// CutMix's box for a kept share `lambda`: sides `√(1 − λ)·H` and `√(1 − λ)·W`, centre uniform,
    /// clipped to the image.
    pub fn cut_box(&mut self, lambda: f64, h: usize, w: usize) -> CutBox {
        let ratio = (1.0 - lambda).clamp(0.0, 1.0).sqrt();
        let (bh, bw) = ((h as f64 * ratio) as usize, (w as f64 * ratio) as usize);
        let (cy, cx) = (
            (self.uniform() * h as f64) as usize,
            (self.uniform() * w as f64) as usize,
        );
        CutBox {
            top: cy.saturating_sub(bh / 2),
            bottom: (cy + bh / 2).min(h),
            left: cx.saturating_sub(bw / 2),
            right: (cx + bw / 2).min(w),
        }
    }
}
