//! The registry: every model by name, with its input shape and PyTorch naming.

use std::cell::Cell;
use std::sync::{Mutex, MutexGuard};

use bulwark_attack_core::Interval;
use burn::module::{ModuleVisitor, Param};
use burn::prelude::*;

use crate::{
    MadryCnn, MadryCnnConfig, Mlp, MlpConfig, ModelError, PreActResNet18, PreActResNet18Config,
    SeedMlp, SeedMlpConfig, SeedNet, SeedNetConfig, SmallCnn, SmallCnnConfig, WideResNet,
    WideResNetConfig,
};

/// Static facts about one zoo model.
#[derive(Debug, Clone, Copy)]
pub struct ModelInfo {
    /// Registry name (`small-cnn`, ...).
    pub name: &'static str,
    /// Shape of one input sample (`[10]` for a vector model, `[C, H, W]` for images).
    pub input_shape: &'static [usize],
    /// Number of outputs (classes).
    pub num_classes: usize,
    /// One line: what it is and where it comes from.
    pub summary: &'static str,
    /// Whether the architecture has dropout layers that [`ArchOptions::dropout`] sets.
    pub dropout: bool,
    /// Whether its residual branches take [`ArchOptions::drop_path`] (stochastic depth).
    pub drop_path: bool,
    /// Renames from burn's top-level field names to PyTorch's module names; fields not listed
    /// keep their name.
    pub(crate) torch_renames: &'static [(&'static str, &'static str)],
}

impl ModelInfo {
    /// PyTorch state-dict key for a parameter at `path` (burn field names below the variant).
    pub(crate) fn torch_key(&self, path: &[String], container: &str) -> String {
        let renames = self.torch_renames;
        let mut parts: Vec<String> = Vec::with_capacity(path.len() + 1);
        for (i, part) in path.iter().enumerate() {
            let last = i + 1 == path.len();
            let renamed = if i == 0 {
                renames
                    .iter()
                    .find(|(from, _)| from == part)
                    .map_or(part.as_str(), |(_, to)| *to)
            } else {
                part.as_str()
            };
            if last && container.ends_with("BatchNorm") {
                // burn names BatchNorm's affine parameters gamma/beta; PyTorch weight/bias.
                parts.push(
                    match renamed {
                        "gamma" => "weight",
                        "beta" => "bias",
                        other => other,
                    }
                    .to_string(),
                );
            } else if renamed == "conv_shortcut" {
                // The RobustBench WideResNet's camel-case attribute.
                parts.push("convShortcut".to_string());
            } else if renamed == "shortcut" {
                // PyTorch's PreActBlock holds its shortcut conv in an nn.Sequential.
                parts.push("shortcut.0".to_string());
            } else {
                parts.push(renamed.to_string());
            }
        }
        parts.join(".")
    }
}

const MODELS: [ModelInfo; 8] = [
    ModelInfo {
        name: "seed-mlp",
        input_shape: &[10],
        num_classes: 10,
        summary: "Linear(10,50) -> Linear(50,10), no activation (the seed's regularization example)",
        torch_renames: &[("fc1", "0"), ("fc2", "1")],
        dropout: false,
        drop_path: false,
    },
    ModelInfo {
        name: "seed-net",
        input_shape: &[3, 32, 32],
        num_classes: 10,
        summary: "the seed's CNN: 2 conv + 3 linear layers (PyTorch CIFAR-10 tutorial net)",
        torch_renames: &[],
        dropout: false,
        drop_path: false,
    },
    ModelInfo {
        name: "mlp",
        input_shape: &[1, 28, 28],
        num_classes: 10,
        summary: "784-256-256-10 MLP with ReLU",
        torch_renames: &[("fc1", "1"), ("fc2", "3"), ("fc3", "5")],
        dropout: false,
        drop_path: false,
    },
    ModelInfo {
        name: "small-cnn",
        input_shape: &[1, 28, 28],
        num_classes: 10,
        summary: "2 strided conv + 2 linear layers (Wong, Rice & Kolter 2020, MNIST)",
        torch_renames: &[("conv1", "0"), ("conv2", "2"), ("fc1", "5"), ("fc2", "7")],
        dropout: false,
        drop_path: false,
    },
    ModelInfo {
        name: "madry-cnn",
        input_shape: &[1, 28, 28],
        num_classes: 10,
        summary: "2 conv + max-pool, 2 linear layers (Madry et al. 2018, MNIST)",
        torch_renames: &[("conv1", "0"), ("conv2", "3"), ("fc1", "7"), ("fc2", "9")],
        dropout: false,
        drop_path: false,
    },
    ModelInfo {
        name: "preact-resnet18",
        input_shape: &[3, 32, 32],
        num_classes: 10,
        summary: "PreAct-ResNet-18 with built-in CIFAR-10 normalization (Wong et al. 2020, Rice et al. 2020)",
        torch_renames: &[],
        dropout: false,
        drop_path: false,
    },
    ModelInfo {
        name: "wrn-28-10",
        input_shape: &[3, 32, 32],
        num_classes: 10,
        summary: "WideResNet-28-10, RobustBench's CIFAR-10 layout, no normalization inside (Zagoruyko & Komodakis 2016)",
        torch_renames: &[],
        dropout: true,
        drop_path: true,
    },
    ModelInfo {
        name: "wrn-34-10",
        input_shape: &[3, 32, 32],
        num_classes: 10,
        summary: "WideResNet-34-10, RobustBench's CIFAR-10 layout (Madry et al. 2018, Zhang et al. 2019)",
        torch_renames: &[],
        dropout: true,
        drop_path: true,
    },
];

