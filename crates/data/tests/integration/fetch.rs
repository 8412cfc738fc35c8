//! Fetching: from a data directory, from the cache, from HTTP mirrors (a local test server),
//! checksum failures, and the error when every source fails.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use bulwark_data::idx::read_maybe_gz;
use bulwark_data::{DataError, DatasetKind, Split, fetch_with, load_split};

use crate::common::{
    Server, T10K_IMAGES, T10K_LABELS, entries, fixture_dir, isolated, slice_table,
};

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// The fixture files of `kind` as a server would publish them under `prefix`.
fn published(kind: DatasetKind, prefix: &str) -> HashMap<String, Vec<u8>> {
    [T10K_IMAGES, T10K_LABELS]
        .iter()
        .map(|n| {
            let body = std::fs::read(fixture_dir(kind).join(format!("{n}.gz"))).unwrap();
            (format!("{prefix}{n}.gz"), body)
        })
        .collect()
}

fn raw_fixture(kind: DatasetKind, name: &str) -> Vec<u8> {
    read_maybe_gz(&fixture_dir(kind).join(format!("{name}.gz"))).unwrap()
}

#[test]
fn from_gz_data_dir_into_cache() {
    for kind in DatasetKind::ALL {
        let cache = tempfile::tempdir().unwrap();
        let mut opts = isolated(cache.path());
        opts.data_dir = Some(fixture_dir(kind));
        let dir = fetch_with(kind, &opts, &slice_table(kind)).unwrap();
        assert_eq!(
            dir,
            cache.path().join(kind.name()),
            "gz files are decompressed into the cache"
        );
        assert_eq!(entries(&dir), vec![T10K_IMAGES, T10K_LABELS]);
        assert_eq!(
            std::fs::read(dir.join(T10K_LABELS)).unwrap(),
            raw_fixture(kind, T10K_LABELS)
        );
        assert_eq!(load_split(kind, Split::Test, &dir).unwrap().len(), 256);
    }
}

#[test]
fn data_dir_parent_with_kind_subfolder() {
    let cache = tempfile::tempdir().unwrap();
    let mut opts = isolated(cache.path());
    opts.data_dir = fixture_dir(DatasetKind::FashionMnist)
        .parent()
        .map(Path::to_path_buf);
    let kind = DatasetKind::FashionMnist;
    let dir = fetch_with(kind, &opts, &slice_table(kind)).unwrap();
    let d = load_split(kind, Split::Test, &dir).unwrap();
    assert_eq!(&d.labels[..4], &[9, 2, 1, 1]);
}

#[test]
fn raw_data_dir_is_used_in_place() {
    let data = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let kind = DatasetKind::Mnist;
    for n in [T10K_IMAGES, T10K_LABELS] {
        std::fs::write(data.path().join(n), raw_fixture(kind, n)).unwrap();
    }
    let mut opts = isolated(cache.path());
    opts.data_dir = Some(data.path().to_path_buf());
    let dir = fetch_with(kind, &opts, &slice_table(kind)).unwrap();
    assert_eq!(dir, data.path());
    assert!(entries(cache.path()).is_empty(), "nothing copied");
}

