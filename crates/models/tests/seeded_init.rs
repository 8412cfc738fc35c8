//! Seeded initialization, in a test process of its own.
//!
//! burn draws parameters from a generator shared by the whole process. `Model::init_seeded` holds
//! a process-wide lock while it seeds the generator and draws, which keeps other seeded builds
//! out, but a draw that does not take the lock (an unseeded model's first use, `Tensor::random`)
//! can still fall in between. The integration binary's other tests make such draws on parallel
//! threads, and there this test failed once (2026-12-05: two builds with seed 1 differed), so it
//! runs alone here.

use std::path::Path;

use bulwark_models::{Model, torch};
use burn::prelude::*;

fn device() -> Device {
    Device::flex()
}

#[test]
fn seeded_initialization_is_reproducible_and_seed_dependent() {
    let dev = device();
    let bytes =
        |seed| torch::to_safetensors_bytes(&Model::init_seeded("small-cnn", &dev, seed).unwrap());
    let weights = |b: Vec<u8>| {
        torch::state_dict(
            &torch::from_safetensors_bytes(
                Model::init("small-cnn", &dev).unwrap(),
                &b,
                Path::new("w"),
            )
            .unwrap(),
        )
    };
    let (a, b, c) = (weights(bytes(1)), weights(bytes(1)), weights(bytes(2)));
    assert_eq!(a, b);
    assert_ne!(a, c);
    // Loading does not need the replaced weights: an unseeded fresh model loads the same values.
    assert!(a.iter().all(|t| t.data.iter().all(|v| v.is_finite())));
}
