#!/usr/bin/env bash
# Sets the chart's image.digest, so that the packaged chart pulls exactly the image the release
# pushed and signed (a digest wins over the tag in the chart's templates).
#
#   release/pin-digest.sh VALUES.yaml sha256:...
set -euo pipefail
values="$1" digest="$2"
[[ "$digest" =~ ^sha256:[0-9a-f]{64}$ ]] || { echo "pin-digest: '$digest' is not a sha256 digest" >&2; exit 1; }
grep -q '^  digest: ""$' "$values" || { echo "pin-digest: no empty image.digest in $values" >&2; exit 1; }
sed -i "s|^  digest: \"\"$|  digest: \"$digest\"|" "$values"