/// Training-time options of the zoo's architectures, for those that have the layers
/// ([`ModelInfo::dropout`], [`ModelInfo::drop_path`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ArchOptions {
    /// Dropout probability inside the network.
    pub dropout: f64,
    /// DropPath (stochastic depth) probability of each residual branch.
    pub drop_path: f64,
}

impl ArchOptions {
    /// Fails unless `model` has the layers the non-zero options need and they are in `[0, 1)`.
    pub fn check(&self, model: &ModelInfo) -> Result<(), ModelError> {
        let supporting = |f: fn(&ModelInfo) -> bool| {
            MODELS
                .iter()
                .filter(|m| f(m))
                .map(|m| m.name)
                .collect::<Vec<_>>()
                .join(", ")
        };
        for (name, p, has, which) in [
            (
                "dropout",
                self.dropout,
                model.dropout,
                supporting(|m| m.dropout),
            ),
            (
                "drop_path",
                self.drop_path,
                model.drop_path,
                supporting(|m| m.drop_path),
            ),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(ModelError::Config {
                    model: model.name.into(),
                    reason: format!("{name} must be in [0, 1), got {p}"),
                });
            }
            if p > 0.0 && !has {
                return Err(ModelError::Config {
                    model: model.name.into(),
                    reason: format!("it has no {name} layers; {name} is available for: {which}"),
                });
            }
        }
        Ok(())
    }
}

/// Every model in the zoo, in a stable order.
pub fn models() -> &'static [ModelInfo] {
    &MODELS
}

/// Looks a model up by name.
pub fn model_info(name: &str) -> Result<&'static ModelInfo, ModelError> {
    MODELS
        .iter()
        .find(|m| m.name == name)
        .ok_or_else(|| ModelError::UnknownModel {
            name: name.to_string(),
            known: MODELS.map(|m| m.name).join(", "),
        })
}

/// Any zoo model; the variant decides the architecture.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Model {
    /// See [`SeedMlp`].
    SeedMlp(SeedMlp),
    /// See [`SeedNet`].
    SeedNet(SeedNet),
    /// See [`Mlp`].
    Mlp(Mlp),
    /// See [`SmallCnn`].
    SmallCnn(SmallCnn),
    /// See [`MadryCnn`].
    MadryCnn(MadryCnn),
    /// See [`PreActResNet18`].
    PreActResNet18(PreActResNet18),
    /// See [`WideResNet`] (`wrn-28-10`, `wrn-34-10`).
    WideResNet(WideResNet),
}

impl Model {
    /// Builds the named model with its default configuration and fresh weights on `device`.
    ///
    /// The weights are drawn from the device's generator at once, under the process-wide lock of
    /// [`Model::init_seeded`]: burn would otherwise draw them lazily, at first use, at a moment
    /// that could fall between another thread's seeding and its draws and change that model's
    /// weights. Use [`Model::init_seeded`] for reproducible weights.
    pub fn init(name: &str, device: &Device) -> Result<Self, ModelError> {
        let _guard = rng_lock();
        let model = Self::build(name, device)?;
        model.visit(&mut Materialize);
        Ok(model)
    }

    /// The named model with lazily initialized weights, drawn at first use from the device's
    /// shared generator: for [`init_seeded_with`] and the trainer, which draw them at once under
    /// a lock. Use [`Model::init_seeded`] for reproducible weights.
    pub fn build(name: &str, device: &Device) -> Result<Self, ModelError> {
        Self::build_with(name, &ArchOptions::default(), device)
    }

