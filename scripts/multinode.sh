#!/usr/bin/env bash
# A multi-node libvirt rig on one machine, for tests and demos of pvce's cluster
# features. Each "node" is a stock libvirtd (plus its own virtlogd) in its own
# network, mount, UTS and cgroup namespaces:
#
#   host 10.77.0.1 ── bridge pvce-test-br ──┬── veth ── node 1: 10.77.1.2 (libvirtd, virtlogd, QEMUs)
#                                           ├── veth ── node 2: 10.77.2.2
#                                           └── …
#
# - libvirtd listens on TCP 16509 on its own address only (auth none: test rig),
#   reached as qemu+tcp://10.77.i.2/system; VNC/SPICE consoles and incoming
#   migrations listen on that address too. The nodes reach each other and the
#   host over the bridge (live migration), nothing else: an `unreachable` route
#   for 10.77.0.0/16 keeps test traffic on the machine when the bridge is down.
# - Private /etc/libvirt, /run/libvirt, /var/lib/libvirt, /var/cache/libvirt and
#   /var/log/libvirt are bind-mounted from /run/pvce-test-rig/node<i>/ (without
#   them a second libvirtd fails on /run/libvirt/*/driver.pid and exits 0, so
#   readiness is checked with a real call). Everything else — in particular the
#   pvce data dir with the template and student layers — is the host's
#   filesystem, which is how the nodes share storage here.
# - A node's own disk: $LOCAL_DIR (/var/lib/pvce-rig-local) is bind-mounted
#   inside each node from /run/pvce-test-rig/node<i>/local, so what a node
#   writes there only that node sees (the host's directory stays empty). Tests
#   of node-local student layers (`--layer-pool-dir`) put the layer pool there;
#   it survives `kill`/`start` of the node like a real disk.
# - Each node runs in its own cgroup (pvce-test-node<i> in every v1 hierarchy
#   and the v2 one) entered before `unshare --cgroup`, and cgroupfs is
#   remounted inside, so libvirt's guest cgroups (`/machine/...`) of two nodes
#   do not clash. The freezer cgroup freezes a whole node (`freeze`): TCP
#   connections are still accepted by the kernel, libvirt never answers.
# - QEMU runs as root with `security_driver = "none"` and
#   `dynamic_ownership = 0`: the simplest setup in which every node's QEMU can
#   open the shared layers without nodes chowning files under each other
#   (production nodes keep DAC/AppArmor and declare the shared mount in
#   qemu.conf `shared_filesystems`). `namespaces = []` keeps QEMU in the node's
#   /dev, so serial ptys are valid paths on the host. The directories in
#   PVCE_RIG_SHARED_DIRS (default "/tmp /var/lib/pvce") are declared
#   `shared_filesystems`, so libvirt allows live migration of guests whose disks
#   live there (with cache=none, as on real shared storage).
# - Lab networks across nodes: every node gets pvce's libvirt network hook
#   (contrib/libvirt-hooks/network → /etc/libvirt/hooks/network, read by
#   libvirtd when it starts), which joins a lab network's bridge to its VXLAN
#   segment. The underlay is the nodes' eth0 on pvce-test-br: a Linux bridge
#   floods IPv4 multicast (and snoops the nodes' IGMP joins), which is what
#   VXLAN's per-VNI multicast groups need; the nodes' VTEP addresses are
#   their 10.77.i.2.
# - `nsenter --net` is used rather than `ip netns exec`, which remounts /sys
#   (and with it the cgroup mounts).
#
# Usage (root):
#   multinode.sh up N      start nodes 1..N (after cleaning up any leftovers)
#   multinode.sh down      stop everything and remove all traces
#   multinode.sh kill I    SIGKILL node I's libvirtd, virtlogd and QEMUs
#   multinode.sh start I   start node I again (after kill)
#   multinode.sh freeze I  freeze node I (cgroup freezer); thaw I undoes it
#   multinode.sh status    list nodes and whether they answer
set -euo pipefail

RIG=/run/pvce-test-rig
BR=pvce-test-br
PREFIX=10.77
READY_TIMEOUT=${PVCE_RIG_READY_TIMEOUT:-90}
# Directories the nodes share (the pvce data dirs live below them): libvirt
# treats storage there as shared, which live migration requires.
SHARED_DIRS=${PVCE_RIG_SHARED_DIRS:-/tmp /var/lib/pvce}
CONTROLLERS=(cpu cpuacct cpuset memory devices freezer blkio pids)
SELF=$(readlink -f "$0")
LOCAL_DIR=/var/lib/pvce-rig-local

