#!/usr/bin/env bash
# Fuzzes the running API against its own OpenAPI document with schemathesis
# (pinned in scripts/schemathesis-requirements.txt, installed in a venv under
# target/), as an admin and as a student, and fails on any 5xx
# (not_a_server_error), any answer that does not match its documented schema
# (response_schema_conformance) and any request that is valid per the
# document but refused (positive_data_acceptance: 400/413/422…).
#
# It starts its own server (target/debug/pvce, built if cargo test has not)
# with a temporary data dir and demo-like data — an admin, a teacher, two
# students, a ready template and a course with the students enrolled (one
# stopped VM each) — and stops and removes everything at the end: the
# server, its data dir, every domain, lab network and storage pool it made.
#
# Bounded: PVCE_ST_SECONDS (default 90) per role.
#
# Environment: PVCE_ST_SECONDS, PVCE_ST_PORT (default 18090), PVCE_TEST_VENVS (scripts/test-venv.sh)
# (default target/schemathesis-venv).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECONDS_PER_ROLE=${PVCE_ST_SECONDS:-90}
PORT=${PVCE_ST_PORT:-18090}
URL="http://127.0.0.1:$PORT"
PVCE=${CARGO_TARGET_DIR:-$ROOT/target}/debug/pvce
PREFIX=pvce-st-$$-

fail() { echo "== schemathesis: FAIL ($*)"; exit 1; }
# Up to date with the tree. `cargo test --no-run` builds target/debug/pvce
# with the test build's features and is a no-op after `cargo test`;
# `cargo build` would rebuild every dependency whose features dev-deps
# change (about 15 minutes of CI).
cargo test --locked --quiet --no-run

# The pinned schemathesis, once per requirements file (target/schemathesis-venv).
VENV_BIN=$(bash "$ROOT/scripts/test-venv.sh" schemathesis) || fail "installing schemathesis"

