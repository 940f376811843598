#!/usr/bin/env bash
# The API requests of the policy controller: starts a control plane of its own (built once and
# cached by tests/e2e/control-plane.sh), runs the e2e_policy_requests suite at the size
# BENCHMARKS.md reports (3 policies, 50 workloads, 60 idle passes at one a second), prints its
# figures and stops. Takes 3 to 6 minutes. Not part of tests/run.sh, which runs the same test
# smaller. Arguments override the size: benches/requests.sh [WORKLOADS] [IDLE_PASSES]
set -euo pipefail
cd "$(dirname "$0")/.."
state="$(mktemp -d "${TMPDIR:-/tmp}/kafka-expose-requests.XXXXXX")"
cleanup() { tests/e2e/control-plane.sh stop "$state" || true; rm -rf "$state"; }
trap cleanup EXIT
tests/e2e/control-plane.sh start "$state"
KAFKA_EXPOSE_E2E_ENV="$state/env" \
  KAFKA_EXPOSE_REQUESTS_WORKLOADS="${1:-50}" \
  KAFKA_EXPOSE_REQUESTS_IDLE_PASSES="${2:-60}" \
  cargo test --locked --features e2e --test e2e_policy_requests -- --nocapture
