#!/usr/bin/env bash
# Installs a test server from PyPI into a venv under target/, once per
# requirements file, and prints the venv's bin directory.
#   test-venv.sh oidc   PyPI oidc-provider-mock (tests/it/sso.rs),
#                       pinned in scripts/oidc-requirements.txt
#   test-venv.sh cas    PyPI django-cas-server (tests/it/cas.rs, the
#                       project in tests/cas/), pinned in scripts/cas-requirements.txt
#   test-venv.sh schemathesis   the API fuzzer of scripts/schemathesis.sh,
#                       pinned in scripts/schemathesis-requirements.txt
# Called by the tests (and setup.sh, so CI has them before the tests).
#
# Environment: PVCE_TEST_VENVS (default target/), where the venvs live.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
NAME=${1:?usage: test-venv.sh oidc|cas|schemathesis}
REQ=$ROOT/scripts/$NAME-requirements.txt
VENV=${PVCE_TEST_VENVS:-$ROOT/target}/$NAME-venv
fail() { echo "test-venv.sh $NAME: $*" >&2; exit 1; }
[ -f "$REQ" ] || fail "no $REQ"
# One installer at a time (tests may call this in parallel).
mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"
flock 9
if ! cmp -s "$REQ" "$VENV/.requirements" 2>/dev/null; then
  rm -rf "$VENV"
  if ! python3 -m venv "$VENV" 2>/dev/null; then
    # Debian's python3 keeps venv (ensurepip) in a package of its own.
    rm -rf "$VENV"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null || fail "apt-get install python3-venv"
    python3 -m venv "$VENV" || fail "python3 -m venv"
  fi
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQ" >&2 || fail "pip install"
  cp "$REQ" "$VENV/.requirements"
fi
echo "$VENV/bin"
