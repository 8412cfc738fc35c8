//! Data-parallel training across processes: the [`Collective`] a group of processes sums over
//! (MPI with the `mpi` feature, [`crate::MpiCollective`]), and the gradient averaging the
//! training loop does with it.
//!
//! Each rank of a group of `R` takes its rows `[r·B/R, (r+1)·B/R)` of every global batch of `B`
//! images, crafts its adversarial examples and takes its gradient of the loss mean over its rows;
//! [`average_gradients`] sums `n_r/B ·` those gradients over the ranks, which is the gradient of
//! the mean over the global batch, and every rank takes the same optimizer step with it. The
//! weights therefore stay identical on every rank.

use std::sync::Arc;

use bulwark_attack_core::rng::SplitMix64;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};

use crate::TrainError;

/// The operations data-parallel training needs from a group of processes (ranks).
///
/// The sums must leave **the same bits on every rank** (MPI implementations may sum in another
/// order on each rank; [`crate::MpiCollective`] reduces to rank 0 and broadcasts), so that the
/// ranks' weights never drift apart.
pub trait Collective: std::fmt::Debug + Send + Sync {
    /// This process's rank, from 0.
    fn rank(&self) -> usize;
    /// Number of ranks.
    fn size(&self) -> usize;
    /// Element-wise sum over the ranks, in place; every rank calls it with the same length.
    fn sum_f32(&self, values: &mut [f32]) -> Result<(), TrainError>;
    /// Element-wise sum over the ranks, in place (statistics).
    fn sum_f64(&self, values: &mut [f64]) -> Result<(), TrainError>;
    /// Waits until every rank has arrived.
    fn barrier(&self) -> Result<(), TrainError>;
    /// Ends the group's collective work once every rank has arrived (MPI: finalizes), so that
    /// the other ranks can exit while rank 0 goes on alone; [`crate::run_job`] calls it after
    /// training. Nothing may be summed afterwards.
    fn finish(&self) -> Result<(), TrainError> {
        self.barrier()
    }
}

/// A shared [`Collective`].
pub type SharedCollective = Arc<dyn Collective>;

/// The number of processes an MPI launcher (`mpirun`/`mpiexec` of Open MPI or MPICH, `srun`
/// with PMI or PMIx) started this job with, read from the variables it sets; `None` for a
/// process no launcher started.
pub fn launcher_world_size() -> Option<usize> {
    let number = |k: &str| std::env::var(k).ok()?.trim().parse::<usize>().ok();
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"]
        .into_iter()
        .find_map(number)
        .or_else(|| {
            // `srun --mpi=pmix` sets a rank but no size: the step's task count is the size.
            ["PMIX_RANK", "PMI_RANK"]
                .iter()
                .any(|k| std::env::var_os(k).is_some())
                .then(|| number("SLURM_STEP_NUM_TASKS").unwrap_or(1))
        })
}

/// Rank 0's validation numbers on every rank, so that every rank takes the same decisions
/// (best epoch, early stopping, the overfitting guard's roll-back) even where a backend's
/// reductions could differ in the last bits between processes (GPU kernels chosen by autotuning).
pub(crate) fn agree_on(values: &mut [f64], collective: &dyn Collective) -> Result<(), TrainError> {
    if collective.rank() != 0 {
        values.iter_mut().for_each(|v| *v = 0.0);
    }
    // x + 0 = x exactly (NaN stays NaN): the sum is rank 0's values.
    collective.sum_f64(values)
}

/// Rows `[lo, hi)` of a global batch of `n` that rank `rank` of `size` takes.
pub(crate) fn rank_rows(n: usize, rank: usize, size: usize) -> (usize, usize) {
    (rank * n / size, (rank + 1) * n / size)
}

