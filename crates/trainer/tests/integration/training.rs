//! Training on a real MNIST slice: learning happens, resume is exact, checkpoints fail safely.

use crate::common::{devices, opts};
use std::path::{Path, PathBuf};

use bulwark_data::{DatasetKind, ImageDataset, Split, load_split};
use bulwark_trainer::{
    Checkpoint, EpochMetrics, OptimizerKind, Schedule, TrainConfig, TrainError, fit,
};

fn slice() -> (ImageDataset, ImageDataset) {
    // The first 256 MNIST test images, committed with the data crate's tests.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/tests/fixtures/mnist");
    let all = load_split(DatasetKind::Mnist, Split::Test, &dir).unwrap();
    all.split(56, 0).unwrap()
}

fn config() -> TrainConfig {
    TrainConfig::new()
        .with_model("small-cnn".into())
        .with_epochs(4)
        .with_batch_size(25)
        .with_eval_batch_size(64)
        .with_optimizer(OptimizerKind::Adam)
        .with_lr(3e-3)
        .with_schedule(Schedule::Cosine {
            warmup_epochs: 0.0,
            min_lr: 0.0,
        })
        .with_seed(5)
}

/// Metrics without the wall-clock fields.
fn comparable(h: &[EpochMetrics]) -> Vec<(usize, f64, f64, f64, f64, f64)> {
    h.iter()
        .map(|m| {
            (
                m.epoch,
                m.lr,
                m.train_loss,
                m.train_acc,
                m.valid_loss,
                m.valid_acc,
            )
        })
        .collect()
}

fn read_jsonl(path: PathBuf) -> Vec<EpochMetrics> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn training_learns_and_a_killed_run_resumes_exactly() {
    let (train, valid) = slice();
    let cfg = config();
    let full_dir = tempfile::tempdir().unwrap();
    let full = fit(
        &cfg,
        &train,
        &valid,
        &devices(),
        &opts(full_dir.path(), false, None),
    )
    .unwrap();
    let h = &full.history;
    assert_eq!(h.len(), 4);
    assert!(
        h[3].train_loss < 0.5 * h[0].train_loss,
        "loss must fall: {:?}",
        comparable(h)
    );
    assert!(h[3].valid_acc > 0.6, "valid accuracy {:?}", comparable(h));
    assert_eq!(
        comparable(&read_jsonl(full_dir.path().join("metrics.jsonl"))),
        comparable(h)
    );
    for f in [
        "checkpoint/model.bpk",
        "checkpoint/optim.bpk",
        "checkpoint/state.json",
        "best.bpk",
    ] {
        assert!(full_dir.path().join(f).is_file(), "{f}");
    }

    // The same run, "killed" after epoch 2 (checkpoint written), then resumed.
    let dir = tempfile::tempdir().unwrap();
    let first = fit(
        &cfg,
        &train,
        &valid,
        &devices(),
        &opts(dir.path(), false, Some(2)),
    )
    .unwrap();
    assert_eq!(first.history.len(), 2);
    // A kill after the metrics line of a third epoch but before its checkpoint leaves a stale
    // line; resume must drop it.
    let mut stale = first.history[1].clone();
    stale.epoch = 3;
    std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("metrics.jsonl"))
        .and_then(|mut f| {
            use std::io::Write;
            writeln!(f, "{}", serde_json::to_string(&stale).unwrap())
        })
        .unwrap();
    let resumed = fit(
        &cfg,
        &train,
        &valid,
        &devices(),
        &opts(dir.path(), true, None),
    )
    .unwrap();
    assert_eq!(resumed.resumed_from, Some(2));
    assert_eq!(
        comparable(&resumed.history),
        comparable(h),
        "resume must replay exactly"
    );
    assert_eq!(
        comparable(&read_jsonl(dir.path().join("metrics.jsonl"))),
        comparable(h)
    );
}

