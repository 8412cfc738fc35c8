//! PyTorch-layout safetensors I/O, checked against files built byte by byte in the tests (not by
//! our writer) and against values computed by hand.

use std::path::Path;

use bulwark_models::{Model, ModelError, models, torch};
use burn::module::Module;
use burn::prelude::*;

fn device() -> Device {
    Device::flex()
}

/// A safetensors file assembled by hand, as `safetensors.torch.save_file` lays it out: an 8-byte
/// little-endian header length, a JSON header (padded with spaces to a multiple of 8), then the
/// raw little-endian tensor bytes.
fn handmade_safetensors(tensors: &[(&str, Vec<usize>, Vec<f32>)]) -> Vec<u8> {
    let mut header = String::from("{\"__metadata__\":{\"format\":\"pt\"}");
    let mut data = Vec::new();
    for (name, shape, values) in tensors {
        let start = data.len();
        for v in values {
            data.extend_from_slice(&v.to_le_bytes());
        }
        let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        header.push_str(&format!(
            ",\"{name}\":{{\"dtype\":\"F32\",\"shape\":[{}],\"data_offsets\":[{start},{}]}}",
            dims.join(","),
            data.len()
        ));
    }
    header.push('}');
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&data);
    out
}

fn w1(o: usize, i: usize) -> f32 {
    (((o * 10 + i) % 7) as f32 - 3.0) * 0.1
}
fn b1(o: usize) -> f32 {
    0.01 * o as f32
}
fn w2(o: usize, h: usize) -> f32 {
    (((o * 50 + h) % 5) as f32 - 2.0) * 0.05
}
fn b2(o: usize) -> f32 {
    -0.02 * o as f32
}

/// The seed MLP's state dict as PyTorch writes it: `nn.Sequential(nn.Linear(10, 50),
/// nn.Linear(50, 10))`, weights `[out, in]`.
fn seed_mlp_file() -> Vec<u8> {
    let w1v: Vec<f32> = (0..50)
        .flat_map(|o| (0..10).map(move |i| w1(o, i)))
        .collect();
    let w2v: Vec<f32> = (0..10)
        .flat_map(|o| (0..50).map(move |h| w2(o, h)))
        .collect();
    handmade_safetensors(&[
        ("0.weight", vec![50, 10], w1v),
        ("0.bias", vec![50], (0..50).map(b1).collect()),
        ("1.weight", vec![10, 50], w2v),
        ("1.bias", vec![10], (0..10).map(b2).collect()),
    ])
}

fn input(i: usize) -> f32 {
    i as f32 * 0.1 - 0.5
}

#[test]
fn a_pytorch_file_loads_and_predicts_what_pytorch_would() {
    let model = Model::init("seed-mlp", &device()).unwrap();
    let model =
        torch::from_safetensors_bytes(model, &seed_mlp_file(), Path::new("handmade.safetensors"))
            .unwrap();
    let x = Tensor::<1>::from_floats((0..10).map(input).collect::<Vec<_>>().as_slice(), &device())
        .reshape([1, 1, 1, 10]);
    let got: Vec<f32> = model.forward(x).into_data().try_into_vec().unwrap();
    // y = W2 (W1 x + b1) + b2, computed here in f64.
    let h: Vec<f64> = (0..50)
        .map(|o| {
            (0..10)
                .map(|i| f64::from(w1(o, i)) * f64::from(input(i)))
                .sum::<f64>()
                + f64::from(b1(o))
        })
        .collect();
    assert_eq!(got.len(), 10);
    for (o, g) in got.iter().enumerate() {
        let want = (0..50).map(|j| f64::from(w2(o, j)) * h[j]).sum::<f64>() + f64::from(b2(o));
        assert!(
            (f64::from(*g) - want).abs() < 1e-5,
            "output {o}: {g} vs {want}"
        );
    }
}

