//! Tests of randomized smoothing: the statistics against values computed independently (mpmath,
//! 40 digits: the exact binomial tail, bisected), `CERTIFY` and `PREDICT` against the closed form
//! of a linear classifier, the bound's coverage over many inputs, and certification over real
//! MNIST images with resume.

use burn::tensor::{Device, Tensor, TensorData};

use super::*;

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs().max(1e-300)
}

#[test]
fn the_statistics_match_independently_computed_values() {
    // mpmath: bisection on P(Bin(n, p) >= k) = alpha.
    for (k, n, alpha, want) in [
        (990, 1000, 0.001, 0.976_036_187_155_311_4),
        (60, 100, 0.05, 0.512_975_820_253_894_4),
        (5123, 10_000, 0.001, 0.496_799_343_762_753_5),
        (99_990, 100_000, 0.001, 0.999_758_677_343_591_2),
        (1, 10, 0.1, 0.010_480_741_793_785_608),
    ] {
        let got = clopper_pearson_lower(k, n, alpha);
        assert!(
            close(got, want, 1e-9),
            "({k}, {n}, {alpha}): {got} vs {want}"
        );
    }
    // mpmath: 2 · Σ_{j ≥ max(k, n−k)} C(n, j) / 2ⁿ.
    for (k, n, want) in [
        (60, 100, 0.056_887_933_640_980_79),
        (530, 1000, 0.062_023_195_098_363_18),
        (9, 10, 0.021_484_375),
        (1, 10, 0.021_484_375),
        (7, 7, 0.015_625),
    ] {
        let got = binomial_test_half(k, n);
        assert!(close(got, want, 1e-9), "({k}, {n}): {got} vs {want}");
    }
    for (p, want) in [
        (0.999, 3.090_232_306_167_813),
        (0.6, 0.253_347_103_135_799_7),
        (0.01, -2.326_347_874_040_841),
    ] {
        let got = normal_quantile(p);
        assert!(close(got, want, 1e-12), "{p}: {got} vs {want}");
    }
}

/// Class 1 where `x₀ > 0.5`, else class 0: a linear classifier whose smoothed classifier is
/// known exactly. At signed distance `t = x₀ − 0.5`, class 1 has probability `Φ(t/σ)` under
/// `N(0, σ²)` noise, and the exact certified radius is `|t|`.
fn linear(x: Tensor<2>) -> Tensor<2> {
    let s = x.narrow(1, 0, 1) - 0.5;
    Tensor::cat(vec![s.clone().neg(), s], 1)
}

/// Points `(0.5 + t, j / 1000)` for `j` in `0..count`: the same distance, different noise seeds.
fn points(t: f64, count: usize) -> Tensor<2> {
    let v: Vec<f32> = (0..count)
        .flat_map(|j| [(0.5 + t) as f32, j as f32 / 1000.0])
        .collect();
    Tensor::from_data(TensorData::new(v, [count, 2]), &Device::flex())
}

/// The standard normal CDF, from the quantile by bisection (independent of `normal_quantile`'s
/// use below only in being its inverse).
fn phi(z: f64) -> f64 {
    let (mut lo, mut hi) = (1e-300, 1.0 - 1e-16);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if normal_quantile(mid) < z {
            lo = mid
        } else {
            hi = mid
        }
    }
    0.5 * (lo + hi)
}

#[test]
fn certify_on_a_linear_classifier_matches_the_closed_form() {
    let sigma = 0.25;
    let cfg = SmoothingConfig::new(sigma).with_n(20_000).with_seed(3);
    let smoothed = Smoothed::new(&linear, cfg).unwrap();
    for t in [0.05, 0.3, -0.3] {
        let c = smoothed.certify(points(t, 4)).unwrap();
        let p = phi(t.abs() / sigma);
        let sd = (p * (1.0 - p) / 20_000.0).sqrt();
        for c in c {
            assert_eq!(c.class, Some(usize::from(t > 0.0)), "t {t}: {c:?}");
            // The noise is N(0, σ²): the vote share is Φ(|t|/σ) within 5 standard deviations.
            let share = c.count as f64 / 20_000.0;
            assert!((share - p).abs() < 5.0 * sd, "t {t}: share {share} vs {p}");
            // Sound (never past the boundary) and tight (within the bound's slack).
            assert!(c.radius <= t.abs(), "t {t}: {c:?}");
            assert!(c.radius > t.abs() - 0.02, "t {t}: {c:?}");
            assert!((c.radius - sigma * normal_quantile(c.p_lower)).abs() < 1e-12);
        }
    }
    // On the boundary the vote is a fair coin: CERTIFY abstains.
    for c in smoothed.certify(points(0.0, 4)).unwrap() {
        assert_eq!(c.class, None, "{c:?}");
        assert_eq!(c.radius, 0.0);
        assert!(c.p_lower < 0.5);
    }
}

