#!/usr/bin/env bash
# Runs pvce's coverage-guided fuzz targets (fuzz/, cargo-fuzz + libFuzzer)
# for a bounded time each, then minimises the corpora, which are kept in
# fuzz/corpus/<target> (commit what they gained). Not part of CI.
#
#   scripts/fuzz.sh [seconds-per-target] [target…]
#
# Needs a nightly toolchain (`rustup toolchain install nightly`) and
# cargo-fuzz (installed here from crates.io if missing). A crash leaves its
# input in fuzz/artifacts/<target>/ and fails the script; reproduce it with
# `cargo +nightly fuzz run <target> fuzz/artifacts/<target>/<file>`.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

SECONDS_EACH=${1:-60}
shift || true
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
  TARGETS=(image_header tar_header ext4 rfb_handshake)
fi

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzz: a nightly toolchain is needed: rustup toolchain install nightly" >&2
  exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz
fi
# fuzz/Cargo.lock started as a copy of the main one: the same versions.
cargo +nightly fuzz build -O

failed=0
for t in "${TARGETS[@]}"; do
  echo "== fuzz $t for ${SECONDS_EACH}s"
  mkdir -p "corpus/$t"
  # -rss_limit_mb: a parser that allocates what a header asks for is a bug.
  if ! cargo +nightly fuzz run -O "$t" "corpus/$t" -- \
      -max_total_time="$SECONDS_EACH" -rss_limit_mb=1024 -timeout=10 \
      -print_final_stats=1 2>&1 | tail -n 25; then
    failed=1
    echo "fuzz: $t found a failure (see fuzz/artifacts/$t/)" >&2
  fi
  cargo +nightly fuzz cmin -O "$t" "corpus/$t" >/dev/null 2>&1 || true
done
exit $failed
