//! Run-time choice among the backends compiled into this build.

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;

use crate::TrainError;
use crate::collective::{Collective, SharedCollective};

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

    /// Whether the backend computes on the CPU (flex, ndarray).
    pub fn is_cpu(self) -> bool {
        matches!(self, BackendKind::Flex | BackendKind::Ndarray)
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
        self.device_of(None)
    }

    /// The `index`-th discrete GPU of a GPU backend (in the order the driver lists them), or
    /// the CPU backends' one device. Data-parallel ranks on one node take their local rank.
    pub fn device_at(self, index: usize) -> Result<Device, TrainError> {
        self.device_of(Some(index))
    }

    /// `index`: a discrete GPU, or `None`: the default device.
    fn device_of(self, index: Option<usize>) -> Result<Device, TrainError> {
        // Only the GPU backends have more than one device.
        let _ = index;
        #[cfg(any(feature = "wgpu", feature = "vulkan"))]
        let kind = match index {
            Some(i) => burn::tensor::DeviceKind::DiscreteGpu(i),
            None => burn::tensor::DeviceKind::DefaultDevice,
        };
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
                return self.probe(|| Device::wgpu(kind));
            }
            BackendKind::Vulkan => {
                #[cfg(feature = "vulkan")]
                return self.probe(|| Device::vulkan(kind));
            }
            BackendKind::Cuda => {
                #[cfg(feature = "cuda")]
                return self.probe(|| Device::cuda(index.unwrap_or(0)));
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
        // The panic hook would print the runtime's panic and backtrace before our error; it is
        // silenced for this thread alone while it probes (see `quiet_while_probing`).
        let result = quiet_while_probing(|| {
            std::panic::catch_unwind(|| {
                let device = make();
                let one = burn::tensor::Tensor::<1>::ones([1], &device).into_scalar::<f32>();
                (device, one)
            })
        });
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

#[cfg(any(feature = "wgpu", feature = "vulkan", feature = "cuda"))]
thread_local! {
    /// Whether this thread is probing a GPU runtime, whose panics [`quiet_while_probing`] keeps
    /// from the panic hook.
    static PROBING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with the panic hook silent on this thread only. The hook is process-wide: swapping
/// it for a silent one during the probe, as this once did, also swallowed the messages of panics
/// on every other thread meanwhile (a failing test's assertion, a user's worker thread). Instead
/// a wrapper around the previous hook is installed once, which stays quiet only on a thread that
/// is probing and passes every other panic on.
#[cfg(any(feature = "wgpu", feature = "vulkan", feature = "cuda"))]
fn quiet_while_probing<T>(f: impl FnOnce() -> T) -> T {
    static WRAPPED: std::sync::Once = std::sync::Once::new();
    WRAPPED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !PROBING.with(std::cell::Cell::get) {
                previous(info);
            }
        }));
    });
    PROBING.with(|p| p.set(true));
    let result = f();
    PROBING.with(|p| p.set(false));
    result
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

/// The devices a run trains on, and the process group it shares its batches with. The trainer
/// uses the first device; with a [`Collective`] of several ranks ([`DeviceSet::with_collective`])
/// the run is data-parallel across processes (see [`crate::collective`]).
#[derive(Debug, Clone)]
pub struct DeviceSet {
    devices: Vec<Device>,
    collective: Option<SharedCollective>,
}

impl DeviceSet {
    /// One device of the given backend.
    pub fn single(kind: BackendKind) -> Result<Self, TrainError> {
        Ok(Self {
            devices: vec![kind.device()?],
            collective: None,
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
        Ok(Self {
            devices,
            collective: None,
        })
    }

    /// Trains data-parallel with the other ranks of `collective`: each takes its part of every
    /// batch, the gradients are averaged, rank 0 alone writes the run directory.
    pub fn with_collective(mut self, collective: SharedCollective) -> Self {
        self.collective = Some(collective);
        self
    }

    /// The process group, when it has more than one rank.
    pub fn collective(&self) -> Option<&dyn Collective> {
        self.collective.as_deref().filter(|c| c.size() > 1)
    }

    /// This process's rank (0 without a process group).
    pub fn rank(&self) -> usize {
        self.collective().map_or(0, |c| c.rank())
    }

    /// Whether this process writes the run's files: rank 0, or a process on its own.
    pub fn writes(&self) -> bool {
        self.rank() == 0
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

#[cfg(all(test, any(feature = "wgpu", feature = "vulkan", feature = "cuda")))]
mod tests {
    use std::sync::Mutex;

    use super::quiet_while_probing;

    /// While one thread probes, a panic on another thread still reaches the panic hook (a failing
    /// test's message was once swallowed by a probe running beside it), and the probe's own does
    /// not. The only test of this binary that touches the hook, so its recorder is the hook the
    /// probe's wrapper passes panics on to.
    #[test]
    fn a_probe_silences_its_own_thread_and_no_other() {
        static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());
        std::panic::set_hook(Box::new(|info| {
            let text = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .unwrap_or_default();
            SEEN.lock().unwrap().push(text);
        }));
        quiet_while_probing(|| {
            assert!(std::panic::catch_unwind(|| panic!("the probe's own")).is_err());
            let other = std::thread::spawn(|| panic!("another thread's"));
            assert!(other.join().is_err());
        });
        assert!(std::panic::catch_unwind(|| panic!("after the probe")).is_err());
        let _ = std::panic::take_hook();
        let seen = SEEN.lock().unwrap().clone();
        assert_eq!(seen, ["another thread's", "after the probe"], "{seen:?}");
    }
}
