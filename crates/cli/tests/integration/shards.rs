//! Sharded evaluation, attack and sweep: three shard processes each, merged with `bulwark merge`,
//! equal the unsharded run; the merge refuses a missing, duplicated or foreign shard.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::common::{fails, mnist_dir, ok, read_json};

/// Starts `bulwark <args>` in `cwd` without waiting for it.
fn spawn(args: &[String], cwd: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_bulwark"))
        .args(args)
        .current_dir(cwd)
        .env("BULWARK_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start bulwark")
}

/// Runs `bulwark <args>` in `cwd`; its standard output.
fn ok_in(args: &[&str], cwd: &Path) -> String {
    let a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let done = spawn(&a, cwd).wait_with_output().unwrap();
    assert!(
        done.status.success(),
        "bulwark {args:?} failed:\n{}",
        String::from_utf8_lossy(&done.stderr)
    );
    String::from_utf8(done.stdout).unwrap()
}

/// Runs the three shards of `args` at once (three processes in `cwd`), each with `--shard I/3`;
/// returns their directories (`out` relative to `cwd`, or absolute).
fn run_shards(args: &[&str], out: &Path, cwd: &Path) -> Vec<PathBuf> {
    let children: Vec<Child> = (0..3)
        .map(|i| {
            let mut a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            a.extend([
                "--out".into(),
                out.display().to_string(),
                "--shard".into(),
                format!("{i}/3"),
            ]);
            spawn(&a, cwd)
        })
        .collect();
    for (i, child) in children.into_iter().enumerate() {
        let done = child.wait_with_output().unwrap();
        assert!(
            done.status.success(),
            "shard {i}/3 of {args:?} failed:\n{}",
            String::from_utf8_lossy(&done.stderr)
        );
        assert!(String::from_utf8_lossy(&done.stdout).contains("bulwark merge"));
    }
    (0..3)
        .map(|i| cwd.join(out).join(format!("shard-{i}-of-3")))
        .collect()
}

fn strs(dirs: &[PathBuf]) -> Vec<&str> {
    dirs.iter().map(|d| d.to_str().unwrap()).collect()
}

