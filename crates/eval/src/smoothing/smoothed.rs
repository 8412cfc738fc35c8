//! [`Smoothed`]: a base classifier smoothed with Gaussian noise, and Cohen et al.'s `CERTIFY`
//! and `PREDICT` on it.

use bulwark_attack_core::Classifier;
use bulwark_attack_core::rng::{SplitMix64, sample_seed};
use burn::config::Config;
use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::confidence::{binomial_test_half, clopper_pearson_lower, normal_quantile};
use crate::EvalError;

/// Randomized smoothing with Gaussian noise (Cohen, Rosenfeld & Kolter 2019): the smoothed
/// classifier `g(x) = argmax_c P(f(x + ε) = c)`, `ε ~ N(0, σ² I)`, estimated by Monte Carlo.
/// The defaults are the paper's `CERTIFY` settings.
#[derive(Config, Debug, PartialEq)]
pub struct SmoothingConfig {
    /// Standard deviation σ of the noise, in input units (pixels in `[0, 1]`).
    pub sigma: f64,
    /// Noisy copies that select the class to certify.
    #[config(default = 100)]
    pub n0: usize,
    /// Noisy copies that estimate its probability (independent of the `n0`).
    #[config(default = 100_000)]
    pub n: usize,
    /// Failure probability: a certificate is wrong with probability at most `alpha`.
    #[config(default = 0.001)]
    pub alpha: f64,
    /// Noisy copies per forward pass.
    #[config(default = 1_000)]
    pub batch_size: usize,
    /// Seed of the noise; each sample's noise is drawn from the seed and the sample itself, so
    /// a batch certifies as its samples one by one and a seed reproduces a run.
    #[config(default = 0)]
    pub seed: u64,
}

impl SmoothingConfig {
    /// Checks every setting, naming the one that is wrong.
    pub fn validate(&self) -> Result<(), EvalError> {
        let bad = |problem: String| {
            Err(EvalError::Settings {
                what: "smoothing settings",
                problem,
            })
        };
        if !(self.sigma.is_finite() && self.sigma > 0.0) {
            return bad(format!("sigma must be > 0, got {}", self.sigma));
        }
        if self.n0 == 0 || self.n == 0 || self.batch_size == 0 {
            return bad(format!(
                "n0, n and batch_size must be at least 1, got {}, {} and {}",
                self.n0, self.n, self.batch_size
            ));
        }
        if !(self.alpha > 0.0 && self.alpha < 1.0) {
            return bad(format!("alpha must be in (0, 1), got {}", self.alpha));
        }
        Ok(())
    }

    /// The largest radius `CERTIFY` can give with these settings: `σ·Φ⁻¹(alpha^(1/n))`, the
    /// radius when all `n` noisy copies agree.
    pub fn max_radius(&self) -> f64 {
        self.sigma
            * normal_quantile(clopper_pearson_lower(
                self.n as u64,
                self.n as u64,
                self.alpha,
            ))
    }
}

/// What `CERTIFY` says about one input.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Certificate {
    /// The smoothed classifier's class, or `None` when `CERTIFY` abstains (the lower bound on
    /// the selected class's probability is below 1/2).
    pub class: Option<usize>,
    /// Certified L2 radius `σ·Φ⁻¹(p_lower)`: with probability at least `1 − alpha`, the smoothed
    /// classifier gives `class` everywhere in this ball. 0 when abstaining.
    pub radius: f64,
    /// The Clopper-Pearson lower bound on the selected class's probability under noise.
    pub p_lower: f64,
    /// How many of the `n` noisy copies the base classifier put in the selected class.
    pub count: usize,
}

/// Noise streams: the selection, estimation and prediction samples are independent.
const SELECT: u64 = 0x5e1e;
const ESTIMATE: u64 = 0xe571;
const PREDICT: u64 = 0x9ed1;

