//! The build profile's promise that every workspace member builds as the project's own code.
//!
//! The dev profile's base settings are the dependencies' (opt-level 3, no debug assertions), and
//! each member gets its own `[profile.dev.package.<name>]` table with opt-level 1, line tables,
//! debug assertions and overflow checks (`Cargo.toml` says why). A member added without such a
//! table would silently build like a dependency; this check, run by `cargo xtask ci` and by
//! xtask's tests, names it instead.

use std::path::Path;

use anyhow::{Context, Result, bail};

/// The settings every member's table must hold, as written in `Cargo.toml`.
const MEMBER_SETTINGS: [&str; 4] = [
    "opt-level = 1",
    "debug = \"line-tables-only\"",
    "debug-assertions = true",
    "overflow-checks = true",
];

/// The member directories listed in the workspace's `members = [...]`.
fn members(manifest: &str) -> Vec<String> {
    let Some(start) = manifest.find("members = [") else {
        return Vec::new();
    };
    let rest = &manifest[start + "members = [".len()..];
    let list = &rest[..rest.find(']').unwrap_or(rest.len())];
    list.split(',')
        .map(|m| m.trim().trim_matches('"').to_string())
        .filter(|m| !m.is_empty())
        .collect()
}

/// The `name = "..."` of a member's `[package]` table.
fn package_name(manifest: &str) -> Option<String> {
    let package = &manifest[manifest.find("[package]")?..];
    package.lines().skip(1).find_map(|l| {
        let l = l.trim();
        let value = l.strip_prefix("name")?.trim_start().strip_prefix('=')?;
        Some(value.trim().trim_matches('"').to_string())
    })
}

/// The body of `[profile.dev.package.<name>]`, up to the next table.
fn member_table<'a>(manifest: &'a str, name: &str) -> Option<&'a str> {
    let header = format!("[profile.dev.package.{name}]\n");
    let body = &manifest[manifest.find(&header)? + header.len()..];
    Some(&body[..body.find("\n[").map_or(body.len(), |i| i + 1)])
}

/// Fails, naming the members, when a workspace member lacks its profile table or a setting in it.
pub fn check(root: &Path) -> Result<()> {
    let path = root.join("Cargo.toml");
    let manifest =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut problems = Vec::new();
    let members = members(&manifest);
    if members.is_empty() {
        bail!("{}: no `members = [...]` list found", path.display());
    }
    for dir in members {
        let member_manifest = root.join(&dir).join("Cargo.toml");
        let text = std::fs::read_to_string(&member_manifest)
            .with_context(|| format!("reading {}", member_manifest.display()))?;
        let name = package_name(&text)
            .with_context(|| format!("{}: no package name", member_manifest.display()))?;
        match member_table(&manifest, &name) {
            None => problems.push(format!(
                "{name} ({dir}) has no [profile.dev.package.{name}]"
            )),
            Some(table) => {
                for setting in MEMBER_SETTINGS {
                    if !table.lines().any(|l| l.trim() == setting) {
                        problems.push(format!("[profile.dev.package.{name}] lacks `{setting}`"));
                    }
                }
            }
        }
    }
    if !problems.is_empty() {
        bail!(
            "{}: every workspace member needs its own dev-profile table ({}), or it builds \
             like a dependency: {}",
            path.display(),
            MEMBER_SETTINGS.join(", "),
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
        let manifest = "[workspace]\nmembers = [\n    \"a\",\n    \"b\",\n]\n\n\
                        [profile.dev.package.pa]\nopt-level = 1\ndebug = \"line-tables-only\"\n\
                        debug-assertions = true\noverflow-checks = true\n\
                        [profile.dev.package.pb]\nopt-level = 1\n";
        assert_eq!(members(manifest), ["a", "b"]);
        assert_eq!(
            package_name("[package]\nname = \"pa\"\nversion = \"0.1.0\"\n").as_deref(),
            Some("pa")
        );
        assert!(
            member_table(manifest, "pa")
                .unwrap()
                .contains("overflow-checks = true")
        );
        let pb = member_table(manifest, "pb").unwrap();
        assert!(pb.contains("opt-level = 1") && !pb.contains("debug-assertions"));
        assert!(member_table(manifest, "pc").is_none());
    }
}
