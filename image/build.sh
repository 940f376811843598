#!/usr/bin/env bash
# Builds kafka-expose's OCI image without a container engine, for linux/amd64 and linux/arm64,
# and prints its digest (the image index's). Two builds of one commit from the same Debian
# packages give the same digest, byte for byte.
#
#   image/build.sh [OUT]        OUT defaults to target/image/kafka-expose.oci.tar
#   image/build.sh --fresh ...  no cached root file systems: fetch the Debian packages again
#
# What it does:
#   1. installs what it needs, once: mmdebstrap, skopeo, umoci, qemu-user-static and the arm64
#      cross linker from Debian, the aarch64 Rust target from rustup (image/tools.sh);
#   2. builds the release binary for both architectures into a cache (CARGO_TARGET_DIR under
#      ~/.cache/kafka-expose/image), with the commit baked in and paths remapped, stripped;
#   3. extracts a root file system per architecture from Debian bookworm packages with
#      `mmdebstrap --variant=extract`: libc6 and libgcc-s1 (the binary's only libraries),
#      ca-certificates (`check` verifies brokers' TLS) and netbase; no shell, no package manager.
#      Kept in the cache for a week, so that a second build uses the same packages;
#   4. prunes what the binary never reads (docs, locales, gconv, dpkg's scripts), adds the binary
#      at /usr/bin/kafka-expose, the static launch-adapter step at /usr/bin/kafka-expose-launch
#      (crates/kafka, built for musl: it is copied into broker images), a CA bundle, /etc/passwd with nonroot (65532) and /tmp;
#   5. writes each layer with GNU tar in name order, with every mtime SOURCE_DATE_EPOCH (the
#      commit's time) and numeric owners, compresses it with `gzip -n`, and writes the OCI config,
#      manifests and image index (image/assemble.py); the archive itself is a sorted tar too;
#   6. reads the result back with skopeo, which checks every blob against its digest.
#
# The Dockerfile describes the same image for those with Docker; this is the one built and tested
# here (tests/image.rs runs its binary from the unpacked root, arm64 under qemu-user).
set -euo pipefail
cd "$(dirname "$0")/.."

fresh=0
if [[ "${1:-}" == "--fresh" ]]; then fresh=1; shift; fi
out="${1:-target/image/kafka-expose.oci.tar}"
cache="${KAFKA_EXPOSE_CACHE:-$HOME/.cache/kafka-expose}/image"
mkdir -p "$cache" "$(dirname "$out")"

image/tools.sh >&2

version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)"
commit="${KAFKA_EXPOSE_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}"
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}"
export KAFKA_EXPOSE_COMMIT="$commit"

declare -A triple=([amd64]=x86_64-unknown-linux-gnu [arm64]=aarch64-unknown-linux-gnu)
# The launcher runs inside broker images, whatever their libc: static musl.
declare -A musl=([amd64]=x86_64-unknown-linux-musl [arm64]=aarch64-unknown-linux-musl)
packages=libc6,libgcc-s1,ca-certificates,netbase
# shellcheck disable=SC2016 # expanded by mmdebstrap's shell, with $1 the root
hook='mkdir -p "$1/var/lib/dpkg/status.d" && for deb in "$1"/var/cache/apt/archives/*.deb; do p="$(dpkg-deb -f "$deb" Package)"; { dpkg-deb -f "$deb"; echo "Status: install ok installed"; } >"$1/var/lib/dpkg/status.d/$p"; done'
# The cached root is named after what makes it, so that a change here extracts it again.
key="$(printf '%s\n' "$packages" "$hook" | sha256sum | cut -c1-12)"

# 2. The binaries. Paths are remapped so that where the tree and the registry sit does not
#    change the bytes.
export CARGO_TARGET_DIR="$cache/target"
export CARGO_PROFILE_RELEASE_STRIP=symbols
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
export RUSTFLAGS="--remap-path-prefix=$PWD=/src --remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo"
for arch in amd64 arm64; do
  echo "image: building the ${triple[$arch]} binary" >&2
  cargo build --release --locked --bin kafka-expose --target "${triple[$arch]}" >&2
  echo "image: building the ${musl[$arch]} launcher" >&2
  cargo build --release --locked -p kafka-expose-kafka --bin kafka-expose-launch --target "${musl[$arch]}" >&2
done

work="$(mktemp -d "${TMPDIR:-/tmp}/kafka-expose-image.XXXXXX")"
trap 'rm -rf "$work"' EXIT

