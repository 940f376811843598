#!/usr/bin/env bash
# Instructions per admission answer, counted by valgrind's callgrind: unlike time, the count does
# not move with the load of a shared machine. For each review, the engine benchmark binary answers
# it N times and 0 times; the difference over N is one answer, beside one scan of the same body
# into IgnoredAny (the baseline, as in `cargo bench --bench engine`). The pod with 3,000 variables
# beside the one with 1,500 shows whether the cost stays linear.
#
#   benches/instructions.sh [N]      (default 200; needs valgrind)
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-200}"
command -v valgrind >/dev/null || { echo "instructions.sh: valgrind is not installed" >&2; exit 1; }
bin=$(cargo bench --bench engine --no-run --message-format=json 2>/dev/null |
  sed -n 's/.*"executable":"\([^"]*engine-[^"]*\)".*/\1/p' | tail -1)
[[ -x "$bin" ]] || { echo "instructions.sh: could not build the engine benchmark" >&2; exit 1; }
count() { # review iterations -> instructions
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" --bench --repeat "$1" "$2" 2>&1 |
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
per() { echo $(( ($(count "$1" "$n") - $(count "$1" 0)) / n )); }
echo "| review | one scan (baseline) | answer | answer / scan |"
echo "|---|---:|---:|---:|"
for r in unrelated binding binding-broker pod big-pod big-pod-3000; do
  s=$(per "scan-$r"); a=$(per "$r")
  printf '| %s | %s | %s | %s |\n' "$r" "$s" "$a" "$(awk -v a="$a" -v s="$s" 'BEGIN{printf "%.2f", a/s}')"
done
