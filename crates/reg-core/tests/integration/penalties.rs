//! Penalties against their analytic values and gradients on random weights, and parameter
//! selection on the zoo's models.

use std::collections::BTreeMap;

use bulwark_models::Model;
use bulwark_reg_core::*;
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Gradients;
use burn::tensor::{Device, Tensor};

/// Shape, values and (if any) gradient of every parameter, by path.
type Params = BTreeMap<String, (Vec<usize>, Vec<f64>, Option<Vec<f64>>)>;

/// Host copies of every float parameter and (given gradients) its gradient, keyed by path.
struct Read<'g> {
    stack: Vec<String>,
    enums: Vec<bool>,
    grads: Option<&'g Gradients>,
    values: Params,
}

impl ModuleVisitor for Read<'_> {
    fn enter_module(&mut self, name: &str, container: &str) {
        self.stack.push(name.into());
        self.enums.push(container.starts_with("Enum"));
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.stack.pop();
        self.enums.pop();
    }
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        let path = self
            .stack
            .iter()
            .zip(&self.enums)
            .filter(|(_, e)| !**e)
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(".");
        let t = p.val();
        let host = |t: Tensor<D>| -> Vec<f64> {
            t.inner()
                .try_into_vec_as::<f32>()
                .unwrap()
                .into_iter()
                .map(f64::from)
                .collect()
        };
        let g = self.grads.and_then(|g| t.grad(g)).map(host);
        self.values
            .insert(path, (t.dims().to_vec(), host(t.clone()), g));
    }
}

fn read<M: Module>(model: &M, grads: Option<&Gradients>) -> Params {
    let mut r = Read {
        stack: Vec::new(),
        enums: Vec::new(),
        grads,
        values: BTreeMap::new(),
    };
    model.visit(&mut r);
    r.values
}

fn device() -> Device {
    Device::flex().autodiff()
}

/// Rows of a weight as output units (burn's Linear is [in, out]: transpose).
fn units(shape: &[usize], w: &[f64], linear: bool) -> Vec<Vec<f64>> {
    if linear {
        let (i, o) = (shape[0], shape[1]);
        (0..o)
            .map(|c| (0..i).map(|r| w[r * o + c]).collect())
            .collect()
    } else {
        let rest = w.len() / shape[0];
        w.chunks(rest).map(<[f64]>::to_vec).collect()
    }
}

