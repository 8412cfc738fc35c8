//! Text classification with embedding-space adversarial training: the SpamAssassin corpus or the
//! user's own ([`TextData::from_corpora`]), [`bulwark_models::TextCnn`] or the user's own burn
//! module ([`TextNetwork`], [`fit_text_network`]), the methods standard, FGM, PGD on embeddings
//! and FreeLB ([`TextMethod`]), every regularizer of image runs, exact resume, and clean and
//! embedding-space L2 robust accuracy ([`text_robustness`]).
//!
//! ```no_run
//! use bulwark_data::FetchOptions;
//! use bulwark_trainer::FitOptions;
//! use bulwark_trainer::text::{TextData, TextTrainConfig, fit_text, text_robustness};
//!
//! # fn main() -> Result<(), bulwark_trainer::TrainError> {
//! let cfg = TextTrainConfig::from_toml_file("configs/spam-textcnn-fgm.toml".as_ref())?;
//! let data = TextData::load(&cfg, &FetchOptions::from_env())?;
//! let device = burn::tensor::Device::default();
//! let opts = FitOptions { run_dir: "runs/spam-fgm".into(), resume: false, progress: true, stop_after_epoch: None };
//! let out = fit_text(&cfg, &data, &device, &opts)?;
//! let r = text_robustness(&out.model, &data.test, &cfg.eval, 500, 0, &device)?;
//! println!("clean {:.2} %, robust at eps {} {:.2} %", 100.0 * r.clean_acc, r.rows[0].eps, 100.0 * r.rows[0].worst_acc);
//! # Ok(())
//! # }
//! ```

mod config;
mod data;
mod fit;
mod method;
#[cfg(test)]
mod own_network_tests;
mod robust;
#[cfg(test)]
mod tests;

pub use bulwark_attack_core::TextNetwork;
pub use config::{TextEval, TextTrainConfig};
pub use data::TextData;
pub use fit::{TEXT_MODEL, TextFitOutcome, fit_text, fit_text_network, load_module};
pub use method::TextMethod;
pub use robust::{TextRobustRow, TextRobustness, embedding_bounds, text_accuracy, text_robustness};
