//! The committed real slices: the reader must reproduce facts computed independently (by
//! tests/fixtures/make_slices.py) from the original files.

use bulwark_data::idx::{read_idx, read_maybe_gz};
use bulwark_data::{DatasetKind, Split, load_split, sha256_hex};
use burn::tensor::Device;

use crate::common::{T10K_IMAGES, T10K_LABELS, fixture_dir, slice_table};

struct Facts {
    first_labels: [u8; 10],
    counts: [usize; 10],
    pixel_sum: u64,
    nonzero: usize,
    image0_sum: u64,
}

fn facts(kind: DatasetKind) -> Facts {
    match kind {
        DatasetKind::Mnist => Facts {
            first_labels: [7, 2, 1, 0, 4, 1, 4, 9, 5, 9],
            counts: [19, 35, 24, 23, 34, 26, 22, 31, 14, 28],
            pixel_sum: 6_083_698,
            nonzero: 35_650,
            image0_sum: 18_454,
        },
        DatasetKind::FashionMnist => Facts {
            first_labels: [9, 2, 1, 1, 6, 1, 4, 6, 5, 7],
            counts: [25, 32, 37, 18, 27, 21, 22, 27, 23, 24],
            pixel_sum: 14_981_551,
            nonzero: 100_319,
            image0_sum: 33_456,
        },
    }
}

#[test]
fn slices_load_with_known_facts() {
    for kind in DatasetKind::ALL {
        let d = load_split(kind, Split::Test, &fixture_dir(kind)).unwrap();
        let f = facts(kind);
        assert_eq!(d.len(), 256, "{kind}");
        assert_eq!(
            (d.channels, d.height, d.width, d.num_classes),
            (1, 28, 28, 10)
        );
        assert_eq!(&d.labels[..10], &f.first_labels, "{kind}");
        assert_eq!(d.label_counts(), f.counts.to_vec(), "{kind}");
        assert_eq!(
            d.images.iter().map(|&p| u64::from(p)).sum::<u64>(),
            f.pixel_sum
        );
        assert_eq!(d.images.iter().filter(|&&p| p != 0).count(), f.nonzero);
        assert_eq!(d.images.iter().max(), Some(&255));
        let image0: u64 = d.image(0).iter().map(|&p| u64::from(p)).sum();
        assert_eq!(image0, f.image0_sum, "{kind}");
    }
}

#[test]
fn slice_digests_match_the_readme() {
    for kind in DatasetKind::ALL {
        for f in slice_table(kind).files {
            let raw = read_maybe_gz(&fixture_dir(kind).join(format!("{}.gz", f.name))).unwrap();
            assert_eq!(sha256_hex(&raw), f.sha256, "{kind} {}", f.name);
        }
    }
}

#[test]
fn slice_headers() {
    let dir = fixture_dir(DatasetKind::Mnist);
    let images = read_idx(&dir.join(format!("{T10K_IMAGES}.gz"))).unwrap();
    assert_eq!(images.dims, vec![256, 28, 28]);
    let labels = read_idx(&dir.join(format!("{T10K_LABELS}.gz"))).unwrap();
    assert_eq!(labels.dims, vec![256]);
}

#[test]
fn batch_of_real_images() {
    let d = load_split(
        DatasetKind::Mnist,
        Split::Test,
        &fixture_dir(DatasetKind::Mnist),
    )
    .unwrap();
    let device = Device::flex();
    let idx = [0usize, 255, 17];
    let (x, y) = d.batch(&idx, &device);
    assert_eq!(x.dims(), [3, 1, 28, 28]);
    let xv = x.into_data().try_into_vec_as::<f32>().unwrap();
    for (k, &i) in idx.iter().enumerate() {
        for (j, &p) in d.image(i).iter().enumerate() {
            let v = xv[k * 784 + j];
            assert!(
                (v - f32::from(p) / 255.0).abs() < 1e-7,
                "image {i} pixel {j}"
            );
        }
    }
    assert!(xv.iter().all(|v| (0.0..=1.0).contains(v)));
    let yv = y.into_data().try_into_vec_as::<i64>().unwrap();
    assert_eq!(
        yv,
        vec![7, i64::from(d.labels[255]), i64::from(d.labels[17])]
    );
}