#[test]
fn export_writes_pytorch_names_shapes_and_layout() {
    let model = Model::init("seed-mlp", &device()).unwrap();
    let model =
        torch::from_safetensors_bytes(model, &seed_mlp_file(), Path::new("handmade.safetensors"))
            .unwrap();
    let bytes = torch::to_safetensors_bytes(&model);
    // Parse our output independently: header length, JSON header, offsets.
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + n]).unwrap();
    for (key, shape) in [
        ("0.weight", "[50,10]"),
        ("0.bias", "[50]"),
        ("1.weight", "[10,50]"),
        ("1.bias", "[10]"),
    ] {
        let at = header
            .find(&format!("\"{key}\""))
            .unwrap_or_else(|| panic!("{key} in {header}"));
        let entry = &header[at..];
        assert!(
            entry.contains(&format!("\"shape\":{shape}")),
            "{key}: {entry}"
        );
        assert!(entry.contains("\"dtype\":\"F32\""), "{key}: {entry}");
    }
    // 1.weight[o][h] must sit at row-major position o*50+h, as in PyTorch.
    let at = header.find("\"1.weight\"").unwrap();
    let offsets = &header[at..][header[at..].find("data_offsets").unwrap()..];
    let start: usize = offsets
        .split(['[', ','])
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let data = &bytes[8 + n + start..];
    for (o, h) in [(0, 0), (3, 17), (9, 49)] {
        let k = (o * 50 + h) * 4;
        let v = f32::from_le_bytes(data[k..k + 4].try_into().unwrap());
        assert_eq!(v, w2(o, h), "1.weight[{o}][{h}]");
    }
}

#[test]
fn round_trip_through_a_file_keeps_predictions() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["small-cnn", "madry-cnn", "seed-net", "mlp"] {
        let dev = device();
        let a = Model::init_seeded(name, &dev, 7).unwrap();
        let path = dir.path().join(format!("{name}.safetensors"));
        torch::save_safetensors(&a, &path).unwrap();
        let b = torch::load_safetensors(Model::init_seeded(name, &dev, 8).unwrap(), &path).unwrap();
        let shape = a.info().input_shape;
        let x = Tensor::<4>::random(
            [2, shape[0], shape[1], shape[2]],
            burn::tensor::Distribution::Uniform(0.0, 1.0),
            &dev,
        );
        let ya: Vec<f32> = a.forward(x.clone()).into_data().try_into_vec().unwrap();
        let yb: Vec<f32> = b.forward(x).into_data().try_into_vec().unwrap();
        assert_eq!(ya, yb, "{name}");
    }
}