die() { echo "multinode: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "must run as root"

ns_name() { echo "pvce-test-node$1"; }
addr() { echo "$PREFIX.$1.2"; }
uri() { echo "qemu+tcp://$(addr "$1")/system"; }

# The cgroup directory of node $2 in hierarchy $1 (a v1 controller, "systemd" or
# "unified"), below the cgroup this script runs in.
cg_dir() {
  local h=$1 i=$2 key rel
  case $h in
    unified) key='^0::' ;;
    systemd) key=':name=systemd:' ;;
    *) key=":([a-z_,]*,)?$h(,[a-z_,]*)?:" ;;
  esac
  rel=$(grep -E "$key" /proc/self/cgroup | head -1 | cut -d: -f3-)
  echo "/sys/fs/cgroup/$h${rel%/}/pvce-test-node$i"
}

hierarchies() {
  for c in "${CONTROLLERS[@]}" systemd unified; do
    [ -d "/sys/fs/cgroup/$c" ] && echo "$c"
  done
}

cg_setup() {
  local i=$1 h d
  for h in $(hierarchies); do
    d=$(cg_dir "$h" "$i")
    mkdir -p "$d"
    if [ "$h" = cpuset ]; then
      cat "$(dirname "$d")/cpuset.cpus" >"$d/cpuset.cpus"
      cat "$(dirname "$d")/cpuset.mems" >"$d/cpuset.mems"
    fi
  done
}

cg_join() {
  local i=$1 pid=$2 h
  for h in $(hierarchies); do
    echo "$pid" >"$(cg_dir "$h" "$i")/cgroup.procs"
  done
}

# Every process of node $1 (any depth of its freezer cgroup).
node_pids() {
  local d
  d=$(cg_dir freezer "$1")
  [ -d "$d" ] || return 0
  find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null || true
}

thaw() {
  local d
  d=$(cg_dir freezer "$1")
  [ -f "$d/freezer.state" ] && echo THAWED >"$d/freezer.state" || true
}

freeze() {
  local d
  d=$(cg_dir freezer "$1")
  [ -f "$d/freezer.state" ] || die "node $1 does not exist"
  echo FROZEN >"$d/freezer.state"
}

kill_node() {
  local i=$1 pids
  thaw "$i"
  for _ in $(seq 1 100); do
    pids=$(node_pids "$i")
    [ -z "$pids" ] && return 0
    # shellcheck disable=SC2086
    kill -9 $pids 2>/dev/null || true
    sleep 0.1
  done
  die "processes of node $i survive SIGKILL: $(node_pids "$i" | tr '\n' ' ')"
}

