#!/usr/bin/env bash
# Builds the book (docs/) with mdBook into OUT (default target/book), then fails on any broken
# internal link: a page, or an anchor within it, that the built HTML does not have
# (docs/check-links.py). mdBook is installed once, at a pinned version, into the cache. Part of
# tests/run.sh; the release workflow publishes what it builds.
#
#   docs/build.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-target/book}"
version=0.5.4
root="${KAFKA_EXPOSE_CACHE:-$HOME/.cache/kafka-expose}/tools/mdbook-$version"
if [[ ! -x "$root/bin/mdbook" ]]; then
  echo "docs: installing mdBook $version" >&2
  cargo install mdbook --version "$version" --locked --no-default-features --features search \
    --root "$root" >&2
fi
rm -rf "$out"
"$root/bin/mdbook" build docs --dest-dir "$(realpath -m "$out")" >&2
python3 docs/check-links.py "$out" README.md
