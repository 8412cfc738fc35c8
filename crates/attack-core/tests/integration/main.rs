//! Integration tests of bulwark-attack-core, in one binary (one link of burn instead of four).

mod behaviour;
mod cascade;
mod common;
mod properties;
mod reference;