/// A base classifier (any [`Classifier`], inference behaviour) smoothed with Gaussian noise.
///
/// ```
/// use bulwark_eval::smoothing::{Smoothed, SmoothingConfig};
/// use burn::tensor::{Device, Tensor, TensorData};
///
/// // A linear classifier of 2-D points: class 1 where x₀ > 0.5.
/// let device = Device::flex();
/// let base = |x: Tensor<2>| {
///     let s = x.narrow(1, 0, 1) - 0.5;
///     Tensor::cat(vec![s.clone().neg(), s], 1)
/// };
/// let cfg = SmoothingConfig::new(0.25).with_n(2_000);
/// let smoothed = Smoothed::new(&base, cfg)?;
/// let x = Tensor::<2>::from_data(TensorData::new(vec![0.8f32, 0.0], [1, 2]), &device);
/// let c = smoothed.certify(x)?[0];
/// assert_eq!(c.class, Some(1));
/// // The point is 0.3 from the boundary: no certificate reaches past it.
/// assert!(c.radius > 0.1 && c.radius <= 0.3);
/// # Ok::<(), bulwark_eval::EvalError>(())
/// ```
pub struct Smoothed<'a, C> {
    pub(super) base: &'a C,
    pub(super) cfg: SmoothingConfig,
}

impl<C> std::fmt::Debug for Smoothed<'_, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Smoothed")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl<'a, C> Smoothed<'a, C> {
    /// Smooths `base` as `cfg` says (checked).
    pub fn new(base: &'a C, cfg: SmoothingConfig) -> Result<Self, EvalError> {
        cfg.validate()?;
        Ok(Self { base, cfg })
    }

    /// The settings.
    pub fn config(&self) -> &SmoothingConfig {
        &self.cfg
    }

    /// `CERTIFY` for every input of the batch `x` (`[B, ...]`): select the class with `n0`
    /// noisy copies, bound its probability from below with `n` more at level `1 − alpha`, and
    /// certify the radius `σ·Φ⁻¹(p_lower)` when the bound exceeds 1/2 (else abstain).
    pub fn certify<const D: usize>(&self, x: Tensor<D>) -> Result<Vec<Certificate>, EvalError>
    where
        C: Classifier<D>,
    {
        let cfg = &self.cfg;
        per_sample(x, |sample, dims, device| {
            let select = self.counts(sample, dims, cfg.n0, SELECT, device)?;
            let top = argmax(&select);
            let estimate = self.counts(sample, dims, cfg.n, ESTIMATE, device)?;
            let count = estimate.get(top).copied().unwrap_or(0);
            let p_lower = clopper_pearson_lower(count as u64, cfg.n as u64, cfg.alpha);
            Ok(if p_lower > 0.5 {
                Certificate {
                    class: Some(top),
                    radius: cfg.sigma * normal_quantile(p_lower),
                    p_lower,
                    count,
                }
            } else {
                Certificate {
                    class: None,
                    radius: 0.0,
                    p_lower,
                    count,
                }
            })
        })
    }

    /// `PREDICT` for every input of the batch `x`: the top class of `n` noisy copies when the
    /// two-sided binomial test of the top two counts rejects a tie at level `alpha`, else `None`
    /// (abstain). It returns a class other than the smoothed classifier's with probability at
    /// most `alpha`.
    pub fn predict<const D: usize>(
        &self,
        x: Tensor<D>,
        n: usize,
    ) -> Result<Vec<Option<usize>>, EvalError>
    where
        C: Classifier<D>,
    {
        if n == 0 {
            return Err(EvalError::Settings {
                what: "smoothing settings",
                problem: "predict needs at least 1 noisy copy".into(),
            });
        }
        per_sample(x, |sample, dims, device| {
            let counts = self.counts(sample, dims, n, PREDICT, device)?;
            let top = argmax(&counts);
            let runner_up = counts
                .iter()
                .enumerate()
                .filter(|&(c, _)| c != top)
                .map(|(_, &k)| k)
                .max()
                .unwrap_or(0);
            let (a, b) = (counts[top] as u64, runner_up as u64);
            Ok((binomial_test_half(a, a + b) <= self.cfg.alpha).then_some(top))
        })
    }

    /// How often the base classifier gives each class on `n` noisy copies of `sample` (shape
    /// `dims`, batch dimension 1), drawn from stream `stream`.
    fn counts<const D: usize>(
        &self,
        sample: &[f32],
        dims: [usize; D],
        n: usize,
        stream: u64,
        device: &Device,
    ) -> Result<Vec<usize>, EvalError>
    where
        C: Classifier<D>,
    {
        let seed = sample_seed(self.cfg.seed, stream, sample);
        let mut counts: Vec<usize> = Vec::new();
        let mut done = 0;
        let sigma = self.cfg.sigma;
        let d = sample.len().max(1);
        while done < n {
            let m = self.cfg.batch_size.min(n - done);
            // Copy `j` of the sample draws from its own stream: the draws do not depend on the
            // batch size, and the copies fill in parallel.
            let mut noisy = vec![0f32; m * sample.len()];
            noisy.par_chunks_mut(d).enumerate().for_each(|(j, copy)| {
                let mut rng = SplitMix64::with_stream(seed, (done + j) as u64);
                fill_noisy(&mut rng, sample, sigma, copy);
            });
            let mut shape = dims;
            shape[0] = m;
            let batch = Tensor::<D>::from_data(TensorData::new(noisy, shape), device);
            let logits = self.base.logits(batch);
            let classes = logits.dims()[1];
            if counts.is_empty() {
                counts = vec![0; classes];
            } else if counts.len() != classes {
                return Err(EvalError::Input(format!(
                    "the base classifier gave {} classes, then {classes}",
                    counts.len()
                )));
            }
            let predicted: Vec<i64> = logits
                .argmax(1)
                .into_data()
                .convert::<i64>()
                .try_into_vec::<i64>()
                .map_err(|e| EvalError::Input(format!("argmax is not integer: {e:?}")))?;
            for p in predicted {
                counts[p as usize] += 1;
            }
            done += m;
        }
        Ok(counts)
    }
}

