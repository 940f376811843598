#!/usr/bin/env bash
# Runs the cargo-fuzz targets, each for SECONDS (default 600), one after another; installs
# cargo-fuzz when it is missing. Not part of tests/run.sh: CI runs the same properties as bounded
# property tests (tests/no_panics.rs) instead.
#
#   fuzz/run.sh [SECONDS] [TARGET...]      targets: properties annotations listeners decisions admission responses certificates
#
# Each target starts from the seeds in fuzz/seeds/<target> (fixture pods, workloads, reviews and
# properties files) and keeps its corpus in fuzz/corpus/<target>. A finding is written to
# fuzz/artifacts/<target>/ and stops that target with a non-zero status.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-600}"
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then
  targets=(properties annotations listeners decisions admission responses certificates)
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz
fi
status=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  cp -n "seeds/$t"/* "corpus/$t/" 2>/dev/null || true
  echo "fuzz: $t for ${seconds}s" >&2
  set +e
  cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time="$seconds" -rss_limit_mb=4096 \
      -print_final_stats=1 2>&1 | tee "$t.log" | { grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+== ERROR|SUMMARY|Test unit written)' || true; }
  rc="${PIPESTATUS[0]}"
  set -e
  if [[ "$rc" != 0 ]]; then
    echo "fuzz: $t found something; see fuzz/artifacts/$t and fuzz/$t.log" >&2
    status=1
  fi
done
exit "$status"
