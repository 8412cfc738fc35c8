//! Per-layer convolution benchmark (`bulwark bench layers`): every distinct convolution of a zoo
//! model, at the model's real channel counts and map sizes and the benchmark's batch, timed in
//! each direction a training step runs it — the forward pass, the input gradient (what every
//! attack step needs) and the weight gradient — with the achieved GFLOP/s.
//!
//! The forward pass is timed alone; the input gradient is the time of a forward and backward pass
//! with only the input tracked, less the forward pass's median, and the weight gradient the same
//! with only the weight tracked, so the three add up to what a layer costs in a training step.
//! Each direction does one forward pass's arithmetic ([`ConvShape::forward_flops`]).
//! `docs/performance/pytorch_layers.py` times the same layers the same way in PyTorch.

use bulwark_models::{ConvShape, conv_shapes};
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Distribution, Tensor};
use serde::{Deserialize, Serialize};

use crate::backend::BackendKind;
use crate::bench::{summarize, sync, time};
use crate::error::TrainError;

/// One convolution in one direction.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerBenchRow {
    /// Backend name.
    pub backend: String,
    /// Zoo model.
    pub model: String,
    /// The layer, e.g. `64>128 3x3 s2 32x32` (channels in > out, kernel, stride, input map).
    pub layer: String,
    /// How many of the model's layers have this shape.
    pub count: usize,
    /// `forward`, `input-grad` or `weight-grad`.
    pub direction: String,
    /// Images per batch.
    pub batch: usize,
    /// Median milliseconds per batch (for the gradients: forward and backward less the forward,
    /// at least 0).
    pub median_ms: f64,
    /// FLOPs per batch (one forward pass's multiply-adds × 2).
    pub flops: f64,
    /// Achieved GFLOP/s at the median time.
    pub gflops_per_second: f64,
}

/// The three directions, in report order.
pub const DIRECTIONS: [&str; 3] = ["forward", "input-grad", "weight-grad"];

/// Short name of a convolution shape: `in>out kxk sS HxW`.
pub fn layer_name(c: &ConvShape) -> String {
    format!(
        "{}>{} {}x{} s{} {}x{}",
        c.in_channels, c.out_channels, c.kernel, c.kernel, c.stride, c.input, c.input
    )
}

/// Times every distinct convolution of zoo model `model` on `backend` at batch `batch`: up to
/// `repeats` timed runs per direction after a warm-up (time-boxed like `bench throughput`).
/// `report` is called after each row.
pub fn bench_conv_layers(
    backend: BackendKind,
    model: &str,
    batch: usize,
    repeats: usize,
    mut report: impl FnMut(&LayerBenchRow),
) -> Result<Vec<LayerBenchRow>, TrainError> {
    if batch == 0 {
        return Err(TrainError::Settings {
            what: "benchmark settings",
            problem: "the batch must hold at least one image".into(),
        });
    }
    let shapes = layer_shapes(model)?;
    let device = backend.device()?;
    let mut rows = Vec::new();
    for (shape, count) in shapes {
        let c = shape;
        let options = ConvOptions::new([c.stride, c.stride], [c.padding, c.padding], [1, 1], 1);
        let x = Tensor::<4>::random(
            [batch, c.in_channels, c.input, c.input],
            Distribution::Default,
            &device,
        );
        let w = Tensor::<4>::random(
            [c.out_channels, c.in_channels, c.kernel, c.kernel],
            Distribution::Normal(0.0, 0.05),
            &device,
        );
        let b = c
            .bias
            .then(|| Tensor::<1>::random([c.out_channels], Distribution::Default, &device));
        let forward = median_seconds(repeats, || {
            sync(conv2d(x.clone(), w.clone(), b.clone(), options.clone()));
        })?;
        // Forward and backward with one operand tracked: the backward pass computes that
        // operand's gradient only.
        let backward = |track_input: bool| {
            let xs = tracked(x.clone(), track_input);
            let ws = tracked(w.clone(), !track_input);
            let bs = b.clone().map(Tensor::autodiff);
            let y = conv2d(xs.clone(), ws.clone(), bs, options.clone());
            let grads = y.backward();
            let g = if track_input {
                xs.grad(&grads)
            } else {
                ws.grad(&grads)
            };
            if let Some(g) = g {
                sync(g);
            }
        };
        // Differences of medians: noise can take a tiny layer's below zero, reported as 0.
        let input_grad = (median_seconds(repeats, || backward(true))? - forward).max(0.0);
        let weight_grad = (median_seconds(repeats, || backward(false))? - forward).max(0.0);
        let flops = c.forward_flops() as f64 * batch as f64;
        for (direction, seconds) in DIRECTIONS
            .into_iter()
            .zip([forward, input_grad, weight_grad])
        {
            let row = LayerBenchRow {
                backend: backend.name().to_string(),
                model: model.to_string(),
                layer: layer_name(&c),
                count,
                direction: direction.to_string(),
                batch,
                median_ms: seconds * 1e3,
                flops,
                gflops_per_second: if seconds > 0.0 {
                    flops / seconds / 1e9
                } else {
                    0.0
                },
            };
            report(&row);
            rows.push(row);
        }
    }
    Ok(rows)
}

