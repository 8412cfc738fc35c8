//! One writer per run directory.
//!
//! Two processes training into one directory both used to run to the end: their lines mixed in
//! `metrics.jsonl`, their checkpoints replaced each other's and the first run's results were lost.
//! A [`RunLock`] is an advisory lock on `<dir>/run.lock`, taken with the operating system's file
//! lock (`flock` on Unix, `LockFileEx` on Windows, through the standard library's
//! [`File::try_lock`]) and held for as long as the value lives. The operating system releases it
//! when the process ends in any way, a crash or `kill -9` included, so a stale lock never blocks a
//! later run; the file itself stays and only records who held it last.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::EvalError;

/// An exclusive lock on a run (or evaluation) directory; released when dropped.
#[derive(Debug)]
pub struct RunLock {
    // Held open: closing the file releases the lock.
    _file: File,
    path: PathBuf,
}

impl RunLock {
    /// The lock file's name inside the directory.
    pub const FILE: &'static str = "run.lock";

    /// Creates `dir` if needed and locks it, or fails with [`EvalError::Busy`] when another live
    /// process holds the lock (the error says which process, from what it wrote into the file).
    ///
    /// ```
    /// use bulwark_eval::RunLock;
    /// let dir = tempfile::tempdir().unwrap();
    /// let lock = RunLock::acquire(dir.path()).unwrap();
    /// // A second writer is refused while the first holds the lock (in this process too).
    /// assert!(RunLock::acquire(dir.path()).is_err());
    /// drop(lock);
    /// assert!(RunLock::acquire(dir.path()).is_ok());
    /// ```
    pub fn acquire(dir: &Path) -> Result<Self, EvalError> {
        std::fs::create_dir_all(dir).map_err(EvalError::io(dir))?;
        let path = dir.join(Self::FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(EvalError::io(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                return Err(EvalError::Busy {
                    dir: dir.to_path_buf(),
                    holder: holder.trim().to_string(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(EvalError::io(&path)(e)),
        }
        // Who holds it, for the message a second process prints (not part of the mechanism).
        let command: Vec<String> = std::env::args().collect();
        let note = format!("pid {}: {}\n", std::process::id(), command.join(" "));
        file.set_len(0)
            .and_then(|()| file.write_all(note.as_bytes()))
            .map_err(EvalError::io(&path))?;
        Ok(Self { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
