#!/usr/bin/env bash
# Several pvce servers behind a load balancer (issue 17's benchmark): a
# PostgreSQL database, three `pvce serve` processes sharing it, haproxy in
# front of them, and the load generator (benches/cluster_load.rs): 1,000
# concurrent API clients for 30 s, then the same with one server killed
# (SIGKILL) at half time. Loopback only; everything it starts is stopped and
# its database dropped when it ends (also on Ctrl-C or a failure).
#
#   bash scripts/bench-cluster.sh
#
# (On a shared machine, `nice -n 19 bash scripts/bench-cluster.sh`: servers,
# haproxy and clients then all run at the same priority.)
#
# Environment:
#   PVCE_BENCH_DATABASE_URL  a PostgreSQL cluster's base URL (postgres://USER@HOST:PORT);
#                            default: the one scripts/postgres.sh starts or finds
#   PVCE_BIN                 the pvce binary (default: target/release/pvce, built with the bench)
#   PVCE_CLUSTER_CLIENTS     concurrent clients (1000)
#   PVCE_CLUSTER_SECS        seconds per phase (30)
#   PVCE_CLUSTER_STUDENTS    accounts the clients share (clients / 10)
#   PVCE_KEEP=1              keep the work directory (server and haproxy logs)
#
# The node: this machine's libvirtd (qemu:///system), which all three
# servers reach, with the built-in tiny guest. Not libvirt's test:///default
# driver: pvce refuses to place VMs on it (its capabilities list no VNC
# graphics: 409 no_capable_node), and it lives inside each server process, so
# servers would not see each other's domains. Guests cost CPU on a small
# machine, so only PVCE_CLUSTER_VM_CLIENTS (5) clients start and power off
# VMs, pausing PVCE_CLUSTER_VM_PAUSE_MS (5000) after each action; the other
# clients read.
#
# Data dir: one, shared by the three servers — in a real cluster every server
# mounts the same shared data dir (NFS etc.) at the same path: VMs' template
# chains and layers must be readable by whichever server starts them, and a
# node's template store pool points at that path (servers with different
# paths would each repoint the pool to their own, see src/libvirt/storage.rs
# ensure_dir_pool). Each server has its own log and listen port.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
command -v haproxy >/dev/null || { echo "bench-cluster: haproxy is not installed (scripts/setup.sh installs it)" >&2; exit 1; }
command -v psql >/dev/null || { echo "bench-cluster: psql is not installed (scripts/setup.sh installs postgresql)" >&2; exit 1; }

# Built before anything runs, so no build competes with the measurement.
# Building a bench builds the package's binaries with the same profile and
# features: target/release/pvce comes with it (a separate `cargo build
# --release` would build the library again with other features).
nice -n 19 cargo bench --bench cluster_load --no-run
PVCE_BIN=${PVCE_BIN:-$ROOT/target/release/pvce}

BASE=${PVCE_BENCH_DATABASE_URL:-}
if [ -z "$BASE" ]; then
  if ! BASE=$(bash scripts/postgres.sh | tail -n1) || [ -z "$BASE" ]; then
    echo "bench-cluster: no PostgreSQL: set PVCE_BENCH_DATABASE_URL=postgres://USER@HOST:PORT, or install the server (scripts/setup.sh) so scripts/postgres.sh can start one" >&2
    exit 1
  fi
fi
BASE=${BASE%/}
DB=bench_pvce_cluster_$(head -c6 /dev/urandom | od -An -tx1 | tr -d ' \n')
URL=$BASE/$DB
WORK=$(mktemp -d /tmp/test-pvce-cluster.XXXXXX)
chmod 755 "$WORK"   # QEMU (libvirt-qemu) opens the layers below it
PIDS=()
HAPROXY_PID=""
# libvirt names (domains, pools) start with "$PREFIX-": this run's own, removed at the end.
PREFIX=test-pvce-bcl$$

