//! [`Vocabulary`]: lowercase words by Unicode word boundaries, mapped to ids by frequency.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use unicode_segmentation::UnicodeSegmentation;

use crate::error::{DataError, Result};

/// The id of padding (after the end of a short text).
pub const PAD: u32 = 0;
/// The id of every word outside the vocabulary.
pub const UNK: u32 = 1;

/// Words longer than this many bytes are unknown words: in e-mail they are encoded blobs, URLs
/// and the like, and would only fill the vocabulary.
const MAX_WORD_BYTES: usize = 40;

/// A word vocabulary: id 0 is padding ([`PAD`]), id 1 the unknown word ([`UNK`]), then the
/// kept words from the most frequent down (ties in byte order), so that building it from the
/// same texts always gives the same ids.
///
/// Words are the lowercase Unicode words of a text (UAX #29 word boundaries, by the
/// `unicode-segmentation` crate: punctuation and spaces are dropped, numbers are words).
///
/// ```
/// use bulwark_data::text::{PAD, UNK, Vocabulary};
///
/// let vocab = Vocabulary::build(["the cat sat", "the dog"], 10, 1);
/// assert_eq!(vocab.id("the"), Some(2)); // the most frequent word
/// assert_eq!(vocab.encode("The bird sat.", 5), vec![2, UNK, vocab.id("sat").unwrap(), PAD, PAD]);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Vocabulary {
    /// Words by id, from id 2 on (ids 0 and 1 are padding and the unknown word).
    words: Vec<String>,
    #[serde(skip)]
    index: HashMap<String, u32>,
}

impl Vocabulary {
    /// The words of `text`, lowercase, in order.
    pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
        text.unicode_words().map(str::to_lowercase)
    }

    /// Builds a vocabulary of at most `max_words` words (besides padding and the unknown word)
    /// from `texts`, keeping words that occur at least `min_count` times.
    pub fn build<'a>(
        texts: impl IntoIterator<Item = &'a str>,
        max_words: usize,
        min_count: usize,
    ) -> Self {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for text in texts {
            for word in Self::words(text).filter(|w| w.len() <= MAX_WORD_BYTES) {
                *counts.entry(word).or_default() += 1;
            }
        }
        let mut ranked: Vec<(String, usize)> = counts
            .into_iter()
            .filter(|&(_, c)| c >= min_count.max(1))
            .collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        ranked.truncate(max_words);
        Self::from_words(ranked.into_iter().map(|(w, _)| w).collect())
    }

    /// A vocabulary with these words at ids 2, 3, ... Fails on a repeated or empty word.
    pub fn from_word_list(words: Vec<String>) -> Result<Self> {
        let vocab = Self::from_words(words);
        if vocab.index.len() != vocab.words.len() || vocab.words.iter().any(String::is_empty) {
            return Err(DataError::InvalidArgument(
                "a vocabulary's words must be distinct and non-empty".into(),
            ));
        }
        Ok(vocab)
    }

    fn from_words(words: Vec<String>) -> Self {
        let index = words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.clone(), i as u32 + 2))
            .collect();
        Self { words, index }
    }

    /// Number of ids, padding and the unknown word included: the embedding table's size.
    pub fn len(&self) -> usize {
        self.words.len() + 2
    }

    /// Always false: padding and the unknown word are always there.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The id of a (lowercase) word, if it is in the vocabulary.
    pub fn id(&self, word: &str) -> Option<u32> {
        self.index.get(word).copied()
    }

    /// The word of an id (`<pad>` and `<unk>` for 0 and 1).
    pub fn word(&self, id: u32) -> Option<&str> {
        match id {
            PAD => Some("<pad>"),
            UNK => Some("<unk>"),
            _ => self.words.get(id as usize - 2).map(String::as_str),
        }
    }

    /// The first `len` word ids of `text`, unknown words as [`UNK`], padded with [`PAD`].
    pub fn encode(&self, text: &str, len: usize) -> Vec<u32> {
        let mut ids: Vec<u32> = Self::words(text)
            .take(len)
            .map(|w| self.id(&w).unwrap_or(UNK))
            .collect();
        ids.resize(len, PAD);
        ids
    }

    /// Writes the vocabulary as JSON (a run directory keeps it beside the weights).
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec(self)
            .map_err(|e| DataError::InvalidArgument(format!("cannot encode a vocabulary: {e}")))?;
        // Through a temporary file and a rename: the file is the old one or the new one.
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, json).map_err(|e| DataError::io(&tmp, "write", e))?;
        std::fs::rename(&tmp, path).map_err(|e| DataError::io(path, "rename into place", e))
    }

    /// Reads a vocabulary written by [`Vocabulary::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| DataError::io(path, "read", e))?;
        #[derive(Deserialize)]
        struct Words {
            words: Vec<String>,
        }
        let parsed: Words = serde_json::from_slice(&bytes).map_err(|e| {
            DataError::format(path.display().to_string(), format!("not a vocabulary: {e}"))
        })?;
        Self::from_word_list(parsed.words)
            .map_err(|e| DataError::format(path.display().to_string(), e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_by_frequency_then_bytes() {
        let v = Vocabulary::build(["b a c a", "c a z"], 10, 1);
        assert_eq!(v.id("a"), Some(2));
        assert_eq!(v.id("c"), Some(3));
        assert_eq!((v.id("b"), v.id("z")), (Some(4), Some(5)));
        assert_eq!(v.len(), 6);
        assert_eq!(v.word(3), Some("c"));
        assert_eq!(
            (v.word(0), v.word(1), v.word(6)),
            (Some("<pad>"), Some("<unk>"), None)
        );
        let small = Vocabulary::build(["b a c a", "c a z"], 2, 1);
        assert_eq!((small.len(), small.id("b")), (4, None));
        let frequent = Vocabulary::build(["b a c a", "c a z"], 10, 2);
        assert_eq!((frequent.len(), frequent.id("z")), (4, None));
    }

    #[test]
    fn words_are_lowercase_unicode_words() {
        let w: Vec<String> = Vocabulary::words("Hello, World! It's 3.5 GHz — Zürich.").collect();
        assert_eq!(w, ["hello", "world", "it's", "3.5", "ghz", "zürich"]);
        let long = "x".repeat(MAX_WORD_BYTES + 1);
        assert_eq!(Vocabulary::build([long.as_str()], 10, 1).len(), 2);
    }

    #[test]
    fn encode_truncates_and_pads() {
        let v = Vocabulary::build(["a b"], 10, 1);
        assert_eq!(v.encode("a b q a", 3), vec![2, 3, UNK]);
        assert_eq!(v.encode("", 2), vec![PAD, PAD]);
    }

    #[test]
    fn save_and_load_round_trip_and_bad_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let v = Vocabulary::build(["one two two"], 10, 1);
        let path = dir.path().join("vocab.json");
        v.save(&path).unwrap();
        assert_eq!(Vocabulary::load(&path).unwrap(), v);
        std::fs::write(&path, br#"{"words":["a","a"]}"#).unwrap();
        let e = Vocabulary::load(&path).unwrap_err().to_string();
        assert!(e.contains("distinct"), "{e}");
        std::fs::write(&path, b"[1, 2]").unwrap();
        assert!(
            Vocabulary::load(&path)
                .unwrap_err()
                .to_string()
                .contains("not a vocabulary")
        );
    }
}