#[test]
fn the_lower_bound_holds_as_often_as_alpha_allows_and_no_more_rarely_than_it_must() {
    // 400 inputs with P(class 1) = 0.7 exactly; n = 200, alpha = 0.05. The bound exceeds 0.7
    // (a radius past the exact one) when at least 152 of 200 votes are for class 1: probability
    // 0.0359 per input (exact binomial tail, mpmath), so 14.4 of 400 on average.
    let sigma = 0.25;
    let t = sigma * normal_quantile(0.7);
    let cfg = SmoothingConfig::new(sigma)
        .with_n(200)
        .with_alpha(0.05)
        .with_seed(11);
    let smoothed = Smoothed::new(&linear, cfg).unwrap();
    let certificates = smoothed.certify(points(t, 400)).unwrap();
    let over = certificates
        .iter()
        .filter(|c| c.class == Some(1) && c.radius > t)
        .count();
    assert!(
        (3..=30).contains(&over),
        "{over} of 400 certificates exceed the exact radius"
    );
    assert!(certificates.iter().all(|c| c.class != Some(0)));
}

#[test]
fn predict_abstains_on_a_tie_and_answers_away_from_it() {
    let cfg = SmoothingConfig::new(0.25).with_alpha(0.05).with_seed(5);
    let smoothed = Smoothed::new(&linear, cfg).unwrap();
    // On the boundary a class is returned only when the test errs: at most alpha of the time
    // (Cohen et al., Proposition 1): 10 of 200 on average.
    let answered = smoothed
        .predict(points(0.0, 200), 1000)
        .unwrap()
        .iter()
        .filter(|p| p.is_some())
        .count();
    assert!(answered <= 22, "{answered} of 200 ties answered");
    for (t, class) in [(0.2, 1), (-0.2, 0)] {
        let p = smoothed.predict(points(t, 5), 1000).unwrap();
        assert!(p.iter().all(|&p| p == Some(class)), "t {t}: {p:?}");
    }
}

#[test]
fn a_batch_certifies_each_input_as_it_would_alone_and_a_seed_reproduces_it() {
    let cfg = SmoothingConfig::new(0.5).with_n(500).with_batch_size(64);
    let smoothed = Smoothed::new(&linear, cfg.clone()).unwrap();
    let x = points(0.1, 3);
    let batch = smoothed.certify(x.clone()).unwrap();
    for (i, whole) in batch.iter().enumerate() {
        assert_eq!(
            smoothed.certify(x.clone().narrow(0, i, 1)).unwrap()[0],
            *whole
        );
    }
    // The noise batch size does not change the draws.
    let other = Smoothed::new(&linear, cfg.clone().with_batch_size(500)).unwrap();
    assert_eq!(other.certify(x.clone()).unwrap(), batch);
    let reseeded = Smoothed::new(&linear, cfg.with_seed(1)).unwrap();
    assert_ne!(reseeded.certify(x).unwrap(), batch);
}

#[test]
fn bad_settings_and_inputs_are_refused_with_the_reason() {
    let refused = |cfg: SmoothingConfig| Smoothed::new(&linear, cfg).unwrap_err().to_string();
    assert!(refused(SmoothingConfig::new(0.0)).contains("sigma"));
    assert!(refused(SmoothingConfig::new(f64::NAN)).contains("sigma"));
    assert!(refused(SmoothingConfig::new(0.25).with_alpha(1.0)).contains("alpha"));
    assert!(refused(SmoothingConfig::new(0.25).with_n(0)).contains("n0, n and batch_size"));
    let smoothed = Smoothed::new(&linear, SmoothingConfig::new(0.25).with_n(10)).unwrap();
    let nan = Tensor::<2>::from_data(
        TensorData::new(vec![f32::NAN, 0.0], [1, 2]),
        &Device::flex(),
    );
    assert!(
        smoothed
            .certify(nan)
            .unwrap_err()
            .to_string()
            .contains("finite")
    );
    assert!(smoothed.predict(points(0.1, 1), 0).is_err());
}

