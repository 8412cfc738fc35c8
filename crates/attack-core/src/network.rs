//! What training and evaluation need from a model: [`Network`], a burn module that classifies
//! images.

use burn::module::Module;
use burn::tensor::{Int, Tensor};

use crate::{Classifier, Interval};

/// A burn [`Module`] that maps image batches `[B, C, H, W]` in the valid box to logits
/// `[B, classes]`: what Bulwark's trainer fits and its evaluator measures.
///
/// One method is required, [`Network::forward`], with the module's own behaviour: in training
/// (after `train()`, on an autodiff device) BatchNorm uses batch statistics and dropout is on;
/// after `valid()` both are in inference mode. The trainer and the evaluator switch modes
/// themselves, with burn's `valid()` / `train()` / `no_grad()`, so a module written the usual
/// burn way needs nothing else. The zoo's `bulwark_models::Model` implements it too.
///
/// A network is an attack target through [`Network::classifier`], which runs it with inference
/// behaviour and untracked parameters, as [`Classifier`] requires.
///
/// ```
/// use bulwark_attack_core::{Attack, Network, PgdConfig, ThreatModel};
/// use burn::module::Module;
/// use burn::nn::{Linear, LinearConfig};
/// use burn::tensor::{Device, Int, Tensor};
///
/// #[derive(Module, Debug)]
/// struct Tiny {
///     fc: Linear,
/// }
///
/// impl Network for Tiny {
///     fn forward(&self, x: Tensor<4>) -> Tensor<2> {
///         self.fc.forward(x.flatten::<2>(1, 3))
///     }
/// }
///
/// let device = Device::flex();
/// let net = Tiny { fc: LinearConfig::new(4, 3).init(&device) };
/// let x = Tensor::<4>::full([2, 1, 2, 2], 0.5, &device);
/// let y = Tensor::<1, Int>::from_ints([0, 2], &device);
/// let adv = PgdConfig::new(ThreatModel::linf(0.1)).init()?.perturb(&net.classifier(), x.clone(), y)?;
/// assert!((adv - x).abs().max().into_scalar::<f32>() <= 0.1);
/// # Ok::<(), bulwark_attack_core::AttackError>(())
/// ```
pub trait Network: Module + 'static {
    /// Logits with the module's current behaviour and parameter tracking: the forward pass that
    /// training differentiates.
    fn forward(&self, x: Tensor<4>) -> Tensor<2>;

    /// Brings state that burn updates lazily (BatchNorm running statistics kept aside per thread)
    /// up to date before it is read by a visitor (exports). Checkpoints use burn's records, which
    /// do this themselves; the default does nothing.
    fn sync_running_stats(&self) {}

    /// The state-dict key of the parameter at `path` (burn's field names from the top module;
    /// `container` is the owning layer's type, e.g. `Struct:BatchNorm`), for exports that
    /// PyTorch loads. The default joins the path with dots and renames BatchNorm's `gamma` /
    /// `beta` to PyTorch's `weight` / `bias`: a module whose field names are those of its
    /// PyTorch twin exports with that twin's keys.
    fn state_dict_key(&self, path: &[String], container: &str) -> String {
        default_state_dict_key(path, container)
    }

    /// A short name of the architecture, for messages and file metadata. The default is the
    /// type's name without its module path.
    fn architecture(&self) -> String {
        let full = std::any::type_name::<Self>();
        let base = full.split('<').next().unwrap_or(full);
        base.rsplit("::").next().unwrap_or(base).to_string()
    }

    /// Interval bound propagation (IBP, Gowal et al. 2018): lower bounds `[B, K]` of the logit
    /// margins `z_y − z_j` over every input in `input` (0 at `j = y`; see [`Interval`]), with
    /// inference behaviour and the module's own parameter tracking (IBP training differentiates
    /// them). `None`, the default, where the network does not bound itself: verified accuracy
    /// and IBP training then refuse it. A network built from linear, convolution, ReLU,
    /// pooling, flattening and inference-mode BatchNorm layers and residual sums implements it
    /// with [`Interval`]'s methods, one call per layer, the last layer through
    /// [`Interval::margins`].
    fn margin_bounds(&self, input: Interval<4>, y: Tensor<1, Int>) -> Option<Tensor<2>> {
        let _ = (input, y);
        None
    }

    /// The network as an attack target: inference behaviour, untracked parameters.
    fn classifier(&self) -> NetworkClassifier<'_, Self>
    where
        Self: Sized,
    {
        NetworkClassifier(self)
    }
}

/// The default [`Network::state_dict_key`]: the path joined with dots, BatchNorm's
/// `gamma`/`beta` named `weight`/`bias`.
pub fn default_state_dict_key(path: &[String], container: &str) -> String {
    let mut parts: Vec<&str> = path.iter().map(String::as_str).collect();
    if container.ends_with("BatchNorm")
        && let Some(last) = parts.last_mut()
    {
        *last = match *last {
            "gamma" => "weight",
            "beta" => "bias",
            other => other,
        };
    }
    parts.join(".")
}

/// A [`Network`] seen as a [`Classifier`] (see [`Network::classifier`]).
#[derive(Debug, Clone, Copy)]
pub struct NetworkClassifier<'a, N>(&'a N);

impl<N: Network> Classifier<4> for NetworkClassifier<'_, N> {
    /// `valid()` maps the parameters to plain tensors without copying their data and switches
    /// BatchNorm and dropout to inference.
    fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        self.0.valid().forward(x)
    }

    /// Like PyTorch's `model.train()` with frozen weights: batch statistics (which BatchNorm
    /// also folds into its running statistics), dropout on, parameters untracked.
    fn logits_train_mode(&self, x: Tensor<4>) -> Tensor<2> {
        self.0.clone().train().no_grad().forward(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_keys_follow_pytorch_names() {
        let p = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            default_state_dict_key(&p(&["block", "0", "bn", "gamma"]), "Struct:BatchNorm"),
            "block.0.bn.weight"
        );
        assert_eq!(
            default_state_dict_key(&p(&["fc", "weight"]), "Struct:Linear"),
            "fc.weight"
        );
        assert_eq!(
            default_state_dict_key(&p(&["gamma"]), "Struct:LayerScale"),
            "gamma"
        );
    }
}
