//! Tests of the text trainer with a network that is not Bulwark's ([`TextNetwork`] written here,
//! as a user would), and of the training perturbations' exact values against gradients computed
//! here independently.

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::prelude::*;

use super::robust::{EmbeddingAttack, attack_embeddings};
use super::tests::{
    EPS, comparable, data, host_norms, methods, model, step_deltas, step_deltas_of, tiny,
};
use super::*;
use crate::{Checkpoint, FitOptions};
use bulwark_models::init_seeded_with;

/// Word embeddings plus learned position embeddings, averaged over the sequence, then a linear
/// layer: a model whose embeddings are not rows of one table.
#[derive(Module, Debug)]
struct PositionalBag {
    words: Embedding,
    positions: Embedding,
    fc: Linear,
}

impl TextNetwork for PositionalBag {
    fn embed(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let [b, l] = ids.dims();
        let at = Tensor::<1, Int>::arange(0..l as i64, &ids.device()).unsqueeze::<2>();
        let positions = self.positions.forward(at).repeat_dim(0, b);
        self.words.forward(ids) + positions
    }

    fn forward_embedded(&self, embedded: Tensor<3>) -> Tensor<2> {
        self.fc.forward(embedded.mean_dim(1).squeeze_dim::<2>(1))
    }
}

/// [`PositionalBag`] with every embedding shifted by 10, far from the word table's values: a box
/// taken from the table would not contain them.
#[derive(Module, Debug)]
struct Shifted {
    inner: PositionalBag,
}

impl TextNetwork for Shifted {
    fn embed(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        self.inner.embed(ids) + 10.0
    }

    fn forward_embedded(&self, embedded: Tensor<3>) -> Tensor<2> {
        self.inner.forward_embedded(embedded - 10.0)
    }
}

/// The builder a user hands to [`fit_text_network`], embeddings of width `width`.
fn builder(vocab: usize, seq_len: usize, width: usize) -> impl Fn(&Device) -> PositionalBag {
    move |d: &Device| PositionalBag {
        words: EmbeddingConfig::new(vocab, width).init(d),
        positions: EmbeddingConfig::new(seq_len, width).init(d),
        fc: LinearConfig::new(width, 2).init(d),
    }
}

fn options(dir: &std::path::Path, resume: bool, stop: Option<usize>) -> FitOptions {
    FitOptions {
        run_dir: dir.to_path_buf(),
        resume,
        progress: false,
        stop_after_epoch: stop,
    }
}

#[test]
fn a_users_own_text_network_trains_resumes_and_is_evaluated() {
    let device = Device::flex();
    let cfg = tiny(methods()[1].clone()).with_epochs(3);
    let data = data(&cfg);
    let build = builder(data.vocab.len(), cfg.seq_len, 8);
    let dir = tempfile::tempdir().unwrap();
    let (whole, parts) = (dir.path().join("whole"), dir.path().join("parts"));

    let out =
        fit_text_network(&cfg, &build, &data, &device, &options(&whole, false, None)).unwrap();
    assert_eq!(out.history.len(), 3);
    assert!(out.history.iter().all(|m| m.valid_robust_acc.is_some()));
    // The network learns: a lower training loss after 3 epochs than after 1.
    assert!(
        out.history[2].train_loss < out.history[0].train_loss,
        "{:?}",
        out.history
    );
    let state = Checkpoint::read_state(&whole.join(Checkpoint::DIR)).unwrap();
    assert_eq!(state.model, "PositionalBag");

    // Killed after epoch 1 and resumed: the same run.
    let first = fit_text_network(
        &cfg,
        &build,
        &data,
        &device,
        &options(&parts, false, Some(1)),
    )
    .unwrap();
    assert!(!first.finished);
    let rest =
        fit_text_network(&cfg, &build, &data, &device, &options(&parts, true, None)).unwrap();
    assert_eq!(rest.resumed_from, Some(1));
    assert_eq!(comparable(&rest.history), comparable(&out.history));
    let (ids, _) = data
        .test
        .batch(&(0..data.test.len()).collect::<Vec<_>>(), &device);
    rest.model
        .forward(ids.clone())
        .to_data()
        .assert_eq(&out.model.forward(ids).to_data(), true);

    // Another architecture does not resume this run, and the message names both.
    let e = fit_text(&cfg, &data, &device, &options(&parts, true, None)).unwrap_err();
    let e = e.to_string();
    assert!(e.contains("PositionalBag") && e.contains("text-cnn"), "{e}");
    // A fresh start into it is refused with the text command to resume it.
    let e = fit_text_network(&cfg, &build, &data, &device, &options(&parts, false, None))
        .unwrap_err()
        .to_string();
    assert!(e.contains("FitOptions::resume"), "{e}");
    // The CLI's TextCnn runs name the CLI.
    let cnn = dir.path().join("cnn");
    fit_text(&cfg, &data, &device, &options(&cnn, false, Some(1))).unwrap();
    let e = fit_text(&cfg, &data, &device, &options(&cnn, false, None))
        .unwrap_err()
        .to_string();
    assert!(e.contains("bulwark text train --resume"), "{e}");

    // Evaluated like the zoo's model: ordered accuracies at growing radii (on the texts it was
    // trained on, which it fits; the slice's test part is small and of one class).
    let r = text_robustness(
        &out.model,
        &data.train,
        &TextEval::new()
            .with_eps(vec![0.05, 0.5, 5.0])
            .with_steps(5)
            .with_restarts(1),
        8,
        0,
        &device,
    )
    .unwrap();
    let mut previous = r.clean_acc;
    for row in &r.rows {
        assert!(row.worst_acc <= row.pgd_acc.min(row.apgd_acc), "{row:?}");
        assert!(row.worst_acc <= previous, "{row:?} after {previous}");
        previous = row.worst_acc;
    }
    assert!(r.clean_acc > 0.7, "{r:?}");
    assert!(r.rows[2].worst_acc < r.clean_acc, "{r:?}");
}