fn close(a: f64, b: f64, what: &str) {
    assert!(
        (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
        "{what}: {a} vs {b}"
    );
}

#[test]
fn penalty_values_and_gradients_match_their_formulas() {
    let dev = device();
    for (name, linear_paths) in [
        ("seed-mlp", vec!["fc1.weight", "fc2.weight"]),
        ("small-cnn", vec!["fc1.weight", "fc2.weight"]),
    ] {
        let model = Model::init_seeded(name, &dev, 7).unwrap();
        let lambda = 0.3;
        for kind in [
            PenaltyKind::L1,
            PenaltyKind::L2,
            PenaltyKind::ElasticNet { l1_ratio: 0.25 },
            PenaltyKind::GroupLasso,
            PenaltyKind::Orthogonality,
        ] {
            let loss = Penalty::new(kind, lambda).loss(&model).unwrap();
            let value = f64::from(loss.clone().inner().into_scalar::<f32>());
            let grads = loss.backward();
            let params = read(&model, Some(&grads));
            let mut expected = 0.0;
            for (path, (shape, w, g)) in &params {
                let selected = path.ends_with("weight");
                let Some(g) = g else {
                    assert!(!selected, "{name} {kind:?}: no gradient for {path}");
                    continue;
                };
                if !selected {
                    assert!(
                        g.iter().all(|&v| v == 0.0),
                        "{name} {kind:?}: {path} has a gradient"
                    );
                    continue;
                }
                let linear = linear_paths.contains(&path.as_str());
                // Analytic value and gradient, per parameter, in its own layout.
                let (val, grad): (f64, Vec<f64>) = match kind {
                    PenaltyKind::L1 => (
                        w.iter().map(|v| v.abs()).sum(),
                        w.iter()
                            .map(|v| v.signum() * f64::from(u8::from(*v != 0.0)))
                            .collect(),
                    ),
                    PenaltyKind::L2 => (
                        w.iter().map(|v| v * v).sum(),
                        w.iter().map(|v| 2.0 * v).collect(),
                    ),
                    PenaltyKind::ElasticNet { l1_ratio } => (
                        w.iter()
                            .map(|v| l1_ratio * v.abs() + (1.0 - l1_ratio) * v * v)
                            .sum(),
                        w.iter()
                            .map(|v| l1_ratio * v.signum() + (1.0 - l1_ratio) * 2.0 * v)
                            .collect(),
                    ),
                    PenaltyKind::GroupLasso => {
                        let rows = units(shape, w, linear);
                        let norms: Vec<f64> = rows
                            .iter()
                            .map(|r| r.iter().map(|v| v * v).sum::<f64>().sqrt())
                            .collect();
                        let mut grad = vec![0.0; w.len()];
                        for (u, row) in rows.iter().enumerate() {
                            for (k, v) in row.iter().enumerate() {
                                let idx = if linear {
                                    k * shape[1] + u
                                } else {
                                    u * row.len() + k
                                };
                                grad[idx] = v / norms[u];
                            }
                        }
                        (norms.iter().sum(), grad)
                    }
                    PenaltyKind::Orthogonality => {
                        let a = units(shape, w, linear);
                        let (m, n) = (a.len(), a[0].len());
                        // Work with B = A if m <= n, else B = Aᵀ; value ‖BBᵀ − I‖², grad 4(BBᵀ − I)B.
                        let b: Vec<Vec<f64>> = if m <= n {
                            a.clone()
                        } else {
                            (0..n).map(|j| (0..m).map(|i| a[i][j]).collect()).collect()
                        };
                        let (r, c) = (b.len(), b[0].len());
                        let mut e = vec![vec![0.0; r]; r];
                        for i in 0..r {
                            for j in 0..r {
                                e[i][j] = (0..c).map(|k| b[i][k] * b[j][k]).sum::<f64>()
                                    - f64::from(u8::from(i == j));
                            }
                        }
                        let val = e.iter().flatten().map(|v| v * v).sum();
                        let gb: Vec<Vec<f64>> = (0..r)
                            .map(|i| {
                                (0..c)
                                    .map(|k| 4.0 * (0..r).map(|j| e[i][j] * b[j][k]).sum::<f64>())
                                    .collect()
                            })
                            .collect();
                        // Back to A's layout, then to the parameter's.
                        let ga: Vec<Vec<f64>> = if m <= n {
                            gb
                        } else {
                            (0..m).map(|i| (0..n).map(|j| gb[j][i]).collect()).collect()
                        };
                        let mut grad = vec![0.0; w.len()];
                        for (u, row) in ga.iter().enumerate() {
                            for (k, v) in row.iter().enumerate() {
                                let idx = if linear {
                                    k * shape[1] + u
                                } else {
                                    u * row.len() + k
                                };
                                grad[idx] = *v;
                            }
                        }
                        (val, grad)
                    }
                };
                expected += val;
                for (k, (got, want)) in g.iter().zip(&grad).enumerate() {
                    close(
                        *got,
                        lambda * want,
                        &format!("{name} {kind:?} {path}[{k}] gradient"),
                    );
                }
            }
            close(value, lambda * expected, &format!("{name} {kind:?} value"));
        }
    }
}

#[test]
fn selections_pick_by_path_and_kind_and_refuse_to_match_nothing() {
    let dev = Device::flex();
    let mlp = Model::init("seed-mlp", &dev).unwrap();
    let paths = |s: &ParamSelection| -> Vec<String> {
        s.resolve(&mlp)
            .unwrap()
            .into_iter()
            .map(|p| p.path)
            .collect()
    };
    assert_eq!(
        paths(&ParamSelection::weights()),
        ["fc1.weight", "fc2.weight"]
    );
    assert_eq!(
        paths(&ParamSelection::paths(["fc1.weight"])),
        ["fc1.weight"]
    );
    assert_eq!(
        paths(&ParamSelection::paths(["fc1.*"])),
        ["fc1.weight", "fc1.bias"]
    );
    assert_eq!(
        paths(&ParamSelection::all().without("*.bias")),
        ["fc1.weight", "fc2.weight"]
    );
    let err = ParamSelection::paths(["conv*.weight"])
        .resolve(&mlp)
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("conv*.weight")
            && text.contains("fc1.weight (weight)")
            && text.contains("fc1.bias (bias)"),
        "{text}"
    );
    // A penalty on nothing is an error, not a silent zero.
    assert!(
        Penalty::new(PenaltyKind::L2, 0.1)
            .on(ParamSelection::paths(["nope"]))
            .loss(&mlp)
            .is_err()
    );

    // BatchNorm: gamma/beta are norm parameters, running statistics are never selected.
    let resnet = Model::init("preact-resnet18", &dev).unwrap();
    let all = ParamSelection::all().resolve(&resnet).unwrap();
    assert!(
        all.iter()
            .all(|p| !p.path.ends_with("running_mean") && !p.path.ends_with("running_var"))
    );
    assert!(
        all.iter()
            .any(|p| p.path == "layer1.0.bn1.gamma" && p.kind == ParamKind::Norm)
    );
    let weights = ParamSelection::weights().resolve(&resnet).unwrap();
    assert!(
        weights
            .iter()
            .all(|p| p.kind == ParamKind::Weight && !p.path.contains(".bn"))
    );
    assert!(
        weights
            .iter()
            .any(|p| p.path == "layer1.0.conv1.weight" && p.layer == LayerKind::Conv)
    );
    // Orthogonality of a vector is refused, naming it.
    let err = Penalty::new(PenaltyKind::Orthogonality, 1.0)
        .on(ParamSelection::paths(["fc1.bias"]))
        .loss(&mlp)
        .unwrap_err();
    assert!(err.to_string().contains("fc1.bias"), "{err}");
    // Bad settings.
    assert!(Penalty::new(PenaltyKind::L1, -1.0).loss(&mlp).is_err());
    assert!(
        Penalty::new(PenaltyKind::ElasticNet { l1_ratio: 1.5 }, 1.0)
            .loss(&mlp)
            .is_err()
    );
}
