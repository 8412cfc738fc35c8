//! Datasets beyond the named ones: real MNIST test images written as an image folder (PNG, and
//! JPEG for the decoder path) read back through `folder:PATH`, and augmented training.

use std::path::Path;

use bulwark_data::{ImageDataset, Split};
use bulwark_eval::evaluate;
use bulwark_trainer::{
    BackendKind, DeviceSet, FitOptions, OptimizerKind, TrainConfig, dataset_dir, fit,
    load_dataset_split,
};

/// Writes `data` as `root/<split>/<class>/<index>.png`, grey 8-bit, lossless.
fn write_pngs(data: &ImageDataset, root: &Path, split: &str) {
    for i in 0..data.len() {
        let dir = root.join(split).join(format!("digit-{}", data.labels[i]));
        std::fs::create_dir_all(&dir).unwrap();
        let img = image::GrayImage::from_raw(
            data.width as u32,
            data.height as u32,
            data.image(i).to_vec(),
        )
        .unwrap();
        img.save(dir.join(format!("{i:05}.png"))).unwrap();
    }
}

/// `data`'s images in the folder's order: by class, then by index.
fn in_folder_order(data: &ImageDataset) -> ImageDataset {
    let mut order: Vec<usize> = (0..data.len()).collect();
    order.sort_by_key(|&i| (data.labels[i], i));
    data.subset(&order)
}

#[test]
fn an_image_folder_of_mnist_pngs_reads_back_exactly_and_scores_the_same_accuracy() {
    let (train, valid, test) = crate::common::mnist(3_000, 500);
    let root = tempfile::tempdir().unwrap();
    write_pngs(&test, root.path(), "test");
    write_pngs(&train.take(200), root.path(), "train");
    let name = format!("folder:{}", root.path().display());
    let dir = dataset_dir(&name, &bulwark_data::FetchOptions::from_env()).unwrap();
    let folder_test = load_dataset_split(&name, &dir, Split::Test).unwrap();
    // Lossless: the same pixels and labels, in class order.
    let want = in_folder_order(&test);
    assert_eq!(
        (folder_test.channels, folder_test.height, folder_test.width),
        (1, 28, 28)
    );
    assert_eq!(folder_test.num_classes, 10);
    assert_eq!(folder_test.labels, want.labels);
    assert_eq!(folder_test.images, want.images);

    // A model trained on IDX data scores the same through the folder as through IDX.
    let cfg = TrainConfig::new()
        .with_model("small-cnn".into())
        .with_epochs(1)
        .with_batch_size(50)
        .with_optimizer(OptimizerKind::Adam)
        .with_lr(2e-3)
        .with_seed(1);
    let run = tempfile::tempdir().unwrap();
    let devices = DeviceSet::single(BackendKind::Flex).unwrap();
    let model = fit(
        &cfg,
        &train,
        &valid,
        &devices,
        &FitOptions {
            run_dir: run.path().to_path_buf(),
            resume: false,
            progress: false,
            stop_after_epoch: None,
        },
    )
    .unwrap()
    .model;
    let device = devices.main().clone().inner();
    let via_idx = evaluate(&model, &test, 100, &device);
    let via_folder = evaluate(&model, &folder_test, 100, &device);
    assert!(via_idx.accuracy > 0.7, "{}", via_idx.accuracy);
    assert_eq!(via_idx.correct, via_folder.correct);
    assert_eq!(via_idx.per_class, via_folder.per_class);

    // The training split comes from train/, with the same classes.
    let folder_train = load_dataset_split(&name, &dir, Split::Train).unwrap();
    assert_eq!(
        folder_train.images,
        in_folder_order(&train.take(200)).images
    );
}

