#!/usr/bin/env bash
# Sets up this machine and runs pvce with demo data:
# the local libvirtd as node `local`, the built-in template library
# (blank → tiny-linux → two course templates), an admin, a teacher, two
# students and a course on the tiny template. Prints the URL and the logins.
#
# Environment: PVCE_DATA_DIR (default ./.pvce-data), PVCE_LISTEN (default 127.0.0.1:8080).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
cargo build --release --locked
PVCE=$PWD/target/release/pvce
export PVCE_DATA_DIR=${PVCE_DATA_DIR:-$PWD/.pvce-data}
export PVCE_LISTEN=${PVCE_LISTEN:-127.0.0.1:8080}
URL="http://$PVCE_LISTEN"

"$PVCE" templates build templates-tree

add_user() { # username role password display
  printf '%s' "$3" | "$PVCE" user add --username "$1" --role "$2" --display-name "$4" --password-stdin 2>/dev/null \
    || echo "user $1 exists"
}
add_user admin admin admin-pass-123 "Lab Admin"
add_user teacher teacher teacher-pass-123 "Teacher Wang"
add_user alice student alice-pass-123 "Alice"
add_user bob student bob-pass-123 "Bob"

"$PVCE" serve &
SERVER=$!
trap 'kill $SERVER 2>/dev/null' EXIT INT TERM
for _ in $(seq 1 100); do
  curl -fsS "$URL/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done

api() { # method path [json] — as the teacher
  curl -fsS -X "$1" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    ${3:+--data "$3"} "$URL$2"
}
TOKEN=$(curl -fsS -H 'content-type: application/json' \
  --data '{"username":"teacher","password":"teacher-pass-123"}' "$URL/api/auth/login" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
if ! api GET /api/courses | grep -q '"code":"DEMO-101"'; then
  TID=$(api GET /api/templates | python3 -c 'import json,sys; print(next(t["id"] for t in json.load(sys.stdin) if t["name"]=="tiny-linux"))')
  CID=$(api POST /api/courses "{\"code\":\"DEMO-101\",\"name\":\"Operating Systems (demo)\",\"vm_specs\":[{\"name\":\"linux\",\"template_id\":\"$TID\",\"vcpus\":1,\"memory_mib\":256}]}" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  api POST "/api/courses/$CID/students" '{"usernames":["alice","bob"]}' >/dev/null
fi

cat <<MSG

pvce is running at $URL  (data in $PVCE_DATA_DIR)
  admin    / admin-pass-123
  teacher  / teacher-pass-123
  alice    / alice-pass-123   (student, course DEMO-101)
  bob      / bob-pass-123     (student, course DEMO-101)
Ctrl+C stops the server (running VMs keep running and are adopted at the next start).
MSG
wait $SERVER
