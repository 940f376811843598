#!/usr/bin/env bash
# What image/build.sh and tests/image.rs need, installed once: Debian packages through apt, the
# aarch64 Rust target through rustup. Prints nothing when all is there.
set -euo pipefail
need=()
for pair in mmdebstrap:mmdebstrap skopeo:skopeo umoci:umoci qemu-aarch64-static:qemu-user-static \
  aarch64-linux-gnu-gcc:gcc-aarch64-linux-gnu; do
  command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
done
[[ -e /usr/aarch64-linux-gnu/lib/libc.so ]] || need+=(libc6-dev-arm64-cross)
if ((${#need[@]})); then
  sudo=()
  [[ "$(id -u)" == 0 ]] || sudo=(sudo)
  echo "image: installing ${need[*]}" >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >&2 ||
    { "${sudo[@]}" apt-get update >&2 &&
      "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >&2; }
fi
# The launcher (crates/kafka) is static musl: it runs inside broker images of any libc.
for target in aarch64-unknown-linux-gnu x86_64-unknown-linux-musl aarch64-unknown-linux-musl; do
  rustup target list --installed 2>/dev/null | grep -qx "$target" || rustup target add "$target" >&2
done