#[test]
fn checksum_mismatch_in_data_dir() {
    let kind = DatasetKind::Mnist;
    for compressed in [false, true] {
        let data = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let mut labels = raw_fixture(kind, T10K_LABELS);
        labels[20] = (labels[20] + 1) % 10; // still a valid IDX file, but not the real one
        let (lp, body) = if compressed {
            (data.path().join(format!("{T10K_LABELS}.gz")), gz(&labels))
        } else {
            (data.path().join(T10K_LABELS), labels)
        };
        std::fs::write(&lp, body).unwrap();
        std::fs::write(
            data.path().join(T10K_IMAGES),
            raw_fixture(kind, T10K_IMAGES),
        )
        .unwrap();
        let mut opts = isolated(cache.path());
        opts.data_dir = Some(data.path().to_path_buf());
        // Network and registries on: a named directory that fails must not fall through.
        opts.use_network = true;
        opts.base_urls = Some(vec!["http://127.0.0.1:9/".into()]);
        let e = fetch_with(kind, &opts, &slice_table(kind)).unwrap_err();
        assert!(matches!(e, DataError::Checksum { .. }), "{e}");
        let e = e.to_string();
        assert!(e.starts_with(&lp.display().to_string()), "{e}");
        // The message names what is wrong (a label changed: the structure is fine, the content
        // is not), and both digests.
        assert!(
            e.contains("a well-formed file of 256 labels, but not the expected one")
                && e.contains("SHA-256 of the decompressed bytes")
                && e.contains("expected 7b7f0b73"),
            "{e}"
        );
        let cached = entries(&cache.path().join(kind.name()));
        assert!(
            !cached.contains(&T10K_LABELS.to_string()),
            "bad file not cached: {cached:?}"
        );
        assert!(
            cached.iter().all(|n| !n.starts_with(".partial")),
            "{cached:?}"
        );
    }
}

#[test]
fn data_dir_without_the_files_is_an_error() {
    let data = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let kind = DatasetKind::FashionMnist;
    std::fs::write(
        data.path().join(T10K_IMAGES),
        raw_fixture(kind, T10K_IMAGES),
    )
    .unwrap();
    let mut opts = isolated(cache.path());
    opts.data_dir = Some(data.path().to_path_buf());
    let e = fetch_with(kind, &opts, &slice_table(kind)).unwrap_err();
    assert!(matches!(e, DataError::MissingFiles { .. }), "{e}");
    let e = e.to_string();
    assert!(e.contains(&format!("missing {T10K_LABELS}")), "{e}");
    assert!(e.contains("fashion-mnist sub-folder"), "{e}");
}

#[test]
fn download_from_mirrors_then_cache_hit() {
    let kind = DatasetKind::Mnist;
    let server = Server::start(published(kind, "/mirror/mnist/"), 10);
    let cache = tempfile::tempdir().unwrap();
    let mut opts = isolated(cache.path());
    opts.use_network = true;
    // The first base refuses connections (nothing listens on the discard port), the second
    // serves the files under a path prefix and without a trailing slash.
    opts.base_urls = Some(vec![
        "http://127.0.0.1:9/".into(),
        format!("{}mirror/mnist", server.base),
    ]);
    let dir = fetch_with(kind, &opts, &slice_table(kind)).unwrap();
    let requested = server.finish();
    assert_eq!(
        requested,
        vec![
            format!("/mirror/mnist/{T10K_IMAGES}.gz"),
            format!("/mirror/mnist/{T10K_LABELS}.gz")
        ]
    );
    assert_eq!(dir, cache.path().join("mnist"));
    assert_eq!(
        entries(&dir),
        vec![T10K_IMAGES, T10K_LABELS],
        "no temporary files left"
    );
    let d = load_split(kind, Split::Test, &dir).unwrap();
    assert_eq!(&d.labels[..10], &[7, 2, 1, 0, 4, 1, 4, 9, 5, 9]);

    // Second fetch: everything comes from the cache, with no network at all.
    let again = fetch_with(kind, &isolated(cache.path()), &slice_table(kind)).unwrap();
    assert_eq!(again, dir);
}

