//! Builds burn optimizers from a [`TrainConfig`], with PyTorch's conventions.

use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, AdamWConfig, ModuleOptimizer, SgdConfig};

use crate::{OptimizerKind, TrainConfig};

/// The optimizer the config asks for.
///
/// burn's defaults differ from PyTorch's in two places, which this function overrides so that
/// configs mean what PyTorch users expect: SGD momentum dampening is 0 (burn: 0.1) and Adam's
/// epsilon comes from the config (default 1e-8; burn: 1e-5).
pub fn build_optimizer(cfg: &TrainConfig) -> ModuleOptimizer {
    let decay = (cfg.weight_decay > 0.0).then(|| WeightDecayConfig::new(cfg.weight_decay as f32));
    match cfg.optimizer {
        OptimizerKind::Sgd => {
            let momentum = (cfg.momentum > 0.0).then(|| {
                MomentumConfig::new()
                    .with_momentum(cfg.momentum)
                    .with_dampening(0.0)
                    .with_nesterov(cfg.nesterov)
            });
            SgdConfig::new()
                .with_momentum(momentum)
                .with_weight_decay(decay)
                .init()
        }
        OptimizerKind::Adam => AdamConfig::new()
            .with_beta_1(cfg.beta1 as f32)
            .with_beta_2(cfg.beta2 as f32)
            .with_epsilon(cfg.epsilon as f32)
            .with_weight_decay(decay)
            .init(),
        OptimizerKind::Adamw => AdamWConfig::new()
            .with_beta_1(cfg.beta1 as f32)
            .with_beta_2(cfg.beta2 as f32)
            .with_epsilon(cfg.epsilon as f32)
            .with_weight_decay(cfg.weight_decay as f32)
            .init(),
    }
}
