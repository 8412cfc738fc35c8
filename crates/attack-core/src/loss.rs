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

/// The `count` largest logits of every row, largest first, each `[B]`: the first `count` columns
/// of the row sorted in descending order, ties kept (a tied value appears as often as it occurs).
///
/// Found by `count` maxima, each time masking one position that holds the maximum, instead of a
/// sort: burn 0.22 has no GPU sort kernel, and the DLR loss needs only three or four values.
pub(crate) fn largest(logits: Tensor<2>, count: usize) -> Vec<Tensor<1>> {
    let [b, k] = logits.dims();
    let mut rest = logits;
    let mut top = Vec::with_capacity(count);
    for j in 0..count {
        top.push(rest.clone().max_dim(1).reshape([b]));
        if j + 1 < count {
            let at = rest.clone().argmax(1).reshape([b]);
            rest = rest.mask_fill(at.one_hot::<2>(k).equal_elem(1), f32::NEG_INFINITY);
        }
    }
    top
}

/// The objective to maximize, per sample. `targets` is `Some` for targeted attacks.
pub(crate) fn objective(
    loss: LossKind,
    logits: Tensor<2>,
    labels: &Tensor<1, Int>,
    targets: Option<&Tensor<1, Int>>,
) -> Tensor<1> {
    match (loss, targets) {
        (LossKind::CrossEntropy, None) => -pick(log_softmax(logits, 1), labels),
        (LossKind::CrossEntropy, Some(t)) => pick(log_softmax(logits, 1), t),
        (LossKind::CwMargin, None) => max_other(logits.clone(), labels) - pick(logits, labels),
        (LossKind::CwMargin, Some(t)) => pick(logits.clone(), t) - max_other(logits, t),
        (LossKind::Dlr, target) => {
            let top = largest(logits.clone(), if target.is_some() { 4 } else { 3 });
            let (p1, p3) = (top[0].clone(), top[2].clone());
            let zy = pick(logits.clone(), labels);
            match target {
                None => {
                    let num = zy - max_other(logits, labels);
                    -num / (p1 - p3 + 1e-12)
                }
                Some(t) => {
                    let num = zy - pick(logits, t);
                    -num / (p1 - (p3 + top[3].clone()) * 0.5 + 1e-12)
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

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Tensor, TensorData};

    use super::largest;

    #[test]
    fn largest_equals_the_sorted_columns_ties_included() {
        let device = Device::flex();
        let rows: Vec<[f32; 5]> = vec![
            [0.5, -1.0, 3.0, 2.0, 2.0],
            [1.0, 1.0, 1.0, 0.0, -2.0],
            [-3.0, -1.0, -2.0, -4.0, -0.5],
            [7.0, 7.0, 6.0, 7.0, 6.0],
        ];
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        let logits = Tensor::<2>::from_data(TensorData::new(flat, [rows.len(), 5]), &device);
        let top = largest(logits, 4);
        for (i, row) in rows.iter().enumerate() {
            let mut sorted = row.to_vec();
            sorted.sort_by(|a, b| b.total_cmp(a));
            for (j, column) in top.iter().enumerate() {
                let got = column.clone().try_into_vec_as::<f32>().unwrap()[i];
                assert_eq!(got, sorted[j], "row {i}, rank {j}");
            }
        }
    }
}
