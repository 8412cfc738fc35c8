//! The seed project's regularization example, made real: `seed-mlp` (Linear 10→50→10, no
//! activation) trained with MSE and SGD (lr 0.01, batch 50, 100 epochs), with and without
//! `0.001·Σ|W| + 0.001·ΣW²` on `fc1.weight` only.
//!
//! The regression task is generated from seed 0 (SplitMix64): 1,000 training and 200 test inputs
//! `x ~ U(−1, 1)^10`; targets `y = A·x + 0.05·ε`, `ε ~ N(0, 1)`, where the teacher `A` (10×10,
//! entries `U(−1, 1)`) uses only inputs 0–4 — inputs 5–9 are irrelevant, so a good penalty should
//! shrink the first layer's weights on them.
//!
//! Run: `cargo run -p bulwark-reg-core --example seed_regularization`

use bulwark_attack_core::rng::SplitMix64;
use bulwark_models::Model;
use bulwark_reg_core::{ParamSelection, Penalty, PenaltyKind, parameters};
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{Device, Tensor, TensorData};

const INPUTS: usize = 10;
const RELEVANT: usize = 5;

/// The workspace's generator, with the seed's symmetric draw on top.
struct Rng(SplitMix64);

impl Rng {
    fn symmetric(&mut self) -> f64 {
        2.0 * self.0.uniform() - 1.0
    }
    fn normal(&mut self) -> f64 {
        self.0.normal()
    }
}

fn task(rng: &mut Rng, teacher: &[f64], n: usize) -> (Vec<f32>, Vec<f32>) {
    let mut x = Vec::with_capacity(n * INPUTS);
    let mut y = Vec::with_capacity(n * INPUTS);
    for _ in 0..n {
        let xi: Vec<f64> = (0..INPUTS).map(|_| rng.symmetric()).collect();
        for o in 0..INPUTS {
            let v: f64 = (0..RELEVANT)
                .map(|j| teacher[o * INPUTS + j] * xi[j])
                .sum::<f64>()
                + 0.05 * rng.normal();
            y.push(v as f32);
        }
        x.extend(xi.iter().map(|&v| v as f32));
    }
    (x, y)
}

fn batch(v: &[f32], rows: std::ops::Range<usize>, dev: &Device) -> Tensor<4> {
    let n = rows.len();
    Tensor::<2>::from_data(
        TensorData::new(
            v[rows.start * INPUTS..rows.end * INPUTS].to_vec(),
            [n, INPUTS],
        ),
        dev,
    )
    .reshape([n, 1, 1, INPUTS])
}

/// fc1.weight on the host, `[inputs][hidden]`.
fn fc1(model: &Model) -> Vec<Vec<f32>> {
    struct Grab(Vec<String>, Option<Vec<f32>>, usize);
    impl ModuleVisitor for Grab {
        fn enter_module(&mut self, n: &str, _: &str) {
            self.0.push(n.into());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.0.pop();
        }
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            if self.0.ends_with(&["fc1".to_string(), "weight".to_string()]) {
                let t = p.val().inner();
                self.2 = t.dims()[1];
                self.1 = Some(t.try_into_vec_as::<f32>().unwrap());
            }
        }
    }
    let mut g = Grab(Vec::new(), None, 0);
    model.visit(&mut g);
    let (w, hidden) = (g.1.expect("seed-mlp has fc1.weight"), g.2);
    w.chunks(hidden).map(<[f32]>::to_vec).collect()
}

fn run(penalties: &[Penalty], x: &[f32], y: &[f32], xt: &[f32], yt: &[f32], dev: &Device) -> Model {
    let mut model = Model::init_seeded("seed-mlp", dev, 0).expect("zoo model");
    let mut optim = SgdConfig::new().init();
    let (n, bs) = (x.len() / INPUTS, 50);
    let mse = |m: &Model, xs: Tensor<4>, ys: Tensor<2>| (m.forward(xs) - ys).square().mean();
    for epoch in 1..=100 {
        let mut sum = 0.0;
        for start in (0..n).step_by(bs) {
            let rows = start..(start + bs).min(n);
            let xs = batch(x, rows.clone(), dev);
            let ys = batch(y, rows, dev).reshape([xs.dims()[0], INPUTS]);
            let mut loss = mse(&model, xs, ys);
            sum += f64::from(loss.clone().inner().into_scalar::<f32>());
            for p in penalties {
                loss = loss + p.loss(&model).expect("fc1.weight exists");
            }
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(0.01, model, grads);
        }
        if epoch % 10 == 0 || epoch == 1 {
            let test = mse(
                &model.valid(),
                batch(xt, 0..xt.len() / INPUTS, dev),
                batch(yt, 0..yt.len() / INPUTS, dev).reshape([yt.len() / INPUTS, INPUTS]),
            );
            println!(
                "  epoch {epoch:>3}: train MSE {:.5}  test MSE {:.5}",
                sum / n.div_ceil(bs) as f64,
                test.into_scalar::<f32>()
            );
        }
    }
    model
}

fn describe(model: &Model) {
    let w = fc1(model);
    let all: Vec<f32> = w.iter().flatten().copied().collect();
    let l1: f64 = all.iter().map(|v| f64::from(v.abs())).sum();
    let l2: f64 = all.iter().map(|v| f64::from(v * v)).sum::<f64>().sqrt();
    let small = all.iter().filter(|v| v.abs() < 1e-3).count();
    let row = |i: usize| w[i].iter().map(|v| f64::from(v * v)).sum::<f64>().sqrt();
    let relevant: f64 = (0..RELEVANT).map(row).sum::<f64>() / RELEVANT as f64;
    let irrelevant: f64 = (RELEVANT..INPUTS).map(row).sum::<f64>() / (INPUTS - RELEVANT) as f64;
    println!(
        "  fc1.weight: Σ|w| {l1:.3}, ‖W‖_F {l2:.3}, {small} of {} entries below 1e-3; mean weight norm per input: relevant {relevant:.3}, irrelevant {irrelevant:.3}",
        all.len()
    );
}

fn main() {
    let dev = Device::flex().autodiff();
    let mut rng = Rng(SplitMix64::new(0));
    let teacher: Vec<f64> = (0..INPUTS * INPUTS).map(|_| rng.symmetric()).collect();
    let (x, y) = task(&mut rng, &teacher, 1000);
    let (xt, yt) = task(&mut rng, &teacher, 200);
    let fc1_only = ParamSelection::paths(["fc1.weight"]);
    let model = Model::init("seed-mlp", &dev).expect("zoo model");
    println!(
        "parameters: {:?}",
        parameters(&model)
            .iter()
            .map(|p| p.path.as_str())
            .collect::<Vec<_>>()
    );

    println!("without a penalty:");
    let plain = run(&[], &x, &y, &xt, &yt, &dev);
    describe(&plain);
    println!("with 0.001·Σ|W| + 0.001·ΣW² on fc1.weight:");
    let penalties = [
        Penalty::new(PenaltyKind::L1, 0.001).on(fc1_only.clone()),
        Penalty::new(PenaltyKind::L2, 0.001).on(fc1_only),
    ];
    let regularized = run(&penalties, &x, &y, &xt, &yt, &dev);
    describe(&regularized);
}
