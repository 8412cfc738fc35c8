//! `cargo xtask cycles`: module-level import cycles in every crate of the workspace.
//!
//! A module is a source file under `crates/<crate>/src` (the crate root, `lib.rs` or `main.rs`,
//! only declares and re-exports, so it is left out). Module `a` depends on module `b` when `a`'s
//! file names `crate::b` — in a `use` (also inside `crate::{b, c::d}` groups) or in a path
//! expression. Comments are skipped. Strongly connected components with more than one module
//! are cycles; the task lists them and fails when there is one.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// The dependency graph of one crate's modules: module -> modules it names.
pub type Graph = BTreeMap<String, BTreeSet<String>>;

/// Checks every crate under `crates/`; prints each crate's edge count and any cycle.
pub fn check(root: &Path) -> Result<()> {
    let mut cycles = 0;
    let mut crates: Vec<_> = fs::read_dir(root.join("crates"))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("src").is_dir())
        .collect();
    crates.sort();
    for dir in crates {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let graph = crate_graph(&dir.join("src"))?;
        let edges: usize = graph.values().map(BTreeSet::len).sum();
        let sccs = strongly_connected(&graph);
        let bad: Vec<_> = sccs.into_iter().filter(|c| c.len() > 1).collect();
        println!(
            "{name}: {} modules, {edges} module dependencies, {} cycle(s)",
            graph.len(),
            bad.len()
        );
        for c in &bad {
            println!("  cycle: {}", c.join(" <-> "));
        }
        cycles += bad.len();
    }
    if cycles > 0 {
        bail!("{cycles} module-level import cycle(s)");
    }
    Ok(())
}

/// Reads `src` (flat or nested) into a module graph.
pub fn crate_graph(src: &Path) -> Result<Graph> {
    let mut files = Vec::new();
    collect(src, src, &mut files)?;
    let modules: BTreeSet<String> = files.iter().map(|(m, _)| m.clone()).collect();
    // `crate::Name` through the root's re-exports (`pub use module::Name;`) names `module`.
    let mut reexports = BTreeMap::new();
    for root in ["lib.rs", "main.rs"] {
        if let Ok(text) = fs::read_to_string(src.join(root)) {
            for (name, module) in root_reexports(&text) {
                if modules.contains(&module) {
                    reexports.insert(name, module);
                }
            }
        }
    }
    let mut graph = Graph::new();
    for (module, text) in &files {
        let deps = graph.entry(module.clone()).or_default();
        // `super::x` from `a::b` names `a::x` (a sibling); from a top-level module, the root.
        let parent: Vec<String> = module
            .split("::")
            .map(str::to_string)
            .collect::<Vec<_>>()
            .split_last()
            .map(|(_, p)| p.to_vec())
            .unwrap_or_default();
        let relative = relative_paths(text, "super::")
            .into_iter()
            .map(|segs| parent.iter().cloned().chain(segs).collect::<Vec<_>>());
        for target in crate_paths(text).into_iter().chain(relative) {
            // `crate::a::b` names module `a::b` when it is a file, else `a`.
            let mut best = None;
            for depth in (1..=target.len()).rev() {
                let m = target[..depth].join("::");
                if modules.contains(&m) {
                    best = Some(m);
                    break;
                }
            }
            if best.is_none() {
                best = target.first().and_then(|n| reexports.get(n)).cloned();
            }
            if let Some(m) = best
                && &m != module
                && !module.starts_with(&format!("{m}::"))
                && !m.starts_with(&format!("{module}::"))
            {
                deps.insert(m);
            }
        }
    }
    Ok(graph)
}

fn collect(src: &Path, dir: &Path, out: &mut Vec<(String, String)>) -> Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(src, &path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(src).unwrap().with_extension("");
            let parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().to_string())
                .collect();
            let mut module = parts.join("::");
            if let Some(stripped) = module.strip_suffix("::mod") {
                module = stripped.to_string();
            }
            if module == "lib" || module == "main" {
                continue;
            }
            let text =
                fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            out.push((module, text));
        }
    }
    Ok(())
}

/// Every `crate::...` path in `text` (outside `//` comments), as segments; groups are expanded
/// one level (`crate::{a, b::c}` gives `a` and `b::c`).
pub fn crate_paths(text: &str) -> Vec<Vec<String>> {
    relative_paths(text, "crate::")
}

/// Every path after `prefix` (`crate::` or `super::`) in `text`, outside comments and test
/// modules, as segments; groups expanded one level.
fn relative_paths(text: &str, prefix: &str) -> Vec<Vec<String>> {
    let text = without_test_modules(text);
    let code: String = text
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().last();
        rest = &rest[i + prefix.len()..];
        // `$crate::` in macros, `some_crate::` and `super::super::` (the second) are not paths
        // from this module's own position.
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$' || c == ':') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = matching_brace(group);
            for item in split_top(&group[..end]) {
                out.push(segments(item.trim()));
            }
        } else {
            out.push(segments(rest));
        }
    }
    out
}

