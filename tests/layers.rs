//! The layers' dependencies point one way: cmd -> cluster / webhook / offline / check -> engine -> api
//! (the policy CRD's types) -> config -> kafka, names. This reads the sources and refuses an import that runs back up, or
//! I/O in a pure layer.

use std::path::{Path, PathBuf};

/// Each layer, and the crate modules it must not import.
const RULES: &[(&str, &[&str])] = &[
    ("src/names.rs", &["crate::"]),
    (
        "src/kafka",
        &[
            "crate::names",
            "crate::api",
            "crate::config",
            "crate::engine",
            "crate::cluster",
            "crate::webhook",
            "crate::offline",
            "crate::cmd",
            "crate::cli",
        ],
    ),
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
    "src/kafka",
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