#[test]
fn state_dict_keys_match_the_pytorch_definitions() {
    let dev = device();
    let keys = |name: &str| -> Vec<(String, Vec<usize>)> {
        torch::state_dict(&Model::init(name, &dev).unwrap())
            .into_iter()
            .map(|t| (t.key, t.shape))
            .collect()
    };
    let small = keys("small-cnn");
    let want: Vec<(String, Vec<usize>)> = [
        ("0.weight", vec![16, 1, 4, 4]),
        ("0.bias", vec![16]),
        ("2.weight", vec![32, 16, 4, 4]),
        ("2.bias", vec![32]),
        ("5.weight", vec![100, 1568]),
        ("5.bias", vec![100]),
        ("7.weight", vec![10, 100]),
        ("7.bias", vec![10]),
    ]
    .into_iter()
    .map(|(k, s)| (k.to_string(), s))
    .collect();
    assert_eq!(small, want);
    let madry: Vec<String> = keys("madry-cnn").into_iter().map(|k| k.0).collect();
    assert_eq!(
        madry,
        [
            "0.weight", "0.bias", "3.weight", "3.bias", "7.weight", "7.bias", "9.weight", "9.bias"
        ]
    );
    let mlp: Vec<String> = keys("mlp").into_iter().map(|k| k.0).collect();
    assert_eq!(
        mlp,
        [
            "1.weight", "1.bias", "3.weight", "3.bias", "5.weight", "5.bias"
        ]
    );
    let seed_net: Vec<String> = keys("seed-net").into_iter().map(|k| k.0).collect();
    assert_eq!(
        seed_net,
        [
            "conv1.weight",
            "conv1.bias",
            "conv2.weight",
            "conv2.bias",
            "fc1.weight",
            "fc1.bias",
            "fc2.weight",
            "fc2.bias",
            "fc3.weight",
            "fc3.bias"
        ]
    );

    let preact = keys("preact-resnet18");
    let find = |k: &str| {
        preact
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, s)| s.clone())
    };
    assert_eq!(find("conv1.weight"), Some(vec![64, 3, 3, 3]));
    assert_eq!(find("layer1.0.bn1.weight"), Some(vec![64]));
    assert_eq!(find("layer1.0.bn1.bias"), Some(vec![64]));
    assert_eq!(find("layer1.0.bn1.running_mean"), Some(vec![64]));
    assert_eq!(find("layer1.0.bn1.running_var"), Some(vec![64]));
    assert_eq!(
        find("layer2.0.shortcut.0.weight"),
        Some(vec![128, 64, 1, 1])
    );
    assert_eq!(find("layer4.1.conv2.weight"), Some(vec![512, 512, 3, 3]));
    assert_eq!(find("bn.weight"), Some(vec![512]));
    assert_eq!(find("linear.weight"), Some(vec![10, 512]));
    assert_eq!(
        find("layer1.0.shortcut.0.weight"),
        None,
        "identity shortcut has no weights"
    );
    // 8 blocks x (2 BN x 4 + 2 convs) + 3 shortcuts + conv1 + final BN (4) + linear (2).
    assert_eq!(preact.len(), 8 * 10 + 3 + 1 + 4 + 2);
    // Trainable parameters (without BN running statistics) as PyTorch counts them: the
    // 11,171,146 often quoted is the variant without the final BatchNorm; Wong et al.'s model
    // (used here) has it, adding 2 x 512.
    let trainable: usize = preact
        .iter()
        .filter(|(k, _)| !k.contains("running_"))
        .map(|(_, s)| s.iter().product::<usize>())
        .sum();
    assert_eq!(trainable, 11_171_146 + 2 * 512);
    let model = Model::init("preact-resnet18", &dev).unwrap();
    assert_eq!(torch::trainable_parameter_count(&model), trainable);
}

/// The same tensors give the same bytes: the header's metadata map used to be written in hash
/// order, which differs between maps, so two exports of one model differed.
#[test]
fn export_is_byte_for_byte_reproducible() {
    let dev = device();
    let model = Model::init_seeded("small-cnn", &dev, 4).unwrap();
    let first = torch::to_safetensors_bytes(&model);
    for _ in 0..24 {
        assert!(
            torch::to_safetensors_bytes(&model) == first,
            "two exports differ"
        );
    }
    // Still a valid file with the metadata PyTorch tools read, aligned data and the same weights.
    let n = u64::from_le_bytes(first[..8].try_into().unwrap()) as usize;
    assert_eq!((8 + n) % 8, 0, "the data section starts 8-byte aligned");
    let header: serde_json::Value = serde_json::from_slice(&first[8..8 + n]).unwrap();
    assert_eq!(header["__metadata__"]["format"], "pt");
    assert_eq!(header["__metadata__"]["bulwark_model"], "small-cnn");
    let back = torch::from_safetensors_bytes(
        Model::init("small-cnn", &dev).unwrap(),
        &first,
        Path::new("w"),
    )
    .unwrap();
    assert_eq!(torch::state_dict(&back), torch::state_dict(&model));
}