    /// [`Model::build`] with training-time options (dropout, stochastic depth) for the
    /// architectures that have them; an error for one that does not.
    pub fn build_with(
        name: &str,
        options: &ArchOptions,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let info = model_info(name)?;
        options.check(info)?;
        let wrn = |depth| {
            WideResNetConfig::new()
                .with_depth(depth)
                .with_dropout(options.dropout)
                .with_drop_path(options.drop_path)
        };
        Ok(match info.name {
            "seed-mlp" => Model::SeedMlp(SeedMlpConfig::new().init(device)),
            "seed-net" => Model::SeedNet(SeedNetConfig::new().init(device)),
            "mlp" => Model::Mlp(MlpConfig::new().init(device)),
            "small-cnn" => Model::SmallCnn(SmallCnnConfig::new().init(device)),
            "madry-cnn" => Model::MadryCnn(MadryCnnConfig::new().init(device)),
            "preact-resnet18" => Model::PreActResNet18(PreActResNet18Config::new().init(device)),
            "wrn-28-10" => Model::WideResNet(wrn(28).init(device)),
            "wrn-34-10" => Model::WideResNet(wrn(34).init(device)),
            other => unreachable!("model_info returned unregistered name {other}"),
        })
    }

    /// Builds the named model with weights drawn from `seed`, reproducibly.
    ///
    /// burn initializes parameters lazily (at first use) from the backend's generator, which is
    /// shared by the whole process. This seeds the generator, builds the model and draws every
    /// weight at once, under a process-wide lock, so that two models built at the same time on
    /// different threads cannot interleave their draws.
    ///
    /// The lock keeps out the draws that take it: other builds, [`seed_device`] and
    /// [`with_seeded_device`], in which the trainer runs its random layers. It cannot keep out a
    /// draw that bypasses it: a `Tensor::random` or a dropout layer run meanwhile on another
    /// thread of your program takes numbers from the same generator and changes the weights.
    /// Build seeded models where no other thread draws, or run those draws inside
    /// [`with_seeded_device`]. (burn's initializers draw from the backend's generator and cannot
    /// be handed one of their own.)
    pub fn init_seeded(name: &str, device: &Device, seed: u64) -> Result<Self, ModelError> {
        model_info(name)?;
        Ok(init_seeded_with(device, seed, |d| {
            Self::build(name, d).expect("the name was checked above")
        }))
    }

    /// The model's registry name.
    pub fn name(&self) -> &'static str {
        self.info().name
    }

    /// The model's registry entry.
    pub fn info(&self) -> &'static ModelInfo {
        let index = match self {
            Model::SeedMlp(_) => 0,
            Model::SeedNet(_) => 1,
            Model::Mlp(_) => 2,
            Model::SmallCnn(_) => 3,
            Model::MadryCnn(_) => 4,
            Model::PreActResNet18(_) => 5,
            Model::WideResNet(m) if m.depth() == 28 => 6,
            Model::WideResNet(_) => 7,
        };
        &MODELS[index]
    }

    /// Maps a batch of inputs to logits `[batch, num_classes]`.
    ///
    /// Image models take `[batch, C, H, W]`; the vector model `seed-mlp` takes any 4-D batch
    /// whose trailing dimensions hold its 10 features (e.g. `[batch, 1, 1, 10]`).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        match self {
            Model::SeedMlp(m) => m.forward(x.flatten::<2>(1, 3)),
            Model::SeedNet(m) => m.forward(x),
            Model::Mlp(m) => m.forward(x),
            Model::SmallCnn(m) => m.forward(x),
            Model::MadryCnn(m) => m.forward(x),
            Model::PreActResNet18(m) => m.forward(x),
            Model::WideResNet(m) => m.forward(x),
        }
    }

    /// Interval bound propagation with inference behaviour: lower bounds of the margins
    /// `z_y − z_j` over the box `x` for the image models (`mlp`, `small-cnn`, `madry-cnn`,
    /// `preact-resnet18`, the WideResNets); `None` for the seed's two examples.
    pub fn margin_bounds(&self, x: Interval<4>, y: Tensor<1, Int>) -> Option<Tensor<2>> {
        match self {
            Model::Mlp(m) => Some(m.margin_bounds(x, y)),
            Model::SmallCnn(m) => Some(m.margin_bounds(x, y)),
            Model::MadryCnn(m) => Some(m.margin_bounds(x, y)),
            Model::PreActResNet18(m) => Some(m.margin_bounds(x, y)),
            Model::WideResNet(m) => Some(m.margin_bounds(x, y)),
            Model::SeedMlp(_) | Model::SeedNet(_) => None,
        }
    }

    /// Brings BatchNorm running statistics up to date before they are read out (export,
    /// checkpoints). A no-op for models without BatchNorm.
    pub fn sync_running_stats(&self) {
        match self {
            Model::PreActResNet18(m) => m.sync_running_stats(),
            Model::WideResNet(m) => m.sync_running_stats(),
            _ => {}
        }
    }
}