#[test]
fn the_largest_radius_is_reached_when_every_vote_agrees() {
    let cfg = SmoothingConfig::new(0.5).with_n(1000).with_alpha(0.001);
    // Far from the boundary every vote is for class 1: p_lower = alpha^(1/n).
    let c = Smoothed::new(&linear, cfg.clone())
        .unwrap()
        .certify(points(5.0, 1))
        .unwrap()[0];
    assert_eq!(c.count, 1000);
    assert!((c.radius - cfg.max_radius()).abs() < 1e-12, "{c:?}");
    assert!((cfg.max_radius() - 0.5 * normal_quantile(0.001f64.powf(1e-3))).abs() < 1e-12);
}

mod dataset {
    use bulwark_data::{DatasetKind, Split, load_split};
    use bulwark_models::Model;

    use super::*;

    fn mnist() -> bulwark_data::ImageDataset {
        let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/tests/fixtures/mnist");
        load_split(DatasetKind::Mnist, Split::Test, fixtures.as_ref())
            .unwrap()
            .take(6)
    }

    fn opts(resume: bool) -> CertifyOptions {
        CertifyOptions {
            resume,
            progress: false,
            source: "small-cnn (seed 0), MNIST fixture slice".into(),
            command: "bulwark certify ...".into(),
            attack: None,
        }
    }

    #[test]
    fn a_certification_resumes_after_a_kill_and_reports_a_falling_curve() {
        let device = Device::flex();
        let model = Model::init_seeded("small-cnn", &device, 0).unwrap();
        let data = mnist();
        let cfg = SmoothingConfig::new(0.25)
            .with_n0(20)
            .with_n(200)
            .with_batch_size(100);
        let radii = [0.0, 0.1, 0.25, 0.5];
        let dir = tempfile::tempdir().unwrap();
        let (whole, parts) = (dir.path().join("whole"), dir.path().join("parts"));
        let report =
            certify_dataset(&model, &data, &cfg, &radii, &opts(false), &whole, &device).unwrap();
        assert_eq!(report.n_examples, 6);
        for file in CERTIFY_OUTPUTS {
            assert!(whole.join(file).is_file(), "{file}");
        }
        assert_eq!(report.rows[0].certified_acc, report.smoothed_acc);
        assert!(
            report
                .rows
                .windows(2)
                .all(|w| w[1].certified_acc <= w[0].certified_acc)
        );
        assert!(
            report
                .samples
                .iter()
                .all(|s| s.certificate.radius <= report.max_radius)
        );
        // Refused without --resume: the directory holds a certification.
        let e = certify_dataset(&model, &data, &cfg, &radii, &opts(false), &whole, &device)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--resume"), "{e}");

        // A run killed after 2 certificates, in the middle of writing the third.
        std::fs::create_dir_all(&parts).unwrap();
        std::fs::copy(
            whole.join(CERTIFY_OUTPUTS[0]),
            parts.join(CERTIFY_OUTPUTS[0]),
        )
        .unwrap();
        let log = std::fs::read_to_string(whole.join(CERTIFY_OUTPUTS[1])).unwrap();
        let lines: Vec<&str> = log.lines().collect();
        // The first certificate's time is marked: a resume must keep it, not recompute it.
        let marked = lines[0].replace(
            &format!("\"seconds\":{}", report.samples[0].seconds),
            "\"seconds\":1234.5",
        );
        assert_ne!(marked, lines[0]);
        let torn = format!("{marked}\n{}\n{}", lines[1], &lines[2][..10]);
        std::fs::write(parts.join(CERTIFY_OUTPUTS[1]), torn).unwrap();
        let resumed =
            certify_dataset(&model, &data, &cfg, &radii, &opts(true), &parts, &device).unwrap();
        let strip = |r: &CertifyReport| {
            r.samples
                .iter()
                .map(|s| (s.index, s.label, s.certificate, s.correct))
                .collect::<Vec<_>>()
        };
        assert_eq!(strip(&resumed), strip(&report));
        assert_eq!(resumed.rows, report.rows);
        assert_eq!(resumed.samples[0].seconds, 1234.5);
        // The torn line was cut and replaced: one complete line per image.
        let log = std::fs::read_to_string(parts.join(CERTIFY_OUTPUTS[1])).unwrap();
        assert_eq!(log.lines().count(), 6);
        assert!(log.ends_with('\n'));
        // Another sigma does not resume it.
        let e = certify_dataset(
            &model,
            &data,
            &SmoothingConfig {
                sigma: 0.5,
                ..cfg.clone()
            },
            &radii,
            &opts(true),
            &parts,
            &device,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("other settings"), "{e}");
    }
}