cg_remove() {
  local i=$1 h d
  for h in $(hierarchies); do
    d=$(cg_dir "$h" "$i")
    [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
}

# Every node index that left any trace (state dir, cgroup, netns).
known_nodes() {
  {
    ls "$RIG" 2>/dev/null | sed -n 's/^node\([0-9]\+\)$/\1/p'
    ls "$(dirname "$(cg_dir freezer 0)")" 2>/dev/null | sed -n 's/^pvce-test-node\([0-9]\+\)$/\1/p'
    ip netns list 2>/dev/null | sed -n 's/^pvce-test-node\([0-9]\+\).*/\1/p'
  } | sort -un
}

down() {
  local i
  for i in $(known_nodes); do
    kill_node "$i"
    cg_remove "$i"
    ip netns del "$(ns_name "$i")" 2>/dev/null || true
    ip link del "pvce-test-h$i" 2>/dev/null || true
  done
  ip link del "$BR" 2>/dev/null || true
  ip route del unreachable "$PREFIX.0.0/16" 2>/dev/null || true
  rm -rf "$RIG"
}

net_setup() {
  local i=$1 ns
  ns=$(ns_name "$i")
  if ! ip link show "$BR" >/dev/null 2>&1; then
    ip link add "$BR" type bridge
    ip addr add "$PREFIX.0.1/16" dev "$BR"
    ip link set "$BR" up
  fi
  # Lower priority than the bridge's connected route: only used when it is gone.
  ip route replace unreachable "$PREFIX.0.0/16" metric 4000
  ip netns add "$ns"
  ip link add "pvce-test-h$i" type veth peer name eth0 netns "$ns"
  ip link set "pvce-test-h$i" master "$BR" up
  ip -n "$ns" link set lo up
  ip -n "$ns" addr add "$(addr "$i")/16" dev eth0
  ip -n "$ns" link set eth0 up
}

write_config() {
  local i=$1 d=$RIG/node$1 f
  mkdir -p "$d"/{etc,run,lib,cache,log,local}
  # The host's top-level configuration files only: no domains, networks or
  # storage pools defined on the host leak into a node.
  for f in /etc/libvirt/*; do
    [ -f "$f" ] && cp "$f" "$d/etc/"
  done
  mkdir -p "$d/etc/qemu/networks" "$d/etc/storage" "$d/etc/hooks"
  install -m 0755 "$(dirname "$SELF")/../contrib/libvirt-hooks/network" "$d/etc/hooks/network"
  cat >"$d/etc/libvirtd.conf" <<EOF
# pvce test rig node $i (scripts/multinode.sh)
listen_tls = 0
listen_tcp = 1
listen_addr = "$(addr "$i")"
tcp_port = "16509"
auth_tcp = "none"
host_uuid = "7e57a000-0000-4000-8000-$(printf '%012d' "$i")"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
EOF
  cat >"$d/etc/qemu.conf" <<EOF
# pvce test rig node $i (scripts/multinode.sh)
vnc_listen = "$(addr "$i")"
spice_listen = "$(addr "$i")"
migration_host = "$(addr "$i")"
migration_address = "$(addr "$i")"
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
namespaces = [ ]
shared_filesystems = [ $(printf '"%s", ' $SHARED_DIRS | sed 's/, $//') ]
EOF
  # QEMU's capabilities cache: a copy saves each node probing QEMU again.
  if [ -d /var/cache/libvirt/qemu ] && [ ! -d "$d/cache/qemu" ]; then
    cp -a /var/cache/libvirt/qemu "$d/cache/" 2>/dev/null || true
  fi
}

# Runs inside the node's fresh namespaces (see start_node).
inside() {
  local i=$1 d=$RIG/node$1 h
  hostname "pvce-test-node$i"
  # cgroupfs as seen from this cgroup namespace: the node's cgroup is "/".
  mount -t tmpfs -o mode=755 pvce-test-cgroup /sys/fs/cgroup
  for h in "${CONTROLLERS[@]}"; do
    mkdir -p "/sys/fs/cgroup/$h"
    mount -t cgroup -o "$h" cgroup "/sys/fs/cgroup/$h"
  done
  mkdir -p /sys/fs/cgroup/systemd /sys/fs/cgroup/unified
  mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd
  mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified
  mount --bind "$d/etc" /etc/libvirt
  mount --bind "$d/run" /run/libvirt
  mount --bind "$d/lib" /var/lib/libvirt
  mount --bind "$d/cache" /var/cache/libvirt
  mount --bind "$d/log" /var/log/libvirt
  mount --bind "$d/local" "$LOCAL_DIR"
  virtlogd -d -p "$d/virtlogd.pid"
  libvirtd -d -l -p "$d/libvirtd.pid"
}

start_node() {
  local i=$1 d=$RIG/node$1
  [ -d "$d/etc" ] || die "node $i is not set up (run: up N)"
  kill_node "$i"
  # Stale runtime state of a killed instance (pid files, domain status, sockets).
  rm -rf "${d:?}/run" && mkdir -p "$d/run"
  cg_setup "$i"
  (
    cg_join "$i" "$BASHPID"
    exec nsenter --net="/run/netns/$(ns_name "$i")" -- \
      unshare --mount --uts --cgroup --propagation private -- \
      bash "$SELF" _inside "$i"
  ) >"$d/start.log" 2>&1 || die "node $i failed to start: $(cat "$d/start.log")"
}

wait_ready() {
  local i=$1 deadline=$((SECONDS + READY_TIMEOUT))
  until virsh -q -c "$(uri "$i")" version >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail -n 20 "$RIG/node$i/log/libvirtd.log" >&2 2>/dev/null || true
      die "node $i ($(uri "$i")) not ready after ${READY_TIMEOUT}s"
    fi
    sleep 0.2
  done
}

up() {
  local n=$1 i
  [[ "$n" =~ ^[1-9][0-9]?$ ]] || die "up: N must be 1..99"
  down
  mkdir -p "$RIG" "$LOCAL_DIR"
  for i in $(seq 1 "$n"); do
    net_setup "$i"
    write_config "$i"
    start_node "$i"
  done
  for i in $(seq 1 "$n"); do
    wait_ready "$i"
    echo "node $i: $(uri "$i") console $(addr "$i")"
  done
}

index() {
  [[ "${1:-}" =~ ^[1-9][0-9]?$ ]] || die "node index must be 1..99"
}

case "${1:-}" in
  up) up "${2:-}" ;;
  down) down ;;
  kill) index "${2:-}"; kill_node "$2" ;;
  start) index "${2:-}"; start_node "$2"; wait_ready "$2" ;;
  freeze) index "${2:-}"; freeze "$2" ;;
  thaw) index "${2:-}"; thaw "$2" ;;
  status)
    for i in $(known_nodes); do
      if virsh -q -c "$(uri "$i")" version >/dev/null 2>&1; then s=up; else s=down; fi
      echo "node $i: $(uri "$i") $s"
    done
    ;;
  _inside) inside "$2" ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
