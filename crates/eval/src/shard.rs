//! Sharding a job over processes: which part of the work shard `I` of `N` does, the manifest each
//! shard leaves in its directory (`shard.json`), and the checks a merge makes before it combines
//! shards (one configuration, one set of weights and data, every shard exactly once, all finished).
//!
//! The partition is deterministic and contiguous: of `units` work units (an evaluation's chunks,
//! an attack's batches, a sweep's strengths), shard `i` of `n` takes `[i·units/n, (i+1)·units/n)`.
//! The units are the very ones an unsharded run computes, with the same images in the same
//! batches, so a merge can give bit for bit the unsharded result.
//!
//! ```
//! use bulwark_eval::Shard;
//!
//! let shard = Shard::parse("1/3")?;
//! assert_eq!(shard.range(10), 3..6);
//! assert_eq!(shard.dir_name(), "shard-1-of-3");
//! // Under a Slurm job array (`sbatch --array=0-2`), each task finds its own index.
//! let env = |k: &str| match k {
//!     "SLURM_ARRAY_TASK_ID" => Some("12".to_string()),
//!     "SLURM_ARRAY_TASK_MIN" => Some("10".to_string()),
//!     "SLURM_ARRAY_TASK_MAX" => Some("12".to_string()),
//!     "SLURM_ARRAY_TASK_COUNT" => Some("3".to_string()),
//!     _ => None,
//! };
//! assert_eq!(Shard::parse_with_env("slurm", env)?, Shard::new(2, 3)?);
//! assert_eq!(Shard::parse_with_env("slurm/13", env)?, Shard::new(12, 13)?);
//! # Ok::<(), bulwark_eval::EvalError>(())
//! ```

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::atomic::write_atomic;
use crate::error::EvalError;

/// One part of a job split over `count` processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// From 0.
    pub index: usize,
    /// Number of shards, at least 1.
    pub count: usize,
}

/// The file every shard directory holds once its shard has run: a [`ShardManifest`].
pub const SHARD_FILE: &str = "shard.json";

fn settings(problem: String) -> EvalError {
    EvalError::Settings {
        what: "shard settings",
        problem,
    }
}

impl Shard {
    /// Shard `index` of `count`; refuses `count = 0` and `index >= count`.
    pub fn new(index: usize, count: usize) -> Result<Self, EvalError> {
        if count == 0 || index >= count {
            return Err(settings(format!(
                "shard {index}/{count}: the index must be below the count, and the count at \
                 least 1"
            )));
        }
        Ok(Self { index, count })
    }

    /// `I/N`; `slurm/N` (this task of a Slurm job array `--array=0-(N-1)`:
    /// `SLURM_ARRAY_TASK_ID`, so that a task resubmitted alone, `--array=5`, is still shard 5);
    /// `slurm` (the count and first index from the array itself: `SLURM_ARRAY_TASK_ID` from
    /// `SLURM_ARRAY_TASK_MIN`, `SLURM_ARRAY_TASK_COUNT` tasks, no step); or `k8s/N` (this pod of a
    /// Kubernetes Indexed Job with `completions: N`: `JOB_COMPLETION_INDEX`). Reads the process's
    /// environment.
    pub fn parse(spec: &str) -> Result<Self, EvalError> {
        Self::parse_with_env(spec, |k| std::env::var(k).ok())
    }

