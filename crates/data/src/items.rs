//! [`ImageDataset`] and burn's [`Dataset`] trait: an image dataset is a burn dataset of
//! [`ImageItem`]s, and any burn dataset of them collects into an [`ImageDataset`].

use burn_dataset::{Dataset, DatasetError};

use crate::dataset::ImageDataset;
use crate::error::{DataError, Result};

/// One labelled image: `C * H * W` bytes in CHW order, and its class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageItem {
    /// The pixels, channel planes one after the other, each row-major.
    pub image: Vec<u8>,
    /// The class, below the dataset's `num_classes`.
    pub label: usize,
}

/// An index past the end, as burn's datasets report it.
#[derive(Debug, thiserror::Error)]
#[error("index {index} is out of range for a dataset of {len} images")]
struct OutOfRange {
    index: usize,
    len: usize,
}

impl Dataset<ImageItem> for ImageDataset {
    fn get(&self, index: usize) -> std::result::Result<ImageItem, DatasetError> {
        if index >= self.len() {
            return Err(DatasetError::new(OutOfRange {
                index,
                len: self.len(),
            }));
        }
        Ok(ImageItem {
            image: self.image(index).to_vec(),
            label: usize::from(self.labels[index]),
        })
    }

    fn len(&self) -> usize {
        self.labels.len()
    }
}

impl ImageDataset {
    /// Collects any burn [`Dataset`] of [`ImageItem`]s of shape `[channels, height, width]` into
    /// memory, checking every item's size and label.
    ///
    /// ```
    /// use bulwark_data::{ImageDataset, ImageItem};
    /// use burn_dataset::{Dataset, InMemDataset};
    ///
    /// let items = InMemDataset::new(vec![
    ///     ImageItem { image: vec![0, 255, 255, 0], label: 1 },
    ///     ImageItem { image: vec![9, 9, 9, 9], label: 0 },
    /// ]);
    /// let data = ImageDataset::from_dataset(&items, 1, 2, 2, 2).unwrap();
    /// assert_eq!(data.labels, vec![1, 0]);
    /// assert_eq!(data.get(1).unwrap(), items.get(1).unwrap());
    /// ```
    pub fn from_dataset<D: Dataset<ImageItem> + ?Sized>(
        dataset: &D,
        channels: usize,
        height: usize,
        width: usize,
        num_classes: usize,
    ) -> Result<Self> {
        if num_classes > 256 {
            return Err(DataError::InvalidArgument(format!(
                "{num_classes} classes; at most 256 are supported (labels are stored as bytes)"
            )));
        }
        let size = channels * height * width;
        let mut images = Vec::with_capacity(dataset.len() * size);
        let mut labels = Vec::with_capacity(dataset.len());
        for i in 0..dataset.len() {
            let item = dataset
                .get(i)
                .map_err(|e| DataError::InvalidArgument(format!("item {i}: {e}")))?;
            if item.image.len() != size {
                return Err(DataError::InvalidArgument(format!(
                    "item {i} has {} pixel bytes; a {channels}x{height}x{width} image has {size}",
                    item.image.len()
                )));
            }
            if item.label >= num_classes {
                return Err(DataError::InvalidArgument(format!(
                    "label {} of item {i} is not below num_classes {num_classes}",
                    item.label
                )));
            }
            images.extend_from_slice(&item.image);
            labels.push(item.label as u8);
        }
        ImageDataset::new(images, labels, channels, height, width, num_classes)
    }
}
