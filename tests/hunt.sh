#!/usr/bin/env bash
# The flake hunt: runs the control-plane suites RUNS times back to back (default 5), each on a
# fresh control plane, while two busy loops keep both cores loaded, and prints one line per
# suite and run. A test that fails once in several runs is a failing test.
#
#   tests/hunt.sh [RUNS] [LOG_DIR]
#
# The suites are built once, before the first run, and run from a copy of their binaries, so
# that work on the tree meanwhile does not change what is hunted. Not part of tests/run.sh:
# it takes about 8 to 12 minutes a run.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
logs="${2:-$(mktemp -d "${TMPDIR:-/tmp}/kafka-expose-hunt.XXXXXX")}"
mkdir -p "$logs/bin"
suites=(e2e e2e_certs e2e_policy e2e_policy_controller e2e_policy_requests e2e_shared_lb e2e_webhook deploy check)

tools="$(tests/e2e/control-plane.sh tools)"
# Build every suite, and copy each one's newest binary.
cargo test --locked --features e2e --no-run --message-format=json 2>/dev/null |
  python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and "test" in m["target"]["kind"]:
        print(m["target"]["name"], m["executable"])
' >"$logs/binaries"
for s in "${suites[@]}"; do
  exe="$(awk -v s="$s" '$1 == s {print $2}' "$logs/binaries" | tail -1)"
  [[ -x "$exe" ]] || { echo "hunt: no binary for $s" >&2; exit 1; }
  cp "$exe" "$logs/bin/$s"
done

load=()
stop_load() { for p in "${load[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap stop_load EXIT
for _ in 1 2; do
  (while :; do :; done) &
  load+=($!)
done

failed=0
for run in $(seq 1 "$runs"); do
  state="$(mktemp -d "${TMPDIR:-/tmp}/kafka-expose-hunt-cp.XXXXXX")"
  tests/e2e/control-plane.sh start "$state" >"$logs/control-plane-$run.log" 2>&1
  for s in "${suites[@]}"; do
    start=$(date +%s)
    if KAFKA_EXPOSE_E2E_ENV="$state/env" KAFKA_EXPOSE_TOOLS="$tools" \
      "$logs/bin/$s" >"$logs/run$run-$s.log" 2>&1; then
      verdict=ok
    else
      verdict=FAILED
      failed=$((failed + 1))
    fi
    summary="$(grep -E '^test result:' "$logs/run$run-$s.log" | tail -1)"
    echo "run $run $s: $verdict in $(($(date +%s) - start)) s; $summary"
  done
  tests/e2e/control-plane.sh stop "$state" >>"$logs/control-plane-$run.log" 2>&1 || true
  rm -rf "$state"
done
echo "hunt: $runs runs, $failed suite runs failed; logs in $logs"
[[ $failed -eq 0 ]]
