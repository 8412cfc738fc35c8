//! Tests of the text methods on the committed SpamAssassin slice (real messages): every
//! perturbation inside the ball, a batch equal to its samples, exact resume, the regularizers with
//! every method, the robustness evaluation's order.

use std::path::PathBuf;

use bulwark_data::text::{TextCorpus, read_emails, split_spam_assassin};
use bulwark_models::{TextCnn, init_seeded_with, with_seeded_device};
use burn::prelude::*;

use super::fit::{Place, Sums, text_step};
use super::robust::{EmbeddingAttack, attack_embeddings};
use super::*;
use crate::regularize::Regularizers;
use crate::{FitOptions, build_optimizer};

/// The slice's 102 messages (all in the corpus's test split) as a 70-text training corpus and
/// a test corpus of the rest.
fn corpora() -> (TextCorpus, TextCorpus) {
    let slice = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../data/tests/fixtures/spam-assassin/spam-assassin-slice.tgz");
    let (_, all) = split_spam_assassin(&read_emails(&slice).unwrap());
    let part = |range: std::ops::Range<usize>| {
        let mut c = TextCorpus::empty(all.class_names.clone());
        for i in range {
            c.push(all.ids[i].clone(), all.texts[i].clone(), all.labels[i]);
        }
        c
    };
    (part(0..70), part(70..all.len()))
}

pub(super) fn tiny(method: TextMethod) -> TextTrainConfig {
    TextTrainConfig::new()
        .with_seq_len(32)
        .with_embed_dim(8)
        .with_filters(4)
        .with_kernel_sizes(vec![2, 3])
        .with_epochs(2)
        .with_batch_size(16)
        .with_valid_size(10)
        .with_vocab_words(500)
        .with_min_count(1)
        .with_lr(3e-3)
        .with_method(method)
        .with_eval(
            TextEval::new()
                .with_eps(vec![0.5])
                .with_steps(3)
                .with_restarts(1)
                .with_valid_steps(2),
        )
}

pub(super) const EPS: f64 = 0.5;

pub(super) fn methods() -> [TextMethod; 3] {
    [
        TextMethod::Fgm { eps: EPS },
        TextMethod::Pgd {
            eps: EPS,
            steps: 3,
            step_size: None,
        },
        TextMethod::Freelb {
            eps: EPS,
            steps: 3,
            step_size: 0.3,
            init_mag: 1.0,
        },
    ]
}

pub(super) fn data(cfg: &TextTrainConfig) -> TextData {
    let (train, test) = corpora();
    TextData::from_corpora(cfg, &train, &test).unwrap()
}

pub(super) fn model(cfg: &TextTrainConfig, data: &TextData, device: &Device) -> TextCnn {
    let vocab = data.vocab.len();
    init_seeded_with(&device.clone().autodiff(), 3, |d| {
        cfg.model_config(vocab).init(d)
    })
}

/// Per-sample L2 norms of `[B, L, E]`, on the host.
pub(super) fn host_norms(t: &Tensor<3>) -> Vec<f64> {
    let [b, l, e] = t.dims();
    let v: Vec<f32> = t.to_data().convert::<f32>().try_into_vec().unwrap();
    (0..b)
        .map(|i| {
            v[i * l * e..(i + 1) * l * e]
                .iter()
                .map(|&x| f64::from(x) * f64::from(x))
                .sum::<f64>()
                .sqrt()
        })
        .collect()
}

/// The perturbations one training step of `cfg` uses on the texts `rows` of the training set.
pub(super) fn step_deltas(
    cfg: &TextTrainConfig,
    data: &TextData,
    rows: &[usize],
) -> Vec<Tensor<3>> {
    step_deltas_of(cfg, model(cfg, data, &Device::flex()), data, rows)
}

