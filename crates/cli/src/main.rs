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

/// mimalloc's `mi_option_purge_delay` (mimalloc 3's option enum; libmimalloc-sys names no
/// constant for it): how many milliseconds freed memory stays committed before it goes back to
/// the kernel; -1 keeps it for the process's lifetime.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> ExitCode {
    // Freed memory stays committed for reuse. With mimalloc's default (10 ms) every operation's
    // multi-megabyte buffers went back to the kernel and were faulted in again as zeroed huge
    // pages: PreAct-ResNet-18 PGD-10 at batch 64 took 116,080 page faults and 26.5 s of CPU time,
    // 12 % of it clearing pages, against 710 faults and 19.7 s without purging
    // (docs/performance.md, "CIFAR scale"). The process keeps its peak memory instead.
    // SAFETY: called first thing in `main`, before any other thread exists (the option
    // setters are not thread-safe); the option index is mimalloc 3's, the version linked.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
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

#[cfg(test)]
mod tests {
    /// `MI_OPTION_PURGE_DELAY` is the option mimalloc reads from `MIMALLOC_PURGE_DELAY`: this
    /// test runs itself again in a child process with that variable set, where mimalloc has read
    /// it at start-up, and the child checks the option's value by index.
    #[test]
    fn the_option_index_is_mimallocs_purge_delay() {
        const NAME: &str = "tests::the_option_index_is_mimallocs_purge_delay";
        if std::env::var_os("BULWARK_PURGE_DELAY_CHILD").is_some() {
            // SAFETY: reading an option; no other thread sets options.
            let value = unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
            assert_eq!(value, 77, "option 15 is not mimalloc's purge delay");
            return;
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([NAME, "--exact", "--test-threads", "1"])
            .env("BULWARK_PURGE_DELAY_CHILD", "1")
            .env("MIMALLOC_PURGE_DELAY", "77")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
