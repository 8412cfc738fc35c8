//! Run-time choice among the backends compiled into this build.

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;

use crate::TrainError;

/// A burn backend, named as on the command line (`--backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// Pure-Rust CPU backend (feature `flex`, the default).
    Flex,
    /// burn's deprecated ndarray CPU backend (feature `ndarray`).
    Ndarray,
    /// GPU through wgpu with WGSL shaders (feature `wgpu`).
    Wgpu,
    /// wgpu pinned to Vulkan/SPIR-V (feature `vulkan`).
    Vulkan,
    /// NVIDIA CUDA (feature `cuda`).
    Cuda,
}

impl BackendKind {
    /// All backends, compiled in or not.
    pub const ALL: [BackendKind; 5] = [
        BackendKind::Flex,
        BackendKind::Ndarray,
        BackendKind::Wgpu,
        BackendKind::Vulkan,
        BackendKind::Cuda,
    ];

    /// The name used on the command line and in configs.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Flex => "flex",
            BackendKind::Ndarray => "ndarray",
            BackendKind::Wgpu => "wgpu",
            BackendKind::Vulkan => "vulkan",
            BackendKind::Cuda => "cuda",
        }
    }

    /// Whether this build includes the backend.
    pub fn is_compiled(self) -> bool {
        match self {
            BackendKind::Flex => cfg!(feature = "flex"),
            BackendKind::Ndarray => cfg!(feature = "ndarray"),
            BackendKind::Wgpu => cfg!(feature = "wgpu"),
            BackendKind::Vulkan => cfg!(feature = "vulkan"),
            BackendKind::Cuda => cfg!(feature = "cuda"),
        }
    }

    /// The backends this build includes, default first.
    pub fn compiled() -> Vec<BackendKind> {
        Self::ALL.into_iter().filter(|b| b.is_compiled()).collect()
    }

    /// The device of this backend (the first GPU for GPU backends), or a clear error naming the
    /// Cargo feature to enable.
    pub fn device(self) -> Result<Device, TrainError> {
        #[allow(unreachable_code)]
        match self {
            BackendKind::Flex => {
                #[cfg(feature = "flex")]
                return Ok(Device::flex());
            }
            BackendKind::Ndarray => {
                #[cfg(feature = "ndarray")]
                #[allow(deprecated)]
                return Ok(Device::ndarray());
            }
            BackendKind::Wgpu => {
                #[cfg(feature = "wgpu")]
                return self.probe(|| Device::wgpu(burn::tensor::DeviceKind::DefaultDevice));
            }
            BackendKind::Vulkan => {
                #[cfg(feature = "vulkan")]
                return self.probe(|| Device::vulkan(burn::tensor::DeviceKind::DefaultDevice));
            }
            BackendKind::Cuda => {
                #[cfg(feature = "cuda")]
                return self.probe(|| Device::cuda(0usize));
            }
        }
        Err(TrainError::BackendNotCompiled {
            name: self.name().to_string(),
            feature: self.name().to_string(),
            compiled: Self::compiled_list(),
        })
    }

    fn compiled_list() -> String {
        Self::compiled()
            .iter()
            .map(|b| b.name())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Creates a GPU device and runs one tiny operation on it. The GPU runtimes connect to the
    /// adapter lazily and **panic** when there is none (cubecl's `AdapterUnavailable`), at the
    /// first tensor operation, deep inside a run; probing here turns that into an error that names
    /// the backend, before anything is written.
    #[cfg(any(feature = "wgpu", feature = "vulkan", feature = "cuda"))]
    fn probe(
        self,
        make: impl FnOnce() -> Device + std::panic::UnwindSafe,
    ) -> Result<Device, TrainError> {
        // The default hook would print the runtime's panic and backtrace before our error.
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let result = std::panic::catch_unwind(|| {
            let device = make();
            let one = burn::tensor::Tensor::<1>::ones([1], &device).into_scalar::<f32>();
            (device, one)
        });
        std::panic::set_hook(hook);
        match result {
            Ok((device, 1.0)) => Ok(device),
            Ok((_, one)) => Err(TrainError::BackendUnavailable {
                name: self.name().to_string(),
                reason: format!("a probe that should read back 1 read back {one}"),
                compiled: Self::compiled_list(),
            }),
            Err(payload) => Err(TrainError::BackendUnavailable {
                name: self.name().to_string(),
                reason: format!(
                    "its runtime failed while starting ({}; the runtime's own message, if any, is \
                     logged above)",
                    panic_text(payload.as_ref())
                ),
                compiled: Self::compiled_list(),
            }),
        }
    }
}

/// The message of a caught panic (a `&str` or `String` payload), else a generic text.
#[cfg(any(feature = "wgpu", feature = "vulkan", feature = "cuda"))]
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "its runtime panicked while starting".into())
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BackendKind {
    type Err = TrainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|b| b.name() == s.to_ascii_lowercase())
            .ok_or_else(|| TrainError::UnknownBackend(s.to_string()))
    }
}

/// The devices a run trains on. Today the trainer uses the first one; the list is the seam for
/// burn's multi-device strategies.
#[derive(Debug, Clone)]
pub struct DeviceSet {
    devices: Vec<Device>,
}

impl DeviceSet {
    /// One device of the given backend.
    pub fn single(kind: BackendKind) -> Result<Self, TrainError> {
        Ok(Self {
            devices: vec![kind.device()?],
        })
    }

    /// Wraps an explicit, non-empty list of devices.
    pub fn new(devices: Vec<Device>) -> Result<Self, TrainError> {
        if devices.is_empty() {
            return Err(TrainError::Settings {
                what: "device settings",
                problem: "the device list is empty".into(),
            });
        }
        Ok(Self { devices })
    }

    /// The device that holds the model and optimizer state.
    pub fn main(&self) -> &Device {
        &self.devices[0]
    }

    /// All devices.
    pub fn all(&self) -> &[Device] {
        &self.devices
    }
}