    /// [`Shard::parse`] with the environment given by `env`.
    pub fn parse_with_env(
        spec: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, EvalError> {
        let number = |what: &str, text: &str| -> Result<usize, EvalError> {
            text.trim().parse::<usize>().map_err(|_| {
                settings(format!(
                    "--shard {spec}: {what} `{text}` is not a non-negative integer"
                ))
            })
        };
        let var = |name: &str| -> Result<String, EvalError> {
            env(name).ok_or_else(|| {
                settings(format!(
                    "--shard {spec}: {name} is not set (is this process a task of a {}?)",
                    if name.starts_with("SLURM") {
                        "Slurm job array (sbatch --array)"
                    } else {
                        "Kubernetes Indexed Job (completionMode: Indexed)"
                    }
                ))
            })
        };
        if spec == "slurm" {
            let id = number("SLURM_ARRAY_TASK_ID", &var("SLURM_ARRAY_TASK_ID")?)?;
            let count = number("SLURM_ARRAY_TASK_COUNT", &var("SLURM_ARRAY_TASK_COUNT")?)?;
            let min = match env("SLURM_ARRAY_TASK_MIN") {
                Some(m) => number("SLURM_ARRAY_TASK_MIN", &m)?,
                None => 0,
            };
            if let Some(max) = env("SLURM_ARRAY_TASK_MAX") {
                let max = number("SLURM_ARRAY_TASK_MAX", &max)?;
                // `--array=0-9:2` or `--array=1,5,7` would leave shards without a task.
                if max + 1 != min + count {
                    return Err(settings(format!(
                        "--shard slurm: the job array {min}-{max} has {count} tasks; it must be \
                         one contiguous range without a step (sbatch --array=0-{})",
                        count.saturating_sub(1)
                    )));
                }
            }
            return Self::new(id.checked_sub(min).unwrap_or(usize::MAX), count);
        }
        if let Some(n) = spec.strip_prefix("slurm/") {
            let id = number("SLURM_ARRAY_TASK_ID", &var("SLURM_ARRAY_TASK_ID")?)?;
            return Self::new(id, number("the count", n)?);
        }
        if let Some(n) = spec.strip_prefix("k8s/") {
            let index = number("JOB_COMPLETION_INDEX", &var("JOB_COMPLETION_INDEX")?)?;
            return Self::new(index, number("the count", n)?);
        }
        let Some((i, n)) = spec.split_once('/') else {
            return Err(settings(format!(
                "--shard {spec}: expected I/N (e.g. 0/4), `slurm/N`, `slurm` or `k8s/N`"
            )));
        };
        Self::new(number("the index", i)?, number("the count", n)?)
    }

    /// The units of `units` this shard takes: `[i·units/n, (i+1)·units/n)` (empty when there
    /// are more shards than units).
    pub fn range(&self, units: usize) -> Range<usize> {
        (self.index * units / self.count)..((self.index + 1) * units / self.count)
    }

    /// `shard-I-of-N`: the sub-directory of the job's output directory this shard writes into.
    pub fn dir_name(&self) -> String {
        format!("shard-{}-of-{}", self.index, self.count)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// What a shard leaves in its directory ([`SHARD_FILE`]): which part of which job it did, and
/// what the merge needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardManifest {
    /// `eval`, `attack` or `sweep`.
    pub kind: String,
    /// Which shard.
    pub shard: Shard,
    /// Identifies the whole job (configuration, weights, data, backend): equal in every shard of
    /// one job, and different for anything else.
    pub fingerprint: String,
    /// Work units of the whole job (chunks, batches or strengths).
    pub units: usize,
    /// The units this shard did.
    pub range: Range<usize>,
    /// Wall-clock seconds this shard ran (a resumed shard: its last run).
    pub seconds: f64,
    /// Bulwark's version.
    pub bulwark_version: String,
    /// The directory the shard ran in: relative paths in `command` are relative to it.
    pub cwd: PathBuf,
    /// What the merge needs to rebuild the job (the command's settings).
    pub command: serde_json::Value,
    /// The shard's own results (its part of the report).
    pub partial: serde_json::Value,
}

impl ShardManifest {
    /// Writes the manifest into `dir` (atomically): the shard is finished.
    pub fn write(&self, dir: &Path) -> Result<PathBuf, EvalError> {
        let path = dir.join(SHARD_FILE);
        let json = serde_json::to_vec_pretty(self).map_err(|e| EvalError::Serialize {
            what: "the shard manifest",
            reason: e.to_string(),
        })?;
        write_atomic(&path, &json)?;
        Ok(path)
    }

    /// Reads `dir/shard.json`.
    pub fn read(dir: &Path) -> Result<Self, EvalError> {
        let path = dir.join(SHARD_FILE);
        let bytes = std::fs::read(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                EvalError::State {
                    path: dir.to_path_buf(),
                    reason: format!(
                        "not a finished shard: it has no {SHARD_FILE} (a shard writes it when it \
                         completes; rerun an unfinished one with --resume)"
                    ),
                }
            } else {
                EvalError::Io {
                    path: path.clone(),
                    source: e,
                }
            }
        })?;
        serde_json::from_slice(&bytes).map_err(|e| EvalError::State {
            path,
            reason: format!("not a shard manifest: {e}"),
        })
    }

    /// The partial results as `T`.
    pub fn partial<T: serde::de::DeserializeOwned>(&self, dir: &Path) -> Result<T, EvalError> {
        serde_json::from_value(self.partial.clone()).map_err(|e| EvalError::State {
            path: dir.join(SHARD_FILE),
            reason: format!("its {} results do not parse: {e}", self.kind),
        })
    }

