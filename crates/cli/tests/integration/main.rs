//! Integration tests of the `bulwark` binary, in one test binary (one link instead of two).

mod cli;
mod common;
mod mpi;
mod safety;
mod shards;
