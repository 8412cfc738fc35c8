//! `bulwark`: train, evaluate, fetch data, list and export models.
//!
//! The binary is thin: argument parsing and printing here (one file per command in `commands/`;
//! exit codes 0 success, 1 failure, 2 usage), the work in `bulwark-trainer`, `bulwark-eval`,
//! `bulwark-attack-core`, `bulwark-models` and `bulwark-data`.

mod args;
mod commands;
mod guard;
mod values;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc keeps freed blocks for reuse; glibc's malloc returns large tensor buffers to the
/// kernel and page-faults them back in on every operation (measured in docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    init_logging(cli.verbose);
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", message(&err));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, `outer: inner: ...`, each cause once: many errors
/// already show their cause in their own message (`path: No such file or directory`), and
/// printing the chain as is then repeated it.
fn message(err: &anyhow::Error) -> String {
    let mut text = err.to_string();
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

fn init_logging(verbose: bool) {
    let default = if verbose { "debug" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("BULWARK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
}