/// `value` without the keys that differ between any two runs (wall-clock times, where files
/// were written, how a run was split or resumed).
fn deterministic(mut value: Value) -> Value {
    const VOLATILE: [&str; 8] = [
        "seconds",
        "images_per_second",
        "train_seconds",
        "run_dir",
        "adversarial_file",
        "resumed_chunks",
        "shards",
        "weights",
    ];
    fn strip(v: &mut Value) {
        match v {
            Value::Object(map) => {
                for k in VOLATILE {
                    map.remove(k);
                }
                map.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut value);
    value
}

/// report.md without its lines about time and file locations.
fn report_text(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("report.md"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("| time |") && !l.starts_with("Worst-case inputs"))
        .map(|l| {
            // The cascade table's last column is seconds.
            if l.starts_with("| apgd") || l.starts_with("| square") {
                l.rsplitn(3, '|').nth(2).unwrap_or(l).to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn sharded_then_merged_sweep_evaluation_and_attack_equal_their_unsharded_runs() {
    let data = mnist_dir();
    let data = data.to_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let at = |name: &str| tmp.path().join(name);

    // A sweep of three strengths: unsharded, and one strength per shard process.
    let sweep: Vec<&str> = vec![
        "sweep",
        "--model",
        "mlp",
        "--reg",
        "l2",
        "--lambda",
        "0,0.001,0.01",
        "--epochs",
        "1",
        "--train-limit",
        "8000",
        "--data-dir",
        data,
        "--no-progress",
    ];
    let whole = at("sweep");
    let mut args = sweep.clone();
    args.extend(["--out", whole.to_str().unwrap()]);
    ok(&args);
    let shards = run_shards(&sweep, &at("sweep-sharded"), tmp.path());
    let mut merge = vec!["merge"];
    merge.extend(strs(&shards));
    let out = ok(&merge);
    assert!(out.contains("merged from 3 shards"), "{out}");
    let merged = read_json(&at("sweep-sharded/sweep.json"));
    assert_eq!(
        deterministic(merged.clone()),
        deterministic(read_json(&whole.join("sweep.json")))
    );
    assert_eq!(merged["points"].as_array().unwrap().len(), 3);
    assert!(shards[2].join("l2-0.01/model.bpk").is_file());
    assert!(whole.join("l2-0/model.bpk").is_file());
    // Relative to the temporary directory, where the evaluation runs: the merge, run from
    // elsewhere, finds them from the directory the shards ran in.
    let weights = "sweep/l2-0";

    // The robust evaluation: 90 images in chunks of 20 (shards of 1, 2 and 2 chunks).
    let eval: Vec<&str> = vec![
        "eval",
        "--model",
        "mlp",
        "--weights",
        weights,
        "--data-dir",
        data,
        "--preset",
        "quick",
        "--eps",
        "0.1",
        "--eps-sweep",
        "0.05",
        "--limit",
        "90",
        "--chunk-size",
        "20",
        "--probe-size",
        "10",
        "--no-progress",
    ];
    let whole = at("eval");
    let mut args = eval.clone();
    args.extend(["--out", "eval"]);
    ok_in(&args, tmp.path());
    let sharded = at("eval-sharded");
    let shards = run_shards(&eval, Path::new("eval-sharded"), tmp.path());
    let manifest = read_json(&shards[1].join("shard.json"));
    assert_eq!(manifest["range"], serde_json::json!({"start": 1, "end": 3}));

    // Refused: a missing shard, a duplicated one, and one of another configuration.
    let e = fails(&["merge", strs(&shards)[0], strs(&shards)[2]]);
    assert!(e.contains("missing shard(s) 1/3"), "{e}");
    let e = fails(&[
        "merge",
        strs(&shards)[0],
        strs(&shards)[1],
        strs(&shards)[1],
    ]);
    assert!(e.contains("given twice"), "{e}");
    let foreign_dir = at("eval-foreign");
    let mut args = eval.clone();
    args.extend([
        "--seed",
        "1",
        "--out",
        foreign_dir.to_str().unwrap(),
        "--shard",
        "2/3",
    ]);
    ok_in(&args, tmp.path());
    let foreign = foreign_dir.join("shard-2-of-3");
    let e = fails(&[
        "merge",
        strs(&shards)[0],
        strs(&shards)[1],
        foreign.to_str().unwrap(),
        "--out",
        at("mixed").to_str().unwrap(),
    ]);
    assert!(e.contains("fingerprint"), "{e}");

    let mut merge = vec!["merge"];
    merge.extend(strs(&shards));
    let out = ok(&merge);
    assert!(out.contains("robust"), "{out}");
    let (a, b) = (
        read_json(&whole.join("report.json")),
        read_json(&sharded.join("report.json")),
    );
    assert_eq!(b["shards"], 3);
    assert_eq!(b["n_examples"], 90);
    assert_eq!(deterministic(a), deterministic(b));
    assert_eq!(report_text(&whole), report_text(&sharded));
    for f in [
        "adversarial.safetensors",
        "robust_vs_eps.svg",
        "examples.png",
    ] {
        assert!(
            bytes(&whole.join(f)) == bytes(&sharded.join(f)),
            "{f} differs between the unsharded and the merged evaluation"
        );
    }

    // One attack: 90 images in batches of 20.
    let attack: Vec<&str> = vec![
        "attack",
        "--model",
        "mlp",
        "--weights",
        weights,
        "--data-dir",
        data,
        "--attack",
        "pgd",
        "--eps",
        "0.1",
        "--steps",
        "10",
        "--limit",
        "90",
        "--batch-size",
        "20",
        "--no-progress",
    ];
    let whole = at("attack");
    let mut args = attack.clone();
    args.extend(["--out", whole.to_str().unwrap()]);
    ok_in(&args, tmp.path());
    let shards = run_shards(&attack, &at("attack-sharded"), tmp.path());
    // A finished shard run again with --resume (a requeued array task) has nothing to do.
    let attack_sharded = at("attack-sharded");
    let mut again = attack.clone();
    again.extend([
        "--out",
        attack_sharded.to_str().unwrap(),
        "--shard",
        "1/3",
        "--resume",
    ]);
    let out = ok_in(&again, tmp.path());
    assert!(out.contains("nothing to resume"), "{out}");
    let mut merge = vec!["merge"];
    merge.extend(strs(&shards));
    ok(&merge);
    let merged = read_json(&at("attack-sharded/summary.json"));
    assert_eq!(merged["n"], 90);
    assert_eq!(
        deterministic(merged),
        deterministic(read_json(&whole.join("summary.json")))
    );
    assert!(bytes(&whole.join("examples.png")) == bytes(&at("attack-sharded/examples.png")));
    // A shard of an attack is not one of an evaluation.
    let e = fails(&[
        "merge",
        strs(&shards)[0],
        at("eval-sharded/shard-1-of-3").to_str().unwrap(),
        strs(&shards)[2],
        "--out",
        at("mixed2").to_str().unwrap(),
    ]);
    assert!(e.contains("another job"), "{e}");
}
