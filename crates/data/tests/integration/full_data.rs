//! The full-size datasets, obtained the way a user obtains them (the fetch chain with the
//! environment's settings; `cargo xtask ci` fills the cache first). Fails with the fetch error
//! when a dataset cannot be obtained.

use std::time::Instant;

use bulwark_data::{DatasetKind, FetchOptions, Split, fetch, load_split};

use crate::common::{entries, isolated};

#[test]
fn full_size_fetch_verify_and_label_counts() {
    let cache = tempfile::tempdir().unwrap();
    for kind in DatasetKind::ALL {
        let t = Instant::now();
        let obtained = fetch(kind, &FetchOptions::from_env())
            .unwrap_or_else(|e| panic!("this test needs the full {kind}:\n{e}"));
        eprintln!(
            "{kind}: obtained through the fetch chain in {:.2} s",
            t.elapsed().as_secs_f64()
        );
        // That directory, named as a data directory, verifies again and is used as it is.
        let mut opts = isolated(cache.path());
        opts.data_dir = Some(obtained.clone());
        let t = Instant::now();
        let dir = fetch(kind, &opts).unwrap();
        eprintln!(
            "{kind}: re-verify 4 files of a data directory: {:.2} s",
            t.elapsed().as_secs_f64()
        );
        assert_eq!(dir, obtained);
        assert!(entries(&dir).len() >= 4, "{:?}", entries(&dir));

        let test = load_split(kind, Split::Test, &dir).unwrap();
        assert_eq!(test.len(), 10_000);
        let train = load_split(kind, Split::Train, &dir).unwrap();
        assert_eq!(train.len(), 60_000);
        match kind {
            DatasetKind::Mnist => {
                assert_eq!(
                    test.label_counts(),
                    vec![980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
                );
                assert_eq!(&test.labels[..10], &[7, 2, 1, 0, 4, 1, 4, 9, 5, 9]);
            }
            DatasetKind::FashionMnist => {
                assert_eq!(test.label_counts(), vec![1000; 10]);
                assert_eq!(train.label_counts(), vec![6000; 10]);
            }
        }
    }
    assert!(
        entries(cache.path()).is_empty(),
        "verified uncompressed files are used in place, not copied"
    );
}