mod attack {
    use super::*;

    /// The first coordinate and the L2 distance of each row of `adv` from `x`.
    fn moved(x: &Tensor<2>, adv: &Tensor<2>) -> Vec<(f32, f64)> {
        let a: Vec<f32> = adv.to_data().convert::<f32>().try_into_vec().unwrap();
        let c: Vec<f32> = x.to_data().convert::<f32>().try_into_vec().unwrap();
        a.chunks(2)
            .zip(c.chunks(2))
            .map(|(a, c)| {
                let d2: f64 = a.iter().zip(c).map(|(p, q)| f64::from(p - q).powi(2)).sum();
                (a[0], d2.sqrt())
            })
            .collect()
    }

    #[test]
    fn the_attack_fools_the_smoothed_classifier_exactly_past_the_boundary() {
        // 20 points 0.3 inside class 1 of the linear classifier; σ = 0.25.
        let cfg = SmoothingConfig::new(0.25).with_n(2_000).with_seed(2);
        let smoothed = Smoothed::new(&linear, cfg).unwrap();
        let x = points(0.3, 20);
        let labels = vec![1; 20];
        let certified = smoothed.certify(x.clone()).unwrap();
        for (eps, flipped) in [(0.2, false), (0.5, true)] {
            let adv = smoothed
                .attack(x.clone(), &labels, &SmoothAttackConfig::new(eps))
                .unwrap();
            for (first, dist) in moved(&x, &adv) {
                // In the ball, and along the best direction (straight at the boundary).
                assert!(dist <= eps * (1.0 + 1e-5), "{dist} > {eps}");
                assert!(0.8 - first as f64 > 0.9 * eps, "moved only to {first}");
            }
            let predicted = smoothed.predict(adv, 2_000).unwrap();
            for (p, c) in predicted.iter().zip(&certified) {
                if flipped {
                    // 0.2 past the boundary: class 0 has probability Φ(0.8) = 0.79.
                    assert_eq!(*p, Some(0), "eps {eps}");
                } else {
                    // 0.1 short of it: class 1 keeps probability Φ(0.4) = 0.66, and no point
                    // certified beyond 0.2 is moved to another class.
                    assert_ne!(*p, Some(0), "eps {eps}");
                    assert!(c.radius >= 0.2 && c.class == Some(1), "{c:?}");
                }
            }
        }
    }

    #[test]
    fn the_attack_stays_in_the_box_treats_each_input_alone_and_refuses_bad_settings() {
        let smoothed = Smoothed::new(&linear, SmoothingConfig::new(0.5).with_seed(4)).unwrap();
        // Near the box's edge: the step toward the boundary is clipped at 0.
        let x = Tensor::<2>::from_data(
            TensorData::new(vec![0.55f32, 0.02, 0.9, 0.5, 0.7, 0.99], [3, 2]),
            &Device::flex(),
        );
        let cfg = SmoothAttackConfig::new(1.0)
            .with_steps(5)
            .with_noise_samples(8);
        let adv = smoothed.attack(x.clone(), &[1, 1, 1], &cfg).unwrap();
        let v: Vec<f32> = adv.to_data().convert::<f32>().try_into_vec().unwrap();
        assert!(v.iter().all(|p| (0.0..=1.0).contains(p)), "{v:?}");
        for i in 0..3 {
            let alone = smoothed
                .attack(x.clone().narrow(0, i, 1), &[1], &cfg)
                .unwrap();
            alone
                .to_data()
                .assert_eq(&adv.clone().narrow(0, i, 1).to_data(), true);
        }
        let e = smoothed
            .attack(x.clone(), &[1], &cfg)
            .unwrap_err()
            .to_string();
        assert!(e.contains("1 labels for 3 inputs"), "{e}");
        let e = smoothed
            .attack(x, &[1, 1, 1], &cfg.with_steps(0))
            .unwrap_err()
            .to_string();
        assert!(e.contains("steps"), "{e}");
    }
}
