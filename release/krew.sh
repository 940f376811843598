#!/usr/bin/env bash
# Writes the krew plugin manifest for a release: one platform per CLI archive in DIST, each with
# its download address and sha256. krew installs it as `kubectl kafka-expose`.
#
#   release/krew.sh VERSION BASE_URL DIST > kafka-expose.krew.yaml
set -euo pipefail
version="$1" base="$2" dist="$3"
cat <<YAML
apiVersion: krew.googlecontainertools.github.com/v1alpha2
kind: Plugin
metadata:
  name: kafka-expose
spec:
  version: v$version
  homepage: https://github.com/kafka-expose/kafka-expose
  shortDescription: Check and preview external access to Kafka brokers
  description: |
    kafka-expose makes Kafka brokers that unmodified charts deployed reachable from outside
    the cluster. As a kubectl plugin it runs its CLI: \`kubectl kafka-expose check\` dials every
    broker at the address it advertises, and \`kubectl kafka-expose mutate\` shows what the
    webhook would change in a manifest, without a cluster.
  platforms:
YAML
for pair in linux-amd64:linux:amd64 linux-arm64:linux:arm64 darwin-amd64:darwin:amd64 darwin-arm64:darwin:arm64; do
  IFS=: read -r name os arch <<<"$pair"
  archive="$dist/kafka-expose-$name.tar.gz"
  [[ -f "$archive" ]] || { echo "krew: $archive is missing" >&2; exit 1; }
  sum="$(sha256sum "$archive" | cut -d' ' -f1)"
  cat <<YAML
  - selector:
      matchLabels:
        os: $os
        arch: $arch
    uri: $base/kafka-expose-$name.tar.gz
    sha256: $sum
    bin: kubectl-kafka_expose
    files:
    - from: kubectl-kafka_expose
      to: .
    - from: LICENSE
      to: .
YAML
done
