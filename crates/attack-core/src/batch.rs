//! One validated batch under attack: the clean inputs flattened to `[B, N]` (plain and on the host),
//! labels, targets, and the model calls every attack makes.

use burn::tensor::{Bool, Device, Int, Tensor};

use crate::classifier::Classifier;
use crate::error::AttackError;
use crate::host::{host_bool, host_f32, host_i64, probability_rows, upload, upload_int};
use crate::loss::{check_classes, objective, success};
use crate::options::{AttackOptions, Crafting, LossKind, Targeting};
use crate::rng::{SplitMix64, sample_seed};

/// Stream tag for random-target draws (restarts use their index as the stream).
const TARGET_STREAM: u64 = 0x007A_26E7;

pub(crate) struct Batch<'m, const D: usize, C: ?Sized> {
    model: &'m C,
    /// Shape of the model input with the batch dimension at index 0.
    dims: [usize; D],
    pub(crate) device: Device,
    /// Batch size.
    pub(crate) b: usize,
    /// Values per sample.
    pub(crate) n: usize,
    pub(crate) x0: Tensor<2>,
    pub(crate) x0_host: Vec<f32>,
    pub(crate) labels: Tensor<1, Int>,
    labels_host: Vec<i64>,
    pub(crate) targets: Option<Tensor<1, Int>>,
    targets_host: Option<Vec<i64>>,
    pub(crate) num_classes: usize,
    crafting: Crafting,
    bounds: (f64, f64),
    /// Success is any misclassification, also for targeted attacks.
    any_error: bool,
}

impl<'m, const D: usize, C: Classifier<D> + ?Sized> Batch<'m, D, C> {
    /// Validates the inputs and the options against the model, and resolves the targets.
    pub(crate) fn new(
        model: &'m C,
        x: Tensor<D>,
        labels: Tensor<1, Int>,
        targets: Option<Tensor<1, Int>>,
        options: &AttackOptions,
    ) -> Result<Self, AttackError> {
        options.validate()?;
        let x = x.inner();
        let device = x.device();
        let dims = x.dims();
        let b = dims[0];
        let n: usize = dims[1..].iter().product();
        let label_count = labels.dims()[0];
        if label_count != b {
            return Err(AttackError::CountMismatch {
                what: "labels",
                got: label_count,
                batch: b,
            });
        }
        let x0 = x.reshape([b, n]);
        let x0_host = host_f32(x0.clone());
        let (lo, hi) = (options.bounds.lo, options.bounds.hi);
        for (i, &v) in x0_host.iter().enumerate() {
            let (sample, position) = (i / n.max(1), i % n.max(1));
            if !v.is_finite() {
                return Err(AttackError::NonFiniteInput {
                    sample,
                    position,
                    value: v,
                });
            }
            if f64::from(v) < lo || f64::from(v) > hi {
                return Err(AttackError::OutsideBox {
                    sample,
                    position,
                    value: v,
                    lo,
                    hi,
                });
            }
        }
        let labels = labels.inner();
        let labels_host = host_i64(labels.clone());
        let mut batch = Batch {
            model,
            dims,
            device,
            b,
            n,
            x0,
            x0_host,
            labels,
            labels_host,
            targets: None,
            targets_host: None,
            num_classes: 0,
            crafting: options.crafting,
            bounds: (lo, hi),
            any_error: options.any_error,
        };
        if b == 0 {
            return Ok(batch);
        }
        let clean = batch.logits(batch.x0.clone());
        let [rows, k] = clean.dims();
        if rows != b {
            return Err(AttackError::BadModelOutput(format!(
                "{rows} rows of logits for a batch of {b}"
            )));
        }
        let clean_host = host_f32(clean);
        if let Some(v) = clean_host.iter().find(|v| !v.is_finite()) {
            return Err(AttackError::BadModelOutput(format!(
                "non-finite logit {v} on clean inputs"
            )));
        }
        warn_if_probabilities(&clean_host, k);
        batch.num_classes = k;
        for (i, &l) in batch.labels_host.iter().enumerate() {
            if l < 0 || l as usize >= k {
                return Err(AttackError::ClassOutOfRange {
                    what: "labels",
                    sample: i,
                    value: l,
                    num_classes: k,
                });
            }
        }
        let targets_host = match (options.targeting, targets) {
            (Targeting::Untargeted, None) => None,
            (Targeting::Untargeted, Some(_)) => {
                return Err(AttackError::Targeting(
                    "targets were given to an untargeted attack; set `targeting` to `given`".into(),
                ));
            }
            (Targeting::Given, None) => {
                return Err(AttackError::Targeting(
                    "targeting is `given` but no targets were passed (use perturb_targeted)".into(),
                ));
            }
            (Targeting::Given, Some(t)) => {
                let t = host_i64(t.inner());
                if t.len() != b {
                    return Err(AttackError::CountMismatch {
                        what: "targets",
                        got: t.len(),
                        batch: b,
                    });
                }
                Some(t)
            }
            (Targeting::Random | Targeting::LeastLikely, Some(_)) => {
                return Err(AttackError::Targeting(format!(
                    "targets were passed but targeting is `{:?}`, which chooses them; set `targeting` to `given`",
                    options.targeting
                )));
            }
            (Targeting::Random, None) => Some(
                (0..b)
                    .map(|i| {
                        let row = &batch.x0_host[i * n..(i + 1) * n];
                        let mut rng =
                            SplitMix64::new(sample_seed(options.seed, TARGET_STREAM, row));
                        let label = batch.labels_host[i] as usize;
                        let draw = rng.index(k - 1);
                        (if draw >= label { draw + 1 } else { draw }) as i64
                    })
                    .collect(),
            ),
            (Targeting::LeastLikely, None) => Some(
                // The least likely class other than the label (a misclassified sample's label can
                // itself be the least likely).
                clean_host
                    .chunks(k)
                    .zip(&batch.labels_host)
                    .map(|(row, &y)| {
                        (0..k)
                            .filter(|&c| c as i64 != y)
                            .min_by(|&a, &b| row[a].total_cmp(&row[b]).then(a.cmp(&b)))
                            .unwrap_or(0) as i64
                    })
                    .collect(),
            ),
        };
        if let Some(t) = &targets_host {
            for (i, (&tv, &l)) in t.iter().zip(&batch.labels_host).enumerate() {
                if tv < 0 || tv as usize >= k {
                    return Err(AttackError::ClassOutOfRange {
                        what: "targets",
                        sample: i,
                        value: tv,
                        num_classes: k,
                    });
                }
                if tv == l {
                    return Err(AttackError::TargetIsLabel {
                        sample: i,
                        target: tv,
                    });
                }
            }
            batch.targets = Some(upload_int(t.clone(), &batch.device));
        }
        batch.targets_host = targets_host;
        Ok(batch)
    }

