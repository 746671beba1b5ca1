#!/usr/bin/env bash
# Sets up a Debian machine and runs every check and test of pvce:
# formatting, clippy (warnings are errors), unit tests and black-box tests
# against the real local libvirtd with real TCG/KVM guests.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
# CI builds in a clean clone. Cargo's outputs are kept between CI runs in a
# cache outside the clone (as hosted CI keeps them with a cache step): the
# dependencies, which change only with Cargo.lock, are compiled once, and
# pvce itself is always compiled again (a fresh clone's files are newer
# than anything cached; rustc's incremental cache, keyed by content, still
# saves work). Only cargo's outputs go there: the tiny guest, the
# PostgreSQL cluster and the test venvs are made afresh under the clone's
# target/. A cache over 20 GiB starts over. PVCE_CI_CARGO_CACHE=off builds
# everything in the clone, as on a fresh machine.
if [ "${CI:-}" = true ] && [ -z "${CARGO_TARGET_DIR:-}" ] && [ "${PVCE_CI_CARGO_CACHE:-}" != off ]; then
    CARGO_TARGET_DIR="${PVCE_CI_CARGO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pvce/ci-cargo-target}"
    mkdir -p "$CARGO_TARGET_DIR"
    if [ "$(du -s --block-size=1G "$CARGO_TARGET_DIR" | cut -f1)" -gt 20 ]; then
        echo "== the CI cargo cache is over 20 GiB: starting it over"
        rm -rf "$CARGO_TARGET_DIR" && mkdir -p "$CARGO_TARGET_DIR"
    fi
    export CARGO_TARGET_DIR
    echo "== cargo's outputs in $CARGO_TARGET_DIR (at ${SECONDS} s)"
fi
echo "== cargo fmt --check (at ${SECONDS} s)"
cargo fmt --all -- --check
echo "== cargo clippy beside the test build (at ${SECONDS} s)"
# Side by side: each is mostly one rustc on pvce itself once the
# dependencies are built, so on two cores the two take the time of one.
# Clippy checks into a directory of its own (cargo would otherwise make
# one wait for the other's lock on the build directory).
CLIPPY_LOG=$(mktemp)
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}/clippy" \
    cargo clippy --all-targets --locked -- -D warnings >"$CLIPPY_LOG" 2>&1 &
CLIPPY=$!
# The test build (the tests then run without waiting for cargo).
build=0
cargo test --locked --no-run || build=$?
clippy=0
wait "$CLIPPY" || clippy=$?
echo "== cargo clippy (at ${SECONDS} s)"
cat "$CLIPPY_LOG" && rm -f "$CLIPPY_LOG"
[ "$clippy" = 0 ] || { echo "== cargo clippy failed"; exit "$clippy"; }
[ "$build" = 0 ] || exit "$build"
echo "== prometheus rules (at ${SECONDS} s)"
bash scripts/check-prometheus.sh
echo "== the SQLite and PostgreSQL schemas match (at ${SECONDS} s)"
# On the test cluster (scripts/postgres.sh, started if need be).
python3 scripts/check-schema.py
echo "== tests (at ${SECONDS} s)"
# Unit tests, then the one black-box binary (tests/it), whose gate
# (tests/it/common/gate.rs) decides which tests run at once: three
# (PVCE_TEST_SLOTS), one Chromium and one rig among them, a few alone.
# libtest gets many more threads than that (PVCE_TEST_THREADS), so that
# tests waiting at the gate never hold up the ones queued behind them.
THREADS="${PVCE_TEST_THREADS:-16}"
export PVCE_TEST_TIMES="$PWD/target/test-times.tsv"
rm -f "$PVCE_TEST_TIMES"
slowest() {
    echo "== the slowest black-box tests (seconds held, seconds waiting for the gate, pass, name) (at ${SECONDS} s)"
    sort -rn "$PVCE_TEST_TIMES" 2>/dev/null | head -n 25 || true
}
echo "== running the tests (at ${SECONDS} s)"
status=0
# The unit tests two at a time as ever (some spawn qemu-img/qemu-io and
# wait on their locks with time bounds; sixteen at once starved one of
# them in CI), then the black-box binary through its gate, then doctests.
cargo test --locked --lib --bins -- --test-threads=2 || status=$?
[ "$status" = 0 ] && { cargo test --locked --test it -- --test-threads="$THREADS" || status=$?; }
[ "$status" = 0 ] && { cargo test --locked --doc || status=$?; }
slowest
[ "$status" = 0 ] || exit "$status"
echo "== the same black-box tests on PostgreSQL: accounts, API, desk, knowledge base, notices, reports, audit, alerts, service levels, usage, sign-in, monitor, term, class time (at ${SECONDS} s)"
# Everything above ran on SQLite (the default). These areas hold the most
# SQL; the VM-heavy areas (lifecycle, templates, consoles, backups, the rig)
# ran on SQLite only, to keep CI's time: their SQL is the same text on both
# (README, "PostgreSQL"). Each test gets a fresh database on a throwaway
# cluster (scripts/postgres.sh; tests/it/common/database.rs). `--include-ignored`
# adds the tests that need PostgreSQL (moving an install over, leases between
# two servers, three servers behind haproxy), ignored in the SQLite run above.
PVCE_TEST_DATABASE_URL="$(bash scripts/postgres.sh | tail -n 1)"
export PVCE_TEST_DATABASE_URL
cargo test --locked --test it -- --test-threads="$THREADS" --include-ignored \
    api:: audit:: desk:: kb:: notices:: reports:: http_contract:: alerts:: slo:: usage:: \
    sign_in:: sso:: cas:: ldap:: monitor:: term:: classtime:: dbmove:: leases:: balancer:: backups::an_installation || status=$?
unset PVCE_TEST_DATABASE_URL
slowest
[ "$status" = 0 ] || exit "$status"
echo "== schemathesis (at ${SECONDS} s)"
# The API against its own openapi.json, as admin and as student (bounded).
bash scripts/schemathesis.sh
echo "== all tests passed (at ${SECONDS} s)"
