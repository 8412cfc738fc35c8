//! Integration tests of bulwark-trainer, in one binary (one link of burn instead of five). The fuzz tests (`tests/fuzz`) stay apart: they install a counting global allocator.

mod adversarial;
mod attacks;
mod backends;
mod black_box_probe;
mod certified;
mod common;
mod custom_network;
mod datasets;
mod evaluation;
mod gpu;
mod input_gradient;
mod text;
mod training;
