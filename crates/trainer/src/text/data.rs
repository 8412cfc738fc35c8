//! A text run's data: the corpus split into train, validation and test sets, and the vocabulary
//! built on the training part alone.

use bulwark_attack_core::rng::SplitMix64;
use bulwark_data::FetchOptions;
use bulwark_data::text::{
    Email, TextCorpus, TextDataset, Vocabulary, fetch_spam_assassin, read_emails,
    split_spam_assassin,
};

use super::config::TextTrainConfig;
use crate::TrainError;

/// The encoded sets of a text run and their vocabulary.
#[derive(Debug, Clone)]
pub struct TextData {
    /// Training sequences (the corpus's train split less the validation texts).
    pub train: TextDataset,
    /// Validation sequences (`valid_size` texts of the train split, drawn with the seed).
    pub valid: TextDataset,
    /// The corpus's test split.
    pub test: TextDataset,
    /// Built on the training texts only, so that validation and test words it never saw are
    /// unknown words, as they would be for new mail.
    pub vocab: Vocabulary,
}

impl TextData {
    /// The SpamAssassin corpus through the fetch chain, encoded as `cfg` says.
    pub fn load(cfg: &TextTrainConfig, opts: &FetchOptions) -> Result<Self, TrainError> {
        if cfg.dataset != "spam-assassin" {
            return Err(TrainError::Config(format!(
                "unknown text dataset {:?}: the one there is is \"spam-assassin\" (a corpus of \
                 your own goes through TextData::from_corpora)",
                cfg.dataset
            )));
        }
        let archive = fetch_spam_assassin(opts)?;
        Self::from_emails(cfg, &read_emails(&archive)?)
    }

    /// The encoded sets of these messages (the corpus or a slice of it).
    pub fn from_emails(cfg: &TextTrainConfig, emails: &[Email]) -> Result<Self, TrainError> {
        let (train, test) = split_spam_assassin(emails);
        Self::from_corpora(cfg, &train, &test)
    }

    /// The encoded sets of a train and a test corpus: `valid_size` train texts drawn with the
    /// seed are held out, the vocabulary is built on the rest.
    pub fn from_corpora(
        cfg: &TextTrainConfig,
        train: &TextCorpus,
        test: &TextCorpus,
    ) -> Result<Self, TrainError> {
        if cfg.valid_size >= train.len() {
            return Err(TrainError::Config(format!(
                "valid_size ({}) must be below the {} training texts",
                cfg.valid_size,
                train.len()
            )));
        }
        let perm = SplitMix64::new(cfg.seed).permutation(train.len());
        let mut valid_idx = perm[..cfg.valid_size].to_vec();
        let mut train_idx = perm[cfg.valid_size..].to_vec();
        valid_idx.sort_unstable();
        train_idx.sort_unstable();
        let vocab = Vocabulary::build(
            train_idx.iter().map(|&i| train.texts[i].as_str()),
            cfg.vocab_words,
            cfg.min_count,
        );
        let all = TextDataset::encode(train, &vocab, cfg.seq_len)?;
        Ok(Self {
            train: all.subset(&train_idx),
            valid: all.subset(&valid_idx),
            test: TextDataset::encode(test, &vocab, cfg.seq_len)?,
            vocab,
        })
    }
}
