//! An attack on the smoothed classifier itself (Salman et al. 2019, "Provably Robust Deep
//! Learning via Adversarially Trained Smoothed Classifiers", SmoothAdv): PGD in L2 on the Monte
//! Carlo estimate of the smoothed soft classifier. `PREDICT` on its result gives the smoothed
//! classifier's empirical robust accuracy, the upper bound beside `CERTIFY`'s certified one.

use bulwark_attack_core::rng::{SplitMix64, sample_seed};
use bulwark_attack_core::{Bounds, Classifier};
use burn::config::Config;
use burn::tensor::activation::softmax;
use burn::tensor::{Tensor, TensorData};

use super::smoothed::{Smoothed, fill_noisy, per_sample};
use crate::EvalError;

/// Settings of [`Smoothed::attack`].
#[derive(Config, Debug, PartialEq)]
pub struct SmoothAttackConfig {
    /// L2 radius around each clean input.
    pub eps: f64,
    /// PGD steps, each of length `2·eps/steps` along the normalized gradient.
    #[config(default = 20)]
    pub steps: usize,
    /// Noisy copies per step estimating the smoothed soft classifier (fresh every step).
    #[config(default = 16)]
    pub noise_samples: usize,
    /// The box of valid inputs.
    #[config(default = "Bounds::new()")]
    pub bounds: Bounds,
}

impl SmoothAttackConfig {
    /// Checks every setting, naming the one that is wrong.
    pub fn validate(&self) -> Result<(), EvalError> {
        let bad = |problem: String| {
            Err(EvalError::Settings {
                what: "smoothed-classifier attack settings",
                problem,
            })
        };
        if !(self.eps.is_finite() && self.eps >= 0.0) {
            return bad(format!("eps must be >= 0, got {}", self.eps));
        }
        if self.steps == 0 || self.noise_samples == 0 {
            return bad("steps and noise_samples must be at least 1".into());
        }
        Ok(())
    }
}

/// The random stream of the attack's noise.
const ATTACK: u64 = 0xa77a;

impl<C> Smoothed<'_, C> {
    /// PGD-L2 against the smoothed classifier: per input, `steps` ascent steps on the
    /// cross-entropy of `mean_i softmax(f(x' + δ_i))` for the label, `δ_i ~ N(0, σ² I)` drawn
    /// fresh each step from the seed, the clean input, the step and the copy; after each step the
    /// input is scaled back into the L2 ball of radius `eps` around the clean input, then
    /// clipped to the box (which only shortens the perturbation). Each input is attacked on its
    /// own, so a batch gives what its inputs give alone.
    ///
    /// ```
    /// use bulwark_eval::smoothing::{SmoothAttackConfig, Smoothed, SmoothingConfig};
    /// use burn::tensor::{Device, Tensor, TensorData};
    ///
    /// // Class 1 where x₀ > 0.5; the point is 0.3 inside class 1.
    /// let base = |x: Tensor<2>| {
    ///     let s = x.narrow(1, 0, 1) - 0.5;
    ///     Tensor::cat(vec![s.clone().neg(), s], 1)
    /// };
    /// let smoothed = Smoothed::new(&base, SmoothingConfig::new(0.25).with_alpha(0.01))?;
    /// let x = Tensor::<2>::from_data(TensorData::new(vec![0.8f32, 0.5], [1, 2]), &Device::flex());
    /// // Past the boundary (0.5 > 0.3) the smoothed classifier is fooled; short of it, not.
    /// let far = smoothed.attack(x.clone(), &[1], &SmoothAttackConfig::new(0.5))?;
    /// assert_eq!(smoothed.predict(far, 2_000)?[0], Some(0));
    /// let near = smoothed.attack(x, &[1], &SmoothAttackConfig::new(0.15))?;
    /// assert_eq!(smoothed.predict(near, 2_000)?[0], Some(1));
    /// # Ok::<(), bulwark_eval::EvalError>(())
    /// ```
    pub fn attack<const D: usize>(
        &self,
        x: Tensor<D>,
        labels: &[usize],
        cfg: &SmoothAttackConfig,
    ) -> Result<Tensor<D>, EvalError>
    where
        C: Classifier<D>,
    {
        cfg.validate()?;
        let dims = x.dims();
        if labels.len() != dims[0] {
            return Err(EvalError::Input(format!(
                "{} labels for {} inputs",
                labels.len(),
                dims[0]
            )));
        }
        let device = x.device();
        let (sigma, m) = (self.cfg.sigma, cfg.noise_samples);
        let alpha = 2.0 * cfg.eps / cfg.steps as f64;
        let mut next = 0;
        let rows = per_sample(x, |sample, one, device| {
            let y = labels[next] as i64;
            next += 1;
            let x0 = Tensor::<D>::from_data(TensorData::new(sample.to_vec(), one), device);
            let mut adv = x0.clone();
            let zeros = vec![0f32; sample.len()];
            let mut many = one;
            many[0] = m;
            let label = Tensor::<1, burn::tensor::Int>::from_data([y], device);
            for t in 0..cfg.steps {
                let seed = sample_seed(self.cfg.seed, ATTACK ^ ((t as u64) << 16), sample);
                let mut noise = vec![0f32; m * sample.len()];
                for (j, copy) in noise.chunks_mut(sample.len().max(1)).enumerate() {
                    fill_noisy(
                        &mut SplitMix64::with_stream(seed, j as u64),
                        &zeros,
                        sigma,
                        copy,
                    );
                }
                let noise = Tensor::<D>::from_data(TensorData::new(noise, many), device);
                let leaf = adv.clone().autodiff().require_grad();
                let batch = leaf.clone().repeat_dim(0, m) + noise.autodiff();
                let soft = softmax(self.base.logits(batch), 1).mean_dim(0); // [1, K]
                let loss = soft
                    .select(1, label.clone())
                    .clamp_min(1e-30)
                    .log()
                    .neg()
                    .sum();
                let Some(g) = leaf.grad(&loss.backward()) else {
                    break;
                };
                let norm = f64::from(g.clone().powf_scalar(2.0).sum().sqrt().into_scalar::<f32>());
                if !(norm.is_finite() && norm > 0.0) {
                    break;
                }
                let stepped = adv + g * (alpha / norm);
                let delta = stepped - x0.clone();
                let len = f64::from(
                    delta
                        .clone()
                        .powf_scalar(2.0)
                        .sum()
                        .sqrt()
                        .into_scalar::<f32>(),
                );
                let scale = if len > cfg.eps { cfg.eps / len } else { 1.0 };
                adv = (x0.clone() + delta * scale).clamp(cfg.bounds.lo, cfg.bounds.hi);
            }
            Ok(adv
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .expect("floats"))
        })?;
        Ok(Tensor::from_data(
            TensorData::new(rows.concat(), dims),
            &device,
        ))
    }
}
