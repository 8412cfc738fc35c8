//! Training augmentations: random crop with zero padding and random horizontal flip, the
//! standard CIFAR recipe (torchvision's `RandomCrop(32, padding=4)` and `RandomHorizontalFlip()`,
//! used by Madry et al., Rice et al. and RobustBench's models).

use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::dataset::ImageDataset;
use bulwark_attack_core::rng::SplitMix64;

/// Which augmentations a training batch gets; the default is none.
///
/// Each image's draws come from `(seed, position in the batch)` through [`SplitMix64`], so a
/// batch is augmented the same way on every run and after a resume.
///
/// ```
/// use bulwark_data::{Augment, ImageDataset};
/// // One 1x2x3 image: rows [1 2 3] and [4 5 6].
/// let data = ImageDataset::new(vec![1, 2, 3, 4, 5, 6], vec![0], 1, 2, 3, 1).unwrap();
/// let flip = Augment { crop_padding: 0, horizontal_flip: true };
/// let seen: std::collections::BTreeSet<Vec<u8>> =
///     (0..16).map(|seed| flip.augment_image(&data, 0, seed)).collect();
/// // Over a few seeds, both the image and its mirror image come out, nothing else.
/// let want = [vec![1, 2, 3, 4, 5, 6], vec![3, 2, 1, 6, 5, 4]].into_iter().collect();
/// assert_eq!(seen, want);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Augment {
    /// Pad every side with this many zero pixels, then crop a window of the original size at a
    /// uniformly drawn offset (0: no cropping; 4 for CIFAR-10).
    #[serde(default)]
    pub crop_padding: usize,
    /// Mirror the image left to right with probability 1/2.
    #[serde(default)]
    pub horizontal_flip: bool,
}

impl Augment {
    /// No augmentation.
    pub fn none() -> Self {
        Self::default()
    }

    /// Rice et al.'s CIFAR-10 recipe: 4-pixel padded crops and horizontal flips.
    pub fn cifar() -> Self {
        Self {
            crop_padding: 4,
            horizontal_flip: true,
        }
    }

    /// Whether this changes nothing.
    pub fn is_none(&self) -> bool {
        self.crop_padding == 0 && !self.horizontal_flip
    }

    /// Image `i` of `data` augmented with the draws of `seed` (CHW bytes).
    pub fn augment_image(&self, data: &ImageDataset, i: usize, seed: u64) -> Vec<u8> {
        let (c, h, w) = (data.channels, data.height, data.width);
        let src = data.image(i);
        if self.is_none() {
            return src.to_vec();
        }
        let mut rng = SplitMix64::new(seed);
        let p = self.crop_padding;
        // The window's top-left corner in the padded image, in 0..=2p.
        let (dy, dx) = if p > 0 {
            let span = (2 * p + 1) as u64;
            (rng.below(span) as usize, rng.below(span) as usize)
        } else {
            (0, 0)
        };
        let flip = self.horizontal_flip && rng.uniform() < 0.5;
        let mut out = vec![0u8; c * h * w];
        for ch in 0..c {
            let plane = &src[ch * h * w..(ch + 1) * h * w];
            for y in 0..h {
                // Row y of the window is row y + dy - p of the original (zero outside).
                let Some(sy) = (y + dy).checked_sub(p).filter(|&sy| sy < h) else {
                    continue;
                };
                for x in 0..w {
                    let xw = if flip { w - 1 - x } else { x };
                    if let Some(sx) = (xw + dx).checked_sub(p).filter(|&sx| sx < w) {
                        out[ch * h * w + y * w + x] = plane[sy * w + sx];
                    }
                }
            }
        }
        out
    }

