//! Adversarial weight perturbation (AWP; Wu, Xia & Wang 2020, "Adversarial Weight Perturbation
//! Helps Robust Generalization").
//!
//! AWP trains on the loss at adversarially perturbed *weights*: before each optimizer step, every
//! selected weight `w` moves one normalized ascent step along the gradient `g` of the training
//! loss, `w + γ·‖w‖·g/‖g‖` (per parameter tensor, so the step is relative to the layer's scale);
//! the loss gradient is taken there and applied to the unperturbed weights. Wu et al. do this with
//! a proxy copy of the model (one SGD step on the negated loss, rescaled per layer), perturb,
//! step and restore; for an optimizer whose update depends only on the gradient that is the same
//! as stepping the original weights with the gradient at the perturbed ones, which is what
//! [`WeightPerturbation::perturb`] makes possible: it keeps every parameter's id, so
//! `GradientsParams` taken on the perturbed model step the original one.

use burn::module::{Module, ModuleMapper, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

use crate::error::invalid;
use crate::select::{PathStack, restore_tracking};
use crate::{ParamSelection, RegError};

/// Settings of an adversarial weight perturbation.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightPerturbation {
    /// Relative size `γ` in (0, 1]: each selected parameter tensor moves by `γ·‖w‖` (Frobenius
    /// norms). Wu et al. use 0.01 with PGD-AT and 0.005 with TRADES.
    pub gamma: f64,
    /// The perturbed parameters (by default every weight: convolution and linear weights, not
    /// biases or normalization layers, as the reference code's "weights of more than one
    /// dimension").
    pub selection: ParamSelection,
}

/// Guards the division by a zero gradient norm (the reference code's `EPS`).
const TINY: f64 = 1e-20;

impl WeightPerturbation {
    /// A perturbation of relative size `gamma` on every weight.
    pub fn new(gamma: f64) -> Self {
        Self {
            gamma,
            selection: ParamSelection::weights(),
        }
    }

    /// Restricts the perturbation to `selection`.
    pub fn with_selection(mut self, selection: ParamSelection) -> Self {
        self.selection = selection;
        self
    }

    /// Checks `gamma`.
    pub fn validate(&self) -> Result<(), RegError> {
        if !(self.gamma.is_finite() && self.gamma > 0.0 && self.gamma <= 1.0) {
            return Err(invalid(
                "gamma",
                self.gamma,
                "the relative weight perturbation must be in (0, 1]",
            ));
        }
        Ok(())
    }

    /// `model` with each selected weight `w` moved to `w + γ·‖w‖·g/‖g‖`, `g` its gradient in
    /// `grads` (a parameter without a gradient, or with a zero one, stays where it is). Parameter
    /// ids and autodiff tracking are kept. Errors: bad `gamma`, a selection that matches nothing.
    pub fn perturb<M: Module>(&self, model: M, grads: &GradientsParams) -> Result<M, RegError> {
        self.validate()?;
        self.selection.resolve(&model)?;
        let mut mapper = Perturb {
            settings: self,
            grads,
            stack: PathStack::default(),
        };
        Ok(model.map(&mut mapper))
    }
}

struct Perturb<'a> {
    settings: &'a WeightPerturbation,
    grads: &'a GradientsParams,
    stack: PathStack,
}