    /// The command settings as `T`.
    pub fn command<T: serde::de::DeserializeOwned>(&self, dir: &Path) -> Result<T, EvalError> {
        serde_json::from_value(self.command.clone()).map_err(|e| EvalError::State {
            path: dir.join(SHARD_FILE),
            reason: format!("its {} settings do not parse: {e}", self.kind),
        })
    }
}

/// The manifests of `dirs`, checked to be every shard of one job exactly once, in shard order:
/// refuses a directory without a finished shard, shards of different kinds, counts,
/// configurations, weights or data (fingerprints), versions, a duplicated and a missing shard.
pub fn read_shards(dirs: &[PathBuf]) -> Result<Vec<(PathBuf, ShardManifest)>, EvalError> {
    if dirs.is_empty() {
        return Err(settings("no shard directories given".into()));
    }
    let mut shards = dirs
        .iter()
        .map(|d| Ok((d.clone(), ShardManifest::read(d)?)))
        .collect::<Result<Vec<_>, EvalError>>()?;
    let (first_dir, first) = shards[0].clone();
    let mismatch = |dir: &Path, what: &str, here: String, there: String| EvalError::State {
        path: dir.to_path_buf(),
        reason: format!(
            "this shard is of another job than {}: {what} {here} here, {there} there; merge only \
             the shards of one job",
            first_dir.display()
        ),
    };
    for (dir, m) in &shards[1..] {
        if m.kind != first.kind {
            return Err(mismatch(dir, "a", m.kind.clone(), first.kind.clone()));
        }
        if m.shard.count != first.shard.count {
            return Err(mismatch(
                dir,
                "shard count",
                m.shard.count.to_string(),
                first.shard.count.to_string(),
            ));
        }
        if m.fingerprint != first.fingerprint {
            return Err(mismatch(
                dir,
                "configuration, weights, data or backend (fingerprint)",
                m.fingerprint.clone(),
                first.fingerprint.clone(),
            ));
        }
        if m.bulwark_version != first.bulwark_version {
            return Err(mismatch(
                dir,
                "Bulwark version",
                m.bulwark_version.clone(),
                first.bulwark_version.clone(),
            ));
        }
    }
    shards.sort_by_key(|(_, m)| m.shard.index);
    for pair in shards.windows(2) {
        if pair[0].1.shard.index == pair[1].1.shard.index {
            return Err(settings(format!(
                "shard {} is given twice: {} and {}",
                pair[0].1.shard,
                pair[0].0.display(),
                pair[1].0.display()
            )));
        }
    }
    let count = first.shard.count;
    let missing: Vec<String> = (0..count)
        .filter(|i| !shards.iter().any(|(_, m)| m.shard.index == *i))
        .map(|i| format!("{i}/{count}"))
        .collect();
    if !missing.is_empty() {
        return Err(settings(format!(
            "missing shard(s) {} of the {} job in {}: run them (same command with --shard), then \
             merge all {count}",
            missing.join(", "),
            first.kind,
            first_dir.parent().map_or_else(
                || first_dir.display().to_string(),
                |p| p.display().to_string()
            ),
        )));
    }
    for (dir, m) in &shards {
        if m.units != first.units || m.range != m.shard.range(m.units) {
            return Err(EvalError::State {
                path: dir.join(SHARD_FILE),
                reason: format!(
                    "shard {} claims units {:?} of {}, but its part is {:?}",
                    m.shard,
                    m.range,
                    m.units,
                    m.shard.range(first.units)
                ),
            });
        }
    }
    Ok(shards)
}