/// [`step_deltas`] of any text network (on an autodiff flex device).
pub(super) fn step_deltas_of<M: TextNetwork>(
    cfg: &TextTrainConfig,
    model: M,
    data: &TextData,
    rows: &[usize],
) -> Vec<Tensor<3>> {
    let device = Device::flex();
    let mut optim = build_optimizer(&cfg.shared());
    let mut regs = Regularizers::new(&cfg.shared(), 2);
    let mut seen = Vec::new();
    let place = Place {
        epoch: 0,
        batch: 0,
        lr: 1e-3,
        seed: 11,
    };
    // Seeded and held like a step of `fit_text`: dropout draws from the process's device
    // generator, which the other tests running in parallel use too.
    with_seeded_device(&device, 5, || {
        text_step(
            cfg,
            model,
            &mut optim,
            &mut regs,
            data.train.batch(rows, &device),
            place,
            &mut Sums::default(),
            &mut |d| seen.push(d.clone()),
        )
    })
    .unwrap();
    seen
}

#[test]
fn every_training_perturbation_is_inside_the_ball() {
    for method in methods() {
        let cfg = tiny(method.clone());
        let data = data(&cfg);
        let deltas = step_deltas(&cfg, &data, &(0..16).collect::<Vec<_>>());
        // FGM and PGD train on one perturbation, FreeLB on one per ascent step.
        let steps = match method {
            TextMethod::Freelb { steps, .. } => steps,
            _ => 1,
        };
        assert_eq!(deltas.len(), steps, "{method:?}");
        let mut largest = 0f64;
        for d in &deltas {
            assert_eq!(d.dims(), [16, 32, 8]);
            for n in host_norms(d) {
                assert!(n <= EPS * (1.0 + 1e-5), "{method:?}: norm {n} > {EPS}");
                largest = largest.max(n);
            }
        }
        if matches!(method, TextMethod::Fgm { .. }) {
            // FGM's step has length eps exactly (the gradient is never zero here).
            for n in host_norms(&deltas[0]) {
                assert!((n - EPS).abs() < 1e-3 * EPS, "fgm norm {n}");
            }
        }
        assert!(largest > 0.5 * EPS, "{method:?}: largest {largest}");
    }
}

#[test]
fn a_batch_perturbs_each_text_as_it_would_alone() {
    for method in methods() {
        // No dropout: FreeLB ascends in training behaviour, and dropout masks are drawn per batch.
        let cfg = tiny(method.clone()).with_dropout(0.0);
        let data = data(&cfg);
        let rows = [2, 7, 11];
        let batch = step_deltas(&cfg, &data, &rows);
        for (j, &row) in rows.iter().enumerate() {
            let alone = step_deltas(&cfg, &data, &[row]);
            assert_eq!(batch.len(), alone.len());
            for (b, a) in batch.iter().zip(&alone) {
                b.clone()
                    .narrow(0, j, 1)
                    .to_data()
                    .assert_approx_eq::<f32>(&a.to_data(), burn::tensor::Tolerance::absolute(1e-5));
            }
        }
    }
}

/// A run's history without its timings and memory, which differ between runs.
pub(super) fn comparable(history: &[crate::EpochMetrics]) -> Vec<String> {
    history
        .iter()
        .map(|m| {
            let mut m = m.clone();
            (m.seconds, m.images_per_sec, m.rss_mib) = (0.0, 0.0, None);
            serde_json::to_string(&m).unwrap()
        })
        .collect()
}