impl ModuleMapper for Perturb<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.stack.enter(name, container_type);
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.stack.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if !self.settings.selection.covers(&self.stack.param()) {
            return param;
        }
        let Some(g) = self.grads.get::<D>(param.id) else {
            return param;
        };
        let gamma = self.settings.gamma;
        param.map(|t| {
            let tracking = (t.is_autodiff(), t.is_require_grad());
            let w = t.inner();
            // Norms stay on the device (no host round trip per parameter and batch).
            let w_norm = w.clone().square().sum().sqrt();
            let g_norm = g.clone().square().sum().sqrt();
            let scale = (w_norm * gamma / (g_norm + TINY)).reshape([1usize; D]);
            restore_tracking(w + g * scale, tracking)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Module;
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::Device;

    #[derive(Module, Debug)]
    struct Net {
        a: Linear,
        b: Linear,
    }

    fn net(device: &Device) -> Net {
        Net {
            a: LinearConfig::new(3, 4).init(device),
            b: LinearConfig::new(4, 2).init(device),
        }
    }

    fn host<const D: usize>(t: Tensor<D>) -> Vec<f64> {
        t.inner()
            .try_into_vec_as::<f32>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect()
    }

    fn norm(v: &[f64]) -> f64 {
        v.iter().map(|x| x * x).sum::<f64>().sqrt()
    }

    #[test]
    fn each_weight_moves_gamma_times_its_norm_along_its_gradient() {
        let device = Device::flex().autodiff();
        let model = net(&device);
        let x = Tensor::<2>::from_floats([[0.5, -1.0, 2.0], [1.5, 0.25, -0.5]], &device);
        let loss = model.b.forward(model.a.forward(x).tanh()).square().sum();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let gamma = 0.05;
        let before = (
            model.a.weight.val(),
            model.b.weight.val(),
            model.a.bias.clone(),
        );
        let ids = (model.a.weight.id, model.b.weight.id);
        let perturbed = WeightPerturbation::new(gamma)
            .perturb(model, &grads)
            .unwrap();
        assert_eq!((perturbed.a.weight.id, perturbed.b.weight.id), ids);
        for (w0, w1, id) in [
            (before.0.clone(), perturbed.a.weight.val(), ids.0),
            (before.1.clone(), perturbed.b.weight.val(), ids.1),
        ] {
            assert!(w1.is_require_grad(), "tracking kept");
            let (w0, w1) = (host(w0), host(w1));
            let g = host(grads.get::<2>(id).unwrap());
            let (wn, gn) = (norm(&w0), norm(&g));
            for i in 0..w0.len() {
                let expected = w0[i] + gamma * wn * g[i] / gn;
                assert!(
                    (w1[i] - expected).abs() < 1e-5,
                    "entry {i}: {} vs {expected}",
                    w1[i]
                );
            }
            let step: Vec<f64> = w1.iter().zip(&w0).map(|(a, b)| a - b).collect();
            assert!((norm(&step) - gamma * wn).abs() < 1e-5 * wn);
        }
        // Biases are not weights: untouched.
        let (b0, b1) = (
            host(before.2.unwrap().val()),
            host(perturbed.a.bias.unwrap().val()),
        );
        assert_eq!(b0, b1);
    }

    #[test]
    fn the_perturbation_is_an_ascent_step_and_gradients_step_the_original() {
        let device = Device::flex().autodiff();
        let model = net(&device);
        let x = Tensor::<2>::from_floats([[0.5, -1.0, 2.0], [1.5, 0.25, -0.5]], &device);
        let loss_of = |m: &Net| m.b.forward(m.a.forward(x.clone()).tanh()).square().sum();
        let l0 = loss_of(&model);
        let value = |l: Tensor<1>| l.inner().into_scalar::<f32>();
        let grads = GradientsParams::from_grads(l0.clone().backward(), &model);
        let perturbed = WeightPerturbation::new(0.01)
            .perturb(model.clone(), &grads)
            .unwrap();
        let l1 = loss_of(&perturbed);
        assert!(
            value(l1.clone()) > value(l0),
            "a small step along g raises the loss"
        );
        // Every gradient of the perturbed model is keyed by a parameter of the original one.
        let g1 = GradientsParams::from_grads(l1.backward(), &perturbed);
        assert_eq!(g1.len(), 4);
        assert!(g1.get::<2>(model.a.weight.id).is_some());
        assert!(g1.get::<1>(model.b.bias.as_ref().unwrap().id).is_some());
    }

    #[test]
    fn a_tiny_perturbation_leaves_the_gradient_as_it_was() {
        let device = Device::flex().autodiff();
        let model = net(&device);
        let x = Tensor::<2>::from_floats([[0.5, -1.0, 2.0], [1.5, 0.25, -0.5]], &device);
        let loss_of = |m: &Net| m.b.forward(m.a.forward(x.clone()).tanh()).square().sum();
        let g0 = GradientsParams::from_grads(loss_of(&model).backward(), &model);
        let perturbed = WeightPerturbation::new(1e-6)
            .perturb(model.clone(), &g0)
            .unwrap();
        let g1 = GradientsParams::from_grads(loss_of(&perturbed).backward(), &perturbed);
        for id in [model.a.weight.id, model.b.weight.id] {
            let (a, b) = (
                host(g0.get::<2>(id).unwrap()),
                host(g1.get::<2>(id).unwrap()),
            );
            for (u, v) in a.iter().zip(&b) {
                assert!((u - v).abs() < 1e-4 * (1.0 + u.abs()), "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn the_model_it_was_cloned_from_is_left_as_it_was() {
        let device = Device::flex().autodiff();
        let model = net(&device);
        let x = Tensor::<2>::from_floats([[0.5, -1.0, 2.0], [1.5, 0.25, -0.5]], &device);
        let loss = model.b.forward(model.a.forward(x).tanh()).square().sum();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let before = (host(model.a.weight.val()), host(model.b.weight.val()));
        let perturbed = WeightPerturbation::new(0.5)
            .perturb(model.clone(), &grads)
            .unwrap();
        drop(perturbed);
        assert_eq!(before.0, host(model.a.weight.val()));
        assert_eq!(before.1, host(model.b.weight.val()));
    }

    #[test]
    fn bad_gamma_and_empty_selections_are_refused() {
        let device = Device::flex().autodiff();
        let model = net(&device);
        let grads = GradientsParams::new();
        for gamma in [0.0, -0.1, 1.5, f64::NAN] {
            let err = WeightPerturbation::new(gamma)
                .perturb(model.clone(), &grads)
                .unwrap_err();
            assert!(err.to_string().contains("gamma"), "{err}");
        }
        let err = WeightPerturbation::new(0.01)
            .with_selection(ParamSelection::paths(["nothing.*"]))
            .perturb(model, &grads)
            .unwrap_err();
        assert!(matches!(err, RegError::EmptySelection { .. }), "{err}");
    }
}
