//! The MPI [`Collective`] (Cargo feature `mpi`): the rsmpi bindings over the system's MPI
//! library (Open MPI; MPICH should work too), for `bulwark train` under `mpirun` or `srun`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

use crate::TrainError;
use crate::collective::{Collective, launcher_world_size};

/// The processes of the MPI job this process was launched in.
///
/// Built by [`MpiCollective::from_launcher`]; MPI is finalized by [`Collective::finish`] or when
/// it is dropped. A panic in any
/// rank aborts the whole job (`MPI_Abort`), so that no rank waits forever for a dead peer.
pub struct MpiCollective {
    // MPI is initialized with MPI_THREAD_SERIALIZED and every call goes through this mutex, so
    // calls from any thread never overlap.
    // `None` once finished.
    world: Mutex<Option<(SimpleCommunicator, Universe)>>,
    rank: usize,
    size: usize,
    local_rank: usize,
}

// SAFETY: the communicator is only used under the mutex, and MPI was initialized with
// MPI_THREAD_SERIALIZED (checked in `from_launcher`), which allows calls from any thread as long
// as they do not overlap. `Universe` holds no thread-bound state.
unsafe impl Send for MpiCollective {}
// SAFETY: as above.
unsafe impl Sync for MpiCollective {}

impl std::fmt::Debug for MpiCollective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "MpiCollective {{ rank: {}, size: {}, local_rank: {} }}",
            self.rank, self.size, self.local_rank
        )
    }
}

fn finished() -> TrainError {
    TrainError::Settings {
        what: "MPI",
        problem: "the process group has finished (MPI is finalized)".into(),
    }
}

/// Set once MPI is finalized: a panic afterwards must not call MPI_Abort.
static FINALIZED: AtomicBool = AtomicBool::new(false);

/// Elements per MPI call: counts are C ints.
const PIECE: usize = 1 << 28;

impl MpiCollective {
    /// Joins the MPI job when an MPI launcher (`mpirun`, `mpiexec`, `srun`) started this
    /// process; `None` otherwise (a plain process is not made an MPI singleton).
    pub fn from_launcher() -> Result<Option<Self>, TrainError> {
        if launcher_world_size().is_none() {
            return Ok(None);
        }
        let fail = |problem: String| TrainError::Settings {
            what: "MPI",
            problem,
        };
        let (universe, threading) = mpi::initialize_with_threading(mpi::Threading::Serialized)
            .ok_or_else(|| fail("MPI was already initialized in this process".into()))?;
        if threading < mpi::Threading::Serialized {
            return Err(fail(format!(
                "the MPI library offers thread level {threading:?}; Bulwark needs Serialized"
            )));
        }
        // A panicking rank would otherwise wait in MPI_Finalize for peers that wait for it.
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            default_hook(info);
            if !FINALIZED.load(Ordering::SeqCst) {
                // SAFETY: MPI is initialized and not finalized; MPI_Abort ends every process of
                // the job.
                unsafe {
                    mpi::ffi::MPI_Abort(mpi::ffi::RSMPI_COMM_WORLD, 101);
                }
            }
        }));
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        // The rank among the processes that share this node's memory: which GPU to take.
        let local_rank = world.split_shared(world.rank()).rank() as usize;
        Ok(Some(Self {
            world: Mutex::new(Some((world, universe))),
            rank,
            size,
            local_rank,
        }))
    }

    fn lock(
        &self,
    ) -> Result<std::sync::MutexGuard<'_, Option<(SimpleCommunicator, Universe)>>, TrainError> {
        self.world.lock().map_err(|_| TrainError::Settings {
            what: "MPI",
            problem: "the communicator's lock is poisoned (a thread panicked in MPI)".into(),
        })
    }

    /// This process's rank among those on its node (from 0): the GPU it uses.
    pub fn local_rank(&self) -> usize {
        self.local_rank
    }

    /// Sum over the ranks into rank 0, then rank 0's result to everyone: the same bits on every
    /// rank whatever order the library sums in.
    fn sum<T: Equivalence + Copy + Default>(&self, values: &mut [T]) -> Result<(), TrainError> {
        let guard = self.lock()?;
        let (world, _) = guard.as_ref().ok_or_else(finished)?;
        let root = world.process_at_rank(0);
        for piece in values.chunks_mut(PIECE) {
            if self.rank == 0 {
                let mut out = vec![T::default(); piece.len()];
                root.reduce_into_root(&piece[..], &mut out[..], SystemOperation::sum());
                piece.copy_from_slice(&out);
            } else {
                root.reduce_into(&piece[..], SystemOperation::sum());
            }
            root.broadcast_into(piece);
        }
        Ok(())
    }
}

/// A rank that ends before the group finished (an error on this rank alone: a run directory in
/// use, a disk full, a diverged loss) would leave the others waiting for it in a sum forever, and
/// itself in `MPI_Finalize`: it aborts the job instead, which ends every rank with a non-zero
/// exit. Its error has been printed by then (see `bulwark train`).
impl Drop for MpiCollective {
    fn drop(&mut self) {
        let unfinished = self.world.get_mut().map_or(true, |w| w.is_some());
        if unfinished && self.size > 1 {
            eprintln!(
                "rank {}: ending the MPI job, since this rank stopped before training finished",
                self.rank
            );
            // SAFETY: MPI is initialized and not finalized (`finish` did not run).
            unsafe {
                mpi::ffi::MPI_Abort(mpi::ffi::RSMPI_COMM_WORLD, 1);
            }
        }
    }
}

impl Collective for MpiCollective {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn sum_f32(&self, values: &mut [f32]) -> Result<(), TrainError> {
        self.sum(values)
    }

    fn sum_f64(&self, values: &mut [f64]) -> Result<(), TrainError> {
        self.sum(values)
    }

    fn barrier(&self) -> Result<(), TrainError> {
        let guard = self.lock()?;
        guard.as_ref().ok_or_else(finished)?.0.barrier();
        Ok(())
    }

    fn finish(&self) -> Result<(), TrainError> {
        let mut guard = self.lock()?;
        if let Some((world, universe)) = guard.take() {
            world.barrier();
            drop(world);
            FINALIZED.store(true, Ordering::SeqCst);
            // MPI_Finalize: every rank has arrived, so none waits here.
            drop(universe);
        }
        Ok(())
    }
}
