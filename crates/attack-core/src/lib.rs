//! Bulwark's adversarial attacks, with exact geometry.
//!
//! Every attack implements [`Attack`]: `perturb(model, x, labels)` returns the adversarial batch.
//! Each has a `Config` (burn [`Config`](burn::config::Config), serde) built with `init()`, which
//! validates it. Options shared by all attacks — valid box, loss, targeting, random start,
//! restarts, early stop, seed, crafting mode — live in [`AttackOptions`]; the threat model (norm
//! and eps) in [`ThreatModel`].
//!
//! Guarantees, by construction and by test:
//! - the model runs with inference behaviour ([`Classifier`]: BatchNorm running statistics, no
//!   dropout) unless [`Crafting::Train`] is asked for, and its parameters never get a gradient;
//!   every step builds one forward/backward graph to the input and no more;
//! - after every step each sample is inside the eps-ball around its **clean** input and inside the
//!   box, exactly in f32 (projections are computed in f64 and rounded toward the clean input);
//! - a zero gradient gives no step and no NaN; eps = 0 returns the input;
//! - random draws depend on the seed and the sample only, so a batch gives the same result as its
//!   samples attacked one by one, and a seed reproduces a run;
//! - bad input (eps < 0, NaN pixels, inputs outside the box, wrong label count, labels that are
//!   not classes) is an [`AttackError`] naming the problem.
//!
//! Attacks: [`Fgsm`] (and its random-start variant, [`FgsmConfig::fast`]), [`Bim`], [`Pgd`] in
//! L-inf, L2 and L1, [`MiFgsm`], [`Apgd`] (L-inf, L2, L1), [`Fab`] (FAB-T, L-inf and L2), the
//! score-based [`Square`] attack
//! (L-inf, L2; forward passes only), [`CwL2`] (Carlini-Wagner), [`DeepFool`] (L2 and L-inf) and
//! [`TradesKl`] (TRADES' label-free inner maximization).
//! [`Evaluator`] runs a list of them as an AutoAttack-style cascade.
//! [`AttackConfig`] names any of them, for command lines and config files.
//!
//! ```
//! use bulwark_attack_core::{Attack, PgdConfig, ThreatModel};
//! use burn::tensor::{Device, Int, Tensor, TensorData};
//!
//! // Any `Fn(Tensor<D>) -> Tensor<2>` is a classifier; a burn module implements `Classifier`
//! // with `self.valid().forward(x)`. Here: two inputs, two classes, logits `x·W`.
//! let device = Device::flex();
//! let w = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, -1.0, -1.0, 1.0], [2, 2]), &device);
//! let model = move |x: Tensor<2>| x.matmul(w.clone());
//! let x = Tensor::<2>::from_data(TensorData::new(vec![0.6f32, 0.4], [1, 2]), &device);
//! let y = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64], [1]), &device);
//!
//! let pgd = PgdConfig::new(ThreatModel::linf(0.2)).init()?;
//! let adv = pgd.perturb(&model, x.clone(), y)?;
//! // Inside the eps-ball around the clean input (and the [0, 1] box), and now class 1.
//! let moved = (adv.clone() - x).abs().max().into_scalar::<f32>();
//! assert!(moved <= 0.2);
//! assert_eq!(model(adv).argmax(1).into_scalar::<i64>(), 1);
//! # Ok::<(), bulwark_attack_core::AttackError>(())
//! ```

mod apgd;
mod apgd_device;
mod apgd_l1;
mod apgd_schedule;
mod attack;
mod ball;
mod batch;
mod classifier;
mod cw;
mod deepfool;
mod error;
mod evaluator;
mod fab;
mod fgsm;
mod geometry;
mod host;
mod hyperplane;
mod interval;
mod iterative;
mod l1_ball;
mod loss;
mod mifgsm;
mod network;
mod options;
mod overrides;
mod pgd;
mod registry;
pub mod rng;
pub mod sanity;
mod square;
mod text_network;
mod trades;

pub use apgd::{Apgd, ApgdConfig};
pub use attack::{Attack, AttackSettings};
pub use classifier::Classifier;
pub use cw::{CwL2, CwL2Config};
pub use deepfool::{DeepFool, DeepFoolConfig};
pub use error::AttackError;
pub use evaluator::{
    BatchOutcome, Break, Evaluator, Preset, Progress, Stage, StageRecord, catalogue, within_threat,
};
pub use fab::{Fab, FabConfig};
pub use fgsm::{Fgsm, FgsmConfig};
pub use interval::{Interval, VERIFY_TOLERANCE, verified};
pub use iterative::{DEFAULT_L1_SPARSITY, StepObserver};
pub use mifgsm::{MiFgsm, MiFgsmConfig};
pub use network::{Network, NetworkClassifier, default_state_dict_key};
pub use options::{AttackOptions, Bounds, Crafting, LossKind, Norm, Targeting, ThreatModel};
pub use overrides::AttackOverrides;
pub use pgd::{Bim, BimConfig, Pgd, PgdConfig};
pub use registry::{ATTACKS, Alias, AnyAttack, AttackConfig, AttackEntry, known_names, lookup};
pub use square::{Square, SquareConfig};
pub use text_network::{EmbeddedClassifier, TextNetwork};
pub use trades::{TradesKl, TradesKlConfig};