DATA=$(mktemp -d /tmp/pvce-st-XXXXXX)
# QEMU runs as its own user and must reach the layers (derive boots a VM).
chmod 755 "$DATA"
export PVCE_DATA_DIR=$DATA/data
export PVCE_DOMAIN_PREFIX=$PREFIX
export PVCE_TEMPLATE_POOL=${PREFIX}tpl
export PVCE_LAYER_POOL=${PREFIX}layers
# The guests are blank disks that ignore ACPI: a seal or shutdown waits this
# long before forcing them off (the default, 60 s, is a request timeout).
export PVCE_SHUTDOWN_TIMEOUT=5
SERVER=
cleanup() {
  local rc=$?
  if [ -n "$SERVER" ]; then
    kill "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
  fi
  for d in $(virsh -q -c qemu:///system list --all --name 2>/dev/null | grep "^$PREFIX" || true); do
    virsh -q -c qemu:///system destroy "$d" >/dev/null 2>&1 || true
  done
  for n in $(virsh -q -c qemu:///system net-list --all --name 2>/dev/null | grep "^$PREFIX" || true); do
    virsh -q -c qemu:///system net-destroy "$n" >/dev/null 2>&1 || true
    virsh -q -c qemu:///system net-undefine "$n" >/dev/null 2>&1 || true
  done
  for p in "$PVCE_TEMPLATE_POOL" "$PVCE_LAYER_POOL"; do
    virsh -q -c qemu:///system pool-destroy "$p" >/dev/null 2>&1 || true
    virsh -q -c qemu:///system pool-undefine "$p" >/dev/null 2>&1 || true
  done
  rm -rf "$DATA"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

add_user() { # username role password
  printf '%s' "$3" | "$PVCE" user add --username "$1" --role "$2" --display-name "$1" --password-stdin >/dev/null
}
add_user st-admin admin admin-pass-123
add_user st-teacher teacher teacher-pass-123
add_user st-alice student alice-pass-123
add_user st-bob student bob-pass-123

"$PVCE" serve --listen "127.0.0.1:$PORT" >"$DATA/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 1 100); do
  curl -fsS "$URL/healthz" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fsS "$URL/healthz" >/dev/null || fail "the server did not start: $(tail -5 "$DATA/server.log")"

json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
token() { # username password
  curl -fsS -H 'content-type: application/json' \
    --data "{\"username\":\"$1\",\"password\":\"$2\"}" "$URL/api/auth/login" | json '["token"]'
}
api() { # token method path [json]
  curl -fsS -X "$2" -H "authorization: Bearer $1" -H 'content-type: application/json' \
    ${4:+--data "$4"} "$URL$3"
}
ADMIN=$(token st-admin admin-pass-123)
TEACHER=$(token st-teacher teacher-pass-123)
STUDENT=$(token st-alice alice-pass-123)

# A ready template (a blank disk is enough: nothing here needs a guest to boot),
# a course on it with both students enrolled.
qemu-img create -q -f qcow2 "$DATA/blank.qcow2" 64M
TID=$(curl -fsS -H "authorization: Bearer $TEACHER" -H 'content-type: application/octet-stream' \
  --data-binary "@$DATA/blank.qcow2" \
  "$URL/api/templates/import?name=st-linux&format=qcow2&os=linux&software=gcc" | json '["id"]')
CID=$(api "$TEACHER" POST /api/courses \
  "{\"code\":\"ST-101\",\"name\":\"Fuzzing\",\"vm_specs\":[{\"name\":\"linux\",\"template_id\":\"$TID\",\"vcpus\":1,\"memory_mib\":128}]}" \
  | json '["id"]')
api "$TEACHER" POST "/api/courses/$CID/students" '{"usernames":["st-alice","st-bob"]}' >/dev/null

# What is left out, and why:
# - GET /ws/console, GET /ws/serial: WebSockets, not request/response operations.
# - POST /api/auth/logout: it revokes the very token the fuzzer sends, so
#   everything after it would only test 401s.
# - POST /api/nodes: registering a node makes the server connect to the host
#   it names (ssh, TLS, TCP to whatever the fuzzer invents); tests talk only
#   to loopback. (Its schema and refusals are covered by tests/it/api.rs.)
# - POST /api/nodes/{id}/maintenance, POST /api/nodes/{id}/fence, DELETE
#   /api/nodes/{id}: they take the only node out of service (the stateful
#   phase finds its id), after which every VM start answers 503 no_capacity
#   by design. tests/it/cluster.rs covers them.
# - POST /api/courses/{id}/sessions, PUT /api/courses/{id}/sessions/{sid}: a
#   session is given either as starts_at + ends_at or as date + start + end
#   (the lab's wall clock); the schema lists both sets as optional and the
#   server refuses a mix or neither with a 400 naming both forms, which the
#   fuzzer counts as a valid request refused. tests/it/classtime.rs covers
#   their input checks. (Next: a oneOf schema, then drop this exclusion.)
EXCLUDE=(--exclude-name "GET /ws/console" --exclude-name "GET /ws/serial" --exclude-name "POST /api/auth/logout"
  --exclude-name "POST /api/nodes" --exclude-name "POST /api/nodes/{id}/maintenance"
  --exclude-name "POST /api/nodes/{id}/fence" --exclude-name "DELETE /api/nodes/{id}"
  --exclude-name "POST /api/courses/{id}/sessions" --exclude-name "PUT /api/courses/{id}/sessions/{sid}")
CHECKS=not_a_server_error,response_schema_conformance,positive_data_acceptance

run_role() { # name token
  # From a directory of the role's own: schemathesis keeps its caches in the
  # working directory.
  # One worker: with two, hypothesis describes filters (ast) from two threads at
  # once and CPython 3.11 can fail with "AST constructor recursion depth
  # mismatch" — a Runtime Error of the tool's, not a finding about pvce.
  mkdir -p "$DATA/st-$1"
  (cd "$DATA/st-$1" && SCHEMATHESIS_HOOKS=$ROOT/scripts/schemathesis_hooks.py \
    "$VENV_BIN/st" --config-file "$ROOT/scripts/schemathesis.toml" run "$URL/api/openapi.json" \
    --checks "$CHECKS" "${EXCLUDE[@]}" \
    -H "Authorization: Bearer $2" \
    --max-time "$SECONDS_PER_ROLE" --workers 1 --seed 1 --no-color \
    --request-timeout 120 --warnings off </dev/null)
}

# Both roles at once against the one server: each schemathesis is one
# single-threaded Python process (one core; measured), so on two cores the
# two take the time of one, each with the examples it had alone. Their
# reports follow one after the other.
STATUS=0
echo "== schemathesis as admin and as student, side by side (${SECONDS_PER_ROLE}s)"
run_role admin "$ADMIN" >"$DATA/st-admin.log" 2>&1 &
ADMIN_RUN=$!
run_role student "$STUDENT" >"$DATA/st-student.log" 2>&1 &
STUDENT_RUN=$!
wait "$ADMIN_RUN" || STATUS=1
wait "$STUDENT_RUN" || STATUS=1
for role in admin student; do
  echo "== schemathesis as $role"
  cat "$DATA/st-$role.log"
done
if grep -q "panicked" "$DATA/server.log"; then
  echo "the server panicked:"; grep -A3 "panicked" "$DATA/server.log" | head -20
  STATUS=1
fi
if [ "$STATUS" -ne 0 ]; then
  echo "== the server's errors (full log: target/schemathesis-server.log)"
  cp "$DATA/server.log" "$ROOT/target/schemathesis-server.log"
  grep -E "ERROR|panicked" "$DATA/server.log" | sed 's/\x1b\[[0-9;]*m//g' | tail -20 || true
fi
if [ "$STATUS" -eq 0 ]; then
  echo "== schemathesis: PASS (admin and student: no 5xx but 503 no capacity, no schema violation, no valid request refused)"
else
  echo "== schemathesis: FAIL (see the failures above)"
fi
exit "$STATUS"