/// The distinct convolutions of zoo model `model`, or a clear error when it has none (or is not a
/// zoo model): callers check every model this way before timing any.
pub fn layer_shapes(model: &str) -> Result<Vec<(ConvShape, usize)>, TrainError> {
    let shapes = conv_shapes(model)?;
    if shapes.is_empty() {
        return Err(TrainError::Settings {
            what: "benchmark settings",
            problem: format!("model `{model}` has no convolutions to time"),
        });
    }
    Ok(shapes)
}

/// Median seconds per run of `run` (which finishes its work on the device before returning).
fn median_seconds(repeats: usize, mut run: impl FnMut()) -> Result<f64, TrainError> {
    let rates = time(repeats, || {
        run();
        Ok(())
    })?;
    Ok(1.0 / summarize(rates).0)
}

/// `t` on autodiff, requiring its gradient or not.
fn tracked<const D: usize>(t: Tensor<D>, require_grad: bool) -> Tensor<D> {
    let t = t.autodiff();
    if require_grad { t.require_grad() } else { t }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_layer_is_timed_in_every_direction_with_its_own_flops() {
        let mut seen = 0;
        let rows = bench_conv_layers(BackendKind::Flex, "small-cnn", 2, 1, |_| seen += 1).unwrap();
        assert_eq!((rows.len(), seen), (6, 6));
        let names: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| (r.layer.as_str(), r.direction.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("1>16 4x4 s2 28x28", "forward"),
                ("1>16 4x4 s2 28x28", "input-grad"),
                ("1>16 4x4 s2 28x28", "weight-grad"),
                ("16>32 4x4 s2 14x14", "forward"),
                ("16>32 4x4 s2 14x14", "input-grad"),
                ("16>32 4x4 s2 14x14", "weight-grad"),
            ]
        );
        // 16·14²·16 and 32·7²·256 multiply-adds per image, batch 2.
        assert_eq!(rows[0].flops, 2.0 * 2.0 * (16 * 196 * 16) as f64);
        assert_eq!(rows[3].flops, 2.0 * 2.0 * (32 * 49 * 256) as f64);
        assert!(rows.iter().all(|r| r.count == 1 && r.batch == 2));
        assert!(rows[0].median_ms > 0.0 && rows[0].gflops_per_second > 0.0);
        assert!(bench_conv_layers(BackendKind::Flex, "mlp", 2, 1, |_| {}).is_err());
        assert!(bench_conv_layers(BackendKind::Flex, "small-cnn", 0, 1, |_| {}).is_err());
        assert!(bench_conv_layers(BackendKind::Flex, "resnet", 2, 1, |_| {}).is_err());
    }
}
