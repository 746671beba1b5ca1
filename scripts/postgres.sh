#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests (issue 17): Debian's server
# binaries (scripts/setup.sh installs `postgresql`), a cluster of our own in
# target/pg/ (not the system's main cluster, which may not exist or be in use).
#
#   bash scripts/postgres.sh        start it (or find it running), print its base URL
#   bash scripts/postgres.sh url    print the running cluster's base URL
#   bash scripts/postgres.sh stop   stop it (the data stays for the next start)
#
# The base URL, `postgres://postgres@127.0.0.1:PORT`, is also written to
# target/pg/url (the cluster itself may be in /tmp, see DIR below); the
# tests take it from PVCE_TEST_DATABASE_URL and create a database of their
# own on it per data dir (tests/it/common/database.rs). Settings, and why:
# - initdb runs as the `postgres` OS user: it refuses root;
# - locale C.UTF-8, encoding UTF8: text sorts by code point, as SQLite's
#   BINARY collation does, and pg_trgm (the knowledge-base search) takes
#   CJK characters for word characters;
# - `trust` for local connections only (the unix socket in the cluster's
#   directory and 127.0.0.1): a test cluster, reachable from this machine alone;
# - fsync, synchronous_commit and full_page_writes off: nothing here must
#   survive a power cut, and the tests then do not wait on the disk;
# - max_connections 400: ~40 test databases in use at once × a server's
#   pool of 8 connections (320), plus the tests' own and the admin ones.
# Idempotent: a second start finds the running cluster (pg_ctl status) and
# prints its URL. PVCE_PG_DIR overrides the directory (and then the URL is
# only printed), PVCE_PG_PORT the port.
set -euo pipefail

cd "$(dirname "$0")/.."
PGUSER_OS=postgres

# Debian 12 ships PostgreSQL 15, Debian 13 PostgreSQL 17: take the newest
# version installed under /usr/lib/postgresql.
BIN=""
for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -n); do
  [ -x "$d/pg_ctl" ] && [ -x "$d/initdb" ] && BIN="$d"
done
if [ -z "$BIN" ]; then
  echo "postgres.sh: no PostgreSQL server under /usr/lib/postgresql/*/bin (run scripts/setup.sh)" >&2
  exit 1
fi

as_pg() {
  if [ "$(id -un)" = "$PGUSER_OS" ]; then "$@"; else runuser -u "$PGUSER_OS" -- "$@"; fi
}

# The cluster's directory, owned by the postgres user, who must reach it: a
# checkout under a 0700 home directory (Debian 12's default) is out of its
# reach, and the socket's path must stay under ~100 bytes. Then a directory
# in /tmp named after this checkout is used instead (same one every run).
DIR="${PVCE_PG_DIR:-$PWD/target/pg}"
mkdir -p "$DIR"
chown "$PGUSER_OS:" "$DIR"
if ! as_pg test -w "$DIR" || [ "${#DIR}" -gt 80 ]; then
  DIR="/tmp/pvce-pg-$(printf '%s' "$PWD" | sha256sum | cut -c1-12)"
  mkdir -p "$DIR"
  chown "$PGUSER_OS:" "$DIR"
fi
DATA="$DIR/data"

running() {
  [ -f "$DATA/PG_VERSION" ] && as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

url() {
  echo "postgres://postgres@127.0.0.1:$(cat "$DIR/port")"
}

# Prints the URL and writes it where the tests look for it (target/pg/url),
# whichever directory the cluster is in.
publish() {
  if [ -n "${PVCE_PG_DIR:-}" ]; then
    # A cluster of a test's own (tests/it/postgres.rs): not the shared one.
    url
    return
  fi
  mkdir -p target/pg
  url | tee target/pg/url
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

case "${1:-start}" in
  stop)
    if running; then as_pg "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null; fi
    echo "postgres.sh: stopped"
    exit 0
    ;;
  url)
    if ! running; then echo "postgres.sh: not running" >&2; exit 1; fi
    url
    exit 0
    ;;
  start) ;;
  *) echo "usage: $0 [start|url|stop]" >&2; exit 2 ;;
esac

if running; then
  publish
  exit 0
fi

if [ ! -f "$DATA/PG_VERSION" ]; then
  rm -rf "$DATA"
  as_pg "$BIN/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >"$DIR/initdb.log"
  # Local connections only: the socket and loopback, no password (a test cluster).
  cat >"$DATA/pg_hba.conf" <<'EOF'
local all all              trust
host  all all 127.0.0.1/32 trust
host  all all ::1/128      trust
EOF
fi

# A new free port at each start (the previous one may have been taken
# since), unless PVCE_PG_PORT asks for one: a test restarting "the database
# server" keeps its clients' URL.
port=${PVCE_PG_PORT:-$(free_port)}
echo "$port" >"$DIR/port"
as_pg "$BIN/pg_ctl" -D "$DATA" -l "$DIR/server.log" -w -t 60 start -o "\
  -c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$DIR \
  -c max_connections=400 -c shared_buffers=128MB \
  -c fsync=off -c synchronous_commit=off -c full_page_writes=off" >/dev/null
publish
