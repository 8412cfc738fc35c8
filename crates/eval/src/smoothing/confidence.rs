//! The statistics randomized smoothing certifies with: an exact one-sided binomial lower
//! confidence bound (Clopper-Pearson), the two-sided binomial test at `p = 1/2`, and the standard
//! normal quantile. Special functions come from `statrs`.

use statrs::function::beta::{beta_reg, inv_beta_reg};
use statrs::function::erf::erfc_inv;

/// The one-sided Clopper-Pearson lower bound on a success probability `p` from `k` successes in
/// `n` trials: with probability at least `1 − alpha` over the trials, `p ≥` the bound. It is the
/// `alpha` quantile of `Beta(k, n − k + 1)` (0 when `k = 0`), as in Cohen et al.'s `CERTIFY`
/// (statsmodels' `proportion_confint(k, n, alpha=2·alpha, method="beta")[0]`).
///
/// ```
/// use bulwark_eval::smoothing::clopper_pearson_lower;
///
/// // All 100 trials succeed: p ≥ alpha^(1/n) = 0.001^(1/100).
/// let lower = clopper_pearson_lower(100, 100, 0.001);
/// assert!((lower - 0.001f64.powf(0.01)).abs() < 1e-12);
/// assert_eq!(clopper_pearson_lower(0, 100, 0.001), 0.0);
/// ```
///
/// # Panics
/// If `k > n`, `n = 0` or `alpha` is not in `(0, 1)`; callers validate these first.
pub fn clopper_pearson_lower(k: u64, n: u64, alpha: f64) -> f64 {
    assert!(
        n > 0 && k <= n,
        "clopper_pearson_lower: need 0 <= k <= n, n > 0"
    );
    assert!(
        alpha > 0.0 && alpha < 1.0,
        "clopper_pearson_lower: alpha in (0, 1)"
    );
    if k == 0 {
        return 0.0;
    }
    if k == n {
        // The closed form, exact where the general inversion loses digits.
        return alpha.powf(1.0 / n as f64);
    }
    inv_beta_reg(k as f64, (n - k + 1) as f64, alpha)
}

/// The two-sided p-value of `k` successes in `n` trials under `p = 1/2`: the probability of an
/// outcome at least as far from `n/2` as `k` (scipy's `binomtest(k, n, 0.5).pvalue`). 1 when
/// `n = 0`.
///
/// ```
/// use bulwark_eval::smoothing::binomial_test_half;
///
/// // 9 of 10: P(X >= 9) + P(X <= 1) = 2 · 11/1024.
/// assert!((binomial_test_half(9, 10) - 22.0 / 1024.0).abs() < 1e-12);
/// assert_eq!(binomial_test_half(5, 10), 1.0);
/// ```
///
/// # Panics
/// If `k > n`.
pub fn binomial_test_half(k: u64, n: u64) -> f64 {
    assert!(k <= n, "binomial_test_half: need k <= n");
    if n == 0 {
        return 1.0;
    }
    let far = k.max(n - k);
    if 2 * far == n {
        return 1.0;
    }
    // P(X >= far) = I_{1/2}(far, n − far + 1), doubled by symmetry.
    (2.0 * beta_reg(far as f64, (n - far + 1) as f64, 0.5)).min(1.0)
}

/// The standard normal quantile `Φ⁻¹(p)` for `p` in `(0, 1)`.
///
/// ```
/// use bulwark_eval::smoothing::normal_quantile;
///
/// assert_eq!(normal_quantile(0.5), 0.0);
/// assert!((normal_quantile(0.975) - 1.959963984540054).abs() < 1e-12);
/// ```
pub fn normal_quantile(p: f64) -> f64 {
    -std::f64::consts::SQRT_2 * erfc_inv(2.0 * p)
}
