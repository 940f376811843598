//! The layers' dependencies point one way: cmd -> cluster / webhook / offline / check -> engine -> api
//! (the policy CRD's types) -> config -> kafka (crates/kafka), names. This reads the sources and refuses an import that runs back up, or
//! I/O in a pure layer.
//!
//! Inside `src/cluster/`, the modules import each other without a circle (`policies/` counts as
//! one module); none imports `runtime`, which starts them all; and no controller (reconciler,
//! policies, nodes) imports another: what they share is in `context`, `events` and `caches`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each layer, and the crate modules it must not import.
const RULES: &[(&str, &[&str])] = &[
    ("src/names.rs", &["crate::"]),
    // A crate of its own (the static launcher is built from it): Cargo keeps it from the main
    // crate; this keeps it from naming it.
    ("crates/kafka/src", &["kafka_expose::"]),
    (
        "src/config",
        &[
            "crate::api",
            "crate::engine",
            "crate::cluster",
            "crate::webhook",
            "crate::offline",
            "crate::cmd",
            "crate::cli",
        ],
    ),
    (
        "src/api",
        &[
            "crate::engine",
            "crate::cluster",
            "crate::webhook",
            "crate::offline",
            "crate::cmd",
            "crate::cli",
        ],
    ),
    (
        "src/engine",
        &[
            "crate::cluster",
            "crate::webhook",
            "crate::offline",
            "crate::cmd",
            "crate::cli",
        ],
    ),
    (
        "src/cluster",
        &[
            "crate::webhook",
            "crate::offline",
            "crate::cmd",
            "crate::cli",
        ],
    ),
    (
        "src/webhook",
        &["crate::cluster", "crate::offline", "crate::cmd"],
    ),
    (
        "src/offline",
        &[
            "crate::cluster",
            "crate::webhook",
            "crate::cmd",
            "crate::cli",
        ],
    ),
    (
        "src/check",
        &[
            "crate::webhook",
            "crate::offline",
            "crate::cmd",
            "crate::cli",
        ],
    ),
];

/// What the pure layers never use: a client, a runtime, a server, the clock.
const IO: &[&str] = &[
    "kube::",
    "tokio",
    "axum",
    "hyper",
    "SystemTime::now",
    "Timestamp::now",
];
const PURE: &[&str] = &[
    "src/names.rs",
    "crates/kafka/src",
    "src/config",
    "src/api",
    "src/engine",
];
/// What of kube a pure layer may use: its types (label selectors) and the CRD derive, which
/// generate code and hold no client.
const PURE_KUBE: &[&str] = &["kube::core::", "kube::CustomResource"];

fn sources(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(path).unwrap() {
        out.extend(sources(&entry.unwrap().path()));
    }
    out.retain(|p| p.extension().is_some_and(|e| e == "rs"));
    out
}

/// The code lines of a file, without comments.
fn code(path: &Path) -> Vec<(usize, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
        .map(|(i, l)| (i + 1, l.to_string()))
        .collect()
}

fn violations(layer: &str, forbidden: &[&str]) -> Vec<String> {
    violations_but(layer, forbidden, &[])
}

/// [`violations`], with the `allowed` text taken out of each line first.
fn violations_but(layer: &str, forbidden: &[&str], allowed: &[&str]) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    for file in sources(&root.join(layer)) {
        for (n, mut line) in code(&file) {
            for a in allowed {
                line = line.replace(a, "");
            }
            for f in forbidden {
                if line.contains(f) {
                    let rel = file.strip_prefix(root).unwrap().display();
                    found.push(format!("{rel}:{n}: {f} in {:?}", line.trim()));
                }
            }
        }
    }
    found
}

