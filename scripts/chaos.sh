#!/usr/bin/env bash
# The chaos suite's full sweep: tests/it/chaos.rs with every crash point of
# src/crashpoint.rs (CI runs the same tests at one point per operation).
# Each point: the real server started with PVCE_CRASH_AT=<point>, the
# operation driven through the API, the server dead by SIGKILL, restarted,
# `pvce fsck` clean, the operation retried. Needs what the black-box tests
# need (root, libvirtd, the tiny guest: scripts/setup.sh).
#
#   scripts/chaos.sh [test-name-filter]     e.g. scripts/chaos.sh vm_start
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
PVCE_CHAOS_FULL=1 cargo test --locked --test it -- "chaos::${1:-}" --test-threads=1 --nocapture
echo "chaos sweep: every crash point passed in $(( $(date +%s) - start )) s"
