//! What APGD's two loops share (the L1 host loop in `apgd`, the L-inf/L2 device loop in
//! `apgd_device`): the published checkpoint schedule and the result of one run.

/// The published checkpoints, in the integer form of the reference code: the first after
/// `⌊0.22·N⌋` iterations, each interval then shorter by `⌊0.03·N⌋` down to `⌊0.06·N⌋` (all at
/// least 1), i.e. `p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)`.
pub(crate) fn checkpoints(n: usize) -> Vec<usize> {
    let frac = |p: f64| ((p * n as f64) as usize).max(1);
    let (mut len, shrink, shortest) = (frac(0.22), frac(0.03), frac(0.06));
    let mut w = Vec::new();
    let mut k = len;
    while k < n {
        w.push(k);
        len = len.saturating_sub(shrink).max(shortest);
        k += len;
    }
    w
}

/// What one run of the APGD loop found, per sample: the first fooling iterate (if any) and the
/// iterate with the highest objective.
pub(crate) struct Found {
    pub best_x: Vec<f32>,
    pub best_f: Vec<f32>,
    pub found: Vec<bool>,
    pub found_x: Vec<f32>,
}

#[cfg(test)]
mod tests {
    use super::checkpoints;

    #[test]
    fn checkpoints_follow_the_published_fractions() {
        // p = 0, 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99, ... (the increments shrink by
        // 0.03 down to 0.06): for N = 100 the step is checked at these iterations.
        assert_eq!(checkpoints(100), vec![22, 41, 57, 70, 80, 87, 93, 99]);
    }
}