/// Writes `sample + σ·ε` (`ε` standard normal, both Box-Muller values used) into `out`.
pub(super) fn fill_noisy(rng: &mut SplitMix64, sample: &[f32], sigma: f64, out: &mut [f32]) {
    let mut pending: Option<f64> = None;
    for (o, &v) in out.iter_mut().zip(sample) {
        let z = match pending.take() {
            Some(z) => z,
            None => {
                let r = (-2.0 * rng.uniform_open0().ln()).sqrt();
                let (s, c) = (std::f64::consts::TAU * rng.uniform()).sin_cos();
                pending = Some(r * s);
                r * c
            }
        };
        *o = (f64::from(v) + sigma * z) as f32;
    }
}

/// The first class with the largest count.
fn argmax(counts: &[usize]) -> usize {
    let mut best = 0;
    for (c, &k) in counts.iter().enumerate() {
        if k > counts[best] {
            best = c;
        }
    }
    best
}

/// Runs `f` on each sample of the batch `x` (its values, its shape with batch dimension 1).
pub(super) fn per_sample<const D: usize, T>(
    x: Tensor<D>,
    mut f: impl FnMut(&[f32], [usize; D], &Device) -> Result<T, EvalError>,
) -> Result<Vec<T>, EvalError> {
    let dims = x.dims();
    let device = x.device();
    let values: Vec<f32> = x
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| EvalError::Input(format!("inputs are not floats: {e:?}")))?;
    if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
        return Err(EvalError::Input(format!(
            "inputs must be finite, found {bad}"
        )));
    }
    let mut one = dims;
    one[0] = 1;
    let per = values.len() / dims[0].max(1);
    values
        .chunks(per.max(1))
        .take(dims[0])
        .map(|s| f(s, one, &device))
        .collect()
}
