//! Integration tests of bulwark-data, in one binary (one link of burn instead of several).

mod cifar;
mod common;
mod fetch;
mod full_data;
mod idx_files;
mod slices;
mod text;