/// `(name, module)` for every item the crate root re-exports with `pub use module::...`.
pub fn root_reexports(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("pub use ") {
        rest = &rest[i + "pub use ".len()..];
        let end = rest.find(';').unwrap_or(rest.len());
        let stmt: String = rest[..end].split_whitespace().collect::<Vec<_>>().join(" ");
        let Some((module, tail)) = stmt.split_once("::") else {
            continue;
        };
        let mut leaves = Vec::new();
        leaf_names(tail, &mut leaves);
        out.extend(leaves.into_iter().map(|n| (n, module.to_string())));
    }
    out
}

/// The names a use-tree brings into scope (`a::{B, c::D as E}` gives `B` and `E`).
fn leaf_names(tree: &str, out: &mut Vec<String>) {
    let tree = tree.trim();
    if let Some(inner) = tree.strip_prefix('{') {
        let end = matching_brace(inner);
        for item in split_top(&inner[..end]) {
            leaf_names(item, out);
        }
    } else if let Some((_, rest)) = tree.split_once("::") {
        leaf_names(rest, out);
    } else if let Some((_, alias)) = tree.split_once(" as ") {
        out.push(alias.trim().to_string());
    } else if !tree.is_empty() && tree != "*" && tree != "self" {
        out.push(tree.to_string());
    }
}

/// `text` without its `#[cfg(test)] mod name { ... }` blocks.
fn without_test_modules(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..i]);
        let after = rest[i + "#[cfg(test)]".len()..].trim_start();
        if after.starts_with("mod ")
            && let Some(open) = after.find('{')
        {
            let body = &after[open + 1..];
            let end = matching_brace(body);
            rest = body.get(end + 1..).unwrap_or("");
        } else {
            out.push_str("#[cfg(test)]");
            rest = &rest[i + "#[cfg(test)]".len()..];
        }
    }
    out.push_str(rest);
    out
}

fn segments(s: &str) -> Vec<String> {
    let mut segs = Vec::new();
    let mut rest = s;
    loop {
        let ident: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if ident.is_empty() {
            break;
        }
        rest = &rest[ident.len()..];
        segs.push(ident);
        match rest.strip_prefix("::") {
            Some(r) if !r.starts_with('{') && !r.starts_with('*') => rest = r,
            _ => break,
        }
    }
    segs
}

fn matching_brace(s: &str) -> usize {
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return i,
            '}' => depth -= 1,
            _ => {}
        }
    }
    s.len()
}

fn split_top(s: &str) -> Vec<&str> {
    let (mut depth, mut start, mut out) = (0usize, 0, Vec::new());
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

/// Tarjan's strongly connected components, each sorted, in a deterministic order.
pub fn strongly_connected(graph: &Graph) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.graph.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            comp.sort();
            s.out.push(comp);
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out.sort();
    s.out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_groups() {
        let p = crate_paths(
            "use crate::{a, b::{c, d}};\n// crate::ignored\nlet x = crate::e::f(); $crate::g; other_crate::h\n#[cfg(test)]\nmod tests {\n    use crate::t;\n    fn f() { {} }\n}\nuse crate::after;",
        );
        let p: Vec<String> = p.iter().map(|s| s.join("::")).collect();
        assert_eq!(p, ["a", "b", "e::f", "after"]);
    }

    #[test]
    fn root_reexports_name_their_module() {
        let r = root_reexports("pub use a::{B, c::D as E};\npub use f::G;\nmod h;");
        assert_eq!(
            r,
            [("B", "a"), ("E", "a"), ("G", "f")].map(|(n, m)| (n.to_string(), m.to_string()))
        );
    }

    #[test]
    fn sibling_modules_named_through_super_are_edges() {
        let dir = std::env::temp_dir().join(format!("xtask-cycles-{}", std::process::id()));
        let src = dir.join("src");
        fs::create_dir_all(src.join("p")).unwrap();
        fs::write(src.join("lib.rs"), "mod p;").unwrap();
        fs::write(src.join("p/mod.rs"), "mod a; mod b;").unwrap();
        fs::write(src.join("p/a.rs"), "use super::b::B;").unwrap();
        fs::write(src.join("p/b.rs"), "use super::{a::A};").unwrap();
        let graph = crate_graph(&src).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        let cycles: Vec<_> = strongly_connected(&graph)
            .into_iter()
            .filter(|c| c.len() > 1)
            .collect();
        assert_eq!(cycles, vec![vec!["p::a".to_string(), "p::b".into()]]);
    }

    #[test]
    fn finds_a_cycle_and_only_it() {
        let mut g = Graph::new();
        g.entry("a".into()).or_default().insert("b".into());
        g.entry("b".into()).or_default().insert("a".into());
        g.entry("c".into()).or_default().insert("a".into());
        let sccs = strongly_connected(&g);
        assert_eq!(
            sccs,
            vec![vec!["a".to_string(), "b".into()], vec!["c".into()]]
        );
    }
}
