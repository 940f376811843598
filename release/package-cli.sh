#!/usr/bin/env bash
# Packages the CLI for one platform: DIST/kafka-expose-NAME.tar.gz holds the binary twice, as
# kafka-expose and as kubectl-kafka_expose (which kubectl runs as `kubectl kafka-expose`), with the
# LICENSE and README. The archive is deterministic: sorted, owned by 0, at the commit's time.
#
#   release/package-cli.sh BINARY NAME DIST
set -euo pipefail
bin="$1" name="$2" dist="$3"
cd "$(dirname "$0")/.."
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
install -m 0755 "$bin" "$stage/kafka-expose"
install -m 0755 "$bin" "$stage/kubectl-kafka_expose"
install -m 0644 LICENSE README.md "$stage/"
mkdir -p "$dist"
epoch="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}"
# GNU tar on Linux; bsdtar on macOS takes fewer options.
if tar --version 2>/dev/null | grep -q GNU; then
  tar -C "$stage" --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" -cf - . | gzip -n >"$dist/kafka-expose-$name.tar.gz"
else
  tar -C "$stage" --uid 0 --gid 0 -cf - . | gzip -n >"$dist/kafka-expose-$name.tar.gz"
fi
echo "$dist/kafka-expose-$name.tar.gz"