#[test]
fn attacks_on_a_users_network_stay_in_the_ball_and_training_perturbations_too() {
    let device = Device::flex();
    let cfg = tiny(methods()[0].clone());
    let data = data(&cfg);
    // Width 6, not the configuration's embed_dim (8): the methods must take the network's.
    let build = builder(data.vocab.len(), cfg.seq_len, 6);
    // Position embeddings make each text's embeddings leave the word table's range: the box
    // handed to attacks comes from the embeddings themselves, so it must still never bind.
    let net = Shifted {
        inner: init_seeded_with(&device, 4, &build),
    };
    let (ids, y) = data.test.batch(&(0..12).collect::<Vec<_>>(), &device);
    let e0 = net.embed(ids);
    for attack in [
        EmbeddingAttack::Fgm,
        EmbeddingAttack::Pgd {
            steps: 5,
            restarts: 2,
            step_size: None,
        },
        EmbeddingAttack::Apgd { steps: 5 },
    ] {
        let adv = attack_embeddings(&net, e0.clone(), y.clone(), 3.0, attack, 1, false).unwrap();
        let moved = host_norms(&(adv - e0.clone()));
        if matches!(attack, EmbeddingAttack::Fgm) {
            // One step of length eps exactly: nothing clipped it.
            assert!(moved.iter().all(|&n| (n - 3.0).abs() < 1e-3), "{moved:?}");
        }
        assert!(
            moved.iter().all(|&n| n <= 3.0 * (1.0 + 1e-5)),
            "{attack:?}: {moved:?}"
        );
        // The box does not bind: the attacks reach the sphere (FGM exactly).
        assert!(moved.iter().any(|&n| n > 2.9), "{attack:?}: {moved:?}");
    }
    for method in methods() {
        let cfg = tiny(method.clone());
        let model = init_seeded_with(&device.clone().autodiff(), 4, &build);
        let deltas = step_deltas_of(&cfg, model, &data, &(0..16).collect::<Vec<_>>());
        for d in &deltas {
            assert_eq!(d.dims(), [16, 32, 6]);
            for n in host_norms(d) {
                assert!(n <= EPS * (1.0 + 1e-5), "{method:?}: norm {n}");
            }
        }
    }
}

/// `eps · g / ‖g‖₂` per text, `g` the gradient of the mean cross-entropy with respect to the
/// embeddings of the texts `rows`, in inference behaviour: computed here with burn's autodiff,
/// apart from attack-core and the trainer.
fn normalized_gradient(
    cfg: &TextTrainConfig,
    data: &TextData,
    rows: &[usize],
    eps: f64,
) -> Tensor<3> {
    let device = Device::flex();
    let net = model(cfg, data, &device).valid();
    let (ids, y) = data.train.batch(rows, &device);
    let e = net.embed(ids).autodiff().require_grad();
    let loss = CrossEntropyLossConfig::new()
        .init(&device)
        .forward(net.forward_embedded(e.clone()), y);
    let g = e.grad(&loss.backward()).unwrap();
    let norms = g.clone().powf_scalar(2.0).sum_dim(2).sum_dim(1).sqrt();
    g / norms * eps
}

#[test]
fn fgm_and_freelb_step_along_the_normalized_embedding_gradient() {
    let rows: Vec<usize> = (0..8).collect();
    let tol = burn::tensor::Tolerance::absolute(1e-5);
    // No dropout: FreeLB ascends in training behaviour, which then equals inference.
    let fgm = tiny(TextMethod::Fgm { eps: EPS }).with_dropout(0.0);
    let data = data(&fgm);
    let expected = normalized_gradient(&fgm, &data, &rows, EPS);
    step_deltas(&fgm, &data, &rows)[0]
        .to_data()
        .assert_approx_eq::<f32>(&expected.to_data(), tol);

    // FreeLB from δ₀ = 0: δ₁ = α·g/‖g‖ (α < eps, so the projection leaves it), the same
    // direction (its loss is the cross-entropy divided by K).
    let alpha = 0.3;
    let freelb = fgm.clone().with_method(TextMethod::Freelb {
        eps: EPS,
        steps: 2,
        step_size: alpha,
        init_mag: 0.0,
    });
    let deltas = step_deltas(&freelb, &data, &rows);
    assert_eq!(deltas.len(), 2);
    assert!(host_norms(&deltas[0]).iter().all(|&n| n == 0.0));
    deltas[1]
        .to_data()
        .assert_approx_eq::<f32>(&(expected * (alpha / EPS)).to_data(), tol);
}
