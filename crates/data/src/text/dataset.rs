//! [`TextDataset`]: fixed-length word-id sequences with labels.

use burn::tensor::{Device, Int, Tensor, TensorData};

use super::corpus::TextCorpus;
use super::vocab::Vocabulary;
use crate::error::{DataError, Result};
use bulwark_attack_core::rng::SplitMix64;

/// Texts as word ids, each exactly `seq_len` long (truncated or padded with
/// [`super::PAD`]); `labels[i]` is the class of sequence `i`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextDataset {
    /// All ids, sequence after sequence, `seq_len` each.
    pub tokens: Vec<u32>,
    /// One class label per sequence.
    pub labels: Vec<u8>,
    /// Ids per sequence.
    pub seq_len: usize,
    /// Number of ids the vocabulary has: every id is below it.
    pub vocab_size: usize,
    /// Number of classes; every label is below it.
    pub num_classes: usize,
}

impl TextDataset {
    /// Encodes a corpus with `vocab`, `seq_len` ids per text.
    pub fn encode(corpus: &TextCorpus, vocab: &Vocabulary, seq_len: usize) -> Result<Self> {
        if seq_len == 0 {
            return Err(DataError::InvalidArgument(
                "a text sequence length must be at least 1".into(),
            ));
        }
        let tokens = corpus
            .texts
            .iter()
            .flat_map(|t| vocab.encode(t, seq_len))
            .collect();
        Self::new(
            tokens,
            corpus.labels.clone(),
            seq_len,
            vocab.len(),
            corpus.class_names.len(),
        )
    }

    /// Builds a dataset, checking the buffer sizes, ids and labels.
    pub fn new(
        tokens: Vec<u32>,
        labels: Vec<u8>,
        seq_len: usize,
        vocab_size: usize,
        num_classes: usize,
    ) -> Result<Self> {
        if seq_len == 0 || tokens.len() != labels.len() * seq_len {
            return Err(DataError::InvalidArgument(format!(
                "{} labels need {} ids of sequences of length {seq_len}, found {}",
                labels.len(),
                labels.len() * seq_len,
                tokens.len()
            )));
        }
        if let Some(pos) = tokens.iter().position(|&t| t as usize >= vocab_size) {
            return Err(DataError::InvalidArgument(format!(
                "id {} of sequence {} is not below the vocabulary size {vocab_size}",
                tokens[pos],
                pos / seq_len
            )));
        }
        if let Some(pos) = labels.iter().position(|&l| usize::from(l) >= num_classes) {
            return Err(DataError::InvalidArgument(format!(
                "label {} of sequence {pos} is not below num_classes {num_classes}",
                labels[pos]
            )));
        }
        Ok(Self {
            tokens,
            labels,
            seq_len,
            vocab_size,
            num_classes,
        })
    }

    /// Number of sequences.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there is no sequence.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The ids of sequence `i`.
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn sequence(&self, i: usize) -> &[u32] {
        &self.tokens[i * self.seq_len..(i + 1) * self.seq_len]
    }

    /// The sequences at `indices`, in that order (indices may repeat).
    ///
    /// # Panics
    /// If an index is out of range.
    pub fn subset(&self, indices: &[usize]) -> TextDataset {
        TextDataset {
            tokens: indices
                .iter()
                .flat_map(|&i| self.sequence(i).iter().copied())
                .collect(),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            ..self.clone_shape()
        }
    }

    /// The first `n` sequences (all of them when `n >= len`).
    pub fn take(&self, n: usize) -> TextDataset {
        self.subset(&(0..n.min(self.len())).collect::<Vec<_>>())
    }

    /// Seeded train/validation split, as [`crate::ImageDataset::split`]: the first `n_valid`
    /// positions of a [`SplitMix64`] permutation go to `valid`; each part keeps the original
    /// order. Fails when `n_valid > len`.
    pub fn split(&self, n_valid: usize, seed: u64) -> Result<(TextDataset, TextDataset)> {
        if n_valid > self.len() {
            return Err(DataError::InvalidArgument(format!(
                "validation size {n_valid} exceeds the dataset size {}",
                self.len()
            )));
        }
        let perm = SplitMix64::new(seed).permutation(self.len());
        let mut valid = perm[..n_valid].to_vec();
        let mut train = perm[n_valid..].to_vec();
        valid.sort_unstable();
        train.sort_unstable();
        Ok((self.subset(&train), self.subset(&valid)))
    }

    /// Number of sequences per class (`num_classes` entries).
    pub fn label_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.num_classes];
        for &l in &self.labels {
            counts[usize::from(l)] += 1;
        }
        counts
    }

    /// The sequences at `indices` as ids `[B, seq_len]` and labels `[B]`, on `device`.
    ///
    /// # Panics
    /// If an index is out of range.
    pub fn batch(&self, indices: &[usize], device: &Device) -> (Tensor<2, Int>, Tensor<1, Int>) {
        let ids: Vec<i64> = indices
            .iter()
            .flat_map(|&i| self.sequence(i).iter().map(|&t| i64::from(t)))
            .collect();
        let labels: Vec<i64> = indices.iter().map(|&i| i64::from(self.labels[i])).collect();
        (
            Tensor::from_data(TensorData::new(ids, [indices.len(), self.seq_len]), device),
            Tensor::from_data(TensorData::new(labels, [indices.len()]), device),
        )
    }

    fn clone_shape(&self) -> TextDataset {
        TextDataset {
            tokens: Vec::new(),
            labels: Vec::new(),
            seq_len: self.seq_len,
            vocab_size: self.vocab_size,
            num_classes: self.num_classes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Six sequences of length 2; sequence i is [i, i] with label i % 2.
    fn tiny() -> TextDataset {
        let tokens = (0..6u32).flat_map(|i| [i, i]).collect();
        TextDataset::new(tokens, (0..6u8).map(|i| i % 2).collect(), 2, 6, 2).unwrap()
    }

    #[test]
    fn new_validates() {
        assert!(TextDataset::new(vec![0; 3], vec![0, 0], 2, 5, 2).is_err());
        let e = TextDataset::new(vec![0, 5], vec![0], 2, 5, 2).unwrap_err();
        assert!(e.to_string().contains("id 5 of sequence 0"), "{e}");
        let e = TextDataset::new(vec![0, 1], vec![2], 2, 5, 2).unwrap_err();
        assert!(e.to_string().contains("label 2 of sequence 0"), "{e}");
        assert!(TextDataset::new(vec![], vec![], 0, 5, 2).is_err());
    }

    #[test]
    fn subset_split_and_batch() {
        let d = tiny();
        assert_eq!(d.subset(&[5, 0]).tokens, vec![5, 5, 0, 0]);
        assert_eq!(d.take(2).labels, vec![0, 1]);
        assert_eq!(d.label_counts(), vec![3, 3]);
        let (train, valid) = d.split(2, 3).unwrap();
        let mut all: Vec<u32> = train
            .tokens
            .iter()
            .chain(&valid.tokens)
            .step_by(2)
            .copied()
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..6).collect::<Vec<_>>());
        assert_eq!(d.split(2, 3).unwrap().1, valid);
        assert!(d.split(7, 0).is_err());
        let device = Device::flex();
        let (ids, labels) = d.batch(&[3, 1], &device);
        assert_eq!(
            ids.to_data().convert::<i64>().try_to_vec::<i64>().unwrap(),
            vec![3, 3, 1, 1]
        );
        assert_eq!(
            labels
                .to_data()
                .convert::<i64>()
                .try_to_vec::<i64>()
                .unwrap(),
            vec![1, 1]
        );
    }
}
