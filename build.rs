//! Puts the commit the binary was built from into `kafka-expose --version`.
//!
//! `KAFKA_EXPOSE_COMMIT` wins (the Dockerfile and release builds from a tarball pass it); else
//! `git rev-parse HEAD`; else `unknown`. Rebuilt when HEAD moves, so the commit never lags.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Reruns the build script when `path` (relative to the git directory) changes, if it exists:
/// cargo treats a missing path as always changed.
fn watch(path: &str) {
    if let Some(p) = git(&["rev-parse", "--git-path", path])
        && std::path::Path::new(&p).exists()
    {
        println!("cargo:rerun-if-changed={p}");
    }
}

fn main() {
    println!("cargo:rerun-if-env-changed=KAFKA_EXPOSE_COMMIT");
    let commit = std::env::var("KAFKA_EXPOSE_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| {
            // HEAD, the branch it names, and packed refs: any of them moving changes the commit.
            watch("HEAD");
            watch("packed-refs");
            if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
                watch(&r);
            }
            git(&["rev-parse", "HEAD"])
        })
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=KAFKA_EXPOSE_COMMIT={commit}");
}