#[test]
fn no_import_runs_back_up_the_layers() {
    let found: Vec<String> = RULES
        .iter()
        .flat_map(|(layer, forbidden)| violations(layer, forbidden))
        .collect();
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_pure_layers_do_no_io() {
    let found: Vec<String> = PURE
        .iter()
        .flat_map(|l| violations_but(l, IO, PURE_KUBE))
        .collect();
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// The modules of `cluster` a source text names, from `super::` (`super::super::` in a file one
/// folder down) and `crate::cluster::`, in `use` lines and paths alike. Comments are skipped.
fn cluster_refs(text: &str, depth: usize) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let sup = "super::".repeat(depth);
    for line in text.lines() {
        let code = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        for prefix in [sup.as_str(), "crate::cluster::"] {
            for (i, _) in code.match_indices(prefix) {
                let (before, rest) = (&code[..i], &code[i + prefix.len()..]);
                // `super::super::x` is not `super::x` one level up, nor the other way round.
                if prefix.starts_with("super")
                    && (before.ends_with("super::") || rest.starts_with("super::"))
                {
                    continue;
                }
                if let Some(group) = rest.strip_prefix('{') {
                    let end = group.find('}').unwrap_or(group.len());
                    for item in group[..end].split(',') {
                        if let Some(name) = ident(item.trim()) {
                            out.insert(name);
                        }
                    }
                } else if let Some(name) = ident(rest) {
                    out.insert(name);
                }
            }
        }
    }
    out
}

fn ident(s: &str) -> Option<String> {
    let name: String = s
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty() && name != "self").then_some(name)
}

/// The module a file of `src/cluster/` belongs to: its stem, or its folder's name.
fn module_of(root: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(root).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// Module -> the modules it imports, for `src/cluster/`. `mod.rs` (the module map) is left out:
/// declaring a module is not importing it.
fn cluster_graph(root: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in sources(root) {
        let rel = file.strip_prefix(root).unwrap();
        if rel == Path::new("mod.rs") {
            continue;
        }
        let module = module_of(root, &file);
        let text = std::fs::read_to_string(&file).unwrap();
        // A file one folder down reaches its siblings in `cluster` through `super::super::`;
        // a folder's own mod.rs through `super::`.
        let depth = if rel.components().count() > 1 && rel.file_name().unwrap() != "mod.rs" {
            2
        } else {
            1
        };
        let names = cluster_refs(&text, depth);
        let entry = graph.entry(module.clone()).or_default();
        entry.extend(
            names
                .into_iter()
                .filter(|n| *n != module && is_module(root, n)),
        );
    }
    graph
}

fn is_module(root: &Path, name: &str) -> bool {
    root.join(format!("{name}.rs")).exists() || root.join(name).join("mod.rs").exists()
}

/// An import circle, as the modules on it, if there is one.
fn circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        g: &BTreeMap<String, BTreeSet<String>>,
        n: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            let mut c = path[i..].to_vec();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(g, m, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for n in graph.keys() {
        if let Some(c) = visit(graph, n, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn the_cluster_modules_import_each_other_without_a_circle() {
    let graph = cluster_graph(&src().join("cluster"));
    assert!(
        graph.contains_key("reconciler") && graph.contains_key("policies"),
        "the graph was read: {graph:?}"
    );
    if let Some(c) = circle(&graph) {
        panic!("an import circle in src/cluster: {}", c.join(" -> "));
    }
}

#[test]
fn only_the_runtime_starts_the_controllers_and_no_controller_imports_another() {
    let graph = cluster_graph(&src().join("cluster"));
    const CONTROLLERS: [&str; 3] = ["reconciler", "policies", "nodes"];
    for (module, imports) in &graph {
        if module == "runtime" {
            continue;
        }
        assert!(
            !imports.contains("runtime"),
            "{module} imports runtime, which starts it: share through context instead"
        );
        for c in CONTROLLERS {
            assert!(
                !imports.contains(c),
                "{module} imports the controller {c}: what controllers share belongs in context, events or caches"
            );
        }
    }
    let runtime = &graph["runtime"];
    for c in CONTROLLERS {
        assert!(runtime.contains(c), "runtime starts {c}: {runtime:?}");
    }
}

#[test]
fn the_reader_finds_grouped_nested_and_path_imports_and_a_circle() {
    let text = "use super::{caches, context::Context};\nuse super::events::Note;\n// use super::runtime;\nlet x = crate::cluster::leader::run();\nuse super::super::names;";
    assert_eq!(
        cluster_refs(text, 1),
        ["caches", "context", "events", "leader"]
            .map(String::from)
            .into()
    );
    assert_eq!(
        cluster_refs(
            "use super::super::context::Context; use super::found::Found;",
            2
        ),
        ["context"].map(String::from).into()
    );
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.insert("a".into(), ["b".to_string()].into());
    g.insert("b".into(), ["c".to_string()].into());
    g.insert("c".into(), BTreeSet::new());
    assert_eq!(circle(&g), None);
    g.insert("c".into(), ["a".to_string()].into());
    assert_eq!(
        circle(&g),
        Some(["a", "b", "c", "a"].map(String::from).to_vec())
    );
}