    /// The rows `rows` of this batch, as a batch of their own.
    pub(crate) fn subset(&self, rows: &[usize]) -> Self {
        let n = self.n;
        let x: Vec<f32> = rows
            .iter()
            .flat_map(|&i| self.x0_host[i * n..(i + 1) * n].iter().copied())
            .collect();
        let labels: Vec<i64> = rows.iter().map(|&i| self.labels_host[i]).collect();
        let targets: Option<Vec<i64>> = self
            .targets_host
            .as_ref()
            .map(|t| rows.iter().map(|&i| t[i]).collect());
        let mut dims = self.dims;
        dims[0] = rows.len();
        Batch {
            model: self.model,
            dims,
            device: self.device.clone(),
            b: rows.len(),
            n,
            x0: upload(x.clone(), rows.len(), n, &self.device),
            x0_host: x,
            labels: upload_int(labels.clone(), &self.device),
            labels_host: labels,
            targets: targets
                .as_ref()
                .map(|t| upload_int(t.clone(), &self.device)),
            targets_host: targets,
            num_classes: self.num_classes,
            crafting: self.crafting,
            bounds: self.bounds,
            any_error: self.any_error,
        }
    }

    pub(crate) fn targeted(&self) -> bool {
        self.targets.is_some()
    }

    /// Model input shape for `rows` samples.
    fn shape(&self, rows: usize) -> [usize; D] {
        let mut dims = self.dims;
        dims[0] = rows;
        dims
    }

    /// Reshapes a flat `[B, N]` batch to the model's input shape.
    pub(crate) fn unflatten(&self, x: Tensor<2>) -> Tensor<D> {
        let rows = x.dims()[0];
        x.reshape(self.shape(rows))
    }

    /// Logits of a flat batch with inference behaviour, without autodiff.
    pub(crate) fn logits(&self, x: Tensor<2>) -> Tensor<2> {
        self.model.logits(self.unflatten(x.inner()))
    }

    /// Objective per sample, success per sample, for a flat batch (inference behaviour).
    pub(crate) fn judge(&self, x: Tensor<2>, loss: LossKind) -> (Vec<f32>, Vec<bool>) {
        let logits = self.logits(x);
        let obj = objective(loss, logits.clone(), &self.labels, self.targets.as_ref());
        let ok = success(
            logits,
            &self.labels,
            self.success_targets(self.targets.as_ref()),
        );
        (host_f32(obj), host_bool(ok))
    }