#[test]
fn a_resumed_run_equals_an_uninterrupted_one() {
    let device = Device::flex();
    for method in [methods()[1].clone(), methods()[2].clone()] {
        let cfg = tiny(method);
        let data = data(&cfg);
        let dir = tempfile::tempdir().unwrap();
        let opts = |name: &str, resume, stop| FitOptions {
            run_dir: dir.path().join(name),
            resume,
            progress: false,
            stop_after_epoch: stop,
        };
        let whole = fit_text(&cfg, &data, &device, &opts("whole", false, None)).unwrap();
        let first = fit_text(&cfg, &data, &device, &opts("parts", false, Some(1))).unwrap();
        assert!(!first.finished);
        assert_eq!(first.history.len(), 1);
        // A fresh start into a run directory with a checkpoint is refused.
        assert!(fit_text(&cfg, &data, &device, &opts("parts", false, None)).is_err());
        let rest = fit_text(&cfg, &data, &device, &opts("parts", true, None)).unwrap();
        assert_eq!(rest.resumed_from, Some(1));
        assert!(rest.finished);
        assert_eq!(comparable(&rest.history), comparable(&whole.history));
        assert_eq!(rest.best, whole.best);
        let (ids, _) = data
            .test
            .batch(&(0..data.test.len()).collect::<Vec<_>>(), &device);
        rest.model
            .forward(ids.clone())
            .to_data()
            .assert_eq(&whole.model.forward(ids).to_data(), true);
        // A resume with another configuration is refused, naming the reason.
        let other = cfg.clone().with_lr(1e-2);
        let config = std::fs::read(dir.path().join("parts/config.toml")).unwrap();
        let e = fit_text(&other, &data, &device, &opts("parts", true, None)).unwrap_err();
        assert!(e.to_string().contains("different configuration"), "{e}");
        let after = std::fs::read(dir.path().join("parts/config.toml")).unwrap();
        assert_eq!(
            after, config,
            "a refused resume leaves the run's files as they were"
        );
        for file in [
            "config.toml",
            "vocab.json",
            "metrics.jsonl",
            "best.bpk",
            "model.bpk",
        ] {
            assert!(dir.path().join("whole").join(file).is_file(), "{file}");
        }
    }
}

#[test]
fn the_regularizers_combine_with_every_method() {
    let device = Device::flex();
    let regularized = |method| {
        let text = "label_smoothing = 0.1\n\
                    mixing = { kind = \"mixup\", alpha = 0.4 }\n\
                    spectral_bound = { max = 2.0, select = { include = [\"fc.weight\"] } }\n\
                    [[penalties]]\nkind = \"l2\"\nlambda = 1e-3\n\
                    [[constraints]]\nkind = \"max-norm\"\nmax = 3.0\n";
        let base = TextTrainConfig::from_toml_str(text, "regularized.toml".as_ref()).unwrap();
        let t = tiny(method);
        t.with_label_smoothing(base.label_smoothing)
            .with_mixing(base.mixing)
            .with_penalties(base.penalties)
            .with_constraints(base.constraints)
            .with_spectral_bound(base.spectral_bound)
            .with_epochs(1)
    };
    for method in std::iter::once(TextMethod::Standard).chain(methods()) {
        let cfg = regularized(method.clone());
        let data = data(&cfg);
        let dir = tempfile::tempdir().unwrap();
        let opts = FitOptions {
            run_dir: dir.path().to_path_buf(),
            resume: false,
            progress: false,
            stop_after_epoch: None,
        };
        let out = fit_text(&cfg, &data, &device, &opts).unwrap();
        let m = &out.history[0];
        assert!(
            m.penalty.is_some_and(|p| p.is_finite() && p > 0.0),
            "{method:?}: {m:?}"
        );
        assert!(m.train_loss.is_finite(), "{method:?}");
        assert_eq!(m.valid_robust_acc.is_some(), method.eps().is_some());
        // Under mixup the training batch has no single label per text: no adversarial accuracy.
        assert_eq!(m.train_adv_acc, None, "{method:?}");
        let ids = data.test.batch(&[0], &device).0;
        let logits: Vec<f32> = out
            .model
            .forward(ids)
            .to_data()
            .convert::<f32>()
            .try_into_vec()
            .unwrap();
        assert!(logits.iter().all(|v| v.is_finite()), "{method:?}");
    }
}

