//! Outputs never replace inputs.
//!
//! Every command that writes files first collects the files it reads (weights, configuration
//! files, dataset files) and checks each path it is about to write against them. Before this,
//! `bulwark eval --weights w.safetensors --predictions w.safetensors` replaced the weights with
//! predictions. Paths are compared as the file system sees them (symbolic links resolved, hard
//! links recognised), and an output directory that holds an input is refused as well.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

/// Files a command reads, each with what it is ("the weights file", ...), for the messages.
#[derive(Debug, Default)]
pub struct Inputs {
    files: Vec<(String, PathBuf)>,
}

impl Inputs {
    pub fn new() -> Self {
        Self::default()
    }

    /// An input file (ignored when it does not exist: then nothing can replace it).
    pub fn file(&mut self, what: &str, path: &Path) -> &mut Self {
        if let Ok(canonical) = path.canonicalize()
            && canonical.is_file()
        {
            self.files
                .push((format!("{what} {}", path.display()), canonical));
        }
        self
    }

    /// Weights given as a file, or as a run directory: then every weights file the directory
    /// offers (the command may read any of them).
    pub fn weights(&mut self, path: &Path) -> &mut Self {
        if path.is_dir() {
            for name in RUN_DIR_WEIGHTS.iter().chain(&["model.safetensors"]) {
                self.file("the weights file", &path.join(name));
            }
            self
        } else {
            self.file("the weights file", path)
        }
    }

    /// Every file directly in a dataset directory (and in its `<dataset>` sub-folder).
    pub fn data_dir(&mut self, dir: &Path) -> &mut Self {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                for inner in std::fs::read_dir(&path).into_iter().flatten().flatten() {
                    self.file("the data file", &inner.path());
                }
            } else {
                self.file("the data file", &path);
            }
        }
        self
    }

    /// Fails when writing `output` (named on the command line by `flag`) would replace one of the
    /// inputs: the same file, or a directory that holds one.
    pub fn refuse(&self, output: &Path, flag: &str) -> Result<()> {
        // A path that does not exist yet replaces nothing.
        let Ok(out) = output.canonicalize() else {
            return Ok(());
        };
        for (what, input) in &self.files {
            let same = *input == out || same_file::is_same_file(input, &out).unwrap_or(false);
            if same || input.starts_with(&out) {
                bail!(
                    "refusing to write {} ({flag}): it {} {what}, which this command reads; choose \
                     another path",
                    output.display(),
                    if same { "is" } else { "holds" }
                );
            }
        }
        Ok(())
    }

    /// [`Inputs::refuse`] for each of the entries `names` that a command writes into `dir` (an
    /// input elsewhere in `dir` is left alone, and so is allowed).
    pub fn refuse_in(&self, dir: &Path, names: &[&str], flag: &str) -> Result<()> {
        names
            .iter()
            .try_for_each(|name| self.refuse(&dir.join(name), flag))
    }
}

/// Two outputs of one command must be different files.
pub fn distinct(a: (&Path, &str), b: (&Path, &str)) -> Result<()> {
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let same = absolute(a.0) == absolute(b.0) || same_file::is_same_file(a.0, b.0).unwrap_or(false);
    if same {
        bail!(
            "{} and {} name the same file ({}); one would replace the other",
            a.1,
            b.1,
            a.0.display()
        );
    }
    Ok(())
}

/// The weights files a run directory given as `--weights` is read from, in order of preference
/// (the guard also protects its `model.safetensors`, the exported copy).
pub const RUN_DIR_WEIGHTS: [&str; 3] = [
    "model.bpk",
    "checkpoint/model.bpk",
    "checkpoint.old/model.bpk",
];

/// What `bulwark eval --eps` writes into its output directory.
pub const EVAL_OUTPUTS: [&str; 7] = [
    "report.json",
    "report.md",
    "robust_vs_eps.svg",
    "examples.png",
    "adversarial.safetensors",
    "eval-state",
    "run.lock",
];

/// What `bulwark attack` writes into its output directory.
pub const ATTACK_OUTPUTS: [&str; 4] = [
    "summary.json",
    "examples.png",
    "attack-state.json",
    "run.lock",
];
