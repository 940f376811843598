#!/usr/bin/env bash
# The footprint benchmark: starts a control plane of its own (built once and cached by
# tests/e2e/control-plane.sh), runs `cargo bench --bench footprint` against it, and stops it.
# Takes 10 to 20 minutes: it creates 10,000 Deployments. Not part of tests/run.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
state="$(mktemp -d "${TMPDIR:-/tmp}/kafka-expose-footprint.XXXXXX")"
cleanup() { tests/e2e/control-plane.sh stop "$state" || true; rm -rf "$state"; }
trap cleanup EXIT
tests/e2e/control-plane.sh start "$state"
KAFKA_EXPOSE_E2E_ENV="$state/env" cargo bench --locked --bench footprint
