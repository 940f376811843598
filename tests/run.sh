#!/usr/bin/env bash
# The project's test command: everything a fresh machine needs, then every test suite.
# Without the control plane, `cargo test` alone runs the fast tier (the suites behind the
# `e2e` feature are left out); this runs both.
#
# The e2e suite runs against a real etcd + kube-apiserver + kube-controller-manager, built once
# into a cache by tests/e2e/control-plane.sh (or taken from KAFKA_EXPOSE_CONTROL_PLANE_BIN) and
# started here on loopback for the length of the run.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --all-targets --features e2e --locked -- -D warnings

state="$(mktemp -d "${TMPDIR:-/tmp}/kafka-expose-e2e.XXXXXX")"
cleanup() { tests/e2e/control-plane.sh stop "$state" || true; }
trap cleanup EXIT
tests/e2e/control-plane.sh start "$state"
export KAFKA_EXPOSE_E2E_ENV="$state/env"
KAFKA_EXPOSE_TOOLS="$(tests/e2e/control-plane.sh tools)"
export KAFKA_EXPOSE_TOOLS

cargo test --all-targets --features e2e --locked
