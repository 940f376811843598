#!/usr/bin/env bash
# Prints the one version (Cargo.toml's), after checking that everything carrying it agrees: the
# chart's version and appVersion, and the plain manifests' image tag. With a tag (v0.1.0), checks
# that the tag names that version too. tests/release.rs checks the same, and more, on every run.
#
#   release/version.sh [TAG]
set -euo pipefail
cd "$(dirname "$0")/.."
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)"
chart="$(sed -n 's/^version: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' deploy/helm/kafka-expose/Chart.yaml)"
app="$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' deploy/helm/kafka-expose/Chart.yaml)"
manifest="$(sed -n 's|^ *image: ghcr.io/kafka-expose/kafka-expose:\(.*\)$|\1|p' deploy/manifests/deployment.yaml)"
bad=0
for pair in "Chart.yaml version:$chart" "Chart.yaml appVersion:$app" "deploy/manifests image tag:$manifest"; do
  if [[ "${pair##*:}" != "$version" ]]; then
    echo "version: ${pair%:*} is '${pair##*:}', Cargo.toml's is '$version'" >&2
    bad=1
  fi
done
if [[ $# -gt 0 && "$1" != "v$version" ]]; then
  echo "version: the tag is '$1'; Cargo.toml's version makes it 'v$version'" >&2
  bad=1
fi
((bad == 0)) || exit 1
echo "$version"