/// Rank `rank`'s seed of a batch whose seed is `seed`: the batch's own on rank 0 (so that a
/// group of one is a process on its own), an independent stream of it on the others (their
/// random starts, noise, mixing and dropout draws are their own, not copies of rank 0's).
pub(crate) fn rank_seed(seed: u64, rank: usize) -> u64 {
    if rank == 0 {
        seed
    } else {
        SplitMix64::with_stream(seed, rank as u64).next_u64()
    }
}

/// Refuses batch sizes that would leave a rank without rows in some batch: every global batch
/// (the last, smaller one included) must have at least one row per rank.
pub(crate) fn check_batches(
    train_len: usize,
    batch_size: usize,
    size: usize,
) -> Result<(), TrainError> {
    let last = train_len % batch_size;
    if batch_size < size || (last != 0 && last < size) {
        return Err(TrainError::Settings {
            what: "data-parallel settings",
            problem: format!(
                "{size} ranks share every batch, but batch_size {batch_size} on {train_len} \
                 training images gives a batch of {} image(s); every batch needs at least one \
                 image per rank (change batch_size or train_limit)",
                if batch_size < size { batch_size } else { last }
            ),
        });
    }
    Ok(())
}

/// Gradients read into one buffer, in the model's parameter order (a zero block and a 0 in
/// `present` where a parameter has none on this rank).
struct Gather<'a> {
    grads: &'a mut GradientsParams,
    weight: f32,
    flat: Vec<f32>,
    present: Vec<f32>,
}

impl ModuleVisitor for Gather<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let numel = param.lazy_shape().num_elements();
        match self.grads.remove::<D>(param.id) {
            Some(g) => {
                let values = g
                    .try_into_vec_as::<f32>()
                    .expect("gradients read back as f32");
                self.flat.extend(values.iter().map(|v| v * self.weight));
                self.present.push(1.0);
            }
            None => {
                self.flat.extend(std::iter::repeat_n(0.0, numel));
                self.present.push(0.0);
            }
        }
    }
}

/// Registers the summed gradients back, for the parameters some rank had one for.
struct Scatter<'a> {
    grads: GradientsParams,
    flat: &'a [f32],
    present: &'a [f32],
    offset: usize,
    index: usize,
    device: &'a Device,
}

impl ModuleVisitor for Scatter<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let shape = param.lazy_shape();
        let numel = shape.num_elements();
        if self.present[self.index] > 0.0 {
            let values = self.flat[self.offset..self.offset + numel].to_vec();
            self.grads.register::<D>(
                param.id,
                Tensor::from_data(TensorData::new(values, shape), self.device),
            );
        }
        self.offset += numel;
        self.index += 1;
    }
}

/// The gradient of the global batch's mean loss: `weight ·` this rank's `grads` (its rows'
/// share of the batch, `n_r / B`) summed over the ranks. Every rank gets the same bits.
pub(crate) fn average_gradients<M: Module>(
    model: &M,
    mut grads: GradientsParams,
    weight: f64,
    collective: &dyn Collective,
    device: &Device,
) -> Result<GradientsParams, TrainError> {
    let mut gather = Gather {
        grads: &mut grads,
        weight: weight as f32,
        flat: Vec::new(),
        present: Vec::new(),
    };
    model.visit(&mut gather);
    let Gather {
        mut flat,
        mut present,
        ..
    } = gather;
    collective.sum_f32(&mut present)?;
    collective.sum_f32(&mut flat)?;
    let mut scatter = Scatter {
        grads: GradientsParams::new(),
        flat: &flat,
        present: &present,
        offset: 0,
        index: 0,
        device,
    };
    model.visit(&mut scatter);
    Ok(scatter.grads)
}

/// The buffers (float values that take no gradient: BatchNorm's running statistics) of one
/// model, in order; zeros (of the right length) on ranks other than 0.
struct Buffers {
    root: bool,
    flat: Vec<f32>,
}

impl ModuleVisitor for Buffers {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        if value.is_require_grad() {
            return;
        }
        if self.root {
            let values = value
                .try_into_vec_as::<f32>()
                .expect("buffers read back as f32");
            self.flat.extend(values);
        } else {
            self.flat
                .extend(std::iter::repeat_n(0.0, param.lazy_shape().num_elements()));
        }
    }
}

