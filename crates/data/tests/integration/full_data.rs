//! The full-size datasets, when this checkout has them next to the workspace
//! (`../shared/data`); skipped with a note otherwise.

use std::time::Instant;

use bulwark_data::{DatasetKind, Split, fetch, load_split};

use crate::common::{entries, isolated, shared_data};

#[test]
fn full_size_fetch_verify_and_label_counts() {
    let Some(shared) = shared_data() else { return };
    let cache = tempfile::tempdir().unwrap();
    for kind in DatasetKind::ALL {
        let mut opts = isolated(cache.path());
        opts.data_dir = Some(shared.clone()); // the kind's sub-folder is found
        let t = Instant::now();
        let dir = fetch(kind, &opts).unwrap();
        eprintln!(
            "{kind}: verify + decompress from the data dir: {:.2} s",
            t.elapsed().as_secs_f64()
        );
        assert_eq!(entries(&dir).len(), 4);

        let t = Instant::now();
        let again = fetch(kind, &isolated(cache.path())).unwrap();
        eprintln!(
            "{kind}: cache hit (re-verify 4 files): {:.2} s",
            t.elapsed().as_secs_f64()
        );
        assert_eq!(again, dir);

        let test = load_split(kind, Split::Test, &dir).unwrap();
        assert_eq!(test.len(), 10_000);
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
                let train = load_split(kind, Split::Train, &dir).unwrap();
                assert_eq!(train.label_counts(), vec![6000; 10]);
            }
        }
    }
}
