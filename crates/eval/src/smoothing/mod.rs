//! Certified robustness by randomized smoothing (Cohen, Rosenfeld & Kolter 2019): a base
//! classifier smoothed with Gaussian noise ([`Smoothed`]), `CERTIFY` (a certified L2 radius per
//! input, or abstain) and `PREDICT`, the statistics behind them ([`clopper_pearson_lower`],
//! [`binomial_test_half`], [`normal_quantile`]), and certification over a dataset with its
//! report ([`certify_dataset`]), and an attack on the smoothed classifier itself
//! ([`Smoothed::attack`], SmoothAdv) for its empirical robust accuracy.

mod attack;
mod certify_run;
mod confidence;
mod smoothed;
#[cfg(test)]
mod tests;

pub use attack::SmoothAttackConfig;
pub use certify_run::{
    CERTIFY_OUTPUTS, CertifiedSample, CertifyOptions, CertifyReport, RadiusRow, SmoothAttack,
    certify_dataset, write_certify_report,
};
pub use confidence::{binomial_test_half, clopper_pearson_lower, normal_quantile};
pub use smoothed::{Certificate, Smoothed, SmoothingConfig};