/// The process-wide lock around burn's shared random generator: held while a model draws its
/// weights, and while anyone else re-seeds the generator.
static RNG_LOCK: Mutex<()> = Mutex::new(());

thread_local! {
    /// How many [`RngGuard`]s this thread holds: the lock is re-entrant, because a builder given
    /// to [`init_seeded_with`] (or to the trainer's `fit_network`) may itself call
    /// [`Model::init`], for example to load pretrained weights into the architecture it returns.
    static RNG_DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// A hold on [`RNG_LOCK`]; only the outermost hold of a thread owns the mutex, which it releases
/// when dropped (the field is held for that, never read).
struct RngGuard(#[allow(dead_code)] Option<MutexGuard<'static, ()>>);

impl Drop for RngGuard {
    fn drop(&mut self) {
        // The outermost guard's mutex (field 0) is released right after this returns.
        RNG_DEPTH.with(|d| d.set(d.get() - 1));
    }
}

fn rng_lock() -> RngGuard {
    if RNG_DEPTH.with(|d| d.get()) > 0 {
        RNG_DEPTH.with(|d| d.set(d.get() + 1));
        return RngGuard(None);
    }
    // A panic in another holder cannot leave the guarded state inconsistent.
    let guard = RNG_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    RNG_DEPTH.with(|d| d.set(1));
    RngGuard(Some(guard))
}

/// Builds any module with `build` and weights drawn from `seed`, reproducibly: what
/// [`Model::init_seeded`] does for the zoo, for a user's own network.
///
/// burn draws parameters lazily, at first use, from a generator shared by the whole process. This
/// seeds the generator, builds the module and reads every parameter at once, under the same
/// process-wide lock as [`Model::init_seeded`] and [`seed_device`], so that no other thread's
/// draws through those can fall in between (draws that bypass the lock can: see
/// [`Model::init_seeded`]).
///
/// ```
/// use burn::nn::{Linear, LinearConfig};
/// use burn::module::Module;
/// let device = burn::tensor::Device::flex();
/// let a: Linear = bulwark_models::init_seeded_with(&device, 7, |d| LinearConfig::new(4, 2).init(d));
/// let b: Linear = bulwark_models::init_seeded_with(&device, 7, |d| LinearConfig::new(4, 2).init(d));
/// assert_eq!(a.weight.val().into_data(), b.weight.val().into_data());
/// ```
pub fn init_seeded_with<M: Module>(
    device: &Device,
    seed: u64,
    build: impl FnOnce(&Device) -> M,
) -> M {
    let _guard = rng_lock();
    device.seed(seed);
    let model = build(device);
    model.visit(&mut Materialize);
    model
}

/// Seeds `device`'s random generator without interleaving with a concurrent
/// [`Model::init_seeded`] (burn's generator is shared by the whole process: a re-seed between
/// another thread's seed and its weight draws would change that model's weights).
pub fn seed_device(device: &Device, seed: u64) {
    let _guard = rng_lock();
    device.seed(seed);
}

/// Runs `f` with `device`'s random generator seeded with `seed` and held for this thread alone:
/// the lock of [`seed_device`] is kept until `f` returns, so random layers (dropout) inside `f`
/// draw exactly the numbers `seed` gives, whatever other threads of the process do with the
/// shared generator meanwhile. The lock is re-entrant: `f` may build models, but one that seeds
/// the device (a seeded build) restarts the stream `f` draws from.
pub fn with_seeded_device<T>(device: &Device, seed: u64, f: impl FnOnce() -> T) -> T {
    let _guard = rng_lock();
    device.seed(seed);
    f()
}

/// Reads every parameter once, which makes burn draw lazily initialized weights now.
struct Materialize;

impl ModuleVisitor for Materialize {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let _ = param.val();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    /// A builder that itself calls [`Model::init`] (to load weights into what it returns, say)
    /// finishes instead of waiting forever on the generator's lock, and stays reproducible.
    #[test]
    fn a_builder_may_build_models_itself() {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let device = Device::flex();
            let draw = || {
                let model =
                    init_seeded_with(&device, 3, |d| Model::init("mlp", d).expect("registered"));
                crate::torch::to_safetensors_bytes(&model)
            };
            let (a, b) = (draw(), draw());
            // The lock is free again afterwards: another seeded build goes through.
            let _ = Model::init_seeded("mlp", &device, 4).expect("registered");
            tx.send(a == b).expect("the test waits");
        });
        let same = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("a nested build waited on the generator's lock (deadlock)");
        assert!(same, "a nested build drew different weights from one seed");
    }
}
