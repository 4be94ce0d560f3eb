//! The crate's layering, measured on its own source: which module refers to which
//! (`crate::…` paths outside comments, `use crate::{a, b}` groups included), with the log's
//! backends as modules of their own. The graph must have no cycle, the log's contract must
//! not refer to its backends, and the domain modules must not know actix.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The module a source file belongs to: its first directory or file name under `src/`,
/// with the log's backends apart (`log::redb`, `log::kafka`).
fn module_of(relative: &Path) -> Option<String> {
    let parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let first = parts.first()?.trim_end_matches(".rs").to_owned();
    if first == "lib" || first == "main" || first == "bin" {
        return None;
    }
    if first == "log" && parts.len() > 2 && matches!(parts[1].as_str(), "redb" | "kafka") {
        return Some(format!("log::{}", parts[1]));
    }
    Some(first)
}

/// The modules a line of code refers to through `crate::`.
fn references(line: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let names: Vec<&str> = match rest.strip_prefix('{') {
            Some(group) => group
                .split('}')
                .next()
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .collect(),
            None => vec![rest],
        };
        for name in names {
            let path: Vec<&str> = name
                .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .next()
                .unwrap_or("")
                .split("::")
                .collect();
            match path.as_slice() {
                ["log", backend @ ("redb" | "kafka"), ..] => found.push(format!("log::{backend}")),
                [first, ..] if !first.is_empty() => found.push((*first).to_owned()),
                _ => {}
            }
        }
    }
    found
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every module's references to other modules, and whether each mentions actix.
fn graph() -> (BTreeMap<String, BTreeSet<String>>, BTreeSet<String>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut actix = BTreeSet::new();
    for file in files {
        let relative = file.strip_prefix(&src).expect("under src");
        let Some(module) = module_of(relative) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("read source");
        for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            if line.contains("actix") {
                actix.insert(module.clone());
            }
            for target in references(line) {
                if target != module {
                    edges.entry(module.clone()).or_default().insert(target);
                }
            }
        }
        edges.entry(module).or_default();
    }
    (edges, actix)
}

/// A cycle of the graph, if it has one.
fn cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|node| visit(node, edges, &mut Vec::new(), &mut done))
}

#[test]
fn references_are_read_from_paths_and_groups() {
    assert_eq!(references("use crate::log::{LogError, Offset};"), ["log"]);
    assert_eq!(
        references("use crate::{panics, private_fs};"),
        ["panics", "private_fs"]
    );
    assert_eq!(
        references("let x = crate::log::redb::check(&dir); crate::wire::write(x);"),
        ["log::redb", "wire"]
    );
    let edges: BTreeMap<String, BTreeSet<String>> = [
        ("a".into(), ["b".into()].into()),
        ("b".into(), ["a".into()].into()),
    ]
    .into();
    assert_eq!(cycle(&edges).unwrap(), ["a", "b", "a"]);
}

#[test]
fn modules_form_layers_without_cycles() {
    let (edges, actix) = graph();
    assert!(edges.contains_key("gateway") && edges.contains_key("log::redb"));
    if let Some(cycle) = cycle(&edges) {
        panic!("an import cycle: {}", cycle.join(" → "));
    }
    for backend in ["log::redb", "log::kafka"] {
        assert!(
            !edges["log"].contains(backend),
            "the log's contract refers to its backend {backend}"
        );
    }
    for below in [
        "log",
        "log::redb",
        "log::kafka",
        "cluster",
        "groups",
        "push",
        "records",
        "wire",
    ] {
        let Some(targets) = edges.get(below) else {
            continue;
        };
        for transport in ["gateway", "http", "ws", "sse", "startup"] {
            assert!(
                !targets.contains(transport),
                "{below} refers to {transport}, a layer above it"
            );
        }
    }
    for domain in [
        "log",
        "log::redb",
        "log::kafka",
        "cluster",
        "groups",
        "auth",
        "gateway",
        "push",
    ] {
        assert!(!actix.contains(domain), "{domain} knows actix");
    }
}
