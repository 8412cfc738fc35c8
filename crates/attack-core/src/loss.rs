//! Per-sample attack objectives on logits. Every objective is written so that the attack
//! **maximizes** it, untargeted or targeted; the sign convention lives here and nowhere else.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};

use crate::error::AttackError;
use crate::options::LossKind;

/// Checks that `loss` can be computed for a model with `num_classes` outputs.
pub(crate) fn check_classes(
    loss: LossKind,
    targeted: bool,
    num_classes: usize,
) -> Result<(), AttackError> {
    let needed = match (loss, targeted) {
        (LossKind::Dlr, false) => 3,
        (LossKind::Dlr, true) => 4,
        _ => 2,
    };
    if num_classes < needed {
        return Err(AttackError::TooFewClasses {
            what: if targeted && loss == LossKind::Dlr {
                "the targeted DLR loss"
            } else {
                "this loss"
            },
            needed,
            num_classes,
        });
    }
    Ok(())
}

/// Logit of class `c[i]` for every row: `[B]`.
pub(crate) fn pick(logits: Tensor<2>, c: &Tensor<1, Int>) -> Tensor<1> {
    let b = logits.dims()[0];
    logits.gather(1, c.clone().reshape([b, 1])).reshape([b])
}

/// Largest logit among the classes other than `c[i]`: `[B]`.
pub(crate) fn max_other(logits: Tensor<2>, c: &Tensor<1, Int>) -> Tensor<1> {
    let [b, k] = logits.dims();
    let mask = c.clone().one_hot::<2>(k).equal_elem(1);
    logits
        .mask_fill(mask, f32::NEG_INFINITY)
        .max_dim(1)
        .reshape([b])
}

/// The objective to maximize, per sample. `targets` is `Some` for targeted attacks.
pub(crate) fn objective(
    loss: LossKind,
    logits: Tensor<2>,
    labels: &Tensor<1, Int>,
    targets: Option<&Tensor<1, Int>>,
) -> Tensor<1> {
    let b = logits.dims()[0];
    match (loss, targets) {
        (LossKind::CrossEntropy, None) => -pick(log_softmax(logits, 1), labels),
        (LossKind::CrossEntropy, Some(t)) => pick(log_softmax(logits, 1), t),
        (LossKind::CwMargin, None) => max_other(logits.clone(), labels) - pick(logits, labels),
        (LossKind::CwMargin, Some(t)) => pick(logits.clone(), t) - max_other(logits, t),
        (LossKind::Dlr, target) => {
            let sorted = logits.clone().sort_descending(1);
            let p1 = sorted.clone().slice([0..b, 0..1]).reshape([b]);
            let p3 = sorted.clone().slice([0..b, 2..3]).reshape([b]);
            let zy = pick(logits.clone(), labels);
            match target {
                None => {
                    let num = zy - max_other(logits, labels);
                    -num / (p1 - p3 + 1e-12)
                }
                Some(t) => {
                    let p4 = sorted.slice([0..b, 3..4]).reshape([b]);
                    let num = zy - pick(logits, t);
                    -num / (p1 - (p3 + p4) * 0.5 + 1e-12)
                }
            }
        }
    }
}

/// Per sample: does the prediction count as a success (untargeted: wrong class; targeted: the
/// target class)?
pub(crate) fn success(
    logits: Tensor<2>,
    labels: &Tensor<1, Int>,
    targets: Option<&Tensor<1, Int>>,
) -> Tensor<1, burn::tensor::Bool> {
    let b = logits.dims()[0];
    let pred = logits.argmax(1).reshape([b]);
    match targets {
        None => pred.not_equal(labels.clone()),
        Some(t) => pred.equal(t.clone()),
    }
}
