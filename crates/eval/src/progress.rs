//! The progress bar every long loop shows (training epochs, attacks, evaluations): one style.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over `len` items labelled `prefix`, or a hidden one when `show` is false.
pub fn bar(len: usize, show: bool, prefix: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len as u64);
    b.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30.cyan/blue}] {pos}/{len} {msg}  ETA {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    b.set_prefix(prefix.to_string());
    b
}
