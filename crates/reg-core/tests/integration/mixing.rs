//! Label smoothing, the soft cross-entropy, mixup and cutmix against their definitions, and the
//! sampler's Beta distribution.

use bulwark_reg_core::*;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::{Device, Int, Tensor, TensorData};

fn dev() -> Device {
    Device::flex()
}

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.try_into_vec_as::<f32>().unwrap()
}

fn ints(v: Vec<i64>) -> Tensor<1, Int> {
    let n = v.len();
    Tensor::from_data(TensorData::new(v, [n]), &dev())
}

#[test]
fn smoothed_targets_and_the_soft_cross_entropy() {
    let t = host(smooth_labels(ints(vec![2, 0]), 4, 0.2).unwrap());
    let want = [0.05, 0.05, 0.85, 0.05, 0.85, 0.05, 0.05, 0.05];
    for (a, b) in t.iter().zip(want) {
        assert!((a - b).abs() < 1e-6, "{t:?}");
    }
    assert!(smooth_labels(ints(vec![0]), 4, 1.5).is_err());

    // One-hot targets give burn's cross-entropy; smoothed ones the hand-computed mix.
    let logits = Tensor::<2>::from_data(
        TensorData::new(vec![1.0f32, -0.5, 2.0, 0.3, 0.1, 0.7, -1.0, 0.0], [2, 4]),
        &dev(),
    );
    let labels = ints(vec![2, 0]);
    let ce = CrossEntropyLossConfig::new()
        .init(&dev())
        .forward(logits.clone(), labels.clone());
    let soft = soft_cross_entropy(
        logits.clone(),
        smooth_labels(labels.clone(), 4, 0.0).unwrap(),
    );
    assert!((ce.into_scalar::<f32>() - soft.into_scalar::<f32>()).abs() < 1e-6);
    let z = host(logits.clone());
    let mut want = 0.0f64;
    for (row, y) in z.chunks(4).zip([2usize, 0]) {
        let lse = row.iter().map(|&v| f64::from(v).exp()).sum::<f64>().ln();
        for (k, &v) in row.iter().enumerate() {
            let tk = if k == y { 0.85 } else { 0.05 };
            want -= tk * (f64::from(v) - lse);
        }
    }
    let got = f64::from(
        soft_cross_entropy(logits, smooth_labels(labels, 4, 0.2).unwrap()).into_scalar::<f32>(),
    );
    assert!((got - want / 2.0).abs() < 1e-5, "{got} vs {}", want / 2.0);
}

#[test]
fn mixup_and_cutmix_follow_their_definitions() {
    let (b, c, h, w) = (3, 2, 4, 5);
    let n = b * c * h * w;
    let x: Vec<f32> = (0..n).map(|i| i as f32 / n as f32).collect();
    let xt = Tensor::<4>::from_data(TensorData::new(x.clone(), [b, c, h, w]), &dev());
    let perm = vec![2, 0, 1];
    let lambda = 0.3;
    let mixed = host(mix(xt.clone(), lambda, &perm).unwrap());
    let per = c * h * w;
    for i in 0..b {
        for k in 0..per {
            let want =
                lambda as f32 * x[i * per + k] + (1.0 - lambda as f32) * x[perm[i] * per + k];
            assert!((mixed[i * per + k] - want).abs() < 1e-6);
        }
    }
    let targets = smooth_labels(ints(vec![0, 1, 2]), 3, 0.0).unwrap();
    let cut = CutBox {
        top: 1,
        bottom: 3,
        left: 2,
        right: 5,
    };
    // Not a permutation of the batch: refused.
    assert!(mix(xt.clone(), lambda, &[0, 0, 1]).is_err());
    assert!(mix(xt.clone(), lambda, &[0, 1]).is_err());
    assert!(cutmix(xt.clone(), targets.clone(), &[2, 1, 3], cut).is_err());
    let (xm, ym, kept) = cutmix(xt, targets, &perm, cut).unwrap();
    assert!((kept - (1.0 - 6.0 / 20.0)).abs() < 1e-12);
    let xm = host(xm);
    for i in 0..b {
        for ch in 0..c {
            for r in 0..h {
                for col in 0..w {
                    let k = (ch * h + r) * w + col;
                    let inside = (1..3).contains(&r) && (2..5).contains(&col);
                    let src = if inside { perm[i] } else { i };
                    assert_eq!(xm[i * per + k], x[src * per + k]);
                }
            }
        }
    }
    let ym = host(ym);
    // Sample 0 keeps 70 % of class 0 and takes 30 % of sample 2's class 2.
    assert!(
        (ym[0] - 0.7).abs() < 1e-6 && (ym[2] - 0.3).abs() < 1e-6,
        "{ym:?}"
    );
}

#[test]
fn the_sampler_draws_beta_permutations_and_boxes() {
    for alpha in [0.2, 1.0, 2.0] {
        let mut s = MixSampler::new(alpha, 7).unwrap();
        let draws: Vec<f64> = (0..20_000).map(|_| s.lambda()).collect();
        assert!(draws.iter().all(|l| (0.0..=1.0).contains(l)));
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        let var = draws.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / draws.len() as f64;
        // Beta(α, α): mean 1/2, variance 1/(4(2α + 1)).
        let want = 1.0 / (4.0 * (2.0 * alpha + 1.0));
        assert!((mean - 0.5).abs() < 0.01, "alpha {alpha}: mean {mean}");
        assert!(
            (var - want).abs() < 0.05 * want,
            "alpha {alpha}: variance {var} vs {want}"
        );
    }
    let mut s = MixSampler::new(1.0, 3).unwrap();
    let p = s.permutation(10);
    let mut sorted = p.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..10).collect::<Vec<_>>());
    assert_ne!(p, (0..10).collect::<Vec<_>>());
    // Boxes for λ = 0.75 cover a quarter of the image (sides 14) unless clipped at a border.
    for _ in 0..50 {
        let bx = s.cut_box(0.75, 28, 28);
        assert!(bx.top <= bx.bottom && bx.bottom <= 28 && bx.left <= bx.right && bx.right <= 28);
        let (hh, ww) = (bx.bottom - bx.top, bx.right - bx.left);
        assert!(hh <= 14 && ww <= 14, "{bx:?}");
        if bx.top > 0 && bx.bottom < 28 && bx.left > 0 && bx.right < 28 {
            assert_eq!((hh, ww), (14, 14), "{bx:?}");
        }
    }
    assert!(MixSampler::new(0.0, 1).is_err());
    // Same seed, same draws.
    let (mut a, mut b) = (
        MixSampler::new(0.4, 9).unwrap(),
        MixSampler::new(0.4, 9).unwrap(),
    );
    assert_eq!(a.lambda(), b.lambda());
}