    /// Like [`ImageDataset::batch`], each image augmented with the draws of
    /// `(seed, position in the batch)`.
    ///
    /// # Panics
    /// If an index is out of range.
    pub fn batch(
        &self,
        data: &ImageDataset,
        indices: &[usize],
        seed: u64,
        device: &Device,
    ) -> (Tensor<4>, Tensor<1, Int>) {
        if self.is_none() {
            return data.batch(indices, device);
        }
        let mut pixels = Vec::with_capacity(indices.len() * data.image_size());
        let mut labels = Vec::with_capacity(indices.len());
        for (k, &i) in indices.iter().enumerate() {
            let draws = SplitMix64::with_stream(seed, k as u64).next_u64();
            let img = self.augment_image(data, i, draws);
            pixels.extend(img.iter().map(|&p| f32::from(p) / 255.0));
            labels.push(i64::from(data.labels[i]));
        }
        let shape = [indices.len(), data.channels, data.height, data.width];
        let images = Tensor::<4>::from_data(TensorData::new(pixels, shape), device);
        let labels = Tensor::<1, Int>::from_data(TensorData::new(labels, [indices.len()]), device);
        (images, labels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One 2x4x4 image whose pixel (c, y, x) is 100c + 10y + x + 1 (no zeros).
    fn image() -> ImageDataset {
        let px = (0..2)
            .flat_map(|c| {
                (0..4).flat_map(move |y| (0..4).map(move |x| (100 * c + 10 * y + x + 1) as u8))
            })
            .collect();
        ImageDataset::new(px, vec![0], 2, 4, 4, 1).unwrap()
    }

    #[test]
    fn crops_are_shifted_windows_of_the_zero_padded_image() {
        let d = image();
        let crop = Augment {
            crop_padding: 2,
            horizontal_flip: false,
        };
        let mut shifts = std::collections::BTreeSet::new();
        for seed in 0..200 {
            let out = crop.augment_image(&d, 0, seed);
            // Recover the shift from a pixel that survived, then check every pixel against it.
            let (k, &v) = out.iter().enumerate().find(|(_, v)| **v != 0).unwrap();
            let (y, x) = ((k % 16) / 4, k % 4);
            let v = usize::from(v) - 1 - 100 * (k / 16);
            let (sy, sx) = (v / 10, v % 10);
            let (oy, ox) = (sy as isize - y as isize, sx as isize - x as isize);
            assert!(oy.abs() <= 2 && ox.abs() <= 2, "shift ({oy}, {ox})");
            shifts.insert((oy, ox));
            for c in 0..2 {
                for y in 0..4isize {
                    for x in 0..4isize {
                        let (yy, xx) = (y + oy, x + ox);
                        let want = if (0..4).contains(&yy) && (0..4).contains(&xx) {
                            (100 * c + 10 * yy + xx + 1) as u8
                        } else {
                            0
                        };
                        assert_eq!(out[(c * 16 + y * 4 + x) as usize], want);
                    }
                }
            }
        }
        // Every one of the 25 shifts that keep a pixel in view occurs over 200 draws.
        assert_eq!(shifts.len(), 25);
    }

    #[test]
    fn flips_mirror_every_row_about_half_the_time() {
        let d = image();
        let flip = Augment {
            crop_padding: 0,
            horizontal_flip: true,
        };
        let flipped = (0..1000)
            .filter(|&s| {
                let out = flip.augment_image(&d, 0, s);
                if out == d.image(0) {
                    return false;
                }
                for (k, &v) in out.iter().enumerate() {
                    let (c, y, x) = (k / 16, (k % 16) / 4, k % 4);
                    assert_eq!(v, d.image(0)[c * 16 + y * 4 + (3 - x)]);
                }
                true
            })
            .count();
        assert!((430..570).contains(&flipped), "{flipped} of 1000 flipped");
    }

    #[test]
    fn batches_are_seeded_and_the_identity_is_the_plain_batch() {
        let d = image().concat(&image()).unwrap();
        let device = Device::flex();
        let aug = Augment::cifar();
        let a = aug.batch(&d, &[0, 1], 9, &device).0.into_data();
        assert_eq!(a, aug.batch(&d, &[0, 1], 9, &device).0.into_data());
        assert_ne!(a, aug.batch(&d, &[0, 1], 10, &device).0.into_data());
        assert_eq!(
            Augment::none().batch(&d, &[1, 0], 3, &device).0.into_data(),
            d.batch(&[1, 0], &device).0.into_data()
        );
    }
}
