#!/usr/bin/env bash
# Installs the OpenID Connect provider the sign-in tests talk to (PyPI
# oidc-provider-mock, pinned with its dependencies in
# scripts/oidc-requirements.txt) into a venv under target/, once per
# requirements file, and prints the path of its executable.
# Called by tests/it/sso.rs (and setup.sh, so CI has it before the tests).
#
# Environment: PVCE_OIDC_VENV (default target/oidc-venv).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${PVCE_OIDC_VENV:-$ROOT/target/oidc-venv}
REQ=$ROOT/scripts/oidc-requirements.txt
fail() { echo "oidc-provider.sh: $*" >&2; exit 1; }
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
echo "$VENV/bin/oidc-provider-mock"