/// Where `bulwark merge` writes when not told: the directory that holds all the shard
/// directories (their common parent), if they have one.
pub fn common_parent(dirs: &[PathBuf]) -> Option<PathBuf> {
    let parents: Vec<PathBuf> = dirs
        .iter()
        .map(|d| std::path::absolute(d).ok()?.parent().map(Path::to_path_buf))
        .collect::<Option<_>>()?;
    let first = parents.first()?.clone();
    parents.iter().all(|p| *p == first).then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parts_cover_every_unit_once_in_order() {
        for units in [0, 1, 5, 10, 11] {
            for count in 1..=7 {
                let mut next = 0;
                for index in 0..count {
                    let r = Shard::new(index, count).unwrap().range(units);
                    assert_eq!(r.start, next, "{units} units, {index}/{count}");
                    next = r.end;
                }
                assert_eq!(next, units);
            }
        }
    }

    #[test]
    fn specs_and_environments_parse_or_say_what_is_wrong() {
        assert_eq!(Shard::parse("2/4").unwrap(), Shard::new(2, 4).unwrap());
        for bad in ["4/4", "1/0", "x/2", "3", "-1/2"] {
            assert!(Shard::parse_with_env(bad, |_| None).is_err(), "{bad}");
        }
        let none = |_: &str| None;
        let e = Shard::parse_with_env("slurm", none)
            .unwrap_err()
            .to_string();
        assert!(e.contains("SLURM_ARRAY_TASK_ID"), "{e}");
        let k8s = |k: &str| (k == "JOB_COMPLETION_INDEX").then(|| "3".to_string());
        assert_eq!(
            Shard::parse_with_env("k8s/5", k8s).unwrap(),
            Shard::new(3, 5).unwrap()
        );
        assert!(Shard::parse_with_env("k8s/3", k8s).is_err());
        let stepped = |k: &str| {
            match k {
                "SLURM_ARRAY_TASK_ID" => Some("4"),
                "SLURM_ARRAY_TASK_MIN" => Some("0"),
                "SLURM_ARRAY_TASK_MAX" => Some("8"),
                "SLURM_ARRAY_TASK_COUNT" => Some("5"),
                _ => None,
            }
            .map(str::to_string)
        };
        let e = Shard::parse_with_env("slurm", stepped)
            .unwrap_err()
            .to_string();
        assert!(e.contains("contiguous"), "{e}");
        // A task resubmitted alone keeps its index with an explicit count.
        let alone = |k: &str| {
            match k {
                "SLURM_ARRAY_TASK_ID" | "SLURM_ARRAY_TASK_MIN" | "SLURM_ARRAY_TASK_MAX" => {
                    Some("5")
                }
                "SLURM_ARRAY_TASK_COUNT" => Some("1"),
                _ => None,
            }
            .map(str::to_string)
        };
        assert_eq!(
            Shard::parse_with_env("slurm/8", alone).unwrap(),
            Shard::new(5, 8).unwrap()
        );
        assert!(Shard::parse_with_env("slurm/4", alone).is_err());
    }

    fn manifest(index: usize, count: usize, fp: &str) -> ShardManifest {
        let shard = Shard::new(index, count).unwrap();
        ShardManifest {
            kind: "eval".into(),
            shard,
            fingerprint: fp.into(),
            units: 6,
            range: shard.range(6),
            seconds: 1.0,
            bulwark_version: "x".into(),
            cwd: PathBuf::from("/"),
            command: serde_json::Value::Null,
            partial: serde_json::Value::Null,
        }
    }

    #[test]
    fn a_merge_refuses_foreign_duplicated_missing_and_unfinished_shards() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = |name: &str, m: Option<ShardManifest>| {
            let d = tmp.path().join(name);
            std::fs::create_dir_all(&d).unwrap();
            if let Some(m) = m {
                m.write(&d).unwrap();
            }
            d
        };
        let a = dir("a", Some(manifest(0, 3, "f")));
        let b = dir("b", Some(manifest(1, 3, "f")));
        let c = dir("c", Some(manifest(2, 3, "f")));
        let ok = read_shards(&[c.clone(), a.clone(), b.clone()]).unwrap();
        let order: Vec<usize> = ok.iter().map(|(_, m)| m.shard.index).collect();
        assert_eq!(order, [0, 1, 2]);
        let foreign = dir("foreign", Some(manifest(2, 3, "g")));
        let e = read_shards(&[a.clone(), b.clone(), foreign]).unwrap_err();
        assert!(e.to_string().contains("fingerprint"), "{e}");
        let e = read_shards(&[a.clone(), b.clone(), b.clone()]).unwrap_err();
        assert!(e.to_string().contains("given twice"), "{e}");
        let e = read_shards(&[a.clone(), c.clone()]).unwrap_err();
        assert!(e.to_string().contains("missing shard(s) 1/3"), "{e}");
        let unfinished = dir("unfinished", None);
        let e = read_shards(&[a.clone(), unfinished, c.clone()]).unwrap_err();
        assert!(e.to_string().contains("not a finished shard"), "{e}");
        let other_count = dir("four", Some(manifest(1, 4, "f")));
        let e = read_shards(&[a, other_count, c]).unwrap_err();
        assert!(e.to_string().contains("shard count"), "{e}");
    }
}