cleanup() {
  set +e
  [ -n "$HAPROXY_PID" ] && kill "$HAPROXY_PID" 2>/dev/null
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}" $HAPROXY_PID; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
  done
  psql -q "$BASE/postgres" -c "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)" >/dev/null
  for d in $(virsh -q -c qemu:///system list --name | grep "^$PREFIX-"); do virsh -q -c qemu:///system destroy "$d" >/dev/null; done
  for p in $(virsh -q -c qemu:///system pool-list --all --name | grep "^$PREFIX-"); do
    virsh -q -c qemu:///system pool-destroy "$p" >/dev/null 2>&1
    virsh -q -c qemu:///system pool-undefine "$p" >/dev/null
  done
  if [ "${PVCE_KEEP:-0}" = 1 ]; then echo "bench-cluster: kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT INT TERM

psql -q "$BASE/postgres" -c "CREATE DATABASE \"$DB\"" >/dev/null
read -r P1 P2 P3 PLB < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(4)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])')
DATA=$WORK/data

common=(--data-dir "$DATA" --database-url "$URL" --libvirt-prefix "$PREFIX")
PASSWORD=bench-password   # benches/support BENCH_PASSWORD
printf '%s' "$PASSWORD" | "$PVCE_BIN" user add --username bench-admin --role admin --password-stdin "${common[@]}" >/dev/null
printf '%s' "$PASSWORD" | "$PVCE_BIN" user add --username bench-teacher --role teacher --password-stdin "${common[@]}" >/dev/null
"$PVCE_BIN" templates build templates-tree "${common[@]}" >"$WORK/templates.log" 2>&1

SERVERS=()
i=0
for port in "$P1" "$P2" "$P3"; do
  i=$((i + 1))
  RUST_LOG=${RUST_LOG:-pvce=warn} "$PVCE_BIN" serve "${common[@]}" \
    --listen "127.0.0.1:$port" --trust-forwarded-for >"$WORK/s$i.log" 2>&1 &
  PIDS+=($!)
  SERVERS+=("http://127.0.0.1:$port")
  # One at a time: the first registers the node and takes the leases.
  for _ in $(seq 300); do
    curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    kill -0 "${PIDS[-1]}" 2>/dev/null || { echo "bench-cluster: server $i died:" >&2; tail -20 "$WORK/s$i.log" >&2; exit 1; }
    sleep 0.1
  done
done

cat >"$WORK/haproxy.cfg" <<CFG
global
    maxconn 5000
    stats socket $WORK/haproxy.sock mode 600 level admin
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 30s
    retries 2
    option redispatch
    retry-on conn-failure empty-response response-timeout
    option forwardfor
frontend api
    bind 127.0.0.1:$PLB
    maxconn 5000
    default_backend pvce
backend pvce
    balance roundrobin
    option httpchk GET /healthz
    default-server inter 500ms fall 2 rise 2
    server s1 127.0.0.1:$P1 check
    server s2 127.0.0.1:$P2 check
    server s3 127.0.0.1:$P3 check
CFG
haproxy -c -q -f "$WORK/haproxy.cfg"
haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
HAPROXY_PID=$!
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$PLB/healthz" >/dev/null 2>&1 && break
  kill -0 "$HAPROXY_PID" 2>/dev/null || { echo "bench-cluster: haproxy died:" >&2; cat "$WORK/haproxy.log" >&2; exit 1; }
  sleep 0.1
done

echo "bench-cluster: PostgreSQL $URL, servers ${SERVERS[*]} (pids ${PIDS[*]}), haproxy 127.0.0.1:$PLB, work dir $WORK"
PVCE_CLUSTER_BALANCER="http://127.0.0.1:$PLB" \
PVCE_CLUSTER_SERVERS=$(IFS=,; echo "${SERVERS[*]}") \
PVCE_CLUSTER_PIDS=$(IFS=,; echo "${PIDS[*]}") \
PVCE_CLUSTER_HAPROXY_SOCKET="$WORK/haproxy.sock" \
  cargo bench --bench cluster_load
