#!/usr/bin/env bash
# Screenshots of every page of the web UI, in English and Chinese, at
# 1366 px and at a phone's 390 px, into target/screens/ (with axe-core's
# accessibility check on each: the run fails on a serious or critical
# violation). Needs what the browser tests need (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --locked --test browser every_page_passes_axe_in_both_languages_on_desktop_and_phone -- --nocapture
echo "screens: $(ls target/screens/*.png | wc -l) files in $(pwd)/target/screens/"
