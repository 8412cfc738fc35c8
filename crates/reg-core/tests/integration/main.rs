//! Integration tests of bulwark-reg-core, in one binary (one link of burn instead of four).

mod constraints;
mod input_gradient;
mod mixing;
mod penalties;
