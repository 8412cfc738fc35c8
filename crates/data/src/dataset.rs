//! [`ImageDataset`]: an in-memory image classification set.

use crate::error::{DataError, Result};
use bulwark_attack_core::rng::SplitMix64;

/// In-memory image classification set; pixels `u8`, NCHW order.
///
/// Image `i` occupies `images[i * C * H * W .. (i + 1) * C * H * W]`, channel planes one after
/// the other, each plane row-major. `labels[i]` is its class, in `0..num_classes`.
#[derive(Clone, Debug)]
pub struct ImageDataset {
    /// All pixels, image after image, each image `C * H * W` bytes in CHW order.
    pub images: Vec<u8>,
    /// One class label per image.
    pub labels: Vec<u8>,
    /// Channels per image (1 for MNIST, 3 for CIFAR-10).
    pub channels: usize,
    /// Image height in pixels.
    pub height: usize,
    /// Image width in pixels.
    pub width: usize,
    /// Number of classes; every label is below it.
    pub num_classes: usize,
}

impl ImageDataset {
    /// Builds a dataset, checking that the buffer sizes and labels are consistent.
    pub fn new(
        images: Vec<u8>,
        labels: Vec<u8>,
        channels: usize,
        height: usize,
        width: usize,
        num_classes: usize,
    ) -> Result<Self> {
        let per_image = channels * height * width;
        if per_image == 0 {
            return Err(DataError::InvalidArgument(format!(
                "image shape {channels}x{height}x{width} has no pixels"
            )));
        }
        if images.len() != labels.len() * per_image {
            return Err(DataError::InvalidArgument(format!(
                "{} labels need {} pixel bytes of {channels}x{height}x{width} images, found {}",
                labels.len(),
                labels.len() * per_image,
                images.len()
            )));
        }
        if let Some(pos) = labels.iter().position(|&l| usize::from(l) >= num_classes) {
            return Err(DataError::InvalidArgument(format!(
                "label {} of item {pos} is not below num_classes {num_classes}",
                labels[pos]
            )));
        }
        Ok(Self {
            images,
            labels,
            channels,
            height,
            width,
            num_classes,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Bytes per image: `channels * height * width`.
    pub fn image_size(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// The pixels of image `i` (CHW order).
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn image(&self, i: usize) -> &[u8] {
        let s = self.image_size();
        &self.images[i * s..(i + 1) * s]
    }

    /// The images at `indices`, in that order (indices may repeat).
    ///
    /// # Panics
    /// If an index is out of range.
    pub fn subset(&self, indices: &[usize]) -> ImageDataset {
        let mut images = Vec::with_capacity(indices.len() * self.image_size());
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            images.extend_from_slice(self.image(i));
            labels.push(self.labels[i]);
        }
        self.with_data(images, labels)
    }

    /// The first `n` images (all of them when `n >= len`).
    pub fn take(&self, n: usize) -> ImageDataset {
        let n = n.min(self.len());
        self.with_data(
            self.images[..n * self.image_size()].to_vec(),
            self.labels[..n].to_vec(),
        )
    }

    /// Seeded train/validation split: shuffles indices with `seed`, returns `(train, valid)`
    /// with `n_valid` images in `valid`.
    ///
    /// The first `n_valid` positions of a [`SplitMix64`] permutation go to `valid`, the rest to
    /// `train`; each part keeps the original order of its images (epoch order is shuffled
    /// separately by [`crate::epoch_batches`]). Fails when `n_valid > len`.
    pub fn split(&self, n_valid: usize, seed: u64) -> Result<(ImageDataset, ImageDataset)> {
        if n_valid > self.len() {
            return Err(DataError::InvalidArgument(format!(
                "validation size {n_valid} exceeds the dataset size {}",
                self.len()
            )));
        }
        let perm = SplitMix64::new(seed).permutation(self.len());
        let mut valid_idx = perm[..n_valid].to_vec();
        let mut train_idx = perm[n_valid..].to_vec();
        valid_idx.sort_unstable();
        train_idx.sort_unstable();
        Ok((self.subset(&train_idx), self.subset(&valid_idx)))
    }

    /// Number of images per class; the vector has `num_classes` entries (more if some label
    /// is out of range, so nothing is silently dropped).
    pub fn label_counts(&self) -> Vec<usize> {
        let needed = self.labels.iter().map(|&l| usize::from(l) + 1).max();
        let mut counts = vec![0; needed.unwrap_or(0).max(self.num_classes)];
        for &l in &self.labels {
            counts[usize::from(l)] += 1;
        }
        counts
    }

    /// Appends `other`, which must have the same image shape and class count.
    pub fn concat(mut self, other: &ImageDataset) -> Result<ImageDataset> {
        let same = (self.channels, self.height, self.width, self.num_classes)
            == (other.channels, other.height, other.width, other.num_classes);
        if !same {
            return Err(DataError::InvalidArgument(format!(
                "cannot concatenate {}x{}x{} images ({} classes) with {}x{}x{} images ({} classes)",
                self.channels,
                self.height,
                self.width,
                self.num_classes,
                other.channels,
                other.height,
                other.width,
                other.num_classes
            )));
        }
        self.images.extend_from_slice(&other.images);
        self.labels.extend_from_slice(&other.labels);
        Ok(self)
    }

    /// A dataset with this one's shape and the given contents.
    fn with_data(&self, images: Vec<u8>, labels: Vec<u8>) -> ImageDataset {
        ImageDataset {
            images,
            labels,
            channels: self.channels,
            height: self.height,
            width: self.width,
            num_classes: self.num_classes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ten 1x2x2 images; image i has all pixels equal to i and label i % 3.
    fn tiny() -> ImageDataset {
        let images = (0..10u8).flat_map(|i| [i; 4]).collect();
        let labels = (0..10u8).map(|i| i % 3).collect();
        ImageDataset::new(images, labels, 1, 2, 2, 3).unwrap()
    }

    #[test]
    fn new_validates() {
        assert!(ImageDataset::new(vec![0; 7], vec![0, 0], 1, 2, 2, 3).is_err());
        let e = ImageDataset::new(vec![0; 8], vec![0, 3], 1, 2, 2, 3).unwrap_err();
        assert!(e.to_string().contains("label 3 of item 1"), "{e}");
        assert!(ImageDataset::new(vec![], vec![], 0, 2, 2, 3).is_err());
    }

    #[test]
    fn subset_take_counts() {
        let d = tiny();
        assert_eq!(d.len(), 10);
        assert!(!d.is_empty());
        let s = d.subset(&[9, 0, 9]);
        assert_eq!(s.labels, vec![0, 0, 0]);
        assert_eq!(s.images, [[9u8; 4], [0; 4], [9; 4]].concat());
        let t = d.take(3);
        assert_eq!(t.labels, vec![0, 1, 2]);
        assert_eq!(t.image(2), &[2, 2, 2, 2]);
        assert_eq!(d.take(100).len(), 10);
        assert!(d.take(0).is_empty());
        assert_eq!(d.label_counts(), vec![4, 3, 3]);
        assert_eq!(d.take(0).label_counts(), vec![0, 0, 0]);
    }

    #[test]
    fn split_is_seeded_disjoint_and_complete() {
        let d = tiny();
        let (train, valid) = d.split(3, 5).unwrap();
        assert_eq!((train.len(), valid.len()), (7, 3));
        // Every image has a distinct pixel value, so pixel values identify the original index.
        let mut ids: Vec<u8> = train.images.iter().step_by(4).copied().collect();
        let valid_ids: Vec<u8> = valid.images.iter().step_by(4).copied().collect();
        assert!(valid_ids.iter().all(|v| !ids.contains(v)));
        ids.extend(&valid_ids);
        ids.sort_unstable();
        assert_eq!(ids, (0..10).collect::<Vec<u8>>());
        for (img, &label) in train.images.chunks(4).zip(&train.labels) {
            assert_eq!(img[0] % 3, label, "labels travel with their images");
        }
        let (_, again) = d.split(3, 5).unwrap();
        assert_eq!(again.images, valid.images, "same seed, same split");
        let differs = (0..20).any(|s| d.split(3, s).unwrap().1.images != valid.images);
        assert!(differs, "other seeds give other splits");
        assert!(d.split(11, 0).is_err());
        assert_eq!(d.split(10, 0).unwrap().0.len(), 0);
    }

    #[test]
    fn concat_checks_shapes() {
        let d = tiny();
        let both = d.clone().concat(&d).unwrap();
        assert_eq!(both.len(), 20);
        let mut other = d.clone();
        other.channels = 2;
        other.height = 1;
        assert!(d.concat(&other).is_err());
    }
}
