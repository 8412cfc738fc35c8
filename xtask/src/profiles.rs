//! The build profile's promise that every workspace member builds as the project's own code.
//!
//! The dev profile's base settings are the dependencies' (opt-level 3, no debug assertions), and
//! each member gets its own `[profile.dev.package.<name>]` table with opt-level 1, line tables,
//! debug assertions, overflow checks and Cargo's dev default of 256 codegen units in place of the
//! dependencies' 16 (`Cargo.toml` says why). A member added without such a
//! table would silently build like a dependency; this check, run by `cargo xtask ci` and by
//! xtask's tests, names it instead.

use std::path::Path;

use anyhow::{Context, Result, bail};
use toml::{Table, Value};

/// The settings every member's table must hold.
fn member_settings() -> [(&'static str, Value); 5] {
    [
        ("opt-level", Value::Integer(1)),
        ("debug", Value::String("line-tables-only".into())),
        ("debug-assertions", Value::Boolean(true)),
        ("overflow-checks", Value::Boolean(true)),
        ("codegen-units", Value::Integer(256)),
    ]
}

fn read_toml(path: &Path) -> Result<Table> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.parse::<Table>()
        .with_context(|| format!("parsing {}", path.display()))
}

/// What is wrong with the members' profile tables of `manifest`, given each member's directory
/// and package name; empty when nothing is.
fn problems(manifest: &Table, members: &[(String, String)]) -> Vec<String> {
    let tables = manifest
        .get("profile")
        .and_then(|p| p.get("dev"))
        .and_then(|d| d.get("package"))
        .and_then(Value::as_table);
    let mut problems = Vec::new();
    for (dir, name) in members {
        let Some(table) = tables.and_then(|t| t.get(name)) else {
            problems.push(format!(
                "{name} ({dir}) has no [profile.dev.package.{name}]"
            ));
            continue;
        };
        for (key, value) in member_settings() {
            if table.get(key) != Some(&value) {
                problems.push(format!(
                    "[profile.dev.package.{name}] lacks `{key} = {value}`"
                ));
            }
        }
    }
    problems
}

/// Fails, naming the members, when a workspace member lacks its profile table or a setting in it.
pub fn check(root: &Path) -> Result<()> {
    let path = root.join("Cargo.toml");
    let manifest = read_toml(&path)?;
    let dirs = manifest
        .get("workspace")
        .and_then(|w| w.get("members"))
        .and_then(Value::as_array)
        .with_context(|| format!("{}: no [workspace] members", path.display()))?;
    let mut members = Vec::new();
    for dir in dirs.iter().filter_map(Value::as_str) {
        let member = root.join(dir).join("Cargo.toml");
        let name = read_toml(&member)?
            .get("package")
            .and_then(|p| p.get("name"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .with_context(|| format!("{}: no package name", member.display()))?;
        members.push((dir.to_string(), name));
    }
    let problems = problems(&manifest, &members);
    if !problems.is_empty() {
        bail!(
            "{}: every workspace member needs its own dev-profile table (opt-level 1, line \
             tables, debug assertions, overflow checks), or it builds like a dependency: {}",
            path.display(),
            problems.join("; ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_member_of_this_workspace_has_its_profile_table() {
        check(Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()).unwrap();
    }

    #[test]
    fn a_member_without_a_table_or_with_a_missing_setting_is_named() {
        let manifest: Table = "[profile.dev.package.pa]\nopt-level = 1\n\
                               debug = \"line-tables-only\"\ndebug-assertions = true\n\
                               overflow-checks = true\ncodegen-units = 256\n\
                               [profile.dev.package.pb]\nopt-level = 1\n"
            .parse()
            .unwrap();
        let member = |d: &str, n: &str| (d.to_string(), n.to_string());
        assert!(problems(&manifest, &[member("a", "pa")]).is_empty());
        let found = problems(
            &manifest,
            &[member("a", "pa"), member("b", "pb"), member("c", "pc")],
        );
        assert_eq!(found.len(), 5, "{found:?}");
        assert!(found[0].contains("pb") && found[0].contains("debug"));
        assert!(found[4].contains("pc (c) has no [profile.dev.package.pc]"));
    }
}
