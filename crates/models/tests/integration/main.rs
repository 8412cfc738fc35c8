//! Integration tests of bulwark-models' PyTorch layout, in one binary. The kernel tests (`layer_kernels.rs`) stay apart: they switch the patched flex's direct kernels process-wide.

mod batch_norm;
mod interval;
mod pytorch_fixtures;
mod text_cnn;
mod torch_io;
mod wide_resnet;