/// Writes the broadcast buffers back, in the same order.
struct SetBuffers<'a> {
    flat: &'a [f32],
    offset: usize,
}

impl ModuleMapper for SetBuffers<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let value = param.val();
        if value.is_require_grad() {
            return param;
        }
        let shape = value.shape();
        let numel = shape.num_elements();
        let values = self.flat[self.offset..self.offset + numel].to_vec();
        self.offset += numel;
        let tensor = Tensor::from_data(TensorData::new(values, shape), &value.device());
        Param::initialized(param.id, tensor)
    }
}

/// Rank 0's buffers (BatchNorm running statistics) on every rank, as PyTorch's
/// DistributedDataParallel broadcasts them; called at the end of every epoch, so that the ranks
/// validate, checkpoint and start the next epoch with the same statistics. During an epoch each
/// rank's statistics follow its own rows.
pub(crate) fn broadcast_buffers<M: Module>(
    model: M,
    collective: &dyn Collective,
    _device: &Device,
) -> Result<M, TrainError> {
    let mut buffers = Buffers {
        root: collective.rank() == 0,
        flat: Vec::new(),
    };
    model.visit(&mut buffers);
    let mut flat = buffers.flat;
    if flat.is_empty() {
        return Ok(model);
    }
    // x + 0 = x exactly: the sum of rank 0's values and the others' zeros is rank 0's values.
    collective.sum_f32(&mut flat)?;
    Ok(model.map(&mut SetBuffers {
        flat: &flat,
        offset: 0,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ranks_rows_cover_every_batch_once() {
        for n in [2, 7, 64, 65] {
            for size in 1..=4 {
                let mut next = 0;
                for r in 0..size {
                    let (lo, hi) = rank_rows(n, r, size);
                    assert_eq!(lo, next);
                    next = hi;
                }
                assert_eq!(next, n);
            }
        }
        assert!(check_batches(1000, 64, 2).is_ok());
        assert!(check_batches(1000, 1, 2).is_err());
        // 1001 = 15·64 + 41: fine; 961 = 15·64 + 1: the last batch has one image for two ranks.
        assert!(check_batches(1001, 64, 2).is_ok());
        let e = check_batches(961, 64, 2).unwrap_err().to_string();
        assert!(e.contains("at least one image per rank"), "{e}");
    }

    use std::sync::Mutex;

    use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
    use burn::tensor::Distribution;

    /// Rank 0 of two, recording what it sends (its peer's share is not added).
    #[derive(Debug, Default)]
    struct Recorder(Mutex<Vec<Vec<f32>>>);
    /// Rank 1 of two, adding what rank 0 sent, in order: the group's sums as rank 1 gets them.
    #[derive(Debug)]
    struct Adder(Mutex<std::collections::VecDeque<Vec<f32>>>);

    impl Collective for Recorder {
        fn rank(&self) -> usize {
            0
        }
        fn size(&self) -> usize {
            2
        }
        fn sum_f32(&self, values: &mut [f32]) -> Result<(), TrainError> {
            self.0.lock().unwrap().push(values.to_vec());
            Ok(())
        }
        fn sum_f64(&self, _: &mut [f64]) -> Result<(), TrainError> {
            Ok(())
        }
        fn barrier(&self) -> Result<(), TrainError> {
            Ok(())
        }
    }

    impl Collective for Adder {
        fn rank(&self) -> usize {
            1
        }
        fn size(&self) -> usize {
            2
        }
        fn sum_f32(&self, values: &mut [f32]) -> Result<(), TrainError> {
            let other = self
                .0
                .lock()
                .unwrap()
                .pop_front()
                .expect("rank 0 sent as much");
            assert_eq!(other.len(), values.len());
            values.iter_mut().zip(other).for_each(|(v, o)| *v += o);
            Ok(())
        }
        fn sum_f64(&self, _: &mut [f64]) -> Result<(), TrainError> {
            Ok(())
        }
        fn barrier(&self) -> Result<(), TrainError> {
            Ok(())
        }
    }

    #[derive(burn::module::Module, Debug)]
    struct Net {
        fc: Linear,
        bn: BatchNorm,
    }

    impl Net {
        fn new(device: &Device) -> Self {
            Self {
                fc: LinearConfig::new(6, 3).init(device),
                bn: BatchNormConfig::new(3).init(device),
            }
        }
        fn loss(&self, x: Tensor<2>) -> Tensor<1> {
            let h = self.bn.forward(self.fc.forward(x));
            (h.clone() * h).mean()
        }
    }

    fn grads_of(net: &Net, x: Tensor<2>) -> GradientsParams {
        GradientsParams::from_grads(net.loss(x).backward(), net)
    }

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.try_into_vec_as::<f32>().unwrap()
    }

    /// Two ranks' averaged gradients are the gradient of the mean over the whole batch, and the
    /// running statistics rank 1 ends with are rank 0's.
    #[test]
    fn averaged_gradients_are_the_batch_gradient_and_buffers_are_rank_0s() {
        let device = Device::flex().autodiff();
        let net = bulwark_models::init_seeded_with(&device, 7, Net::new);
        let x: Tensor<2> = Tensor::random([8, 6], Distribution::Normal(0.0, 1.0), &device);
        // A per-sample mean loss (BatchNorm's batch statistics would couple the rows).
        let loss = |rows: std::ops::Range<usize>| {
            let h = net.fc.forward(x.clone().slice([rows, 0..6]));
            (h.clone() * h).mean()
        };
        let whole = GradientsParams::from_grads(loss(0..8).backward(), &net);
        let g0 = GradientsParams::from_grads(loss(0..3).backward(), &net);
        let g1 = GradientsParams::from_grads(loss(3..8).backward(), &net);
        let inner = device.clone().inner();
        let rank0 = Recorder::default();
        average_gradients(&net, g0, 3.0 / 8.0, &rank0, &inner).unwrap();
        let rank1 = Adder(Mutex::new(rank0.0.into_inner().unwrap().into()));
        let mut averaged = average_gradients(&net, g1, 5.0 / 8.0, &rank1, &inner).unwrap();
        let mut whole = whole;
        let id = net.fc.weight.id;
        let (a, b) = (
            values(averaged.remove::<2>(id).unwrap()),
            values(whole.remove::<2>(id).unwrap()),
        );
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() <= 1e-6 * (1.0 + y.abs()), "{x} vs {y}");
        }
        // The BatchNorm parameters had no gradient on either rank: none is registered.
        assert!(averaged.remove::<1>(net.bn.gamma.id).is_none());

        // Running statistics: each rank's from its own rows, then rank 0's on both.
        let a_net = net.clone();
        drop(grads_of(&a_net, x.clone().slice([0..4, 0..6])));
        let b_net = bulwark_models::init_seeded_with(&device, 7, Net::new);
        drop(grads_of(&b_net, x.clone().slice([4..8, 0..6]) * 3.0));
        let mean = |n: &Net| values(n.bn.running_mean.value_sync());
        assert_ne!(mean(&a_net), mean(&b_net));
        let rank0 = Recorder::default();
        let a_after = broadcast_buffers(a_net.clone(), &rank0, &inner).unwrap();
        let rank1 = Adder(Mutex::new(rank0.0.into_inner().unwrap().into()));
        let b_after = broadcast_buffers(b_net.clone(), &rank1, &inner).unwrap();
        assert_eq!(mean(&b_after), mean(&a_net));
        assert_eq!(mean(&a_after), mean(&a_net));
        assert_eq!(
            values(b_after.fc.weight.val()),
            values(b_net.fc.weight.val()),
            "trainable weights are not buffers"
        );
    }
}