#[test]
fn jpeg_colour_and_bad_folders_are_handled_with_clear_errors() {
    // 100 images: every digit occurs, so the folder has all ten classes.
    let (_, _, test) = crate::common::mnist(1_001, 100);
    let root = tempfile::tempdir().unwrap();
    // JPEG (lossy): the decoder path; every image close to its original.
    for i in 0..test.len() {
        let dir = root.path().join(format!("c{}", test.labels[i]));
        std::fs::create_dir_all(&dir).unwrap();
        image::GrayImage::from_raw(28, 28, test.image(i).to_vec())
            .unwrap()
            .save_with_format(dir.join(format!("{i:03}.JPG")), image::ImageFormat::Jpeg)
            .unwrap();
    }
    let name = format!("folder:{}", root.path().display());
    // No train/ or test/: the folder itself is the evaluation set.
    let dir = dataset_dir(&name, &bulwark_data::FetchOptions::from_env()).unwrap();
    let read = load_dataset_split(&name, &dir, Split::Test).unwrap();
    let want = in_folder_order(&test);
    assert_eq!(read.labels, want.labels);
    let worst = read
        .images
        .iter()
        .zip(&want.images)
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap();
    let mean = read
        .images
        .iter()
        .zip(&want.images)
        .map(|(a, b)| f64::from(a.abs_diff(*b)))
        .sum::<f64>()
        / read.images.len() as f64;
    assert!(
        mean < 4.0 && worst < 128,
        "JPEG error mean {mean}, max {worst}"
    );
    // Training needs train/.
    let e = load_dataset_split(&name, &dir, Split::Train)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no train/ sub-folder"), "{e}");

    // One colour image makes the set RGB; a different size is refused, naming the file.
    let class = root.path().join(format!("c{}", test.labels[0]));
    image::RgbImage::from_pixel(28, 28, image::Rgb([200, 10, 10]))
        .save(class.join("zz-red.png"))
        .unwrap();
    let rgb = load_dataset_split(&name, &dir, Split::Test).unwrap();
    assert_eq!(rgb.channels, 3);
    assert_eq!(rgb.len(), test.len() + 1);
    image::GrayImage::new(30, 28)
        .save(class.join("zz-wide.png"))
        .unwrap();
    let e = load_dataset_split(&name, &dir, Split::Test)
        .unwrap_err()
        .to_string();
    assert!(e.contains("zz-wide.png") && e.contains("30x28"), "{e}");
    std::fs::remove_file(class.join("zz-wide.png")).unwrap();
    // A file that is not an image, named like one.
    std::fs::write(class.join("zz-broken.png"), b"not a png").unwrap();
    let e = load_dataset_split(&name, &dir, Split::Test)
        .unwrap_err()
        .to_string();
    assert!(e.contains("zz-broken.png"), "{e}");

    let e = dataset_dir(
        "folder:/no/such/folder",
        &bulwark_data::FetchOptions::from_env(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("is not a folder"), "{e}");
    let e = bulwark_trainer::check_dataset_name("folder:")
        .unwrap_err()
        .to_string();
    assert!(e.contains("names no folder"), "{e}");
}

#[test]
fn augmented_training_runs_and_resumes_exactly() {
    let (train, valid, _) = crate::common::mnist(3_000, 10);
    let cfg = TrainConfig::new()
        .with_model("small-cnn".into())
        .with_epochs(2)
        .with_batch_size(50)
        .with_optimizer(OptimizerKind::Adam)
        .with_lr(2e-3)
        .with_augment(bulwark_data::Augment {
            crop_padding: 2,
            horizontal_flip: false,
        })
        .with_seed(2);
    let devices = DeviceSet::single(BackendKind::Flex).unwrap();
    let opts = |dir: &Path, resume, stop| FitOptions {
        run_dir: dir.to_path_buf(),
        resume,
        progress: false,
        stop_after_epoch: stop,
    };
    let whole = tempfile::tempdir().unwrap();
    let a = fit(
        &cfg,
        &train,
        &valid,
        &devices,
        &opts(whole.path(), false, None),
    )
    .unwrap();
    let killed = tempfile::tempdir().unwrap();
    fit(
        &cfg,
        &train,
        &valid,
        &devices,
        &opts(killed.path(), false, Some(1)),
    )
    .unwrap();
    let b = fit(
        &cfg,
        &train,
        &valid,
        &devices,
        &opts(killed.path(), true, None),
    )
    .unwrap();
    let losses = |h: &[bulwark_trainer::EpochMetrics]| {
        h.iter()
            .map(|m| (m.train_loss, m.valid_acc))
            .collect::<Vec<_>>()
    };
    assert_eq!(losses(&a.history), losses(&b.history));
    // The augmentation is in effect: the same run without it trains differently.
    let plain = tempfile::tempdir().unwrap();
    let c = fit(
        &cfg.clone().with_augment(bulwark_data::Augment::none()),
        &train,
        &valid,
        &devices,
        &opts(plain.path(), false, None),
    )
    .unwrap();
    assert_ne!(losses(&a.history), losses(&c.history));
    assert!(a.history[1].valid_acc > 0.7, "{}", a.history[1].valid_acc);
}
