//! What an attack needs from a model: logits for a batch, in inference behaviour.

use burn::tensor::Tensor;

/// Anything that maps a batch of inputs `Tensor<D>` (images `[B, C, H, W]`, or vectors `[B, N]`
/// with `D = 2`) inside the valid box to logits `[B, classes]`.
///
/// Contract: [`Classifier::logits`] computes with **inference behaviour** (BatchNorm uses its
/// running statistics and does not update them, dropout is off) and with **untracked parameters**,
/// so that a backward pass from the logits yields the input gradient and nothing else. Attacks feed
/// it an autodiff input that requires grad. Burn modules implement it by calling `self.valid().forward(x)` (the zoo's
/// `bulwark_models::Model` does, in its own crate);
/// closures `Fn(Tensor<D>) -> Tensor<2>` implement it as they are (they must not use tracked
/// parameters).
///
/// Outputs must be logits, not probabilities: the cross-entropy of a softmax output has tiny,
/// badly scaled gradients and makes attacks look weak.
pub trait Classifier<const D: usize = 4> {
    /// Logits with inference behaviour.
    fn logits(&self, x: Tensor<D>) -> Tensor<2>;

    /// Logits with training behaviour (batch statistics, dropout), for the explicit
    /// [`crate::Crafting::Train`] option. Parameters must still be untracked. The default is
    /// [`Classifier::logits`], right for models without such layers.
    fn logits_train_mode(&self, x: Tensor<D>) -> Tensor<2> {
        self.logits(x)
    }
}

impl<const D: usize, F> Classifier<D> for F
where
    F: Fn(Tensor<D>) -> Tensor<2>,
{
    fn logits(&self, x: Tensor<D>) -> Tensor<2> {
        self(x)
    }
}