    /// Per-sample success of the prediction from given logits.
    pub(crate) fn success_of(&self, logits: Tensor<2>) -> Vec<bool> {
        host_bool(self.success_mask(logits))
    }

    /// Per-sample success of the prediction from given logits, left on the device.
    pub(crate) fn success_mask(&self, logits: Tensor<2>) -> Tensor<1, Bool> {
        success(
            logits,
            &self.labels,
            self.success_targets(self.targets.as_ref()),
        )
    }

    /// The targets success is judged against: none (any misclassification) with `any_error`.
    fn success_targets<'t>(
        &self,
        targets: Option<&'t Tensor<1, Int>>,
    ) -> Option<&'t Tensor<1, Int>> {
        if self.any_error { None } else { targets }
    }

    /// Logits of `x` (model-shaped) with the crafting mode's behaviour; tracked when `x` is.
    pub(crate) fn crafting_logits(&self, x: Tensor<D>) -> Tensor<2> {
        match self.crafting {
            Crafting::Inference => self.model.logits(x),
            Crafting::Train => self.model.logits_train_mode(x),
        }
    }

    /// One forward and one backward to the input: returns plain logits with inference behaviour
    /// (for judging success) and the gradient of the summed objective with respect to the flat
    /// input. The gradient's forward uses the crafting mode's behaviour (train-mode crafting costs
    /// one extra inference forward); parameters are untracked, so no parameter gradient is built.
    pub(crate) fn gradient(&self, x: Tensor<2>, loss: LossKind) -> (Tensor<2>, Tensor<2>) {
        let (logits, _, g) = self.gradient_of(x, |logits| {
            objective(loss, logits, &self.labels, self.targets.as_ref())
        });
        (logits, g)
    }

    /// As [`Batch::gradient`] for any per-sample function of the logits: returns the plain
    /// logits, the function's plain values `[rows]` and its input gradient `[rows, N]`.
    pub(crate) fn gradient_of(
        &self,
        x: Tensor<2>,
        f: impl Fn(Tensor<2>) -> Tensor<1>,
    ) -> (Tensor<2>, Tensor<1>, Tensor<2>) {
        let rows = x.dims()[0];
        let x_plain = x.inner();
        let xa = self.unflatten(x_plain.clone()).autodiff().require_grad();
        let logits = match self.crafting {
            Crafting::Inference => self.model.logits(xa.clone()),
            Crafting::Train => self.model.logits_train_mode(xa.clone()),
        };
        let value = f(logits.clone());
        // A model whose output does not depend on the input (or cuts the graph, e.g. by
        // thresholding it) has no graph to walk back: its input gradient is zero.
        let g = if value.is_tracked() {
            let grads = value.clone().sum().backward();
            xa.grad(&grads).map(|g| g.reshape([rows, self.n]))
        } else {
            None
        };
        let g = g.unwrap_or_else(|| Tensor::zeros([rows, self.n], &self.device));
        let judged = match self.crafting {
            Crafting::Inference => logits.inner(),
            Crafting::Train => self.logits(x_plain),
        };
        (judged, value.inner(), g)
    }

    /// Checks the targets/loss combination against the number of classes.
    pub(crate) fn check_loss(&self, loss: LossKind) -> Result<(), AttackError> {
        if self.b == 0 {
            return Ok(());
        }
        check_classes(loss, self.targeted(), self.num_classes)
    }

    /// The valid box `(lo, hi)`.
    pub(crate) fn bounds(&self) -> (f64, f64) {
        self.bounds
    }

    /// The model, for attacks with their own loop.
    pub(crate) fn model(&self) -> &C {
        self.model
    }

    /// The labels on the host.
    pub(crate) fn labels_host(&self) -> &[i64] {
        &self.labels_host
    }
}

/// Logits that are all in [0, 1] and sum to 1 per row are almost certainly probabilities: attacks
/// on them are weak (vanishing cross-entropy gradients), a classic evaluation bug.
/// (The evaluator reports the same test, with its evidence, as the `probability-outputs` flag.)
fn warn_if_probabilities(logits: &[f32], k: usize) {
    let rows = logits.len() / k.max(1);
    let (probs, log_probs) = probability_rows(logits, k);
    if k > 1 && rows > 0 && (probs == rows || log_probs == rows) {
        tracing::warn!(
            "the model's outputs look like (log-)probabilities (softmax or log-softmax rows); \
             attacks expect logits, and gradients through a softmax output are badly scaled"
        );
    }
}
