#!/bin/bash
# The node tests' docker.io/bitnami/kafka:4.0.0-debian-12-r10 entrypoint: runs its arguments
# (the image's command is run.sh).
set -o errexit -o nounset -o pipefail
exec "$@"
