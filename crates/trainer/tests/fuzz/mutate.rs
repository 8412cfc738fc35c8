//! Damaged variants of valid files: truncated, bit-flipped, overwritten, resized, with header
//! fields rewritten.

use proptest::prelude::*;
use proptest::sample::Index;

/// One way to damage a file.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Cut the file at a point.
    Truncate(Index),
    /// Flip single bits.
    Flip(Vec<(Index, u8)>),
    /// Overwrite bytes at a point with others.
    Overwrite(Index, Vec<u8>),
    /// Append bytes.
    Extend(Vec<u8>),
    /// Remove a range (the file shrinks, what follows moves).
    Remove(Index, usize),
    /// Repeat a range in place (the file grows).
    Duplicate(Index, usize),
    /// Rewrite 4 bytes at an offset among the first 64, where headers hold sizes and counts, with
    /// a small, a boundary or a random value (big- or little-endian).
    HeaderWord(usize, u32, bool),
}

/// Any [`Mutation`], the cheap ones more often.
pub fn mutation() -> impl Strategy<Value = Mutation> {
    let word = prop_oneof![
        0u32..16,
        Just(u32::MAX),
        Just(u32::MAX / 2),
        Just(1 << 31),
        Just(1 << 24),
        any::<u32>(),
    ];
    prop_oneof![
        3 => any::<Index>().prop_map(Mutation::Truncate),
        4 => prop::collection::vec((any::<Index>(), 0u8..8), 1..8).prop_map(Mutation::Flip),
        2 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, b)| Mutation::Overwrite(i, b)),
        1 => prop::collection::vec(any::<u8>(), 1..64).prop_map(Mutation::Extend),
        1 => (any::<Index>(), 1usize..512).prop_map(|(i, n)| Mutation::Remove(i, n)),
        1 => (any::<Index>(), 1usize..512).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
        3 => (0usize..61, word, any::<bool>()).prop_map(|(at, v, be)| Mutation::HeaderWord(at, v, be)),
    ]
}

/// `valid` damaged by `m`.
pub fn apply(valid: &[u8], m: &Mutation) -> Vec<u8> {
    let mut v = valid.to_vec();
    if v.is_empty() {
        return v;
    }
    match m {
        Mutation::Truncate(i) => v.truncate(i.index(valid.len())),
        Mutation::Flip(flips) => {
            for (i, bit) in flips {
                v[i.index(valid.len())] ^= 1 << bit;
            }
        }
        Mutation::Overwrite(i, bytes) => {
            let at = i.index(valid.len());
            for (k, b) in bytes.iter().enumerate() {
                if let Some(slot) = v.get_mut(at + k) {
                    *slot = *b;
                }
            }
        }
        Mutation::Extend(bytes) => v.extend_from_slice(bytes),
        Mutation::Remove(i, n) => {
            let at = i.index(valid.len());
            let end = (at + n).min(v.len());
            v.drain(at..end);
        }
        Mutation::Duplicate(i, n) => {
            let at = i.index(valid.len());
            let end = (at + n).min(v.len());
            let copy = v[at..end].to_vec();
            v.splice(at..at, copy);
        }
        Mutation::HeaderWord(at, value, big_endian) => {
            let at = *at;
            let bytes = if *big_endian {
                value.to_be_bytes()
            } else {
                value.to_le_bytes()
            };
            for (k, b) in bytes.iter().enumerate() {
                if let Some(slot) = v.get_mut(at + k) {
                    *slot = *b;
                }
            }
        }
    }
    v
}

/// The proptest settings of every reader: `cases` damaged files, no files written on failure.
pub fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}
