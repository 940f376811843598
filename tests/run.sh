#!/usr/bin/env bash
# The project's test command: everything a fresh machine needs, then every test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked
