#!/usr/bin/env bash
# The project's test command: everything a fresh machine needs, then every test suite.
# Without the control plane, `cargo test` alone runs the fast tier (the suites behind the
# `e2e` and `image` features are left out); this runs all of them.
#
# The e2e suite runs against a real etcd + kube-apiserver + kube-controller-manager, built once
# into a cache by tests/e2e/control-plane.sh (or taken from KAFKA_EXPOSE_CONTROL_PLANE_BIN) and
# started here on loopback for the length of the run.
#
# Besides the Rust suites it:
#   - lints the GitHub workflows offline (tests/workflows.sh: actionlint, zizmor);
#   - builds the book and fails on a broken internal link (docs/build.sh);
#   - builds the OCI image twice (image/build.sh; the release binaries and Debian's packages are
#     cached) and fails unless both archives are the same bytes, then runs the image's binary
#     from its unpacked root on amd64 and, under qemu-user, arm64 (tests/image.rs);
#   - then starts a real node (tests/e2e/node.sh: kubelet, containerd, kube-proxy,
#     kube-scheduler, each node in its own network namespace, and a client namespace outside)
#     and runs tests/e2e_node.rs on two nodes: the chart installed with the image built here,
#     brokers (tansu, and the apache-kafka-kraft fixture) exposed in every mode and reached from
#     outside, the chart uninstalled.
set -euo pipefail
cd "$(dirname "$0")/.."
# No incremental compilation: a run from a fresh clone never reuses it, and it doubled the target
# directory (4.5 of 8.5 GB here); CI machines may have little free disk.
export CARGO_INCREMENTAL=0
cargo fmt --all -- --check
cargo clippy --all-targets --features e2e,image,node --locked -- -D warnings

tests/workflows.sh
docs/build.sh target/book

first="$(image/build.sh target/image/kafka-expose.oci.tar)"
second="$(image/build.sh target/image/again.oci.tar)"
if [[ "$first" != "$second" ]] || ! cmp -s target/image/kafka-expose.oci.tar target/image/again.oci.tar; then
  echo "image: two builds differ: $first, $second" >&2
  exit 1
fi
rm -f target/image/again.oci.tar
echo "image: two builds, one digest: $first" >&2
export KAFKA_EXPOSE_IMAGE="$PWD/target/image/kafka-expose.oci.tar"

state="$(mktemp -d "${TMPDIR:-/tmp}/kafka-expose-e2e.XXXXXX")"
nodes="$(mktemp -d "${TMPDIR:-/tmp}/kafka-expose-node.XXXXXX")"
cleanup() {
  tests/e2e/control-plane.sh stop "$state" || true
  tests/e2e/node.sh stop "$nodes" || true
}
trap cleanup EXIT
tests/e2e/control-plane.sh start "$state"
export KAFKA_EXPOSE_E2E_ENV="$state/env"
KAFKA_EXPOSE_TOOLS="$(tests/e2e/control-plane.sh tools)"
export KAFKA_EXPOSE_TOOLS

cargo test --all-targets --features e2e,image --locked
tests/e2e/control-plane.sh stop "$state"

# The real node: kubelet, containerd, kube-proxy and kube-scheduler (tests/e2e/node.sh).
started="$(date +%s)"
tests/e2e/node.sh start "$nodes" 2
KAFKA_EXPOSE_E2E_ENV="$nodes/env" KAFKA_EXPOSE_NODE_DIR="$nodes" \
  cargo test --features node --test e2e_node --locked
tests/e2e/node.sh stop "$nodes"
echo "node suite: $(($(date +%s) - started)) s, start and stop included" >&2
