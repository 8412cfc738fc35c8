//! Epoch orders and conversion of image batches to tensors.

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::dataset::ImageDataset;
use bulwark_attack_core::rng::SplitMix64;

/// Batches of indices for one epoch: shuffled deterministically from `(seed, epoch)` when
/// `shuffle` is true, in order `0..n` otherwise; the last partial batch is kept
/// (drop_last = false).
///
/// Each index in `0..n` appears exactly once. The order depends only on `(n, seed, epoch)`
/// (not on `batch_size`), so the sequence of examples is reproducible forever.
///
/// # Panics
/// If `batch_size` is zero.
pub fn epoch_batches(
    n: usize,
    batch_size: usize,
    shuffle: bool,
    seed: u64,
    epoch: usize,
) -> Vec<Vec<usize>> {
    assert!(batch_size > 0, "epoch_batches: batch_size must be positive");
    let order = if shuffle {
        SplitMix64::with_stream(seed, epoch as u64).permutation(n)
    } else {
        (0..n).collect()
    };
    order.chunks(batch_size).map(<[usize]>::to_vec).collect()
}

impl ImageDataset {
    /// Batch as tensors: images `f32` in `[0, 1]` shaped `[B, C, H, W]` (pixel / 255), labels
    /// `Int` `[B]`.
    ///
    /// # Panics
    /// If an index is out of range.
    pub fn batch(&self, indices: &[usize], device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
        let mut pixels = Vec::with_capacity(indices.len() * self.image_size());
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            pixels.extend(self.image(i).iter().map(|&p| f32::from(p) / 255.0));
            labels.push(i64::from(self.labels[i]));
        }
        let shape = [indices.len(), self.channels, self.height, self.width];
        let images = Tensor::<4>::from_data(TensorData::new(pixels, shape), device);
        let labels = Tensor::<1, Int>::from_data(TensorData::new(labels, [indices.len()]), device);
        (images, labels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(batches: &[Vec<usize>]) -> Vec<usize> {
        let mut all: Vec<usize> = batches.concat();
        all.sort_unstable();
        all
    }

    #[test]
    fn sequential_batches_keep_the_tail() {
        let b = epoch_batches(10, 4, false, 0, 0);
        assert_eq!(b, vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9]]);
        assert!(epoch_batches(0, 4, true, 1, 0).is_empty());
    }

    #[test]
    fn shuffled_batches_are_deterministic_and_complete() {
        let a = epoch_batches(103, 10, true, 7, 3);
        assert_eq!(a.len(), 11);
        assert_eq!(a.last().map(Vec::len), Some(3));
        assert_eq!(sorted(&a), (0..103).collect::<Vec<_>>());
        assert_eq!(a, epoch_batches(103, 10, true, 7, 3), "same (seed, epoch)");
        assert_ne!(a, epoch_batches(103, 10, true, 7, 4), "another epoch");
        assert_ne!(a, epoch_batches(103, 10, true, 8, 3), "another seed");
        assert_ne!(
            a.concat(),
            (0..103).collect::<Vec<_>>(),
            "actually shuffled"
        );
        // The order does not depend on the batch size.
        assert_eq!(epoch_batches(103, 7, true, 7, 3).concat(), a.concat());
    }

    #[test]
    fn batch_tensor_values_and_shape() {
        // Two 2x1x3 images with distinct pixels.
        let images: Vec<u8> = vec![0, 51, 102, 153, 204, 255, 1, 2, 3, 4, 5, 6];
        let d = ImageDataset::new(images, vec![4, 9], 2, 1, 3, 10).unwrap();
        let device = Device::flex();
        let (x, y) = d.batch(&[1, 0, 1], &device);
        assert_eq!(x.dims(), [3, 2, 1, 3]);
        assert_eq!(y.dims(), [3]);
        let xv = x.into_data().try_into_vec_as::<f32>().unwrap();
        let expected: Vec<f32> = [&d.images[6..], &d.images[..6], &d.images[6..]]
            .concat()
            .iter()
            .map(|&p| p as f32 / 255.0)
            .collect();
        assert_eq!(xv.len(), expected.len());
        for (a, b) in xv.iter().zip(&expected) {
            assert!((a - b).abs() < 1e-7, "{a} vs {b}");
        }
        assert_eq!(xv[6 + 5], 1.0, "pixel 255 maps to exactly 1");
        let yv = y.into_data().try_into_vec_as::<i64>().unwrap();
        assert_eq!(yv, vec![9, 4, 9]);
    }
}