for arch in amd64 arm64; do
  # 3. The packages.
  base="$cache/rootfs-bookworm-$arch-$key.tar"
  if (( fresh )) || [[ ! -s "$base" ]] || [[ -n "$(find "$base" -mtime +7)" ]]; then
    echo "image: extracting Debian bookworm packages for $arch" >&2
    rm -rf "$base.new"
    # The extract variant runs no maintainer script. A hook records each package's control
    # fields while the .debs are still there, for dpkg's status.d (what image scanners read).
    mmdebstrap --quiet --mode=root --format=tar --variant=extract --arch="$arch" \
      --include="$packages" \
      --extract-hook="$hook" \
      bookworm "$base.new" >&2
    [[ -f "$base.new" ]] || { echo "image: mmdebstrap wrote no tar for $arch" >&2; exit 1; }
    mv "$base.new" "$base"
  fi
  full="$work/$arch/full" root="$work/$arch/root"
  mkdir -p "$full" "$root"
  tar -C "$full" -xf "$base"

  # 4. Take what the binary uses, and nothing else: ca-certificates pulls in openssl and
  #    debconf (with perl's modules), and the extract variant leaves device nodes and the build
  #    host's resolv.conf and hostname, which a runtime provides.
  #    - /lib (and /lib64's loader link): libc6 and libgcc-s1 are the only packages here that
  #      put files there;
  #    - netbase's files; each kept package's copyright and status.d entry.
  cp -a "$full/lib" "$root/lib"
  [[ ! -e "$full/lib64" ]] || cp -a "$full/lib64" "$root/lib64"
  mkdir -p "$root/etc/ssl/certs" "$root/usr/bin" "$root/usr/share/doc" "$root/var/lib/dpkg/status.d"
  cp -a "$full"/etc/{services,protocols,rpc,ethertypes} "$root/etc/"
  for p in ${packages//,/ }; do
    mkdir -p "$root/usr/share/doc/$p"
    cp -a "$full/usr/share/doc/$p/copyright" "$root/usr/share/doc/$p/copyright"
    cp -a "$full/var/lib/dpkg/status.d/$p" "$root/var/lib/dpkg/status.d/$p"
  done
  rm -rf "$root"/lib/*/gconv
  # update-ca-certificates is a maintainer script, which the extract variant does not run: the
  # bundle is what it would write with every Mozilla certificate enabled, Debian's default.
  find "$full/usr/share/ca-certificates/mozilla" -name '*.crt' -print0 | LC_ALL=C sort -z |
    xargs -0 cat >"$root/etc/ssl/certs/ca-certificates.crt"
  install -m 0755 "$CARGO_TARGET_DIR/${triple[$arch]}/release/kafka-expose" "$root/usr/bin/kafka-expose"
  install -m 0755 "$CARGO_TARGET_DIR/${musl[$arch]}/release/kafka-expose-launch" "$root/usr/bin/kafka-expose-launch"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"
  mkdir -p "$root/tmp" "$root/home/nonroot" "$root/root" "$root/dev" "$root/proc" "$root/sys"
  chmod 1777 "$root/tmp"
  chmod 0700 "$root/root"
  chown 65532:65532 "$root/home/nonroot"

  # 5. The layer.
  tar -C "$root" --sort=name --format=posix --numeric-owner \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    --mtime="@$SOURCE_DATE_EPOCH" -cf "$work/$arch/layer.tar" .
done

layout="$work/layout"
python3 image/assemble.py "$layout" "$version" "$commit" "$SOURCE_DATE_EPOCH" \
  amd64="$work/amd64/layer.tar" arm64="$work/arm64/layer.tar" >"$work/digest"
tar -C "$layout" --sort=name --format=posix --numeric-owner --owner=0 --group=0 \
  --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
  --mtime="@$SOURCE_DATE_EPOCH" -cf "$out.new" .
mv "$out.new" "$out"

# 6. Read it back.
skopeo inspect --raw "oci-archive:$out:$version" >/dev/null
for arch in amd64 arm64; do
  skopeo inspect --override-arch "$arch" "oci-archive:$out:$version" >/dev/null
done
digest="$(cat "$work/digest")"
echo "image: $out, ghcr.io/kafka-expose/kafka-expose:$version@$digest ($(du -h "$out" | cut -f1))" >&2
echo "$digest"