#[test]
fn parameter_counts_match_the_architectures() {
    let dev = device();
    // Hand counts: weights + biases per layer.
    let expected = [
        ("seed-mlp", 10 * 50 + 50 + 50 * 10 + 10),
        (
            "seed-net",
            3 * 6 * 25 + 6 + 6 * 16 * 25 + 16 + 400 * 120 + 120 + 120 * 84 + 84 + 84 * 10 + 10,
        ),
        ("mlp", 784 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10),
        (
            "small-cnn",
            16 * 16 + 16 + 32 * 16 * 16 + 32 + 1568 * 100 + 100 + 100 * 10 + 10,
        ),
        (
            "madry-cnn",
            32 * 25 + 32 + 64 * 32 * 25 + 64 + 3136 * 1024 + 1024 + 1024 * 10 + 10,
        ),
    ];
    for (name, count) in expected {
        let model = Model::init(name, &dev).unwrap();
        assert_eq!(model.num_params(), count, "{name}");
        assert_eq!(torch::trainable_parameter_count(&model), count, "{name}");
    }
    // The rest are counted against PyTorch (preact-resnet18 in pytorch_fixtures.rs, the
    // WideResNets in wide_resnet.rs).
    assert_eq!(models().len(), 8);
}

#[test]
fn every_model_maps_its_input_shape_to_ten_logits() {
    let dev = device();
    for info in models() {
        let m = Model::init(info.name, &dev).unwrap();
        let x = match *info.input_shape {
            [n] => Tensor::<4>::zeros([3, 1, 1, n], &dev),
            [c, h, w] => Tensor::<4>::zeros([3, c, h, w], &dev),
            _ => unreachable!(),
        };
        assert_eq!(m.valid().forward(x).dims(), [3, 10], "{}", info.name);
    }
}

fn error_of(model: &str, bytes: &[u8]) -> String {
    let m = Model::init(model, &device()).unwrap();
    match torch::from_safetensors_bytes(m, bytes, Path::new("w.safetensors")) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn wrong_architecture_names_the_first_mismatching_tensor() {
    let small = torch::to_safetensors_bytes(&Model::init("small-cnn", &device()).unwrap());
    let e = error_of("madry-cnn", &small);
    assert!(
        e.contains("w.safetensors") && e.contains("madry-cnn"),
        "{e}"
    );
    assert!(
        e.contains("`0.weight` has shape [16, 1, 4, 4], expected [32, 1, 5, 5]"),
        "{e}"
    );
    let e = error_of("seed-net", &small);
    assert!(e.contains("missing tensor `conv1.weight`"), "{e}");
}

#[test]
fn extra_nan_dtype_and_truncation_are_clear_errors() {
    let mut tensors = vec![
        ("0.weight", vec![50, 10], vec![0.0; 500]),
        ("0.bias", vec![50], vec![0.0; 50]),
        ("1.weight", vec![10, 50], vec![0.0; 500]),
        ("1.bias", vec![10], vec![0.0; 10]),
    ];
    tensors.push(("2.weight", vec![1], vec![0.0]));
    let e = error_of("seed-mlp", &handmade_safetensors(&tensors));
    assert!(e.contains("unexpected tensor `2.weight`"), "{e}");
    tensors.pop();
    tensors[1].2[3] = f32::NAN;
    let e = error_of("seed-mlp", &handmade_safetensors(&tensors));
    assert!(e.contains("`0.bias` holds non-finite values"), "{e}");
    let good = seed_mlp_file();
    let e = error_of("seed-mlp", &good[..good.len() - 10]);
    assert!(e.contains("not a valid safetensors file"), "{e}");
    let e = error_of("seed-mlp", b"garbage");
    assert!(e.contains("not a valid safetensors file"), "{e}");
    let m = Model::init("seed-mlp", &device()).unwrap();
    match torch::load_safetensors(m, Path::new("/nonexistent/w.safetensors")) {
        Err(ModelError::Io { path, .. }) => assert!(path.ends_with("w.safetensors")),
        other => panic!("expected an I/O error, got {other:?}"),
    }
}