fn resume_error(dir: &Path, cfg: &TrainConfig) -> String {
    let (train, valid) = slice();
    match fit(cfg, &train, &valid, &devices(), &opts(dir, true, None)) {
        Ok(_) => panic!("resume should fail"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_checkpoints_are_clear_errors_and_stay_untouched() {
    let (train, valid) = slice();
    let cfg = config().with_epochs(2);
    let dir = tempfile::tempdir().unwrap();
    let e = resume_error(dir.path(), &cfg);
    assert!(e.contains("nothing to resume"), "{e}");

    fit(
        &cfg,
        &train,
        &valid,
        &devices(),
        &opts(dir.path(), false, Some(1)),
    )
    .unwrap();
    let ckpt = dir.path().join("checkpoint");
    let model_bytes = std::fs::read(ckpt.join("model.bpk")).unwrap();

    // Another architecture.
    let e = resume_error(dir.path(), &cfg.clone().with_model("mlp".into()));
    assert!(
        e.contains("holds model `small-cnn`, but this run trains `mlp`"),
        "{e}"
    );
    // Another configuration.
    let e = resume_error(dir.path(), &cfg.clone().with_lr(0.1));
    assert!(e.contains("different configuration"), "{e}");
    // A truncated model file.
    std::fs::write(
        ckpt.join("model.bpk"),
        &model_bytes[..model_bytes.len() / 2],
    )
    .unwrap();
    let e = resume_error(dir.path(), &cfg);
    assert!(e.contains("model.bpk does not load"), "{e}");
    std::fs::write(ckpt.join("model.bpk"), &model_bytes).unwrap();
    // A damaged state file.
    let state = std::fs::read(ckpt.join("state.json")).unwrap();
    std::fs::write(ckpt.join("state.json"), b"{ not json").unwrap();
    let e = resume_error(dir.path(), &cfg);
    assert!(e.contains("state.json is damaged"), "{e}");
    std::fs::write(ckpt.join("state.json"), &state).unwrap();
    // A fresh (non-resume) run into the same directory is refused before it writes anything.
    let e = fit(
        &cfg,
        &train,
        &valid,
        &devices(),
        &opts(dir.path(), false, None),
    )
    .unwrap_err();
    assert!(e.to_string().contains("already holds a run"), "{e}");
    assert_eq!(std::fs::read(ckpt.join("model.bpk")).unwrap(), model_bytes);
    // Nothing was lost: the checkpoint still resumes.
    let r = fit(
        &cfg,
        &train,
        &valid,
        &devices(),
        &opts(dir.path(), true, None),
    )
    .unwrap();
    assert_eq!(r.history.len(), 2);
}

#[test]
fn divergence_stops_with_an_error_and_keeps_the_last_good_checkpoint() {
    let (train, valid) = slice();
    // A sane first epoch, then a learning rate that blows the weights up in the second (Adam's
    // step is about `lr` per weight whatever the gradient, so activations overflow to inf).
    let cfg = config()
        .with_epochs(3)
        .with_optimizer(OptimizerKind::Adam)
        .with_lr(1e-3)
        .with_schedule(Schedule::Piecewise {
            milestones: vec![1.0],
            gamma: 1e35,
        });
    let dir = tempfile::tempdir().unwrap();
    let e = fit(
        &cfg,
        &train,
        &valid,
        &devices(),
        &opts(dir.path(), false, None),
    )
    .unwrap_err();
    assert!(matches!(e, TrainError::Diverged { epoch: 2, .. }), "{e}");
    assert!(e.to_string().contains("lower the learning rate"), "{e}");
    // The checkpoint of epoch 1 is intact and nothing of the diverged epoch was logged.
    let state = Checkpoint::read_state(&dir.path().join("checkpoint")).unwrap();
    assert_eq!(state.epoch, 1);
    assert_eq!(read_jsonl(dir.path().join("metrics.jsonl")).len(), 1);
    assert!(!dir.path().join("checkpoint.tmp").exists());
}

#[test]
fn resume_is_exact_with_sgd_momentum_state() {
    let (train, valid) = slice();
    let cfg = config()
        .with_epochs(3)
        .with_optimizer(OptimizerKind::Sgd)
        .with_lr(0.05)
        .with_momentum(0.9)
        .with_nesterov(true)
        .with_weight_decay(5e-4);
    let a = tempfile::tempdir().unwrap();
    let full = fit(
        &cfg,
        &train,
        &valid,
        &devices(),
        &opts(a.path(), false, None),
    )
    .unwrap();
    let b = tempfile::tempdir().unwrap();
    fit(
        &cfg,
        &train,
        &valid,
        &devices(),
        &opts(b.path(), false, Some(1)),
    )
    .unwrap();
    let resumed = fit(
        &cfg,
        &train,
        &valid,
        &devices(),
        &opts(b.path(), true, None),
    )
    .unwrap();
    assert_eq!(comparable(&resumed.history), comparable(&full.history));
    // Without the momentum buffers the replay would differ: check that it does.
    std::fs::remove_file(b.path().join("checkpoint/optim.bpk")).unwrap();
    let e = fit(
        &cfg,
        &train,
        &valid,
        &devices(),
        &opts(b.path(), true, None),
    )
    .unwrap_err();
    assert!(e.to_string().contains("optim.bpk does not load"), "{e}");
}

#[test]
fn resume_after_a_kill_mid_swap_and_the_next_save_keep_a_checkpoint() {
    let (train, valid) = slice();
    let cfg = config().with_epochs(3);
    let dir = tempfile::tempdir().unwrap();
    fit(
        &cfg,
        &train,
        &valid,
        &devices(),
        &opts(dir.path(), false, Some(1)),
    )
    .unwrap();
    // A kill between the two renames of a save leaves only checkpoint.old/.
    std::fs::rename(
        dir.path().join("checkpoint"),
        dir.path().join("checkpoint.old"),
    )
    .unwrap();
    assert_eq!(
        Checkpoint::find(dir.path()),
        Some(dir.path().join("checkpoint.old"))
    );
    // The resumed run's next save must install checkpoint/ before dropping checkpoint.old/
    // (it is the only good copy until then).
    let r = fit(
        &cfg,
        &train,
        &valid,
        &devices(),
        &opts(dir.path(), true, Some(2)),
    )
    .unwrap();
    assert_eq!(r.resumed_from, Some(1));
    assert_eq!(r.history.len(), 2);
    assert_eq!(
        Checkpoint::find(dir.path()),
        Some(dir.path().join("checkpoint"))
    );
    assert!(!dir.path().join("checkpoint.old").exists());
    assert!(!dir.path().join("checkpoint.tmp").exists());
    assert_eq!(
        Checkpoint::read_state(&dir.path().join("checkpoint"))
            .unwrap()
            .epoch,
        2
    );
    let r = fit(
        &cfg,
        &train,
        &valid,
        &devices(),
        &opts(dir.path(), true, None),
    )
    .unwrap();
    assert_eq!(r.history.len(), 3);
}