#[test]
fn corrupted_download_is_rejected_and_not_cached() {
    let kind = DatasetKind::FashionMnist;
    let mut files = published(kind, "/");
    // A valid gzip of a subtly different file: one pixel changed.
    let mut images = raw_fixture(kind, T10K_IMAGES);
    images[5000] ^= 0x01;
    files.insert(format!("/{T10K_IMAGES}.gz"), gz(&images));
    // And a truncated gzip for the labels.
    let labels_gz = files[&format!("/{T10K_LABELS}.gz")].clone();
    files.insert(
        format!("/{T10K_LABELS}.gz"),
        labels_gz[..labels_gz.len() / 2].to_vec(),
    );
    let server = Server::start(files, 10);
    let cache = tempfile::tempdir().unwrap();
    let mut opts = isolated(cache.path());
    opts.use_network = true;
    opts.base_urls = Some(vec![server.base.clone()]);
    let e = fetch_with(kind, &opts, &slice_table(kind)).unwrap_err();
    assert_eq!(server.finish().len(), 2);
    assert!(matches!(e, DataError::FetchFailed { .. }), "{e}");
    let e = e.to_string();
    assert!(
        e.contains(&format!(
            "{}{T10K_IMAGES}.gz: a well-formed file of 256 images, but not the expected one",
            opts.base_urls.as_ref().unwrap()[0]
        )),
        "{e}"
    );
    assert!(
        e.contains(&format!("{T10K_LABELS}.gz: corrupt or invalid gzip data")),
        "{e}"
    );
    assert!(
        entries(&cache.path().join(kind.name())).is_empty(),
        "no file under a final name and no partial file"
    );
}

#[test]
fn corrupt_cached_file_is_replaced() {
    let kind = DatasetKind::Mnist;
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path().join(kind.name());
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(T10K_IMAGES), raw_fixture(kind, T10K_IMAGES)).unwrap();
    std::fs::write(dir.join(T10K_LABELS), b"corrupted by a crash").unwrap();
    let server = Server::start(published(kind, "/"), 5);
    let mut opts = isolated(cache.path());
    opts.use_network = true;
    opts.base_urls = Some(vec![server.base.clone()]);
    fetch_with(kind, &opts, &slice_table(kind)).unwrap();
    assert_eq!(
        server.finish(),
        vec![format!("/{T10K_LABELS}.gz")],
        "only the bad file is fetched"
    );
    assert_eq!(
        std::fs::read(dir.join(T10K_LABELS)).unwrap(),
        raw_fixture(kind, T10K_LABELS)
    );
}

#[test]
fn http_errors_are_reported() {
    let kind = DatasetKind::Mnist;
    let server = Server::start(HashMap::new(), 5);
    let cache = tempfile::tempdir().unwrap();
    let mut opts = isolated(cache.path());
    opts.use_network = true;
    opts.base_urls = Some(vec![server.base.clone()]);
    let e = fetch_with(kind, &opts, &slice_table(kind))
        .unwrap_err()
        .to_string();
    assert_eq!(
        server.finish().len(),
        2,
        "a 404 does not stop the other files"
    );
    assert!(
        e.contains(&format!(
            "{}{T10K_IMAGES}.gz: HTTP status 404",
            server_base(&opts)
        )),
        "{e}"
    );
}

fn server_base(opts: &bulwark_data::FetchOptions) -> String {
    opts.base_urls.as_ref().unwrap()[0].clone()
}

#[test]
fn all_sources_failing_lists_what_was_tried() {
    let cache = tempfile::tempdir().unwrap();
    let opts = isolated(cache.path());
    let e = bulwark_data::fetch(DatasetKind::Mnist, &opts).unwrap_err();
    assert!(matches!(e, DataError::FetchFailed { .. }), "{e}");
    let e = e.to_string();
    for needle in [
        "could not obtain MNIST; every source failed",
        "data directory: none given (--data-dir or BULWARK_DATA_DIR)",
        "missing train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte",
        "download: disabled",
        "package registries: disabled",
        "What you can do",
        "t10k-labels-idx1-ubyte.gz",
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "BULWARK_DATA_DIR=DIR",
    ] {
        assert!(e.contains(needle), "missing {needle:?} in:\n{e}");
    }
    // Offline with the network on: an unreachable mirror is reported, not waited on forever.
    let mut opts = isolated(cache.path());
    opts.use_network = true;
    opts.base_urls = Some(vec!["http://127.0.0.1:9".into()]);
    let e = bulwark_data::fetch(DatasetKind::FashionMnist, &opts)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("download http://127.0.0.1:9/train-images-idx3-ubyte.gz"),
        "{e}"
    );
    assert!(e.contains("not trying this server again"), "{e}");
    assert_eq!(e.matches("download http://127.0.0.1:9/").count(), 1, "{e}");
}