#[test]
fn robust_accuracy_is_ordered_and_every_attack_stays_in_the_ball() {
    let device = Device::flex();
    let cfg = tiny(TextMethod::Standard).with_epochs(3);
    let data = data(&cfg);
    let dir = tempfile::tempdir().unwrap();
    let opts = FitOptions {
        run_dir: dir.path().to_path_buf(),
        resume: false,
        progress: false,
        stop_after_epoch: None,
    };
    let model = fit_text(&cfg, &data, &device, &opts).unwrap().model;
    let r = text_robustness(
        &model,
        &data.test,
        &TextEval::new()
            .with_eps(vec![0.1, 1.0, 10.0])
            .with_steps(5)
            .with_restarts(2),
        8,
        0,
        &device,
    )
    .unwrap();
    assert_eq!(r.texts, data.test.len());
    // Embeddings start as N(0, 1) draws: 32 positions x 8 widths, a norm near 16.
    assert!(r.embedding_norm > 8.0 && r.embedding_norm < 32.0, "{r:?}");
    let mut previous = r.clean_acc;
    for row in &r.rows {
        assert!(row.worst_acc <= row.pgd_acc.min(row.apgd_acc), "{row:?}");
        assert!(row.worst_acc <= previous, "{row:?} after {previous}");
        previous = row.worst_acc;
    }
    let (ids, y) = data.test.batch(&[0, 1, 2, 3], &device);
    let e0 = model.embed(ids);
    for attack in [
        EmbeddingAttack::Fgm,
        EmbeddingAttack::Pgd {
            steps: 4,
            restarts: 2,
            step_size: None,
        },
        EmbeddingAttack::Apgd { steps: 4 },
    ] {
        for eps in [0.1, 2.0] {
            let adv =
                attack_embeddings(&model, e0.clone(), y.clone(), eps, attack, 1, true).unwrap();
            for n in host_norms(&(adv - e0.clone())) {
                assert!(n <= eps * (1.0 + 1e-5), "{attack:?} at {eps}: {n}");
            }
        }
    }
}

#[test]
fn bad_configurations_are_refused_with_the_reason() {
    let parse = |text: &str| {
        TextTrainConfig::from_toml_str(text, "x.toml".as_ref())
            .unwrap_err()
            .to_string()
    };
    assert!(parse("vocab = 3").contains("unknown key `vocab`"));
    assert!(parse("seq_len = 2").contains("widest convolution"));
    assert!(parse("[method]\nkind = \"fgm\"\neps = 0.0").contains("eps must be > 0"));
    assert!(parse("[method]\nkind = \"freelb\"\neps = 1.0").contains("step_size"));
    assert!(parse("dataset = \"imdb\"").contains("spam-assassin"));
    assert!(parse("[eval]\neps = []").contains("eval.eps"));
    assert!(parse("mixing = { kind = \"cutmix\", alpha = 1.0 }").contains("text runs take mixup"));
    let cfg = TextTrainConfig::from_toml_str(
        "[method]\nkind = \"pgd\"\neps = 2.0\nsteps = 5\n",
        "x.toml".as_ref(),
    )
    .unwrap();
    assert_eq!(
        cfg.method,
        TextMethod::Pgd {
            eps: 2.0,
            steps: 5,
            step_size: None
        }
    );
    let again = TextTrainConfig::from_toml_str(&cfg.to_toml(), "x.toml".as_ref()).unwrap();
    assert_eq!(again.to_toml(), cfg.to_toml());
}

#[test]
fn every_text_recipe_parses_validates_and_round_trips() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("spam-") && name.ends_with(".toml") {
            let cfg = TextTrainConfig::from_toml_file(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let again = TextTrainConfig::from_toml_str(&cfg.to_toml(), &path).unwrap();
            assert_eq!(again.to_toml(), cfg.to_toml(), "{name}");
            n += 1;
        }
    }
    assert!(n >= 6, "only {n} text recipes in {}", dir.display());
}

#[test]
fn a_checkpoint_from_before_a_setting_existed_still_describes_the_text_config() {
    let cfg = TextTrainConfig::new();
    let stored = cfg.to_toml();
    assert!(cfg.is_described_by(&stored));
    // A line left out (as by a version before the setting existed) means its default.
    let old: String = stored
        .lines()
        .filter(|l| !l.starts_with("seed "))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(old, stored);
    assert!(cfg.is_described_by(&old));
    let seed = cfg.seed + 1;
    assert!(!cfg.clone().with_seed(seed).is_described_by(&old));
    // A user's corpus (not SpamAssassin) must not make the old checkpoint unreadable.
    let mine = cfg.with_dataset("my-corpus".into());
    let old: String = mine
        .to_toml()
        .lines()
        .filter(|l| !l.starts_with("seed "))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(mine.is_described_by(&old));
}
